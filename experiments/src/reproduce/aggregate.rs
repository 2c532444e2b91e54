//! Merging finished run directories into the paper's tables (mean +- std over seeds, beside
//! the paper's numbers), ordering checks, and figures. Reads only files, so it merges the
//! output of any number of shards or machines.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Result;
use qat::{BlockFeatures, Component, MemoryReport, ModelDims, Parameterization, QuantSpec};
use s4d_model::S4dClassifierConfig;
use serde::Serialize;
use tracing::{info, warn};

use super::exec::PtqResult;
use super::paper;
use super::plan::{
    HEATMAP_ABAR_BITS, HEATMAP_QAT, HEATMAP_STATE_BITS, Job, RunSpec, SweepConfig, Target,
    float_id, param_name, ptq_id, qat_id, sensitivity_name, table3_qat_specs, w4a6, width_name,
};
use super::plots::{self, Fonts, HeatPanel, Heatmap, LineChart, Pareto, ParetoPoint, Series};
use super::sweep::{Layout, RunState};
use crate::checkpoint::{read_json, write_atomic, write_json};
use crate::quant::QatResult;
use crate::train::TrainResult;

/// Mean, sample standard deviation and count of one number over seeds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stat {
    /// Mean.
    pub mean: f64,
    /// Sample standard deviation (0 for one value).
    pub std: f64,
    /// Number of seeds with a result.
    pub n: usize,
}

impl Stat {
    /// Statistics of `values`; `None` when empty.
    pub fn of(values: &[f64]) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        let n = values.len();
        let mean = values.iter().sum::<f64>() / n as f64;
        let std = if n > 1 {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        Some(Self { mean, std, n })
    }
}

/// Our float accuracy beside the paper's sMNIST one.
fn float_line(res: &Results, cfg: &SweepConfig) -> String {
    let ours = fmt_stat(res.float(), res.seeds());
    match paper::float(&cfg.model) {
        Some((m, s)) => format!("{ours} (paper, sMNIST: {m:.2} ± {s:.2})"),
        None => ours,
    }
}

/// `97.20 +- 0.25`, `97.20` for one seed, and the count when seeds are missing.
fn fmt_stat(s: Option<Stat>, seeds: usize) -> String {
    match s {
        None => "–".into(),
        Some(s) => {
            let mut out = if s.n > 1 {
                format!("{:.2} ± {:.2}", s.mean, s.std)
            } else {
                format!("{:.2}", s.mean)
            };
            if s.n < seeds {
                let _ = write!(out, " (n={})", s.n);
            }
            out
        }
    }
}

/// What one finished run measured.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    Float { acc: f64 },
    Ptq { acc: f64 },
    Qat { acc: f64 },
}

impl Outcome {
    fn acc(self) -> f64 {
        match self {
            Outcome::Float { acc } | Outcome::Ptq { acc } | Outcome::Qat { acc } => acc,
        }
    }
}

/// The finished runs of a plan.
pub struct Results {
    cfg: SweepConfig,
    outcomes: BTreeMap<String, Outcome>,
    planned: usize,
    root: PathBuf,
}

impl Results {
    /// Reads every finished run of `plan` under `layout`; unfinished runs are left out.
    pub fn collect(cfg: &SweepConfig, plan: &[RunSpec], layout: &Layout) -> Self {
        let mut outcomes = BTreeMap::new();
        for run in plan {
            match layout.state(run) {
                Ok(RunState::Done) => {}
                Ok(_) => continue,
                Err(e) => {
                    warn!("{e:#}");
                    continue;
                }
            }
            let path = layout.run_dir(&run.id).join("result.json");
            let outcome = match &run.job {
                Job::Float { .. } => {
                    read_json::<TrainResult>(&path).map(|r| Outcome::Float { acc: r.test_acc })
                }
                Job::Ptq { .. } => {
                    read_json::<PtqResult>(&path).map(|r| Outcome::Ptq { acc: r.accuracy })
                }
                Job::Qat { .. } => {
                    read_json::<QatResult>(&path).map(|r| Outcome::Qat { acc: r.qat_acc })
                }
            };
            match outcome {
                Ok(o) => {
                    outcomes.insert(run.id.clone(), o);
                }
                Err(e) => warn!("skipping {}: {e:#}", run.id),
            }
        }
        Self {
            cfg: cfg.clone(),
            outcomes,
            planned: plan.len(),
            root: layout.root.clone(),
        }
    }

    /// Finished runs.
    pub fn done(&self) -> usize {
        self.outcomes.len()
    }

    fn seeds(&self) -> usize {
        self.cfg.seeds as usize
    }

    fn over_seeds(&self, id: impl Fn(u64) -> String) -> Option<Stat> {
        let values: Vec<f64> = (0..self.cfg.seeds)
            .filter_map(|s| self.outcomes.get(&id(s)).map(|o| o.acc()))
            .collect();
        Stat::of(&values)
    }

    /// Float accuracy over seeds.
    pub fn float(&self) -> Option<Stat> {
        self.over_seeds(float_id)
    }

    /// PTQ accuracy of `spec_name` over seeds.
    pub fn ptq(&self, spec_name: &str) -> Option<Stat> {
        self.over_seeds(|s| ptq_id(spec_name, s))
    }

    /// QAT accuracy of `spec_name` with `p` over seeds.
    pub fn qat(&self, spec_name: &str, p: Parameterization) -> Option<Stat> {
        self.over_seeds(|s| qat_id(spec_name, p, s))
    }

    /// Heatmap cell: `None` method = PTQ-static.
    pub fn heat(&self, method: Option<Parameterization>, state: u32, abar: u32) -> Option<Stat> {
        let name = w4a6(abar, state);
        match method {
            None => self.ptq(&name),
            Some(p) => self.qat(&name, p),
        }
    }
}

