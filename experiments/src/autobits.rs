//! `experiments autobits`: automatic mixed precision for a float run under a memory budget.
//!
//! 1. Sensitivity: every component alone at each candidate width (and `Abar` on each grid) by
//!    PTQ, as the mean cross-entropy increase over the float model on training sequences that
//!    calibration does not use (`sensitivity.json`, reused and extended on later runs).
//! 2. Search: the exact knapsack of [`qat::autobits`] under our memory accounting
//!    (`allocation.json`, and the chosen spec as `spec.json`, usable with `--spec`).
//! 3. QAT of the chosen spec with the `qat` command's training loop (`qat/`).
//! 4. A table and a Pareto plot (accuracy vs memory) with the finished `qat` runs given by
//!    `--compare` (the paper's hand-made specs trained the same way).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use clap::Args;
use datasets::SequenceDataset;
use qat::autobits::{
    Allocation, Budget, CostModel, SensitivityPoint, allocate, choices, point_values,
};
use qat::{
    AbarGrid, Calibration, Component, MemoryReport, ModelDims, Parameterization, PointFields,
    PointOverride, QuantPoint, QuantSpec, QuantizedClassifier, calibrate,
};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::checkpoint::{read_json, write_json};
use crate::data::epoch_order;
use crate::device::DeviceName;
use crate::eval::evaluate_with;
use crate::quant::{ParamArg, QatResult, QatRunConfig, load_float_source, qat};
use crate::reproduce::plots::{self, Fonts, Pareto, ParetoPoint};
use s4q_train::calibration_batches;

/// `Abar` grid as a CLI value.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum GridArg {
    Cartesian,
    Polar,
    LogPolar,
}

impl From<GridArg> for AbarGrid {
    fn from(g: GridArg) -> Self {
        match g {
            GridArg::Cartesian => AbarGrid::Cartesian,
            GridArg::Polar => AbarGrid::Polar,
            GridArg::LogPolar => AbarGrid::LogPolar,
        }
    }
}

/// Options of `experiments autobits`.
#[derive(Args, Debug)]
pub struct AutobitsArgs {
    /// Float run directory (from `experiments train`): the model, its dataset and dimensions.
    #[arg(long)]
    run: PathBuf,
    #[arg(long, default_value = "data")]
    data_root: PathBuf,
    /// Memory budget in bytes, as `experiments memory` counts.
    #[arg(long, required_unless_present = "savings", conflicts_with = "savings")]
    budget: Option<f64>,
    /// Or the savings against FP32 to reach, in percent (the paper's W4A6 Abar 8x8 on S4D-64: 84.05).
    #[arg(long)]
    savings: Option<f64>,
    /// Candidate bit widths of every component.
    #[arg(long, value_delimiter = ',', default_value = "3,4,5,6,7,8")]
    bits: Vec<u32>,
    /// `Abar` grids to measure; the search takes the cheapest per width.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "cartesian,log-polar"
    )]
    grids: Vec<GridArg>,
    /// Let the search keep components in float (32 bits).
    #[arg(long)]
    allow_float: bool,
    /// Accuracy change (points) at a component's widest width below which its PTQ
    /// measurements count as saturated and its cost is extrapolated by noise power.
    #[arg(long, default_value_t = -50.0, allow_hyphen_values = true)]
    saturated_below: f64,
    /// Use the measured costs as they are (no saturation rule).
    #[arg(long)]
    raw_costs: bool,
    /// Training sequences the sensitivity is measured on (not the calibration ones).
    #[arg(long, default_value_t = 300)]
    sens_samples: usize,
    /// Calibration batches (of --batch-size) for the sensitivity cases' activation ranges.
    #[arg(long, default_value_t = 8)]
    sens_calib_batches: usize,
    /// Learned step sizes (LSQ) for every static quantizer of the chosen spec.
    #[arg(long)]
    lsq: bool,
    /// Measure and choose the block points per block (`blocks.<i>.<point>` overrides) instead
    /// of one width per point shared by every block: deep models spend bits where the
    /// sensitive block is.
    #[arg(long)]
    per_block: bool,
    /// Stop after the search (no QAT).
    #[arg(long)]
    no_qat: bool,
    /// What QAT trains.
    #[arg(long, value_enum, default_value_t = ParamArg::FrozenA)]
    parameterization: ParamArg,
    /// QAT epochs.
    #[arg(long, default_value_t = 2)]
    epochs: usize,
    /// QAT peak learning rate, cosine-decayed.
    #[arg(long, default_value_t = 2e-3)]
    lr: f64,
    /// Elementwise gradient clip.
    #[arg(long, default_value_t = 1000.0)]
    grad_clip: f32,
    /// Sequences per step (also calibration and evaluation batches).
    #[arg(long, default_value_t = 25)]
    batch_size: usize,
    /// Training batches used to calibrate static ranges.
    #[arg(long, default_value_t = 16)]
    calib_batches: usize,
    /// Use the first N training sequences (QAT and sensitivity).
    #[arg(long)]
    train_limit: Option<usize>,
    /// Evaluate on the first N test sequences.
    #[arg(long)]
    test_limit: Option<usize>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Finished `qat` output directories to compare with (table and Pareto plot).
    #[arg(long, value_delimiter = ',')]
    compare: Vec<PathBuf>,
    /// Output directory.
    #[arg(long)]
    out_dir: PathBuf,
    #[arg(long, value_enum, default_value_t = DeviceName::Flex)]
    device: DeviceName,
}

