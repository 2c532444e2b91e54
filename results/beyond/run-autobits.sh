#!/usr/bin/env bash
# Automatic mixed precision for S4D-64h (sFashion float run) at the paper's S4D-64 savings
# (84.05 %), then QAT of the chosen spec with the same schedule as run-qat.sh, compared with
# the hand-made specs trained by run-qat.sh. Usage: bash results/beyond/run-autobits.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
out=results/beyond/autobits-s4d-64h
mkdir -p "$out"
# Every finished hand-made run of run-qat.sh goes into the comparison.
cmp=$(ls -d results/beyond/qat-s4d-64h-*/ | while read -r d; do
  [ -f "$d/result.json" ] && printf '%s,' "${d%/}"; done)
cmp=${cmp%,}
/usr/bin/time -v ./target/release/experiments autobits --run results/float/sfashion-s4d-64h \
  --savings 84.05 --bits 3,4,5,6,7,8 --grids cartesian,log-polar \
  --sens-samples 300 --sens-calib-batches 8 \
  --parameterization frozen-a --epochs 2 --lr 2e-3 --batch-size 25 --calib-batches 16 \
  --train-limit 6000 --test-limit 1000 --seed 0 \
  --compare "$cmp" --out-dir "$out" > "$out/autobits.log" 2>&1
grep -vE "sensitivity|progress" "$out/autobits.log" | tail -n 40
