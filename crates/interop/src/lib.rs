//! # interop
//!
//! Moves S4D classifiers between PyTorch and s4q, so a model trained with the PyTorch code
//! most S4D work uses can be quantized and deployed here, and an s4q model can be handed back
//! to Python tools. The exchange format is safetensors (read and written with the
//! `safetensors` crate, no Python needed).
//!
//! Two layouts are built in ([`Layout::BUILTIN`]):
//! - `peer`: the PyTorch peer reference `S4DModel` (`shared/bench/peer_torch/s4d_ref.py`):
//!   `encoder.*`, `s4d.{log_dt, log_A_real, A_imag, B, C, D}`, `conv.*` (Conv1d, `[2H, H, 1]`),
//!   `decoder.*`;
//! - `state-spaces`: the S4D example model of the state-spaces repository (`s4_layers.{layer}.
//!   kernel.{log_dt, log_A_real, A_imag, C}`, `s4_layers.{layer}.D`, `output_linear.0`,
//!   `norms.{layer}`, residual blocks, `B` fixed at 1).
//!
//! Both compute exactly s4q's block: `dt = exp(log_dt)`, `A = -exp(log_A_real) + i A_imag`,
//! ZOH `Abar = exp(dt A)`, `Bbar = B (exp(dt A) - 1) / A`, kernel `K_l = 2 Re(sum C Bbar Abar^l)`,
//! `y = K * u + D u`, exact-erf GELU, pointwise Conv1d to `2H` channels, GLU (first half times
//! sigmoid of the second), mean over time, linear decoder.
//!
//! Other names can be given as a TOML name map (keys are [`Role::key`]; `{layer}` stands for
//! the block index; an empty name drops an optional role):
//!
//! ```toml
//! base = "peer"            # start from a built-in layout (optional)
//! residual = false         # optional flags; discretization = "zoh" | "bilinear";
//!                          # prenorm = true for blocks normalised on their input
//! [names]
//! "encoder.weight" = "embed.weight"
//! log_dt = "ssm.log_dt"
//! B = ""                   # no B tensor: B = 1, frozen
//! ```
//!
//! ```no_run
//! use burn::prelude::*;
//! # fn main() -> Result<(), interop::InteropError> {
//! let imported = interop::import_safetensors(
//!     std::path::Path::new("model.safetensors"),
//!     None, // detect the layout
//!     &Device::flex(),
//! )?;
//! let bytes = interop::export_safetensors(
//!     &imported.model,
//!     &imported.config,
//!     &interop::Layout::peer(),
//! )?;
//! # let _ = bytes; Ok(()) }
//! ```

mod error;
mod export;
mod import;
mod layout;
mod tensors;

pub use error::InteropError;
pub use export::{export_classifier, export_safetensors};
pub use import::{Imported, import_classifier, import_safetensors};
pub use layout::{LAYER, Layout, Role};
pub use tensors::{HostTensor, TensorFile, write_safetensors};
