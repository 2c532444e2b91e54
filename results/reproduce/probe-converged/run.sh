#!/usr/bin/env bash
# Is the converged budget's QAT W8A8 gap to the paper (S4D-16h, sMNIST-10k) a matter of steps?
# The budget gives QAT 8 epochs of 7,200 digits (1,152 steps); the paper's 10 epochs of 60,000
# digits are about 12,000. Same float run (seed 0), same recipe, 5x the epochs.
set -euo pipefail
cd "$(dirname "$0")/../../.."
E=${E:-target/release/experiments}
F=results/reproduce/smnist10k-s4d-16h-converged/runs/float-s0
O=results/reproduce/probe-converged
[ -f "$O/w8a8-40ep-s0/result.json" ] || $E qat --run "$F" --spec w8a8 --parameterization frozen-a \
    --epochs 40 --lr 1e-3 --batch-size 50 --calib-batches 8 --out-dir "$O/w8a8-40ep-s0" \
    > "$O/w8a8-40ep-s0.log" 2>&1
rm -rf "$O"/*/checkpoints "$O"/*/best
tail -n 1 "$O/w8a8-40ep-s0.log"
