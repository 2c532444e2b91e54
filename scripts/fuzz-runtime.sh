#!/usr/bin/env bash
# Fuzzes the s4q-runtime model-file parser (and the inference behind it) for a bounded time:
# a stable-Rust mutation harness (crates/s4q-runtime/src/bin/fuzz_parser.rs) built with the
# `fuzz` profile (release speed, overflow checks on), seeded with the committed exports.
# Usage: bash scripts/fuzz-runtime.sh [MINUTES] [SEED]   (default 10 minutes, seed 1)
# A panic saves the input under target/fuzz-crashes/ and exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."
minutes="${1:-10}"
seed="${2:-1}"
seeds=(results/deploy/*/model.s4qm)
if [ ! -e "${seeds[0]}" ]; then
    echo "no seed files: run \`experiments export --format runtime\` first (see README)" >&2
    exit 2
fi
cargo build --profile fuzz -p s4q-runtime --bin fuzz-parser
"${CARGO_TARGET_DIR:-target}/fuzz/fuzz-parser" --minutes "$minutes" --seed "$seed" "${seeds[@]}"