/// A statement of the paper checked against our numbers.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What the paper finds.
    pub claim: String,
    /// `Some(true)` when ours agree, `None` when runs are missing or not planned.
    pub holds: Option<bool>,
    /// Why the budget can never decide the check (it does not plan the runs the check needs),
    /// so a reader is not told to wait for runs that will not come.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_planned: Option<String>,
    /// The numbers behind the verdict.
    pub detail: String,
}

impl Check {
    fn line(&self) -> String {
        let mark = match (self.holds, &self.not_planned) {
            (Some(true), _) => "yes".to_string(),
            (Some(false), _) => "**no**".to_string(),
            (None, Some(why)) => format!("not checked ({why})"),
            (None, None) => "not yet (runs missing)".to_string(),
        };
        format!("- {} — {mark}: {}", self.claim, self.detail)
    }
}

/// One target's report: Markdown, a JSON summary, checks, figures.
#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    /// Which target.
    pub target: Target,
    /// The Markdown text (also written to `<root>/<target>.md`).
    pub markdown: String,
    /// The paper's findings, checked.
    pub checks: Vec<Check>,
    /// Machine-readable numbers (also `<root>/<target>.json`).
    pub summary: serde_json::Value,
    /// Figures written.
    pub figures: Vec<PathBuf>,
}

/// Builds, writes and returns the reports of `targets`.
pub fn aggregate(
    cfg: &SweepConfig,
    plan: &[RunSpec],
    layout: &Layout,
    targets: &[Target],
    fonts: &Fonts,
) -> Result<Vec<TargetReport>> {
    let res = Results::collect(cfg, plan, layout);
    info!(
        "{} of {} planned runs finished in {}",
        res.done(),
        res.planned,
        res.root.display()
    );
    let mut out = Vec::new();
    for &target in targets {
        let mut report = match target {
            Target::PtqSensitivity => sensitivity(&res, cfg, fonts)?,
            Target::QatHeatmap => heatmap(&res, cfg, fonts)?,
            Target::Table3 => table3(&res, cfg, fonts)?,
        };
        let mut md = header(cfg, layout, target, &res)?;
        md.push('\n');
        md.push_str(&report.markdown);
        if !report.checks.is_empty() {
            md.push_str("\n**The paper's findings, on these runs:**\n\n");
            for c in &report.checks {
                md.push_str(&c.line());
                md.push('\n');
            }
        }
        if !report.figures.is_empty() {
            md.push_str("\nFigures: ");
            let names: Vec<String> = report
                .figures
                .iter()
                .filter_map(|f| {
                    f.file_name()
                        .map(|n| format!("[`{0}`]({0})", n.to_string_lossy()))
                })
                .collect();
            md.push_str(&names.join(", "));
            md.push('\n');
        }
        report.markdown = md;
        write_atomic(
            &layout.root.join(format!("{}.md", target.name())),
            report.markdown.as_bytes(),
        )?;
        write_json(
            &layout.root.join(format!("{}.json", target.name())),
            &serde_json::json!({
                "target": target,
                "model": cfg.model,
                "dataset": cfg.dataset,
                "budget": cfg.budget,
                "seeds": cfg.seeds,
                "runs_done": res.done(),
                "runs_planned": res.planned,
                "numbers": report.summary,
                "checks": report.checks,
            }),
        )?;
        out.push(report);
    }
    Ok(out)
}

/// "7 and 6", "16, 8 and 7": row lists read as prose in the generated findings.
fn join_bits(bits: &[u32]) -> String {
    let words: Vec<String> = bits.iter().map(u32::to_string).collect();
    match words.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => words.concat(),
    }
}

fn model_title(cfg: &SweepConfig) -> String {
    format!(
        "{} on {}, `{}` budget, {} seed{}",
        cfg.model.replace("s4d", "S4D"),
        cfg.dataset,
        cfg.budget.name,
        cfg.seeds,
        if cfg.seeds == 1 { "" } else { "s" }
    )
}

fn save_figure<C: plots::Chart>(
    chart: &C,
    res: &Results,
    stem: &str,
    fonts: &Fonts,
    figures: &mut Vec<PathBuf>,
) -> Result<()> {
    match plots::save(chart, &res.root.join(stem), fonts) {
        Ok(files) => figures.extend(files),
        Err(e) => warn!("figure {stem} not written: {e:#}"),
    }
    Ok(())
}

