#!/usr/bin/env python3
"""Trains the state-spaces S4D example model (LayerNorm residual blocks, post-norm or with
`--prenorm` pre-norm, the `S4Model` of `scripts/make-state-spaces-fixture.py`) in PyTorch on sMNIST-10k and saves its
state_dict with the state-spaces tensor names: a real checkpoint made outside s4q for the
import -> PTQ -> QAT -> integer export path (issue 18, must-show 2; `results/imported/run.sh`).

Data: the 8,000 / 2,000 digits of `data/mnist10k` (`experiments fetch`), pixels / 255 as a
784-step sequence of one channel, exactly what s4q's `smnist10k` loader gives. The optimiser
follows the example's `setup_optimizer`: AdamW (lr 0.01, weight decay 0.01) with the S4D
kernel parameters in their own groups (their `_optim` hints: lr 0.001, no weight decay), a
cosine schedule over all steps. Seeded; CPU.

Writes <out>/model.safetensors (state_dict, float32) and <out>/torch_train.json (options,
per-epoch test accuracy, wall time).

Usage: .venv-torch/bin/python scripts/train-state-spaces-smnist.py [--out DIR] [--epochs N]
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import struct
import time
from pathlib import Path

import torch
import torch.nn as nn
from safetensors.torch import save_file

REPO = Path(__file__).resolve().parent.parent

_spec = importlib.util.spec_from_file_location(
    "fixture", REPO / "scripts/make-state-spaces-fixture.py"
)
fixture = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fixture)


def read_idx(path: Path) -> torch.Tensor:
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack(">I", data[:4])[0]
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    body = torch.frombuffer(bytearray(data[4 + 4 * ndim :]), dtype=torch.uint8)
    return body.reshape(dims)


def load(root: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    images = read_idx(root / f"{split}-images-idx3-ubyte.gz")
    labels = read_idx(root / f"{split}-labels-idx1-ubyte.gz")
    x = images.reshape(images.shape[0], -1, 1).float() / 255.0
    return x, labels.long()


def optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """The example's `setup_optimizer`: parameters with an `_optim` hint get their own group."""
    plain = [p for p in model.parameters() if not hasattr(p, "_optim")]
    opt = torch.optim.AdamW(plain, lr=lr, weight_decay=weight_decay)
    hints = [dict(s) for s in {frozenset(p._optim.items()) for p in model.parameters()
                               if hasattr(p, "_optim")}]
    for hp in hints:
        params = [p for p in model.parameters() if getattr(p, "_optim", None) == hp]
        opt.add_param_group({"params": params, **hp})
    return opt


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            correct += (model(x[i : i + batch]).argmax(-1) == y[i : i + batch]).sum().item()
    model.train()
    return 100.0 * correct / len(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO / "data/mnist10k")
    parser.add_argument("--out", type=Path, default=REPO / "results/imported/state-spaces-smnist10k")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--d-model", type=int, default=32)
    parser.add_argument("--d-state", type=int, default=32)
    parser.add_argument("--n-layers", type=int, default=3)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prenorm", action="store_true",
                        help="normalise each block's input (the example's --prenorm)")
    args = parser.parse_args()
    for f in ("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"):
        if not (args.data / f).exists():
            raise SystemExit(f"{args.data / f} is missing: run `experiments fetch` first")

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    xtr, ytr = load(args.data, "train")
    xte, yte = load(args.data, "t10k")
    model = fixture.S4Model(1, d_output=10, d_model=args.d_model, n_layers=args.n_layers,
                            dropout=0.1, prenorm=args.prenorm, d_state=args.d_state, lr=0.001)
    opt = optimizer(model, args.lr, 0.01)
    steps = args.epochs * ((len(xtr) + args.batch - 1) // args.batch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    loss_fn = nn.CrossEntropyLoss()
    history = []
    started = time.time()
    for epoch in range(args.epochs):
        order = torch.randperm(len(xtr))
        total = 0.0
        for i in range(0, len(xtr), args.batch):
            idx = order[i : i + args.batch]
            loss = loss_fn(model(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        acc = accuracy(model, xte, yte, 200)
        history.append({"epoch": epoch + 1, "train_loss": total / len(xtr), "test_acc": acc,
                        "seconds": time.time() - started})
        print(json.dumps(history[-1]), flush=True)

    model.eval()
    args.out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
    meta = {"generator": "scripts/train-state-spaces-smnist.py", "torch": torch.__version__,
            "reference": "state-spaces/s4 example.py S4Model + models/s4/s4d.py S4D "
                         + ("(pre-norm)" if args.prenorm else "(post-norm)")}
    save_file(state, args.out / "model.safetensors", metadata=meta)
    report = {"options": {k: str(v) for k, v in vars(args).items()}, "torch": torch.__version__,
              "history": history, "test_acc": history[-1]["test_acc"] if history else None,
              "train_seconds": time.time() - started}
    (args.out / "torch_train.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out / 'model.safetensors'}: test accuracy {report['test_acc']:.2f}%")


if __name__ == "__main__":
    main()
