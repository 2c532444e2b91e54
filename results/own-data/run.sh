#!/usr/bin/env bash
# Your own data, on three real public UCR/UEA sets shipped in the PyPI `aeon` wheel: float
# training, QAT w8a8 fine-tuned from the float run, QAT w8a8 from scratch, and the integer
# model checked against the fake-quant one, three seeds each. Every figure in README.md comes
# from the files this writes (summary by summarize.py). Finished runs are skipped on a re-run.
# Usage: bash results/own-data/run.sh [SET...]   (default: GunPoint BasicMotions JapaneseVowels)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=results/own-data
SETS=("$@")
[ ${#SETS[@]} -gt 0 ] || SETS=(GunPoint BasicMotions JapaneseVowels)
if [ -z "${E:-}" ]; then
    cargo build --release -p experiments
    E=${CARGO_TARGET_DIR:-target}/release/experiments
fi
$E fetch --ucr "$(IFS=,; echo "${SETS[*]}")"

for S in "${SETS[@]}"; do
    D=data/ucr/$S
    data=(--train "$D/${S}_TRAIN.ts" --test "$D/${S}_TEST.ts" --valid-fraction 0.2)
    shape=(--d-model 32 --d-state 32)
    for SEED in 0 1 2; do
        R=$OUT/runs/$S/seed$SEED
        mkdir -p "$R"
        [ -f "$R/float/result.json" ] || $E train "${data[@]}" "${shape[@]}" --seed "$SEED" \
            --epochs 80 --batch-size 8 --run-dir "$R/float" > "$R/float.log" 2>&1
        [ -f "$R/qat-w8a8/result.json" ] || $E qat --run "$R/float" --spec w8a8 --seed "$SEED" \
            --epochs 10 --lr 1e-3 --batch-size 8 --calib-batches 8 --out-dir "$R/qat-w8a8" \
            > "$R/qat-w8a8.log" 2>&1
        [ -f "$R/scratch-w8a8/result.json" ] || $E qat --from-scratch "${data[@]}" "${shape[@]}" \
            --seed "$SEED" --spec w8a8 --epochs 80 --lr 1e-2 --batch-size 8 --calib-batches 8 \
            --observer-epochs 5 --recalibrate-every 5 --out-dir "$R/scratch-w8a8" \
            > "$R/scratch-w8a8.log" 2>&1
        for Q in qat-w8a8 scratch-w8a8; do
            [ -f "$R/$Q/deploy-check.json" ] || $E deploy-check --run "$R/$Q" --test-limit 100000 \
                --out "$R/$Q/deploy-check.json" > "$R/$Q-deploy-check.log" 2>&1
        done
        # Drop what a re-run does not need (checkpoints, optimizer moments): results stay small.
        rm -rf "$R"/*/checkpoints "$R"/*/best
        tail -n 1 "$R/float.log" "$R/qat-w8a8.log" "$R/scratch-w8a8.log"
    done
done
python3 "$OUT/summarize.py" > "$OUT/summary.md"
cat "$OUT/summary.md"
