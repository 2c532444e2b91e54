//! Loading a user's own train/test files in any supported format into a
//! [`Split`] with one shared label map.
//!
//! # Label rule
//! The TRAIN file defines the classes:
//! * `.ts`: the train file's `@classLabel` list, in declaration order (so a
//!   declared class may have no train member).
//! * `.npy`/`.npz`/CSV with numeric labels: the distinct train label values
//!   sorted numerically, so labels `{1, 2}` become classes 0, 1 named `"1"`,
//!   `"2"` (CSV labels that already are `0..k` keep their values when every
//!   class occurs in the train file).
//! * string labels (`.npy`/`.npz` `<U`/`|S`): the distinct train labels
//!   sorted lexicographically.
//!
//! A test label the train file does not define is an error naming the test
//! file and its line (text) or `y[i]` element (binary). Train and test must
//! have the same number of channels; their sequence lengths may differ (each
//! split is padded to its own longest sequence). Both splits get the same
//! `class_names`.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::csv::{CsvShape, data_lines, parse_csv};
use crate::error::{DatasetError, Location};
use crate::npy;
use crate::registry::Split;
use crate::sequence::SequenceDataset;
use crate::ts;

/// The file formats [`load_file_pair`] reads.
///
/// Exists so configs can force a format when the extension is unusual.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    /// UCR/UEA `.ts` ([`crate::ts`]).
    Ts,
    /// NumPy `.npy` X file with a labels file ([`crate::npy`]).
    Npy,
    /// NumPy `.npz` archive with `X`, `y` and optional `lengths`.
    Npz,
    /// `label,v0,v1,...` rows ([`crate::csv`]).
    Csv,
}

impl FileFormat {
    /// Every format, in the order shown to users.
    pub const ALL: [Self; 4] = [Self::Ts, Self::Npy, Self::Npz, Self::Csv];

    /// The file extension (without the dot), also the serde name.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Ts => "ts",
            Self::Npy => "npy",
            Self::Npz => "npz",
            Self::Csv => "csv",
        }
    }

    /// Picks the format from the extension (case-insensitive), so users
    /// rarely have to name it.
    pub fn from_path(path: &Path) -> Result<Self, DatasetError> {
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        Self::ALL
            .into_iter()
            .find(|f| f.extension() == ext)
            .ok_or_else(|| {
                DatasetError::parse(
                    path,
                    Location::File,
                    format!(
                        "unknown data file extension `{ext}`; accepted: .ts, .npy, .npz, .csv \
                         (or set `format` explicitly)"
                    ),
                )
            })
    }
}

/// How to read a train/test pair; everything optional.
///
/// Exists so the CLI and the dataset TOML ([`crate::DataFileSpec`]) pass the
/// same knobs to [`load_file_pair`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileOptions {
    /// Format of both files; `None` = from each file's extension.
    pub format: Option<FileFormat>,
    /// Channels per step of CSV rows (default 1); for other formats, if
    /// given, checked against the channels found in the file.
    pub d_input: Option<usize>,
    /// Labels file for a `.npy` train X file (default: the `X` -> `y` sibling).
    pub train_labels: Option<PathBuf>,
    /// Labels file for a `.npy` test X file (default: the `X` -> `y` sibling).
    pub test_labels: Option<PathBuf>,
}

/// How a file's labels are ordered into classes.
enum LabelOrder {
    /// `.ts` `@classLabel` list.
    Declared(Vec<String>),
    /// Integers (as canonical decimal text), sorted numerically.
    Numeric,
    /// Strings, sorted lexicographically.
    Text,
}

/// One file's contents before labels become class indices.
struct RawFile {
    path: PathBuf,
    d_input: usize,
    sequences: Vec<Vec<f32>>,
    labels: Vec<String>,
    /// Where each sequence came from, for label errors.
    locations: Vec<Location>,
    order: LabelOrder,
}

