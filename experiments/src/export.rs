//! `experiments export`: a trained run leaves s4q in another format. Each format is one
//! [`ExportFormat`] variant, one default file name and one function; adding a format means
//! adding those three and one `match` arm in [`run_export`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use burn::tensor::Distribution;
use clap::{Args, ValueEnum};
use s4d_model::{S4dClassifier, S4dClassifierConfig, SsmMode};
use tracing::info;

use crate::checkpoint::{load_classifier, read_json, write_atomic};
use crate::interop::layout_from_args;

/// Output formats of `experiments export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// Float parameters as safetensors with PyTorch names and shapes (`--layout`), loadable
    /// by the PyTorch peer reference or the state-spaces example model.
    Safetensors,
    /// Integer-only deployment: the `s4q-runtime` binary model file (`model.s4qm`) plus the
    /// integer reference (`integer.json`) and golden test sequences, into the --out directory.
    /// --run is a quantized (QAT) checkpoint directory, or a float run with --spec (PTQ).
    Runtime,
    /// As `runtime`, plus self-contained C99 sources (no malloc, no float, const weights) and
    /// a golden test harness in `<out>/c/`.
    C,
}

impl ExportFormat {
    /// File written inside the run directory when `--out` is not given.
    fn default_file_name(self) -> &'static str {
        match self {
            ExportFormat::Safetensors => "model.safetensors",
            ExportFormat::Runtime | ExportFormat::C => "deploy",
        }
    }
}

/// Options of `experiments export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Run or checkpoint directory holding model.json + model.bpk.
    #[arg(long)]
    run: PathBuf,
    /// Output format.
    #[arg(long, value_enum)]
    format: ExportFormat,
    /// Output file (default: a format-specific name inside --run).
    #[arg(long)]
    out: Option<PathBuf>,
    /// safetensors: target tensor naming (peer, state-spaces).
    #[arg(long, default_value = "peer", conflicts_with = "name_map")]
    layout: String,
    /// safetensors: a TOML name map instead of a built-in layout.
    #[arg(long, value_name = "TOML")]
    name_map: Option<PathBuf>,
    /// safetensors: also write a random input `x` and s4q's outputs for it (`ssm_out_conv`,
    /// `ssm_out_rec` of block 0 as [B, H, L], `logits_conv`, `logits_rec`) to this file, so
    /// another implementation can check its forward pass against ours.
    #[arg(long, value_name = "FILE")]
    sample_io: Option<PathBuf>,
    /// Sequence length of the --sample-io input.
    #[arg(long, default_value_t = 784)]
    sample_len: usize,
    /// runtime / c: where the quantized model and the golden sequences come from.
    #[command(flatten)]
    deploy: crate::deploy::DeploySource,
}

impl ExportArgs {
    fn out_path(&self) -> PathBuf {
        self.out
            .clone()
            .unwrap_or_else(|| self.run.join(self.format.default_file_name()))
    }
}

/// Runs `experiments export`.
pub fn run_export(args: &ExportArgs) -> Result<()> {
    let out = args.out_path();
    match args.format {
        ExportFormat::Safetensors => export_safetensors(args, &out)?,
        ExportFormat::Runtime | ExportFormat::C => crate::deploy::export(
            &args.run,
            args.format == ExportFormat::C,
            &out,
            &args.deploy,
        )?,
    }
    info!("wrote {}", out.display());
    Ok(())
}

/// The float model with PyTorch names: what `scripts/interop-torch-check.sh` loads back into
/// the reference.
fn export_safetensors(args: &ExportArgs, out: &Path) -> Result<()> {
    let device = Device::flex();
    let cfg: S4dClassifierConfig = read_json(&args.run.join("model.json"))?;
    let model = load_classifier(&args.run, &device)?;
    let layout = layout_from_args(Some(&args.layout), args.name_map.as_deref())?
        .context("a layout is always resolved for export")?;
    let bytes = ::interop::export_safetensors(&model, &cfg, &layout)
        .with_context(|| format!("exporting {}", args.run.display()))?;
    write_atomic(out, &bytes)?;
    if let Some(path) = &args.sample_io {
        write_sample_io(&model, &cfg, args.sample_len, path, &device)?;
    }
    println!(
        "exported {} as safetensors ({} layout, {} bytes) -> {}",
        args.run.display(),
        layout.name,
        bytes.len(),
        out.display()
    );
    Ok(())
}

/// A batch of two uniform random sequences and what s4q computes for them in both SSM modes.
fn write_sample_io(
    model: &S4dClassifier,
    cfg: &S4dClassifierConfig,
    len: usize,
    path: &Path,
    device: &Device,
) -> Result<()> {
    if len == 0 {
        bail!("--sample-len must be >= 1");
    }
    device.seed(0); // the same sample on every run, so logs can be compared
    let x = Tensor::<3>::random(
        [2, len, cfg.d_input],
        Distribution::Uniform(0.0, 1.0),
        device,
    );
    let mut tensors = vec![("x".to_string(), host(x.clone())?)];
    for (mode, tag) in [(SsmMode::Convolution, "conv"), (SsmMode::Recurrent, "rec")] {
        let u = model.encoder.forward(x.clone());
        let ssm = model.blocks[0].s4d.forward(u, mode).swap_dims(1, 2); // [B, H, L]
        tensors.push((format!("ssm_out_{tag}"), host(ssm)?));
        tensors.push((
            format!("logits_{tag}"),
            host(model.forward(x.clone(), mode))?,
        ));
    }
    let meta = BTreeMap::from([("producer".to_string(), "s4q export --sample-io".to_string())]);
    let bytes = ::interop::write_safetensors(&tensors, &meta)?;
    write_atomic(path, &bytes)?;
    info!("wrote sample input/outputs to {}", path.display());
    Ok(())
}

fn host<const D: usize>(t: Tensor<D>) -> Result<::interop::HostTensor> {
    let shape = t.dims().to_vec();
    let data = t
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("reading a tensor back: {e:?}"))?;
    Ok(::interop::HostTensor::new(shape, data))
}
