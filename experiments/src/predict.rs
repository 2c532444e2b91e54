//! `experiments predict`: the class of every sequence in a file, with probabilities, from a
//! float, fake-quantized or integer model, as CSV or JSON lines.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use datasets::{FileOptions, SequenceDataset};
use s4q_train::RunManifest;
use s4q_train::predict::{Engine, Prediction, Predictor, predict};

use crate::checkpoint::write_atomic;
use crate::device::DeviceName;

/// Options of `experiments predict`.
#[derive(Args, Debug)]
pub struct PredictArgs {
    /// A run directory: float (`train`) or quantized (`qat`, `export --spec ... --save-quantized`).
    #[arg(long)]
    run: PathBuf,
    /// Sequences to classify: .ts, .npy, .npz or .csv; labels, where the file has them, are
    /// reported beside the predictions.
    #[arg(long)]
    input: PathBuf,
    /// Features per step of a CSV input.
    #[arg(long)]
    d_input: Option<usize>,
    /// Arithmetic: float, fake-quant or integer (default: float for a float run, fake-quant
    /// for a quantized one).
    #[arg(long, value_enum)]
    engine: Option<EngineArg>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutFormat::Csv)]
    format: OutFormat,
    /// Write here instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    #[arg(long, value_enum, default_value_t = DeviceName::Flex)]
    device: DeviceName,
}

/// `--engine` values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum EngineArg {
    Float,
    FakeQuant,
    Integer,
}

/// `--format` values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum OutFormat {
    /// `index,class,label,p_<name>...` with a header line.
    Csv,
    /// One JSON object per line.
    Json,
}

/// Loads the sequences to classify, scaled with the run's preprocessing. A labelled file's
/// labels are renumbered into the run's class order by name (so a file that lists its classes
/// in another order, or lacks some, still scores correctly); an unlabelled one (`.ts` with
/// `@classLabel false`, `.npy` without a `y` file, `.npz` without `y`) is only classified.
fn load_input(
    args: &PredictArgs,
    class_names: &[String],
    manifest: &RunManifest,
) -> Result<(SequenceDataset, bool)> {
    let opts = FileOptions {
        d_input: args.d_input,
        ..FileOptions::default()
    };
    let (data, labelled) = datasets::load_for_prediction(&args.input, &opts)
        .with_context(|| format!("reading {}", args.input.display()))?;
    let mut labels = vec![0u32; data.len()];
    if labelled {
        for (dst, &l) in labels.iter_mut().zip(&data.labels) {
            let name = &data.class_names[l as usize];
            let Some(k) = class_names.iter().position(|c| c == name) else {
                bail!(
                    "{}: label `{name}` is not a class of the model ({})",
                    args.input.display(),
                    class_names.join(", ")
                );
            };
            *dst = k as u32;
        }
    }
    let mut data = SequenceDataset::new(
        data.name.clone(),
        data.inputs.clone(),
        labels,
        data.seq_len,
        data.d_input,
        class_names.len(),
    )?
    .with_lengths(data.lengths.clone())?
    .with_class_names(class_names.to_vec())?;
    manifest.preprocess.apply(&mut data)?;
    Ok((data, labelled))
}

/// Formats predictions as CSV (header + one row per sequence).
fn to_csv(preds: &[Prediction], class_names: &[String]) -> String {
    let mut out = String::from("index,class,label");
    for c in class_names {
        let _ = write!(out, ",p_{c}");
    }
    out.push('\n');
    for p in preds {
        let _ = write!(
            out,
            "{},{},{}",
            p.index,
            p.class,
            p.label.as_deref().unwrap_or("")
        );
        for v in &p.probabilities {
            let _ = write!(out, ",{v:.6}");
        }
        out.push('\n');
    }
    out
}

/// `experiments predict`.
pub fn run_predict(args: &PredictArgs) -> Result<()> {
    let device = args.device.device()?;
    let manifest = RunManifest::load(&args.run)?;
    let class_names = manifest.preprocess.class_names.clone();
    let quantized = args.run.join("quant_state.json").exists();
    let engine = match (args.engine, quantized) {
        (Some(EngineArg::Float), _) => Engine::Float,
        (Some(EngineArg::FakeQuant), _) => Engine::FakeQuant,
        (Some(EngineArg::Integer), _) => Engine::Integer,
        (None, false) => Engine::Float,
        (None, true) => Engine::FakeQuant,
    };
    let predictor = Predictor::load(&args.run, engine, &device)?;
    let (data, labelled) = load_input(args, &class_names, &manifest)?;
    let preds = predict(
        &predictor,
        &data,
        &class_names,
        labelled,
        args.batch_size,
        &device,
    )?;
    let correct = preds
        .iter()
        .filter(|p| p.label.as_deref() == Some(p.class.as_str()))
        .count();
    let text = match args.format {
        OutFormat::Csv => to_csv(&preds, &class_names),
        OutFormat::Json => {
            let mut s = String::new();
            for p in &preds {
                s.push_str(&serde_json::to_string(p)?);
                s.push('\n');
            }
            s
        }
    };
    match &args.out {
        Some(path) => write_atomic(path, text.as_bytes())?,
        None => print!("{text}"),
    }
    if labelled {
        eprintln!(
            "{} sequences, {engine:?} engine: {correct} predictions match the file's labels ({:.2}%)",
            preds.len(),
            100.0 * correct as f64 / preds.len().max(1) as f64
        );
    } else {
        eprintln!("{} sequences classified, {engine:?} engine", preds.len());
    }
    Ok(())
}
