#!/usr/bin/env bash
# Is "frozen-A best at 6 state bits" (the paper's heatmap) a matter of QAT budget? Discrete vs
# frozen-A QAT at W4A6 with a 6-bit state, with more training than `--quick` gives:
#  1. S4D-16h, sMNIST-10k, the quick sweep's own float run: 2 epochs on all 8,000 training
#     sequences (640 steps, 11x the quick budget), lr 1e-3, first 500 test sequences;
#  2. S4D-64h, sFashion, the fully trained float run of results/float: the schedule of
#     results/beyond/run-qat.sh (2 epochs on 6,000 images, lr 2e-3, first 1,000 test images).
# Usage: bash results/reproduce/probe-x6.sh [path/to/experiments]
set -euo pipefail
cd "$(dirname "$0")/../.."
E=${1:-./target/release/experiments}
root=results/reproduce/probe-x6
run() { # OUT FLOAT SPEC PARAM ARGS...
  local out=$root/$1 float=$2 spec=$3 param=$4
  shift 4
  mkdir -p "$out"
  "$E" qat --run "$float" --spec "$spec" --parameterization "$param" --batch-size 25 --seed 0 \
    --out-dir "$out" --resume "$@" > "$out/qat.log" 2>&1
  rm -rf "$out/checkpoints"
  echo "$1: $(grep -oE 'QAT [0-9.]+%' "$out/qat.log")"
}
for a in 6 7 8 16; do
  for p in discrete frozen-a; do
    run "smnist10k-s4d-16h/a${a}x6-$p" results/reproduce/smnist10k-s4d-16h-quick/runs/float-s0 \
      "w4a6-a${a}x6" "$p" --epochs 2 --lr 1e-3 --calib-batches 8 --test-limit 500
  done
done
for a in 6 8; do
  for p in discrete frozen-a; do
    run "sfashion-s4d-64h/a${a}x6-$p" results/float/sfashion-s4d-64h "w4a6-a${a}x6" "$p" \
      --epochs 2 --lr 2e-3 --calib-batches 16 --train-limit 6000 --test-limit 1000
  done
done
