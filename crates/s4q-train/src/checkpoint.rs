//! Checkpoints that survive interruption: each is a directory written under a temporary name
//! and renamed into place, and `LATEST` (itself replaced by rename) names the newest complete
//! one. A crash mid-write leaves the previous checkpoint untouched.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::prelude::*;
use burn::store::{BurnpackStore, ModuleSnapshot};
use serde::Serialize;
use serde::de::DeserializeOwned;

const LATEST: &str = "LATEST";

/// Writes `bytes` to `path` atomically (temporary file in the same directory, then rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming {} into place", path.display()))?;
    Ok(())
}

/// Serializes `value` as pretty JSON, atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    write_atomic(path, text.as_bytes())
}

/// Reads JSON with an error that names the file.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Saves a module's parameters as burnpack (`path` is used as given).
pub fn save_module<M: Module>(module: &M, path: &Path) -> Result<()> {
    let tmp = path.with_extension("bpk.tmp");
    let _ = fs::remove_file(&tmp);
    let mut store = BurnpackStore::from_file(&tmp)
        .auto_extension(false)
        .overwrite(true);
    module
        .save_into(&mut store)
        .map_err(|e| anyhow::anyhow!("{e:?}"))
        .with_context(|| format!("saving parameters to {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming {} into place", path.display()))?;
    Ok(())
}

/// Loads parameters saved by [`save_module`] into `module`, refusing files that do not match
/// the module exactly (missing or extra tensors, wrong shapes): a checkpoint from another model
/// must fail loudly rather than run half-initialised.
pub fn load_module<M: Module>(mut module: M, path: &Path) -> Result<M> {
    if !path.exists() {
        bail!("checkpoint file {} does not exist", path.display());
    }
    let mut store = BurnpackStore::from_file(path).auto_extension(false);
    let result = module
        .load_from(&mut store)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("{} is not a readable s4q checkpoint", path.display()))?;
    if !result.errors.is_empty() || !result.missing.is_empty() || !result.unused.is_empty() {
        bail!(
            "{} does not match the model: errors {:?}, missing {:?}, unexpected {:?}",
            path.display(),
            result.errors,
            result.missing.iter().map(|m| &m.0).collect::<Vec<_>>(),
            result.unused
        );
    }
    Ok(module)
}

/// Saves optimizer state (moments) so a resumed run continues the same trajectory.
pub fn save_optimizer(optim: &ModuleOptimizer, path: &Path) -> Result<()> {
    let bytes = optim
        .into_bytes()
        .map_err(|e| anyhow::anyhow!("{e:?}"))
        .context("serialising optimizer state")?;
    write_atomic(path, &bytes)
}

/// Restores optimizer state saved by [`save_optimizer`].
pub fn load_optimizer(optim: ModuleOptimizer, path: &Path) -> Result<ModuleOptimizer> {
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    optim
        .from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
        .map_err(|e| anyhow::anyhow!("{e:?}"))
        .with_context(|| format!("{} is not a readable optimizer state", path.display()))
}

/// A directory of numbered checkpoints with an atomic `LATEST` pointer.
pub struct CheckpointDir {
    root: PathBuf,
    keep: usize,
}

impl CheckpointDir {
    /// Checkpoints under `root`, keeping the newest `keep`.
    pub fn new(root: impl Into<PathBuf>, keep: usize) -> Self {
        Self {
            root: root.into(),
            keep: keep.max(1),
        }
    }

    /// Writes checkpoint `name` by calling `fill` on a fresh temporary directory, then publishes it.
    pub fn publish(&self, name: &str, fill: impl FnOnce(&Path) -> Result<()>) -> Result<PathBuf> {
        fs::create_dir_all(&self.root)
            .with_context(|| format!("creating {}", self.root.display()))?;
        let tmp = self.root.join(format!(".{name}.partial"));
        if tmp.exists() {
            fs::remove_dir_all(&tmp)?;
        }
        fs::create_dir_all(&tmp)?;
        fill(&tmp)?;
        let dest = self.root.join(name);
        if dest.exists() {
            fs::remove_dir_all(&dest)?;
        }
        fs::rename(&tmp, &dest)
            .with_context(|| format!("publishing checkpoint {}", dest.display()))?;
        write_atomic(&self.root.join(LATEST), name.as_bytes())?;
        self.prune(name)?;
        Ok(dest)
    }

    /// The newest complete checkpoint, if any.
    pub fn latest(&self) -> Result<Option<PathBuf>> {
        let pointer = self.root.join(LATEST);
        if !pointer.exists() {
            return Ok(None);
        }
        let name = fs::read_to_string(&pointer)
            .with_context(|| format!("reading {}", pointer.display()))?;
        let dir = self.root.join(name.trim());
        if !dir.is_dir() {
            bail!(
                "{} names checkpoint {} which does not exist",
                pointer.display(),
                dir.display()
            );
        }
        Ok(Some(dir))
    }

    fn prune(&self, newest: &str) -> Result<()> {
        let mut names: Vec<String> = fs::read_dir(&self.root)?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        let excess = names.len().saturating_sub(self.keep);
        for name in names.into_iter().take(excess) {
            if name != newest {
                fs::remove_dir_all(self.root.join(&name))?;
            }
        }
        Ok(())
    }
}

/// Loads a classifier saved by a run directory or checkpoint directory: `model.json` (the
/// architecture) + `model.bpk` (the parameters).
pub fn load_classifier(dir: &Path, device: &Device) -> Result<s4d_model::S4dClassifier> {
    let cfg_path = dir.join("model.json");
    if !cfg_path.exists() {
        bail!(
            "{} has no model.json: expected a run directory or a checkpoint directory written by `experiments train`",
            dir.display()
        );
    }
    let cfg: s4d_model::S4dClassifierConfig = read_json(&cfg_path)?;
    cfg.validate()
        .with_context(|| format!("invalid model config in {}", cfg_path.display()))?;
    load_module(cfg.init(device), &dir.join("model.bpk"))
}

/// Saves a classifier as `model.json` + `model.bpk` in `dir`.
pub fn save_classifier(
    model: &s4d_model::S4dClassifier,
    cfg: &s4d_model::S4dClassifierConfig,
    dir: &Path,
) -> Result<()> {
    write_json(&dir.join("model.json"), cfg)?;
    save_module(model, &dir.join("model.bpk"))
}
