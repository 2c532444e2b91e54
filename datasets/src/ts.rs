//! Reader for the `.ts` format of the UCR/UEA time-series archive (as written
//! by sktime and aeon), the common exchange format for sensor, audio-feature
//! and ECG classification sets.
//!
//! # Format
//! A header of `@keyword value` lines (keywords case-insensitive), then
//! `@data` and one sequence per line:
//!
//! ```text
//! # comment
//! @problemName Toy
//! @timeStamps false
//! @missing false
//! @univariate false
//! @dimensions 2
//! @equalLength false
//! @classLabel true walk run
//! @data
//! 0.1,0.2,0.3:1.0,1.1,1.2:walk
//! 0.5,0.4:2.0,2.1:run
//! ```
//!
//! Channels are separated by `:`, values within a channel by `,`, and the
//! last `:`-field is the class label. All channels of one sequence must have
//! the same length; sequences may differ in length unless `@equalLength true`
//! (and `@seriesLength` fixes it). Labels are strings and become class
//! indices in `@classLabel` declaration order. Lines starting with `#` (or
//! `%`, seen in some archive files) are comments.
//!
//! # Refused (each an error with `file:line`)
//! Missing values (`?`, `NaN`), infinities and non-numeric values,
//! timestamped data (`(t,v)` pairs, `@timeStamps true`), regression files
//! (`@targetLabel true`, `@classLabel false`), undeclared labels, channel
//! count or length mismatches, a missing `@data` line and files without
//! sequences.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{DatasetError, Location};
use crate::sequence::SequenceDataset;

/// The message for `?`/NaN values; missing-value handling is the user's call.
const MISSING_MSG: &str = "missing values are not supported; impute them first";

/// A parsed `.ts` file, before it becomes a [`SequenceDataset`].
///
/// Exists so callers that combine a train and a test file (see
/// [`crate::load_file_pair`]) can map labels and report errors by line.
#[derive(Clone, Debug, PartialEq)]
pub struct TsFile {
    /// The file it was read from (for error messages).
    pub path: PathBuf,
    /// `@problemName`, if given.
    pub problem_name: Option<String>,
    /// The `@classLabel` list in declaration order: class `i` is `class_labels[i]`.
    pub class_labels: Vec<String>,
    /// Channels per time step.
    pub d_input: usize,
    /// Each sequence time-major (`[len, d_input]` flattened).
    pub sequences: Vec<Vec<f32>>,
    /// Class index (into `class_labels`) of each sequence.
    pub labels: Vec<u32>,
    /// 1-based line of each sequence in the file.
    pub lines: Vec<usize>,
}

impl TsFile {
    /// Pads the sequences into a dataset whose `class_names` are the
    /// `@classLabel` list.
    pub fn to_dataset(&self, name: impl Into<String>) -> Result<SequenceDataset, DatasetError> {
        SequenceDataset::from_sequences(
            name,
            &self.sequences,
            self.labels.clone(),
            self.d_input,
            self.class_labels.len(),
        )?
        .with_class_names(self.class_labels.clone())
    }
}

