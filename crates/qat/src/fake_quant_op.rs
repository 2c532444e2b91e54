//! [`fake_quant_affine`](crate::fake_quant_affine) as one backend op with a hand-written
//! backward, for the CPU backends.
//!
//! Composed, a fake quantizer is about ten tensor ops (divide, add, clamp, round, the STE's
//! detach and add, subtract, multiply), each a full pass over an activation tensor with its own
//! autodiff node. QAT in recurrent mode runs three such quantizers on `[B, L, H]` activations
//! per block, so on CPU they cost as much as the scan. Fused: one pass forward, one backward,
//! the same function bit for bit (same f32 operations in the same order, round half to even):
//!
//! - forward `y = (round(clamp(x / s + z, qmin, qmax)) - z) * s`;
//! - `dx = dy` where `qmin <= x / s + z <= qmax`, else 0 (the clipped STE);
//! - `ds = sum dy * (round(v) - v)` inside the range, `dy * (q - z)` at a clamped bound `q`
//!   (LSQ's step-size gradient), per channel; the zero point gets none (it is an integer
//!   constant).

// NdArray is deprecated upstream but still a supported backend of s4q; the extension macro
// names it in generated code, which item-level `allow`s do not reach.
#![allow(deprecated)]

use burn::backend::NdArray;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::{
    Autodiff, Backend, Dispatch, Flex, TensorMetadata, backend_extension, tensor::FloatTensor,
};
use burn::prelude::*;
use rayon::prelude::*;
use s4d_model::backend_kind;
use s4d_model::host::{
    HostTarget, HostValues, from_host, host_values, record_host_op, register_host_grads,
};
use s4d_model::scan_kernel::round_half_even_small;

/// The integer grid and the channel layout of one fused fake quantization: element `i` of the
/// flat input belongs to channel `(i / inner) % channels`, `channels` being the length of
/// the scale (1 for a per-tensor quantizer).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FakeQuantLayout {
    /// Lowest integer code.
    pub qmin: f32,
    /// Highest integer code.
    pub qmax: f32,
    /// Product of the dimensions after the channel axis (1 for the last axis).
    pub inner: usize,
}

/// The fused fake quantizer as a backend operation: `x` any shape, `scale` and `zero_point`
/// `[C]`.
#[backend_extension(Flex, NdArray, Autodiff)]
pub trait FakeQuantBackend: Backend {
    /// `(round(clamp(x / s + z, qmin, qmax)) - z) * s` per channel.
    fn fused_fake_quant(
        x: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        zero_point: FloatTensor<Self>,
        layout: FakeQuantLayout,
    ) -> FloatTensor<Self>;
}

/// Channel of flat index `i`.
#[inline]
fn channel(i: usize, layout: &FakeQuantLayout, channels: usize) -> usize {
    if channels == 1 {
        0
    } else {
        (i / layout.inner) % channels
    }
}

/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

/// One element of the forward: `(round(clamp(v / s + z, qmin, qmax)) - z) * s`.
#[inline(always)]
fn quantize_one(v: f32, s: f32, z: f32, layout: &FakeQuantLayout) -> f32 {
    let q = round_half_even_small((v / s + z).clamp(layout.qmin, layout.qmax));
    (q - z) * s
}

s4d_model::avx2_dispatch! {
    /// The forward over a chunk with one scale.
    fn forward_chunk(y: &mut [f32], x: &[f32], s: f32, z: f32, layout: &FakeQuantLayout) {
        for (y, &v) in y.iter_mut().zip(x) {
            *y = quantize_one(v, s, z, layout);
        }
    }
}

s4d_model::avx2_dispatch! {
    /// The forward over whole rows with one scale per column (channels on the last axis).
    fn forward_rows(y: &mut [f32], x: &[f32], scale: &[f32], zero: &[f32], layout: &FakeQuantLayout) {
        let c = scale.len();
        for (yr, xr) in y.chunks_exact_mut(c).zip(x.chunks_exact(c)) {
            for k in 0..c {
                yr[k] = quantize_one(xr[k], scale[k], zero[k], layout);
            }
        }
    }
}