fn sensitivity(res: &Results, cfg: &SweepConfig, fonts: &Fonts) -> Result<TargetReport> {
    let seeds = res.seeds();
    let bits = &cfg.budget.sensitivity_bits;
    let float = res.float();
    let mut md = String::new();
    let _ = writeln!(
        md,
        "## PTQ sensitivity — {}\n\nOne component quantized alone (static calibration, per-head, \
         asymmetric), everything else float; test accuracy % (delta vs float). Float: {}.\n",
        model_title(cfg),
        float_line(res, cfg)
    );
    md.push_str("| component |");
    for b in bits {
        let _ = write!(md, " {b} bits |");
    }
    md.push_str(" paper (S4D-16h, read off figures) |\n|---|");
    for _ in bits {
        md.push_str("---:|");
    }
    md.push_str("---|\n");
    let mut rows = Vec::new();
    let mut series = Vec::new();
    for c in Component::for_model(BlockFeatures::PAPER) {
        let mut line = format!("| {} |", c.name());
        let mut points = Vec::new();
        for &b in bits {
            let s = res.ptq(&sensitivity_name(c, b));
            let delta = match (s, float) {
                (Some(s), Some(f)) => format!(" ({:+.1})", s.mean - f.mean),
                _ => String::new(),
            };
            let _ = write!(line, " {}{delta} |", fmt_stat(s, seeds));
            if let Some(s) = s {
                points.push((b as f64, s.mean));
            }
            rows.push(serde_json::json!({"component": c.name(), "bits": b, "acc": s}));
        }
        let refs: Vec<String> = bits
            .iter()
            .filter_map(|&b| paper::sensitivity_16h(c, b).map(|r| format!("{b}b: {r}")))
            .collect();
        let _ = writeln!(line, " {} |", refs.join(", "));
        md.push_str(&line);
        series.push(Series {
            label: c.name().into(),
            points,
            emphasis: false,
        });
    }
    let dims = ModelDims::from_config(&S4dClassifierConfig::preset(&cfg.model)?);
    let _ = writeln!(
        md,
        "\nWhole model at one width (`wBaB`: every weight, activation, Abar and the state at B bits):\n\n\
         | spec | test acc. % | delta vs float | memory savings % |\n|---|---:|---:|---:|"
    );
    let mut widths = Vec::new();
    let mut whole = Vec::new();
    for &b in &cfg.budget.width_bits {
        let name = width_name(b);
        let s = res.ptq(&name);
        let savings = MemoryReport::new(dims, &QuantSpec::preset(&name)?).savings_percent();
        let delta = match (s, float) {
            (Some(s), Some(f)) => format!("{:+.2}", s.mean - f.mean),
            _ => "–".into(),
        };
        let _ = writeln!(
            md,
            "| {name} | {} | {delta} | {savings:.2} |",
            fmt_stat(s, seeds)
        );
        if let Some(s) = s {
            whole.push((b as f64, s.mean));
        }
        widths.push(serde_json::json!({"spec": name, "acc": s, "savings": savings}));
    }
    series.push(Series {
        label: "whole model (wBaB)".into(),
        points: whole,
        emphasis: true,
    });

    // Checks: at 8 bits (or the widest swept), Abar and the state are the most sensitive.
    let mut checks = Vec::new();
    if let Some(&b8) = bits.iter().find(|&&b| b == 8).or(bits.iter().max()) {
        let paper = Component::for_model(BlockFeatures::PAPER);
        let mut accs: Vec<(f64, Component)> = paper
            .iter()
            .filter_map(|&c| res.ptq(&sensitivity_name(c, b8)).map(|s| (s.mean, c)))
            .collect();
        accs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let holds = (accs.len() == paper.len()).then(|| {
            let worst: Vec<Component> = accs.iter().take(2).map(|a| a.1).collect();
            worst.contains(&Component::ABar) && worst.contains(&Component::State)
        });
        let detail = accs
            .iter()
            .take(3)
            .map(|(a, c)| format!("{} {a:.1}%", c.name()))
            .collect::<Vec<_>>()
            .join(", ");
        checks.push(Check {
            claim: format!(
                "at {b8} bits the state x and Abar are the two most sensitive components"
            ),
            holds,
            not_planned: None,
            detail: format!("lowest three: {detail}"),
        });
    }
    if let (Some(&lo), Some(f)) = (bits.iter().min(), float) {
        let accs: Vec<Option<Stat>> = [Component::BBar, Component::DBar]
            .iter()
            .map(|&c| res.ptq(&sensitivity_name(c, lo)))
            .collect();
        let holds = accs
            .iter()
            .all(Option::is_some)
            .then(|| accs.iter().flatten().all(|s| f.mean - s.mean <= 2.0));
        checks.push(Check {
            claim: format!("Bbar and Dbar hold at {lo} bits (within 2 points of float)"),
            holds,
            not_planned: None,
            detail: accs
                .iter()
                .zip(["b_bar", "d_bar"])
                .map(|(s, n)| format!("{n} {}", fmt_stat(*s, seeds)))
                .collect::<Vec<_>>()
                .join(", "),
        });
    }

    let mut figures = Vec::new();
    let mut x_values: Vec<f64> = bits
        .iter()
        .chain(&cfg.budget.width_bits)
        .map(|&b| b as f64)
        .collect();
    x_values.sort_by(|a, b| b.total_cmp(a));
    x_values.dedup();
    let chart = LineChart {
        title: format!(
            "PTQ: accuracy vs bits per component — {}",
            plain(&model_title(cfg))
        ),
        x_label: "bits of the one quantized component".into(),
        y_label: "test accuracy (%)".into(),
        x_values,
        series,
        reference: float.map(|f| ("float model".to_string(), f.mean)),
    };
    save_figure(
        &chart,
        res,
        Target::PtqSensitivity.name(),
        fonts,
        &mut figures,
    )?;
    Ok(TargetReport {
        target: Target::PtqSensitivity,
        markdown: md,
        checks,
        summary: serde_json::json!({"float": float, "components": rows, "widths": widths}),
        figures,
    })
}

fn method_name(m: Option<Parameterization>) -> &'static str {
    match m {
        None => "PTQ-static",
        Some(Parameterization::Discrete) => "Discrete",
        Some(Parameterization::Continuous) => "Continuous",
        Some(Parameterization::FrozenA) => "Frozen-A",
    }
}

fn heat_methods() -> [Option<Parameterization>; 4] {
    [
        None,
        Some(HEATMAP_QAT[0]),
        Some(HEATMAP_QAT[1]),
        Some(HEATMAP_QAT[2]),
    ]
}

