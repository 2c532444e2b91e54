//! A dataset described by a small TOML file, so a user's data can be named
//! once and reused by every command:
//!
//! ```toml
//! name = "imu-gestures"        # optional; default from the train file name
//! train = "data/X_train.npy"   # relative to this TOML's directory
//! test = "data/X_test.npy"
//! format = "npy"               # optional: ts | npy | npz | csv (default: extension)
//! d_input = 6                  # CSV: channels per step (default 1); else checked
//! train_labels = "data/labels_train.npy"  # .npy only (default: X -> y sibling)
//! test_labels = "data/labels_test.npy"
//! ```
//!
//! Unknown keys are errors (a typo should not be silently ignored).

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{DatasetError, Location};
use crate::files::{FileFormat, FileOptions, load_file_pair};
use crate::registry::Split;

/// The contents of a dataset TOML (see the module docs).
///
/// Exists so a user dataset is one file the CLI can point at, with paths and
/// options kept together.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataFileSpec {
    /// Dataset name for logs and results; splits are `<name>/train`, `<name>/test`.
    pub name: Option<String>,
    /// Training file.
    pub train: PathBuf,
    /// Test file.
    pub test: PathBuf,
    /// See [`FileOptions::format`].
    pub format: Option<FileFormat>,
    /// See [`FileOptions::d_input`].
    pub d_input: Option<usize>,
    /// See [`FileOptions::train_labels`].
    pub train_labels: Option<PathBuf>,
    /// See [`FileOptions::test_labels`].
    pub test_labels: Option<PathBuf>,
}

impl DataFileSpec {
    /// A train/test pair with every option inferred from the files (format from the
    /// extension, name from the train file).
    pub fn pair(train: impl Into<PathBuf>, test: impl Into<PathBuf>) -> Self {
        Self {
            name: None,
            train: train.into(),
            test: test.into(),
            format: None,
            d_input: None,
            train_labels: None,
            test_labels: None,
        }
    }

    /// Parses TOML text; relative paths are resolved against `base_dir`, and
    /// `source` names the TOML in errors.
    pub fn from_toml_str(text: &str, base_dir: &Path, source: &Path) -> Result<Self, DatasetError> {
        let mut spec: Self = toml::from_str(text).map_err(|e| {
            let location = e
                .span()
                .map(|span| {
                    let before = text.get(..span.start).unwrap_or(text);
                    Location::Line(before.matches('\n').count() + 1)
                })
                .unwrap_or(Location::File);
            DatasetError::parse(source, location, e.message().to_string())
        })?;
        for p in [&mut spec.train, &mut spec.test]
            .into_iter()
            .chain(spec.train_labels.as_mut())
            .chain(spec.test_labels.as_mut())
        {
            if p.is_relative() {
                *p = base_dir.join(&*p);
            }
        }
        if spec.d_input == Some(0) {
            return Err(DatasetError::parse(
                source,
                Location::File,
                "d_input must be at least 1",
            ));
        }
        Ok(spec)
    }

    /// Reads a dataset TOML; relative paths in it are relative to its directory.
    pub fn from_toml_file(path: &Path) -> Result<Self, DatasetError> {
        if !path.is_file() {
            return Err(DatasetError::Missing {
                path: path.to_path_buf(),
                hint: "check the path of the dataset TOML".into(),
            });
        }
        let text = fs::read_to_string(path).map_err(DatasetError::io(path))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_toml_str(&text, base, path)
    }

    /// The loader options it carries.
    pub fn options(&self) -> FileOptions {
        FileOptions {
            format: self.format,
            d_input: self.d_input,
            train_labels: self.train_labels.clone(),
            test_labels: self.test_labels.clone(),
        }
    }

    /// Loads the train/test pair ([`load_file_pair`]), renamed to
    /// `<name>/train` and `<name>/test` when `name` is set.
    pub fn load(&self) -> Result<Split, DatasetError> {
        let mut split = load_file_pair(&self.train, &self.test, &self.options())?;
        if let Some(name) = &self.name {
            split.train.name = format!("{name}/train");
            split.test.name = format!("{name}/test");
        }
        Ok(split)
    }
}
