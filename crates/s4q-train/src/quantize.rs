//! Quantization jobs as library calls: PTQ of a float run, QAT fine-tuning of a float run,
//! and QAT from scratch (a quantized model trained from random initialisation).
//!
//! # Ranges while weights move (QAT from scratch)
//! Static quantizers need ranges, and the ranges of a randomly initialised model say little
//! about the trained one. From scratch, the first `observer_epochs` therefore re-run
//! calibration every `recalibrate_every` steps: the current weights give the weight ranges and
//! a float pass with observers over the fixed calibration batches gives the activation and
//! state ranges (percentiles as the spec says). After the warm-up the ranges are frozen, the
//! weights adapt to the grids for the remaining epochs, and what is saved is a static-range
//! model that exports to integers like any fine-tuned one.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;
use datasets::SequenceDataset;
use qat::{
    BlockFeatures, MemoryReport, ModelDims, Parameterization, QuantSpec, QuantizedClassifier,
    calibrate,
};
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::checkpoint::{
    CheckpointDir, load_classifier, load_module, load_optimizer, read_json, save_module,
    save_optimizer, write_json,
};
use crate::data::{DataConfig, Preprocess, epoch_order, make_batch};
use crate::distill::{DistillConfig, TeacherLogits};
use crate::eval::{count_correct, evaluate, evaluate_quantized, evaluate_quantized_full};
use crate::metrics::MetricsLog;
use crate::progress::EpochProgress;
use crate::run_dir::{RunKind, RunManifest};
use crate::train::{check_model_fits_data, improves, warmup_cosine_lr};
use s4d_model::{S4dClassifier, S4dClassifierConfig, SsmMode};

/// A trained float run with its data, the starting point of every PTQ and QAT job.
pub struct Source {
    /// Architecture of the float model.
    pub float_cfg: S4dClassifierConfig,
    /// The float model.
    pub model: S4dClassifier,
    /// Training split (calibration and QAT data).
    pub train: SequenceDataset,
    /// Validation split (held out of training), when the run's data config has one.
    pub valid: Option<SequenceDataset>,
    /// Test split.
    pub test: SequenceDataset,
    /// The run's data config (with the limits actually applied).
    pub data: DataConfig,
    /// The run's preprocessing (applied to every split above).
    pub preprocess: Preprocess,
}

/// `model` with its state balanced at strength `alpha` (`qat::balance`), measured on the same
/// calibration batches the quantizers see; the per-block report goes to the log and, with
/// `record`, to a JSON file.
pub fn balanced_model(
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

/// Loads the float run in `run` and its data (from the run's manifest or legacy
/// `config.json`), scaled with the run's own preprocessing, so that callers other than the CLI
/// (the `reproduce` sweeps) quantize the same way `ptq`/`qat` do. `data_root` replaces the
/// root of named sets; the limits replace the run's.
pub fn load_float_source(
    run: &Path,
    data_root: &Path,
    train_limit: Option<usize>,
    test_limit: Option<usize>,
    device: &Device,
) -> Result<Source> {
    let manifest = RunManifest::load(run)
        .with_context(|| format!("{} is not a float run directory", run.display()))?;
    let model = load_classifier(run, device)?;
    let mut data = manifest.data.clone();
    data.root = data_root.to_path_buf();
    data.train_limit = train_limit;
    data.test_limit = test_limit;
    let prepared = data.prepare_with(Some(&manifest.preprocess))?;
    Ok(Source {
        float_cfg: manifest.model,
        model,
        train: prepared.train,
        valid: prepared.valid,
        test: prepared.test,
        data,
        preprocess: prepared.preprocess,
    })
}

/// The first `n` training batches in a fixed order (calibration data).
pub fn calibration_batches(
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

/// Everything that defines a QAT run; `qat` stores it as `qat_config.json` beside its
/// checkpoints so `--resume` rebuilds the same model, and `reproduce` builds it directly.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QatRunConfig {
    /// The float run fine-tuned; `None` with `scratch`.
    pub float_run: Option<PathBuf>,
    /// QAT from random initialisation instead of a float run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scratch: Option<ScratchConfig>,
    /// Target quantization.
    pub spec: QuantSpec,
    /// What QAT trains.
    pub parameterization: Parameterization,
    /// Fine-tuning epochs (recurrent mode).
    pub epochs: usize,
    /// Peak learning rate, cosine-decayed.
    pub lr: f64,
    /// Share of the optimizer steps that ramp the rate linearly up to `lr` before the cosine:
    /// a freshly quantized model can be thrown off by a high peak rate in its first steps.
    /// 0 (the paper's QAT) starts the cosine at the peak; left out of saved configs when 0,
    /// so runs made before the option existed still resume.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub warmup_fraction: f64,
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
    /// Distil from the float run QAT starts from (`crate::distill`); `None`: hard labels only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distill: Option<DistillConfig>,
}

/// A quantized model trained from random initialisation: what a float run would otherwise
/// provide (architecture, data, init seed), and how ranges follow the moving weights.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ScratchConfig {
    /// The architecture (`d_input` and `n_classes` must match the data).
    pub model: S4dClassifierConfig,
    /// The data (named set or files, validation split, scaling).
    pub data: DataConfig,
    /// Epochs at the start during which ranges are re-estimated (see the module docs).
    pub observer_epochs: usize,
    /// Optimizer steps between two re-estimations during those epochs.
    pub recalibrate_every: usize,
}

