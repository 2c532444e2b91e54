//! # s4d-model
//!
//! The diagonal state-space layer S4D and the small sequence classifier of
//! Zhao et al., "Quantizing Small-Scale State-Space Models for Edge AI" (2025), as burn modules.
//!
//! This crate owns the float model: continuous parameters, discretization (ZOH or bilinear),
//! the convolution view (Vandermonde kernel + FFT) used for fast float training, and the
//! recurrent view (a diagonal complex scan, plus a streaming [`S4d::step`]) that edge devices
//! run. On CPU backends both views are fused ops with hand-written backwards, so training is
//! not a graph of many small tensor ops: the recurrent view is [`fused_diagonal_scan`] (host
//! loops in [`scan_kernel`], reverse-time adjoint, optional in-loop state quantizer), the
//! convolution view is [`fused_s4d_conv`] (host loops in [`conv_kernel`]: kernel, realfft
//! convolution and skip), and GELU, GLU and the block's mixing are fused too ([`gelu`],
//! [`glu_last`], [`linear_glu`]). Elsewhere (GPUs) composed tensor ops compute the same
//! functions. The crate knows nothing about quantization: the `qat` crate reads
//! [`Discretized`] matrices from here and decides how to quantize them. Data loading lives in `datasets`, training loops in `s4q-train`.
//!
//! Shapes are written next to every tensor: `B` batch, `L` sequence length, `H` heads (the model
//! width, one independent SSM per head), `M = N / 2` complex modes per head.
//!
//! ```
//! use burn::prelude::*;
//! use s4d_model::{S4dClassifierConfig, SsmMode};
//!
//! let device = Device::flex();
//! let model = S4dClassifierConfig::preset("s4d-16h").unwrap().init(&device);
//! assert_eq!(model.num_params(), 3_850);
//! let x = Tensor::<3>::zeros([2, 32, 1], &device); // [B, L, d_input]
//! let logits = model.forward(x, SsmMode::Convolution); // [B, 10]
//! assert_eq!(logits.dims(), [2, 10]);
//! ```

mod activation;
mod backend;
mod classifier;
mod complex;
mod config;
mod conv;
pub mod conv_kernel;
mod conv_op;
pub mod cpu;
mod discretize;
mod error;
pub mod host;
mod kernel;
mod layer;
mod linear_glu;
mod pointwise;
mod scan;
pub mod scan_kernel;
mod scan_op;

pub use activation::{Activation, qgelu};
pub use backend::{
    BackendKind, FORCE_COMPOSED_ENV, OpPath, backend_kind, force_composed, has_native_fft, op_path,
    set_force_composed,
};
pub use classifier::{
    NormKind, NormPosition, S4dBlock, S4dClassifier, S4dClassifierConfig, masked_mean,
};
pub use complex::ComplexTensor;
pub use config::{Discretization, S4dConfig, S4dInit, SsmMode};
pub use conv::{causal_conv, causal_conv_fft, causal_conv_toeplitz};
pub use conv_op::{FusedConvBackend, fused_conv_supported, fused_s4d_conv};
pub use discretize::Discretized;
pub use error::ModelError;
pub use kernel::vandermonde_kernel;
pub use layer::S4d;
pub use linear_glu::{FusedLinearGluBackend, linear_glu};
pub use pointwise::{
    FusedPointwiseBackend, exp_approx, fused_pointwise_supported, gelu, gelu_grad_scalar,
    gelu_scalar, glu_last,
};
pub use scan::{S4dState, diagonal_scan, diagonal_scan_with, scan_step};
pub use scan_kernel::{ScanLayout, StateGrid};
pub use scan_op::{
    FusedScanBackend, FusedStateQuant, fused_diagonal_scan, fused_diagonal_scan_time_major,
    fused_scan_supported,
};
