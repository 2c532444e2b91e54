//! Where a run's data comes from (a named set or the user's files), how it is prepared
//! (limits, validation split, per-channel standardisation) and how it reaches burn tensors.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use burn::tensor::TensorData;
use datasets::{DataFileSpec, DatasetName, SequenceDataset, Split, Standardizer};
use serde::{Deserialize, Serialize};

/// Where a run's data comes from and how it is prepared; saved with every run so PTQ, QAT,
/// evaluation, prediction and export see exactly the sequences and the scaling training saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataConfig {
    /// A named dataset (`embedded`, `smnist10k`, `sfashion`, `smnist`, `psmnist`); `None` when
    /// `files` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<DatasetName>,
    /// The user's own train and test files (`.ts`, `.npy`, `.npz`, `.csv`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<DataFileSpec>,
    /// Directory holding fetched named datasets.
    #[serde(default = "default_data_root")]
    pub root: PathBuf,
    /// Use only the first N training sequences (quick runs).
    #[serde(default)]
    pub train_limit: Option<usize>,
    /// Use only the first N test sequences.
    #[serde(default)]
    pub test_limit: Option<usize>,
    /// Hold out this fraction of the training sequences (stratified by class) to pick the best
    /// checkpoint; the test split is then never used for a decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_fraction: Option<f64>,
    /// Standardise every input channel with the training split's mean and deviation (on by
    /// default for files; off for the named pixel sets, which are already in [0, 1]).
    #[serde(default)]
    pub standardize: bool,
}

/// The seed of the stratified validation split: fixed, so every run of a data config holds
/// out the same sequences whatever its training seed.
pub const VALID_SPLIT_SEED: u64 = 0x5E_ED0F_5A1D;

/// Default directory of fetched datasets.
pub fn default_data_root() -> PathBuf {
    PathBuf::from("data")
}

/// What was fitted on the training data and must travel with the model: the per-channel
/// scaling, the class names and the input width. Saved as `preprocess.json` in every run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocess {
    /// Features per time step.
    pub d_input: usize,
    /// Class names in class-index order (what `predict` prints and the C header lists).
    pub class_names: Vec<String>,
    /// Per-channel standardisation applied before the model (`None`: raw inputs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standardizer: Option<Standardizer>,
}

impl Preprocess {
    /// Raw inputs with class names `"0".."n-1"`: what runs made before preprocessing existed saw.
    pub fn identity(d_input: usize, n_classes: usize) -> Self {
        Self {
            d_input,
            class_names: (0..n_classes).map(|c| c.to_string()).collect(),
            standardizer: None,
        }
    }

    /// What the C export's header says about inputs and classes: the class names and the
    /// standardisation (identity for raw inputs), for `s4q_export::write_c_model`.
    pub fn export_meta(&self) -> s4q_export::ModelMeta {
        let st = self
            .standardizer
            .clone()
            .unwrap_or_else(|| Standardizer::identity(self.d_input));
        s4q_export::ModelMeta {
            class_names: self.class_names.clone(),
            input_mean: st.mean,
            input_std: st.std,
        }
    }

    /// Applies the scaling to `data` (real steps only) and checks the input width.
    pub fn apply(&self, data: &mut SequenceDataset) -> Result<()> {
        if data.d_input != self.d_input {
            bail!(
                "{} has {} channels per step but the model was trained on {}",
                data.name,
                data.d_input,
                self.d_input
            );
        }
        if let Some(s) = &self.standardizer {
            s.apply(data)
                .with_context(|| format!("standardising {}", data.name))?;
        }
        Ok(())
    }
}

/// A run's prepared data: the splits after limits, validation hold-out and scaling.
#[derive(Debug, Clone)]
pub struct PreparedData {
    /// Sequences the optimizer sees.
    pub train: SequenceDataset,
    /// Held-out training sequences for checkpoint selection, when `valid_fraction` is set.
    pub valid: Option<SequenceDataset>,
    /// The test split (reported, never used for a decision).
    pub test: SequenceDataset,
    /// What was fitted on `train` (or handed in by [`DataConfig::prepare_with`]).
    pub preprocess: Preprocess,
}