impl QatRunConfig {
    /// Fine-tuning of the float run in `float_run` into `spec`: 5 epochs at lr 1e-3 (cosine),
    /// batch 32, calibration on 4 batches, the continuous parameterization.
    pub fn fine_tune(float_run: impl Into<PathBuf>, spec: QuantSpec) -> Self {
        Self {
            float_run: Some(float_run.into()),
            scratch: None,
            spec,
            parameterization: Parameterization::Continuous,
            epochs: 5,
            lr: 1e-3,
            warmup_fraction: 0.0,
            grad_clip: 1000.0,
            batch_size: 32,
            train_limit: None,
            test_limit: None,
            calib_batches: 4,
            seed: 0,
            balance_state: None,
            distill: None,
        }
    }

    /// A quantized `model` trained from random initialisation on `data` into `spec`: 20
    /// epochs at lr 1e-2, ranges re-estimated every 10 steps during the first 2.
    pub fn from_scratch(model: S4dClassifierConfig, data: DataConfig, spec: QuantSpec) -> Self {
        Self {
            float_run: None,
            scratch: Some(ScratchConfig {
                model,
                data,
                observer_epochs: 2,
                recalibrate_every: 10,
            }),
            epochs: 20,
            lr: 1e-2,
            ..Self::fine_tune(PathBuf::new(), spec)
        }
    }

    /// Rejects configs that cannot run, naming the option to fix.
    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 {
            bail!("--epochs must be >= 1");
        }
        if self.batch_size == 0 {
            bail!("--batch-size must be >= 1");
        }
        if self.calib_batches == 0 {
            bail!("--calib-batches must be >= 1");
        }
        if !(self.lr > 0.0 && self.lr <= 1.0) {
            bail!("--lr must be in (0, 1], got {}", self.lr);
        }
        if !(0.0..1.0).contains(&self.warmup_fraction) {
            bail!(
                "--warmup-fraction must be in [0, 1), got {}",
                self.warmup_fraction
            );
        }
        self.spec.validate()?;
        if let Some(d) = &self.distill {
            d.validate()?;
            if self.scratch.is_some() {
                bail!("--distill needs a float run to learn from; QAT from scratch has no teacher");
            }
        }
        match (&self.float_run, &self.scratch) {
            (Some(_), Some(_)) => {
                bail!("a QAT run starts from a float run or from scratch, not both")
            }
            (None, None) => bail!("a QAT run needs a float run (--run) or --from-scratch"),
            (None, Some(s)) => {
                s.model.validate()?;
                s.data.validate()?;
                if s.recalibrate_every == 0 {
                    bail!("--recalibrate-every must be >= 1");
                }
                if s.observer_epochs > self.epochs {
                    bail!(
                        "--observer-epochs ({}) cannot exceed --epochs ({})",
                        s.observer_epochs,
                        self.epochs
                    );
                }
            }
            (Some(_), None) => {}
        }
        Ok(())
    }
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

/// What a finished QAT run reports (`result.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QatResult {
    /// Spec name (preset or file) as given.
    pub spec: String,
    /// What QAT trained.
    pub parameterization: Parameterization,
    /// Accuracy (%) of the float model QAT started from, convolution mode (from scratch: the
    /// randomly initialised model).
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
    /// Validation accuracy (%) of the kept model, when the data has a validation split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_acc: Option<f64>,
    /// Epoch whose model was kept (the last, or the best on validation).
    #[serde(default)]
    pub kept_epoch: usize,
    /// Whether the model was trained from random initialisation.
    #[serde(default)]
    pub from_scratch: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct QatState {
    epoch: usize,
    global_step: usize,
    float_acc: f64,
    ptq_acc: f64,
    train_seconds: f64,
    #[serde(default)]
    best_valid_acc: Option<f64>,
    #[serde(default)]
    best_epoch: usize,
    #[serde(default)]
    best_valid_loss: Option<f64>,
}

