//! Integer-only deployment: `experiments export --format runtime|c` and
//! `experiments deploy-check`.
//!
//! Both start from a quantized model: a QAT output directory (`model.json`,
//! `quant_state.json`, `qmodel.bpk`), or a float run plus `--spec` (calibrated here exactly as
//! `experiments ptq` calibrates). The model becomes a `qat::integer::IntegerModel`, whose
//! logits on the first `--golden` test sequences are the golden outputs that the runtime, the
//! host C build and the Cortex-M4 build must reproduce byte for byte.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use clap::Args;
use datasets::{DatasetName, SequenceDataset};
use qat::integer::{IntegerModel, first_argmax, format_logits};
use qat::{Parameterization, QuantSpec, QuantizedClassifier, calibrate};
use s4q_train::{Preprocess, RunKind, RunManifest, calibration_batches};
use serde::Serialize;
use tracing::info;

use crate::checkpoint::{load_classifier, read_json, save_module, write_atomic, write_json};
use crate::data::DataConfig;
use crate::data::make_batch;
use crate::quant::load_quantized;

/// Where the quantized model comes from (shared by `export --format runtime|c` and
/// `deploy-check`).
#[derive(Args, Debug, Clone)]
pub struct DeploySource {
    /// With a float run as --run: quantize it post-training with this spec (preset or file)
    /// instead of loading a QAT checkpoint.
    #[arg(long)]
    pub spec: Option<String>,
    /// PTQ calibration: training batches of --calib-batch-size sequences.
    #[arg(long, default_value_t = 4)]
    pub calib_batches: usize,
    /// PTQ calibration batch size.
    #[arg(long, default_value_t = 100)]
    pub calib_batch_size: usize,
    /// Dataset of the golden/test sequences (default: the float run's).
    #[arg(long)]
    pub dataset: Option<DatasetName>,
    /// Directory holding fetched datasets.
    #[arg(long, default_value = "data")]
    pub data_root: PathBuf,
    /// Golden test sequences exported with the model (the first N of the test split).
    #[arg(long, default_value_t = 100)]
    pub golden: usize,
    /// Also save the PTQ-calibrated model as a quantized checkpoint directory here.
    #[arg(long)]
    pub save_quantized: Option<PathBuf>,
    /// Export only: take the --golden sequences' input codes from this file (a previous
    /// export's `golden_inputs.bin`, `golden x L x d_input` bytes) instead of the test split,
    /// so a committed export re-runs without the dataset.
    #[arg(long)]
    pub golden_inputs: Option<PathBuf>,
}

/// Options of `experiments deploy-check`.
#[derive(Args, Debug)]
pub struct DeployCheckArgs {
    /// A QAT output directory, or a float run directory with --spec.
    #[arg(long)]
    run: PathBuf,
    #[command(flatten)]
    source: DeploySource,
    /// Test sequences compared (the first N).
    #[arg(long, default_value_t = 2000)]
    test_limit: usize,
    /// Batch size of the fake-quant evaluation.
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// Write the comparison as JSON here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also run the fake-quant model on the composed tensor ops and report how often its
    /// predictions match the fused kernels': two float32 renderings of one model, the floor
    /// that integer agreement can be judged against.
    #[arg(long)]
    floor: bool,
    /// Also compare the output codes of every block prefix (blocks 0..=k of a deep model, as a
    /// model of its own) step by step, to find the block where integer and fake quant part.
    #[arg(long)]
    trace_blocks: bool,
}

struct Loaded {
    model: QuantizedClassifier,
    /// The run's data (named set or files), with `--dataset` / `--data-root` applied.
    data: DataConfig,
    /// The run's preprocessing: the scaling applied before the input quantizer, class names.
    preprocess: Preprocess,
    description: String,
}

impl Loaded {
    /// The data's name for reports.
    fn data_label(&self) -> String {
        self.data.label()
    }
}

