//! # s4q-export
//!
//! Writes an integer S4D classifier (`qat::integer::IntegerModel`) as dependency-free C99 for
//! microcontrollers: [`write_c_model`] (`s4q_model.h` + `s4q_model.c`: const weights, no
//! malloc, no float in the model), [`write_c_golden`] (plus golden sequences and the
//! harnesses that check the C against the Rust reference byte for byte, on the host and on
//! Cortex-M4/M0 under QEMU) and [`write_c_float`] (a float baseline of the same model for
//! cost comparisons, one-block models only). The model file format of `s4q-runtime` is
//! `IntegerModel::to_bytes`.
//!
//! The paper's one-block model gets the specialised engine (`c_model`: compile-time shifts,
//! compact mode records, Thumb-2 loops on cores with the DSP extension). A model of stacked
//! blocks (residual sums, LayerNorm or BatchNorm before the block or after the sum) gets a
//! portable C99 engine that walks one `const` descriptor per block (`c_deep`), computing the
//! integers of `s4q_runtime::Model` block after block, with LayerNorm's exact integer square
//! root and division in 64-bit C; its state struct adds `H` bytes of block-output scratch.
//!
//! ```no_run
//! # fn demo(im: &qat::integer::IntegerModel) -> Result<(), s4q_export::ExportError> {
//! let meta = s4q_export::ModelMeta::raw(im.d_input, im.classes);
//! s4q_export::write_c_model(im, &meta, std::path::Path::new("deploy/c"))?;
//! # Ok(()) }
//! ```

mod c_deep;
pub mod c_float;
pub mod c_golden;
pub mod c_model;

use std::path::{Path, PathBuf};

use qat::integer::IntegerModel;

pub use c_float::write_c_float;
pub use c_golden::write_c_golden;
pub use c_model::write_c_model;

/// Why an export failed, naming the file or the mismatch.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Creating, writing or renaming a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A model tensor could not be read back.
    #[error("reading a model tensor: {0}")]
    Tensor(String),
    /// The metadata does not fit the model.
    #[error("export metadata: {0}")]
    Meta(String),
    /// A model the C export does not implement.
    #[error("C export does not support {0}")]
    Unsupported(String),
}

/// What the exported header says beyond the arithmetic: the class names and how a raw
/// sensor reading becomes an input code (the training split's per-channel standardisation).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelMeta {
    /// Class names in class-index order.
    pub class_names: Vec<String>,
    /// Per-channel mean subtracted before the model (zeros for raw inputs).
    pub input_mean: Vec<f32>,
    /// Per-channel deviation divided by before the model (ones for raw inputs).
    pub input_std: Vec<f32>,
}

impl ModelMeta {
    /// Raw inputs, classes named by index.
    pub fn raw(d_input: usize, classes: usize) -> Self {
        Self {
            class_names: (0..classes).map(|k| k.to_string()).collect(),
            input_mean: vec![0.0; d_input],
            input_std: vec![1.0; d_input],
        }
    }

    /// Checks the lengths against the model.
    pub fn check(&self, im: &IntegerModel) -> Result<(), ExportError> {
        if self.class_names.len() != im.classes {
            return Err(ExportError::Meta(format!(
                "{} class names for a model of {} classes",
                self.class_names.len(),
                im.classes
            )));
        }
        if self.input_mean.len() != im.d_input || self.input_std.len() != im.d_input {
            return Err(ExportError::Meta(format!(
                "{} means and {} deviations for a model of {} input channels",
                self.input_mean.len(),
                self.input_std.len(),
                im.d_input
            )));
        }
        Ok(())
    }

    /// Per-channel `(scale, offset)` with `code = round(x / scale + offset)` for a raw
    /// reading `x`: the model quantizes `(x - mean) / std` with its input step `s` and zero
    /// point `z`, so `scale = std s` and `offset = z - mean / (std s)`.
    pub fn input_conversion(&self, im: &IntegerModel) -> (Vec<f32>, Vec<f32>) {
        self.input_mean
            .iter()
            .zip(&self.input_std)
            .map(|(&m, &sd)| {
                let scale = sd * im.input_scale;
                (scale, im.input.z as f32 - m / scale)
            })
            .unzip()
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename, so an interrupted export
/// never leaves half a file under the final name.
pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<(), ExportError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ExportError::Io { path, source }
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}
