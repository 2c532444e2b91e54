//! GELU and GLU as fused CPU ops with hand-written backwards.
//!
//! burn composes GELU from five tensor ops around a scalar `libm` `erf`, and its backward from
//! as many again with an `exp`; GLU is a slice, a sigmoid and a product. On the CPU backends
//! these passes cost a training step as much as the SSM itself. Here each is one parallel pass
//! forward and one backward, with an `erf` (Abramowitz & Stegun 7.1.26, absolute error
//! <= 1.5e-7, the size of f32 rounding near 1) and an `exp` written as plain arithmetic, so the
//! loops vectorize. The values agree with burn's composed ops to f32 rounding (tested against
//! an f64 reference); other backends keep the composed ops.

// NdArray is deprecated upstream but still a supported backend of s4q; the extension macro
// names it in generated code, which item-level `allow`s do not reach.
#![allow(deprecated)]

use burn::backend::NdArray;
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::{
    Autodiff, Backend, Dispatch, Flex, TensorMetadata, backend_extension, tensor::FloatTensor,
};
use burn::prelude::*;
use rayon::prelude::*;

use crate::host::{
    HostTarget, HostValues, from_host, host_values, record_host_op, register_host_grads,
};

/// Elements per parallel task: large enough to amortize scheduling, small enough to balance.
const CHUNK: usize = 1 << 14;

/// `exp(x)` for `x` clamped to [-87, 88], as `2^k * p(r)` with `r = x - k ln 2` (Cody-Waite
/// split) and a degree-6 Taylor polynomial: relative error ~2e-7 on the whole range.
#[inline(always)]
pub fn exp_approx(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23: adding and subtracting rounds to integer
    const MAGIC_BITS: i32 = 0x4B40_0000; // MAGIC's bit pattern
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * std::f32::consts::LOG2_E + MAGIC;
    let k = shifted - MAGIC;
    let r = (x - k * LN2_HI) - k * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // `shifted` lies in [2^23, 2^24), where floats step by one, so its bit pattern is
    // MAGIC's plus the integer `k` (in -126..=127): integer ops that vectorize, where
    // `k as i32` (saturating, NaN to 0) compiles to scalar compares.
    let k_int = (shifted.to_bits() as i32).wrapping_sub(MAGIC_BITS);
    p * f32::from_bits(((k_int + 127) << 23) as u32)
}

/// `(Phi(x), phi(x))`: the standard normal CDF and density. The tail `1 - Phi(|x|)` is
/// computed directly as `poly(t) exp(-x^2 / 2) / 2`, without cancellation.
#[inline(always)]
fn normal_cdf_pdf(x: f32) -> (f32, f32) {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_72,
        1.421_413_8,
        -1.453_152_1,
        1.061_405_4,
    ];
    const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;
    let z = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + P * z);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    let e = exp_approx(-z * z);
    let tail = 0.5 * poly * e;
    let cdf = if x >= 0.0 { 1.0 - tail } else { tail };
    (cdf, e * FRAC_1_SQRT_2PI)
}

/// `GELU(x) = x Phi(x)`.
#[inline(always)]
pub fn gelu_scalar(x: f32) -> f32 {
    x * normal_cdf_pdf(x).0
}

/// `d GELU / dx = Phi(x) + x phi(x)`.
#[inline(always)]
pub fn gelu_grad_scalar(x: f32) -> f32 {
    let (cdf, pdf) = normal_cdf_pdf(x);
    cdf + x * pdf
}

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp_approx(-x))
}

crate::avx2_dispatch! {
    /// `y = GELU(x)` over one chunk.
    fn gelu_chunk(y: &mut [f32], x: &[f32]) {
        for (y, &x) in y.iter_mut().zip(x) {
            *y = gelu_scalar(x);
        }
    }
}

crate::avx2_dispatch! {
    /// `dx = dy GELU'(x)` over one chunk.
    fn gelu_backward_chunk(dx: &mut [f32], x: &[f32], dy: &[f32]) {
        for ((d, &x), &g) in dx.iter_mut().zip(x).zip(dy) {
            *d = g * gelu_grad_scalar(x);
        }
    }
}

crate::avx2_dispatch! {
    /// GLU over whole rows: `y` rows of `half`, `x` rows `[a | b]` of `2 * half`.
    pub(crate) fn glu_chunk(y: &mut [f32], x: &[f32], half: usize) {
        for (yr, xr) in y.chunks_exact_mut(half).zip(x.chunks_exact(2 * half)) {
            let (a, b) = xr.split_at(half);
            for ((y, &a), &b) in yr.iter_mut().zip(a).zip(b) {
                *y = a * sigmoid(b);
            }
        }
    }
}

