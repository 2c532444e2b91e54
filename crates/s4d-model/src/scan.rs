use burn::prelude::*;

use crate::complex::ComplexTensor;
use crate::discretize::Discretized;

/// The hidden state of an S4D layer between time steps, `[B, H, M]` complex. Kept by
/// streaming callers (one sample at a time on a device) and carried across `step` calls.
#[derive(Debug, Clone)]
pub struct S4dState {
    /// `x`, `[B, H, M]`.
    pub x: ComplexTensor<3>,
}

impl S4dState {
    /// The zero state `x_{-1} = 0` every sequence starts from.
    pub fn zeros(batch: usize, heads: usize, modes: usize, device: &Device) -> Self {
        let zeros = Tensor::<3>::zeros([batch, heads, modes], device);
        Self {
            x: ComplexTensor::new(zeros.clone(), zeros),
        }
    }
}

/// One step of the diagonal recurrence for input `u_t: [B, H]`:
/// `x_t = Abar x_{t-1} + Bbar u_t`, `y_t = 2 Re(sum_n C x_t) + D u_t`. Returns `y_t: [B, H]`.
pub fn scan_step(disc: &Discretized, state: S4dState, u_t: Tensor<2>) -> (Tensor<2>, S4dState) {
    let (a, b, c, d) = broadcast(&disc.a_bar, &disc.b_bar, &disc.c, &disc.d);
    let x = advance(&a, &b, state.x, u_t.clone());
    let y = read_out(&c, &d, &x, u_t);
    (y, S4dState { x })
}

/// `Abar, Bbar, C` as `[1, H, M]` and `D` as `[1, H]`, so they broadcast over the batch.
fn broadcast(
    a_bar: &ComplexTensor<2>,
    b_bar: &ComplexTensor<2>,
    c: &ComplexTensor<2>,
    d: &Tensor<1>,
) -> (
    ComplexTensor<3>,
    ComplexTensor<3>,
    ComplexTensor<3>,
    Tensor<2>,
) {
    let [heads, modes] = a_bar.dims();
    let lift = |z: &ComplexTensor<2>| z.clone().map(|t| t.reshape([1, heads, modes]));
    (
        lift(a_bar),
        lift(b_bar),
        lift(c),
        d.clone().reshape([1, heads]),
    )
}

/// `x_t = Abar x_{t-1} + Bbar u_t`, `[B, H, M]`.
fn advance(
    a: &ComplexTensor<3>,
    b: &ComplexTensor<3>,
    x: ComplexTensor<3>,
    u_t: Tensor<2>,
) -> ComplexTensor<3> {
    a.clone() * x + b.clone().scale(u_t.unsqueeze_dim::<3>(2))
}

/// `y_t = 2 Re(sum_n C x_t) + D u_t`, `[B, H]`, with `C: [1, H, M]`, `D: [1, H]`.
fn read_out(
    c: &ComplexTensor<3>,
    d: &Tensor<2>,
    x: &ComplexTensor<3>,
    u_t: Tensor<2>,
) -> Tensor<2> {
    // Re(C x) = C_re x_re - C_im x_im: the imaginary part of the product is never needed.
    let cx_re = c.re.clone() * x.re.clone() - c.im.clone() * x.im.clone();
    cx_re.sum_dim(2).squeeze_dim::<2>(2).mul_scalar(2.0) + d.clone() * u_t
}

/// Runs the recurrence over a whole sequence `u: [B, H, L]` from the zero state and returns
/// `y: [B, H, L]` and the final state. Sequential in time: the reference for the convolution
/// view.
pub fn diagonal_scan(disc: &Discretized, u: Tensor<3>) -> (Tensor<3>, S4dState) {
    diagonal_scan_with(&disc.a_bar, &disc.b_bar, &disc.c, &disc.d, u, |x| x)
}

/// The scan loop with a hook on the state: after `x_t = Abar x_{t-1} + Bbar u_t` and before
/// `y_t` is read out, `x_t` is replaced by `on_state(x_t)`. Quantization-aware training clamps
/// and fake-quantizes the state there; the float scan passes the identity.
///
/// `a_bar`, `b_bar`, `c`: `[H, M]`; `d`: `[H]`; `u: [B, H, L]`; returns `y: [B, H, L]`.
pub fn diagonal_scan_with(
    a_bar: &ComplexTensor<2>,
    b_bar: &ComplexTensor<2>,
    c: &ComplexTensor<2>,
    d: &Tensor<1>,
    u: Tensor<3>,
    mut on_state: impl FnMut(ComplexTensor<3>) -> ComplexTensor<3>,
) -> (Tensor<3>, S4dState) {
    let [batch, heads, len] = u.dims();
    let [_, modes] = a_bar.dims();
    let device = u.device();
    let (a, b, c, d) = broadcast(a_bar, b_bar, c, d);
    let mut state = S4dState::zeros(batch, heads, modes, &device);
    let mut outputs = Vec::with_capacity(len);
    for t in 0..len {
        let u_t = u
            .clone()
            .slice([0..batch, 0..heads, t..t + 1])
            .reshape([batch, heads]);
        let x = advance(&a, &b, state.x, u_t.clone());
        state = S4dState { x: on_state(x) };
        outputs.push(read_out(&c, &d, &state.x, u_t).unsqueeze_dim::<3>(2));
    }
    (Tensor::cat(outputs, 2), state)
}