fn heatmap(res: &Results, cfg: &SweepConfig, fonts: &Fonts) -> Result<TargetReport> {
    let seeds = res.seeds();
    let mut md = String::new();
    let _ = writeln!(
        md,
        "## QAT heatmap — {}\n\nW4A6 (weights, Bbar, Cbar, Dbar 4 bits; activations 6 bits), Abar and \
         the state x swept; test accuracy %, ours (paper, S4D-64h{}). Float: {}.\n",
        model_title(cfg),
        if cfg.model == "s4d-64h" {
            ""
        } else {
            "; the paper shows S4D-64h only"
        },
        float_line(res, cfg)
    );
    // A budget may plan only some state-bit rows (`converged` runs 7 and 6): the tables say so,
    // and checks that need an unplanned row say so rather than wait for runs never made.
    let planned_rows = cfg.budget.heatmap_rows();
    let all_rows = planned_rows.len() == HEATMAP_STATE_BITS.len();
    if !all_rows {
        let _ = writeln!(
            md,
            "The `{}` budget plans state-bit rows {} only; the other rows show the paper's values \
             alone.\n",
            cfg.budget.name,
            join_bits(&planned_rows)
        );
    }
    let mut cells = Vec::new();
    for m in heat_methods() {
        let _ = writeln!(
            md,
            "**{}**\n\n| x bits \\ Abar bits | 6 | 7 | 8 | 16 |\n|---|---:|---:|---:|---:|",
            method_name(m)
        );
        for &s in &HEATMAP_STATE_BITS {
            let _ = write!(md, "| {s} |");
            for &a in &HEATMAP_ABAR_BITS {
                let ours = res.heat(m, s, a);
                let theirs = paper::heatmap_64h(m, s, a);
                let _ = write!(
                    md,
                    " {} ({}) |",
                    fmt_stat(ours, seeds),
                    theirs.map_or("–".into(), |v| format!("{v:.1}"))
                );
                cells.push(serde_json::json!({
                    "method": method_name(m), "state_bits": s, "abar_bits": a,
                    "acc": ours, "paper_64h": theirs,
                }));
            }
            md.push('\n');
        }
        md.push('\n');
    }

    let mut checks = Vec::new();
    let unplanned = |need: &[u32]| {
        let missing: Vec<u32> = need
            .iter()
            .copied()
            .filter(|s| !planned_rows.contains(s))
            .collect();
        (!missing.is_empty()).then(|| {
            format!(
                "the `{}` budget does not plan state-bit row{} {}",
                cfg.budget.name,
                if missing.len() == 1 { "" } else { "s" },
                join_bits(&missing)
            )
        })
    };
    // QAT (best parameterization) beats PTQ-static cell by cell, over the planned rows.
    let mut wins = 0;
    let mut total = 0;
    for &s in &planned_rows {
        for &a in &HEATMAP_ABAR_BITS {
            let best = HEATMAP_QAT
                .iter()
                .filter_map(|&p| res.heat(Some(p), s, a).map(|v| v.mean))
                .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
            if let (Some(q), Some(p)) = (best, res.heat(None, s, a)) {
                total += 1;
                if q > p.mean {
                    wins += 1;
                }
            }
        }
    }
    let planned_cells = planned_rows.len() * HEATMAP_ABAR_BITS.len();
    checks.push(Check {
        claim: format!(
            "QAT recovers what PTQ loses: the best QAT beats PTQ-static in every cell{}",
            if all_rows {
                String::new()
            } else {
                format!(" (planned rows {})", join_bits(&planned_rows))
            }
        ),
        holds: (total == planned_cells).then_some(wins == total),
        not_planned: None,
        detail: format!("{wins} of {total} cells"),
    });
    // Frozen-A is best at low state bits (mean over Abar widths at x = 6 and 7 bits).
    for s in [7, 6] {
        let mean = |p| {
            let v: Vec<f64> = HEATMAP_ABAR_BITS
                .iter()
                .filter_map(|&a| res.heat(Some(p), s, a).map(|x| x.mean))
                .collect();
            (v.len() == 4).then(|| v.iter().sum::<f64>() / 4.0)
        };
        let (f, d, c) = (
            mean(Parameterization::FrozenA),
            mean(Parameterization::Discrete),
            mean(Parameterization::Continuous),
        );
        let holds = match (f, d, c) {
            (Some(f), Some(d), Some(c)) => Some(f > d && f > c),
            _ => None,
        };
        let show = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.1}"));
        checks.push(Check {
            claim: format!(
                "Frozen-A is the best parameterization at {s} state bits (mean over Abar widths)"
            ),
            holds,
            not_planned: unplanned(&[s]),
            detail: format!(
                "frozen-A {}, discrete {}, continuous {}",
                show(f),
                show(d),
                show(c)
            ),
        });
    }
    // PTQ collapses at low Abar / state bits.
    let (hi, lo) = (res.heat(None, 16, 16), res.heat(None, 6, 6));
    checks.push(Check {
        claim: "PTQ-static collapses as Abar and x bits shrink (6x6 far below 16x16)".into(),
        holds: hi.zip(lo).map(|(h, l)| h.mean - l.mean > 20.0),
        not_planned: unplanned(&[16, 6]),
        detail: format!("16x16 {}, 6x6 {}", fmt_stat(hi, seeds), fmt_stat(lo, seeds)),
    });

    let mut figures = Vec::new();
    let panel = |m: Option<Parameterization>, ours: bool| HeatPanel {
        title: method_name(m).into(),
        rows: HEATMAP_STATE_BITS.iter().map(|b| b.to_string()).collect(),
        cols: HEATMAP_ABAR_BITS.iter().map(|b| b.to_string()).collect(),
        values: HEATMAP_STATE_BITS
            .iter()
            .map(|&s| {
                HEATMAP_ABAR_BITS
                    .iter()
                    .map(|&a| {
                        if ours {
                            res.heat(m, s, a).map(|v| v.mean)
                        } else {
                            paper::heatmap_64h(m, s, a)
                        }
                    })
                    .collect()
            })
            .collect(),
    };
    let chart = Heatmap {
        title: format!(
            "QAT W4A6: accuracy over Abar bits x state bits — {}",
            plain(&model_title(cfg))
        ),
        x_label: "Abar bits".into(),
        y_label: "state x bits".into(),
        panel_rows: vec![
            (
                "ours".into(),
                heat_methods().map(|m| panel(m, true)).to_vec(),
            ),
            (
                "paper (S4D-64h)".into(),
                heat_methods().map(|m| panel(m, false)).to_vec(),
            ),
        ],
    };
    save_figure(&chart, res, Target::QatHeatmap.name(), fonts, &mut figures)?;
    let pareto = pareto_chart(res, cfg, Target::QatHeatmap)?;
    save_figure(&pareto, res, "qat-heatmap-pareto", fonts, &mut figures)?;
    Ok(TargetReport {
        target: Target::QatHeatmap,
        markdown: md,
        checks,
        summary: serde_json::json!({"float": res.float(), "cells": cells}),
        figures,
    })
}

