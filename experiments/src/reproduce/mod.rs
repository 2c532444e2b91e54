//! `experiments reproduce`: the paper's PTQ sensitivity sweep, QAT heatmap and Table III from
//! one command. A target expands to independent runs ([`plan`]), each a directory that a sweep
//! skips when finished and resumes when interrupted ([`sweep`]); `--shard i/n` or a Slurm job
//! array splits the runs over workers ([`shard`]); the aggregator merges whatever is finished
//! into Markdown tables beside the paper's numbers and SVG/PNG figures ([`aggregate`]).

pub mod aggregate;
pub mod exec;
pub mod paper;
pub mod plan;
pub mod plots;
pub mod shard;
pub mod sweep;

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use datasets::DatasetName;
use tracing::{info, warn};

use crate::checkpoint::write_json;
use crate::device::DeviceName;
use crate::quant::ParamArg;
use aggregate::{aggregate, machine};
use exec::BurnExecutor;
use plan::{Budget, Job, SweepConfig, Target};
use plots::Fonts;
use shard::Shard;
use sweep::{Layout, RunState, Sweep, append_line, hostname, unix_seconds};

/// Options of `experiments reproduce`.
#[derive(Args, Debug)]
pub struct ReproduceArgs {
    /// What to reproduce (default: all): ptq-sensitivity, qat-heatmap, table3.
    #[arg(value_enum, value_delimiter = ',')]
    targets: Vec<Target>,
    /// Model preset: s4d-16h or s4d-64h (any preset works).
    #[arg(long, default_value = "s4d-16h")]
    model: String,
    /// Dataset: smnist10k, sfashion, smnist, psmnist (embedded for smoke tests).
    #[arg(long, default_value = "smnist10k")]
    dataset: DatasetName,
    /// Number of seeds (0..N): each trains its own float model.
    #[arg(long, default_value_t = 1)]
    seeds: u64,
    /// The `quick` budget: short float run, one short QAT epoch, 500 test sequences.
    #[arg(long, conflicts_with_all = ["tiny", "budget"])]
    quick: bool,
    /// The `tiny` budget: a smoke test of the machinery (seconds per run).
    #[arg(long, conflicts_with = "budget")]
    tiny: bool,
    /// The `converged` budget: float and QAT trained until validation accuracy settles, the
    /// kept epoch chosen on a held-out tenth of the training digits (never the test set).
    #[arg(long, conflicts_with_all = ["quick", "tiny", "budget"])]
    converged: bool,
    /// A budget file (.toml/.json, fields of `Budget`) instead of the paper's (`full`).
    #[arg(long)]
    budget: Option<PathBuf>,
    /// Parameterization of Table III's QAT rows (default: the budget's, frozen-a).
    #[arg(long, value_enum)]
    table3_parameterization: Option<ParamArg>,
    /// Output directory; the sweep lives in <out>/<dataset>-<model>-<budget>/.
    #[arg(long, default_value = "results/reproduce")]
    out: PathBuf,
    /// Directory holding fetched datasets.
    #[arg(long, default_value = "data")]
    data_root: PathBuf,
    /// Run only shard i of n (0-based, e.g. 0/4); default: SLURM_ARRAY_TASK_ID /
    /// SLURM_ARRAY_TASK_COUNT inside a Slurm array job, else everything.
    #[arg(long)]
    shard: Option<Shard>,
    /// Print the runs, their shard and state, and exit.
    #[arg(long)]
    plan: bool,
    /// Only merge finished runs into tables and figures.
    #[arg(long, conflicts_with = "no_aggregate")]
    aggregate_only: bool,
    /// Only run; do not write tables and figures.
    #[arg(long)]
    no_aggregate: bool,
    #[arg(long, value_enum, default_value_t = DeviceName::Flex)]
    device: DeviceName,
}

impl ReproduceArgs {
    fn budget(&self) -> Result<Budget> {
        let mut budget = match (&self.budget, self.quick, self.tiny) {
            (Some(path), _, _) => Budget::from_file(path)?,
            (None, true, _) => Budget::quick(),
            (None, _, true) => Budget::tiny(),
            (None, false, false) if self.converged => Budget::converged(),
            (None, false, false) => Budget::full(),
        };
        if let Some(p) = self.table3_parameterization {
            budget.table3_parameterization = p.into();
        }
        Ok(budget)
    }

