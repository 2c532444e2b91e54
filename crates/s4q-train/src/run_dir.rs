//! The run directory: one typed description (`s4q-run.json`) that every kind of run writes
//! (float, PTQ, QAT fine-tuned or from scratch, imported), so evaluation, prediction and
//! export find a run's model, data and preprocessing the same way whatever made it.
//!
//! Layout of a run directory:
//! * `s4q-run.json`: [`RunManifest`] (kind, architecture, data config, preprocessing);
//! * `preprocess.json`: the [`Preprocess`] alone (what a deployment needs);
//! * a float model as `model.json` + `model.bpk`, or a fake-quantized one as `model.json` +
//!   `quant_state.json` + `qmodel.bpk`;
//! * `checkpoints/` (numbered, with `LATEST`), `best/` (the best epoch on validation),
//!   `metrics.jsonl`, `result.json`, and the job's own config (`config.json` or
//!   `qat_config.json`).
//!
//! Runs made before the manifest existed are read through their `config.json` (float) or
//! their `qat_config.json`'s float run, with raw inputs and classes named by index.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{read_json, write_json};
use crate::data::{DataConfig, Preprocess};
use crate::train::TrainConfig;
use s4d_model::S4dClassifierConfig;

/// File name of the manifest (not `run.json`, which `reproduce` uses for its plans).
pub const MANIFEST: &str = "s4q-run.json";
/// File name of the preprocessing alone.
pub const PREPROCESS: &str = "preprocess.json";
/// Version of the manifest layout; bumped on incompatible changes.
pub const MANIFEST_VERSION: u32 = 1;

/// What made a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunKind {
    /// Float training (`experiments train`).
    Float,
    /// Post-training quantization of a float run.
    Ptq,
    /// QAT fine-tuning of a float run.
    Qat,
    /// QAT from random initialisation.
    QatScratch,
    /// A checkpoint imported from PyTorch.
    Imported,
}

/// The typed description of a run directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunManifest {
    /// Layout version ([`MANIFEST_VERSION`]).
    pub version: u32,
    /// What made the run.
    pub kind: RunKind,
    /// The architecture.
    pub model: S4dClassifierConfig,
    /// Where its data comes from and how it is split and scaled.
    pub data: DataConfig,
    /// What was fitted on the training data (scaling, class names).
    pub preprocess: Preprocess,
    /// The float run a PTQ or QAT run started from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<PathBuf>,
}

impl RunManifest {
    /// A manifest of the current version.
    pub fn new(
        kind: RunKind,
        model: &S4dClassifierConfig,
        data: &DataConfig,
        preprocess: &Preprocess,
    ) -> Self {
        Self {
            version: MANIFEST_VERSION,
            kind,
            model: model.clone(),
            data: data.clone(),
            preprocess: preprocess.clone(),
            parent: None,
        }
    }

    /// Writes `s4q-run.json` and `preprocess.json` into `dir` (atomically each).
    pub fn save(&self, dir: &Path) -> Result<()> {
        write_json(&dir.join(MANIFEST), self)?;
        write_json(&dir.join(PREPROCESS), &self.preprocess)
    }

    /// Reads the manifest of `dir`, or reconstructs one for a run made before manifests.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST);
        if path.exists() {
            let m: Self = read_json(&path)?;
            if m.version > MANIFEST_VERSION {
                bail!(
                    "{} has layout version {} but this s4q reads up to {MANIFEST_VERSION}; upgrade s4q",
                    path.display(),
                    m.version
                );
            }
            return Ok(m);
        }
        Self::legacy(dir).with_context(|| {
            format!(
                "{} is not an s4q run directory (no {MANIFEST}, config.json or qat_config.json)",
                dir.display()
            )
        })
    }

    /// A manifest for a directory written before manifests existed.
    fn legacy(dir: &Path) -> Result<Self> {
        let cfg = dir.join("config.json");
        if cfg.exists() {
            let t: TrainConfig = read_json(&cfg)?;
            let p = Preprocess::identity(t.model.d_input, t.model.n_classes);
            return Ok(Self::new(RunKind::Float, &t.model, &t.data, &p));
        }
        let qcfg = dir.join("qat_config.json");
        if qcfg.exists() {
            let v: serde_json::Value = read_json(&qcfg)?;
            let Some(float_run) = v["float_run"].as_str() else {
                bail!("{} names no float_run", qcfg.display());
            };
            let mut m = Self::load(Path::new(float_run))?;
            m.kind = RunKind::Qat;
            m.parent = Some(PathBuf::from(float_run));
            return Ok(m);
        }
        bail!("no manifest")
    }
}

/// The preprocessing a run's model expects: its manifest's, or raw inputs for legacy runs.
pub fn load_preprocess(dir: &Path) -> Result<Preprocess> {
    Ok(RunManifest::load(dir)?.preprocess)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datasets::DatasetName;

    #[test]
    fn manifest_round_trips_and_rejects_future_versions() {
        let dir = std::env::temp_dir().join(format!("s4q-manifest-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let model = S4dClassifierConfig::preset("s4d-16h").unwrap();
        let data = DataConfig::named(DatasetName::Embedded);
        let mut p = Preprocess::identity(1, 10);
        p.class_names[3] = "three".into();
        let m = RunManifest::new(RunKind::QatScratch, &model, &data, &p);
        m.save(&dir).unwrap();
        assert_eq!(RunManifest::load(&dir).unwrap(), m);
        assert_eq!(load_preprocess(&dir).unwrap(), p);
        let mut future = m.clone();
        future.version = MANIFEST_VERSION + 1;
        write_json(&dir.join(MANIFEST), &future).unwrap();
        let err = RunManifest::load(&dir).unwrap_err();
        assert!(format!("{err:#}").contains("upgrade"), "{err:#}");
        std::fs::remove_file(dir.join(MANIFEST)).unwrap();
        let err = RunManifest::load(&dir).unwrap_err();
        assert!(format!("{err:#}").contains("not an s4q run"), "{err:#}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
