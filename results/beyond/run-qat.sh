#!/usr/bin/env bash
# QAT of S4D-64h (sFashion float run) at the paper's hand-made specs, one after another, with
# one shared schedule: frozen-A, lr 2e-3, 2 epochs on the first 6,000 training images,
# evaluated on the first 1,000 test images. Usage: bash results/beyond/run-qat.sh SPEC...
# (SPEC: a preset or a .json spec file; the output directory is named after it).
set -euo pipefail
cd "$(dirname "$0")/../.."
for spec in "$@"; do
  name=$(basename "$spec" .json)
  out=results/beyond/qat-s4d-64h-$name
  mkdir -p "$out"
  echo "== $spec ($(date -u +%FT%TZ))"
  /usr/bin/time -v ./target/release/experiments qat --run results/float/sfashion-s4d-64h \
    --spec "$spec" --parameterization frozen-a --epochs 2 --lr 2e-3 --batch-size 25 \
    --calib-batches 16 --train-limit 6000 --test-limit 1000 --seed 0 \
    --out-dir "$out" --resume > "$out/qat.log" 2>&1
  tail -n 30 "$out/qat.log" | grep -E "QAT|Elapsed|Maximum resident" || true
done
