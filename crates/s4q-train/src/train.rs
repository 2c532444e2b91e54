//! Float training (the S4D recipe): AdamW + warmup/cosine schedule, SSM parameters at their
//! own learning rate without weight decay, per-tensor gradient clipping, evaluation and an
//! atomic checkpoint every epoch, exact resume.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::module::{Module, ParamGroup};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::lr_scheduler::module_lr_scheduler::ModuleLrScheduler;
use burn::optim::lr_scheduler::{LrScheduler, LrSchedulerRecord};
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use datasets::DatasetName;
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::checkpoint::{
    CheckpointDir, load_classifier, load_optimizer, read_json, save_classifier, save_optimizer,
    write_json,
};
use crate::data::{DataConfig, PreparedData, epoch_order, make_batch};
use crate::eval::{Evaluation, count_correct, evaluate};
use crate::metrics::MetricsLog;
use crate::progress::EpochProgress;
use crate::run_dir::{RunKind, RunManifest};
use s4d_model::{S4dClassifierConfig, SsmMode};

/// Everything that defines a float training run; saved as `config.json` in the run directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// The architecture.
    pub model: S4dClassifierConfig,
    /// The data.
    pub data: DataConfig,
    /// Passes over the training set.
    pub epochs: usize,
    /// Sequences per optimizer step.
    pub batch_size: usize,
    /// Peak learning rate of every non-SSM parameter (and of C, D).
    pub lr: f64,
    /// Peak learning rate of `log_dt`, `A` and `B` (S4D recipe: <= 1e-3, no weight decay).
    pub ssm_lr: f64,
    /// AdamW decoupled weight decay of the non-SSM parameters.
    pub weight_decay: f32,
    /// Linear warmup length as a fraction of all steps.
    pub warmup_fraction: f64,
    /// Per-tensor gradient norm clip (burn clips each parameter's gradient separately).
    pub grad_clip_norm: f32,
    /// Which SSM view to train in (`convolution` is the fast float path).
    pub mode: SsmMode,
    /// Seeds parameter init and data order.
    pub seed: u64,
    /// Batch size for evaluation.
    pub eval_batch_size: usize,
    /// Stop when the validation accuracy has not improved for this many epochs (needs
    /// `data.valid_fraction`); `None` trains every epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patience: Option<usize>,
}

impl TrainConfig {
    /// The defaults used by `experiments train` for `preset` on `dataset`.
    pub fn recipe(preset: &str, dataset: DatasetName) -> Result<Self> {
        Ok(Self {
            model: S4dClassifierConfig::preset(preset)?,
            data: DataConfig::named(dataset),
            epochs: 20,
            batch_size: 50,
            lr: 1e-2,
            ssm_lr: 1e-3,
            weight_decay: 0.01,
            warmup_fraction: 0.02,
            grad_clip_norm: 1.0,
            mode: SsmMode::Convolution,
            seed: 0,
            eval_batch_size: 250,
            patience: None,
        })
    }

    /// The defaults of [`TrainConfig::recipe`] for `preset` on `data`, with the model's input
    /// width and class count taken from the data.
    pub fn for_data(preset: &str, data: DataConfig) -> Result<Self> {
        let (d_input, n_classes) = data.shape()?;
        let mut cfg = Self::recipe(preset, DatasetName::Embedded)?;
        cfg.model = cfg.model.with_d_input(d_input).with_n_classes(n_classes);
        cfg.data = data;
        Ok(cfg)
    }

    /// Rejects values that would make training meaningless.
    pub fn validate(&self) -> Result<()> {
        self.model.validate()?;
        self.data.validate()?;
        if self.patience.is_some() && self.data.valid_fraction.is_none() {
            bail!("patience (early stopping) needs a validation split: set valid_fraction");
        }
        if self.epochs == 0 || self.batch_size == 0 || self.eval_batch_size == 0 {
            bail!("epochs, batch_size and eval_batch_size must be >= 1");
        }
        for (name, lr) in [("lr", self.lr), ("ssm_lr", self.ssm_lr)] {
            if !(lr > 0.0 && lr <= 1.0) {
                bail!("{name} must be in (0, 1], got {lr}");
            }
        }
        if !(0.0..1.0).contains(&self.warmup_fraction) {
            bail!("warmup_fraction must be in [0, 1)");
        }
        Ok(())
    }

