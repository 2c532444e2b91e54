//! C export of integer S4D models (work in progress: filled from `experiments`' emitter).

use std::path::Path;

use qat::integer::IntegerModel;

/// Why a C export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Writes `model.h` and `model.c` for `model` into `dir`.
pub fn write_c_model(_model: &IntegerModel, _dir: &Path) -> Result<(), ExportError> {
    unimplemented!("moved here from experiments::deploy")
}
