//! The fused diagonal scan as a burn backend extension with a hand-written backward.
//!
//! burn tensors carry no backend type, so the op is a `#[backend_extension]` trait implemented
//! for the CPU backends (Flex, NdArray) and for `Autodiff<B>` over them. Both run the host
//! loops of [`crate::scan_kernel`]: inputs are read back once per call (cheap next to an
//! `O(B H L M)` scan), and the autodiff node stores them plus the state checkpoints for the
//! reverse-time adjoint pass. Other backends (CubeCL) keep the composed tensor path:
//! [`fused_scan_supported`] says which one a device gets.

// NdArray is deprecated upstream but still a supported backend of s4q; the extension macro
// names it in generated code, which item-level `allow`s do not reach.
#![allow(deprecated)]

use std::sync::Arc;

use burn::backend::NdArray;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::{
    Autodiff, Backend, Dispatch, Flex, TensorMetadata, backend_extension, tensor::FloatTensor,
};
use burn::prelude::*;

use crate::backend::backend_kind;
use crate::complex::ComplexTensor;
use crate::host::{
    HostTarget, HostValues, from_host, host_values, record_host_op, register_host_grads,
};
use crate::scan_kernel::{
    ScanDims, ScanLayout, ScanMatrices, StateGrid, StateQuantizer, scan_backward, scan_forward,
};

/// The fused scan as a backend operation. `u: [B, H, L]` or `[B, L, H]` (`layout`);
/// `a_*, b_*, c_*: [H, M]`; `d, scale, zero_point: [H]` (`scale` and `zero_point` are read
/// only when `grid` is set). Returns `y` in the layout of `u`.
#[backend_extension(Flex, NdArray, Autodiff)]
pub trait FusedScanBackend: Backend {
    /// `x_t = Q(Abar x_{t-1} + Bbar u_t)`, `y_t = 2 Re(C x_t) + D u_t` over the whole sequence.
    #[allow(clippy::too_many_arguments)]
    fn fused_diagonal_scan(
        u: FloatTensor<Self>,
        a_re: FloatTensor<Self>,
        a_im: FloatTensor<Self>,
        b_re: FloatTensor<Self>,
        b_im: FloatTensor<Self>,
        c_re: FloatTensor<Self>,
        c_im: FloatTensor<Self>,
        d: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        zero_point: FloatTensor<Self>,
        grid: Option<StateGrid>,
        layout: ScanLayout,
    ) -> FloatTensor<Self>;
}

/// Every input of the op, on the host.
#[derive(Debug)]
struct HostScan {
    dims: ScanDims,
    u: HostValues,
    /// `a_re, a_im, b_re, b_im, c_re, c_im, d, scale, zero_point`.
    mats: [HostValues; 9],
    grid: Option<StateGrid>,
}

impl HostScan {
    #[allow(clippy::too_many_arguments)]
    fn read<B: Backend>(
        u: FloatTensor<B>,
        a_re: FloatTensor<B>,
        a_im: FloatTensor<B>,
        b_re: FloatTensor<B>,
        b_im: FloatTensor<B>,
        c_re: FloatTensor<B>,
        c_im: FloatTensor<B>,
        d: FloatTensor<B>,
        scale: FloatTensor<B>,
        zero_point: FloatTensor<B>,
        grid: Option<StateGrid>,
        layout: ScanLayout,
    ) -> Self {
        let us = u.shape();
        let ms = a_re.shape();
        let head_axis = match layout {
            ScanLayout::ChannelMajor => 1,
            ScanLayout::TimeMajor => 2,
        };
        assert!(
            us.num_dims() == 3 && ms.num_dims() == 2 && us[head_axis] == ms[0],
            "fused scan: expected u {} and matrices [H, M], got {us:?} and {ms:?}",
            if head_axis == 1 {
                "[B, H, L]"
            } else {
                "[B, L, H]"
            }
        );
        let dims = ScanDims {
            batch: us[0],
            heads: us[head_axis],
            len: us[3 - head_axis],
            modes: ms[1],
            layout,
        };
        let mats = [
            host_values::<B>(a_re),
            host_values::<B>(a_im),
            host_values::<B>(b_re),
            host_values::<B>(b_im),
            host_values::<B>(c_re),
            host_values::<B>(c_im),
            host_values::<B>(d),
            host_values::<B>(scale),
            host_values::<B>(zero_point),
        ];
        let hm = dims.heads * dims.modes;
        let expected = [hm, hm, hm, hm, hm, hm, dims.heads, dims.heads, dims.heads];
        for (i, (m, n)) in mats.iter().zip(expected).enumerate() {
            assert!(
                m.len() == n || (i >= 7 && grid.is_none()),
                "fused scan: input {i} has {} values, expected {n}",
                m.len()
            );
        }
        Self {
            dims,
            u: host_values::<B>(u),
            mats,
            grid,
        }
    }

