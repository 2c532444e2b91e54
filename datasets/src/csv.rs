//! Loader for user-supplied sequence-classification data in CSV.
//!
//! Format (also in the crate docs): one sequence per line,
//! `label,v_0,v_1,...,v_{L*d-1}`; `label` is a non-negative integer class
//! index, values are decimal floats, laid out time-major (step 0's `d`
//! features, then step 1's, ...). No header; blank lines and lines starting
//! with `#` are skipped. Every row must have the same number of columns.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::DatasetError;
use crate::registry::{DatasetName, Split};
use crate::sequence::SequenceDataset;

/// How to interpret the columns of a CSV file.
///
/// Exists so the shape can be given fully, partially (`seq_len: None`:
/// inferred from the first row) or checked against a train file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CsvShape {
    /// Features per time step (1 for scalar sequences).
    pub d_input: usize,
    /// Time steps per row; `None` = `(columns - 1) / d_input` of the first row.
    pub seq_len: Option<usize>,
    /// Number of classes; `None` = largest label + 1. When given, larger
    /// labels are errors.
    pub n_classes: Option<usize>,
}

/// The non-blank, non-comment lines of CSV text with their 1-based line
/// numbers: the rows [`parse_csv`] turns into sequences, in order (so row `i`
/// of the dataset came from the `i`-th item).
pub fn data_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, raw)| (i + 1, raw.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
}

/// Parses CSV text (see the module docs); `path` names the source in errors.
pub fn parse_csv(
    text: &str,
    path: &Path,
    shape: CsvShape,
) -> Result<SequenceDataset, DatasetError> {
    let err = |line: usize, reason: String| DatasetError::Csv {
        path: path.to_path_buf(),
        line,
        reason,
    };
    if shape.d_input == 0 {
        return Err(err(0, "d_input must be at least 1".into()));
    }
    let mut row_len: Option<usize> = shape.seq_len.map(|l| l * shape.d_input);
    let mut inputs = Vec::new();
    let mut labels = Vec::new();
    for (line_no, line) in data_lines(text) {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let n_values = fields.len() - 1;
        let expected = match row_len {
            Some(r) => r,
            None => {
                if n_values == 0 || !n_values.is_multiple_of(shape.d_input) {
                    return Err(err(
                        line_no,
                        format!(
                            "{n_values} values after the label is not a positive multiple of d_input = {}",
                            shape.d_input
                        ),
                    ));
                }
                row_len = Some(n_values);
                n_values
            }
        };
        if n_values != expected {
            return Err(err(
                line_no,
                format!(
                    "wrong column count: expected {} (label + {expected} values), found {}",
                    expected + 1,
                    fields.len()
                ),
            ));
        }
        let label: u32 = fields[0].parse().map_err(|_| {
            err(
                line_no,
                format!("bad label `{}`: expected a non-negative integer", fields[0]),
            )
        })?;
        if let Some(k) = shape.n_classes
            && label as usize >= k
        {
            return Err(err(
                line_no,
                format!("label {label} out of range for {k} classes (0..{k})"),
            ));
        }
        labels.push(label);
        for (col, f) in fields[1..].iter().enumerate() {
            let v: f32 = f
                .parse()
                .ok()
                .filter(|v: &f32| v.is_finite())
                .ok_or_else(|| err(line_no, format!("bad value `{f}` in column {}", col + 2)))?;
            inputs.push(v);
        }
    }
    let Some(row_len) = row_len.filter(|_| !labels.is_empty()) else {
        return Err(err(0, "no data rows".into()));
    };
    let n_classes = shape
        .n_classes
        .unwrap_or_else(|| labels.iter().max().map_or(1, |&m| m as usize + 1));
    let name = path.display().to_string();
    SequenceDataset::new(
        name,
        inputs,
        labels,
        row_len / shape.d_input,
        shape.d_input,
        n_classes,
    )
}

/// Reads and parses one CSV file.
pub fn load_csv(path: &Path, shape: CsvShape) -> Result<SequenceDataset, DatasetError> {
    if !path.is_file() {
        return Err(DatasetError::Missing {
            path: path.to_path_buf(),
            hint: "check the path given for the CSV data".into(),
        });
    }
    let text = fs::read_to_string(path).map_err(DatasetError::io(path))?;
    parse_csv(&text, path, shape)
}

/// Loads a train CSV and a test CSV with `d_input` features per step:
/// `seq_len` and `n_classes` are inferred from the train file and enforced on
/// the test file (a test label the train file never reaches is an error, as
/// is a different row length).
pub fn load_csv_pair(train: &Path, test: &Path, d_input: usize) -> Result<Split, DatasetError> {
    let train_ds = load_csv(
        train,
        CsvShape {
            d_input,
            seq_len: None,
            n_classes: None,
        },
    )?;
    let test_ds = load_csv(
        test,
        CsvShape {
            d_input,
            seq_len: Some(train_ds.seq_len),
            n_classes: Some(train_ds.n_classes),
        },
    )?;
    Ok(Split {
        train: train_ds,
        test: test_ds,
    })
}

