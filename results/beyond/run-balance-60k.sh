#!/usr/bin/env bash
# Issue 7, bar 1 on the whole sFashion training set: S4D-64h, W4A6 with Abar and state at 6 bits,
# frozen-A QAT for 4 epochs (batch 25, lr 2e-3, cosine), scored on all 10,000 test images.
# Balanced log-polar against the paper's unbalanced Cartesian grid, same schedule, same seed.
# Usage: bash results/beyond/run-balance-60k.sh (E=path/to/experiments to pick the binary)
set -euo pipefail
cd "$(dirname "$0")/../.."
source results/beyond/qat-run.sh
beyond_qat w4a6-a6x6-logpolar-balance1-60k-4ep w4a6-a6x6-logpolar 1 --epochs 4
beyond_qat w4a6-a6x6-60k-4ep w4a6-a6x6 none --epochs 4
# a second seed of the balanced run
SEED=1 beyond_qat w4a6-a6x6-logpolar-balance1-60k-4ep-seed1 w4a6-a6x6-logpolar 1 --epochs 4
