//! What a reproduction consists of: the budgets (`full`, `quick`, `tiny` or a file), the
//! targets, and the list of independent runs they expand to. A plan is a pure function of its
//! inputs, so every shard of a cluster array computes the same list and picks its own part.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use datasets::DatasetName;
use qat::{BlockFeatures, Component, MemoryReport, ModelDims, Parameterization, QuantSpec};
use s4d_model::S4dClassifierConfig;
use serde::{Deserialize, Serialize};

use crate::train::TrainConfig;

/// One of the paper's results that `reproduce` can regenerate.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// PTQ: one component quantized at a time per bit width, and whole-model widths.
    PtqSensitivity,
    /// QAT W4A6 over state bits x Abar bits x {PTQ-static, discrete, continuous, frozen-A}.
    QatHeatmap,
    /// Table III: FP, PTQ W4A6 Abar 8x8, QAT W8A8, QAT W4A6 Abar 16x16 / 8x8 / 6x6.
    Table3,
}

impl Target {
    /// Every target, in report order.
    pub const ALL: [Target; 3] = [Target::PtqSensitivity, Target::QatHeatmap, Target::Table3];

    /// File-name stem of the target's table and plots.
    pub fn name(self) -> &'static str {
        match self {
            Target::PtqSensitivity => "ptq-sensitivity",
            Target::QatHeatmap => "qat-heatmap",
            Target::Table3 => "table3",
        }
    }
}

/// State bits (rows) and Abar bits (columns) of the paper's QAT heatmap.
pub const HEATMAP_STATE_BITS: [u32; 4] = [16, 8, 7, 6];
/// Abar bits (columns) of the QAT heatmap.
pub const HEATMAP_ABAR_BITS: [u32; 4] = [6, 7, 8, 16];
/// The heatmap's QAT columns, in the paper's order.
pub const HEATMAP_QAT: [Parameterization; 3] = [
    Parameterization::Discrete,
    Parameterization::Continuous,
    Parameterization::FrozenA,
];

/// The W4A6 spec with `Abar` at `a_bar` bits and the state at `state` bits (`w4a6-aPxS`).
pub fn w4a6(a_bar: u32, state: u32) -> String {
    format!("w4a6-a{a_bar}x{state}")
}

/// A preset as it applies to the paper's one-block classifier (no residual sum or norm
/// output to quantize): the specs in `run.json` stay what they were before those points
/// existed, so committed sweeps keep matching their plans.
fn paper_preset(name: &str) -> Result<QuantSpec> {
    Ok(QuantSpec::preset(name)?.for_model(BlockFeatures::PAPER))
}

/// Command-line / directory name of a parameterization.
pub fn param_name(p: Parameterization) -> &'static str {
    match p {
        Parameterization::Continuous => "continuous",
        Parameterization::Discrete => "discrete",
        Parameterization::FrozenA => "frozen-a",
    }
}

/// How much compute each kind of run gets. The named profiles are below; a TOML/JSON file can
/// replace them (`--budget`), and its `name` keeps its runs apart from the others'.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Names the sweep directory (`<dataset>-<model>-<name>`).
    pub name: String,
    /// Float training epochs (convolution mode).
    pub float_epochs: usize,
    /// Float training batch size.
    pub float_batch_size: usize,
    /// Float training on the first N training sequences only.
    pub float_train_limit: Option<usize>,
    /// Every evaluation (float, PTQ, QAT) on the first N test sequences only.
    pub test_limit: Option<usize>,
    /// Training sequences used to calibrate static ranges (the same ones for PTQ and QAT).
    pub calib_samples: usize,
    /// Batch size of PTQ calibration and evaluation.
    pub eval_batch_size: usize,
    /// QAT epochs (recurrent mode).
    pub qat_epochs: usize,
    /// QAT peak learning rate (cosine-decayed).
    pub qat_lr: f64,
    /// QAT batch size.
    pub qat_batch_size: usize,
    /// QAT on the first N training sequences only.
    pub qat_train_limit: Option<usize>,
    /// QAT elementwise gradient clip.
    pub qat_grad_clip: f32,
    /// Bit widths of the one-component PTQ sweep.
    pub sensitivity_bits: Vec<u32>,
    /// Bit widths `B` of the whole-model PTQ sweep (`wBaB`).
    pub width_bits: Vec<u32>,
    /// Which QAT parameterization Table III's QAT rows use.
    pub table3_parameterization: Parameterization,
    /// Fraction of the training sequences held out (stratified) to choose the kept epoch of
    /// float and QAT runs; `None` keeps the last epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_fraction: Option<f64>,
    /// Float training stops after this many epochs without a better validation accuracy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub float_patience: Option<usize>,
    /// State-bit rows of the QAT heatmap to run (default: all of [`HEATMAP_STATE_BITS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heatmap_state_bits: Option<Vec<u32>>,
}

