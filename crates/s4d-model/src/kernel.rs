use burn::prelude::*;

use crate::discretize::Discretized;

/// The S4D convolution kernel `K[h, l] = 2 Re(sum_n C[h,n] Bbar[h,n] Abar[h,n]^l)`,
/// `l = 0..len`, shape `[H, L]`.
///
/// Powers come from a Vandermonde matrix `exp(l * log Abar)`, one batched matmul over heads.
/// Unrolling the recurrence `x_t = Abar x_{t-1} + Bbar u_t` from `x_{-1} = 0` gives
/// `y_t = sum_{j<=t} K[t - j] u_j` (plus `D u_t`), which is why the two modes agree.
pub fn vandermonde_kernel(disc: &Discretized, len: usize) -> Tensor<2> {
    let device = disc.d.device();
    let [heads, modes] = disc.a_bar.dims();
    let steps = Tensor::<1, Int>::arange(0..len as i64, &device)
        .float()
        .reshape([1, 1, len]); // [1, 1, L]
    let log_re = disc.log_a_bar.re.clone().unsqueeze_dim::<3>(2); // [H, M, 1]
    let log_im = disc.log_a_bar.im.clone().unsqueeze_dim::<3>(2);
    let magnitude = (log_re * steps.clone()).exp(); // [H, M, L]
    let phase = log_im * steps;
    let pow_re = magnitude.clone() * phase.clone().cos();
    let pow_im = magnitude * phase.sin();

    let cb = disc.c.clone() * disc.b_bar.clone(); // [H, M]
    let cb_re = cb.re.reshape([heads, 1, modes]);
    let cb_im = cb.im.reshape([heads, 1, modes]);
    let k = cb_re.matmul(pow_re) - cb_im.matmul(pow_im); // [H, 1, L]
    k.reshape([heads, len]).mul_scalar(2.0)
}
