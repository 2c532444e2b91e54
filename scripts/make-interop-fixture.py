#!/usr/bin/env python3
"""Writes the PyTorch interop fixture used by `crates/interop/tests/torch_fixture.rs`.

The model comes from the PyTorch peer reference (`s4d_ref.py` in ../shared/bench/peer_torch),
so the test checks s4q against that code, not against a re-derivation of it. The model is tiny
(H=4 heads, N=16 real state, L=32 steps, batch 2) to keep the files a few KB.

At initialisation B = 1 + 0i, every mode has the same decay and A_imag = pi*n exactly; a test on
such a model could not tell Re from Im of B or a transposed A. So after building the model the
script perturbs every parameter with seeded noise (a stand-in for a trained checkpoint), then
saves:

  <out>/peer_h4_n16.safetensors     the reference's state_dict (float32), as a user would save it
  <out>/peer_h4_n16_io.safetensors  x (B, L, 1), and for mode in {conv, rec}:
                                    ssm_out_<mode> (B, H, L) and logits_<mode> (B, 10)

Usage: .venv-torch/bin/python scripts/make-interop-fixture.py [--ref DIR] [--out DIR]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

REPO = Path(__file__).resolve().parent.parent
H, N, L, BATCH, SEED = 4, 16, 32, 2, 1234


def load_reference(ref_dir: Path):
    path = ref_dir / "s4d_ref.py"
    if not path.exists():
        sys.exit(f"no s4d_ref.py in {ref_dir}: pass --ref or set PEER_TORCH_DIR")
    spec = importlib.util.spec_from_file_location("s4d_ref", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", type=Path, default=REPO.parent / "shared/bench/peer_torch")
    parser.add_argument("--out", type=Path, default=REPO / "crates/interop/tests/fixtures")
    args = parser.parse_args()
    ref = load_reference(args.ref)

    torch.manual_seed(SEED)
    model = ref.S4DModel(H, d_state=N)
    with torch.no_grad():
        s4d = model.s4d
        # Spread the decays and frequencies, make B genuinely complex, widen dt: every
        # parameter then matters to the output and a layout mistake shows up.
        s4d.log_dt.copy_(torch.linspace(-3.5, -1.0, H))
        s4d.log_A_real.add_(0.4 * torch.randn_like(s4d.log_A_real))
        s4d.A_imag.add_(0.3 * torch.randn_like(s4d.A_imag))
        s4d.B.add_(0.5 * torch.randn_like(s4d.B))
        s4d.C.mul_(1.5)
        s4d.D.add_(0.2 * torch.randn_like(s4d.D))

    x = torch.rand(BATCH, L, 1)
    io = {"x": x}
    with torch.no_grad():
        for mode, tag in (("conv", "conv"), ("recurrent", "rec")):
            logits, inter = model(x, mode=mode, return_intermediates=True)
            io[f"logits_{tag}"] = logits.contiguous()
            io[f"ssm_out_{tag}"] = inter["ssm_out"].contiguous()

    args.out.mkdir(parents=True, exist_ok=True)
    meta = {
        "generator": "scripts/make-interop-fixture.py",
        "reference": "shared/bench/peer_torch/s4d_ref.py",
        "torch": torch.__version__,
        "H": str(H),
        "N": str(N),
        "L": str(L),
        "seed": str(SEED),
    }
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, args.out / "peer_h4_n16.safetensors", metadata=meta)
    save_file(io, args.out / "peer_h4_n16_io.safetensors", metadata=meta)
    gap = (io["logits_conv"] - io["logits_rec"]).abs().max().item()
    print(f"wrote {args.out}: {len(state)} tensors; conv vs recurrent logits max |diff| {gap:.2e}")


if __name__ == "__main__":
    main()
