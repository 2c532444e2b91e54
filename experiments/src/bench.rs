//! `experiments bench`: throughput of float and QAT training and of inference per backend,
//! with ratios against the PyTorch peer measured on the same machine (shared/bench/peer_torch).
//!
//! Every figure is a median over timed repeats after warm-up, on random sMNIST-shaped data.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;
use burn::tensor::Distribution;
use clap::Args;
use serde::Serialize;
use tracing::info;

use crate::checkpoint::write_json;
use crate::device::DeviceName;
use qat::{Parameterization, QuantSpec, QuantizedClassifier, calibrate};
use s4d_model::{S4dClassifierConfig, SsmMode};

/// Options of `experiments bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Model presets to measure.
    #[arg(long, value_delimiter = ',', default_value = "s4d-16h,s4d-64h")]
    models: Vec<String>,
    /// Backends to measure.
    #[arg(long, value_delimiter = ',', default_value = "flex,ndarray")]
    devices: Vec<DeviceName>,
    #[arg(long, default_value_t = 64)]
    batch: usize,
    #[arg(long, default_value_t = 784)]
    len: usize,
    /// Timed repeats per case (after one warm-up).
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Quantization spec of the QAT train-step case (the peer quantizes to 8 bits).
    #[arg(long, default_value = "w8a8")]
    qat_spec: String,
    /// Skip the QAT train-step case (it dominates the run time on slow backends).
    #[arg(long)]
    no_qat: bool,
    /// Only these cases (default: all), e.g. to profile one of them.
    #[arg(long, value_enum, value_delimiter = ',')]
    cases: Vec<BenchCase>,
    /// PyTorch peer results (bench.py --out) to compute ratios against.
    #[arg(long)]
    peer: Option<PathBuf>,
    /// Write the results as JSON here.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// The measured cases, named as in the results table.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
#[value(rename_all = "snake_case")]
pub enum BenchCase {
    /// Float training step in convolution mode.
    ConvTrainStep,
    /// QAT training step in recurrent mode.
    QatTrainStep,
    /// The fused scan kernel alone, forward and backward (8-bit state).
    ScanKernelFwdBwd,
    /// The fused scan kernel alone, forward keeping checkpoints (8-bit state).
    ScanKernelFwd,
    /// The fused scan kernel alone, float forward as inference runs it.
    ScanKernelInfer,
    /// Float inference in recurrent mode.
    RecurrentInference,
    /// Float inference in convolution mode.
    ConvInference,
}

impl BenchArgs {
    fn wants(&self, case: BenchCase) -> bool {
        let listed = self.cases.is_empty() || self.cases.contains(&case);
        listed && !(case == BenchCase::QatTrainStep && self.no_qat)
    }
}