/// Header values seen so far.
#[derive(Default)]
struct Header {
    problem_name: Option<String>,
    dimensions: Option<usize>,
    univariate: Option<bool>,
    equal_length: Option<bool>,
    series_length: Option<usize>,
    class_labels: Option<Vec<String>>,
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// Parses `.ts` text; `path` names the source in errors.
pub fn parse_ts(text: &str, path: &Path) -> Result<TsFile, DatasetError> {
    parse(text, path, false)
}

/// Parses `.ts` text that may have no labels (`@classLabel false`, data lines without a
/// `:label` field): sequences to classify. Unlabelled sequences come back with an empty
/// `class_labels` and every label 0.
pub fn parse_ts_unlabelled(text: &str, path: &Path) -> Result<TsFile, DatasetError> {
    parse(text, path, true)
}

fn parse(text: &str, path: &Path, unlabelled_ok: bool) -> Result<TsFile, DatasetError> {
    let err = |line: usize, reason: String| DatasetError::parse(path, Location::Line(line), reason);
    let mut header = Header::default();
    let mut in_data = false;
    let mut d_input: Option<usize> = None;
    let mut first_len: Option<(usize, usize)> = None;
    let mut sequences = Vec::new();
    let mut labels = Vec::new();
    let mut lines = Vec::new();
    let mut class_labels: Vec<String> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('%') {
            continue;
        }
        if !in_data {
            if !line.starts_with('@') {
                return Err(err(
                    line_no,
                    "expected a header line `@keyword value` or `@data` before the data".into(),
                ));
            }
            let (keyword, value) = line
                .split_once(char::is_whitespace)
                .map_or((line, ""), |(k, v)| (k, v.trim()));
            let keyword = keyword.to_ascii_lowercase();
            let bool_value = || {
                parse_bool(value.split_whitespace().next().unwrap_or("")).ok_or_else(|| {
                    err(
                        line_no,
                        format!("{keyword} expects `true` or `false`, found `{value}`"),
                    )
                })
            };
            let count_value = || {
                value
                    .parse::<usize>()
                    .ok()
                    .filter(|&v| v > 0)
                    .ok_or_else(|| {
                        err(
                            line_no,
                            format!("{keyword} expects a positive integer, found `{value}`"),
                        )
                    })
            };
            match keyword.as_str() {
                "@problemname" => header.problem_name = Some(value.to_string()),
                "@timestamps" => {
                    if bool_value()? {
                        return Err(err(line_no, "timestamped .ts data is not supported".into()));
                    }
                }
                "@missing" => {
                    bool_value()?;
                }
                "@univariate" => header.univariate = Some(bool_value()?),
                "@dimension" | "@dimensions" => header.dimensions = Some(count_value()?),
                "@equallength" => header.equal_length = Some(bool_value()?),
                "@serieslength" => header.series_length = Some(count_value()?),
                "@targetlabel" => {
                    if bool_value()? {
                        return Err(err(
                            line_no,
                            "@targetLabel true: no class labels: only classification files are supported"
                                .into(),
                        ));
                    }
                }
                "@classlabel" => {
                    let mut parts = value.split_whitespace();
                    let flag = parts.next().and_then(parse_bool).ok_or_else(|| {
                        err(
                            line_no,
                            format!(
                                "@classLabel expects `true <labels...>` or `false`, found `{value}`"
                            ),
                        )
                    })?;
                    if !flag && unlabelled_ok {
                        header.class_labels = Some(Vec::new());
                        continue;
                    }
                    if !flag {
                        return Err(err(
                            line_no,
                            "@classLabel false: no class labels: only classification files are supported"
                                .into(),
                        ));
                    }
                    let list: Vec<String> = parts.map(str::to_string).collect();
                    if list.is_empty() {
                        return Err(err(line_no, "@classLabel true lists no labels".into()));
                    }
                    if let Some(dup) = list
                        .iter()
                        .enumerate()
                        .find_map(|(j, l)| list[..j].contains(l).then_some(l))
                    {
                        return Err(err(line_no, format!("@classLabel lists `{dup}` twice")));
                    }
                    header.class_labels = Some(list);
                }
                "@data" => {
                    class_labels = header.class_labels.clone().ok_or_else(|| {
                        err(
                            line_no,
                            "no @classLabel line before @data: no class labels: only classification files are supported"
                                .into(),
                        )
                    })?;
                    d_input = match (header.dimensions, header.univariate) {
                        (Some(d), Some(true)) if d != 1 => {
                            return Err(err(
                                line_no,
                                format!("@univariate true contradicts @dimensions {d}"),
                            ));
                        }
                        (Some(d), _) => Some(d),
                        (None, Some(true)) => Some(1),
                        (None, _) => None,
                    };
                    in_data = true;
                }
                _ => {
                    return Err(err(
                        line_no,
                        format!(
                            "unknown header keyword `{keyword}` (expected @problemName, @timeStamps, @missing, \
                             @univariate, @dimensions, @equalLength, @seriesLength, @classLabel, @targetLabel or @data)"
                        ),
                    ));
                }
            }
            continue;
        }
        if line.starts_with('@') {
            return Err(err(line_no, "header line after @data".into()));
        }
        if line.contains('(') {
            return Err(err(line_no, "timestamped .ts data is not supported".into()));
        }
        let fields: Vec<&str> = line.split(':').collect();
        let unlabelled = class_labels.is_empty();
        let split = if unlabelled {
            Some(("", &fields[..]))
        } else {
            fields.split_last().map(|(l, c)| (*l, c))
        };
        let Some((label, channels)) = split.filter(|(_, c)| !c.is_empty()) else {
            return Err(err(
                line_no,
                "expected channels separated by `:` followed by `:label`".into(),
            ));
        };
        let d = *d_input.get_or_insert(channels.len());
        if channels.len() != d {
            return Err(err(
                line_no,
                format!("{} channels, expected {d}", channels.len()),
            ));
        }
        let mut values: Vec<Vec<f32>> = Vec::with_capacity(d);
        for (c, channel) in channels.iter().enumerate() {
            let mut vals = Vec::new();
            for (j, v) in channel.split(',').enumerate() {
                let v = v.trim();
                let at = || format!("channel {c}, value {j}");
                if v == "?" || v.eq_ignore_ascii_case("nan") {
                    return Err(err(line_no, format!("`{v}` at {}: {MISSING_MSG}", at())));
                }
                let x: f32 = v.parse().map_err(|_| {
                    err(
                        line_no,
                        format!("bad value `{v}` at {}: not a number", at()),
                    )
                })?;
                if !x.is_finite() {
                    return Err(err(
                        line_no,
                        format!("value `{v}` at {} is not finite", at()),
                    ));
                }
                vals.push(x);
            }
            if let Some(prev) = values.first()
                && prev.len() != vals.len()
            {
                return Err(err(
                    line_no,
                    format!(
                        "channels of one sequence must have the same length: channel 0 has {} values, channel {c} has {}",
                        prev.len(),
                        vals.len()
                    ),
                ));
            }
            values.push(vals);
        }
        let len = values[0].len();
        if header.equal_length != Some(false) {
            if let Some(n) = header.series_length
                && len != n
            {
                return Err(err(
                    line_no,
                    format!("series length {len} differs from @seriesLength {n}"),
                ));
            }
            if header.equal_length == Some(true)
                && let Some((first, first_line)) = first_len
                && first != len
            {
                return Err(err(
                    line_no,
                    format!(
                        "series length {len} differs from {first} (line {first_line}) although @equalLength is true"
                    ),
                ));
            }
        }
        first_len.get_or_insert((len, line_no));
        let label = label.trim();
        let class = class_labels
            .iter()
            .position(|l| l == label)
            .or(unlabelled.then_some(0))
            .ok_or_else(|| {
                err(
                    line_no,
                    format!(
                        "label \"{label}\" is not in @classLabel ({})",
                        class_labels.join(", ")
                    ),
                )
            })?;
        let mut seq = Vec::with_capacity(len * d);
        for t in 0..len {
            for ch in &values {
                seq.push(ch[t]);
            }
        }
        sequences.push(seq);
        labels.push(class as u32);
        lines.push(line_no);
    }
    if !in_data {
        return Err(DatasetError::parse(
            path,
            Location::File,
            "no @data line: not a .ts file or a truncated header",
        ));
    }
    if sequences.is_empty() {
        return Err(DatasetError::parse(
            path,
            Location::File,
            "no sequences after @data",
        ));
    }
    Ok(TsFile {
        path: path.to_path_buf(),
        problem_name: header.problem_name,
        class_labels,
        d_input: d_input.unwrap_or(1),
        sequences,
        labels,
        lines,
    })
}