fn read_raw(
    path: &Path,
    format: FileFormat,
    opts: &FileOptions,
    labels_file: Option<&Path>,
) -> Result<RawFile, DatasetError> {
    let raw = match format {
        FileFormat::Ts => {
            let f = ts::read_ts(path)?;
            RawFile {
                path: path.to_path_buf(),
                d_input: f.d_input,
                labels: f
                    .labels
                    .iter()
                    .map(|&l| f.class_labels[l as usize].clone())
                    .collect(),
                locations: f.lines.iter().map(|&l| Location::Line(l)).collect(),
                sequences: f.sequences,
                order: LabelOrder::Declared(f.class_labels),
            }
        }
        FileFormat::Npy | FileFormat::Npz => {
            let (s, y_path) = if format == FileFormat::Npz {
                (npy::read_npz_sequences(path)?, path.to_path_buf())
            } else {
                let s = npy::read_npy_sequences(path, labels_file)?;
                let y = labels_file
                    .map(Path::to_path_buf)
                    .or_else(|| npy::sibling_labels_path(path))
                    .unwrap_or_else(|| path.to_path_buf());
                (s, y)
            };
            // Label errors point into the labels file (the .npz itself for npz).
            RawFile {
                path: y_path,
                d_input: s.d_input,
                locations: (0..s.labels.len())
                    .map(|i| Location::Field(format!("y[{i}]")))
                    .collect(),
                sequences: s.sequences,
                labels: s.labels,
                order: if s.numeric_labels {
                    LabelOrder::Numeric
                } else {
                    LabelOrder::Text
                },
            }
        }
        FileFormat::Csv => {
            let d = opts.d_input.unwrap_or(1);
            if !path.is_file() {
                return Err(DatasetError::Missing {
                    path: path.to_path_buf(),
                    hint: "check the path given for the CSV data".into(),
                });
            }
            let text = fs::read_to_string(path).map_err(DatasetError::io(path))?;
            let ds = parse_csv(
                &text,
                path,
                CsvShape {
                    d_input: d,
                    seq_len: None,
                    n_classes: None,
                },
            )?;
            RawFile {
                path: path.to_path_buf(),
                d_input: d,
                sequences: (0..ds.len()).map(|i| ds.sample(i).0.to_vec()).collect(),
                labels: ds.labels.iter().map(u32::to_string).collect(),
                locations: data_lines(&text).map(|(n, _)| Location::Line(n)).collect(),
                order: LabelOrder::Numeric,
            }
        }
    };
    if let Some(d) = opts.d_input
        && format != FileFormat::Csv
        && d != raw.d_input
    {
        return Err(DatasetError::parse(
            path,
            Location::File,
            format!(
                "the file has {} channels but d_input = {d} was given",
                raw.d_input
            ),
        ));
    }
    if raw.sequences.is_empty() {
        return Err(DatasetError::parse(path, Location::File, "no sequences"));
    }
    Ok(raw)
}

/// The class names a train file defines (see the module docs).
fn class_names(train: &RawFile) -> Vec<String> {
    match &train.order {
        LabelOrder::Declared(list) => list.clone(),
        LabelOrder::Numeric => {
            let set: BTreeSet<i64> = train.labels.iter().filter_map(|l| l.parse().ok()).collect();
            set.iter().map(i64::to_string).collect()
        }
        LabelOrder::Text => {
            let set: BTreeSet<&String> = train.labels.iter().collect();
            set.into_iter().cloned().collect()
        }
    }
}

fn to_dataset(
    raw: &RawFile,
    name: String,
    names: &[String],
    train_path: &Path,
) -> Result<SequenceDataset, DatasetError> {
    let index: HashMap<&str, u32> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i as u32))
        .collect();
    let mut labels = Vec::with_capacity(raw.labels.len());
    for (label, loc) in raw.labels.iter().zip(&raw.locations) {
        let Some(&c) = index.get(label.as_str()) else {
            let mut shown: Vec<&str> = names.iter().map(String::as_str).take(20).collect();
            if names.len() > 20 {
                shown.push("...");
            }
            return Err(DatasetError::parse(
                &raw.path,
                loc.clone(),
                format!(
                    "label \"{label}\" does not occur in the training file {} (classes: {})",
                    train_path.display(),
                    shown.join(", ")
                ),
            ));
        };
        labels.push(c);
    }
    SequenceDataset::from_sequences(name, &raw.sequences, labels, raw.d_input, names.len())?
        .with_class_names(names.to_vec())
}

/// A short dataset name from the train file: its stem without `train`/`X`
/// tokens (`GunPoint_TRAIN.ts` -> `GunPoint`), else the parent directory.
pub fn base_name(train: &Path) -> String {
    let stem = train
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let kept: Vec<&str> = stem
        .split(['_', '-', '.'])
        .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case("train") && *t != "X")
        .collect();
    if !kept.is_empty() {
        return kept.join("_");
    }
    train
        .parent()
        .and_then(Path::file_name)
        .map_or_else(|| "data".into(), |s| s.to_string_lossy().into_owned())
}