#[derive(Debug, Serialize)]
struct Case {
    model: String,
    device: String,
    case: &'static str,
    median_s: f64,
    samples_per_s: f64,
    us_per_step_per_sample: f64,
    peer_samples_per_s: Option<f64>,
    ratio_vs_peer: Option<f64>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn time_it(repeats: usize, mut f: impl FnMut()) -> f64 {
    f(); // warm-up
    median(
        (0..repeats.max(1))
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

/// The peer's samples/s for `model` and case key (`a_conv_train`, `c_rec_infer`, `d_conv_infer`).
fn peer_value(peer: &serde_json::Value, model: &str, key: &str) -> Option<f64> {
    let heads = model.trim_start_matches("s4d-").trim_end_matches('h');
    peer.get("results")?
        .get(format!("H{heads}"))?
        .get(key)?
        .get("samples_per_s")?
        .as_f64()
}

/// Host buffers shaped like a model's first layer for timing the fused scan kernel alone.
struct ScanProblem {
    dims: s4d_model::scan_kernel::ScanDims,
    mats: [Vec<f32>; 7],
    scale: Vec<f32>,
    zero: Vec<f32>,
    u: Vec<f32>,
}

/// What one timed call of the scan kernel does.
#[derive(Clone, Copy)]
enum ScanPass {
    /// Float forward without checkpoints: the scan of recurrent inference.
    FloatForward,
    /// 8-bit clamped state, forward keeping checkpoints: the scan of a QAT forward.
    QuantForward,
    /// The same forward, then the backward pass: the scan of a QAT train step.
    QuantForwardBackward,
}

impl ScanProblem {
    fn new(cfg: &S4dClassifierConfig, batch: usize, len: usize) -> Self {
        use s4d_model::scan_kernel::{ScanDims, ScanLayout};
        let (heads, modes) = (cfg.ssm.d_model, cfg.ssm.d_state / 2);
        let wave =
            |n: usize, k: f32| -> Vec<f32> { (0..n).map(|i| (i as f32 * k).sin()).collect() };
        let hm = heads * modes;
        let a_re = wave(hm, 0.37).iter().map(|v| 0.5 + 0.4 * v).collect();
        Self {
            dims: ScanDims {
                batch,
                heads,
                len,
                modes,
                layout: ScanLayout::TimeMajor, // the model's layout, as the layer calls it
            },
            mats: [
                a_re,
                wave(hm, 0.11),
                wave(hm, 0.5),
                wave(hm, 0.7),
                wave(hm, 0.3),
                wave(hm, 0.9),
                wave(heads, 0.2),
            ],
            scale: vec![0.02; heads],
            zero: vec![128.0; heads],
            u: wave(batch * heads * len, 0.013),
        }
    }

    fn run(&self, pass: ScanPass) {
        use s4d_model::StateGrid;
        use s4d_model::scan_kernel::{ScanMatrices, StateQuantizer, scan_backward, scan_forward};
        let m = ScanMatrices::from_vecs(&self.mats);
        let q = StateQuantizer {
            grid: StateGrid {
                qmin: 0.0,
                qmax: 255.0,
                clamp: Some(50.0),
            },
            scale: &self.scale,
            zero_point: &self.zero,
            learn_scale: false, // as in QAT with calibrated ranges
        };
        match pass {
            ScanPass::FloatForward => {
                std::hint::black_box(scan_forward(self.dims, &m, None, &self.u, false));
            }
            ScanPass::QuantForward => {
                std::hint::black_box(scan_forward(self.dims, &m, Some(&q), &self.u, true));
            }
            ScanPass::QuantForwardBackward => {
                let out = scan_forward(self.dims, &m, Some(&q), &self.u, true);
                let grads =
                    scan_backward(self.dims, &m, Some(&q), &self.u, &out.checkpoints, &out.y);
                std::hint::black_box(grads);
            }
        }
    }
}

/// Runs the benchmark matrix and prints a Markdown table.
pub fn run_bench(args: &BenchArgs) -> Result<()> {
    let peer: Option<serde_json::Value> = match &args.peer {
        Some(p) => Some(
            crate::checkpoint::read_json(p)
                .with_context(|| format!("peer results {}", p.display()))?,
        ),
        None => None,
    };
    let mut cases = Vec::new();
    for model_name in &args.models {
        let cfg = S4dClassifierConfig::preset(model_name)?;
        for dev_name in &args.devices {
            let device = dev_name.device()?;
            device.seed(0);
            let (b, l) = (args.batch, args.len);
            let mut push = |case: &'static str, key: &str, secs: f64| {
                let sps = b as f64 / secs;
                let peer_sps = peer.as_ref().and_then(|p| peer_value(p, model_name, key));
                info!(model = model_name.as_str(), device = ?dev_name, case, samples_per_s = format!("{sps:.1}"), "measured");
                cases.push(Case {
                    model: model_name.clone(),
                    device: format!("{dev_name:?}").to_lowercase(),
                    case,
                    median_s: secs,
                    samples_per_s: sps,
                    us_per_step_per_sample: secs * 1e6 / (b * l) as f64,
                    peer_samples_per_s: peer_sps,
                    ratio_vs_peer: peer_sps.map(|p| sps / p),
                });
            };

            // (a) float train step in convolution mode: forward, backward, AdamW update.
            let ad = device.clone().autodiff();
            let mut model = cfg.init(&ad);
            let mut optim = AdamWConfig::new().init();
            let loss_fn = CrossEntropyLossConfig::new().init(&ad);
            let x = Tensor::<3>::random([b, l, 1], Distribution::Uniform(0.0, 1.0), &ad);
            let y = Tensor::<1, Int>::random([b], Distribution::Uniform(0.0, 10.0), &ad);
            if args.wants(BenchCase::ConvTrainStep) {
                let secs = time_it(args.repeats, || {
                    let loss =
                        loss_fn.forward(model.forward(x.clone(), SsmMode::Convolution), y.clone());
                    let grads = GradientsParams::from_grads(loss.backward(), &model);
                    model = optim.step(1e-3, model.clone(), grads);
                    let _ = ad.sync();
                });
                push("conv_train_step", "a_conv_train", secs);
            }

            // (b) QAT train step in recurrent mode: fake-quantized weights, activations and
            // state (clamped, 8 bits, after every step), STE backward, AdamW update.
            if args.wants(BenchCase::QatTrainStep) {
                let spec = QuantSpec::preset(&args.qat_spec)?;
                let mut qmodel = QuantizedClassifier::from_float(
                    model.clone(),
                    spec,
                    Parameterization::Continuous,
                )?;
                // Calibrate an inference copy and load its ranges, as `experiments qat`
                // does: calibrating the autodiff model itself would leave a graph of
                // never-differentiated nodes that burn's graph bookkeeping then walks at
                // every timed step (half the step time, measured with perf).
                let mut plain = qmodel.valid();
                calibrate(&mut plain, [x.clone().inner()])?;
                qmodel.load_quant_state(&plain.quant_state()?)?;
                let mut qoptim = AdamWConfig::new().init();
                let secs = time_it(args.repeats, || {
                    let logits = qmodel.forward(x.clone()).expect("calibrated above");
                    let loss = loss_fn.forward(logits, y.clone());
                    let grads = GradientsParams::from_grads(loss.backward(), &qmodel);
                    qmodel = qoptim.step(1e-4, qmodel.clone(), grads);
                    let _ = ad.sync();
                });
                push("qat_train_step", "b_qat_rec_train", secs);
            }

            // (e) the fused scan kernel alone, the part of (b) and (c) that issue 4's kernel
            // replaces: QAT's forward + backward and forward alone (8-bit state, checkpoints
            // kept), and inference's float forward.
            let scan = std::cell::OnceCell::new();
            for (case, name, pass) in [
                (
                    BenchCase::ScanKernelFwdBwd,
                    "scan_kernel_fwd_bwd",
                    ScanPass::QuantForwardBackward,
                ),
                (
                    BenchCase::ScanKernelFwd,
                    "scan_kernel_fwd",
                    ScanPass::QuantForward,
                ),
                (
                    BenchCase::ScanKernelInfer,
                    "scan_kernel_infer",
                    ScanPass::FloatForward,
                ),
            ] {
                if args.wants(case) {
                    let scan = scan.get_or_init(|| ScanProblem::new(&cfg, b, l));
                    push(name, "-", time_it(args.repeats, || scan.run(pass)));
                }
            }

            // (c) recurrent inference and (d) convolution inference, no autodiff.
            let model = model.valid();
            let x = x.inner();
            if args.wants(BenchCase::RecurrentInference) {
                let secs = time_it(args.repeats, || {
                    let _ = model.forward(x.clone(), SsmMode::Recurrent).into_data();
                });
                push("recurrent_inference", "c_rec_infer", secs);
            }
            if args.wants(BenchCase::ConvInference) {
                let secs = time_it(args.repeats, || {
                    let _ = model.forward(x.clone(), SsmMode::Convolution).into_data();
                });
                push("conv_inference", "d_conv_infer", secs);
            }
        }
    }
    println!("| model | device | case | samples/s | µs/step/sample | PyTorch samples/s | ratio |");
    println!("|---|---|---|---|---|---|---|");
    for c in &cases {
        println!(
            "| {} | {} | {} | {:.1} | {:.3} | {} | {} |",
            c.model,
            c.device,
            c.case,
            c.samples_per_s,
            c.us_per_step_per_sample,
            c.peer_samples_per_s
                .map_or("-".into(), |v| format!("{v:.1}")),
            c.ratio_vs_peer.map_or("-".into(), |v| format!("{v:.2}x")),
        );
    }
    if let Some(out) = &args.out {
        write_json(
            out,
            &serde_json::json!({
                "batch": args.batch,
                "len": args.len,
                "repeats": args.repeats,
                "threads": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
                "cases": cases,
            }),
        )?;
    }
    Ok(())
}
