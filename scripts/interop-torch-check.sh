#!/usr/bin/env bash
# Checks that the PyTorch peer reference loads an s4q export and computes the same outputs.
#
#   bash scripts/interop-torch-check.sh [RUN_DIR]
#
# 1. RUN_DIR (a float run: model.json + model.bpk) or, without it, a small S4D-16h that s4q
#    trains here for one epoch on 200 embedded digits (about a minute), so the parameters are
#    s4q's own, not PyTorch's initialisation;
# 2. `experiments export --format safetensors` writes it with the reference's names, plus a
#    random input and s4q's outputs for it (--sample-io, L = 784);
# 3. the reference (`S4DModel` of ../shared/bench/peer_torch/s4d_ref.py, or $PEER_TORCH_DIR)
#    loads the file with load_state_dict(strict=True), runs both modes, and compares its SSM
#    output and logits with s4q's.
# Needs the torch venv ($PYTHON, default .venv-torch/bin/python: see the peer's SETUP.md).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv-torch/bin/python}
PEER=${PEER_TORCH_DIR:-../shared/bench/peer_torch}
[[ -x $PYTHON ]] || { echo "no Python with torch at $PYTHON (set PYTHON=...)" >&2; exit 1; }
[[ -f $PEER/s4d_ref.py ]] || { echo "no s4d_ref.py in $PEER (set PEER_TORCH_DIR=...)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo build --release --workspace --quiet
bin=target/release/experiments
run=${1:-}
if [[ -z $run ]]; then
    run=$work/run
    $bin train --model s4d-16h --dataset embedded --epochs 1 --train-limit 200 --test-limit 100 \
        --run-dir "$run" >/dev/null
fi
$bin export --run "$run" --format safetensors --out "$work/model.safetensors" \
    --sample-io "$work/io.safetensors" --sample-len 784

"$PYTHON" - "$PEER" "$work/model.safetensors" "$work/io.safetensors" <<'EOF'
import importlib.util
import sys

import torch
from safetensors.torch import load_file

peer, model_path, io_path = sys.argv[1:4]
spec = importlib.util.spec_from_file_location("s4d_ref", f"{peer}/s4d_ref.py")
ref = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ref)

state = load_file(model_path)
H = state["s4d.log_dt"].shape[0]
d_state = 2 * state["s4d.log_A_real"].shape[1]
d_input = state["encoder.weight"].shape[1]
n_out = state["decoder.weight"].shape[0]
model = ref.S4DModel(H, d_state=d_state, d_input=d_input, d_output=n_out)
model.load_state_dict(state, strict=True)  # every name and shape must match exactly
model.eval()
print(f"reference loaded the export: H={H} N={d_state} d_input={d_input} classes={n_out}, "
      f"{ref.count_params(model)} parameters")

io = load_file(io_path)
ok = True
with torch.no_grad():
    for mode, tag in (("conv", "conv"), ("recurrent", "rec")):
        logits, inter = model(io["x"], mode=mode, return_intermediates=True)
        for name, ours, theirs in (("ssm_out", io[f"ssm_out_{tag}"], inter["ssm_out"]),
                                   ("logits", io[f"logits_{tag}"], logits)):
            err = (ours - theirs).abs().max().item()
            scale = max(1.0, theirs.abs().max().item())
            # f32 outputs of two implementations summing 784 steps: 1e-4 relative to the
            # output's magnitude, the bound the reference's own conv-vs-recurrent check uses.
            passed = err <= 1e-4 * scale
            ok &= passed
            print(f"{mode:>9} {name:>7}: max |s4q - torch| = {err:.3e} "
                  f"(bound {1e-4 * scale:.1e}) {'ok' if passed else 'FAIL'}")
print("interop torch check: " + ("PASSED" if ok else "FAILED"))
sys.exit(0 if ok else 1)
EOF