impl Budget {
    /// The paper's settings: 30 float epochs, 10 QAT epochs at lr 1e-4, full data.
    pub fn full() -> Self {
        Self {
            name: "full".into(),
            float_epochs: 30,
            float_batch_size: 50,
            float_train_limit: None,
            test_limit: None,
            calib_samples: 400,
            eval_batch_size: 100,
            qat_epochs: 10,
            qat_lr: 1e-4,
            qat_batch_size: 50,
            qat_train_limit: None,
            qat_grad_clip: 1000.0,
            sensitivity_bits: vec![16, 8, 6, 4],
            width_bits: vec![16, 8, 6, 4],
            table3_parameterization: Parameterization::FrozenA,
            valid_fraction: None,
            float_patience: None,
            heatmap_state_bits: None,
        }
    }

    /// The heatmap's state-bit rows this budget runs.
    pub fn heatmap_rows(&self) -> Vec<u32> {
        self.heatmap_state_bits
            .clone()
            .unwrap_or_else(|| HEATMAP_STATE_BITS.to_vec())
    }

    /// Trained until validation accuracy settles, on all 8,000 sMNIST-10k training digits less
    /// a stratified tenth held out for validation: 40 float epochs (stopped after 8 without
    /// improvement), 40 QAT epochs at lr 1e-3 cosine-decayed (5,760 steps; 8 epochs left QAT
    /// W8A8 of S4D-16h 5 points lower, `results/reproduce/probe-converged`), every epoch's
    /// model scored on the validation digits and the best one kept; all 2,000 test digits,
    /// read only for reporting.
    pub fn converged() -> Self {
        Self {
            name: "converged".into(),
            float_epochs: 40,
            float_batch_size: 50,
            float_train_limit: None,
            test_limit: None,
            calib_samples: 400,
            eval_batch_size: 100,
            qat_epochs: 40,
            qat_lr: 1e-3,
            qat_batch_size: 50,
            qat_train_limit: None,
            qat_grad_clip: 1000.0,
            sensitivity_bits: vec![8, 6, 4],
            width_bits: vec![8, 6, 4],
            table3_parameterization: Parameterization::FrozenA,
            valid_fraction: Some(0.1),
            float_patience: Some(8),
            heatmap_state_bits: Some(vec![7, 6]),
        }
    }

    /// Sized so each target finishes in under 30 minutes on 2 CPU cores for S4D-16h on
    /// sMNIST-10k (measured times in the README): 8 float epochs on 8,000 sequences, one QAT
    /// epoch of 60 steps at a higher learning rate, 500 test sequences.
    pub fn quick() -> Self {
        Self {
            name: "quick".into(),
            float_epochs: 8,
            float_batch_size: 50,
            float_train_limit: Some(8000),
            test_limit: Some(500),
            calib_samples: 200,
            eval_batch_size: 100,
            qat_epochs: 1,
            qat_lr: 1e-3,
            qat_batch_size: 25,
            qat_train_limit: Some(1500),
            qat_grad_clip: 1000.0,
            sensitivity_bits: vec![8, 6, 4],
            width_bits: vec![8, 6, 4],
            table3_parameterization: Parameterization::FrozenA,
            valid_fraction: None,
            float_patience: None,
            heatmap_state_bits: None,
        }
    }

    /// A smoke test of the machinery (seconds per run; the numbers mean nothing).
    pub fn tiny() -> Self {
        Self {
            name: "tiny".into(),
            float_epochs: 1,
            float_batch_size: 25,
            float_train_limit: Some(100),
            test_limit: Some(40),
            calib_samples: 40,
            eval_batch_size: 40,
            qat_epochs: 1,
            qat_lr: 2e-3,
            qat_batch_size: 20,
            qat_train_limit: Some(40),
            qat_grad_clip: 1000.0,
            sensitivity_bits: vec![8],
            width_bits: vec![8],
            table3_parameterization: Parameterization::FrozenA,
            valid_fraction: None,
            float_patience: None,
            heatmap_state_bits: None,
        }
    }