    fn targets(&self) -> Vec<Target> {
        let mut t = if self.targets.is_empty() {
            Target::ALL.to_vec()
        } else {
            self.targets.clone()
        };
        t.sort();
        t.dedup();
        t
    }
}

/// The command line as a user would retype it (`experiments reproduce ...`).
fn command_line() -> String {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .map(|a| {
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "'\"$`\\".contains(c)) {
                format!("'{}'", a.replace('\'', r"'\''"))
            } else {
                a
            }
        })
        .collect();
    format!("experiments {}", args.join(" "))
}

/// `experiments reproduce`.
pub fn run_reproduce(args: &ReproduceArgs) -> Result<()> {
    let targets = args.targets();
    let cfg = SweepConfig {
        model: args.model.clone(),
        dataset: args.dataset,
        seeds: args.seeds,
        budget: args.budget()?,
    };
    cfg.validate()?;
    let plan = cfg.plan(&targets)?;
    let layout = Layout {
        root: cfg.root(&args.out),
    };
    let shard = match args.shard {
        Some(s) => s,
        None => Shard::from_slurm_env()?.unwrap_or(Shard::ALL),
    };

    if args.plan {
        let mine: Vec<&str> = shard.assign(&plan).iter().map(|r| r.id.as_str()).collect();
        println!("{} runs in {}:", plan.len(), layout.root.display());
        println!("| run | kind | this shard ({shard}) | state |\n|---|---|---|---|");
        for run in &plan {
            let kind = match run.job {
                Job::Float { .. } => "float",
                Job::Ptq { .. } => "ptq",
                Job::Qat { .. } => "qat",
            };
            let state = match layout.state(run) {
                Ok(RunState::Done) => "done".to_string(),
                Ok(RunState::Partial) => "partial".to_string(),
                Ok(RunState::Missing) => "-".to_string(),
                Err(e) => format!("conflict: {e}"),
            };
            let own = if mine.contains(&run.id.as_str()) {
                "yes"
            } else {
                ""
            };
            println!("| {} | {kind} | {own} | {state} |", run.id);
        }
        return Ok(());
    }

    let mut failures = Vec::new();
    if !args.aggregate_only {
        std::fs::create_dir_all(&layout.root)?;
        write_json(&layout.root.join("sweep.json"), &cfg)?;
        append_line(
            &layout.events(),
            &serde_json::json!({
                "t": unix_seconds(), "event": "invocation", "command": command_line(),
                "targets": targets.iter().map(|t| t.name()).collect::<Vec<_>>(),
                "host": hostname(), "pid": std::process::id(), "shard": shard.to_string(),
                "machine": machine(),
            }),
        )?;
        info!(
            "{} runs planned for {}; shard {shard} owns {}",
            plan.len(),
            layout.root.display(),
            shard.assign(&plan).len()
        );
        let exec = BurnExecutor::new(args.device.device()?, args.data_root.clone());
        let report = Sweep::new(layout.clone(), &plan, &exec, shard).run()?;
        println!(
            "shard {shard}: {} run, {} resumed, {} already done, {} busy elsewhere, {} failed",
            report.executed.len(),
            report.resumed.len(),
            report.skipped.len(),
            report.busy.len(),
            report.failed.len()
        );
        for (id, err) in &report.failed {
            println!("  failed: {id}: {err}");
        }
        failures = report.failed;
    }

    if !args.no_aggregate {
        let done = plan
            .iter()
            .filter(|r| matches!(layout.state(r), Ok(RunState::Done)))
            .count();
        if shard.count > 1 && !args.aggregate_only && done < plan.len() {
            println!(
                "{done} of {} runs finished; when every shard is done, merge with the same command plus --aggregate-only",
                plan.len()
            );
        } else {
            let fonts = Fonts::load();
            info!("plot font: {}", fonts.source);
            for report in aggregate(&cfg, &plan, &layout, &targets, &fonts)? {
                println!("{}", report.markdown);
            }
            if done < plan.len() {
                warn!(
                    "{} of {} runs are not finished yet",
                    plan.len() - done,
                    plan.len()
                );
            }
        }
    }
    if !failures.is_empty() {
        bail!(
            "{} run(s) failed ({}); re-run the same command to retry them",
            failures.len(),
            failures
                .iter()
                .map(|f| f.0.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}
