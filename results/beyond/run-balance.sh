#!/usr/bin/env bash
# QAT of S4D-64h (sFashion float run) with the state balanced per mode (`--balance-state ALPHA`),
# on the schedule of run-qat.sh (frozen-A, lr 2e-3, first 6,000 training images, first 1,000
# test images), and the PTQ check. Usage: bash results/beyond/run-balance.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
E=${E:-./target/release/experiments}
source results/beyond/qat-run.sh
qat() { # SPEC ALPHA|none EPOCHS NAME: the 6,000-image schedule
  beyond_qat "$4" "$1" "$2" --epochs "$3" --train-limit 6000 --test-limit 1000
}
qat w4a6-a6x6-logpolar 1 2 w4a6-a6x6-logpolar-balance1
qat w4a6-a6x6 1 2 w4a6-a6x6-balance1
qat w4a6-a6x6-logpolar 0.5 2 w4a6-a6x6-logpolar-balance0.5
qat w4a6-a8x8 1 2 w4a6-a8x8-balance1
qat results/beyond/specs/w4a6-a6x6-logpolar-lsq.json 1 2 w4a6-a6x6-logpolar-lsq-balance1
qat w4a6-a6x6-logpolar 1 6 w4a6-a6x6-logpolar-balance1-6ep
qat w4a6-a6x6 none 6 w4a6-a6x6-6ep
qat w4a6-a6x6 1 6 w4a6-a6x6-balance1-6ep
# the whole training set, 2 epochs (no --train-limit)
beyond_qat w4a6-a6x6-logpolar-balance1-60k-2ep w4a6-a6x6-logpolar 1 --epochs 2 --test-limit 1000
beyond_qat w4a6-a6x6-60k-2ep w4a6-a6x6 none --epochs 2 --test-limit 1000
# PTQ: the state alone at 8 / 6 bits and whole specs, without and with balancing
for a in none 1 0.5; do
  bal=()
  [ "$a" != none ] && bal=(--balance-state "$a")
  $E ptq --run results/float/sfashion-s4d-64h \
    --spec results/beyond/specs/state8-only.json,results/beyond/specs/state6-only.json,w8a8,w4a6-a8x8,w4a6-a6x6-logpolar \
    --calib-batches 16 --batch-size 25 --test-limit 1000 "${bal[@]}" \
    --out results/beyond/ptq-balance-$a.json
done
