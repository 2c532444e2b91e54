#!/usr/bin/env bash
# Your own data, on three real public UCR/UEA sets shipped in the PyPI `aeon` wheel: float
# training, QAT w8a8 fine-tuned from the float run, QAT w8a8 from scratch, and the integer
# model checked against the fake-quant one. Every figure in README.md comes from the logs this
# writes. Usage: bash results/own-data/run.sh [SET...]   (default: the three below)
set -euo pipefail
cd "$(dirname "$0")/../.."
E=${E:-target/release/experiments}
OUT=results/own-data
SETS=("$@")
[ ${#SETS[@]} -gt 0 ] || SETS=(GunPoint BasicMotions JapaneseVowels)
cargo build --release -p experiments
$E fetch --ucr "$(IFS=,; echo "${SETS[*]}")"

# Per set: model width, float epochs, QAT fine-tuning epochs, from-scratch epochs, batch size.
declare -A H=([GunPoint]=32 [BasicMotions]=32 [JapaneseVowels]=64 [ArrowHead]=32 [ItalyPowerDemand]=32)
declare -A EP=([GunPoint]=80 [BasicMotions]=80 [JapaneseVowels]=40 [ArrowHead]=80 [ItalyPowerDemand]=60)
declare -A BS=([GunPoint]=10 [BasicMotions]=8 [JapaneseVowels]=16 [ArrowHead]=8 [ItalyPowerDemand]=8)

for S in "${SETS[@]}"; do
    D=data/ucr/$S
    R=$OUT/runs/$S
    mkdir -p "$R"
    common=(--train "$D/${S}_TRAIN.ts" --test "$D/${S}_TEST.ts" --valid-fraction 0.2)
    shape=(--d-model "${H[$S]}" --d-state 32)
    [ -f "$R/float/result.json" ] || $E train "${common[@]}" "${shape[@]}" \
        --epochs "${EP[$S]}" --batch-size "${BS[$S]}" --run-dir "$R/float" 2>&1 | tee "$R/float.log"
    [ -f "$R/qat-w8a8/result.json" ] || $E qat --run "$R/float" --spec w8a8 --epochs 10 --lr 1e-3 \
        --batch-size "${BS[$S]}" --calib-batches 8 --out-dir "$R/qat-w8a8" 2>&1 | tee "$R/qat-w8a8.log"
    [ -f "$R/scratch-w8a8/result.json" ] || $E qat --from-scratch "${common[@]}" "${shape[@]}" \
        --spec w8a8 --epochs "${EP[$S]}" --lr 1e-2 --batch-size "${BS[$S]}" --calib-batches 8 \
        --observer-epochs 5 --recalibrate-every 5 --out-dir "$R/scratch-w8a8" 2>&1 | tee "$R/scratch-w8a8.log"
    for Q in qat-w8a8 scratch-w8a8; do
        $E deploy-check --run "$R/$Q" --test-limit 100000 --out "$R/$Q/deploy-check.json" 2>&1 \
            | tee "$R/$Q-deploy-check.log"
    done
done
