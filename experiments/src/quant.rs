//! `experiments ptq | qat | memory`: post-training quantization (with per-component
//! sensitivity), quantization-aware fine-tuning of a float run, and memory accounting.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use clap::Args;
use qat::{BlockFeatures, Component, MemoryReport, ModelDims, Parameterization, QuantSpec};
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::args::{DataArgs, ShapeArgs, data_shape};
use crate::checkpoint::{read_json, write_json};
use crate::device::DeviceName;
use crate::eval::evaluate;
use s4d_model::{S4dClassifierConfig, SsmMode};
use s4q_train::DistillConfig;
pub use s4q_train::quantize::{
    QatResult, QatRunConfig, ScratchConfig, Source, balanced_model, load_float_source,
    load_quantized, ptq_eval, qat,
};

/// Options shared by `ptq` and `qat`: which float run, which data.
#[derive(Args, Debug, Clone)]
pub struct SourceArgs {
    /// Float run directory (from `experiments train`); not with `qat --from-scratch`.
    #[arg(long)]
    run: Option<PathBuf>,
    #[arg(long, default_value = "data")]
    data_root: PathBuf,
    /// Evaluate on the first N test sequences only.
    #[arg(long)]
    test_limit: Option<usize>,
    /// Training batches used to calibrate static ranges.
    #[arg(long, default_value_t = 4)]
    calib_batches: usize,
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    #[arg(long, value_enum, default_value_t = DeviceName::Flex)]
    device: DeviceName,
}

/// Options of `experiments ptq`.
#[derive(Args, Debug)]
pub struct PtqArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Specs to evaluate: presets (fp32, w8a8, w4a6-a8x8, ...) or .toml/.json files.
    #[arg(long, value_delimiter = ',', default_value = "w8a8,w4a6-a8x8")]
    spec: Vec<String>,
    /// Also quantize one component at a time at each of --bits (everything else float).
    #[arg(long)]
    sensitivity: bool,
    /// With --sensitivity: quantize each block's points in that block alone (`blocks.<i>.<point>`),
    /// to see which block of a deep model is the sensitive one.
    #[arg(long, requires = "sensitivity")]
    per_block: bool,
    /// Bit widths of the sensitivity sweep.
    #[arg(long, value_delimiter = ',', default_value = "8,6,4")]
    bits: Vec<u32>,
    /// Write the results as JSON here (a Markdown table is printed).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Balance the SSM state per mode before quantizing (see `qat --balance-state`).
    #[arg(long, value_name = "ALPHA")]
    balance_state: Option<f32>,
}

/// Options of `experiments qat`.
#[derive(Args, Debug)]
pub struct QatArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Target spec (preset or file).
    #[arg(long, default_value = "w8a8")]
    spec: String,
    /// What QAT trains: continuous, discrete or frozen-a.
    #[arg(long, value_enum, default_value_t = ParamArg::Continuous)]
    parameterization: ParamArg,
    /// Fine-tuning epochs in recurrent mode (paper: 10).
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    /// Peak learning rate (paper: 1e-4), cosine-decayed.
    #[arg(long, default_value_t = 1e-4)]
    pub(crate) lr: f64,
    /// Elementwise gradient clip (paper: 1000).
    #[arg(long, default_value_t = 1000.0)]
    grad_clip: f32,
    /// Fine-tune on the first N training sequences only.
    #[arg(long)]
    train_limit: Option<usize>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output run directory.
    #[arg(long)]
    out_dir: PathBuf,
    /// Continue an interrupted QAT run in --out-dir.
    #[arg(long)]
    resume: bool,
    /// Rescale each SSM mode's state before quantizing (free at inference: folded into B and
    /// C) so every mode of a head spans `(amp / amp_max)^(1 - ALPHA)` of the head's range;
    /// 1 evens them out fully, 0 is the paper's basis. Helps states of 6 bits and below.
    #[arg(long, value_name = "ALPHA")]
    balance_state: Option<f32>,
    /// Share of the optimizer steps that ramp the rate up to --lr before the cosine decay
    /// (0: start at the peak, as the paper does); steadies high peak rates.
    #[arg(long, value_name = "SHARE", default_value_t = 0.0)]
    warmup_fraction: f64,
    /// Distil from the float run: this share (0, 1] of the loss matches the float model's
    /// softened outputs instead of the labels (1: the teacher alone).
    #[arg(long, value_name = "WEIGHT", conflicts_with = "from_scratch")]
    pub(crate) distill: Option<f32>,
    /// Temperature of the distillation softmax (with --distill).
    #[arg(long, value_name = "T", default_value_t = 1.0, requires = "distill")]
    pub(crate) distill_temperature: f32,
    /// Train the quantized model from random initialisation (no float run): give the data
    /// and the shape as for `train`.
    #[arg(long, conflicts_with = "run")]
    from_scratch: bool,
    #[command(flatten)]
    scratch_data: DataArgs,
    #[command(flatten)]
    scratch_shape: ShapeArgs,
    /// From scratch: epochs at the start during which static ranges are re-estimated from the
    /// moving weights; then they are frozen.
    #[arg(long, default_value_t = 1)]
    observer_epochs: usize,
    /// From scratch: optimizer steps between two re-estimations during those epochs.
    #[arg(long, default_value_t = 20)]
    recalibrate_every: usize,
}

