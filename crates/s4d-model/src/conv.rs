use burn::prelude::*;
use burn::signal::{irfft, rfft};

use crate::backend::has_native_fft;

/// Causal convolution `y[b,h,t] = sum_{j<=t} k[h, t-j] u[b,h,j]` of `u: [B, H, L]` with
/// `k: [H, L]`, choosing FFT where the backend has one and an exact Toeplitz product otherwise.
pub fn causal_conv(u: Tensor<3>, k: Tensor<2>) -> Tensor<3> {
    if has_native_fft(&u.device()) {
        causal_conv_fft(u, k)
    } else {
        causal_conv_toeplitz(u, k)
    }
}

/// FFT convolution at the first power of two `>= 2L`, so the circular wrap never reaches the
/// first `L` outputs. `O(BHL log L)`.
pub fn causal_conv_fft(u: Tensor<3>, k: Tensor<2>) -> Tensor<3> {
    let [batch, heads, len] = u.dims();
    let n = (2 * len).next_power_of_two();
    let (u_re, u_im) = rfft(u, 2, Some(n)); // [B, H, n/2 + 1]
    let (k_re, k_im) = rfft(k.unsqueeze_dim::<3>(0), 2, Some(n)); // [1, H, n/2 + 1]
    let y_re = u_re.clone() * k_re.clone() - u_im.clone() * k_im.clone();
    let y_im = u_re * k_im + u_im * k_re;
    irfft(y_re, y_im, 2, Some(n)).slice([0..batch, 0..heads, 0..len])
}

/// Exact causal convolution as a batched matmul with per-head Toeplitz matrices
/// `T[h, j, t] = k[h, t - j]` (zero for `t < j`). `O(BHL^2)` time and `O(HL^2)` memory:
/// the composed fallback for backends without a burn FFT, and an FFT-free reference in tests
/// (on Flex and NdArray the layer uses the fused op of [`crate::fused_s4d_conv`] instead).
pub fn causal_conv_toeplitz(u: Tensor<3>, k: Tensor<2>) -> Tensor<3> {
    let [batch, heads, len] = u.dims();
    let device = u.device();
    // k_ext[h, m] = 0 for m < L, k[h, m - L] for m >= L; T[h, j, t] = k_ext[h, t - j + L].
    let k_ext = Tensor::cat(vec![Tensor::zeros([heads, len], &device), k], 1); // [H, 2L]
    let row = Tensor::<1, Int>::arange(0..len as i64, &device);
    let t = row.clone().reshape([1, len]);
    let j = row.reshape([len, 1]);
    let index = (t - j).add_scalar(len as i64).reshape([len * len]); // [(j, t)]
    let toeplitz = k_ext.select(1, index).reshape([heads, len, len]); // [H, L(j), L(t)]
    let u_h = u.swap_dims(0, 1); // [H, B, L]
    u_h.matmul(toeplitz)
        .swap_dims(0, 1)
        .reshape([batch, heads, len])
}