/// What the sensitivity was measured on; a cached file is reused only when this matches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SensitivitySetup {
    run: PathBuf,
    train_limit: Option<usize>,
    sens_samples: usize,
    calib_batches: usize,
    batch_size: usize,
}

/// `sensitivity.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SensitivityFile {
    setup: SensitivitySetup,
    /// Float model on the sensitivity sequences: mean cross-entropy and accuracy (%).
    float_loss: f64,
    float_acc: f64,
    points: Vec<SensitivityPoint>,
    /// Wall time spent measuring (s), summed over runs.
    seconds: f64,
}

/// Mean cross-entropy and accuracy (%) of a quantized model on `indices` of `data`.
fn loss_and_accuracy(
    model: &QuantizedClassifier,
    data: &SequenceDataset,
    indices: &[usize],
    batch: usize,
    device: &Device,
) -> Result<(f64, f64)> {
    let e = evaluate_with(&data.select(indices), batch, "sensitivity", device, |b| {
        Ok(model.forward_masked(b.inputs.clone(), &b.lengths)?)
    })?;
    Ok((e.loss, e.accuracy))
}

/// The one-point spec of a sensitivity case: `c` at `bits` (on `grid` for `Abar`) in `block`
/// only, or everywhere for `None`.
fn case_spec(c: Component, block: Option<usize>, bits: u32, grid: AbarGrid) -> Result<QuantSpec> {
    let spec = match block {
        None => QuantSpec::only(c, bits)?.with_a_bar_grid(grid),
        Some(i) => {
            let mut spec = QuantSpec::fp32();
            spec.set_block(Some(i), c, PointOverride::width(bits, grid))?;
            spec
        }
    };
    spec.validate()?;
    Ok(spec)
}

