//! The fake-quantization op with a (clipped) straight-through estimator, written once.
//!
//! Forward: `xq = (round(clamp(x / s + z, qmin, qmax)) - z) * s`, i.e. `dequant(quant(x))`.
//! Backward (burn autodiff, no custom op needed):
//! - `clamp` is implemented in burn as `mask_fill` on the out-of-range elements, so its gradient
//!   is the 0/1 in-range mask;
//! - `round` is replaced by [`ste_round`], `v + (round(v) - v).detach()`, whose gradient is 1;
//! - so `d xq / d x = mask` (the clipped STE), the same as the `xc + (q(xc) - xc).detach()`
//!   formulation with `xc = clamp(x, lo, hi)`, `lo = (qmin - z) s`, `hi = (qmax - z) s`.
//!   Clamping in the integer domain lets per-channel ranges use scalar bounds.
//! - When `s` is a trainable parameter (LSQ, Esser et al. 2020) the same expression yields
//!   LSQ's step-size gradient: `round(v) - v` inside the range, `qmin - z` / `qmax - z` outside.

use burn::prelude::*;

use crate::rounding::round_half_even;

/// Rounding with an identity gradient (the straight-through estimator).
pub fn ste_round<const D: usize>(v: Tensor<D>) -> Tensor<D> {
    v.clone() + (round_half_even(v.clone()) - v).detach()
}

/// Affine fake quantization of `x` with `scale` and `zero_point` broadcastable to `x`
/// (per-tensor: all ones shape; per-channel: the channel axis kept). Integer grid
/// `[qmin, qmax]`. See the module doc for the gradients.
pub fn fake_quant_affine<const D: usize>(
    x: Tensor<D>,
    scale: Tensor<D>,
    zero_point: Tensor<D>,
    qmin: f32,
    qmax: f32,
) -> Tensor<D> {
    let v = x / scale.clone() + zero_point.clone();
    let v = v.clamp(qmin, qmax);
    (ste_round(v) - zero_point) * scale
}
