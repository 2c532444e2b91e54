use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// The nonlinearity after the SSM. qGELU exists because an exact GELU needs `erf`, which
/// integer edge hardware does not have; the paper (after Q-S5) swaps it for a
/// piecewise-quadratic that quantizes cleanly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// Exact (erf) GELU.
    #[default]
    Gelu,
    /// `x * clamp(x + 2, 0, 1)`, see [`qgelu`].
    Qgelu,
}

impl Activation {
    /// Applies the activation elementwise.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Activation::Gelu => crate::pointwise::gelu(x),
            Activation::Qgelu => qgelu(x),
        }
    }
}

/// Hardware-friendly GELU used by the paper: `qgelu(x) = x * clamp(x + 2, 0, 1)`, i.e.
/// 0 below -2, `x (x + 2)` on [-2, -1], and `x` above -1. Continuous, needs one multiply.
pub fn qgelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let gate = x.clone().add_scalar(2.0).clamp(0.0, 1.0);
    x * gate
}
