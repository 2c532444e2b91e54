//! The one rounding rule of the crate: **round half to even** (banker's rounding).
//!
//! PyTorch's reference fake quantization (`torch.fake_quantize_per_*_affine`) rounds with
//! `std::nearbyint` under the default FP environment, i.e. half to even, and `torch.round` is
//! half to even too. burn's `Tensor::round` is documented as half to even (burn-tensor 0.22.1,
//! `api/float.rs`; the Flex backend implements it with `round_ties_even`), so the tensor path
//! uses it directly, and the host path (observers, zero points) uses `f32::round_ties_even`.
//! Every other module calls these two functions; nothing else in the crate rounds.

use burn::prelude::*;

/// Rounds every element half to even (`0.5 -> 0`, `1.5 -> 2`, `-2.5 -> -2`).
pub fn round_half_even<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    x.round()
}

/// Host-side twin of [`round_half_even`], used where ranges and zero points are computed.
pub fn round_half_even_f32(x: f32) -> f32 {
    x.round_ties_even()
}
