//! The fused S4D convolution (kernel + FFT causal convolution + skip) as a burn backend
//! extension with a hand-written backward; the host loops are in [`crate::conv_kernel`].
//!
//! Same pattern as [`crate::scan_op`]: implemented for Flex and NdArray and for `Autodiff<B>`
//! over them; CubeCL backends keep the composed Vandermonde + `burn::signal` path
//! ([`fused_conv_supported`] says which a device gets).

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
use crate::conv_kernel::{ConvDims, ConvForward, ConvParams, conv_backward, conv_forward};
use crate::host::{
    HostTarget, HostValues, from_host, host_values, record_host_op, register_host_grads,
};

/// The fused convolution as a backend operation. `u: [B, L, H]`; `a_*` (`Abar`) and `w_*`
/// (`C * Bbar`): `[H, M]`; `d: [H]`. Returns `y: [B, L, H]`.
#[backend_extension(Flex, NdArray, Autodiff)]
pub trait FusedConvBackend: Backend {
    /// `y = causal_conv(u, K) + D u` with `K[h, l] = 2 Re(sum_m W Abar^l)`.
    fn fused_s4d_conv(
        u: FloatTensor<Self>,
        a_re: FloatTensor<Self>,
        a_im: FloatTensor<Self>,
        w_re: FloatTensor<Self>,
        w_im: FloatTensor<Self>,
        d: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

/// Every input of the op, on the host.
#[derive(Debug)]
struct HostConv {
    dims: ConvDims,
    u: HostValues,
    /// `a_re, a_im, w_re, w_im, d`.
    mats: [HostValues; 5],
}

impl HostConv {
    fn read<B: Backend>(
        u: FloatTensor<B>,
        a_re: FloatTensor<B>,
        a_im: FloatTensor<B>,
        w_re: FloatTensor<B>,
        w_im: FloatTensor<B>,
        d: FloatTensor<B>,
    ) -> Self {
        let (us, ms) = (u.shape(), a_re.shape());
        assert!(
            us.num_dims() == 3 && ms.num_dims() == 2 && us[2] == ms[0],
            "fused conv: expected u [B, L, H] and matrices [H, M], got {us:?} and {ms:?}"
        );
        let dims = ConvDims {
            batch: us[0],
            len: us[1],
            heads: us[2],
            modes: ms[1],
        };
        Self {
            dims,
            u: host_values::<B>(u),
            mats: [
                host_values::<B>(a_re),
                host_values::<B>(a_im),
                host_values::<B>(w_re),
                host_values::<B>(w_im),
                host_values::<B>(d),
            ],
        }
    }

    fn params(&self) -> ConvParams<'_> {
        let [a_re, a_im, w_re, w_im, d] = &self.mats;
        ConvParams {
            a_re,
            a_im,
            w_re,
            w_im,
            d,
        }
    }

    fn forward(&self, keep: bool) -> ConvForward {
        conv_forward(self.dims, &self.params(), &self.u, keep)
    }

    fn shape(&self) -> Vec<usize> {
        vec![self.dims.batch, self.dims.len, self.dims.heads]
    }
}

/// The concrete CPU backends run the host loops; one macro so the impls cannot drift.
macro_rules! host_conv_backend {
    ($($backend:ty),*) => {$(
        impl FusedConvBackend for $backend {
            fn fused_s4d_conv(
                u: FloatTensor<Self>,
                a_re: FloatTensor<Self>,
                a_im: FloatTensor<Self>,
                w_re: FloatTensor<Self>,
                w_im: FloatTensor<Self>,
                d: FloatTensor<Self>,
            ) -> FloatTensor<Self> {
                let (device, dtype) = (u.device(), u.dtype());
                let host = HostConv::read::<Self>(u, a_re, a_im, w_re, w_im, d);
                let y = host.forward(false).y;
                from_host::<Self>(y, host.shape(), dtype, &device)
            }
        }
    )*};
}

host_conv_backend!(Flex, NdArray);

/// What the backward pass keeps: the host inputs and the spectra of the forward.
#[derive(Debug, Clone)]
struct SavedConv<D> {
    host: Arc<HostConv>,
    forward: Arc<ConvForward>,
    target: HostTarget<D>,
}

#[derive(Debug)]
struct FusedConvBackward;

impl<B: Backend> Backward<B, 6> for FusedConvBackward {
    type State = SavedConv<B::Device>;

