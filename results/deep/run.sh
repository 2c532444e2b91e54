#!/usr/bin/env bash
# Issue 18, must-show 1: a 4-block S4D (H = 64, N = 64, residual, post-norm) on sMNIST-10k,
# with LayerNorm and with BatchNorm. Every step resumes or skips what is finished, so the
# script can be re-run after an interruption. Usage: bash results/deep/run.sh [float|quant|all]
set -euo pipefail
cd "$(dirname "$0")/../.."
E=${E:-target/release/experiments}
ROOT=${DATA_ROOT:-data}
STAGE=${1:-all}
OUT=results/deep
for norm in layer batch; do
  dir=$OUT/smnist10k-4x64-$norm
  if [[ $STAGE == float || $STAGE == all ]] && [[ ! -f $dir/float/result.json ]]; then
    resume=(); [[ -d $dir/float ]] && resume=(--resume)
    $E train --model s4d-64h --n-layers 4 --residual --norm "$norm" --dataset smnist10k \
      --data-root "$ROOT" --epochs 40 --batch-size 50 --valid-fraction 0.1 --patience 8 \
      --seed 0 --run-dir "$dir/float" "${resume[@]}"
  fi
done