crate::avx2_dispatch! {
    /// GLU's backward over whole rows (layouts as [`glu_chunk`], `dy` as its `y`).
    pub(crate) fn glu_backward_chunk(dx: &mut [f32], x: &[f32], dy: &[f32], half: usize) {
        for ((dr, xr), gr) in dx
            .chunks_exact_mut(2 * half)
            .zip(x.chunks_exact(2 * half))
            .zip(dy.chunks_exact(half))
        {
            let (a, b) = xr.split_at(half);
            let (da, db) = dr.split_at_mut(half);
            for k in 0..half {
                let s = sigmoid(b[k]);
                da[k] = gr[k] * s;
                db[k] = gr[k] * a[k] * s * (1.0 - s);
            }
        }
    }
}

fn gelu_host(x: &[f32]) -> Vec<f32> {
    let mut y = vec![0.0f32; x.len()];
    y.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(y, x)| gelu_chunk(y, x));
    y
}

fn gelu_backward_host(x: &[f32], dy: &[f32]) -> Vec<f32> {
    let mut dx = vec![0.0f32; x.len()];
    dx.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK).zip(dy.par_chunks(CHUNK)))
        .for_each(|(dx, (x, dy))| gelu_backward_chunk(dx, x, dy));
    dx
}

/// Rows per task for GLU over rows of `width` outputs.
fn glu_rows(width: usize) -> usize {
    (CHUNK / width.max(1)).max(1)
}

/// `y = a * sigmoid(b)` per row, `x` rows `[a | b]` of `2 * half` values.
fn glu_host(x: &[f32], half: usize) -> Vec<f32> {
    let rows = x.len() / (2 * half).max(1);
    let mut y = vec![0.0f32; rows * half];
    let per = glu_rows(half);
    y.par_chunks_mut(per * half)
        .zip(x.par_chunks(per * 2 * half))
        .for_each(|(y, x)| glu_chunk(y, x, half));
    y
}

/// `dx = [dy sigmoid(b) | dy a sigmoid(b) (1 - sigmoid(b))]` per row.
fn glu_backward_host(x: &[f32], half: usize, dy: &[f32]) -> Vec<f32> {
    let mut dx = vec![0.0f32; x.len()];
    let per = glu_rows(half);
    dx.par_chunks_mut(per * 2 * half)
        .zip(x.par_chunks(per * 2 * half).zip(dy.par_chunks(per * half)))
        .for_each(|(dx, (x, dy))| glu_backward_chunk(dx, x, dy, half));
    dx
}

/// The fused pointwise ops as backend operations.
#[backend_extension(Flex, NdArray, Autodiff)]
pub trait FusedPointwiseBackend: Backend {
    /// Exact GELU `x Phi(x)`, any shape.
    fn fused_gelu(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// GLU over the last axis: `[.., 2K] -> [.., K]`, `first half * sigmoid(second half)`.
    fn fused_glu(x: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// The last axis halved.
fn glu_shape(shape: &[usize]) -> (Vec<usize>, usize) {
    let last = *shape
        .last()
        .unwrap_or_else(|| panic!("fused glu: needs a tensor of rank >= 1"));
    assert!(
        last.is_multiple_of(2),
        "fused glu: the last axis ({last}) must be even"
    );
    let mut out = shape.to_vec();
    let k = out.len() - 1;
    out[k] = last / 2;
    (out, last / 2)
}

macro_rules! host_pointwise_backend {
    ($($backend:ty),*) => {$(
        impl FusedPointwiseBackend for $backend {
            fn fused_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
                let (device, dtype, shape) = (x.device(), x.dtype(), x.shape().to_vec());
                let y = gelu_host(&host_values::<Self>(x));
                from_host::<Self>(y, shape, dtype, &device)
            }

            fn fused_glu(x: FloatTensor<Self>) -> FloatTensor<Self> {
                let (device, dtype) = (x.device(), x.dtype());
                let (shape, half) = glu_shape(&x.shape().to_vec());
                let y = glu_host(&host_values::<Self>(x), half);
                from_host::<Self>(y, shape, dtype, &device)
            }
        }
    )*};
}

host_pointwise_backend!(Flex, NdArray);

/// What a pointwise backward keeps: the input on the host.
#[derive(Debug, Clone)]
struct SavedInput<D> {
    x: HostValues,
    shape: Vec<usize>,
    target: HostTarget<D>,
}

/// Registers `dx(x, dy)` on a one-input op's parent, when it wants a gradient.
fn pointwise_backward<B: Backend>(
    saved: SavedInput<B::Device>,
    dy: HostValues,
    parent: Option<NodeId>,
    grads: &mut Gradients,
    dx: impl FnOnce(&[f32], &[f32]) -> Vec<f32>,
) {
    let grad = parent.map(|_| (dx(&saved.x, &dy), saved.shape));
    register_host_grads::<B, 1>(grads, [parent], [grad], &saved.target);
}

#[derive(Debug)]
struct GeluBackward;

impl<B: Backend> Backward<B, 1> for GeluBackward {
    type State = SavedInput<B::Device>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = host_values::<B>(grads.consume::<B>(&ops.node));
        let [parent] = ops.parents.map(|p| p.map(|n| n.id));
        pointwise_backward::<B>(ops.state, dy, parent, grads, gelu_backward_host);
    }
}

#[derive(Debug)]
struct GluBackward;

impl<B: Backend> Backward<B, 1> for GluBackward {
    type State = SavedInput<B::Device>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = host_values::<B>(grads.consume::<B>(&ops.node));
        let [parent] = ops.parents.map(|p| p.map(|n| n.id));
        let half = ops.state.shape.last().copied().unwrap_or(0) / 2;
        pointwise_backward::<B>(ops.state, dy, parent, grads, |x, dy| {
            glu_backward_host(x, half, dy)
        });
    }
}