impl DataConfig {
    /// A named set with the default root and no limits.
    pub fn named(dataset: DatasetName) -> Self {
        Self {
            dataset: Some(dataset),
            files: None,
            root: default_data_root(),
            train_limit: None,
            test_limit: None,
            valid_fraction: None,
            standardize: false,
        }
    }

    /// The user's files, standardised.
    pub fn files(spec: DataFileSpec) -> Self {
        Self {
            dataset: None,
            files: Some(spec),
            standardize: true,
            ..Self::named(DatasetName::Embedded)
        }
    }

    /// A short name for logs and default directories (`smnist10k`, or the files' name).
    pub fn label(&self) -> String {
        match (&self.files, self.dataset) {
            (Some(f), _) => files_label(f),
            (None, Some(d)) => d.to_string(),
            (None, None) => "no-data".into(),
        }
    }

    /// Rejects configs that name no data, both kinds, or an invalid fraction.
    pub fn validate(&self) -> Result<()> {
        match (&self.files, self.dataset) {
            (Some(_), Some(d)) => {
                bail!("data names both the dataset `{d}` and files; give one of them")
            }
            (None, None) => bail!("no data: give a named --dataset or --train/--test files"),
            _ => {}
        }
        if let Some(f) = self.valid_fraction
            && !(f > 0.0 && f < 1.0)
        {
            bail!("valid_fraction must be in (0, 1), got {f}");
        }
        Ok(())
    }

    /// Loads the raw train/test split (no limits, no scaling).
    pub fn load_raw(&self) -> Result<Split> {
        self.validate()?;
        match (&self.files, self.dataset) {
            (Some(files), _) => files
                .load()
                .with_context(|| format!("loading the files of `{}`", files_label(files))),
            (None, Some(d)) => {
                datasets::load(d, &self.root).with_context(|| format!("loading dataset `{d}`"))
            }
            (None, None) => unreachable!("validate rejects a config without data"),
        }
    }

    /// The input width and class count of the data: known for named sets, read from the
    /// training file otherwise (so a model can be shaped before training loads the data).
    pub fn shape(&self) -> Result<(usize, usize)> {
        match (self.dataset, &self.files) {
            (Some(d), None) => Ok((1, d.n_classes())),
            _ => {
                let split = self.load_raw()?;
                Ok((split.train.d_input, split.train.n_classes))
            }
        }
    }

    /// Loads and prepares the data, fitting the scaling on the training part.
    pub fn prepare(&self) -> Result<PreparedData> {
        self.prepare_with(None)
    }

    /// Loads and prepares the data; with `fitted`, applies that scaling and label map (a QAT or
    /// evaluation of an existing run) instead of fitting new ones.
    pub fn prepare_with(&self, fitted: Option<&Preprocess>) -> Result<PreparedData> {
        let split = self.load_raw()?;
        let label = self.label();
        let mut train = split.train;
        let mut test = split.test;
        if let Some(n) = self.train_limit {
            train = train.take(n);
        }
        if let Some(n) = self.test_limit {
            test = test.take(n);
        }
        if train.is_empty() || test.is_empty() {
            bail!("dataset `{label}` has an empty train or test split");
        }
        let mut valid = None;
        if let Some(fraction) = self.valid_fraction {
            let (t, v) = train
                .stratified_split(fraction, VALID_SPLIT_SEED)
                .with_context(|| format!("holding out {fraction} of `{label}` for validation"))?;
            train = t;
            valid = Some(v);
        }
        let preprocess = match fitted {
            Some(p) => {
                if p.class_names.len() != train.n_classes {
                    bail!(
                        "the run has {} classes but `{label}` has {}",
                        p.class_names.len(),
                        train.n_classes
                    );
                }
                p.clone()
            }
            None => Preprocess {
                d_input: train.d_input,
                class_names: train.class_names.clone(),
                standardizer: self.standardize.then(|| Standardizer::fit(&train)),
            },
        };
        preprocess.apply(&mut train)?;
        preprocess.apply(&mut test)?;
        if let Some(v) = valid.as_mut() {
            preprocess.apply(v)?;
        }
        Ok(PreparedData {
            train,
            valid,
            test,
            preprocess,
        })
    }

