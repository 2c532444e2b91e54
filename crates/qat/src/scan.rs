//! The quantized diagonal recurrence, behind one function ([`quantized_scan`]): the fused
//! kernel of `s4d-model` (one op, hand-written backward) where the device has it and the
//! state quantizer is static, the composed tensor scan otherwise (GPU backends, dynamic
//! state ranges, and calibration, which records every state).

use burn::prelude::*;
use s4d_model::{
    ComplexTensor, FusedStateQuant, StateGrid, diagonal_scan_with, fused_diagonal_scan_time_major,
    fused_scan_supported,
};

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
    scan_recording(a_bar, b_bar, c, d, u.swap_dims(1, 2), state, None).swap_dims(1, 2)
}

/// [`quantized_scan`] on the model's time-major layout (`u, y: [B, L, H]`, so the fused
/// kernel needs no transposes) that also pushes every (clamped) state `[B, H, M]` into
/// `record`: calibration observes the state trajectory through it.
pub(crate) fn scan_recording(
    a_bar: &ComplexTensor<2>,
    b_bar: &ComplexTensor<2>,
    c: &ComplexTensor<2>,
    d: &Tensor<1>,
    u: Tensor<3>,
    state: StateQuant<'_>,
    mut record: Option<&mut Vec<ComplexTensor<3>>>,
) -> Tensor<3> {
    if record.is_none()
        && fused_scan_supported(&u.device())
        && let Some(quant) = fused_state_quant(&state, d.dims()[0], &u.device())
    {
        return fused_diagonal_scan_time_major(a_bar, b_bar, c, d, u, quant);
    }
    let u = u.swap_dims(1, 2); // the composed scan runs on [B, H, L]
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
    .swap_dims(1, 2)
}

/// The state quantizer in the fused kernel's terms: `Some(None)` for a float state,
/// `Some(Some(q))` for a static per-head or per-tensor quantizer, `None` when only the
/// composed scan can express it (dynamic ranges, another channel axis).
fn fused_state_quant(
    state: &StateQuant<'_>,
    heads: usize,
    device: &Device,
) -> Option<Option<FusedStateQuant>> {
    let Some(q) = state.quantizer else {
        return Some(None);
    };
    let (scale, zero_point) = q.head_params(heads, device)?;
    let (qmin, qmax) = q.config().grid();
    Some(Some(FusedStateQuant {
        scale,
        zero_point,
        grid: StateGrid {
            qmin,
            qmax,
            clamp: state.clamp,
        },
    }))
}