    /// Reads a budget from `.toml` or `.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let budget: Self = if path.extension().is_some_and(|e| e == "toml") {
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
        } else {
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
        };
        budget.validate()?;
        Ok(budget)
    }

    /// Rejects budgets that cannot run (zero epochs or batches, bad names, bad bit widths).
    pub fn validate(&self) -> Result<()> {
        if self.name.is_empty()
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            bail!(
                "budget name `{}` must be non-empty ASCII letters, digits, - or _",
                self.name
            );
        }
        let counts = [
            ("float_epochs", self.float_epochs),
            ("float_batch_size", self.float_batch_size),
            ("calib_samples", self.calib_samples),
            ("eval_batch_size", self.eval_batch_size),
            ("qat_epochs", self.qat_epochs),
            ("qat_batch_size", self.qat_batch_size),
        ];
        for (name, v) in counts {
            if v == 0 {
                bail!("budget field {name} must be >= 1");
            }
        }
        if let Some(f) = self.valid_fraction
            && !(f > 0.0 && f < 1.0)
        {
            bail!("valid_fraction must be in (0, 1), got {f}");
        }
        if let Some(rows) = &self.heatmap_state_bits
            && (rows.is_empty() || rows.iter().any(|b| !HEATMAP_STATE_BITS.contains(b)))
        {
            bail!(
                "heatmap_state_bits must be a non-empty subset of {HEATMAP_STATE_BITS:?}, got {rows:?}"
            );
        }
        if self.float_patience.is_some() && self.valid_fraction.is_none() {
            bail!(
                "float_patience needs valid_fraction (early stopping reads the validation split)"
            );
        }
        if !(self.qat_lr > 0.0 && self.qat_lr <= 1.0) {
            bail!("qat_lr must be in (0, 1], got {}", self.qat_lr);
        }
        for &b in self.sensitivity_bits.iter().chain(&self.width_bits) {
            if !(2..=16).contains(&b) {
                bail!("bit widths must be in 2..=16, got {b}");
            }
        }
        Ok(())
    }
}

/// What one run computes. Stored (with its id) as `run.json` in the run directory; a directory
/// whose `run.json` differs from the plan is never reused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Job {
    /// Float training; every quantized run of the same seed starts from it.
    Float {
        /// The training config (`data.root` is replaced by `--data-root` when run).
        train: TrainConfig,
    },
    /// Post-training quantization of a float run: calibrate, evaluate.
    Ptq {
        /// Id of the float run.
        float: String,
        /// Preset name or `component@bits`.
        spec_name: String,
        /// The quantization.
        spec: QuantSpec,
        /// Calibration batches of `batch_size` training sequences.
        calib_batches: usize,
        /// Calibration and evaluation batch size.
        batch_size: usize,
        /// Calibration draws from the first N training sequences (QAT's subset, so PTQ and
        /// QAT calibrate on the same sequences).
        train_limit: Option<usize>,
        /// First N test sequences only.
        test_limit: Option<usize>,
    },
    /// Quantization-aware fine-tuning of a float run.
    Qat {
        /// Id of the float run.
        float: String,
        /// Preset name.
        spec_name: String,
        /// The quantization.
        spec: QuantSpec,
        /// What QAT trains.
        parameterization: Parameterization,
        /// Epochs.
        epochs: usize,
        /// Peak learning rate.
        lr: f64,
        /// Elementwise gradient clip.
        grad_clip: f32,
        /// Batch size (training, calibration, evaluation).
        batch_size: usize,
        /// Calibration batches.
        calib_batches: usize,
        /// First N training sequences only.
        train_limit: Option<usize>,
        /// First N test sequences only.
        test_limit: Option<usize>,
    },
}

/// One planned run: a directory `runs/<id>` in the sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    /// Directory name, unique in the sweep.
    pub id: String,
    /// Seed of the float model (and of the QAT data order).
    pub seed: u64,
    /// What to compute.
    pub job: Job,
}

impl RunSpec {
    /// Runs that must be finished before this one starts.
    pub fn deps(&self) -> Vec<&str> {
        match &self.job {
            Job::Float { .. } => Vec::new(),
            Job::Ptq { float, .. } | Job::Qat { float, .. } => vec![float.as_str()],
        }
    }

