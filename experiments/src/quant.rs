//! `experiments ptq | qat | memory`: post-training quantization (with per-component
//! sensitivity), quantization-aware fine-tuning of a float run, and memory accounting.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;
use clap::Args;
use datasets::SequenceDataset;
use qat::{
    Component, MemoryReport, ModelDims, Parameterization, QuantSpec, QuantizedClassifier, calibrate,
};
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::checkpoint::{
    CheckpointDir, load_classifier, load_module, load_optimizer, read_json, save_module,
    save_optimizer, write_json,
};
use crate::data::{epoch_order, make_batch};
use crate::device::DeviceName;
use crate::eval::evaluate;
use crate::metrics::MetricsLog;
use crate::progress::{log_tick, progress_bar};
use crate::train::{DataConfig, TrainConfig, count_correct, warmup_cosine_lr};
use s4d_model::{S4dClassifier, S4dClassifierConfig, SsmMode};

/// Options shared by `ptq` and `qat`: which float run, which data.
#[derive(Args, Debug, Clone)]
pub struct SourceArgs {
    /// Float run directory (from `experiments train`).
    #[arg(long)]
    run: PathBuf,
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
    lr: f64,
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

/// A trained float run with its data, the starting point of every PTQ and QAT job.
pub struct Source {
    /// Architecture of the float model.
    pub float_cfg: S4dClassifierConfig,
    /// The float model.
    pub model: S4dClassifier,
    /// Training split (calibration and QAT data).
    pub train: SequenceDataset,
    /// Test split.
    pub test: SequenceDataset,
}

fn load_source(args: &SourceArgs, train_limit: Option<usize>, device: &Device) -> Result<Source> {
    load_float_source(
        &args.run,
        &args.data_root,
        train_limit,
        args.test_limit,
        device,
    )
}

/// `model` with its state balanced at strength `alpha` (`qat::balance`), measured on the same
/// calibration batches the quantizers see; the per-block report goes to the log and, with
/// `record`, to a JSON file.
fn balanced_model(
    model: S4dClassifier,
    src: &Source,
    alpha: f32,
    calib_batches: usize,
    batch_size: usize,
    device: &Device,
    record: Option<&Path>,
) -> Result<S4dClassifier> {
    let batches = calibration_batches(&src.train, calib_batches, batch_size, device);
    let amps = qat::balance::mode_amplitudes(&model.valid(), batches)?;
    let (balanced, report) = qat::balance_state(model, &amps, alpha)?;
    for (block, b) in report.iter().enumerate() {
        info!(
            block,
            alpha,
            spread_before = b.spread_before,
            spread_after = b.spread_after,
            "balanced the state: largest per-head mode range ratio"
        );
    }
    if let Some(path) = record {
        write_json(path, &report)?;
    }
    Ok(balanced)
}

/// Loads the float run in `run` and its dataset (read from the run's `config.json`), so that
/// callers other than the CLI (the `reproduce` sweeps) quantize the same way `ptq`/`qat` do.
pub fn load_float_source(
    run: &Path,
    data_root: &Path,
    train_limit: Option<usize>,
    test_limit: Option<usize>,
    device: &Device,
) -> Result<Source> {
    let cfg: TrainConfig = read_json(&run.join("config.json"))
        .with_context(|| format!("{} is not a float run directory", run.display()))?;
    let model = load_classifier(run, device)?;
    let split = DataConfig {
        dataset: cfg.data.dataset,
        root: data_root.to_path_buf(),
        train_limit,
        test_limit,
    }
    .load()?;
    Ok(Source {
        float_cfg: cfg.model,
        model,
        train: split.train,
        test: split.test,
    })
}

/// The first `n` training batches in a fixed order (calibration data).
fn calibration_batches(
    data: &SequenceDataset,
    n: usize,
    batch: usize,
    device: &Device,
) -> Vec<Tensor<3>> {
    let order = epoch_order(data.len(), 12345, 0);
    order
        .chunks(batch)
        .take(n)
        .map(|idx| make_batch(data, idx, device).inputs)
        .collect()
}

/// Test accuracy (%) of a quantized model (recurrent mode).
pub fn evaluate_quantized(
    model: &QuantizedClassifier,
    data: &SequenceDataset,
    batch_size: usize,
    device: &Device,
) -> Result<f64> {
    let indices: Vec<usize> = (0..data.len()).collect();
    let bar = progress_bar(
        indices.len().div_ceil(batch_size) as u64,
        "eval (quantized)",
    );
    let mut correct = 0;
    for chunk in indices.chunks(batch_size) {
        let batch = make_batch(data, chunk, device);
        correct += count_correct(model.forward(batch.inputs)?, batch.targets);
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(100.0 * correct as f64 / data.len() as f64)
}

/// Calibrates `spec` on `calib_batches` training batches of `src` and returns (test accuracy %,
/// memory savings % vs FP32): one PTQ data point, shared by `ptq` and `reproduce`.
pub fn ptq_eval(
    src: &Source,
    spec: QuantSpec,
    calib_batches: usize,
    batch_size: usize,
    device: &Device,
) -> Result<(f64, f64)> {
    let savings =
        MemoryReport::new(ModelDims::from_config(&src.float_cfg), &spec).savings_percent();
    let mut q =
        QuantizedClassifier::from_float(src.model.clone(), spec, Parameterization::Continuous)?;
    calibrate(
        &mut q,
        calibration_batches(&src.train, calib_batches, batch_size, device),
    )?;
    Ok((
        evaluate_quantized(&q, &src.test, batch_size, device)?,
        savings,
    ))
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
        for case in QuantSpec::sensitivity_grid(&Component::ALL, &args.bits)? {
            let (acc, savings) = ptq_eval(
                &src,
                case.spec,
                args.source.calib_batches,
                args.source.batch_size,
                &device,
            )?;
            push(
                format!("{}@{}", case.component.name(), case.bits),
                acc,
                savings,
            );
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

/// Everything that defines a QAT run; `qat` stores it as `qat_config.json` beside its
/// checkpoints so `--resume` rebuilds the same model, and `reproduce` builds it directly.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QatRunConfig {
    /// The float run fine-tuned.
    pub float_run: PathBuf,
    /// Target quantization.
    pub spec: QuantSpec,
    /// What QAT trains.
    pub parameterization: Parameterization,
    /// Fine-tuning epochs (recurrent mode).
    pub epochs: usize,
    /// Peak learning rate, cosine-decayed.
    pub lr: f64,
    /// Elementwise gradient clip.
    pub grad_clip: f32,
    /// Sequences per step (also the calibration and evaluation batch).
    pub batch_size: usize,
    /// Fine-tune on the first N training sequences only.
    pub train_limit: Option<usize>,
    /// Evaluate on the first N test sequences only.
    pub test_limit: Option<usize>,
    /// Training batches used to calibrate static ranges.
    pub calib_batches: usize,
    /// Seeds the data order.
    pub seed: u64,
    /// Strength `alpha` in [0, 1] of the per-mode state balancing applied to the float model
    /// before calibration (`qat::balance`); `None`: the paper's state basis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance_state: Option<f32>,
}

/// What a finished QAT run reports (`result.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QatResult {
    /// Spec name (preset or file) as given.
    pub spec: String,
    /// What QAT trained.
    pub parameterization: Parameterization,
    /// Float model accuracy (%), convolution mode.
    pub float_acc: f64,
    /// Accuracy (%) after calibration, before fine-tuning.
    pub ptq_acc: f64,
    /// Accuracy (%) after fine-tuning.
    pub qat_acc: f64,
    /// Epochs trained.
    pub epochs: usize,
    /// Training sequences.
    pub train_samples: usize,
    /// Test sequences.
    pub test_samples: usize,
    /// Wall time of fine-tuning (s), summed over resumes.
    pub train_seconds: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct QatState {
    epoch: usize,
    global_step: usize,
    float_acc: f64,
    ptq_acc: f64,
    train_seconds: f64,
}

fn save_quantized(
    model: &QuantizedClassifier,
    cfg: &S4dClassifierConfig,
    dir: &Path,
) -> Result<()> {
    write_json(&dir.join("model.json"), cfg)?;
    model.save_quant_state_json(&dir.join("quant_state.json"))?;
    save_module(model, &dir.join("qmodel.bpk"))
}

/// Rebuilds a quantized model saved by `qat` (architecture, quantizer state, parameters).
pub fn load_quantized(dir: &Path, device: &Device) -> Result<QuantizedClassifier> {
    let cfg: S4dClassifierConfig = read_json(&dir.join("model.json"))?;
    let state: qat::QuantStateFile = read_json(&dir.join("quant_state.json"))?;
    let mut q = QuantizedClassifier::from_float(
        cfg.init(device),
        state.spec.clone(),
        state.parameterization,
    )?;
    q.load_quant_state(&state)
        .with_context(|| format!("quantizer state in {}", dir.display()))?;
    load_module(q, &dir.join("qmodel.bpk"))
}

/// `experiments qat`: calibrate (PTQ), then fine-tune in recurrent mode with fake quantization.
pub fn run_qat(args: &QatArgs) -> Result<()> {
    let device = args.source.device.device()?;
    let spec = QuantSpec::load(&args.spec)?;
    let run_cfg = QatRunConfig {
        float_run: args.source.run.clone(),
        spec,
        parameterization: args.parameterization.into(),
        epochs: args.epochs,
        lr: args.lr,
        grad_clip: args.grad_clip,
        batch_size: args.source.batch_size,
        train_limit: args.train_limit,
        test_limit: args.source.test_limit,
        calib_batches: args.source.calib_batches,
        seed: args.seed,
        balance_state: args.balance_state,
    };
    let result = qat(
        &run_cfg,
        &args.spec,
        &args.source.data_root,
        &args.out_dir,
        args.resume,
        &device,
    )?;
    println!(
        "{}: float {:.2}%, PTQ {:.2}%, QAT {:.2}% after {} epochs",
        args.spec, result.float_acc, result.ptq_acc, result.qat_acc, result.epochs
    );
    Ok(())
}

/// Runs (or with `resume`, continues) the QAT job `run_cfg` into `out`: calibrate, fine-tune,
/// checkpoint every epoch, write `result.json`. `spec_name` is only reported.
pub fn qat(
    run_cfg: &QatRunConfig,
    spec_name: &str,
    data_root: &Path,
    out: &Path,
    resume: bool,
    device: &Device,
) -> Result<QatResult> {
    if run_cfg.epochs == 0 {
        bail!("--epochs must be >= 1");
    }
    if run_cfg.batch_size == 0 {
        bail!("--batch-size must be >= 1");
    }
    let ad = device.clone().autodiff();
    ad.seed(run_cfg.seed);
    let src = load_float_source(
        &run_cfg.float_run,
        data_root,
        run_cfg.train_limit,
        run_cfg.test_limit,
        &ad,
    )?;
    let batch_size = run_cfg.batch_size;
    let checkpoints = CheckpointDir::new(out.join("checkpoints"), 2);
    let (mut model, mut state, mut optim);
    let base_optim = AdamWConfig::new()
        .with_weight_decay(0.0)
        .with_grad_clipping(Some(GradientClippingConfig::Value(run_cfg.grad_clip)))
        .init();
    match (resume, checkpoints.latest()?) {
        (true, Some(dir)) => {
            let saved: QatRunConfig = read_json(&out.join("qat_config.json"))?;
            if saved != *run_cfg {
                bail!("{} was started with different options", out.display());
            }
            model = load_quantized(&dir, &ad)?;
            optim = load_optimizer(base_optim, &dir.join("optim.bpk"))?;
            state = read_json::<QatState>(&dir.join("state.json"))?;
            info!(epoch = state.epoch, "resumed QAT from {}", dir.display());
        }
        (false, Some(_)) => bail!(
            "{} already holds a QAT run; pass --resume or choose another --out-dir",
            out.display()
        ),
        (_, None) => {
            write_json(&out.join("qat_config.json"), run_cfg)?;
            let float_acc = evaluate(
                &src.model.valid(),
                &src.test.clone(),
                batch_size,
                SsmMode::Convolution,
                device,
            )
            .accuracy;
            let float_model = match run_cfg.balance_state {
                Some(alpha) => balanced_model(
                    src.model.clone(),
                    &src,
                    alpha,
                    run_cfg.calib_batches,
                    batch_size,
                    device,
                    Some(&out.join("state_balance.json")),
                )?,
                None => src.model.clone(),
            };
            model = QuantizedClassifier::from_float(
                float_model,
                run_cfg.spec.clone(),
                run_cfg.parameterization,
            )?;
            // Calibrate an inference copy and hand its ranges to the training model: run on
            // the autodiff model, calibration leaves a graph of never-differentiated nodes
            // that the first backward pass then spends seconds cleaning up.
            let mut plain = model.valid();
            calibrate(
                &mut plain,
                calibration_batches(&src.train, run_cfg.calib_batches, batch_size, device),
            )?;
            model.load_quant_state(&plain.quant_state()?)?;
            let ptq_acc = evaluate_quantized(&plain, &src.test, batch_size, device)?;
            info!(float_acc, ptq_acc, "before QAT");
            state = QatState {
                epoch: 0,
                global_step: 0,
                float_acc,
                ptq_acc,
                train_seconds: 0.0,
            };
            optim = base_optim;
        }
    }
    let mut log = MetricsLog::open(&out.join("metrics.jsonl"), resume)?;
    let loss_fn = CrossEntropyLossConfig::new().init(&ad);
    let steps_per_epoch = src.train.len().div_ceil(batch_size);
    let total = (steps_per_epoch * run_cfg.epochs).max(1);
    let mut qat_acc = state.ptq_acc;
    for epoch in state.epoch..run_cfg.epochs {
        let started = Instant::now();
        let bar = progress_bar(
            steps_per_epoch as u64,
            &format!("qat {}/{}", epoch + 1, run_cfg.epochs),
        );
        let order = epoch_order(src.train.len(), run_cfg.seed, epoch);
        let mut loss_sum = 0.0;
        for (step, idx) in order.chunks(batch_size).enumerate() {
            let batch = make_batch(&src.train, idx, &ad);
            let logits = model.forward(batch.inputs)?;
            let loss = loss_fn.forward(logits, batch.targets);
            let value = loss.clone().into_scalar::<f32>() as f64;
            if !value.is_finite() {
                bail!("QAT diverged at step {} (loss {value})", state.global_step);
            }
            loss_sum += value * idx.len() as f64;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            let lr = warmup_cosine_lr(run_cfg.lr, 0, total, state.global_step);
            model = optim.step(lr, model, grads);
            state.global_step += 1;
            bar.inc(1);
            if log_tick(step, steps_per_epoch) {
                info!(
                    epoch = epoch + 1,
                    step = step + 1,
                    of = steps_per_epoch,
                    loss = value,
                    "progress"
                );
            }
        }
        bar.finish_and_clear();
        state.train_seconds += started.elapsed().as_secs_f64();
        state.epoch = epoch + 1;
        qat_acc = evaluate_quantized(&model.valid(), &src.test, batch_size, device)?;
        let train_loss = loss_sum / src.train.len() as f64;
        info!(epoch = epoch + 1, train_loss, qat_acc, "QAT epoch done");
        log.write(&serde_json::json!({
            "epoch": epoch + 1, "train_loss": train_loss, "test_acc": qat_acc,
            "epoch_seconds": started.elapsed().as_secs_f64(),
        }))?;
        checkpoints.publish(&format!("epoch-{:04}", epoch + 1), |dir| {
            save_quantized(&model, &src.float_cfg, dir)?;
            save_optimizer(&optim, &dir.join("optim.bpk"))?;
            write_json(&dir.join("state.json"), &state)
        })?;
    }
    save_quantized(&model.valid(), &src.float_cfg, out)?;
    let result = QatResult {
        spec: spec_name.to_string(),
        parameterization: run_cfg.parameterization,
        float_acc: state.float_acc,
        ptq_acc: state.ptq_acc,
        qat_acc,
        epochs: state.epoch,
        train_samples: src.train.len(),
        test_samples: src.test.len(),
        train_seconds: state.train_seconds,
    };
    write_json(&out.join("result.json"), &result)?;
    Ok(result)
}

/// `experiments memory`.
pub fn run_memory(args: &MemoryArgs) -> Result<()> {
    let cfg = S4dClassifierConfig::preset(&args.model)?;
    let spec = QuantSpec::load(&args.spec)?;
    let report = MemoryReport::new(ModelDims::from_config(&cfg), &spec);
    println!("{report}");
    println!(
        "{} {}: {:.2}% smaller than FP32",
        args.model,
        args.spec,
        report.savings_percent()
    );
    Ok(())
}