/// Accuracy vs memory of every whole-model configuration of `target`.
fn pareto_chart(res: &Results, cfg: &SweepConfig, target: Target) -> Result<Pareto> {
    let dims = ModelDims::from_config(&S4dClassifierConfig::preset(&cfg.model)?);
    let kb = |spec: &QuantSpec| MemoryReport::new(dims, spec).total_bytes() / 1024.0;
    let mut groups = vec!["PTQ".to_string()];
    let mut points = Vec::new();
    let mut add = |label: String, spec: &QuantSpec, stat: Option<Stat>, group: usize| {
        if let Some(s) = stat {
            points.push(ParetoPoint {
                label,
                x: kb(spec),
                y: s.mean,
                yerr: (s.n > 1).then_some(s.std),
                group,
            });
        }
    };
    let specs: Vec<String> = match target {
        Target::Table3 => vec![w4a6(8, 8)],
        _ => HEATMAP_STATE_BITS
            .iter()
            .flat_map(|&s| HEATMAP_ABAR_BITS.iter().map(move |&a| w4a6(a, s)))
            .collect(),
    };
    for name in &specs {
        add(
            format!("PTQ {name}"),
            &QuantSpec::preset(name)?,
            res.ptq(name),
            0,
        );
    }
    let params: Vec<Parameterization> = match target {
        Target::Table3 => vec![cfg.budget.table3_parameterization],
        _ => HEATMAP_QAT.to_vec(),
    };
    let qat_specs: Vec<String> = match target {
        Target::Table3 => table3_qat_specs().iter().map(|s| s.to_string()).collect(),
        _ => specs.clone(),
    };
    for p in params {
        groups.push(format!("QAT {}", param_name(p)));
        let g = groups.len() - 1;
        for name in &qat_specs {
            let label = format!("{name} {}", param_name(p));
            add(label, &QuantSpec::preset(name)?, res.qat(name, p), g);
        }
    }
    let fp_kb = kb(&QuantSpec::fp32());
    Ok(Pareto {
        title: format!("Accuracy vs memory — {}", plain(&model_title(cfg))),
        groups,
        points,
        reference: res.float().map(|f| (fp_kb, f.mean)),
    })
}