pub fn save_quantized(
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

/// The data and starting model of a QAT run: a float run's, or a fresh initialisation.
fn qat_source(run_cfg: &QatRunConfig, data_root: &Path, ad: &Device) -> Result<Source> {
    match (&run_cfg.float_run, &run_cfg.scratch) {
        (Some(run), _) => {
            load_float_source(run, data_root, run_cfg.train_limit, run_cfg.test_limit, ad)
        }
        (None, Some(sc)) => {
            let mut data = sc.data.clone();
            if data.dataset.is_some() {
                data.root = data_root.to_path_buf();
            }
            data.train_limit = run_cfg.train_limit;
            data.test_limit = run_cfg.test_limit;
            let prepared = data.prepare()?;
            check_model_fits_data(&sc.model, &prepared)?;
            Ok(Source {
                float_cfg: sc.model.clone(),
                model: sc.model.init(ad),
                train: prepared.train,
                valid: prepared.valid,
                test: prepared.test,
                data,
                preprocess: prepared.preprocess,
            })
        }
        (None, None) => bail!("a QAT run needs a float run or a scratch config"),
    }
}

/// Re-estimates every static range of `model` from its current weights and the calibration
/// batches (on an inference copy, so no autodiff graph is left behind).
fn recalibrate(
    model: &mut QuantizedClassifier,
    src: &Source,
    run_cfg: &QatRunConfig,
    device: &Device,
) -> Result<QuantizedClassifier> {
    let mut plain = model.valid();
    calibrate(
        &mut plain,
        calibration_batches(
            &src.train,
            run_cfg.calib_batches,
            run_cfg.batch_size,
            device,
        ),
    )?;
    model.load_quant_state(&plain.quant_state()?)?;
    Ok(plain)
}

/// Runs (or with `resume`, continues) the QAT job `run_cfg` into `out`: calibrate, train in
/// recurrent mode with fake quantization (from a float run or from scratch), checkpoint every
/// epoch, keep the best epoch on validation when the data has a validation split, write
/// `result.json` and the run manifest. `spec_name` is only reported.
pub fn qat(
    run_cfg: &QatRunConfig,
    spec_name: &str,
    data_root: &Path,
    out: &Path,
    resume: bool,
    device: &Device,
) -> Result<QatResult> {
    run_cfg.validate()?;
    let ad = device.clone().autodiff();
    ad.seed(run_cfg.seed);
    let src = qat_source(run_cfg, data_root, &ad)?;
    // The spec as it applies to this model (a preset's residual/norm settings dropped where
    // the blocks have none), so configs saved before those points existed still match.
    let effective = QatRunConfig {
        spec: run_cfg
            .spec
            .clone()
            .for_model(BlockFeatures::of_config(&src.float_cfg)),
        ..run_cfg.clone()
    };
    let run_cfg = &effective;
    let scratch = run_cfg.scratch.as_ref();
    let batch_size = run_cfg.batch_size;
    let checkpoints = CheckpointDir::new(out.join("checkpoints"), 2);
    let best = CheckpointDir::new(out.join("best"), 1);
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
            let mut manifest = RunManifest::new(
                if scratch.is_some() {
                    RunKind::QatScratch
                } else {
                    RunKind::Qat
                },
                &src.float_cfg,
                &src.data,
                &src.preprocess,
            );
            manifest.parent = run_cfg.float_run.clone();
            manifest.save(out)?;
            let float_acc = evaluate(
                &src.model.valid(),
                &src.test,
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
            let plain = recalibrate(&mut model, &src, run_cfg, device)?;
            let ptq_acc = evaluate_quantized(&plain, &src.test, batch_size, device)?;
            info!(float_acc, ptq_acc, "before QAT");
            state = QatState {
                epoch: 0,
                global_step: 0,
                float_acc,
                ptq_acc,
                train_seconds: 0.0,
                best_valid_acc: None,
                best_epoch: 0,
                best_valid_loss: None,
            };
            optim = base_optim;
        }
    }
    let mut log = MetricsLog::open(&out.join("metrics.jsonl"), resume)?;
    let loss_fn = CrossEntropyLossConfig::new().init(&ad);
    let steps_per_epoch = src.train.len().div_ceil(batch_size);
    let total = (steps_per_epoch * run_cfg.epochs).max(1);
    let warmup = (run_cfg.warmup_fraction * total as f64).round() as usize;
    let mut qat_acc = state.ptq_acc;
    // The float model as it was trained (balancing changes no output), run once.
    let teacher = match run_cfg.distill {
        Some(d) if state.epoch < run_cfg.epochs => Some((
            d,
            TeacherLogits::compute(&src.model.valid(), &src.train, batch_size, device)?,
        )),
        _ => None,
    };
    for epoch in state.epoch..run_cfg.epochs {
        let started = Instant::now();
        let mut progress = EpochProgress::new("qat", epoch, run_cfg.epochs, steps_per_epoch);
        let order = epoch_order(src.train.len(), run_cfg.seed, epoch);
        let observing = scratch.filter(|sc| epoch < sc.observer_epochs);
        for (step, idx) in order.chunks(batch_size).enumerate() {
            if let Some(sc) = observing
                && step > 0
                && step % sc.recalibrate_every == 0
            {
                recalibrate(&mut model, &src, run_cfg, device)?;
            }
            let batch = make_batch(&src.train, idx, &ad);
            let logits = model.forward_masked(batch.inputs, &batch.lengths)?;
            let mut loss = loss_fn.forward(logits.clone(), batch.targets.clone());
            if let Some((d, t)) = &teacher {
                loss = d.loss(loss, logits.clone(), t.gather(idx, &ad));
            }
            let value = loss.clone().into_scalar::<f32>() as f64;
            let correct = count_correct(logits.inner(), batch.targets.inner());
            progress.record(step, state.global_step, value, idx.len(), correct)?;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            let lr = warmup_cosine_lr(run_cfg.lr, warmup, total, state.global_step);
            model = optim.step(lr, model, grads);
            state.global_step += 1;
        }
        progress.finish();
        if observing.is_some() {
            // The last re-estimation of the epoch sees the epoch's final weights; after the
            // warm-up the ranges stay as they are now.
            recalibrate(&mut model, &src, run_cfg, device)?;
        }
        state.train_seconds += started.elapsed().as_secs_f64();
        state.epoch = epoch + 1;
        let plain = model.valid();
        qat_acc = evaluate_quantized(&plain, &src.test, batch_size, device)?;
        let valid = match &src.valid {
            Some(v) => Some(evaluate_quantized_full(&plain, v, batch_size, device)?),
            None => None,
        };
        let valid_acc = valid.map(|v| v.accuracy);
        let best_so_far = state.best_valid_acc.zip(state.best_valid_loss);
        if let Some(v) = valid
            && improves(best_so_far, v.accuracy, v.loss)
        {
            state.best_valid_acc = Some(v.accuracy);
            state.best_valid_loss = Some(v.loss);
            state.best_epoch = epoch + 1;
            best.publish("model", |dir| save_quantized(&plain, &src.float_cfg, dir))?;
        }
        let train_loss = progress.train_loss();
        info!(
            epoch = epoch + 1,
            train_loss, valid_acc, qat_acc, "QAT epoch done"
        );
        log.write(&serde_json::json!({
            "epoch": epoch + 1, "train_loss": train_loss, "valid_acc": valid_acc,
            "test_acc": qat_acc, "epoch_seconds": started.elapsed().as_secs_f64(),
        }))?;
        checkpoints.publish(&format!("epoch-{:04}", epoch + 1), |dir| {
            save_quantized(&model, &src.float_cfg, dir)?;
            save_optimizer(&optim, &dir.join("optim.bpk"))?;
            write_json(&dir.join("state.json"), &state)
        })?;
    }
    let (kept, kept_epoch) = match best.latest()? {
        Some(dir) if src.valid.is_some() => {
            let m = load_quantized(&dir, device)?;
            qat_acc = evaluate_quantized(&m, &src.test, batch_size, device)?;
            (m, state.best_epoch)
        }
        _ => (model.valid(), state.epoch),
    };
    save_quantized(&kept, &src.float_cfg, out)?;
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
        valid_acc: state.best_valid_acc,
        kept_epoch,
        from_scratch: scratch.is_some(),
    };
    write_json(&out.join("result.json"), &result)?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> QatRunConfig {
        QatRunConfig::fine_tune("float", QuantSpec::preset("w8a8").expect("preset"))
    }

    /// Runs saved before `warmup_fraction` existed must still resume: their saved config has
    /// no such key, and a config with no warmup must write none.
    #[test]
    fn warmup_fraction_is_absent_from_configs_without_warmup() {
        let cfg = config();
        let json = serde_json::to_value(&cfg).expect("serialize");
        assert!(json.get("warmup_fraction").is_none(), "{json}");
        let back: QatRunConfig = serde_json::from_value(json).expect("deserialize");
        assert_eq!(back, cfg);

        let warm = QatRunConfig {
            warmup_fraction: 0.05,
            ..config()
        };
        let json = serde_json::to_value(&warm).expect("serialize");
        assert_eq!(json["warmup_fraction"], 0.05);
        let back: QatRunConfig = serde_json::from_value(json).expect("deserialize");
        assert_eq!(back.warmup_fraction, 0.05);
    }

    #[test]
    fn warmup_fraction_outside_zero_one_is_rejected() {
        for bad in [-0.1, 1.0, f64::NAN] {
            let cfg = QatRunConfig {
                warmup_fraction: bad,
                ..config()
            };
            let err = cfg.validate().expect_err("must fail").to_string();
            assert!(err.contains("--warmup-fraction"), "{err}");
        }
        let ok = QatRunConfig {
            warmup_fraction: 0.02,
            ..config()
        };
        ok.validate().expect("0.02 is valid");
    }
}