/// The paper's QAT parameterizations as a CLI value.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ParamArg {
    Continuous,
    Discrete,
    FrozenA,
}

impl From<ParamArg> for Parameterization {
    fn from(p: ParamArg) -> Self {
        match p {
            ParamArg::Continuous => Parameterization::Continuous,
            ParamArg::Discrete => Parameterization::Discrete,
            ParamArg::FrozenA => Parameterization::FrozenA,
        }
    }
}

/// Options of `experiments memory`.
#[derive(Args, Debug)]
pub struct MemoryArgs {
    /// Spec (preset or file).
    #[arg(long, default_value = "w4a6-a8x8")]
    spec: String,
    /// Model preset.
    #[arg(long, default_value = "s4d-64h")]
    model: String,
    /// Or a run directory: its `model.json` gives the shape (depth, residual, norm), and the
    /// spec's per-block overrides are checked against it.
    #[arg(long, conflicts_with = "model")]
    run: Option<PathBuf>,
}

/// One evaluated configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PtqRow {
    /// Spec name or `component@bits`.
    pub name: String,
    /// Test accuracy (%).
    pub accuracy: f64,
    /// Accuracy change vs the float model (points).
    pub delta: f64,
    /// Memory savings vs FP32 (%).
    pub savings: f64,
}

/// The `--run` of a job that needs a float run.
fn float_run(args: &SourceArgs) -> Result<&Path> {
    args.run
        .as_deref()
        .context("--run (a float run directory from `experiments train`) is required")
}

fn load_source(args: &SourceArgs, train_limit: Option<usize>, device: &Device) -> Result<Source> {
    load_float_source(
        float_run(args)?,
        &args.data_root,
        train_limit,
        args.test_limit,
        device,
    )
}

/// `experiments ptq`.
pub fn run_ptq(args: &PtqArgs) -> Result<()> {
    let device = args.source.device.device()?;
    let mut src = load_source(&args.source, None, &device)?;
    if let Some(alpha) = args.balance_state {
        let model = src.model.clone();
        let (calib, batch) = (args.source.calib_batches, args.source.batch_size);
        src.model = balanced_model(model, &src, alpha, calib, batch, &device, None)?;
    }
    let float = evaluate(
        &src.model,
        &src.test,
        args.source.batch_size,
        SsmMode::Convolution,
        &device,
    );
    info!(accuracy = float.accuracy, "float model");
    let mut rows = vec![PtqRow {
        name: "fp32 (float, conv mode)".into(),
        accuracy: float.accuracy,
        delta: 0.0,
        savings: 0.0,
    }];
    let mut push = |name: String, acc: f64, savings: f64| {
        info!(name = name.as_str(), accuracy = format!("{acc:.2}"), "ptq");
        rows.push(PtqRow {
            name,
            accuracy: acc,
            delta: acc - float.accuracy,
            savings,
        });
    };
    for name in &args.spec {
        let spec = QuantSpec::load(name)?;
        let (acc, savings) = ptq_eval(
            &src,
            spec,
            args.source.calib_batches,
            args.source.batch_size,
            &device,
        )?;
        push(name.clone(), acc, savings);
    }
    if args.sensitivity {
        let components = Component::for_model(BlockFeatures::of_config(&src.float_cfg));
        let mut cases: Vec<(String, QuantSpec)> = Vec::new();
        for c in components {
            for &bits in &args.bits {
                if args.per_block && c.is_per_block() {
                    for i in 0..src.float_cfg.n_layers {
                        let name = format!("blocks.{i}.{}@{bits}", c.name());
                        cases.push((name, QuantSpec::only_in_block(i, c, bits)?));
                    }
                } else {
                    cases.push((format!("{}@{bits}", c.name()), QuantSpec::only(c, bits)?));
                }
            }
        }
        for (name, spec) in cases {
            let (acc, savings) = ptq_eval(
                &src,
                spec,
                args.source.calib_batches,
                args.source.batch_size,
                &device,
            )?;
            push(name, acc, savings);
        }
    }
    println!("| configuration | test acc. % | delta vs float (pts) | memory savings % |");
    println!("|---|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {:.2} | {:+.2} | {:.2} |",
            r.name, r.accuracy, r.delta, r.savings
        );
    }
    if let Some(out) = &args.out {
        write_json(
            out,
            &serde_json::json!({
                "run": args.source.run,
                "test_samples": src.test.len(),
                "calib_batches": args.source.calib_batches,
                "batch_size": args.source.batch_size,
                "rows": rows,
            }),
        )?;
    }
    Ok(())
}