/// Rows of `c` values per parallel task: about [`CHUNK`] values.
fn rows_per_task(c: usize) -> usize {
    c * (CHUNK / c.max(1)).max(1)
}

/// Whether `len` values with `c` scales take the loops over whole rows (a per-tensor scale,
/// or channels on the last axis), which need no per-element channel lookup.
fn by_rows(len: usize, c: usize, layout: &FakeQuantLayout) -> bool {
    c == 1 || (layout.inner == 1 && len.is_multiple_of(c))
}

/// The forward on host buffers, in parallel chunks. Codes are clamped to the grid before
/// rounding, so the magic-number rounding (exact half-to-even below 2^22) applies and the
/// loops vectorize (eight lanes with AVX2) where `round_ties_even` would be a library call
/// per element. A per-tensor scale and channels on the last axis take loops without index
/// arithmetic; other channel axes look the channel up per element.
fn forward_host(x: &[f32], scale: &[f32], zero: &[f32], layout: &FakeQuantLayout) -> Vec<f32> {
    let c = scale.len();
    if by_rows(x.len(), c, layout) {
        let mut y = vec![0.0f32; x.len()];
        let per = rows_per_task(c);
        y.par_chunks_mut(per)
            .zip(x.par_chunks(per))
            .for_each(|(y, x)| {
                if c == 1 {
                    forward_chunk(y, x, scale[0], zero[0], layout)
                } else {
                    forward_rows(y, x, scale, zero, layout)
                }
            });
        return y;
    }
    x.par_iter()
        .with_min_len(CHUNK)
        .enumerate()
        .map(|(i, &v)| {
            let k = channel(i, layout, c);
            quantize_one(v, scale[k], zero[k], layout)
        })
        .collect()
}

/// Whether the clipped STE passes the gradient at grid coordinate `w = x / s + z`: unless
/// `w < qmin` or `w > qmax` (NaN passes, as in the composed op).
#[inline(always)]
fn ste_passes(w: f32, layout: &FakeQuantLayout) -> bool {
    !(w < layout.qmin || w > layout.qmax)
}

/// The clipped STE for one element: `g` where the code is inside the grid, else 0.
#[inline(always)]
fn ste_one(v: f32, g: f32, s: f32, z: f32, layout: &FakeQuantLayout) -> f32 {
    if ste_passes(v / s + z, layout) {
        g
    } else {
        0.0
    }
}

s4d_model::avx2_dispatch! {
    /// The input gradient over a chunk with one scale.
    fn ste_chunk(dx: &mut [f32], x: &[f32], dy: &[f32], s: f32, z: f32, layout: &FakeQuantLayout) {
        for ((d, &v), &g) in dx.iter_mut().zip(x).zip(dy) {
            *d = ste_one(v, g, s, z, layout);
        }
    }
}

s4d_model::avx2_dispatch! {
    /// The input gradient over whole rows with one scale per column.
    fn ste_rows(
        dx: &mut [f32],
        x: &[f32],
        dy: &[f32],
        scale: &[f32],
        zero: &[f32],
        layout: &FakeQuantLayout,
    ) {
        let c = scale.len();
        for ((dr, xr), gr) in dx.chunks_exact_mut(c).zip(x.chunks_exact(c)).zip(dy.chunks_exact(c)) {
            for k in 0..c {
                dr[k] = ste_one(xr[k], gr[k], scale[k], zero[k], layout);
            }
        }
    }
}

