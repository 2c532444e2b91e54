//! The real executor: runs a planned job with the same library functions as the `train`,
//! `ptq` and `qat` commands, so a sweep's numbers are those the commands would print.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use anyhow::{Context, Result};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::plan::{Job, RunSpec};
use super::sweep::{Executor, Layout};
use crate::checkpoint::write_json;
use crate::metrics::MetricsLog;
use crate::quant::{QatRunConfig, Source, load_float_source, ptq_eval, qat};

/// What a PTQ run reports (`result.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PtqResult {
    /// Spec name.
    pub spec: String,
    /// Test accuracy (%) of the calibrated quantized model (recurrent mode).
    pub accuracy: f64,
    /// Memory savings vs FP32 (%).
    pub savings: f64,
    /// Test sequences.
    pub test_samples: usize,
    /// Wall time (s) of calibration and evaluation.
    pub seconds: f64,
}

/// Trains and quantizes on a burn device, reading data from `data_root`.
pub struct BurnExecutor {
    device: Device,
    data_root: PathBuf,
    /// The last float run loaded for PTQ, kept because a sweep evaluates dozens of specs of
    /// one float model in a row.
    cache: RefCell<Option<(SourceKey, Rc<Source>)>>,
}

type SourceKey = (PathBuf, Option<usize>, Option<usize>);

impl BurnExecutor {
    /// An executor on `device`.
    pub fn new(device: Device, data_root: PathBuf) -> Self {
        Self {
            device,
            data_root,
            cache: RefCell::new(None),
        }
    }

    fn source(
        &self,
        float_dir: &Path,
        train_limit: Option<usize>,
        test_limit: Option<usize>,
    ) -> Result<Rc<Source>> {
        let key = (float_dir.to_path_buf(), train_limit, test_limit);
        if let Some((k, src)) = &*self.cache.borrow()
            && *k == key
        {
            return Ok(src.clone());
        }
        let src = Rc::new(load_float_source(
            float_dir,
            &self.data_root,
            train_limit,
            test_limit,
            &self.device,
        )?);
        *self.cache.borrow_mut() = Some((key, src.clone()));
        Ok(src)
    }
}

impl Executor for BurnExecutor {
    fn execute(&self, run: &RunSpec, dir: &Path, layout: &Layout) -> Result<()> {
        match &run.job {
            Job::Float { train } => {
                let mut cfg = train.clone();
                cfg.data.root = self.data_root.clone();
                // `train` resumes from its config.json + checkpoints; before it wrote them
                // there is nothing to resume.
                let resume = dir.join("config.json").exists();
                crate::train::train(&cfg, dir, &self.device, resume)?;
            }
            Job::Ptq {
                float,
                spec_name,
                spec,
                calib_batches,
                batch_size,
                test_limit,
                train_limit,
            } => {
                let started = Instant::now();
                let src = self.source(&layout.run_dir(float), *train_limit, *test_limit)?;
                let (accuracy, savings) = ptq_eval(
                    &src,
                    spec.clone(),
                    *calib_batches,
                    *batch_size,
                    &self.device,
                )?;
                let result = PtqResult {
                    spec: spec_name.clone(),
                    accuracy,
                    savings,
                    test_samples: src.test.len(),
                    seconds: started.elapsed().as_secs_f64(),
                };
                MetricsLog::open(&dir.join("metrics.jsonl"), false)?
                    .write(&serde_json::to_value(&result)?)?;
                write_json(&dir.join("result.json"), &result)?;
            }
            Job::Qat {
                float,
                spec_name,
                spec,
                parameterization,
                epochs,
                lr,
                grad_clip,
                batch_size,
                calib_batches,
                train_limit,
                test_limit,
            } => {
                let float_dir = layout.run_dir(float);
                // Absolute, so the saved qat_config.json matches on resume whatever the cwd.
                let float_run = std::fs::canonicalize(&float_dir)
                    .with_context(|| format!("float run {}", float_dir.display()))?;
                let cfg = QatRunConfig {
                    float_run: Some(float_run),
                    scratch: None,
                    spec: spec.clone(),
                    parameterization: *parameterization,
                    epochs: *epochs,
                    lr: *lr,
                    warmup_fraction: 0.0,
                    grad_clip: *grad_clip,
                    batch_size: *batch_size,
                    train_limit: *train_limit,
                    test_limit: *test_limit,
                    calib_batches: *calib_batches,
                    seed: run.seed,
                    balance_state: None,
                    distill: None,
                };
                // `qat` with resume continues from its newest checkpoint, or starts afresh
                // when there is none.
                qat(&cfg, spec_name, &self.data_root, dir, true, &self.device)?;
            }
        }
        Ok(())
    }
}
