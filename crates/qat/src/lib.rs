//! # qat
//!
//! Fake quantization, post-training calibration (PTQ) and quantization-aware training (QAT)
//! for the S4D classifier of Zhao et al., "Quantizing Small-Scale State-Space Models for Edge
//! AI" (2025).
//!
//! This crate owns: the rounding rule ([`rounding`]), uniform quantizers and their serde state
//! ([`quantizer`]), range observers ([`observer`]), the STE fake-quant op ([`fake_quant`]), the
//! per-component [`QuantSpec`] with presets, the quantized recurrent model
//! [`QuantizedClassifier`] with [`calibrate`] and the three QAT parameterizations, the
//! quantized scan ([`quantized_scan`]), memory accounting ([`memory`]) and state balancing
//! ([`balance`]), a free per-mode rescaling that helps low-bit states.
//!
//! It leaves the float model (parameters, discretization, convolution/recurrent views) to
//! `s4d-model`, and data loading, training loops, optimizers and evaluation to `experiments`.

#![warn(missing_docs)]

pub mod autobits;
pub mod balance;
pub mod error;
pub mod fake_quant;
pub mod fake_quant_op;
pub mod integer;
pub mod memory;
pub mod observer;
pub mod polar;
pub mod quantized_model;
pub mod quantizer;
pub mod rounding;
pub mod scan;
pub mod spec;

pub use balance::{BlockBalance, balance_state};
pub use error::{QatError, Result};
pub use fake_quant::{fake_quant_affine, ste_round};
pub use fake_quant_op::{fused_fake_quant, fused_fake_quant_supported};
pub use memory::{MemoryEntry, MemoryKind, MemoryReport, ModelDims};
pub use observer::Observer;
pub use polar::AbarGrid;
pub use quantized_model::{
    ComponentQuantizers, DiscreteSsm, Parameterization, QuantStateFile, QuantizedClassifier,
    calibrate,
};
pub use quantizer::{Calibration, Quantizer, QuantizerConfig, QuantizerState, RangeMethod};
pub use rounding::{round_half_even, round_half_even_f32};
pub use scan::{StateQuant, quantized_scan};
pub use spec::{
    BlockFeatures, Component, PointFields, PointOverride, QuantPoint, QuantSpec, SensitivityCase,
};