    /// Reads a config from `.json` or `.toml`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let cfg: Self = if path.extension().is_some_and(|e| e == "toml") {
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
        } else {
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

/// Linear warmup then cosine decay to zero: the S4D schedule, as a burn [`LrScheduler`].
#[derive(Clone, Debug)]
struct WarmupCosine {
    peak: f64,
    warmup: usize,
    total: usize,
    step: usize,
}

impl WarmupCosine {
    fn lr_at(&self, step: usize) -> f64 {
        warmup_cosine_lr(self.peak, self.warmup, self.total, step)
    }
}

/// Learning rate at optimizer step `step` of `total`: linear warmup over `warmup` steps, then
/// cosine decay from `peak` to zero. Float training and QAT share it.
pub fn warmup_cosine_lr(peak: f64, warmup: usize, total: usize, step: usize) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1) as f64;
    let progress = ((step - warmup) as f64 / span).min(1.0);
    0.5 * peak * (1.0 + (std::f64::consts::PI * progress).cos())
}

impl LrScheduler for WarmupCosine {
    fn step(&mut self) -> f64 {
        let lr = self.lr_at(self.step);
        self.step += 1;
        lr
    }

    // The position is restored from the run's own state (`global_step`), not from a record.
    fn to_record(&self) -> LrSchedulerRecord {
        LrSchedulerRecord::new()
    }

    fn load_record(&mut self, _record: LrSchedulerRecord) {}
}

/// The SSM parameters that the S4D recipe trains at `ssm_lr` without weight decay.
fn ssm_group() -> ParamGroup {
    ParamGroup::from_any_predicates(vec![
        "s4d.log_dt",
        "s4d.log_a_real",
        "s4d.a_imag",
        "s4d.b_re",
        "s4d.b_im",
    ])
}

/// Optimizer for `cfg`: AdamW for everything, a zero-weight-decay AdamW for the SSM group.
pub fn build_optimizer(weight_decay: f32, grad_clip_norm: f32) -> ModuleOptimizer {
    let clip = GradientClippingConfig::Norm(grad_clip_norm);
    AdamWConfig::new()
        .with_weight_decay(weight_decay)
        .with_grad_clipping(Some(clip.clone()))
        .init()
        .with_group(
            ssm_group(),
            AdamWConfig::new().with_weight_decay(0.0).build(),
            Some(clip.init()),
        )
}

fn build_scheduler(
    lr: f64,
    ssm_lr: f64,
    warmup: usize,
    total: usize,
    step: usize,
) -> ModuleLrScheduler {
    let make = |peak| WarmupCosine {
        peak,
        warmup,
        total,
        step,
    };
    ModuleLrScheduler::new(make(lr)).with_group(ssm_group(), make(ssm_lr))
}

/// Progress of a run, saved with every checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainState {
    /// Epochs completed.
    pub epoch: usize,
    /// Optimizer steps taken.
    pub global_step: usize,
    /// Best test accuracy so far (reported only; never used to choose a model).
    pub best_test_acc: f64,
    /// Wall time spent training so far (seconds, summed over resumes).
    pub train_seconds: f64,
    /// Best validation accuracy so far, when the run holds out a validation split.
    #[serde(default)]
    pub best_valid_acc: Option<f64>,
    /// Epoch (1-based) of the best validation accuracy: the model the run keeps.
    #[serde(default)]
    pub best_epoch: usize,
    /// Validation loss of the kept epoch (breaks ties of accuracy, which small validation
    /// splits produce often).
    #[serde(default)]
    pub best_valid_loss: Option<f64>,
}

/// What a finished run reports (`result.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainResult {
    /// Test accuracy (%) of the kept model (the last epoch's, or the best on validation).
    pub test_acc: f64,
    /// Test loss of the kept model.
    pub test_loss: f64,
    /// Best test accuracy (%) over epochs (reported only).
    pub best_test_acc: f64,
    /// Epochs trained.
    pub epochs: usize,
    /// Training sequences.
    pub train_samples: usize,
    /// Test sequences.
    pub test_samples: usize,
    /// Wall time of training (s), excluding evaluation.
    pub train_seconds: f64,
    /// Device name.
    pub device: String,
    /// Validation accuracy (%) of the kept model, when the run has a validation split.
    #[serde(default)]
    pub valid_acc: Option<f64>,
    /// Epoch whose model was kept.
    #[serde(default)]
    pub kept_epoch: usize,
}

