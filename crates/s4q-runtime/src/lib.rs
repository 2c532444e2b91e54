//! # s4q-runtime
//!
//! Integer-only inference of a quantized S4D classifier (Zhao et al. 2025) on a
//! microcontroller: `#![no_std]`, no allocation, no floating point anywhere on the inference
//! path. It reads the versioned binary model file (`.s4qm`) that `experiments export --format
//! runtime` writes from a PTQ- or QAT-quantized checkpoint and computes, bit for bit, what the
//! integer reference `qat::integer` computes (and what the exported C computes on a host or a
//! Cortex-M4). Models are one S4D block (the paper's, format version 2) or a stack of blocks
//! with residual sums and pre- or post-norms (LayerNorm, BatchNorm; version 3, see [`format`]
//! and the `model` module's arithmetic).
//!
//! - [`format`]: header (magic, version, length, CRC-32) and the bounds-checked reader;
//!   malformed files give an [`Error`], never a panic.
//! - [`fixed`]: the one rounding rule (half to even) and fixed-point requantization.
//! - [`norm`]: the integer LayerNorm, per-channel affine and residual-sum arithmetic, shared
//!   with the reference.
//! - [`Model`]: zero-copy parsed model; [`Model::step`] (streaming: one input, logits so far)
//!   and [`Model::classify`] (whole sequence); [`State`] lives in caller memory
//!   ([`StateStorage`] for compile-time sizes).
//!
//! ```no_run
//! # fn demo(file: &[u8], pixels: &[i8]) -> Result<usize, s4q_runtime::Error> {
//! let model = s4q_runtime::Model::parse(file)?;
//! let mut storage = s4q_runtime::StateStorage::<4096, 64>::default();
//! let mut state = storage.state(&model)?;
//! let mut logits = [0i8; 10];
//! model.classify(&mut state, pixels, &mut logits)
//! # }
//! ```

#![no_std]
#![warn(missing_docs)]

pub mod fixed;
pub mod format;
mod model;
pub mod norm;

pub use format::{Error, HEADER_LEN, MAGIC, VERSION, VERSION_ONE_BLOCK, crc32};
pub use model::{
    MAX_BLOCKS, MAX_DIM, MAX_STEPS, Model, SIGMOID_IN_FRAC, SIGMOID_INTERP_BITS, SIGMOID_LEN,
    SIGMOID_OUT_FRAC, State, StateStorage, argmax,
};