/// Loads a user's train and test files (any [`FileFormat`], mixed allowed)
/// into a [`Split`] named `<base>/train` and `<base>/test` (see
/// [`base_name`]), with the class map of the train file (module docs).
pub fn load_file_pair(
    train: &Path,
    test: &Path,
    opts: &FileOptions,
) -> Result<Split, DatasetError> {
    let format_of = |p: &Path| opts.format.map_or_else(|| FileFormat::from_path(p), Ok);
    let train_raw = read_raw(train, format_of(train)?, opts, opts.train_labels.as_deref())?;
    let test_raw = read_raw(test, format_of(test)?, opts, opts.test_labels.as_deref())?;
    if test_raw.d_input != train_raw.d_input {
        return Err(DatasetError::parse(
            test,
            Location::File,
            format!(
                "{} channels per step, but the training file {} has {}",
                test_raw.d_input,
                train.display(),
                train_raw.d_input
            ),
        ));
    }
    let names = class_names(&train_raw);
    let base = base_name(train);
    Ok(Split {
        train: to_dataset(&train_raw, format!("{base}/train"), &names, train)?,
        test: to_dataset(&test_raw, format!("{base}/test"), &names, train)?,
    })
}

/// Loads one file on its own (its own class map, as if it were a train
/// file), e.g. to inspect it or to evaluate a model on new recordings.
pub fn load_file(path: &Path, opts: &FileOptions) -> Result<SequenceDataset, DatasetError> {
    let format = opts
        .format
        .map_or_else(|| FileFormat::from_path(path), Ok)?;
    let raw = read_raw(path, format, opts, opts.train_labels.as_deref())?;
    let names = class_names(&raw);
    to_dataset(&raw, base_name(path), &names, path)
}

/// Sequences to classify: a labelled file as [`load_file`] reads it, or, for `.ts` files with
/// `@classLabel false`, `.npy` files without a labels sibling and `.npz` archives without `y`,
/// the sequences alone. Returns the dataset and whether its labels are real; unlabelled
/// sequences get one placeholder class `"?"`. CSV always carries labels.
pub fn load_for_prediction(
    path: &Path,
    opts: &FileOptions,
) -> Result<(SequenceDataset, bool), DatasetError> {
    let format = opts
        .format
        .map_or_else(|| FileFormat::from_path(path), Ok)?;
    let name = base_name(path);
    let unlabelled = |seqs: crate::npy::NpySequences| -> Result<_, DatasetError> {
        let n = seqs.sequences.len();
        let data =
            SequenceDataset::from_sequences(&name, &seqs.sequences, vec![0; n], seqs.d_input, 1)?
                .with_class_names(vec!["?".into()])?;
        Ok((data, false))
    };
    let placeholder = |n: usize| crate::npy::NpyArray {
        shape: vec![n],
        data: crate::npy::NpyData::Int(vec![0; n]),
    };
    match format {
        FileFormat::Ts => {
            if !path.is_file() {
                return Err(DatasetError::Missing {
                    path: path.to_path_buf(),
                    hint: "check the path of the sequences to classify".into(),
                });
            }
            let text = std::fs::read_to_string(path).map_err(DatasetError::io(path))?;
            let ts = crate::ts::parse_ts_unlabelled(&text, path)?;
            if ts.class_labels.is_empty() {
                let n = ts.sequences.len();
                let data = SequenceDataset::from_sequences(
                    &name,
                    &ts.sequences,
                    vec![0; n],
                    ts.d_input,
                    1,
                )?
                .with_class_names(vec!["?".into()])?;
                return Ok((data, false));
            }
            Ok((ts.to_dataset(name)?, true))
        }
        FileFormat::Npy
            if opts.train_labels.is_none()
                && crate::npy::sibling_labels_path(path).is_none_or(|p| !p.is_file()) =>
        {
            let x = crate::npy::read_npy(path, "X")?;
            let n = x.shape.first().copied().unwrap_or(0);
            unlabelled(crate::npy::sequences_from_arrays(
                &x,
                path,
                &placeholder(n),
                path,
                None,
            )?)
        }
        FileFormat::Npz => {
            let arrays = crate::npy::read_npz(path)?;
            let find = |k: &str| arrays.iter().find(|(n, _)| n == k).map(|(_, a)| a);
            let x = find("X").or_else(|| find("x"));
            let (Some(x), None) = (x, find("y").or_else(|| find("Y"))) else {
                // Labelled, or no X at all: the labelled loader reads it or says what is missing.
                return Ok((load_file(path, opts)?, true));
            };
            let n = x.shape.first().copied().unwrap_or(0);
            unlabelled(crate::npy::sequences_from_arrays(
                x,
                path,
                &placeholder(n),
                path,
                find("lengths"),
            )?)
        }
        _ => Ok((load_file(path, opts)?, true)),
    }
}
