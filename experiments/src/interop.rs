//! `experiments import`: a PyTorch-trained S4D checkpoint (safetensors) becomes an s4q run
//! directory that `eval`, `ptq`, `qat` and `export` accept, so outside models can be quantized
//! without retraining. The conversion itself lives in the `interop` crate.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::module::Module;
use clap::{Args, ValueEnum};
use datasets::DatasetName;
use s4d_model::S4dClassifierConfig;
use tracing::info;

use crate::checkpoint::{load_classifier, save_classifier, write_json};
use crate::train::TrainConfig;

/// Checkpoint formats `import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImportFormat {
    /// A PyTorch S4D `state_dict` saved as safetensors (peer reference or state-spaces names).
    TorchS4d,
}

/// Options of `experiments import`.
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The checkpoint to read.
    #[arg(long = "from", value_name = "FILE")]
    from: PathBuf,
    /// What the file is.
    #[arg(long, value_enum, default_value_t = ImportFormat::TorchS4d)]
    format: ImportFormat,
    /// Built-in tensor naming (peer, state-spaces); detected from the names when omitted.
    #[arg(long, conflicts_with = "name_map")]
    layout: Option<String>,
    /// A TOML name map for other layouts (format: crates/interop/src/lib.rs).
    #[arg(long, value_name = "TOML")]
    name_map: Option<PathBuf>,
    /// Run directory to write (default: runs/imported-<file stem>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Dataset recorded in the run's config.json (what `eval`, `ptq`, `qat` use by default).
    #[arg(long, default_value = "embedded")]
    dataset: DatasetName,
}

/// Resolves `--layout` / `--name-map` into a layout, or `None` for detection. Shared with
/// `export`, which takes the same two flags.
pub fn layout_from_args(
    layout: Option<&str>,
    name_map: Option<&Path>,
) -> Result<Option<::interop::Layout>> {
    Ok(match (layout, name_map) {
        (_, Some(path)) => Some(::interop::Layout::from_toml_file(path)?),
        (Some(name), None) => Some(::interop::Layout::builtin(name)?),
        (None, None) => None,
    })
}

/// Runs `experiments import`.
pub fn run_import(args: &ImportArgs) -> Result<()> {
    match args.format {
        ImportFormat::TorchS4d => import_torch_s4d(args),
    }
}

fn import_torch_s4d(args: &ImportArgs) -> Result<()> {
    let device = burn::prelude::Device::flex();
    let layout = layout_from_args(args.layout.as_deref(), args.name_map.as_deref())?;
    let imported = ::interop::import_safetensors(&args.from, layout.as_ref(), &device)
        .with_context(|| format!("importing {}", args.from.display()))?;
    let out = args.out.clone().unwrap_or_else(|| {
        let stem = args
            .from
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into());
        PathBuf::from("runs").join(format!("imported-{stem}"))
    });
    save_classifier(&imported.model, &imported.config, &out)?;
    let train_cfg = run_config(&imported.config, args.dataset)?;
    write_json(&out.join("config.json"), &train_cfg)?;
    // The typed run description: raw inputs, classes named by index (a PyTorch checkpoint
    // carries no preprocessing).
    let preprocess =
        s4q_train::Preprocess::identity(imported.config.d_input, imported.config.n_classes);
    s4q_train::RunManifest::new(
        s4q_train::RunKind::Imported,
        &imported.config,
        &train_cfg.data,
        &preprocess,
    )
    .save(&out)?;
    // Read it back the way every other command will, so a broken run fails here.
    let reloaded = load_classifier(&out, &device)
        .with_context(|| format!("re-reading the imported run {}", out.display()))?;
    let cfg = &imported.config;
    if !imported.unused.is_empty() {
        println!(
            "note: {} tensors were not imported (see the warning above)",
            imported.unused.len()
        );
    }
    info!(layout = %imported.layout, "wrote {}", out.display());
    println!(
        "imported {} ({} layout): H={} N={} blocks={} d_input={} classes={} norm={} residual={} trainable B={}, {} parameters -> {}",
        args.from.display(),
        imported.layout,
        cfg.ssm.d_model,
        cfg.ssm.d_state,
        cfg.n_layers,
        cfg.d_input,
        cfg.n_classes,
        cfg.norm_kind().is_some(),
        cfg.residual,
        cfg.ssm.trainable_b,
        reloaded.num_params(),
        out.display()
    );
    Ok(())
}

/// A `config.json` for the imported run: the training recipe's defaults around the imported
/// architecture, so `ptq` and `qat` (which read it for the dataset and schedule) accept the run.
fn run_config(model: &S4dClassifierConfig, dataset: DatasetName) -> Result<TrainConfig> {
    let mut cfg = TrainConfig::recipe(S4dClassifierConfig::PRESETS[0], dataset)?;
    cfg.model = model.clone();
    cfg.validate()?;
    Ok(cfg)
}