/// Measures (or loads and completes) the sensitivity table.
fn sensitivity(
    args: &AutobitsArgs,
    dims: ModelDims,
    model: &s4d_model::S4dClassifier,
    train: &SequenceDataset,
    device: &Device,
) -> Result<SensitivityFile> {
    let path = args.out_dir.join("sensitivity.json");
    let setup = SensitivitySetup {
        run: args.run.clone(),
        train_limit: args.train_limit,
        sens_samples: args.sens_samples,
        calib_batches: args.sens_calib_batches,
        batch_size: args.batch_size,
    };
    let order = epoch_order(train.len(), 12345, 0);
    let calib_n = (args.sens_calib_batches * args.batch_size).min(order.len());
    let sens: Vec<usize> = order[calib_n..]
        .iter()
        .take(args.sens_samples)
        .copied()
        .collect();
    if sens.is_empty() {
        bail!(
            "no training sequences left for the sensitivity after {calib_n} calibration ones; \
             raise --train-limit or lower --calib-batches"
        );
    }
    let calib = calibration_batches(train, args.sens_calib_batches, args.batch_size, device);
    let cached = match read_json::<SensitivityFile>(&path) {
        Ok(f) if f.setup == setup => Some(f),
        Ok(_) => {
            info!(
                "{} was measured with other settings; measuring anew",
                path.display()
            );
            None
        }
        Err(e) if path.exists() => {
            warn!("cannot reuse {}: {e:#}; measuring anew", path.display());
            None
        }
        Err(_) => None,
    };
    let mut file = match cached {
        Some(f) => {
            info!(points = f.points.len(), "reusing {}", path.display());
            f
        }
        None => {
            let q = QuantizedClassifier::from_float(
                model.clone(),
                QuantSpec::fp32(),
                Parameterization::Continuous,
            )?;
            let (float_loss, float_acc) =
                loss_and_accuracy(&q, train, &sens, args.batch_size, device)?;
            info!(float_loss, float_acc, sequences = sens.len(), "float model");
            SensitivityFile {
                setup,
                float_loss,
                float_acc,
                points: Vec::new(),
                seconds: 0.0,
            }
        }
    };
    let grids: Vec<AbarGrid> = args.grids.iter().map(|g| AbarGrid::from(*g)).collect();
    // Every point the model stores something for (no residual sum in a model without one).
    let points: Vec<QuantPoint> = point_values(dims, args.per_block).into_keys().collect();
    for point in points {
        let QuantPoint {
            block,
            component: c,
        } = point;
        let case_grids: &[AbarGrid] = if c == Component::ABar {
            &grids
        } else {
            &[AbarGrid::Cartesian]
        };
        for &bits in &args.bits {
            for &grid in case_grids {
                let done = file.points.iter().any(|p| {
                    p.component == c && p.block == block && p.bits == bits && p.grid == grid
                });
                if done {
                    continue;
                }
                let started = Instant::now();
                let mut q = QuantizedClassifier::from_float(
                    model.clone(),
                    case_spec(c, block, bits, grid)?,
                    Parameterization::Continuous,
                )?;
                // Weights calibrate from their values in `from_float`; activations need data.
                if !c.is_weight() {
                    calibrate(&mut q, calib.iter().cloned())?;
                }
                let (loss, acc) = loss_and_accuracy(&q, train, &sens, args.batch_size, device)?;
                let point = SensitivityPoint {
                    component: c,
                    block,
                    bits,
                    grid,
                    loss_delta: loss - file.float_loss,
                    acc_delta: acc - file.float_acc,
                };
                info!(
                    point = %point_name(block, c),
                    bits,
                    grid = grid.name(),
                    loss_delta = format!("{:.4}", point.loss_delta),
                    acc_delta = format!("{:+.2}", point.acc_delta),
                    "sensitivity"
                );
                file.points.push(point);
                file.seconds += started.elapsed().as_secs_f64();
                write_json(&path, &file)?;
            }
        }
    }
    Ok(file)
}

/// The sensitivity table as Markdown: rows are components (and grids), columns bit widths.
fn sensitivity_markdown(file: &SensitivityFile, bits: &[u32]) -> String {
    let mut s = format!(
        "Float model on the {} sensitivity sequences: loss {:.4}, accuracy {:.2}%.\n\
         Cells: loss increase (accuracy change, points) with only that component quantized.\n\n\
         | component | grid |",
        file.setup.sens_samples, file.float_loss, file.float_acc
    );
    for b in bits {
        s.push_str(&format!(" {b} bits |"));
    }
    s.push_str("\n|---|---|");
    s.push_str(&"---:|".repeat(bits.len()));
    s.push('\n');
    let mut keys: Vec<(Component, Option<usize>)> =
        file.points.iter().map(|p| (p.component, p.block)).collect();
    keys.sort();
    keys.dedup();
    for (c, block) in keys {
        for grid in AbarGrid::ALL {
            let row: Vec<&SensitivityPoint> = file
                .points
                .iter()
                .filter(|p| p.component == c && p.block == block && p.grid == grid)
                .collect();
            if row.is_empty() {
                continue;
            }
            s.push_str(&format!("| {} | {} |", point_name(block, c), grid.name()));
            for b in bits {
                match row.iter().find(|p| p.bits == *b) {
                    Some(p) => s.push_str(&format!(" {:.4} ({:+.1}) |", p.loss_delta, p.acc_delta)),
                    None => s.push_str(" - |"),
                }
            }
            s.push('\n');
        }
    }
    s
}

/// `a_bar` or `blocks.1.a_bar`.
fn point_name(block: Option<usize>, c: Component) -> String {
    QuantPoint::new(block, c).to_string()
}

/// Sets `learned_scale` on every static quantizer of `spec` (the `--lsq` option).
fn with_lsq(mut spec: QuantSpec) -> QuantSpec {
    for c in Component::ALL {
        if let Some(cfg) = spec.get(c).cloned()
            && cfg.calibration == Calibration::Static
        {
            spec.set(c, Some(cfg.with_learned_scale(true)));
        }
    }
    // Per-block overrides: every quantized point learns its scale too (the presets are
    // static, so there is no dynamic quantizer to skip here).
    for points in spec.blocks.values_mut() {
        for change in points.values_mut() {
            let fields = match change {
                PointOverride::Bits(b) => PointFields {
                    bits: Some(*b),
                    ..PointFields::default()
                },
                PointOverride::Fields(f) if f.float => continue,
                PointOverride::Fields(f) => f.clone(),
            };
            *change = PointOverride::Fields(PointFields {
                learned_scale: Some(true),
                ..fields
            });
        }
    }
    spec
}