    /// Rough relative cost, for balancing shards (a QAT run is recurrent training, a PTQ run
    /// one evaluation).
    pub fn cost(&self) -> f64 {
        match &self.job {
            Job::Float { train } => {
                let n = train.data.train_limit.unwrap_or(10_000) as f64;
                n * train.epochs as f64 / 300.0
            }
            Job::Ptq { test_limit, .. } => test_limit.unwrap_or(10_000) as f64 / 100.0,
            Job::Qat {
                epochs,
                train_limit,
                test_limit,
                ..
            } => {
                train_limit.unwrap_or(60_000) as f64 * *epochs as f64 / 30.0
                    + test_limit.unwrap_or(10_000) as f64 / 50.0
            }
        }
    }
}

/// The inputs of a plan; saved as `sweep.json` at the sweep root.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepConfig {
    /// Model preset (`s4d-16h`, `s4d-64h`, ...).
    pub model: String,
    /// Dataset.
    pub dataset: DatasetName,
    /// Seeds `0..seeds`.
    pub seeds: u64,
    /// Compute per run.
    pub budget: Budget,
}

impl SweepConfig {
    /// Checks the model preset and the budget.
    pub fn validate(&self) -> Result<()> {
        S4dClassifierConfig::preset(&self.model)
            .with_context(|| format!("unknown --model `{}`", self.model))?;
        if self.seeds == 0 {
            bail!("--seeds must be >= 1");
        }
        self.budget.validate()
    }

    /// `<out>/<dataset>-<model>-<budget>`: one directory per sweep configuration.
    pub fn root(&self, out: &Path) -> PathBuf {
        out.join(format!(
            "{}-{}-{}",
            self.dataset, self.model, self.budget.name
        ))
    }

    /// Memory savings (%) of `spec` on this model vs FP32.
    pub fn savings(&self, spec: &QuantSpec) -> Result<f64> {
        let cfg = S4dClassifierConfig::preset(&self.model)?;
        Ok(MemoryReport::new(ModelDims::from_config(&cfg), spec).savings_percent())
    }

    fn float_run(&self, seed: u64) -> Result<RunSpec> {
        let b = &self.budget;
        let mut train = TrainConfig::recipe(&self.model, self.dataset)?;
        train.epochs = b.float_epochs;
        train.batch_size = b.float_batch_size;
        train.data.train_limit = b.float_train_limit;
        train.data.test_limit = b.test_limit;
        train.data.valid_fraction = b.valid_fraction;
        train.patience = b.float_patience;
        train.seed = seed;
        train.validate()?;
        Ok(RunSpec {
            id: float_id(seed),
            seed,
            job: Job::Float { train },
        })
    }

    fn ptq_run(&self, seed: u64, spec_name: &str, spec: QuantSpec) -> RunSpec {
        let b = &self.budget;
        RunSpec {
            id: format!("ptq-{}-s{seed}", sanitize(spec_name)),
            seed,
            job: Job::Ptq {
                float: float_id(seed),
                spec_name: spec_name.to_string(),
                spec,
                calib_batches: b.calib_samples.div_ceil(b.eval_batch_size),
                batch_size: b.eval_batch_size,
                train_limit: b.qat_train_limit,
                test_limit: b.test_limit,
            },
        }
    }

    fn qat_run(&self, seed: u64, spec_name: &str, p: Parameterization) -> Result<RunSpec> {
        let b = &self.budget;
        Ok(RunSpec {
            id: qat_id(spec_name, p, seed),
            seed,
            job: Job::Qat {
                float: float_id(seed),
                spec_name: spec_name.to_string(),
                spec: paper_preset(spec_name)?,
                parameterization: p,
                epochs: b.qat_epochs,
                lr: b.qat_lr,
                grad_clip: b.qat_grad_clip,
                batch_size: b.qat_batch_size,
                calib_batches: b.calib_samples.div_ceil(b.qat_batch_size),
                train_limit: b.qat_train_limit,
                test_limit: b.test_limit,
            },
        })
    }

