#!/usr/bin/env bash
# Runs the PyTorch peer benchmark (shared/bench/peer_torch) and s4q's own `experiments bench`
# on this machine, back to back, and prints s4q/PyTorch ratios.
# Usage: scripts/peer-bench.sh [OUT_DIR]   (default results/bench)
# Needs ../shared/bench/peer_torch (present in CI and dev checkouts); creates .venv-torch once
# (torch 2.13.0 from PyPI, ~2.8 GB download).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-results/bench}"
peer="${PEER_DIR:-../shared/bench/peer_torch}"
mkdir -p "$out"
if [ ! -x .venv-torch/bin/python ]; then
    python3 -m venv .venv-torch
    .venv-torch/bin/pip install --quiet torch==2.13.0 numpy safetensors
fi
.venv-torch/bin/python "$peer/bench.py" --out "$out/peer_torch.json"
cargo run --release -p experiments -- bench --peer "$out/peer_torch.json" --out "$out/s4q.json" | tee "$out/table.md"