/// A short description of a spec: widths per component group.
fn describe(spec: &QuantSpec) -> String {
    let mut parts: Vec<String> = Component::ALL
        .into_iter()
        .filter(|c| !c.is_optional() || spec.get(*c).is_some())
        // A per-block spec sets block points through its overrides, listed below.
        .filter(|c| !(c.is_per_block() && spec.has_block_overrides() && spec.get(*c).is_none()))
        .map(|c| format!("{}:{}", c.name(), spec.bits(c)))
        .collect();
    if !spec.a_bar_grid.is_cartesian() {
        parts.push(format!("a_bar_grid:{}", spec.a_bar_grid.name()));
    }
    for (block, points) in &spec.blocks {
        for (name, change) in points {
            let text = match change {
                PointOverride::Bits(b) => b.to_string(),
                PointOverride::Fields(f) if f.float => "32".into(),
                PointOverride::Fields(f) => match (f.bits, f.grid) {
                    (Some(b), Some(g)) => format!("{b}/{}", g.name()),
                    (Some(b), None) => b.to_string(),
                    _ => "custom".into(),
                },
            };
            parts.push(format!("blocks.{block}.{name}:{text}"));
        }
    }
    parts.join(" ")
}

/// One row of the comparison table.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Row {
    name: String,
    grid: AbarGrid,
    memory_bytes: f64,
    savings: f64,
    float_acc: f64,
    ptq_acc: f64,
    qat_acc: f64,
    train_seconds: f64,
    same_schedule: bool,
    spec: String,
}

fn row(name: &str, dims: ModelDims, cfg: &QatRunConfig, res: &QatResult, same: bool) -> Row {
    let report = MemoryReport::new(dims, &cfg.spec);
    Row {
        name: name.to_string(),
        grid: cfg.spec.a_bar_grid,
        memory_bytes: report.total_bytes(),
        savings: report.savings_percent(),
        float_acc: res.float_acc,
        ptq_acc: res.ptq_acc,
        qat_acc: res.qat_acc,
        train_seconds: res.train_seconds,
        same_schedule: same,
        spec: describe(&cfg.spec),
    }
}

/// Same float run, data and schedule (everything but the spec).
fn same_schedule(a: &QatRunConfig, b: &QatRunConfig) -> bool {
    let mut b = b.clone();
    b.spec = a.spec.clone();
    *a == b
}