/// `experiments qat`: calibrate (PTQ), then fine-tune in recurrent mode with fake quantization.
pub fn run_qat(args: &QatArgs) -> Result<()> {
    let device = args.source.device.device()?;
    let spec = QuantSpec::load(&args.spec)?;
    let scratch = if args.from_scratch {
        let data = args.scratch_data.to_config(
            &args.source.data_root,
            args.train_limit,
            args.source.test_limit,
        )?;
        let (d_input, n_classes) = data_shape(&data)?;
        Some(ScratchConfig {
            model: args.scratch_shape.to_config(d_input, n_classes)?,
            data,
            observer_epochs: args.observer_epochs,
            recalibrate_every: args.recalibrate_every,
        })
    } else {
        let d = &args.scratch_data;
        if d.dataset.is_some() || d.train.is_some() || d.data.is_some() {
            bail!(
                "QAT of a float run uses that run's data; --dataset/--train/--data go with --from-scratch"
            );
        }
        float_run(&args.source)?;
        None
    };
    let run_cfg = QatRunConfig {
        float_run: args.source.run.clone(),
        scratch,
        spec,
        parameterization: args.parameterization.into(),
        epochs: args.epochs,
        lr: args.lr,
        warmup_fraction: args.warmup_fraction,
        grad_clip: args.grad_clip,
        batch_size: args.source.batch_size,
        train_limit: args.train_limit,
        test_limit: args.source.test_limit,
        calib_batches: args.source.calib_batches,
        seed: args.seed,
        balance_state: args.balance_state,
        distill: args.distill.map(|weight| DistillConfig {
            weight,
            temperature: args.distill_temperature,
        }),
    };
    let result = qat(
        &run_cfg,
        &args.spec,
        &args.source.data_root,
        &args.out_dir,
        args.resume,
        &device,
    )?;
    let kept = match result.valid_acc {
        Some(v) => format!(" (epoch {} kept: validation {v:.2}%)", result.kept_epoch),
        None => String::new(),
    };
    if result.from_scratch {
        println!(
            "{} from scratch: QAT {:.2}% after {} epochs (calibrated at init: {:.2}%){kept}",
            args.spec, result.qat_acc, result.epochs, result.ptq_acc
        );
    } else {
        println!(
            "{}: float {:.2}%, PTQ {:.2}%, QAT {:.2}% after {} epochs{kept}",
            args.spec, result.float_acc, result.ptq_acc, result.qat_acc, result.epochs
        );
    }
    Ok(())
}

/// `experiments memory`.
pub fn run_memory(args: &MemoryArgs) -> Result<()> {
    let (cfg, name) = match &args.run {
        Some(dir) => {
            let cfg: S4dClassifierConfig = read_json(&dir.join("model.json"))
                .with_context(|| format!("{} is not a run directory", dir.display()))?;
            (cfg, dir.display().to_string())
        }
        None => (
            S4dClassifierConfig::preset(&args.model)?,
            args.model.clone(),
        ),
    };
    let spec = QuantSpec::load(&args.spec)?;
    spec.check_model(&vec![BlockFeatures::of_config(&cfg); cfg.n_layers])
        .with_context(|| format!("spec {} for {name}", args.spec))?;
    let report = MemoryReport::new(ModelDims::from_config(&cfg), &spec);
    println!("{report}");
    println!(
        "{name} {}: {:.2}% smaller than FP32",
        args.spec,
        report.savings_percent()
    );
    Ok(())
}
