//! Command-line options shared by the jobs that read data or build a model: where the data
//! comes from (a named set, two files or a dataset TOML) and the model's shape.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::Args;
use datasets::{DataFileSpec, DatasetName};
use s4d_model::{NormKind, NormPosition, S4dClassifierConfig, S4dConfig};

use crate::data::DataConfig;

/// Where the data comes from and how it is split and scaled.
#[derive(Args, Debug, Clone)]
pub struct DataArgs {
    /// A named dataset: embedded (bundled, no fetch), smnist10k, sfashion, smnist, psmnist.
    /// Default: embedded, unless --train/--test or --data are given.
    #[arg(long)]
    pub dataset: Option<DatasetName>,
    /// Your training file: .ts (UCR/UEA), .npy (labels in the sibling y file), .npz (X, y) or .csv.
    #[arg(long, requires = "test", conflicts_with_all = ["dataset", "data"])]
    pub train: Option<PathBuf>,
    /// Your test file, same format as --train.
    #[arg(long, requires = "train")]
    pub test: Option<PathBuf>,
    /// A dataset TOML naming the train and test files (see the README, "Your own data").
    #[arg(long, conflicts_with = "dataset")]
    pub data: Option<PathBuf>,
    /// Features per time step of a CSV file (other formats carry their own).
    #[arg(long)]
    pub d_input: Option<usize>,
    /// Hold out this fraction of the training sequences (stratified) to pick the best epoch.
    #[arg(long)]
    pub valid_fraction: Option<f64>,
    /// Feed files' values as they are (default: standardise each channel with the training
    /// split's mean and deviation; named sets are never standardised).
    #[arg(long)]
    pub no_standardize: bool,
}

impl DataArgs {
    /// The data config these options describe, with the named sets' `root` and the limits.
    pub fn to_config(
        &self,
        root: &Path,
        train_limit: Option<usize>,
        test_limit: Option<usize>,
    ) -> Result<DataConfig> {
        let mut cfg = match (&self.data, &self.train, &self.test, self.dataset) {
            (Some(toml), None, None, None) => crate::data::data_config_from_toml(toml)?,
            (None, Some(train), Some(test), None) => DataConfig::files(DataFileSpec {
                name: None,
                train: train.clone(),
                test: test.clone(),
                format: None,
                d_input: self.d_input,
                train_labels: None,
                test_labels: None,
            }),
            (None, None, None, d) => DataConfig::named(d.unwrap_or(DatasetName::Embedded)),
            _ => bail!("give one of --dataset, --train with --test, or --data"),
        };
        if cfg.files.is_none() && self.d_input.is_some() {
            bail!("--d-input applies to CSV files only");
        }
        cfg.root = root.to_path_buf();
        cfg.train_limit = train_limit;
        cfg.test_limit = test_limit;
        cfg.valid_fraction = self.valid_fraction;
        if self.no_standardize {
            cfg.standardize = false;
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

/// The model's shape: a preset, optionally reshaped. `d_input` and the class count always
/// come from the data.
#[derive(Args, Debug, Clone)]
pub struct ShapeArgs {
    /// Model preset to start from: s4d-16h, s4d-64h, s4d-256h, s4d-512h.
    #[arg(long, default_value = "s4d-16h")]
    pub model: String,
    /// Width H (heads, one SSM each).
    #[arg(long)]
    pub d_model: Option<usize>,
    /// Real state size N per head (even).
    #[arg(long)]
    pub d_state: Option<usize>,
    /// Number of S4D blocks.
    #[arg(long)]
    pub n_layers: Option<usize>,
    /// Residual connection around each block.
    #[arg(long)]
    pub residual: bool,
    /// Normalisation in each block: none, layer or batch.
    #[arg(long, value_enum, default_value_t = NormArg::None)]
    pub norm: NormArg,
    /// Normalise each block's input (pre-norm) instead of its output after the residual sum.
    #[arg(long)]
    pub prenorm: bool,
    /// Dropout after each block (training only).
    #[arg(long)]
    pub dropout: Option<f64>,
}

/// Normalisation choices on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NormArg {
    /// No normalisation (the paper's model).
    None,
    /// LayerNorm over the H channels of each step.
    Layer,
    /// BatchNorm per channel (running statistics at inference; a per-channel affine there).
    Batch,
}

impl ShapeArgs {
    /// The architecture for data with `d_input` channels and `n_classes` classes.
    pub fn to_config(&self, d_input: usize, n_classes: usize) -> Result<S4dClassifierConfig> {
        let mut cfg = S4dClassifierConfig::preset(&self.model)?;
        let mut ssm: S4dConfig = cfg.ssm.clone();
        if let Some(h) = self.d_model {
            ssm.d_model = h;
        }
        if let Some(n) = self.d_state {
            ssm.d_state = n;
        }
        cfg.ssm = ssm;
        if let Some(l) = self.n_layers {
            cfg.n_layers = l;
        }
        cfg.residual = self.residual;
        // LayerNorm keeps its original spelling (`layer_norm = true`), so configs of runs
        // started before `norm` existed compare equal on resume.
        cfg.layer_norm = self.norm == NormArg::Layer;
        cfg.norm = (self.norm == NormArg::Batch).then_some(NormKind::Batch);
        cfg.norm_position = self.prenorm.then_some(NormPosition::Pre);
        if let Some(p) = self.dropout {
            cfg.dropout = p;
        }
        cfg.d_input = d_input;
        cfg.n_classes = n_classes;
        cfg.validate()?;
        Ok(cfg)
    }
}

/// The `d_input` and class count of `data` (see [`DataConfig::shape`]).
pub fn data_shape(data: &DataConfig) -> Result<(usize, usize)> {
    data.shape()
}