/// The Autodiff side of a pointwise op: `f(x)` on the host, keeping `x` for the backward.
fn record_pointwise<
    B: Backend,
    C: CheckpointStrategy,
    T: Backward<B, 1, State = SavedInput<B::Device>> + 'static,
>(
    backward: T,
    x: FloatTensor<Autodiff<B, C>>,
    out_shape: impl FnOnce(&[usize]) -> Vec<usize>,
    f: impl FnOnce(&[f32]) -> Vec<f32>,
) -> FloatTensor<Autodiff<B, C>> {
    let guards = [x.node()];
    let target = HostTarget::of::<B>(x.primitive());
    let shape = x.primitive().shape().to_vec();
    let xv = host_values::<B>(x.into_primitive());
    let out = target.tensor::<B>(f(&xv), out_shape(&shape));
    record_host_op::<B, C, T, 1>(backward, guards, |_| {
        (
            out,
            SavedInput {
                x: xv,
                shape,
                target: target.clone(),
            },
        )
    })
}

impl<B: Backend + FusedPointwiseBackend, C: CheckpointStrategy> FusedPointwiseBackend
    for Autodiff<B, C>
{
    fn fused_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        record_pointwise::<B, C, _>(GeluBackward, x, <[usize]>::to_vec, gelu_host)
    }

    fn fused_glu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let shape = x.primitive().shape().to_vec();
        let (out_shape, half) = glu_shape(&shape);
        record_pointwise::<B, C, _>(GluBackward, x, |_| out_shape, |x| glu_host(x, half))
    }
}

/// Whether the fused pointwise ops run on this device (the CPU backends).
pub fn fused_pointwise_supported(device: &Device) -> bool {
    crate::backend::op_path(device) == crate::backend::OpPath::Fused
}

/// Exact GELU: the fused op on CPU backends, burn's composed `gelu` elsewhere.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if fused_pointwise_supported(&x.device()) {
        Tensor::from_dispatch(<Dispatch as FusedPointwiseBackend>::fused_gelu(
            x.into_dispatch(),
        ))
    } else {
        burn::tensor::activation::gelu(x)
    }
}