/// Whether a validation score (accuracy %, loss) beats the best so far: higher accuracy, or
/// the same accuracy at a lower loss (a small validation split ties often, and the lower loss
/// is the more confident model); a full tie keeps the earlier epoch.
pub fn improves(best: Option<(f64, f64)>, acc: f64, loss: f64) -> bool {
    best.is_none_or(|(b_acc, b_loss)| acc > b_acc || (acc == b_acc && loss < b_loss))
}

/// Trains a float model into `run_dir` (config, metrics.jsonl, checkpoints/, model.*, result.json).
/// With `resume`, continues from the newest checkpoint there.
pub fn train(
    cfg: &TrainConfig,
    run_dir: &Path,
    device: &Device,
    resume: bool,
) -> Result<TrainResult> {
    cfg.validate()?;
    let data = cfg.data.prepare()?;
    check_model_fits_data(&cfg.model, &data)?;
    let config_path = run_dir.join("config.json");
    if resume {
        let saved: TrainConfig = read_json(&config_path)
            .with_context(|| format!("--resume needs a previous run in {}", run_dir.display()))?;
        if saved != *cfg {
            bail!(
                "{} was started with a different config; resume with the same options or use a new --run-dir",
                run_dir.display()
            );
        }
    } else if run_dir.join("checkpoints").exists() {
        bail!(
            "{} already holds a run; pass --resume to continue it or choose another --run-dir",
            run_dir.display()
        );
    }
    write_json(&config_path, cfg)?;
    let manifest = RunManifest::new(RunKind::Float, &cfg.model, &cfg.data, &data.preprocess);
    manifest.save(run_dir)?;

    let train_device = device.clone().autodiff();
    train_device.seed(cfg.seed);
    let mut model = cfg.model.init(&train_device);
    let split = &data;
    let steps_per_epoch = split.train.len().div_ceil(cfg.batch_size);
    let total = steps_per_epoch * cfg.epochs;
    let warmup = ((total as f64) * cfg.warmup_fraction).round() as usize;
    let mut optim = build_optimizer(cfg.weight_decay, cfg.grad_clip_norm);
    let mut state = TrainState {
        epoch: 0,
        global_step: 0,
        best_test_acc: 0.0,
        train_seconds: 0.0,
        best_valid_acc: None,
        best_epoch: 0,
        best_valid_loss: None,
    };
    let checkpoints = CheckpointDir::new(run_dir.join("checkpoints"), 2);
    let best = CheckpointDir::new(run_dir.join("best"), 1);
    if resume && let Some(dir) = checkpoints.latest()? {
        model = load_classifier(&dir, &train_device)?;
        optim = load_optimizer(optim, &dir.join("optim.bpk"))?;
        state = read_json(&dir.join("state.json"))?;
        info!(
            epoch = state.epoch,
            step = state.global_step,
            "resumed from {}",
            dir.display()
        );
    }
    let mut scheduler = build_scheduler(cfg.lr, cfg.ssm_lr, warmup, total, state.global_step);
    let mut log = MetricsLog::open(&run_dir.join("metrics.jsonl"), resume)?;
    let loss_fn = CrossEntropyLossConfig::new().init(&train_device);
    info!(
        params = model.num_params(),
        train = split.train.len(),
        valid = split.valid.as_ref().map_or(0, |v| v.len()),
        test = split.test.len(),
        steps_per_epoch,
        "training {} on {}",
        run_dir.display(),
        cfg.data.label()
    );

    let mut last_eval = None;
    for epoch in state.epoch..cfg.epochs {
        if let Some(p) = cfg.patience
            && state.best_epoch > 0
            && state.epoch >= state.best_epoch + p
        {
            info!(
                epoch = state.epoch,
                best_epoch = state.best_epoch,
                "early stop: no validation improvement for {p} epochs"
            );
            break;
        }
        let started = Instant::now();
        let order = epoch_order(split.train.len(), cfg.seed, epoch);
        let mut progress = EpochProgress::new("epoch", epoch, cfg.epochs, steps_per_epoch);
        for (step, indices) in order.chunks(cfg.batch_size).enumerate() {
            let batch = make_batch(&split.train, indices, &train_device);
            let logits = model.forward_masked(batch.inputs, cfg.mode, &batch.lengths);
            let loss = loss_fn.forward(logits.clone(), batch.targets.clone());
            let loss_value = loss.clone().into_scalar::<f32>().to_f64();
            let correct = count_correct(logits.inner(), batch.targets.inner());
            progress.record(step, state.global_step, loss_value, indices.len(), correct)?;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(scheduler.step(), model, grads);
            state.global_step += 1;
        }
        progress.finish();
        state.train_seconds += started.elapsed().as_secs_f64();
        let plain = model.valid();
        let eval = evaluate(&plain, &split.test, cfg.eval_batch_size, cfg.mode, device);
        let valid = split
            .valid
            .as_ref()
            .map(|v| evaluate(&plain, v, cfg.eval_batch_size, cfg.mode, device));
        state.epoch = epoch + 1;
        state.best_test_acc = state.best_test_acc.max(eval.accuracy);
        let best_so_far = state.best_valid_acc.zip(state.best_valid_loss);
        if let Some(v) = &valid
            && improves(best_so_far, v.accuracy, v.loss)
        {
            state.best_valid_acc = Some(v.accuracy);
            state.best_valid_loss = Some(v.loss);
            state.best_epoch = epoch + 1;
            best.publish("model", |dir| save_classifier(&plain, &cfg.model, dir))?;
        }
        let (train_loss, train_acc) = (progress.train_loss(), progress.train_acc());
        info!(
            epoch = epoch + 1,
            train_loss = format!("{train_loss:.4}"),
            train_acc = format!("{train_acc:.2}"),
            valid_acc = valid.map(|v| format!("{:.2}", v.accuracy)),
            test_loss = format!("{:.4}", eval.loss),
            test_acc = format!("{:.2}", eval.accuracy),
            seconds = format!("{:.1}", started.elapsed().as_secs_f64()),
            "epoch done"
        );
        log.write(&serde_json::json!({
            "epoch": epoch + 1,
            "step": state.global_step,
            "train_loss": train_loss,
            "train_acc": train_acc,
            "valid_acc": valid.map(|v| v.accuracy),
            "test_loss": eval.loss,
            "test_acc": eval.accuracy,
            "epoch_seconds": started.elapsed().as_secs_f64(),
        }))?;
        checkpoints.publish(&format!("epoch-{:04}", epoch + 1), |dir| {
            save_classifier(&model, &cfg.model, dir)?;
            save_optimizer(&optim, &dir.join("optim.bpk"))?;
            write_json(&dir.join("state.json"), &state)
        })?;
        last_eval = Some(eval);
    }

    // With a validation split the run keeps its best epoch; otherwise its last.
    let (final_model, eval, kept_epoch) = match best.latest()? {
        Some(dir) if split.valid.is_some() => {
            let m = load_classifier(&dir, device)?;
            let e = evaluate(&m, &split.test, cfg.eval_batch_size, cfg.mode, device);
            (m, e, state.best_epoch)
        }
        _ => {
            let m = model.valid();
            let e: Evaluation = match last_eval {
                Some(e) => e,
                None => evaluate(&m, &split.test, cfg.eval_batch_size, cfg.mode, device),
            };
            (m, e, state.epoch)
        }
    };
    save_classifier(&final_model, &cfg.model, run_dir)?;
    let result = TrainResult {
        test_acc: eval.accuracy,
        test_loss: eval.loss,
        best_test_acc: state.best_test_acc,
        epochs: state.epoch,
        train_samples: split.train.len(),
        test_samples: split.test.len(),
        train_seconds: state.train_seconds,
        device: format!("{device:?}"),
        valid_acc: state.best_valid_acc,
        kept_epoch,
    };
    write_json(&run_dir.join("result.json"), &result)?;
    Ok(result)
}

