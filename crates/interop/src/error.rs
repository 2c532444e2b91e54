use std::path::PathBuf;

use s4d_model::ModelError;
use thiserror::Error;

/// Why a checkpoint could not be imported or a model exported. Users meet these when they point
/// s4q at a file trained elsewhere, so every variant names the file or tensor at fault and, where
/// one exists, what would have been accepted.
#[derive(Debug, Error)]
pub enum InteropError {
    /// The file could not be read or written at all.
    #[error("cannot access {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating-system error.
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not a well-formed safetensors container.
    #[error(
        "{origin} is not a valid safetensors file ({detail}); a truncated copy or another format \
         (e.g. a torch.save pickle: convert it with safetensors.torch.save_file) gives this"
    )]
    Container {
        /// Where the bytes came from (a path or a description).
        origin: String,
        /// The parser's complaint.
        detail: String,
    },
    /// A tensor the layout needs is not in the file.
    #[error("tensor `{name}` ({role}) is missing from {origin}; it holds: {available}")]
    MissingTensor {
        /// The tensor name looked up.
        name: String,
        /// What s4q uses it for.
        role: String,
        /// The file.
        origin: String,
        /// The names the file does hold (abbreviated).
        available: String,
    },
    /// A tensor has a shape that does not fit the model inferred from the other tensors.
    #[error("tensor `{name}` has shape {found:?}, expected {expected}")]
    WrongShape {
        /// The tensor name.
        name: String,
        /// The expected shape with its meaning, e.g. `[4, 8, 2] (H, N/2, re/im)`.
        expected: String,
        /// The shape in the file.
        found: Vec<usize>,
    },
    /// A tensor is stored in an integer, boolean or 8-bit float type.
    #[error(
        "tensor `{name}` has dtype {dtype}; only F32, F64, F16, BF16 (and C64 for complex B/C) \
         can be imported"
    )]
    NotFloat {
        /// The tensor name.
        name: String,
        /// The safetensors dtype.
        dtype: String,
    },
    /// A tensor holds NaN or an infinity (after conversion to f32).
    #[error(
        "tensor `{name}` holds a non-finite value ({value}) at flat index {index} of {count} \
         non-finite entries"
    )]
    NonFinite {
        /// The tensor name.
        name: String,
        /// The first offending flat (row-major) index.
        index: usize,
        /// The offending value.
        value: f32,
        /// How many entries are non-finite.
        count: usize,
    },
    /// None of the built-in layouts matches the file and no name map was given.
    #[error(
        "{origin} matches none of the built-in layouts ({tried}); pass --layout or a TOML name \
         map. Its tensors: {available}"
    )]
    UnknownLayout {
        /// The file.
        origin: String,
        /// The layouts tried.
        tried: String,
        /// The names the file holds (abbreviated).
        available: String,
    },
    /// A name map (TOML) or layout name is invalid.
    #[error("name map {origin}: {detail}")]
    NameMap {
        /// The TOML file or layout name.
        origin: String,
        /// What is wrong.
        detail: String,
    },
    /// The model uses a feature the target layout cannot represent.
    #[error("cannot export to layout `{layout}`: {detail}")]
    NotExpressible {
        /// The target layout.
        layout: String,
        /// Which feature does not fit.
        detail: String,
    },
    /// The inferred architecture is not a valid s4q model.
    #[error("the checkpoint's architecture is not a valid s4q model: {0}")]
    Model(#[from] ModelError),
    /// Reading a parameter back from a burn tensor failed.
    #[error("reading parameter `{name}` from the model: {detail}")]
    TensorData {
        /// The parameter.
        name: String,
        /// burn's message.
        detail: String,
    },
    /// Writing the safetensors container failed.
    #[error("writing safetensors: {0}")]
    Serialize(String),
}