/// GLU over the last axis (`first half * sigmoid(second half)`, `[.., 2K] -> [.., K]`): the
/// fused op on CPU backends, burn's composed `glu` elsewhere.
pub fn glu_last<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if fused_pointwise_supported(&x.device()) {
        Tensor::from_dispatch(<Dispatch as FusedPointwiseBackend>::fused_glu(
            x.into_dispatch(),
        ))
    } else {
        burn::tensor::activation::glu(x, D - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// erf in f64 by its Maclaurin series (|x| <= 3) or continued fraction, as a reference
    /// independent of the approximation under test.
    fn erf64(x: f64) -> f64 {
        if x.abs() < 3.0 {
            let (mut term, mut sum, mut n) = (x, x, 0.0f64);
            while term.abs() > 1e-17 * sum.abs().max(1e-300) {
                n += 1.0;
                term *= -x * x / n;
                sum += term / (2.0 * n + 1.0);
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            // erfc(x) = exp(-x^2)/sqrt(pi) * 1/(x + 1/2/(x + 1/(x + 3/2/(x + ...))))
            let a = x.abs();
            let mut f = a;
            for k in (1..60).rev() {
                f = a + (k as f64 / 2.0) / f;
            }
            let erfc = (-a * a).exp() / std::f64::consts::PI.sqrt() / f;
            (1.0 - erfc) * x.signum()
        }
    }

    /// GELU and its derivative against f64: absolute error <= 3e-7 * max(1, |x|): the A&S
    /// bound (1.5e-7 in erf, 7.5e-8 in Phi) plus the f32 evaluation of the polynomial, the
    /// exp and the sums near 0.5 (a few ulps of 0.5, ~1.5e-7). A wrong coefficient is >1e-4.
    #[test]
    fn gelu_matches_f64_reference() {
        let mut x = -12.0f32;
        while x <= 12.0 {
            let xd = x as f64;
            let cdf = 0.5 * (1.0 + erf64(xd / std::f64::consts::SQRT_2));
            let pdf = (-xd * xd / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt();
            let tol = 3e-7 * xd.abs().max(1.0);
            assert!(
                (gelu_scalar(x) as f64 - xd * cdf).abs() <= tol,
                "gelu({x}) = {} vs {}",
                gelu_scalar(x),
                xd * cdf
            );
            assert!(
                (gelu_grad_scalar(x) as f64 - (cdf + xd * pdf)).abs() <= tol,
                "gelu'({x}) = {} vs {}",
                gelu_grad_scalar(x),
                cdf + xd * pdf
            );
            x += 0.013;
        }
    }

    /// exp to 3e-7 relative over the clamped range (degree-6 remainder ~1.2e-7 plus rounding).
    #[test]
    fn exp_approx_is_accurate() {
        let mut x = -87.0f32;
        while x <= 88.0 {
            let want = (x as f64).exp();
            let got = exp_approx(x) as f64;
            assert!(
                (got - want).abs() <= 3e-7 * want,
                "exp({x}) = {got} vs {want}"
            );
            x += 0.0371;
        }
    }

    /// Inputs for the bit-for-bit checks: a dense sweep plus the clamp edges, zeros, huge
    /// values and infinities.
    fn sweep() -> Vec<f32> {
        let mut v: Vec<f32> = (0..40_000).map(|i| -100.0 + i as f32 * 0.005).collect();
        v.extend([
            -87.0,
            88.0,
            -0.0,
            0.0,
            1e-30,
            -1e-30,
            1e30,
            -1e30,
            f32::MAX,
            f32::MIN,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ]);
        v
    }

    /// The exponent taken from the bits of the rounded sum is the integer `k as i32` gave.
    #[test]
    fn exp_exponent_from_bits_equals_the_cast() {
        for x in sweep() {
            let c = x.clamp(-87.0, 88.0);
            let k = (c * std::f32::consts::LOG2_E + 12_582_912.0) - 12_582_912.0;
            let r = (c - k * 0.693_145_75) - k * 1.428_606_8e-6;
            let p = 1.0
                + r * (1.0
                    + r * (0.5
                        + r * (1.0 / 6.0
                            + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
            let cast = p * f32::from_bits(((k as i32 + 127) << 23) as u32);
            assert_eq!(exp_approx(x).to_bits(), cast.to_bits(), "x = {x}");
        }
    }

    /// The chunk loops (AVX2 builds on a CPU that has it) return exactly the scalar
    /// functions' values, which this test computes in a baseline build.
    #[test]
    fn chunk_loops_equal_the_scalar_functions_bit_for_bit() {
        let x = sweep();
        let dy: Vec<f32> = x.iter().map(|v| (v * 0.37).sin()).collect();
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();

        let mut y = vec![0.0; x.len()];
        gelu_chunk(&mut y, &x);
        let want: Vec<f32> = x.iter().map(|&v| gelu_scalar(v)).collect();
        assert_eq!(bits(&y), bits(&want), "gelu");

        gelu_backward_chunk(&mut y, &x, &dy);
        let want: Vec<f32> = x
            .iter()
            .zip(&dy)
            .map(|(&v, &g)| g * gelu_grad_scalar(v))
            .collect();
        assert_eq!(bits(&y), bits(&want), "gelu backward");

        let half = 8; // rows [a | b] of 16
        let rows = x.len() / (2 * half);
        let x = &x[..rows * 2 * half];
        let mut y = vec![0.0; rows * half];
        glu_chunk(&mut y, x, half);
        let want: Vec<f32> = x
            .chunks_exact(2 * half)
            .flat_map(|r| (0..half).map(move |k| r[k] * sigmoid(r[half + k])))
            .collect();
        assert_eq!(bits(&y), bits(&want), "glu");

        let dy = &dy[..rows * half];
        let mut dx = vec![0.0; x.len()];
        glu_backward_chunk(&mut dx, x, dy, half);
        let want: Vec<f32> = x
            .chunks_exact(2 * half)
            .zip(dy.chunks_exact(half))
            .flat_map(|(r, g)| {
                let s: Vec<f32> = (0..half).map(|k| sigmoid(r[half + k])).collect();
                let da: Vec<f32> = (0..half).map(|k| g[k] * s[k]).collect();
                let db: Vec<f32> = (0..half)
                    .map(|k| g[k] * r[k] * s[k] * (1.0 - s[k]))
                    .collect();
                da.into_iter().chain(db)
            })
            .collect();
        assert_eq!(bits(&dx), bits(&want), "glu backward");
    }
}