fn table3(res: &Results, cfg: &SweepConfig, fonts: &Fonts) -> Result<TargetReport> {
    let seeds = res.seeds();
    let p = cfg.budget.table3_parameterization;
    let paper_rows = paper::table3(&cfg.model);
    let mut md = String::new();
    let _ = writeln!(
        md,
        "## Table III — {}\n\nTest accuracy % (mean ± std over seeds) and memory savings vs FP32 \
         (our counting, `crates/qat/src/memory.rs`); QAT rows use the {} parameterization.\n\n\
         | setting | spec | acc. % (ours) | acc. % (paper) | memory savings % (ours) | memory savings % (paper) | gap to paper (pts) | within the two seed spreads |\n\
         |---|---|---:|---:|---:|---:|---:|---|",
        model_title(cfg),
        param_name(p)
    );
    let [t3_w8a8, t3_16, t3_8, t3_6] = table3_qat_specs();
    let rows: [(&str, Option<&str>, Option<Stat>); 6] = [
        ("FP", None, res.float()),
        ("PTQ W4A6, Abar 8x8", Some(t3_8), res.ptq(t3_8)),
        ("QAT W8A8", Some(t3_w8a8), res.qat(t3_w8a8, p)),
        ("QAT W4A6, Abar 16x16", Some(t3_16), res.qat(t3_16, p)),
        ("QAT W4A6, Abar 8x8", Some(t3_8), res.qat(t3_8, p)),
        ("QAT W4A6, Abar 6x6", Some(t3_6), res.qat(t3_6, p)),
    ];
    let mut summary = Vec::new();
    for (i, (setting, spec, stat)) in rows.iter().enumerate() {
        let savings = match spec {
            Some(s) => Some(cfg.savings(&QuantSpec::preset(s)?)?),
            None => None,
        };
        let paper_row = paper_rows.map(|r| r[i]);
        let gap = stat
            .zip(paper_row)
            .map(|(o, r)| gap_to_paper(o, r.acc, r.std));
        let _ = writeln!(
            md,
            "| {setting} | {} | {} | {} | {} | {} | {} | {} |",
            spec.unwrap_or("fp32"),
            fmt_stat(*stat, seeds),
            paper_row.map_or("–".into(), |r| format!("{:.2} ± {:.2}", r.acc, r.std)),
            savings.map_or("–".into(), |s| format!("{s:.2}")),
            paper_row
                .and_then(|r| r.savings)
                .map_or("–".into(), |s| format!("{s:.2}")),
            gap.map_or("–".into(), |(g, _)| format!("{g:+.2}")),
            gap.map_or("–", |(_, within)| if within { "yes" } else { "no" }),
        );
        summary.push(serde_json::json!({
            "setting": setting, "spec": spec, "acc": stat, "savings": savings,
            "gap_to_paper": gap.map(|(g, _)| g), "within_spreads": gap.map(|(_, w)| w),
            "paper_acc": paper_row.map(|r| r.acc), "paper_std": paper_row.map(|r| r.std),
            "paper_savings": paper_row.and_then(|r| r.savings),
        }));
    }
    let acc = |i: usize| rows[i].2.map(|s| s.mean);
    let mut checks = Vec::new();
    checks.push(Check {
        claim: "PTQ W4A6 Abar 8x8 collapses (more than 20 points below FP)".into(),
        holds: acc(0).zip(acc(1)).map(|(f, q)| f - q > 20.0),
        not_planned: None,
        detail: format!(
            "FP {}, PTQ {}",
            fmt_stat(rows[0].2, seeds),
            fmt_stat(rows[1].2, seeds)
        ),
    });
    checks.push(Check {
        claim: "QAT recovers: QAT W4A6 Abar 8x8 beats PTQ W4A6 Abar 8x8".into(),
        holds: acc(4).zip(acc(1)).map(|(q, p)| q > p),
        not_planned: None,
        detail: format!(
            "QAT {}, PTQ {}",
            fmt_stat(rows[4].2, seeds),
            fmt_stat(rows[1].2, seeds)
        ),
    });
    checks.push(Check {
        claim: "QAT W4A6 accuracy falls with Abar/x bits: 16x16 > 8x8 > 6x6".into(),
        holds: match (acc(3), acc(4), acc(5)) {
            (Some(a), Some(b), Some(c)) => Some(a > b && b > c),
            _ => None,
        },
        not_planned: None,
        detail: format!(
            "{} / {} / {}",
            fmt_stat(rows[3].2, seeds),
            fmt_stat(rows[4].2, seeds),
            fmt_stat(rows[5].2, seeds)
        ),
    });
    let mut figures = Vec::new();
    let pareto = pareto_chart(res, cfg, Target::Table3)?;
    save_figure(&pareto, res, "table3-pareto", fonts, &mut figures)?;
    Ok(TargetReport {
        target: Target::Table3,
        markdown: md,
        checks,
        summary: serde_json::json!({ "rows": summary }),
        figures,
    })
}

/// Our mean minus the paper's, and whether that gap is no larger than the two seed spreads
/// together (our std + the paper's std): a gap inside it is not evidence of a difference.
fn gap_to_paper(ours: Stat, paper_acc: f64, paper_std: f64) -> (f64, bool) {
    let gap = ours.mean - paper_acc;
    (gap, gap.abs() <= ours.std + paper_std)
}

/// Markdown title text without backticks, for figure titles.
fn plain(s: &str) -> String {
    s.replace('`', "")
}

/// A short description of the machine: CPU model, cores, memory.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(String::new(), |kb| {
            format!(", {:.0} GiB RAM", kb / 1024.0 / 1024.0)
        });
    format!("{cpu}, {cores} cores{mem}")
}

/// One invocation of `reproduce` that worked on a target, from the event log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Invocation {
    /// The command line.
    pub command: String,
    /// Its shard.
    pub shard: String,
    /// Wall time of its sweep (s), when it ended normally.
    pub seconds: Option<f64>,
    /// Runs of the target it computed (started or resumed, and finished).
    pub computed: usize,
}

/// What the event log says about `target`: the invocations that planned it, and the compute
/// time summed over the runs in `ids` (each run's finishing attempt).
pub fn provenance(events: &Path, target: Target, ids: &BTreeSet<&str>) -> (Vec<Invocation>, f64) {
    let Ok(text) = std::fs::read_to_string(events) else {
        return (Vec::new(), 0.0);
    };
    let mut invocations: Vec<Invocation> = Vec::new();
    let mut open: BTreeMap<(String, u64), usize> = BTreeMap::new();
    let mut run_seconds: BTreeMap<String, f64> = BTreeMap::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let who = (
            v["host"].as_str().unwrap_or("").to_string(),
            v["pid"].as_u64().unwrap_or(0),
        );
        match v["event"].as_str() {
            Some("invocation") => {
                open.remove(&who);
                let planned = v["targets"]
                    .as_array()
                    .is_none_or(|t| t.iter().any(|t| t.as_str() == Some(target.name())));
                if planned && let Some(cmd) = v["command"].as_str() {
                    open.insert(who, invocations.len());
                    invocations.push(Invocation {
                        command: cmd.to_string(),
                        shard: v["shard"].as_str().unwrap_or("0/1").to_string(),
                        seconds: None,
                        computed: 0,
                    });
                }
            }
            Some("done") => {
                let run = v["run"].as_str().unwrap_or("");
                if ids.contains(run) {
                    if let Some(s) = v["seconds"].as_f64() {
                        run_seconds.insert(run.to_string(), s);
                    }
                    if let Some(&i) = open.get(&who) {
                        invocations[i].computed += 1;
                    }
                }
            }
            Some("sweep_end") => {
                if let Some(i) = open.remove(&who) {
                    invocations[i].seconds = v["seconds"].as_f64();
                }
            }
            _ => {}
        }
    }
    (invocations, run_seconds.values().sum())
}

