#!/usr/bin/env python3
"""Writes the state-spaces-layout fixture used by `crates/interop/tests/state_spaces_fixture.rs`
and `experiments/tests/state_spaces_quant.rs`.

The model follows the S4D example model of the state-spaces repository (github.com/state-spaces/s4:
`S4Model` in `example.py` with the standalone `S4D` layer and `S4DKernel` of
`models/s4/s4d.py`), written out here because that repository is not a dependency:

  encoder Linear(d_input, H) -> transpose to (B, H, L)
  -> n_layers x [ z = S4D(x)  (kernel: ZOH, B = 1, K = 2 Re(C (exp(dt A) - 1) / A exp(dt A l));
                               FFT conv of length 2L; + D u; GELU; dropout;
                               Conv1d(H, 2H, 1) + GLU(dim=-2))
                  dropout; x = z + x; x = LayerNorm(x)   (post-norm, the example's default) ]
  -> transpose back, mean over time -> decoder Linear(H, d_output)

Parameter names, shapes and the forward pass are the example's; only the dropout modules stand
in for the repository's `DropoutNd` / `nn.Dropout1d` (no parameters, identity in eval mode) and
`einops.repeat` is spelled with torch, and `S4Model` takes `d_state` and the kernel `lr` as
arguments (the example leaves `d_state` at S4D's default of 64 and reads `lr` from its command
line) so the fixture can use N = 8. The kernel parameters are registered with an `lr` as the
example does (`lr=min(0.001, args.lr)`), so they are parameters, not buffers; the state_dict
names are the same either way.

The model is tiny (H=6, N=8 so 4 complex modes, 3 layers, d_input=2, 4 classes, L=24, batch 3)
to keep the files a few KB. At initialisation every mode of every head has the same decay,
A_imag = pi*n exactly, LayerNorm is the identity affine and all layers look alike; a test could
then not tell a transposed A, swapped LayerNorm scale and shift, or two layers read in the wrong
order apart. So after building the model the script perturbs every parameter with seeded noise
(a stand-in for a trained checkpoint), then saves:

  <out>/state_spaces_h6_l3.safetensors     the model's state_dict (float32), state-spaces names
  <out>/state_spaces_h6_l3_io.safetensors  x (B, L, d_input); logits (B, d_output) of the
                                           example's forward in eval mode; block0_out (B, L, H),
                                           the first block's output (after its LayerNorm)

It also runs the same model with each S4D layer unrolled as the ZOH recurrence and prints the
gap to the FFT path, a check on the fixture itself (the example has no recurrent mode).

Usage: .venv-torch/bin/python scripts/make-state-spaces-fixture.py [--out DIR]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
import torch.nn as nn
from safetensors.torch import save_file

REPO = Path(__file__).resolve().parent.parent
H, N, N_LAYERS, D_INPUT, N_CLASSES, L, BATCH, SEED = 6, 8, 3, 2, 4, 24, 3, 2718
STEM = "state_spaces_h6_l3"


class S4DKernel(nn.Module):
    """`models/s4/s4d.py`: the S4D convolution kernel from diagonal SSM parameters."""

    def __init__(self, d_model, N=64, dt_min=0.001, dt_max=0.1, lr=None):
        super().__init__()
        H = d_model
        log_dt = torch.rand(H) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        C = torch.randn(H, N // 2, dtype=torch.cfloat)
        self.C = nn.Parameter(torch.view_as_real(C))
        self.register("log_dt", log_dt, lr)
        log_A_real = torch.log(0.5 * torch.ones(H, N // 2))
        A_imag = math.pi * torch.arange(N // 2).float().unsqueeze(0).expand(H, -1).clone()
        self.register("log_A_real", log_A_real, lr)
        self.register("A_imag", A_imag, lr)

    def forward(self, L):
        dt = torch.exp(self.log_dt)  # (H)
        C = torch.view_as_complex(self.C)  # (H N)
        A = -torch.exp(self.log_A_real) + 1j * self.A_imag  # (H N)
        dtA = A * dt.unsqueeze(-1)  # (H N)
        K = dtA.unsqueeze(-1) * torch.arange(L, device=A.device)  # (H N L)
        C = C * (torch.exp(dtA) - 1.0) / A
        K = 2 * torch.einsum("hn, hnl -> hl", C, torch.exp(K)).real
        return K

    def register(self, name, tensor, lr=None):
        if lr == 0.0:
            self.register_buffer(name, tensor)
        else:
            self.register_parameter(name, nn.Parameter(tensor))
            optim = {"weight_decay": 0.0}
            if lr is not None:
                optim["lr"] = lr
            setattr(getattr(self, name), "_optim", optim)

    def recurrent(self, u):
        """The same SSM as a ZOH recurrence over `u` (B, H, L) (not in the example): the state
        x_k = exp(dt A) x_{k-1} + (exp(dt A) - 1) / A u_k, output 2 Re(C x_k)."""
        dt = torch.exp(self.log_dt)
        C = torch.view_as_complex(self.C)
        A = -torch.exp(self.log_A_real) + 1j * self.A_imag
        dA = torch.exp(A * dt.unsqueeze(-1))
        dB = (dA - 1.0) / A
        x = torch.zeros(u.shape[0], *A.shape, dtype=dA.dtype)
        ys = []
        for k in range(u.shape[-1]):
            x = dA * x + dB * u[..., k].unsqueeze(-1)
            ys.append(2 * torch.einsum("hn, bhn -> bh", C, x).real)
        return torch.stack(ys, dim=-1)


class S4D(nn.Module):
    """`models/s4/s4d.py`: the standalone S4D layer, (B, H, L) -> (B, H, L)."""

    def __init__(self, d_model, d_state=64, dropout=0.0, transposed=True, **kernel_args):
        super().__init__()
        self.h = d_model
        self.n = d_state
        self.d_output = self.h
        self.transposed = transposed
        self.D = nn.Parameter(torch.randn(self.h))
        self.kernel = S4DKernel(self.h, N=self.n, **kernel_args)
        self.activation = nn.GELU()
        # The repository uses its own DropoutNd here; no parameters, identity in eval mode.
        self.dropout = nn.Dropout1d(dropout) if dropout > 0.0 else nn.Identity()
        self.output_linear = nn.Sequential(
            nn.Conv1d(self.h, 2 * self.h, kernel_size=1),
            nn.GLU(dim=-2),
        )
        self.recurrent = False

    def forward(self, u, **kwargs):
        if not self.transposed:
            u = u.transpose(-1, -2)
        L = u.size(-1)
        if self.recurrent:
            y = self.kernel.recurrent(u)
        else:
            k = self.kernel(L=L)  # (H L)
            k_f = torch.fft.rfft(k, n=2 * L)
            u_f = torch.fft.rfft(u, n=2 * L)
            y = torch.fft.irfft(u_f * k_f, n=2 * L)[..., :L]  # (B H L)
        y = y + u * self.D.unsqueeze(-1)
        y = self.dropout(self.activation(y))
        y = self.output_linear(y)
        if not self.transposed:
            y = y.transpose(-1, -2)
        return y, None


class S4Model(nn.Module):
    """`example.py`: encoder, residual S4D blocks with LayerNorm, mean pooling, decoder."""

    def __init__(self, d_input, d_output=10, d_model=256, n_layers=4, dropout=0.2, prenorm=False,
                 d_state=64, lr=0.001):
        super().__init__()
        self.prenorm = prenorm
        self.encoder = nn.Linear(d_input, d_model)
        self.s4_layers = nn.ModuleList()
        self.norms = nn.ModuleList()
        self.dropouts = nn.ModuleList()
        for _ in range(n_layers):
            self.s4_layers.append(
                S4D(d_model, d_state=d_state, dropout=dropout, transposed=True, lr=lr)
            )
            self.norms.append(nn.LayerNorm(d_model))
            self.dropouts.append(nn.Dropout1d(dropout))
        self.decoder = nn.Linear(d_model, d_output)

    def forward(self, x, return_blocks=False):
        """x: (B, L, d_input) -> logits (B, d_output); with `return_blocks`, also every block's
        output as (B, L, H)."""
        blocks = []
        x = self.encoder(x)  # (B, L, d_input) -> (B, L, d_model)
        x = x.transpose(-1, -2)  # (B, L, d_model) -> (B, d_model, L)
        for layer, norm, dropout in zip(self.s4_layers, self.norms, self.dropouts):
            z = x
            if self.prenorm:
                z = norm(z.transpose(-1, -2)).transpose(-1, -2)
            z, _ = layer(z)
            z = dropout(z)
            x = z + x
            if not self.prenorm:
                x = norm(x.transpose(-1, -2)).transpose(-1, -2)
            blocks.append(x.transpose(-1, -2))
        x = x.transpose(-1, -2)
        x = x.mean(dim=1)
        x = self.decoder(x)
        return (x, blocks) if return_blocks else x


def perturb(model: S4Model) -> None:
    """Seeded noise on every parameter so that each one matters to the output distinctly."""
    with torch.no_grad():
        for layer in model.s4_layers:
            k = layer.kernel
            # Step sizes spread over a decade and a half, different per layer and head; decays
            # and frequencies spread per mode. dt * |A| stays a few radians at most, so the
            # kernels neither vanish nor alias within L = 24 steps.
            k.log_dt.copy_(torch.empty(H).uniform_(-3.5, -1.0))
            k.log_A_real.add_(0.4 * torch.randn_like(k.log_A_real))
            k.A_imag.add_(0.3 * torch.randn_like(k.A_imag))
            k.C.add_(0.3 * torch.randn_like(k.C))
            layer.D.add_(0.2 * torch.randn_like(layer.D))
            conv = layer.output_linear[0]
            conv.weight.add_(0.1 * torch.randn_like(conv.weight))
            conv.bias.add_(0.1 * torch.randn_like(conv.bias))
        for norm in model.norms:
            norm.weight.add_(0.3 * torch.randn_like(norm.weight))
            norm.bias.add_(0.2 * torch.randn_like(norm.bias))
        for lin in (model.encoder, model.decoder):
            lin.weight.add_(0.1 * torch.randn_like(lin.weight))
            lin.bias.add_(0.1 * torch.randn_like(lin.bias))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "crates/interop/tests/fixtures")
    args = parser.parse_args()

    torch.manual_seed(SEED)
    model = S4Model(D_INPUT, d_output=N_CLASSES, d_model=H, n_layers=N_LAYERS, dropout=0.1,
                    d_state=N)
    perturb(model)
    model.eval()

    x = torch.randn(BATCH, L, D_INPUT)
    with torch.no_grad():
        logits, blocks = model(x, return_blocks=True)
        for layer in model.s4_layers:
            layer.recurrent = True
        logits_rec = model(x)
        for layer in model.s4_layers:
            layer.recurrent = False
    io = {
        "x": x.contiguous(),
        "logits": logits.contiguous(),
        "block0_out": blocks[0].contiguous(),
    }

    args.out.mkdir(parents=True, exist_ok=True)
    meta = {
        "generator": "scripts/make-state-spaces-fixture.py",
        "reference": "state-spaces/s4 example.py S4Model + models/s4/s4d.py S4D (post-norm)",
        "torch": torch.__version__,
        "H": str(H),
        "N": str(N),
        "n_layers": str(N_LAYERS),
        "d_input": str(D_INPUT),
        "d_output": str(N_CLASSES),
        "L": str(L),
        "seed": str(SEED),
    }
    state = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
    save_file(state, args.out / f"{STEM}.safetensors", metadata=meta)
    save_file(io, args.out / f"{STEM}_io.safetensors", metadata=meta)
    gap = (logits - logits_rec).abs().max().item()
    print(f"wrote {args.out}: {len(state)} tensors: {', '.join(state)}")
    print(f"logits {logits.tolist()}")
    print(f"FFT vs recurrent logits max |diff| {gap:.2e}; max |logit| {logits.abs().max():.3f}")


if __name__ == "__main__":
    main()
