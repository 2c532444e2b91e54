#!/usr/bin/env bash
# libFuzzer (cargo-fuzz) run of the s4q-runtime model-file parser and the inference it guards.
# Needs the nightly toolchain (cargo-fuzz passes sanitizer flags) and installs cargo-fuzz once
# from crates.io. Seeds the corpus with the committed exports so the fuzzer starts from valid
# files. A crash leaves its input under crates/s4q-runtime/fuzz/artifacts/parse/.
# Usage: bash scripts/cargo-fuzz-runtime.sh [SECONDS]   (default 600)
# The stable-toolchain mutation fuzzer (no nightly needed) is scripts/fuzz-runtime.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-600}"
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
mkdir -p crates/s4q-runtime/fuzz/corpus/parse
for d in results/deploy/*/; do
    [ -f "$d/model.s4qm" ] && cp "$d/model.s4qm" "crates/s4q-runtime/fuzz/corpus/parse/$(basename "$d").s4qm"
done
cd crates/s4q-runtime
cargo +nightly fuzz run parse -- -max_total_time="$seconds" -print_final_stats=1