    fn matrices(&self) -> ScanMatrices<'_> {
        ScanMatrices::from_vecs(&self.mats)
    }

    /// The state quantizer; `learn_scale`: whether a backward pass should compute `dL/ds`.
    fn quantizer(&self, learn_scale: bool) -> Option<StateQuantizer<'_>> {
        self.grid.map(|grid| StateQuantizer {
            grid,
            scale: &self.mats[7],
            zero_point: &self.mats[8],
            learn_scale,
        })
    }

    fn forward(&self, keep_checkpoints: bool) -> (Vec<f32>, Vec<f32>) {
        let out = scan_forward(
            self.dims,
            &self.matrices(),
            self.quantizer(false).as_ref(),
            &self.u,
            keep_checkpoints,
        );
        (out.y, out.checkpoints)
    }

    fn shape(&self) -> Vec<usize> {
        let ScanDims {
            batch, heads, len, ..
        } = self.dims;
        match self.dims.layout {
            ScanLayout::ChannelMajor => vec![batch, heads, len],
            ScanLayout::TimeMajor => vec![batch, len, heads],
        }
    }
}

/// The host implementation shared by the concrete CPU backends.
#[allow(clippy::too_many_arguments)]
fn host_scan<B: Backend>(
    u: FloatTensor<B>,
    a_re: FloatTensor<B>,
    a_im: FloatTensor<B>,
    b_re: FloatTensor<B>,
    b_im: FloatTensor<B>,
    c_re: FloatTensor<B>,
    c_im: FloatTensor<B>,
    d: FloatTensor<B>,
    scale: FloatTensor<B>,
    zero_point: FloatTensor<B>,
    grid: Option<StateGrid>,
    layout: ScanLayout,
) -> FloatTensor<B> {
    let (device, dtype) = (u.device(), u.dtype());
    let host = HostScan::read::<B>(
        u, a_re, a_im, b_re, b_im, c_re, c_im, d, scale, zero_point, grid, layout,
    );
    let (y, _) = host.forward(false);
    from_host::<B>(y, host.shape(), dtype, &device)
}

/// The concrete CPU backends run [`host_scan`]; one macro so the two impls cannot drift.
macro_rules! host_scan_backend {
    ($($backend:ty),*) => {$(
        impl FusedScanBackend for $backend {
            fn fused_diagonal_scan(
                u: FloatTensor<Self>,
                a_re: FloatTensor<Self>,
                a_im: FloatTensor<Self>,
                b_re: FloatTensor<Self>,
                b_im: FloatTensor<Self>,
                c_re: FloatTensor<Self>,
                c_im: FloatTensor<Self>,
                d: FloatTensor<Self>,
                scale: FloatTensor<Self>,
                zero_point: FloatTensor<Self>,
                grid: Option<StateGrid>,
                layout: ScanLayout,
            ) -> FloatTensor<Self> {
                host_scan::<Self>(
                    u, a_re, a_im, b_re, b_im, c_re, c_im, d, scale, zero_point, grid, layout,
                )
            }
        }
    )*};
}

host_scan_backend!(Flex, NdArray);

/// What the backward pass keeps from the forward: the host inputs and state checkpoints.
#[derive(Debug, Clone)]
struct SavedScan<D> {
    host: Arc<HostScan>,
    checkpoints: Arc<Vec<f32>>,
    target: HostTarget<D>,
}

#[derive(Debug)]
struct FusedScanBackward;

impl<B: Backend> Backward<B, 10> for FusedScanBackward {
    type State = SavedScan<B::Device>;

    fn backward(self, ops: Ops<Self::State, 10>, grads: &mut Gradients, _: &mut Checkpointer) {
        let saved = ops.state;
        let host = &saved.host;
        let dy = host_values::<B>(grads.consume::<B>(&ops.node));
        // The scale's gradient is only worked out when the scale is tracked (LSQ).
        let learn_scale = ops.parents[8].is_some();
        let g = scan_backward(
            host.dims,
            &host.matrices(),
            host.quantizer(learn_scale).as_ref(),
            &host.u,
            &saved.checkpoints,
            &dy,
        );
        let (h, m) = (host.dims.heads, host.dims.modes);
        let parents = ops.parents.map(|p| p.map(|node| node.id));
        let outputs = [
            Some((g.u, host.shape())),
            Some((g.a_re, vec![h, m])),
            Some((g.a_im, vec![h, m])),
            Some((g.b_re, vec![h, m])),
            Some((g.b_im, vec![h, m])),
            Some((g.c_re, vec![h, m])),
            Some((g.c_im, vec![h, m])),
            Some((g.d, vec![h])),
            host.grid.map(|_| (g.scale, vec![h])),
            None, // the zero point is an integer constant
        ];
        register_host_grads::<B, 10>(grads, parents, outputs, &saved.target);
    }
}