    /// Every run the targets need, each once (targets share runs: Table III's QAT W4A6 Abar
    /// 8x8 is a heatmap cell), float runs first.
    pub fn plan(&self, targets: &[Target]) -> Result<Vec<RunSpec>> {
        self.validate()?;
        let mut runs: Vec<RunSpec> = Vec::new();
        let mut seen = BTreeSet::new();
        let mut push = |run: RunSpec, runs: &mut Vec<RunSpec>| {
            if seen.insert(run.id.clone()) {
                runs.push(run);
            }
        };
        for seed in 0..self.seeds {
            push(self.float_run(seed)?, &mut runs);
        }
        let b = &self.budget;
        for seed in 0..self.seeds {
            for &target in targets {
                match target {
                    Target::PtqSensitivity => {
                        for case in QuantSpec::sensitivity_grid(
                            &Component::for_model(BlockFeatures::PAPER),
                            &b.sensitivity_bits,
                        )? {
                            let name = sensitivity_name(case.component, case.bits);
                            push(self.ptq_run(seed, &name, case.spec), &mut runs);
                        }
                        for &w in &b.width_bits {
                            let name = width_name(w);
                            push(self.ptq_run(seed, &name, paper_preset(&name)?), &mut runs);
                        }
                    }
                    Target::QatHeatmap => {
                        for s in b.heatmap_rows() {
                            for &a in &HEATMAP_ABAR_BITS {
                                let name = w4a6(a, s);
                                push(self.ptq_run(seed, &name, paper_preset(&name)?), &mut runs);
                                for p in HEATMAP_QAT {
                                    push(self.qat_run(seed, &name, p)?, &mut runs);
                                }
                            }
                        }
                    }
                    Target::Table3 => {
                        let name = w4a6(8, 8);
                        push(self.ptq_run(seed, &name, paper_preset(&name)?), &mut runs);
                        for name in table3_qat_specs() {
                            push(
                                self.qat_run(seed, name, b.table3_parameterization)?,
                                &mut runs,
                            );
                        }
                    }
                }
            }
        }
        Ok(runs)
    }
}

/// Table III's QAT rows, in the paper's order.
pub fn table3_qat_specs() -> [&'static str; 4] {
    ["w8a8", "w4a6-a16x16", "w4a6-a8x8", "w4a6-a6x6"]
}

/// Id of the float run of `seed`.
pub fn float_id(seed: u64) -> String {
    format!("float-s{seed}")
}

/// Id of the QAT run of `spec_name` with `p` and `seed`.
pub fn qat_id(spec_name: &str, p: Parameterization, seed: u64) -> String {
    format!("qat-{}-{}-s{seed}", sanitize(spec_name), param_name(p))
}

/// Id of the PTQ run of `spec_name` and `seed`.
pub fn ptq_id(spec_name: &str, seed: u64) -> String {
    format!("ptq-{}-s{seed}", sanitize(spec_name))
}

/// Spec name of a one-component sensitivity case (`a_bar@8`).
pub fn sensitivity_name(c: Component, bits: u32) -> String {
    format!("{}@{bits}", c.name())
}

/// Spec name of a whole-model width (`w8a8`).
pub fn width_name(bits: u32) -> String {
    format!("w{bits}a{bits}")
}