/// Reads and parses one `.ts` file.
pub fn read_ts(path: &Path) -> Result<TsFile, DatasetError> {
    if !path.is_file() {
        return Err(DatasetError::Missing {
            path: path.to_path_buf(),
            hint: "check the path given for the .ts data".into(),
        });
    }
    let text = fs::read_to_string(path).map_err(DatasetError::io(path))?;
    parse_ts(&text, path)
}

/// Loads one `.ts` file as a dataset named after the file stem, with
/// `class_names` from `@classLabel`.
pub fn load_ts(path: &Path) -> Result<SequenceDataset, DatasetError> {
    let ts = read_ts(path)?;
    let name = path
        .file_stem()
        .map_or_else(|| "ts".into(), |s| s.to_string_lossy().into_owned());
    ts.to_dataset(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MULTI: &str = "# comment\n@problemName Toy\n@timeStamps false\n@missing false\n\
@univariate false\n@dimensions 2\n@equalLength false\n@classLabel true walk run\n@data\n\
0.1,0.2,0.3:1.0,1.1,1.2:walk\n\n0.5,0.4:2.0,2.1:run\r\n";

    #[test]
    fn multivariate_unequal_is_time_major_and_padded() {
        let ts = parse_ts(MULTI, Path::new("toy.ts")).unwrap();
        assert_eq!(ts.problem_name.as_deref(), Some("Toy"));
        assert_eq!(ts.class_labels, ["walk", "run"]);
        assert_eq!(ts.d_input, 2);
        assert_eq!(ts.lines, [10, 12]);
        assert_eq!(ts.sequences[0], [0.1, 1.0, 0.2, 1.1, 0.3, 1.2]);
        let ds = ts.to_dataset("toy").unwrap();
        assert_eq!((ds.seq_len, ds.d_input, ds.n_classes), (3, 2, 2));
        assert_eq!(ds.lengths, [3, 2]);
        assert_eq!(ds.labels, [0, 1]);
        assert_eq!(ds.sample(1).0, &[0.5, 2.0, 0.4, 2.1, 0.0, 0.0]);
        assert_eq!(ds.class_names, ["walk", "run"]);
    }

    #[test]
    fn univariate_without_optional_keywords() {
        let text = "@PROBLEMNAME x\n@classlabel TRUE 2 1\n@data\n1,2,3:1\n4,5,6:2\n";
        let ds = parse_ts(text, Path::new("u.ts"))
            .unwrap()
            .to_dataset("u")
            .unwrap();
        assert_eq!(ds.labels, [1, 0]);
        assert!(ds.is_equal_length());
        assert_eq!((ds.seq_len, ds.d_input), (3, 1));
    }
}