/// Any dataset the trainer can run on: a named one or a user CSV pair.
///
/// Exists so the `experiments` CLI and configs have one value to parse and
/// one `load` to call, whatever the data's origin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatasetSpec {
    /// A named dataset under the data root.
    Named(DatasetName),
    /// User data: `train.csv` + `test.csv` (see the module docs for the format).
    Csv {
        /// Training rows.
        train: PathBuf,
        /// Test rows (same columns, labels within the train classes).
        test: PathBuf,
        /// Features per time step.
        d_input: usize,
    },
    /// User files in any supported format (`.ts`, `.npy`, `.npz`, CSV), as
    /// in a dataset TOML; paths are used as given (not resolved against a
    /// TOML directory).
    Files(crate::spec::DataFileSpec),
}

impl DatasetSpec {
    /// Loads the data; `root` is only used for named datasets. The `Csv`
    /// variant keeps the original rule (labels are class indices, `n_classes`
    /// = largest train label + 1); `Files` uses [`crate::load_file_pair`].
    pub fn load(&self, root: &Path) -> Result<Split, DatasetError> {
        match self {
            Self::Named(name) => crate::registry::load(*name, root),
            Self::Csv {
                train,
                test,
                d_input,
            } => load_csv_pair(train, test, *d_input),
            Self::Files(spec) => spec.load(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::TempDir;

    fn shape(d: usize, l: Option<usize>, k: Option<usize>) -> CsvShape {
        CsvShape {
            d_input: d,
            seq_len: l,
            n_classes: k,
        }
    }

    #[test]
    fn happy_path_infers_shape() {
        let text = "# comment\n1,0.5,1,2,3\n\n0, -1.5e0 ,2,3,4\r\n2,0,0,0,0\n";
        let ds = parse_csv(text, Path::new("a.csv"), shape(1, None, None)).unwrap();
        assert_eq!(
            (ds.len(), ds.seq_len, ds.d_input, ds.n_classes),
            (3, 4, 1, 3)
        );
        assert_eq!(ds.sample(1), (&[-1.5f32, 2., 3., 4.][..], 0));
        let ds = parse_csv(text, Path::new("a.csv"), shape(2, None, Some(5))).unwrap();
        assert_eq!((ds.seq_len, ds.d_input, ds.n_classes), (2, 2, 5));
    }

    fn expect_err(text: &str, s: CsvShape, line: usize, needle: &str) {
        let err = parse_csv(text, Path::new("/d/x.csv"), s).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with(&format!("/d/x.csv:{line}: ")), "{msg}");
        assert!(msg.contains(needle), "{msg}");
    }

    #[test]
    fn each_error_names_file_and_line() {
        expect_err(
            "0,1,2\n1,1,zz\n",
            shape(1, None, None),
            2,
            "bad value `zz` in column 3",
        );
        expect_err("0,1,2\n1,1,NaN\n", shape(1, None, None), 2, "bad value");
        expect_err(
            "0,1,2\n\n1,1,2,3\n",
            shape(1, None, None),
            3,
            "wrong column count",
        );
        expect_err("0,1,2\n", shape(1, Some(3), None), 1, "wrong column count");
        expect_err(
            "0,1,2\n7,1,2\n",
            shape(1, None, Some(3)),
            2,
            "label 7 out of range",
        );
        expect_err("-1,1,2\n", shape(1, None, None), 1, "bad label `-1`");
        expect_err("0,1,2,3\n", shape(2, None, None), 1, "multiple of d_input");
        expect_err(
            "# only a comment\n",
            shape(1, None, None),
            0,
            "no data rows",
        );
    }

    #[test]
    fn pair_enforces_train_shape_and_classes() {
        let dir = TempDir::new("csv-pair");
        let train = dir.path().join("train.csv");
        let test = dir.path().join("test.csv");
        fs::write(&train, "0,1,2,3,4\n1,4,3,2,1\n").unwrap();
        fs::write(&test, "1,0,0,0,0\n").unwrap();
        let split = load_csv_pair(&train, &test, 2).unwrap();
        assert_eq!(
            (split.train.len(), split.test.len(), split.test.seq_len),
            (2, 1, 2)
        );
        let spec = DatasetSpec::Csv {
            train: train.clone(),
            test: test.clone(),
            d_input: 2,
        };
        assert_eq!(spec.load(dir.path()).unwrap(), split);
        // The same files through the general loader: labels {0, 1} map to
        // themselves, so only the names differ.
        let files = DatasetSpec::Files(crate::spec::DataFileSpec {
            name: Some("pair".into()),
            train: train.clone(),
            test: test.clone(),
            format: None,
            d_input: Some(2),
            train_labels: None,
            test_labels: None,
        });
        let json = serde_json::to_string(&files).unwrap();
        assert_eq!(serde_json::from_str::<DatasetSpec>(&json).unwrap(), files);
        let via_files = files.load(dir.path()).unwrap();
        assert_eq!(via_files.train.name, "pair/train");
        assert_eq!(via_files.train.inputs, split.train.inputs);
        assert_eq!(via_files.test.labels, split.test.labels);

        fs::write(&test, "1,0,0,0,0\n2,0,0,0,0\n").unwrap();
        let msg = load_csv_pair(&train, &test, 2).unwrap_err().to_string();
        assert!(msg.contains("test.csv:2: label 2 out of range"), "{msg}");
        fs::write(&test, "1,0,0\n").unwrap();
        let msg = load_csv_pair(&train, &test, 2).unwrap_err().to_string();
        assert!(msg.contains("test.csv:1: wrong column count"), "{msg}");
        let msg = load_csv_pair(&dir.path().join("nope.csv"), &test, 1)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("nope.csv"), "{msg}");
    }
}
