#!/usr/bin/env bash
# Type-checks the workspace with the `cuda` feature (burn's CUDA backend) on a machine without
# a GPU or network. cubecl-cuda's build dependency `tracel-llvm-bundler` downloads an LLVM
# bundle in its build script; DOCS_RS=1 makes it skip that (the documented docs.rs path), which
# is enough for `cargo check`. A real `cargo build --features cuda` needs the download (or a
# populated ~/.local/share/tracel cache) and the CUDA driver at run time.
# Usage: bash scripts/check-cuda.sh   (separate target dir: the feature set differs from CI's)
set -euo pipefail
cd "$(dirname "$0")/.."
DOCS_RS=1 CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target-cuda}" \
    cargo check --release -p experiments --features cuda
