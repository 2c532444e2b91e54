#!/usr/bin/env bash
# The GPU code path on lavapipe (Debian's software Vulkan) or a real GPU: builds s4d-model with
# `--features wgpu` in its own target dir (a burn feature change rebuilds the whole stack,
# ~30 min on 2 cores) and runs the wgpu-vs-Flex test.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! ls /usr/share/vulkan/icd.d/*.json >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mesa-vulkan-drivers
    else
        echo "no Vulkan driver found: install mesa-vulkan-drivers" >&2
    fi
fi
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target-wgpu}" \
    cargo test --release -p s4d-model --features wgpu --test wgpu -- --nocapture
