#!/usr/bin/env python3
"""Summarises results/own-data/runs/<set>/seed<k>/ into the Markdown table of README.md:
test accuracy (mean and std over seeds) of the float model, QAT w8a8 fine-tuned from it and
QAT w8a8 from scratch, and the integer model's agreement with the fake-quant model."""
import json
import statistics
from pathlib import Path

RUNS = Path(__file__).resolve().parent / "runs"


def stat(values):
    if not values:
        return "–"
    mean = statistics.mean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.2f} ± {sd:.2f}"


def read(path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


print("| set | seeds | float % | PTQ w8a8 % | QAT w8a8 fine-tuned % | QAT w8a8 from scratch % | "
      "integer = fake-quant (identical predictions), fine-tuned / scratch | "
      "integer - fake-quant acc. (pts), fine-tuned / scratch |")
print("|---|---:|---:|---:|---:|---:|---|---|")
for set_dir in sorted(p for p in RUNS.iterdir() if p.is_dir()):
    fl, pt, ft, sc = [], [], [], []
    agree = {"qat-w8a8": [], "scratch-w8a8": []}
    diff = {"qat-w8a8": [], "scratch-w8a8": []}
    seeds = sorted(p for p in set_dir.iterdir() if p.is_dir())
    for seed in seeds:
        r = read(seed / "float" / "result.json")
        if r:
            fl.append(r["test_acc"])
        r = read(seed / "qat-w8a8" / "result.json")
        if r:
            pt.append(r["ptq_acc"])
            ft.append(r["qat_acc"])
        r = read(seed / "scratch-w8a8" / "result.json")
        if r:
            sc.append(r["qat_acc"])
        for q in agree:
            d = read(seed / q / "deploy-check.json")
            if d:
                agree[q].append((d["identical_predictions"], d["test_sequences"]))
                diff[q].append(d["accuracy_difference_pts"])

    def agreement(pairs):
        if not pairs:
            return "–"
        same, total = sum(p[0] for p in pairs), sum(p[1] for p in pairs)
        return f"{same}/{total} ({100 * same / total:.2f}%)"

    def diffs(v):
        return "–" if not v else ", ".join(f"{x:+.2f}" for x in v)

    print(f"| {set_dir.name} | {len(seeds)} | {stat(fl)} | {stat(pt)} | {stat(ft)} | {stat(sc)} | "
          f"{agreement(agree['qat-w8a8'])} / {agreement(agree['scratch-w8a8'])} | "
          f"{diffs(diff['qat-w8a8'])} / {diffs(diff['scratch-w8a8'])} |")