impl<B: Backend + FusedScanBackend, C: CheckpointStrategy> FusedScanBackend for Autodiff<B, C> {
    fn fused_diagonal_scan(
        u: FloatTensor<Self>,
        a_re: FloatTensor<Self>,
        a_im: FloatTensor<Self>,
        b_re: FloatTensor<Self>,
        b_im: FloatTensor<Self>,
        c_re: FloatTensor<Self>,
        c_im: FloatTensor<Self>,
        d: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        zero_point: FloatTensor<Self>,
        grid: Option<StateGrid>,
        layout: ScanLayout,
    ) -> FloatTensor<Self> {
        let guards = [
            u.node(),
            a_re.node(),
            a_im.node(),
            b_re.node(),
            b_im.node(),
            c_re.node(),
            c_im.node(),
            d.node(),
            scale.node(),
            zero_point.node(),
        ];
        let target = HostTarget::of::<B>(u.primitive());
        let host = HostScan::read::<B>(
            u.into_primitive(),
            a_re.into_primitive(),
            a_im.into_primitive(),
            b_re.into_primitive(),
            b_im.into_primitive(),
            c_re.into_primitive(),
            c_im.into_primitive(),
            d.into_primitive(),
            scale.into_primitive(),
            zero_point.into_primitive(),
            grid,
            layout,
        );
        record_host_op::<B, C, _, 10>(FusedScanBackward, guards, |keep| {
            let (y, checkpoints) = host.forward(keep);
            let out = target.tensor::<B>(y, host.shape());
            let saved = SavedScan {
                host: Arc::new(host),
                checkpoints: Arc::new(checkpoints),
                target,
            };
            (out, saved)
        })
    }
}

/// A static state quantizer for [`fused_diagonal_scan`]: per-head scale (trainable for LSQ)
/// and zero point, `[H]` each, on the grid `grid`.
#[derive(Debug, Clone)]
pub struct FusedStateQuant {
    /// Step size per head, `[H]`; gradients reach it when it is a tracked parameter.
    pub scale: Tensor<1>,
    /// Zero point per head, `[H]`, integer-valued.
    pub zero_point: Tensor<1>,
    /// Integer range and clamp.
    pub grid: StateGrid,
}

/// Whether [`fused_diagonal_scan`] runs on this device (the CPU backends). Elsewhere callers
/// use the composed scan ([`crate::diagonal_scan_with`]), which computes the same function.
pub fn fused_scan_supported(device: &Device) -> bool {
    crate::backend::op_path(device) == crate::backend::OpPath::Fused
}

/// The whole diagonal recurrence in one op: `x_t = Q(Abar x_{t-1} + Bbar u_t)`,
/// `y_t = 2 Re(sum_n C x_t) + D u_t` from `x_{-1} = 0`, where `Q` is the identity or the
/// clamp-and-fake-quantize of `quant`. Differentiable in every input (clipped STE through
/// `Q`; the scale gets its LSQ gradient). `a_bar, b_bar, c: [H, M]`, `d: [H]`,
/// `u: [B, H, L]`; returns `y: [B, H, L]`.
///
/// # Panics
/// On a device where [`fused_scan_supported`] is false.
pub fn fused_diagonal_scan(
    a_bar: &ComplexTensor<2>,
    b_bar: &ComplexTensor<2>,
    c: &ComplexTensor<2>,
    d: &Tensor<1>,
    u: Tensor<3>,
    quant: Option<FusedStateQuant>,
) -> Tensor<3> {
    fused_scan_in(a_bar, b_bar, c, d, u, quant, ScanLayout::ChannelMajor)
}

/// [`fused_diagonal_scan`] on the model's own layout, `u: [B, L, H]` -> `y: [B, L, H]`: the
/// kernel reads and writes it in place, so callers need no transposes around the scan.
///
/// # Panics
/// On a device where [`fused_scan_supported`] is false.
pub fn fused_diagonal_scan_time_major(
    a_bar: &ComplexTensor<2>,
    b_bar: &ComplexTensor<2>,
    c: &ComplexTensor<2>,
    d: &Tensor<1>,
    u: Tensor<3>,
    quant: Option<FusedStateQuant>,
) -> Tensor<3> {
    fused_scan_in(a_bar, b_bar, c, d, u, quant, ScanLayout::TimeMajor)
}

fn fused_scan_in(
    a_bar: &ComplexTensor<2>,
    b_bar: &ComplexTensor<2>,
    c: &ComplexTensor<2>,
    d: &Tensor<1>,
    u: Tensor<3>,
    quant: Option<FusedStateQuant>,
    layout: ScanLayout,
) -> Tensor<3> {
    let device = u.device();
    assert!(
        fused_scan_supported(&device),
        "fused scan: no kernel for {:?}; use the composed scan",
        backend_kind(&device)
    );
    let heads = d.dims()[0];
    let (scale, zero_point, grid) = match quant {
        Some(q) => (q.scale, q.zero_point, Some(q.grid)),
        None => (
            Tensor::<1>::ones([heads], &device),
            Tensor::<1>::zeros([heads], &device),
            None,
        ),
    };
    let y = <Dispatch as FusedScanBackend>::fused_diagonal_scan(
        u.into_dispatch(),
        a_bar.re.clone().into_dispatch(),
        a_bar.im.clone().into_dispatch(),
        b_bar.re.clone().into_dispatch(),
        b_bar.im.clone().into_dispatch(),
        c.re.clone().into_dispatch(),
        c.im.clone().into_dispatch(),
        d.clone().into_dispatch(),
        scale.into_dispatch(),
        zero_point.into_dispatch(),
        grid,
        layout,
    );
    Tensor::from_dispatch(y)
}
