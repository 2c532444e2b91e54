//! The crate's error type, [`QatError`].

use thiserror::Error;

/// Everything that can go wrong in this crate. Specs and presets are typed by users, so every
/// variant carries a message that says what was wrong and what is accepted.
#[derive(Debug, Error)]
pub enum QatError {
    /// A quantizer or spec field outside its valid range.
    #[error("invalid quantization config for `{component}`: {message}")]
    InvalidConfig {
        /// Component (or quantizer) the value belongs to.
        component: String,
        /// What was wrong and what is accepted.
        message: String,
    },
    /// A preset name that does not follow the preset grammar.
    #[error(
        "unknown quantization preset `{0}`; expected `fp32`, `wWaA` (e.g. `w8a8`) or `wWaA-aPxS` \
         (e.g. `w4a6-a8x8`: weights W bits, activations A bits, Abar P bits, state S bits), \
         every bit width in 2..=16"
    )]
    UnknownPreset(String),
    /// A spec or state file that does not parse (unknown component names end up here too).
    #[error("could not parse {format}: {message}")]
    Parse {
        /// `TOML` or `JSON`.
        format: &'static str,
        /// The parser's message.
        message: String,
    },
    /// Static quantizers used before [`crate::calibrate`] gave them a range.
    #[error("static quantizers not calibrated yet: {0:?}; run `qat::calibrate` first")]
    NotCalibrated(Vec<String>),
    /// Calibration was asked for but no batch was supplied.
    #[error("calibration needs at least one batch for the activation quantizers")]
    NoCalibrationData,
    /// A saved quantizer state that does not fit the model it is loaded into.
    #[error("quantizer state does not match the model: {0}")]
    StateMismatch(String),
    /// A tensor whose contents could not be read back to the host.
    #[error("could not read tensor data: {0}")]
    Data(String),
    /// File system errors while saving or loading.
    #[error("I/O error on {path}: {message}")]
    Io {
        /// The file involved.
        path: String,
        /// The OS message.
        message: String,
    },
}

/// Shorthand used throughout the crate.
pub type Result<T> = std::result::Result<T, QatError>;