/// The model's input width and class count must be the data's: a clear error instead of a
/// shape panic deep inside burn.
pub fn check_model_fits_data(model: &S4dClassifierConfig, data: &PreparedData) -> Result<()> {
    let (d, k) = (data.train.d_input, data.train.n_classes);
    if model.d_input != d || model.n_classes != k {
        bail!(
            "the model takes d_input = {} and {} classes but the data has {d} channels and {k} classes; \
             set the model's d_input / n_classes from the data (the CLI does this for files)",
            model.d_input,
            model.n_classes
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use s4d_model::S4dConfig;

    fn tiny_config() -> TrainConfig {
        let mut cfg = TrainConfig::recipe("s4d-16h", DatasetName::Embedded).unwrap();
        cfg.model = S4dClassifierConfig::new(S4dConfig::new(4).with_d_state(4));
        cfg.data.train_limit = Some(40);
        cfg.data.test_limit = Some(20);
        cfg.epochs = 3;
        cfg.batch_size = 20;
        cfg
    }

    fn params(dir: &Path) -> Vec<f32> {
        let model = load_classifier(dir, &Device::flex()).unwrap();
        let mut out = Vec::new();
        for t in [
            model.encoder.weight.val().flatten::<1>(0, 1),
            model.blocks[0].s4d.log_dt.val(),
            model.blocks[0].s4d.c_re.val().flatten::<1>(0, 1),
            model.decoder.weight.val().flatten::<1>(0, 1),
        ] {
            out.extend(t.into_data().try_to_vec::<f32>().unwrap());
        }
        out
    }

    /// A run interrupted after epoch 2 and resumed ends bit-identical to an uninterrupted one:
    /// model, optimizer moments, schedule position and data order all come back.
    #[test]
    fn resume_after_interruption_matches_uninterrupted_run() {
        let tmp = std::env::temp_dir().join(format!("s4q-resume-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let cfg = tiny_config();
        let device = Device::flex();
        let (a, b) = (tmp.join("a"), tmp.join("b"));
        train(&cfg, &a, &device, false).unwrap();
        train(&cfg, &b, &device, false).unwrap();
        // Simulate a crash after epoch 2: the newest checkpoint and the final files are gone.
        let ckpt = b.join("checkpoints");
        std::fs::remove_dir_all(ckpt.join("epoch-0003")).unwrap();
        std::fs::write(ckpt.join("LATEST"), "epoch-0002").unwrap();
        std::fs::remove_file(b.join("model.bpk")).unwrap();
        let err = train(&cfg, &b, &device, false).unwrap_err();
        assert!(err.to_string().contains("--resume"), "{err}");
        let resumed = train(&cfg, &b, &device, true).unwrap();
        assert_eq!(resumed.epochs, 3);
        assert_eq!(params(&a), params(&b));
        let _ = std::fs::remove_dir_all(&tmp);
    }

    #[test]
    fn config_round_trips_through_json_and_toml() {
        let cfg = tiny_config();
        let json = serde_json::to_string(&cfg).unwrap();
        assert_eq!(serde_json::from_str::<TrainConfig>(&json).unwrap(), cfg);
        let text = toml::to_string(&cfg).unwrap();
        assert_eq!(toml::from_str::<TrainConfig>(&text).unwrap(), cfg);
    }

    #[test]
    fn corrupt_checkpoint_is_an_error_naming_the_file() {
        let tmp = std::env::temp_dir().join(format!("s4q-corrupt-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        let cfg = tiny_config();
        crate::checkpoint::write_json(&tmp.join("model.json"), &cfg.model).unwrap();
        std::fs::write(tmp.join("model.bpk"), b"not a burnpack file").unwrap();
        let err = load_classifier(&tmp, &Device::flex()).unwrap_err();
        assert!(format!("{err:#}").contains("model.bpk"), "{err:#}");
        std::fs::remove_file(tmp.join("model.bpk")).unwrap();
        let err = load_classifier(&tmp, &Device::flex()).unwrap_err();
        assert!(format!("{err:#}").contains("does not exist"), "{err:#}");
        let _ = std::fs::remove_dir_all(&tmp);
    }

    #[test]
    fn schedule_warms_up_then_decays_to_zero() {
        let peak = 0.01;
        assert!((warmup_cosine_lr(peak, 4, 104, 0) - peak / 4.0).abs() < 1e-12);
        assert!((warmup_cosine_lr(peak, 4, 104, 3) - peak).abs() < 1e-12);
        assert!((warmup_cosine_lr(peak, 4, 104, 54) - peak / 2.0).abs() < 1e-12);
        assert!(warmup_cosine_lr(peak, 4, 104, 104).abs() < 1e-12);
        assert!((warmup_cosine_lr(peak, 0, 10, 0) - peak).abs() < 1e-12);
    }

    #[test]
    fn validation_ties_break_on_loss_then_keep_the_earlier_epoch() {
        assert!(improves(None, 50.0, 1.0));
        assert!(improves(Some((50.0, 1.0)), 60.0, 2.0));
        assert!(improves(Some((50.0, 1.0)), 50.0, 0.5));
        assert!(!improves(Some((50.0, 1.0)), 50.0, 1.0));
        assert!(!improves(Some((50.0, 1.0)), 40.0, 0.1));
    }

    #[test]
    fn invalid_config_is_rejected() {
        let mut cfg = tiny_config();
        cfg.lr = 0.0;
        assert!(cfg.validate().is_err());
        let mut cfg = tiny_config();
        cfg.epochs = 0;
        assert!(cfg.validate().is_err());
    }
}