    /// Train and test after limits and scaling (fitted afresh): the older two-split view.
    pub fn load(&self) -> Result<Split> {
        let p = self.prepare()?;
        Ok(Split {
            train: p.train,
            test: p.test,
        })
    }
}

/// The files' given name, else the train file's stem without a trailing `_TRAIN`/`_train`.
fn files_label(f: &DataFileSpec) -> String {
    if let Some(name) = &f.name {
        return name.clone();
    }
    let stem = f
        .train
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "files".into());
    for suffix in ["_TRAIN", "_train", "-train", "_Train"] {
        if let Some(s) = stem.strip_suffix(suffix) {
            return s.to_string();
        }
    }
    stem
}

/// Reads a dataset TOML (see `datasets::DataFileSpec`) into a file data config.
pub fn data_config_from_toml(path: &Path) -> Result<DataConfig> {
    let spec = DataFileSpec::from_toml_file(path)?;
    Ok(DataConfig::files(spec))
}

/// One mini-batch: inputs `[B, L, d_input]` padded to the batch's longest sequence, class
/// indices `[B]` and each sequence's real length.
pub struct Batch {
    /// `[B, L, d_input]`, zero after each sequence's end.
    pub inputs: Tensor<3>,
    /// `[B]`.
    pub targets: Tensor<1, Int>,
    /// Real steps per sequence (all `L` for equal-length data).
    pub lengths: Vec<usize>,
}

/// Builds the tensors for the samples at `indices`.
pub fn make_batch(data: &SequenceDataset, indices: &[usize], device: &Device) -> Batch {
    let b = data.batch_padded(indices);
    let n = indices.len();
    let inputs = Tensor::from_data(
        TensorData::new(b.inputs, [n, b.seq_len, data.d_input]),
        device,
    );
    let y: Vec<i64> = b.labels.into_iter().map(i64::from).collect();
    let targets = Tensor::from_data(TensorData::new(y, [n]), device);
    Batch {
        inputs,
        targets,
        lengths: b.lengths,
    }
}

/// The sample order of epoch `epoch`: a permutation seeded by `(seed, epoch)`, so a resumed
/// run sees exactly the batches the uninterrupted one would have.
pub fn epoch_order(len: usize, seed: u64, epoch: usize) -> Vec<usize> {
    datasets::permutation(
        len,
        seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_order_is_a_seeded_permutation() {
        let a = epoch_order(100, 1, 0);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_eq!(a, epoch_order(100, 1, 0));
        assert_ne!(a, epoch_order(100, 1, 1));
        assert_ne!(a, epoch_order(100, 2, 0));
    }

    #[test]
    fn data_config_needs_exactly_one_source_and_a_valid_fraction() {
        let mut c = DataConfig::named(DatasetName::Embedded);
        assert!(c.validate().is_ok());
        c.dataset = None;
        assert!(c.validate().is_err());
        let mut c = DataConfig::named(DatasetName::Embedded);
        c.valid_fraction = Some(1.0);
        assert!(c.validate().is_err());
    }

    /// Configs written before `files`, `valid_fraction` and `standardize` existed still load.
    #[test]
    fn legacy_data_config_parses() {
        let old = r#"{"dataset":"smnist10k","root":"data","train_limit":null,"test_limit":500}"#;
        let c: DataConfig = serde_json::from_str(old).unwrap();
        assert_eq!(c.dataset, Some(DatasetName::Smnist10k));
        assert_eq!(c.test_limit, Some(500));
        assert!(!c.standardize && c.files.is_none() && c.valid_fraction.is_none());
    }
}