/// `(dx, ds)` on host buffers; `ds` sums per chunk in f64, then over chunks in order. With
/// `want_ds` false (a fixed scale, the usual QAT) `ds` is left zero and `dx` is one
/// vectorizable pass: the per-element f64 sum is a serial chain that would cost more than
/// the rest of the backward.
fn backward_host(
    x: &[f32],
    scale: &[f32],
    zero: &[f32],
    layout: &FakeQuantLayout,
    dy: &[f32],
    want_ds: bool,
) -> (Vec<f32>, Vec<f32>) {
    let c = scale.len();
    if !want_ds {
        let dx = if by_rows(x.len(), c, layout) {
            let mut dx = vec![0.0f32; x.len()];
            let per = rows_per_task(c);
            dx.par_chunks_mut(per)
                .zip(x.par_chunks(per).zip(dy.par_chunks(per)))
                .for_each(|(d, (x, g))| {
                    if c == 1 {
                        ste_chunk(d, x, g, scale[0], zero[0], layout)
                    } else {
                        ste_rows(d, x, g, scale, zero, layout)
                    }
                });
            dx
        } else {
            x.par_iter()
                .with_min_len(CHUNK)
                .zip(dy)
                .enumerate()
                .map(|(i, (&v, &g))| {
                    let k = channel(i, layout, c);
                    ste_one(v, g, scale[k], zero[k], layout)
                })
                .collect()
        };
        return (dx, vec![0.0; c]);
    }
    let mut dx = vec![0.0f32; x.len()];
    let partial: Vec<Vec<f64>> = dx
        .par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK).zip(dy.par_chunks(CHUNK)))
        .enumerate()
        .map(|(chunk, (dx, (x, dy)))| {
            let base = chunk * CHUNK;
            let mut ds = vec![0.0f64; c];
            for (i, ((d, &v), &g)) in dx.iter_mut().zip(x).zip(dy).enumerate() {
                let k = channel(base + i, layout, c);
                let (s, z) = (scale[k], zero[k]);
                let w = v / s + z;
                let inside = ste_passes(w, layout);
                let dq = if inside {
                    round_half_even_small(w) - w
                } else if w < layout.qmin {
                    layout.qmin - z
                } else {
                    layout.qmax - z
                };
                ds[k] += (g * dq) as f64;
                *d = if inside { g } else { 0.0 };
            }
            ds
        })
        .collect();
    let mut ds = vec![0.0f64; c];
    for p in &partial {
        ds.iter_mut().zip(p).for_each(|(a, b)| *a += b);
    }
    (dx, ds.into_iter().map(|v| v as f32).collect())
}

fn read_all<B: Backend>(
    x: FloatTensor<B>,
    scale: FloatTensor<B>,
    zero_point: FloatTensor<B>,
) -> (HostValues, HostValues, HostValues) {
    let (x, s, z) = (
        host_values::<B>(x),
        host_values::<B>(scale),
        host_values::<B>(zero_point),
    );
    assert!(
        !s.is_empty() && s.len() == z.len(),
        "fused fake quant: scale and zero point must have the same nonzero length"
    );
    (x, s, z)
}

macro_rules! host_fake_quant_backend {
    ($($backend:ty),*) => {$(
        impl FakeQuantBackend for $backend {
            fn fused_fake_quant(
                x: FloatTensor<Self>,
                scale: FloatTensor<Self>,
                zero_point: FloatTensor<Self>,
                layout: FakeQuantLayout,
            ) -> FloatTensor<Self> {
                let (device, dtype, shape) = (x.device(), x.dtype(), x.shape().to_vec());
                let (x, s, z) = read_all::<Self>(x, scale, zero_point);
                from_host::<Self>(forward_host(&x, &s, &z, &layout), shape, dtype, &device)
            }
        }
    )*};
}

host_fake_quant_backend!(Flex, NdArray);

/// What the backward keeps: the input and the quantizer's parameters, on the host.
#[derive(Debug, Clone)]
struct SavedFakeQuant<D> {
    x: HostValues,
    scale: HostValues,
    zero: HostValues,
    layout: FakeQuantLayout,
    shape: Vec<usize>,
    target: HostTarget<D>,
}

#[derive(Debug)]
struct FakeQuantBackward;

