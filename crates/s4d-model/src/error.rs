use thiserror::Error;

/// Why a model could not be configured: surfaced to users who type preset names or edit
/// config files, so every variant says what was wrong and what is accepted.
#[derive(Debug, Error, PartialEq)]
pub enum ModelError {
    /// A preset name that is not one of [`crate::S4dClassifierConfig::PRESETS`].
    #[error("unknown model preset `{0}`; expected one of: s4d-16h, s4d-64h, s4d-256h, s4d-512h")]
    UnknownPreset(String),
    /// A configuration value outside its valid range.
    #[error("invalid model config: {0}")]
    InvalidConfig(String),
}
