#!/usr/bin/env bash
# QAT of S4D-64h (sFashion float run) at the paper's hand-made specs, one after another, with
# one shared schedule: frozen-A, lr 2e-3, 2 epochs on the first 6,000 training images,
# evaluated on the first 1,000 test images. Usage: bash results/beyond/run-qat.sh SPEC...
# (SPEC: a preset or a .json spec file; the output directory is named after it).
set -euo pipefail
cd "$(dirname "$0")/../.."
source results/beyond/qat-run.sh
for spec in "$@"; do
  beyond_qat "$(basename "$spec" .json)" "$spec" none --epochs 2 --train-limit 6000 --test-limit 1000
done