impl<B: Backend> Backward<B, 3> for FakeQuantBackward {
    type State = SavedFakeQuant<B::Device>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let saved = ops.state;
        let dy = host_values::<B>(grads.consume::<B>(&ops.node));
        // The scale's (LSQ) gradient is only worked out when the scale is tracked.
        let want_ds = ops.parents[1].is_some();
        let (dx, ds) = backward_host(
            &saved.x,
            &saved.scale,
            &saved.zero,
            &saved.layout,
            &dy,
            want_ds,
        );
        let c = saved.scale.len();
        let parents = ops.parents.map(|p| p.map(|node| node.id));
        // The zero point gets no gradient: it is an integer constant.
        let outputs = [Some((dx, saved.shape.clone())), Some((ds, vec![c])), None];
        register_host_grads::<B, 3>(grads, parents, outputs, &saved.target);
    }
}

impl<B: Backend + FakeQuantBackend, C: CheckpointStrategy> FakeQuantBackend for Autodiff<B, C> {
    fn fused_fake_quant(
        x: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        zero_point: FloatTensor<Self>,
        layout: FakeQuantLayout,
    ) -> FloatTensor<Self> {
        let guards = [x.node(), scale.node(), zero_point.node()];
        let target = HostTarget::of::<B>(x.primitive());
        let shape = x.primitive().shape().to_vec();
        let (xv, s, z) = read_all::<B>(
            x.into_primitive(),
            scale.into_primitive(),
            zero_point.into_primitive(),
        );
        let y = forward_host(&xv, &s, &z, &layout);
        let out = target.tensor::<B>(y, shape.clone());
        record_host_op::<B, C, _, 3>(FakeQuantBackward, guards, |_| {
            let saved = SavedFakeQuant {
                x: xv,
                scale: s,
                zero: z,
                layout,
                shape,
                target,
            };
            (out, saved)
        })
    }
}

/// Whether [`fused_fake_quant`] runs on this device (the CPU backends); elsewhere
/// [`crate::fake_quant_affine`] computes the same function from tensor ops.
pub fn fused_fake_quant_supported(device: &Device) -> bool {
    s4d_model::op_path(device) == s4d_model::OpPath::Fused
}

/// Fake-quantizes `x` with per-channel `scale` and `zero_point` (`[C]`, channel axis `axis`
/// of `x`, or per tensor when `C = 1`) on the grid `[qmin, qmax]`, in one op. Gradients: the
/// clipped STE for `x`, LSQ's for a tracked `scale`.
///
/// # Panics
/// On a device where [`fused_fake_quant_supported`] is false, when `C` is neither 1 nor the
/// length of `axis`, or for a grid beyond +-2^22 (24-bit codes; quantizers stop at 16).
pub fn fused_fake_quant<const D: usize>(
    x: Tensor<D>,
    scale: Tensor<1>,
    zero_point: Tensor<1>,
    axis: Option<usize>,
    qmin: f32,
    qmax: f32,
) -> Tensor<D> {
    let device = x.device();
    assert!(
        fused_fake_quant_supported(&device),
        "fused fake quant: no kernel for {:?}",
        backend_kind(&device)
    );
    assert!(
        qmin.abs() < 4_194_304.0 && qmax.abs() < 4_194_304.0 && qmin <= qmax,
        "fused fake quant: grid [{qmin}, {qmax}] must lie within +-2^22"
    );
    let dims = x.dims();
    let channels = scale.dims()[0];
    let inner = match axis {
        Some(a) if channels > 1 => {
            assert_eq!(
                dims[a], channels,
                "fused fake quant: {channels} scales for axis {a} of {dims:?}"
            );
            dims[a + 1..].iter().product()
        }
        _ => {
            assert_eq!(
                channels, 1,
                "fused fake quant: per-channel scale without an axis"
            );
            1
        }
    };
    let layout = FakeQuantLayout { qmin, qmax, inner };
    let y = <Dispatch as FakeQuantBackend>::fused_fake_quant(
        x.into_dispatch(),
        scale.into_dispatch(),
        zero_point.into_dispatch(),
        layout,
    );
    Tensor::from_dispatch(y)
}