/// `experiments autobits`.
pub fn run_autobits(args: &AutobitsArgs) -> Result<()> {
    if args.bits.is_empty() || args.bits.iter().any(|b| !(2..=16).contains(b)) {
        bail!("--bits must list widths in 2..=16, got {:?}", args.bits);
    }
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("creating {}", args.out_dir.display()))?;
    let device = args.device.device()?;
    let src = load_float_source(
        &args.run,
        &args.data_root,
        args.train_limit,
        args.test_limit,
        &device,
    )?;
    let dims = ModelDims::from_config(&src.float_cfg);
    let budget = match (args.budget, args.savings) {
        (Some(bytes), _) => Budget::from_bytes(bytes)?,
        (None, Some(pct)) => Budget::from_savings(dims, pct)?,
        (None, None) => bail!("give --budget <bytes> or --savings <percent>"),
    };
    info!(
        budget_bits = budget.bits,
        budget_bytes = budget.bytes(),
        "memory budget"
    );

    let sens = sensitivity(args, dims, &src.model, &src.train, &device)?;
    std::fs::write(
        args.out_dir.join("sensitivity.md"),
        sensitivity_markdown(&sens, &args.bits),
    )?;
    let cost_model = CostModel {
        allow_float: args.allow_float,
        saturated_below: (!args.raw_costs).then_some(args.saturated_below),
    };
    let table = choices(&sens.points, &args.bits, cost_model, dims)?;
    write_json(&args.out_dir.join("choices.json"), &table)?;
    let alloc: Allocation = allocate(dims, &table, budget)?;
    let spec = if args.lsq {
        with_lsq(alloc.spec.clone())
    } else {
        alloc.spec.clone()
    };
    write_json(&args.out_dir.join("allocation.json"), &alloc)?;
    std::fs::write(args.out_dir.join("spec.json"), spec.to_json_string()?)?;
    let report = MemoryReport::new(dims, &spec);
    std::fs::write(args.out_dir.join("memory.md"), report.to_string())?;
    println!(
        "chosen spec ({}): {}",
        args.out_dir.join("spec.json").display(),
        describe(&spec)
    );
    println!(
        "memory {} bits = {:.1} bytes <= budget {} bits; savings {:.2}% vs FP32; predicted loss increase {:.4}",
        alloc.total_bits,
        alloc.total_bits as f64 / 8.0,
        alloc.budget_bits,
        alloc.savings_percent,
        alloc.cost
    );
    if args.no_qat {
        return Ok(());
    }

    let run_cfg = QatRunConfig {
        float_run: Some(args.run.clone()),
        scratch: None,
        spec,
        parameterization: args.parameterization.into(),
        epochs: args.epochs,
        lr: args.lr,
        warmup_fraction: 0.0,
        grad_clip: args.grad_clip,
        batch_size: args.batch_size,
        train_limit: args.train_limit,
        test_limit: args.test_limit,
        calib_batches: args.calib_batches,
        seed: args.seed,
        balance_state: None,
        distill: None,
    };
    let qat_dir = args.out_dir.join("qat");
    let result: QatResult = match read_json::<QatResult>(&qat_dir.join("result.json")) {
        Ok(r)
            if read_json::<QatRunConfig>(&qat_dir.join("qat_config.json"))
                .ok()
                .as_ref()
                == Some(&run_cfg) =>
        {
            info!("QAT already finished in {}", qat_dir.display());
            r
        }
        _ => qat(
            &run_cfg,
            "autobits",
            &args.data_root,
            &qat_dir,
            true,
            &device.clone(),
        )?,
    };
    println!(
        "autobits QAT: float {:.2}%, PTQ {:.2}%, QAT {:.2}% ({:.0} s)",
        result.float_acc, result.ptq_acc, result.qat_acc, result.train_seconds
    );

    let mut rows = vec![row("autobits", dims, &run_cfg, &result, true)];
    for dir in &args.compare {
        let cfg: QatRunConfig = read_json(&dir.join("qat_config.json"))
            .with_context(|| format!("{} is not a finished qat run", dir.display()))?;
        let res: QatResult = read_json(&dir.join("result.json"))
            .with_context(|| format!("{} has no result.json (unfinished?)", dir.display()))?;
        let same = same_schedule(&run_cfg, &cfg);
        if !same {
            warn!(
                "{} was trained with another schedule or data than autobits' QAT",
                dir.display()
            );
        }
        rows.push(row(&res.spec, dims, &cfg, &res, same));
    }
    write_json(&args.out_dir.join("comparison.json"), &rows)?;
    let mut md = String::from(
        "| run | Abar grid | memory (bytes) | savings % | float % | PTQ % | QAT % | QAT time (s) | same data + schedule |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for r in &rows {
        md.push_str(&format!(
            "| {} | {} | {:.1} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} | {} |\n",
            r.name,
            r.grid.name(),
            r.memory_bytes,
            r.savings,
            r.float_acc,
            r.ptq_acc,
            r.qat_acc,
            r.train_seconds,
            if r.same_schedule { "yes" } else { "no" }
        ));
    }
    std::fs::write(args.out_dir.join("comparison.md"), &md)?;
    print!("{md}");
    let written = pareto(&rows, dims, &args.out_dir)?;
    for p in written {
        info!("wrote {}", p.display());
    }
    Ok(())
}

/// Accuracy vs memory: the compared runs, the autobits run, and the float model.
fn pareto(rows: &[Row], dims: ModelDims, out: &Path) -> Result<Vec<PathBuf>> {
    // The float model (about 6x the memory) would squeeze the quantized points to one edge of
    // the axis, so it is named in the title instead of drawn.
    let float_acc = rows.first().map_or(0.0, |r| r.float_acc);
    let points = rows
        .iter()
        .map(|r| ParetoPoint {
            label: r.name.clone(),
            x: r.memory_bytes / 1024.0,
            y: r.qat_acc,
            yerr: None,
            group: if r.name == "autobits" {
                0
            } else if r.grid.is_cartesian() {
                1
            } else {
                2
            },
        })
        .collect();
    let chart = Pareto {
        title: format!(
            "S4D-{}h after QAT (float {float_acc:.1}%): searched vs the paper's hand-made specs",
            dims.heads
        ),
        groups: vec![
            "autobits (searched)".into(),
            "hand-made, Cartesian".into(),
            "hand-made, log-polar".into(),
        ],
        points,
        reference: None,
    };
    plots::save(&chart, &out.join("pareto"), &Fonts::load())
}
