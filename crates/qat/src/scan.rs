//! The quantized diagonal recurrence, behind one function ([`quantized_scan`]) so a fused
//! kernel can later replace its body without touching callers.

use burn::prelude::*;
use s4d_model::ComplexTensor;

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
    let [batch, heads, len] = u.dims();
    let [_, modes] = a_bar.dims();
    let device = u.device();
    let a = a_bar.clone().map(|t| t.reshape([1, heads, modes]));
    let b = b_bar.clone().map(|t| t.reshape([1, heads, modes]));
    let c = c.clone().map(|t| t.reshape([1, heads, modes]));
    let d = d.clone().reshape([1, heads]);
    let zeros = Tensor::<3>::zeros([batch, heads, modes], &device);
    let mut x = ComplexTensor::new(zeros.clone(), zeros);
    let mut outputs = Vec::with_capacity(len);
    for t in 0..len {
        let u_t = u
            .clone()
            .slice([0..batch, 0..heads, t..t + 1])
            .reshape([batch, heads]);
        let u3 = u_t.clone().unsqueeze_dim::<3>(2);
        x = a.clone() * x + b.clone().scale(u3);
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
        // Re(C x) = C_re x_re - C_im x_im: the imaginary part of the product is never needed.
        let y_t = (c.re.clone() * x.re.clone() - c.im.clone() * x.im.clone())
            .sum_dim(2)
            .squeeze_dim::<2>(2)
            .mul_scalar(2.0)
            + d.clone() * u_t;
        outputs.push(y_t.unsqueeze_dim::<3>(2));
    }
    Tensor::cat(outputs, 2)
}