/// A spec name as a directory-name part: `a_bar@8` -> `a_bar-8b`.
fn sanitize(name: &str) -> String {
    name.replace('@', "-").replace(['/', ' '], "_") + if name.contains('@') { "b" } else { "" }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every committed sweep still matches what its `sweep.json` plans today, run for run: a
    /// change to presets, budgets or specs that alters a finished run's configuration would
    /// make `reproduce` refuse (or redo) the committed results.
    #[test]
    fn committed_sweeps_match_their_plans() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../results/reproduce");
        let mut checked = 0;
        let entries = std::fs::read_dir(&root).expect("results/reproduce");
        for entry in entries {
            let dir = entry.expect("entry").path();
            let Ok(text) = std::fs::read_to_string(dir.join("sweep.json")) else {
                continue;
            };
            let cfg: SweepConfig = serde_json::from_str(&text).expect("sweep.json");
            for run in cfg.plan(&Target::ALL).expect("plan") {
                let path = dir.join("runs").join(&run.id).join("run.json");
                let Ok(saved) = std::fs::read_to_string(&path) else {
                    continue;
                };
                let saved: RunSpec = serde_json::from_str(&saved).expect("run.json");
                assert_eq!(saved, run, "{}", path.display());
                checked += 1;
            }
        }
        assert!(checked > 100, "only {checked} committed runs found");
    }

    fn cfg(budget: Budget, seeds: u64) -> SweepConfig {
        SweepConfig {
            model: "s4d-16h".into(),
            dataset: DatasetName::Embedded,
            seeds,
            budget,
        }
    }

    #[test]
    fn plan_sizes_and_sharing() {
        let c = cfg(Budget::quick(), 2);
        let heat = c.plan(&[Target::QatHeatmap]).unwrap();
        // 2 float + 2 x (16 PTQ + 48 QAT)
        assert_eq!(heat.len(), 2 + 2 * 64);
        let t3 = c.plan(&[Target::Table3]).unwrap();
        assert_eq!(t3.len(), 2 + 2 * 5);
        let both = c.plan(&[Target::QatHeatmap, Target::Table3]).unwrap();
        // Table III shares PTQ 8x8 and QAT 16x16/8x8/6x6 (frozen-A) with the heatmap; only
        // QAT W8A8 is new.
        assert_eq!(both.len(), heat.len() + 2);
        let sens = c.plan(&[Target::PtqSensitivity]).unwrap();
        assert_eq!(sens.len(), 2 + 2 * (16 * 3 + 3));
        let ids: BTreeSet<_> = both.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids.len(), both.len(), "ids are unique");
        assert!(ids.contains("qat-w4a6-a8x8-frozen-a-s1"));
        assert!(ids.contains("ptq-w4a6-a6x16-s0"));
        // Float runs come first and every dependency is in the plan.
        assert!(matches!(both[0].job, Job::Float { .. }));
        for r in &both {
            for d in r.deps() {
                assert!(ids.contains(d), "{} depends on missing {d}", r.id);
            }
        }
    }

    /// The converged budget runs heatmap rows 7 and 6 only, and its float runs hold out a
    /// validation split with early stopping; the quick budget's plan is unchanged by it.
    #[test]
    fn converged_budget_plans_rows_7_and_6_with_validation() {
        let c = cfg(Budget::converged(), 1);
        let heat = c.plan(&[Target::QatHeatmap]).unwrap();
        // 1 float + 2 state rows x 4 Abar widths x (1 PTQ + 3 QAT).
        assert_eq!(heat.len(), 1 + 2 * 4 * 4);
        assert!(
            heat.iter()
                .all(|r| !r.id.contains("x16-") && !r.id.contains("x8-"))
        );
        match &heat[0].job {
            Job::Float { train } => {
                assert_eq!(train.data.valid_fraction, Some(0.1));
                assert_eq!(train.patience, Some(8));
            }
            other => panic!("first run is not the float run: {other:?}"),
        }
        let mut b = Budget::converged();
        b.heatmap_state_bits = Some(vec![5]);
        assert!(b.validate().is_err());
        let mut b = Budget::converged();
        b.valid_fraction = None;
        assert!(b.validate().is_err(), "patience without a validation split");
    }

    #[test]
    fn plan_is_deterministic_and_names_are_safe() {
        let c = cfg(Budget::tiny(), 1);
        let a = c.plan(&Target::ALL).unwrap();
        assert_eq!(a, c.plan(&Target::ALL).unwrap());
        assert!(a.iter().any(|r| r.id == "ptq-a_bar-8b-s0"));
        for r in &a {
            assert!(
                r.id.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b)),
                "{}",
                r.id
            );
        }
    }

    #[test]
    fn budget_round_trips_and_validates() {
        for b in [
            Budget::full(),
            Budget::quick(),
            Budget::tiny(),
            Budget::converged(),
        ] {
            b.validate().unwrap();
            let t = toml::to_string(&b).unwrap();
            assert_eq!(toml::from_str::<Budget>(&t).unwrap(), b);
            let j = serde_json::to_string(&b).unwrap();
            assert_eq!(serde_json::from_str::<Budget>(&j).unwrap(), b);
        }
        let mut b = Budget::tiny();
        b.name = "../x".into();
        assert!(b.validate().is_err());
        let mut b = Budget::tiny();
        b.sensitivity_bits = vec![1];
        assert!(b.validate().is_err());
        let c = cfg(Budget::tiny(), 0);
        assert!(c.plan(&[Target::Table3]).is_err());
        let mut c = cfg(Budget::tiny(), 1);
        c.model = "s4d-3h".into();
        assert!(c.plan(&[Target::Table3]).is_err());
    }

    #[test]
    fn run_spec_round_trips_through_json() {
        let c = cfg(Budget::quick(), 1);
        for r in c.plan(&Target::ALL).unwrap() {
            let text = serde_json::to_string(&r).unwrap();
            assert_eq!(
                serde_json::from_str::<RunSpec>(&text).unwrap(),
                r,
                "{}",
                r.id
            );
        }
    }
}
