use burn::prelude::*;

use crate::complex::ComplexTensor;
use crate::config::Discretization;

/// The discrete-time matrices of an S4D layer: what the recurrence, the kernel and every
/// quantizer operate on. Computed once per forward pass from the continuous parameters.
///
/// Recurrence per head `h` and mode `n` (all diagonal, so elementwise):
/// `x_t = a_bar * x_{t-1} + b_bar * u_t`, `y_t = 2 Re(sum_n c * x_t) + d * u_t`.
#[derive(Debug, Clone)]
pub struct Discretized {
    /// `Abar`, `[H, M]`.
    pub a_bar: ComplexTensor<2>,
    /// `Bbar`, `[H, M]`.
    pub b_bar: ComplexTensor<2>,
    /// `C` (unchanged by discretization; called `Cbar` in the paper), `[H, M]`.
    pub c: ComplexTensor<2>,
    /// Skip connection `D`, `[H]`.
    pub d: Tensor<1>,
    /// `log(Abar)` (`dt * A` for ZOH), `[H, M]`: the Vandermonde kernel uses its multiples, which
    /// is exact and cheaper than repeated products.
    pub log_a_bar: ComplexTensor<2>,
}

/// Discretizes `A = a` (`[H, M]`), `B = b` (`[H, M]`) with step `dt` (`[H]`).
///
/// ZOH: `Abar = exp(dt A)`, `Bbar = B (exp(dt A) - 1) / A`.
/// Bilinear: `Abar = (1 + dt A / 2) / (1 - dt A / 2)`, `Bbar = dt B / (1 - dt A / 2)`.
pub(crate) fn discretize(
    rule: Discretization,
    dt: Tensor<1>,
    a: ComplexTensor<2>,
    b: ComplexTensor<2>,
    c: ComplexTensor<2>,
    d: Tensor<1>,
) -> Discretized {
    let dt = dt.unsqueeze_dim::<2>(1); // [H, 1]
    let dt_a = a.clone().scale(dt.clone()); // [H, M]
    match rule {
        Discretization::Zoh => {
            let a_bar = dt_a.clone().exp();
            let b_bar = b * (a_bar.clone().add_real_scalar(-1.0) / a);
            Discretized {
                a_bar,
                b_bar,
                c,
                d,
                log_a_bar: dt_a,
            }
        }
        Discretization::Bilinear => {
            let half = dt_a.mul_scalar(0.5);
            let denom = half.clone().mul_scalar(-1.0).add_real_scalar(1.0); // 1 - dtA/2
            let a_bar = half.add_real_scalar(1.0) / denom.clone();
            let b_bar = b.scale(dt) / denom;
            let log_a_bar = a_bar.clone().ln();
            Discretized {
                a_bar,
                b_bar,
                c,
                d,
                log_a_bar,
            }
        }
    }
}
