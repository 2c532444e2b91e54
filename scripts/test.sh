#!/usr/bin/env bash
# The test command of s4q: formatting check, then every crate's tests in release mode (burn's
# kernels are unusably slow unoptimised, and release shares its build with `cargo run --release`).
# Needs only a Rust toolchain; the embedded dataset makes the data tests self-contained.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo not found: install Rust (https://rustup.rs) first" >&2
    exit 1
fi
cargo fmt --all -- --check
cargo test --release --workspace
# The library examples, on small data (about a minute together): a .ts file of your own to a C
# model, and QAT from scratch of a custom shape.
cargo run --release -p experiments --example own_data
cargo run --release -p experiments --example qat_scratch