    fn backward(self, ops: Ops<Self::State, 6>, grads: &mut Gradients, _: &mut Checkpointer) {
        let saved = ops.state;
        let host = &saved.host;
        let dy = host_values::<B>(grads.consume::<B>(&ops.node));
        let g = conv_backward(host.dims, &host.params(), &host.u, &saved.forward, &dy);
        let (h, m) = (host.dims.heads, host.dims.modes);
        let parents = ops.parents.map(|p| p.map(|node| node.id));
        let outputs = [
            Some((g.u, host.shape())),
            Some((g.a_re, vec![h, m])),
            Some((g.a_im, vec![h, m])),
            Some((g.w_re, vec![h, m])),
            Some((g.w_im, vec![h, m])),
            Some((g.d, vec![h])),
        ];
        register_host_grads::<B, 6>(grads, parents, outputs, &saved.target);
    }
}

impl<B: Backend + FusedConvBackend, C: CheckpointStrategy> FusedConvBackend for Autodiff<B, C> {
    fn fused_s4d_conv(
        u: FloatTensor<Self>,
        a_re: FloatTensor<Self>,
        a_im: FloatTensor<Self>,
        w_re: FloatTensor<Self>,
        w_im: FloatTensor<Self>,
        d: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let guards = [
            u.node(),
            a_re.node(),
            a_im.node(),
            w_re.node(),
            w_im.node(),
            d.node(),
        ];
        let target = HostTarget::of::<B>(u.primitive());
        let host = HostConv::read::<B>(
            u.into_primitive(),
            a_re.into_primitive(),
            a_im.into_primitive(),
            w_re.into_primitive(),
            w_im.into_primitive(),
            d.into_primitive(),
        );
        record_host_op::<B, C, _, 6>(FusedConvBackward, guards, |keep| {
            let mut forward = host.forward(keep);
            // The backward reads the spectra only: move `y` out instead of copying it, so
            // the saved state does not hold a second copy of the output.
            let y = std::mem::take(&mut forward.y);
            let out = target.tensor::<B>(y, host.shape());
            let saved = SavedConv {
                host: Arc::new(host),
                forward: Arc::new(forward),
                target,
            };
            (out, saved)
        })
    }
}

/// Whether [`fused_s4d_conv`] runs on this device (the CPU backends). Elsewhere the layer
/// composes [`crate::vandermonde_kernel`] and [`crate::causal_conv`], the same function.
pub fn fused_conv_supported(device: &Device) -> bool {
    crate::backend::op_path(device) == crate::backend::OpPath::Fused
}

/// The S4D layer's convolution view in one op: `y = causal_conv(u, K) + D u` with
/// `K[h, l] = 2 Re(sum_m (C Bbar)[h,m] Abar[h,m]^l)`, on time-major `u: [B, L, H]` (no
/// transposes), differentiable in `u`, `Abar`, `Bbar`, `C` and `D`. Returns `[B, L, H]`.
///
/// # Panics
/// On a device where [`fused_conv_supported`] is false.
pub fn fused_s4d_conv(
    a_bar: &ComplexTensor<2>,
    b_bar: &ComplexTensor<2>,
    c: &ComplexTensor<2>,
    d: &Tensor<1>,
    u: Tensor<3>,
) -> Tensor<3> {
    let device = u.device();
    assert!(
        fused_conv_supported(&device),
        "fused conv: no kernel for {:?}; use the composed convolution",
        backend_kind(&device)
    );
    let w = c.clone() * b_bar.clone();
    let y = <Dispatch as FusedConvBackend>::fused_s4d_conv(
        u.into_dispatch(),
        a_bar.re.clone().into_dispatch(),
        a_bar.im.clone().into_dispatch(),
        w.re.into_dispatch(),
        w.im.into_dispatch(),
        d.clone().into_dispatch(),
    );
    Tensor::from_dispatch(y)
}