/// The report header of `target`: the commands with their wall times, the machine, progress
/// and the budget, so a table can be traced to how it was made.
fn header(cfg: &SweepConfig, layout: &Layout, target: Target, res: &Results) -> Result<String> {
    let tplan = cfg.plan(&[target])?;
    let ids: BTreeSet<&str> = tplan.iter().map(|r| r.id.as_str()).collect();
    let done = ids
        .iter()
        .filter(|id| res.outcomes.contains_key(**id))
        .count();
    let (invocations, compute) = provenance(&layout.events(), target, &ids);
    let b = &cfg.budget;
    let limit = |l: Option<usize>| l.map_or("all".to_string(), |n| n.to_string());
    let mut h = format!(
        "# {} on {} (`{}` budget)\n\n",
        cfg.model, cfg.dataset, b.name
    );
    for inv in &invocations {
        let wall = inv.seconds.map_or("interrupted".to_string(), |s| {
            format!("wall time {s:.0} s ({:.1} min)", s / 60.0)
        });
        let _ = writeln!(
            h,
            "- command: `{}` (shard {}; {wall}; computed {} of this target's runs)",
            inv.command, inv.shard, inv.computed
        );
    }
    let _ = writeln!(
        h,
        "- machine: {}\n- runs finished: {done} of {}; compute time summed over them {:.0} s \
         ({:.1} min, shared float runs included)",
        machine(),
        ids.len(),
        compute,
        compute / 60.0
    );
    let _ = writeln!(
        h,
        "- budget `{}`: float {} epochs on {} training sequences (batch {}); QAT {} epoch(s) on \
         {} sequences (batch {}, lr {}); calibration on {} sequences; evaluation on {} test \
         sequences",
        b.name,
        b.float_epochs,
        limit(b.float_train_limit),
        b.float_batch_size,
        b.qat_epochs,
        limit(b.qat_train_limit),
        b.qat_batch_size,
        b.qat_lr,
        b.calib_samples,
        limit(b.test_limit),
    );
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reproduce::plan::Budget;

    #[test]
    fn stats_and_formatting() {
        let s = Stat::of(&[1.0, 2.0, 3.0]).unwrap();
        assert_eq!((s.mean, s.n), (2.0, 3));
        assert!((s.std - 1.0).abs() < 1e-12);
        assert_eq!(Stat::of(&[5.0]).unwrap().std, 0.0);
        assert!(Stat::of(&[]).is_none());
        assert_eq!(fmt_stat(Some(s), 3), "2.00 ± 1.00");
        assert_eq!(fmt_stat(Some(s), 5), "2.00 ± 1.00 (n=3)");
        assert_eq!(fmt_stat(None, 3), "–");
    }

    #[test]
    fn provenance_pairs_commands_with_their_wall_time() {
        let path = std::env::temp_dir().join(format!("s4q-prov-{}.jsonl", std::process::id()));
        let lines = [
            r#"{"event":"invocation","command":"experiments reproduce table3","targets":["table3"],"host":"h","pid":1,"shard":"0/1"}"#,
            r#"{"event":"done","run":"float-s0","seconds":10.0,"host":"h","pid":1}"#,
            r#"{"event":"done","run":"ptq-x-s0","seconds":2.5,"host":"h","pid":1}"#,
            r#"{"event":"invocation","command":"experiments reproduce qat-heatmap","targets":["qat-heatmap"],"host":"h","pid":2,"shard":"0/1"}"#,
            r#"{"event":"done","run":"other","seconds":99.0,"host":"h","pid":2}"#,
            r#"{"event":"sweep_end","seconds":13.0,"host":"h","pid":1}"#,
            r#"{"event":"sweep_end","seconds":99.5,"host":"h","pid":2}"#,
        ];
        std::fs::write(&path, lines.join("\n")).unwrap();
        let ids: BTreeSet<&str> = ["float-s0", "ptq-x-s0"].into_iter().collect();
        let (inv, compute) = provenance(&path, Target::Table3, &ids);
        assert_eq!(inv.len(), 1);
        assert_eq!(inv[0].command, "experiments reproduce table3");
        assert_eq!((inv[0].seconds, inv[0].computed), (Some(13.0), 2));
        assert_eq!(compute, 12.5);
        let _ = std::fs::remove_file(&path);
    }

    fn write_result(layout: &Layout, run: &RunSpec, value: serde_json::Value) {
        let dir = layout.run_dir(&run.id);
        std::fs::create_dir_all(&dir).unwrap();
        write_json(&dir.join("run.json"), run).unwrap();
        write_json(&dir.join("result.json"), &value).unwrap();
    }

    /// Table III from hand-written run results: the mean and std over seeds, the paper column
    /// and the checks come out as computed by hand.
    #[test]
    fn table3_from_run_directories() {
        let root = std::env::temp_dir().join(format!("s4q-agg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let cfg = SweepConfig {
            model: "s4d-16h".into(),
            dataset: datasets::DatasetName::Embedded,
            seeds: 2,
            budget: Budget::tiny(),
        };
        let plan = cfg.plan(&[Target::Table3]).unwrap();
        let layout = Layout { root: root.clone() };
        for run in &plan {
            let bump = run.seed as f64; // seed 0 and 1 differ by one point
            let v = match &run.job {
                Job::Float { .. } => serde_json::json!({
                    "test_acc": 96.0 + bump, "test_loss": 0.1, "best_test_acc": 97.0,
                    "epochs": 1, "train_samples": 1, "test_samples": 1, "train_seconds": 1.0,
                    "device": "x"}),
                Job::Ptq { spec_name, .. } => serde_json::json!({
                    "spec": spec_name, "accuracy": 30.0 + bump, "savings": 80.0,
                    "test_samples": 1, "seconds": 1.0}),
                Job::Qat {
                    spec_name,
                    parameterization,
                    ..
                } => {
                    let acc = match spec_name.as_str() {
                        "w8a8" => 93.0,
                        "w4a6-a16x16" => 95.0,
                        "w4a6-a8x8" => 88.0,
                        _ => 60.0,
                    } + bump;
                    serde_json::json!({
                        "spec": spec_name, "parameterization": parameterization,
                        "float_acc": 96.0, "ptq_acc": 30.0, "qat_acc": acc, "epochs": 1,
                        "train_samples": 1, "test_samples": 1, "train_seconds": 1.0})
                }
            };
            // Leave one QAT run of seed 1 unfinished.
            if run.id == "qat-w4a6-a6x6-frozen-a-s1" {
                continue;
            }
            write_result(&layout, run, v);
        }
        let reports = aggregate(&cfg, &plan, &layout, &[Target::Table3], &Fonts::none()).unwrap();
        let md = &reports[0].markdown;
        assert!(
            md.contains("| FP | fp32 | 96.50 ± 0.71 | 97.20 ± 0.25 | – | – |"),
            "{md}"
        );
        assert!(
            md.contains("| QAT W4A6, Abar 6x6 | w4a6-a6x6 | 60.00 (n=1) | 57.04 ± 3.13 |"),
            "{md}"
        );
        // FP: 96.50 - 97.20 = -0.70, inside 0.71 + 0.25; QAT W4A6 16x16: 95.50 - 96.59 =
        // -1.09 (paper S4D-16h), outside 0.71 + 0.30.
        assert!(md.contains("| -0.70 | yes |"), "{md}");
        let a16 = md
            .lines()
            .find(|l| l.starts_with("| QAT W4A6, Abar 16x16 |"))
            .unwrap();
        assert!(a16.ends_with("| -1.09 | no |"), "{a16}");
        let holds: Vec<Option<bool>> = reports[0].checks.iter().map(|c| c.holds).collect();
        assert_eq!(holds, vec![Some(true), Some(true), Some(true)]);
        assert!(root.join("table3.md").exists());
        let summary: serde_json::Value = read_json(&root.join("table3.json")).unwrap();
        assert_eq!(summary["runs_done"], plan.len() - 1);
        assert!(root.join("table3-pareto.svg").exists());
        let _ = std::fs::remove_dir_all(&root);
    }

    /// A budget that plans heatmap rows 7 and 6 only (as `converged` does): with all its runs
    /// finished, the checks on those rows are decided, and the check that needs row 16 says the
    /// budget does not plan it instead of waiting for runs that will never exist.
    #[test]
    fn heatmap_with_partial_rows_decides_what_it_plans() {
        let root = std::env::temp_dir().join(format!("s4q-agg-rows-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let mut budget = Budget::tiny();
        budget.heatmap_state_bits = Some(vec![7, 6]);
        let cfg = SweepConfig {
            model: "s4d-16h".into(),
            dataset: datasets::DatasetName::Embedded,
            seeds: 1,
            budget,
        };
        let plan = cfg.plan(&[Target::QatHeatmap]).unwrap();
        let layout = Layout { root: root.clone() };
        for run in &plan {
            let v = match &run.job {
                Job::Float { .. } => serde_json::json!({
                    "test_acc": 96.0, "test_loss": 0.1, "best_test_acc": 96.0,
                    "epochs": 1, "train_samples": 1, "test_samples": 1, "train_seconds": 1.0,
                    "device": "x"}),
                Job::Ptq { spec_name, .. } => serde_json::json!({
                    "spec": spec_name, "accuracy": 20.0, "savings": 80.0,
                    "test_samples": 1, "seconds": 1.0}),
                Job::Qat {
                    spec_name,
                    parameterization,
                    ..
                } => {
                    // Frozen-A leads every cell by one point over discrete and continuous.
                    let acc = if *parameterization == Parameterization::FrozenA {
                        91.0
                    } else {
                        90.0
                    };
                    serde_json::json!({
                        "spec": spec_name, "parameterization": parameterization,
                        "float_acc": 96.0, "ptq_acc": 20.0, "qat_acc": acc, "epochs": 1,
                        "train_samples": 1, "test_samples": 1, "train_seconds": 1.0})
                }
            };
            write_result(&layout, run, v);
        }
        let reports =
            aggregate(&cfg, &plan, &layout, &[Target::QatHeatmap], &Fonts::none()).unwrap();
        let checks = &reports[0].checks;
        let holds: Vec<Option<bool>> = checks.iter().map(|c| c.holds).collect();
        assert_eq!(holds, vec![Some(true), Some(true), Some(true), None]);
        assert_eq!(checks[0].detail, "8 of 8 cells");
        assert!(checks[0].claim.ends_with("(planned rows 7 and 6)"));
        assert_eq!(
            checks[3].not_planned.as_deref(),
            Some("the `tiny` budget does not plan state-bit row 16")
        );
        let md = &reports[0].markdown;
        assert!(!md.contains("runs missing"), "{md}");
        assert!(md.contains("plans state-bit rows 7 and 6 only"), "{md}");
        // The JSON summary still lists every cell of the grid, planned or not.
        let cells = reports[0].summary["cells"].as_array().expect("cells");
        assert_eq!(cells.len(), 4 * 4 * 4);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn bit_lists_read_as_prose() {
        assert_eq!(join_bits(&[6]), "6");
        assert_eq!(join_bits(&[7, 6]), "7 and 6");
        assert_eq!(join_bits(&[16, 8, 7]), "16, 8 and 7");
    }
}
