# Sourced by the run-*.sh scripts here (run from the repository root): one frozen-A QAT run
# of the float S4D-64h of results/float/sfashion-s4d-64h into results/beyond/qat-s4d-64h-NAME,
# timed, its log beside it. `--resume` continues an interrupted run from its last epoch.
# Usage: beyond_qat NAME SPEC ALPHA|none [more `experiments qat` flags: epochs, limits]
# (ALPHA: `--balance-state ALPHA`; `E` overrides the experiments binary, `SEED` the seed 0.)
beyond_qat() {
  local name=$1 spec=$2 alpha=$3
  shift 3
  local bal=()
  [ "$alpha" != none ] && bal=(--balance-state "$alpha")
  local out=results/beyond/qat-s4d-64h-$name
  mkdir -p "$out"
  echo "== $name ($(date -u +%FT%TZ))"
  /usr/bin/time -v "${E:-./target/release/experiments}" qat --run results/float/sfashion-s4d-64h \
    --spec "$spec" --parameterization frozen-a --lr 2e-3 --batch-size 25 --calib-batches 16 \
    --seed "${SEED:-0}" "${bal[@]}" "$@" --out-dir "$out" --resume > "$out/qat.log" 2>&1
  grep -E "QAT [0-9.]+%|Elapsed|Maximum resident" "$out/qat.log" || true
}
