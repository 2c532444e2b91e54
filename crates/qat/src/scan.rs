//! The quantized diagonal recurrence, behind one function ([`quantized_scan`]) so a fused
//! kernel can later replace its body without touching callers.

use burn::prelude::*;
use s4d_model::{ComplexTensor, diagonal_scan_with};

use crate::quantizer::Quantizer;

/// How the state is treated after every step: clamped to `+-clamp` (real and imaginary parts)
/// and fake-quantized. With no quantizer the state stays float and unclamped, so an all-float
/// spec reproduces the float model exactly.
#[derive(Debug, Clone, Copy, Default)]
pub struct StateQuant<'a> {
    /// The state quantizer (`None`: float state).
    pub quantizer: Option<&'a Quantizer>,
    /// Clamp bound applied before quantization.
    pub clamp: Option<f32>,
}

/// Runs `x_t = Abar x_{t-1} + Bbar u_t` (then clamp + fake-quant of `x_t`),
/// `y_t = 2 Re(sum_n C x_t) + D u_t` from `x_{-1} = 0`.
///
/// `a_bar`, `b_bar`, `c`: `[H, M]` (already fake-quantized by the caller), `d`: `[H]`,
/// `u`: `[B, H, L]`; returns `y: [B, H, L]`. Gradients flow through every quantizer (STE).
pub fn quantized_scan(
    a_bar: &ComplexTensor<2>,
    b_bar: &ComplexTensor<2>,
    c: &ComplexTensor<2>,
    d: &Tensor<1>,
    u: Tensor<3>,
    state: StateQuant<'_>,
) -> Tensor<3> {
    scan_recording(a_bar, b_bar, c, d, u, state, None)
}

/// [`quantized_scan`] that also pushes every (clamped) state `[B, H, M]` into `record`:
/// calibration observes the state trajectory through it.
pub(crate) fn scan_recording(
    a_bar: &ComplexTensor<2>,
    b_bar: &ComplexTensor<2>,
    c: &ComplexTensor<2>,
    d: &Tensor<1>,
    u: Tensor<3>,
    state: StateQuant<'_>,
    mut record: Option<&mut Vec<ComplexTensor<3>>>,
) -> Tensor<3> {
    diagonal_scan_with(a_bar, b_bar, c, d, u, |mut x| {
        if let Some(rec) = record.as_deref_mut() {
            let seen = match state.clamp {
                Some(m) => x.clone().map(|p| p.clamp(-m, m)),
                None => x.clone(),
            };
            rec.push(seen.map(|p| p.detach()));
        }
        if let Some(q) = state.quantizer {
            if let Some(m) = state.clamp {
                x = x.map(|p| p.clamp(-m, m));
            }
            x = q.forward_complex(x);
        }
        x
    })
    .0
}