/// The data and preprocessing of `run` (its manifest, or a legacy run's), with the command
/// line's `--dataset` and `--data-root` applied.
fn run_data(run: &Path, src: &DeploySource) -> Result<(DataConfig, Preprocess)> {
    let manifest = match (RunManifest::load(run), src.dataset) {
        (Ok(m), _) => m,
        // A legacy run whose float run is not where its config says: a named --dataset is
        // enough (raw pixel inputs, classes named by index, as such runs were trained).
        (Err(e), Some(d)) => {
            let model: s4d_model::S4dClassifierConfig =
                read_json(&run.join("model.json")).with_context(|| format!("{e:#}"))?;
            let p = Preprocess::identity(model.d_input, model.n_classes);
            RunManifest::new(RunKind::Ptq, &model, &DataConfig::named(d), &p)
        }
        (Err(e), None) => return Err(e),
    };
    let mut data = manifest.data;
    if let Some(d) = src.dataset {
        data.dataset = Some(d);
        data.files = None;
    }
    data.root = src.data_root.clone();
    Ok((data, manifest.preprocess))
}

fn load_source(run: &Path, src: &DeploySource, device: &Device) -> Result<Loaded> {
    if run.join("quant_state.json").exists() {
        if src.spec.is_some() {
            bail!("{} is already quantized; drop --spec", run.display());
        }
        let model = load_quantized(run, device)
            .with_context(|| format!("loading quantized checkpoint {}", run.display()))?;
        let (data, preprocess) = run_data(run, src)?;
        return Ok(Loaded {
            model,
            data,
            preprocess,
            description: format!("quantized checkpoint {}", run.display()),
        });
    }
    let Some(spec_name) = &src.spec else {
        bail!(
            "{} has no quant_state.json: pass --spec to quantize this float run (PTQ)",
            run.display()
        );
    };
    let (data, preprocess) = run_data(run, src)?;
    let float = load_classifier(run, device)?;
    let spec = QuantSpec::load(spec_name)?;
    let mut model = QuantizedClassifier::from_float(float, spec, Parameterization::Continuous)?;
    let calib = DataConfig {
        test_limit: Some(1),
        ..data.clone()
    }
    .prepare_with(Some(&preprocess))?;
    let batches = calibration_batches(
        &calib.train,
        src.calib_batches,
        src.calib_batch_size,
        device,
    );
    calibrate(&mut model, batches)?;
    if let Some(dir) = &src.save_quantized {
        write_json(
            &dir.join("model.json"),
            &read_json::<serde_json::Value>(&run.join("model.json"))?,
        )?;
        model.save_quant_state_json(&dir.join("quant_state.json"))?;
        save_module(&model, &dir.join("qmodel.bpk"))?;
        write_json(
            &dir.join("qat_config.json"),
            &serde_json::json!({
                "float_run": run, "spec": spec_name, "ptq_only": true,
                "calib_batches": src.calib_batches, "calib_batch_size": src.calib_batch_size,
            }),
        )?;
        let mut manifest = RunManifest::load(run)?;
        manifest.kind = RunKind::Ptq;
        manifest.parent = Some(run.to_path_buf());
        manifest.save(dir)?;
        info!("saved the PTQ model to {}", dir.display());
    }
    Ok(Loaded {
        model,
        data,
        preprocess,
        description: format!(
            "PTQ of {} with {spec_name} ({} calibration batches of {})",
            run.display(),
            src.calib_batches,
            src.calib_batch_size
        ),
    })
}

/// The first `limit` test sequences of the run's data, scaled with the run's preprocessing.
fn test_split(loaded: &Loaded, limit: usize) -> Result<SequenceDataset> {
    let data = DataConfig {
        test_limit: Some(limit),
        valid_fraction: None,
        ..loaded.data.clone()
    };
    Ok(data.prepare_with(Some(&loaded.preprocess))?.test)
}

/// Input codes of test sequence `i` over its real steps, as the fake-quant input quantizer
/// rounds them.
fn input_codes(im: &IntegerModel, data: &SequenceDataset, i: usize) -> Vec<i8> {
    s4q_train::predict::integer_input_codes(im, data, i)
}

/// Runs the runtime over `seqs`; returns one golden line per sequence and the seconds spent.
fn runtime_lines(file: &[u8], seqs: &[Vec<i8>]) -> Result<(Vec<String>, f64)> {
    let model = s4q_runtime::Model::parse(file).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut x = vec![0i8; model.state_len()];
    let mut g = vec![0i8; model.heads()];
    let mut sums = vec![0i64; model.heads()];
    let mut state = s4q_runtime::State::new(&model, &mut x, &mut g, &mut sums)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut out = vec![0i8; model.classes()];
    let started = Instant::now();
    let mut lines = Vec::with_capacity(seqs.len());
    for s in seqs {
        let pred = model
            .classify(&mut state, s, &mut out)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        lines.push(format_logits(&out, pred));
    }
    Ok((lines, started.elapsed().as_secs_f64()))
}

/// Host time per step at batch 1 on up to the first 5 golden sequences: burn's float model in
/// recurrent mode, and the Rust runtime's streaming `step` (advance + logits every step).
fn host_step_timings(
    qc: &QuantizedClassifier,
    im: &IntegerModel,
    file: &[u8],
    seqs: &[Vec<i8>],
) -> Result<(f64, f64)> {
    let f = &qc.float;
    let device = f.decoder.weight.val().device();
    let take = seqs.len().min(5);
    let din = im.d_input;
    let mut burn_secs = 0.0;
    let mut n_steps = 0usize;
    for s in &seqs[..take] {
        let steps = s.len() / din;
        let vals: Vec<f32> = s
            .iter()
            .map(|&q| (q as f32 - im.input.z as f32) * im.input_scale)
            .collect();
        let x = Tensor::<1>::from_floats(vals.as_slice(), &device).reshape([1, steps, din]);
        let started = Instant::now();
        let logits = f.forward(x, s4d_model::SsmMode::Recurrent);
        let _ = qat::quantizer::to_host(logits).map_err(|e| anyhow::anyhow!("{e}"))?;
        burn_secs += started.elapsed().as_secs_f64();
        n_steps += steps;
    }
    let model = s4q_runtime::Model::parse(file).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut x = vec![0i8; model.state_len()];
    let mut g = vec![0i8; model.heads()];
    let mut sums = vec![0i64; model.heads()];
    let mut state = s4q_runtime::State::new(&model, &mut x, &mut g, &mut sums)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut out = vec![0i8; model.classes()];
    let started = Instant::now();
    for s in &seqs[..take] {
        state.reset(&model).map_err(|e| anyhow::anyhow!("{e}"))?;
        for step in s.chunks_exact(din) {
            model
                .step(&mut state, step, &mut out)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
    }
    let stream = started.elapsed().as_secs_f64();
    let n = n_steps.max(1) as f64;
    Ok((burn_secs * 1e6 / n, stream * 1e6 / n))
}

/// What `export --format runtime|c` records beside the files.
#[derive(Debug, Serialize)]
struct ExportInfo {
    source: String,
    dataset: String,
    heads: usize,
    modes: usize,
    classes: usize,
    /// Blocks (`frac_bits`, `state_shift` and `block_bits` have one entry per block).
    blocks: usize,
    frac_bits: Vec<u32>,
    state_shift: Vec<u32>,
    /// Encoder and decoder weight widths.
    weight_bits: qat::integer::WeightBits,
    /// `Bbar`, `C` and pointwise-conv weight widths per block.
    block_bits: Vec<qat::integer::BlockBits>,
    pool_frac_bits: u32,
    model_file_bytes: usize,
    golden_sequences: usize,
    seq_len: usize,
    golden_reference_equals_runtime: bool,
    runtime_host_us_per_step: f64,
    /// burn's float model, recurrent mode, batch 1, on the first golden sequences, this host,
    /// measured in the same run as `runtime_host_us_per_step`.
    burn_float_recurrent_us_per_step_batch1: f64,
    /// `s4q_runtime::Model::step` (advance + logits: the streaming API) per step, batch 1.
    runtime_streaming_step_us: f64,
}

/// `experiments export --format runtime` (`c == false`) or `--format c` into directory `out`.
pub fn export(run: &Path, c: bool, out: &Path, src: &DeploySource) -> Result<()> {
    let device = Device::flex();
    let loaded = load_source(run, src, &device)?;
    let im = IntegerModel::derive(&loaded.model)
        .with_context(|| format!("deriving the integer model of {}", loaded.description))?;
    let seqs: Vec<Vec<i8>> = if let Some(path) = &src.golden_inputs {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        if src.golden == 0 || bytes.is_empty() {
            bail!(
                "{}: {} bytes is not --golden {} sequences of d_input {}",
                path.display(),
                bytes.len(),
                src.golden,
                im.d_input
            );
        }
        // Unequal lengths: `golden_steps.txt` beside the codes gives each sequence's steps.
        let steps_file = path.with_file_name("golden_steps.txt");
        let steps: Vec<usize> = if steps_file.exists() {
            let text = std::fs::read_to_string(&steps_file)
                .with_context(|| format!("reading {}", steps_file.display()))?;
            text.lines()
                .enumerate()
                .map(|(i, l)| {
                    l.trim().parse().with_context(|| {
                        format!("{}:{}: not a step count", steps_file.display(), i + 1)
                    })
                })
                .collect::<Result<_>>()?
        } else {
            vec![bytes.len() / src.golden / im.d_input; src.golden]
        };
        if steps.len() != src.golden || steps.iter().sum::<usize>() * im.d_input != bytes.len() {
            bail!(
                "{}: {} bytes do not match the {} sequences of {}",
                path.display(),
                bytes.len(),
                steps.len(),
                steps_file.display()
            );
        }
        let mut at = 0;
        steps
            .iter()
            .map(|&n| {
                let codes = bytes[at..at + n * im.d_input]
                    .iter()
                    .map(|&b| b as i8)
                    .collect();
                at += n * im.d_input;
                codes
            })
            .collect()
    } else {
        let data = test_split(&loaded, src.golden)?;
        if data.len() < src.golden {
            bail!(
                "only {} test sequences, --golden {}",
                data.len(),
                src.golden
            );
        }
        (0..src.golden)
            .map(|i| input_codes(&im, &data, i))
            .collect()
    };
    let seq_len = seqs.iter().map(|s| s.len() / im.d_input).max().unwrap_or(0);
    let reference: Vec<String> = seqs
        .iter()
        .map(|s| {
            let (l, p) = im.classify(s);
            format_logits(&l, p)
        })
        .collect();
    let file = im.to_bytes();
    let (runtime, secs) = runtime_lines(&file, &seqs)?;
    if let Some(i) = (0..seqs.len()).find(|&i| reference[i] != runtime[i]) {
        bail!(
            "runtime differs from the integer reference on golden sequence {i}: {} vs {}",
            runtime[i],
            reference[i]
        );
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let golden_bytes: Vec<u8> = seqs.iter().flatten().map(|&v| v as u8).collect();
    let steps_text: String = seqs
        .iter()
        .map(|q| format!("{}\n", q.len() / im.d_input))
        .collect();
    write_atomic(&out.join("golden_steps.txt"), steps_text.as_bytes())?;
    let join = |v: &[String]| v.iter().map(|l| format!("{l}\n")).collect::<String>();
    write_atomic(&out.join("golden_inputs.bin"), &golden_bytes)?;
    write_atomic(&out.join("golden_logits.txt"), join(&reference).as_bytes())?;
    write_atomic(&out.join("golden_runtime.txt"), join(&runtime).as_bytes())?;
    write_atomic(&out.join("model.s4qm"), &file)?;
    write_json(&out.join("integer.json"), &im)?;
    let steps = seqs.iter().map(|s| s.len() / im.d_input).sum::<usize>() as f64;
    let (burn_us, stream_us) = host_step_timings(&loaded.model, &im, &file, &seqs)?;
    let info = ExportInfo {
        source: loaded.description.clone(),
        dataset: loaded.data_label(),
        heads: im.heads,
        modes: im.modes,
        classes: im.classes,
        blocks: im.blocks.len(),
        frac_bits: im.blocks.iter().map(|b| b.frac).collect(),
        state_shift: im.blocks.iter().map(|b| b.state_shift).collect(),
        weight_bits: im.weight_bits,
        block_bits: im.blocks.iter().map(|b| b.bits).collect(),
        pool_frac_bits: im.pool_frac,
        model_file_bytes: file.len(),
        golden_sequences: seqs.len(),
        seq_len,
        golden_reference_equals_runtime: true,
        runtime_host_us_per_step: secs * 1e6 / steps,
        burn_float_recurrent_us_per_step_batch1: burn_us,
        runtime_streaming_step_us: stream_us,
    };
    write_json(&out.join("export.json"), &info)?;
    if c {
        let meta = loaded.preprocess.export_meta();
        s4q_export::write_c_golden(&im, &meta, &seqs, &reference, &out.join("c"))?;
        if im.is_single_plain_block() {
            s4q_export::write_c_float(&loaded.model, &im, &seqs, &out.join("c"))?;
        } else {
            info!("no float C baseline for stacked blocks (one-block models only)");
        }
        info!("wrote C sources to {}", out.join("c").display());
    }
    println!(
        "exported {} -> {} ({} bytes, F={:?}, {} golden sequences: reference == runtime; runtime {:.2} µs/step on this host)",
        loaded.description,
        out.display(),
        file.len(),
        info.frac_bits,
        seqs.len(),
        info.runtime_host_us_per_step
    );
    Ok(())
}

/// How the last block's output codes of the fake-quant and integer models compare, step by
/// step: where the two models part, when their predictions differ.
struct CodeAgreement {
    /// Identical codes.
    same: usize,
    /// Codes compared.
    total: usize,
    /// Percent identical per tenth of the sequence.
    deciles: Vec<f64>,
    /// Each sequence's first step with a differing code.
    first_diff: Vec<Option<usize>>,
}

impl CodeAgreement {
    /// Identical codes, percent of those compared.
    fn percent(&self) -> f64 {
        100.0 * self.same as f64 / self.total.max(1) as f64
    }
}

/// How many positions of `a` and `b` hold the same class.
fn identical(a: &[usize], b: &[usize]) -> usize {
    a.iter().zip(b).filter(|(x, y)| x == y).count()
}

/// Identical last-block output codes (fake quant vs integer reference) over every step of
/// the first `count` sequences.
fn feature_code_agreement(
    model: &QuantizedClassifier,
    im: &IntegerModel,
    data: &SequenceDataset,
    device: &Device,
    count: usize,
) -> Result<CodeAgreement> {
    let st = model.quant_state()?.quantizers;
    let last = model.float.blocks.len().saturating_sub(1);
    let block = model
        .float
        .blocks
        .get(last)
        .ok_or_else(|| anyhow::anyhow!("no blocks"))?;
    // The block's output: a post-norm's, else the residual sum's (a pre-norm block's too),
    // else the GLU's.
    let point = if block.norm_kind().is_some() && !block.prenorm {
        "norm_output"
    } else if block.residual {
        "residual"
    } else {
        "glu_output"
    };
    let q = st
        .get(&format!("block{last}.{point}"))
        .ok_or_else(|| anyhow::anyhow!("no block{last}.{point} quantizer"))?;
    let (scale, zp) = (q.scale[0], q.zero_point[0]);
    let idx: Vec<usize> = (0..count).collect();
    let batch = make_batch(data, &idx, device);
    let [_, l, h] = [batch.inputs.dims()[0], batch.inputs.dims()[1], im.heads];
    let feats = model.features(batch.inputs)?;
    let feats = feats
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let (mut same, mut total) = (0, 0);
    let mut by_decile = [(0usize, 0usize); 10];
    let mut first_diff = Vec::with_capacity(idx.len());
    for (b, &i) in idx.iter().enumerate() {
        let mut first = usize::MAX;
        let codes = input_codes(im, data, i);
        let mut st = im.state();
        for (t, x) in codes.chunks_exact(im.d_input).enumerate() {
            let out = st.step_features(x);
            for (c, &o) in out.iter().enumerate() {
                let f = feats[(b * l + t) * h + c];
                let fq = (f / scale + zp).round() as i32;
                same += usize::from(fq == o);
                total += 1;
                if fq != o {
                    first = first.min(t);
                }
                let d = &mut by_decile[(10 * t / l.max(1)).min(9)];
                d.0 += usize::from(fq == o);
                d.1 += 1;
            }
        }
        first_diff.push((first != usize::MAX).then_some(first));
    }
    let deciles = by_decile
        .iter()
        .map(|&(s, n)| 100.0 * s as f64 / n.max(1) as f64)
        .collect();
    Ok(CodeAgreement {
        same,
        total,
        deciles,
        first_diff,
    })
}

/// The fake-quant model's class for each sequence of `data`.
fn fake_quant_predictions(
    model: &QuantizedClassifier,
    data: &SequenceDataset,
    batch_size: usize,
    device: &Device,
) -> Result<Vec<usize>> {
    let indices: Vec<usize> = (0..data.len()).collect();
    let mut out = Vec::with_capacity(indices.len());
    for chunk in indices.chunks(batch_size.max(1)) {
        let batch = make_batch(data, chunk, device);
        let logits = model.forward_masked(batch.inputs, &batch.lengths)?;
        let pred = logits.argmax(1).into_data().convert::<i64>();
        let pred = pred
            .try_into_vec::<i64>()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        out.extend(pred.into_iter().map(|p| p as usize));
    }
    Ok(out)
}

/// `experiments deploy-check`: fake-quant vs integer predictions on the first N test
/// sequences.
pub fn run_deploy_check(args: &DeployCheckArgs) -> Result<()> {
    let device = Device::flex();
    let loaded = load_source(&args.run, &args.source, &device)?;
    let im = IntegerModel::derive(&loaded.model)?;
    let data = test_split(&loaded, args.test_limit)?;
    let n = data.len();
    let started = Instant::now();
    let fq_pred = fake_quant_predictions(&loaded.model, &data, args.batch_size, &device)?;
    let fq_secs = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let int_pred: Vec<usize> = (0..n)
        .map(|i| first_argmax(&im.classify(&input_codes(&im, &data, i)).0))
        .collect();
    let int_secs = started.elapsed().as_secs_f64();
    // Where the two models part: the last block's output codes per step (what the pool
    // reads) on the first batch, fake quant (`features`, back to codes on the pooled grid)
    // against the integer reference.
    let count = args.batch_size.min(n);
    let feat = feature_code_agreement(&loaded.model, &im, &data, &device, count)?;
    let mut traces = Vec::new();
    if args.trace_blocks {
        let blocks = loaded.model.float.blocks.len();
        for k in 1..=blocks {
            // The whole model's comparison is the last prefix: computed above already.
            let prefix_agreement;
            let t = if k == blocks {
                &feat
            } else {
                let prefix = loaded.model.first_blocks(k);
                let pim = IntegerModel::derive(&prefix)?;
                prefix_agreement = feature_code_agreement(&prefix, &pim, &data, &device, count)?;
                &prefix_agreement
            };
            println!(
                "blocks 0..{}: output codes identical {:.4}%, by tenth {:?}, earliest first difference {:?}",
                k - 1,
                t.percent(),
                t.deciles
                    .iter()
                    .map(|d| format!("{d:.1}"))
                    .collect::<Vec<_>>(),
                t.first_diff.iter().flatten().min()
            );
            traces.push(serde_json::json!({
                "blocks": k,
                "codes_identical_percent": t.percent(),
                "codes_identical_percent_by_time_decile": t.deciles,
                "first_differing_step": t.first_diff,
            }));
        }
    }
    let composed = if args.floor {
        s4d_model::set_force_composed(true);
        let p = fake_quant_predictions(&loaded.model, &data, args.batch_size, &device);
        s4d_model::set_force_composed(false);
        Some(p?)
    } else {
        None
    };
    let labels: Vec<usize> = (0..n).map(|i| data.sample(i).1 as usize).collect();
    let acc = |p: &[usize]| {
        100.0 * p.iter().zip(&labels).filter(|(a, b)| a == b).count() as f64 / n as f64
    };
    let same = identical(&fq_pred, &int_pred);
    let mut result = serde_json::json!({
        "source": loaded.description,
        "dataset": loaded.data_label(),
        "test_sequences": n,
        "fake_quant_accuracy": acc(&fq_pred),
        "integer_accuracy": acc(&int_pred),
        "accuracy_difference_pts": acc(&int_pred) - acc(&fq_pred),
        "identical_predictions": same,
        "identical_predictions_percent": 100.0 * same as f64 / n as f64,
        "feature_codes_compared": feat.total,
        "feature_codes_identical_percent_by_time_decile": feat.deciles,
        "feature_codes_first_differing_step": feat.first_diff,
        "feature_codes_identical_percent": feat.percent(),
        "fake_quant_seconds": fq_secs,
        "integer_reference_seconds": int_secs,
    });
    if !traces.is_empty() {
        result["block_prefix_traces"] = traces.into();
    }
    if let Some(c) = &composed {
        let (fq_c, int_c) = (identical(&fq_pred, c), identical(&int_pred, c));
        result["composed_fake_quant_accuracy"] = acc(c).into();
        result["fused_vs_composed_identical_predictions"] = fq_c.into();
        result["integer_vs_composed_identical_predictions"] = int_c.into();
        println!(
            "floor: fake quant on the composed ops {:.2}%; fused vs composed identical predictions {fq_c}/{n}, integer vs composed {int_c}/{n}",
            acc(c)
        );
    }
    println!(
        "{}: fake-quant {:.2}%, integer {:.2}% on {n} test sequences; identical predictions {same}/{n} ({:.2}%); last-block output codes identical {:.4}% of {}",
        loaded.description,
        acc(&fq_pred),
        acc(&int_pred),
        100.0 * same as f64 / n as f64,
        feat.percent(),
        feat.total
    );
    if let Some(out) = &args.out {
        write_json(out, &result)?;
    }
    Ok(())
}
