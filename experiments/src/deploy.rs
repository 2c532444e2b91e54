//! Integer-only deployment: `experiments export --format runtime|c` and
//! `experiments deploy-check`.
//!
//! Both start from a quantized model: a QAT output directory (`model.json`,
//! `quant_state.json`, `qmodel.bpk`), or a float run plus `--spec` (calibrated here exactly as
//! `experiments ptq` calibrates). The model becomes a `qat::integer::IntegerModel`, whose
//! logits on the first `--golden` test sequences are the golden outputs that the runtime, the
//! host C build and the Cortex-M4 build must reproduce byte for byte.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use clap::Args;
use datasets::{DatasetName, SequenceDataset};
use qat::integer::{IntegerModel, first_argmax, format_logits};
use qat::{Parameterization, QuantSpec, QuantizedClassifier, calibrate};
use serde::Serialize;
use tracing::info;

use crate::checkpoint::{load_classifier, read_json, save_module, write_atomic, write_json};
use crate::data::{epoch_order, make_batch};
use crate::quant::load_quantized;
use crate::train::{DataConfig, TrainConfig};

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
}

struct Loaded {
    model: QuantizedClassifier,
    dataset: DatasetName,
    description: String,
}

/// The dataset a float run was trained on.
fn run_dataset(float_run: &Path) -> Result<DatasetName> {
    let cfg: TrainConfig = read_json(&float_run.join("config.json"))
        .with_context(|| format!("{} has no readable config.json", float_run.display()))?;
    Ok(cfg.data.dataset)
}

fn load_source(run: &Path, src: &DeploySource, device: &Device) -> Result<Loaded> {
    if run.join("quant_state.json").exists() {
        if src.spec.is_some() {
            bail!("{} is already quantized; drop --spec", run.display());
        }
        let model = load_quantized(run, device)
            .with_context(|| format!("loading quantized checkpoint {}", run.display()))?;
        let dataset = match src.dataset {
            Some(d) => d,
            None => {
                let qcfg: serde_json::Value = read_json(&run.join("qat_config.json"))
                    .context("no --dataset given and no qat_config.json to find the float run")?;
                let float_run = qcfg["float_run"]
                    .as_str()
                    .context("qat_config.json has no float_run")?;
                run_dataset(Path::new(float_run))?
            }
        };
        return Ok(Loaded {
            model,
            dataset,
            description: format!("quantized checkpoint {}", run.display()),
        });
    }
    let Some(spec_name) = &src.spec else {
        bail!(
            "{} has no quant_state.json: pass --spec to quantize this float run (PTQ)",
            run.display()
        );
    };
    let dataset = match src.dataset {
        Some(d) => d,
        None => run_dataset(run)?,
    };
    let float = load_classifier(run, device)?;
    let spec = QuantSpec::load(spec_name)?;
    let mut model = QuantizedClassifier::from_float(float, spec, Parameterization::Continuous)?;
    let split = DataConfig {
        dataset,
        root: src.data_root.clone(),
        train_limit: None,
        test_limit: Some(1),
    }
    .load()?;
    let order = epoch_order(split.train.len(), 12345, 0);
    let batches: Vec<Tensor<3>> = order
        .chunks(src.calib_batch_size)
        .take(src.calib_batches)
        .map(|idx| make_batch(&split.train, idx, device).inputs)
        .collect();
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
        info!("saved the PTQ model to {}", dir.display());
    }
    Ok(Loaded {
        model,
        dataset,
        description: format!(
            "PTQ of {} with {spec_name} ({} calibration batches of {})",
            run.display(),
            src.calib_batches,
            src.calib_batch_size
        ),
    })
}

fn test_split(dataset: DatasetName, root: &Path, limit: usize) -> Result<SequenceDataset> {
    Ok(DataConfig {
        dataset,
        root: root.to_path_buf(),
        train_limit: Some(1),
        test_limit: Some(limit),
    }
    .load()?
    .test)
}

/// Input codes of test sequence `i`, as the fake-quant input quantizer rounds them.
fn input_codes(im: &IntegerModel, data: &SequenceDataset, i: usize) -> Vec<i8> {
    data.sample(i)
        .0
        .iter()
        .map(|&x| im.quantize_input(x))
        .collect()
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

/// What `export --format runtime|c` records beside the files.
#[derive(Debug, Serialize)]
struct ExportInfo {
    source: String,
    dataset: String,
    heads: usize,
    modes: usize,
    classes: usize,
    frac_bits: u32,
    pool_frac_bits: u32,
    model_file_bytes: usize,
    golden_sequences: usize,
    seq_len: usize,
    golden_reference_equals_runtime: bool,
    runtime_host_us_per_step: f64,
}

/// `experiments export --format runtime` (`c == false`) or `--format c` into directory `out`.
pub fn export(run: &Path, c: bool, out: &Path, src: &DeploySource) -> Result<()> {
    let device = Device::flex();
    let loaded = load_source(run, src, &device)?;
    let im = IntegerModel::derive(&loaded.model)
        .with_context(|| format!("deriving the integer model of {}", loaded.description))?;
    let data = test_split(loaded.dataset, &src.data_root, src.golden)?;
    if data.len() < src.golden {
        bail!(
            "only {} test sequences, --golden {}",
            data.len(),
            src.golden
        );
    }
    let seqs: Vec<Vec<i8>> = (0..src.golden)
        .map(|i| input_codes(&im, &data, i))
        .collect();
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
    let join = |v: &[String]| v.iter().map(|l| format!("{l}\n")).collect::<String>();
    write_atomic(&out.join("golden_inputs.bin"), &golden_bytes)?;
    write_atomic(&out.join("golden_logits.txt"), join(&reference).as_bytes())?;
    write_atomic(&out.join("golden_runtime.txt"), join(&runtime).as_bytes())?;
    write_atomic(&out.join("model.s4qm"), &file)?;
    write_json(&out.join("integer.json"), &im)?;
    let steps = (seqs.len() * data.seq_len) as f64;
    let info = ExportInfo {
        source: loaded.description.clone(),
        dataset: loaded.dataset.to_string(),
        heads: im.heads,
        modes: im.modes,
        classes: im.classes,
        frac_bits: im.frac,
        pool_frac_bits: im.pool_frac,
        model_file_bytes: file.len(),
        golden_sequences: seqs.len(),
        seq_len: data.seq_len,
        golden_reference_equals_runtime: true,
        runtime_host_us_per_step: secs * 1e6 / steps,
    };
    write_json(&out.join("export.json"), &info)?;
    if c {
        write_c(&im, &seqs, &reference, &out.join("c"))?;
    }
    println!(
        "exported {} -> {} ({} bytes, F={}, {} golden sequences: reference == runtime; runtime {:.2} µs/step on this host)",
        loaded.description,
        out.display(),
        file.len(),
        im.frac,
        seqs.len(),
        info.runtime_host_us_per_step
    );
    Ok(())
}

/// `experiments deploy-check`: fake-quant vs integer predictions on the first N test
/// sequences.
pub fn run_deploy_check(args: &DeployCheckArgs) -> Result<()> {
    let device = Device::flex();
    let loaded = load_source(&args.run, &args.source, &device)?;
    let im = IntegerModel::derive(&loaded.model)?;
    let data = test_split(loaded.dataset, &args.source.data_root, args.test_limit)?;
    let n = data.len();
    let mut fq_pred = Vec::with_capacity(n);
    let started = Instant::now();
    let indices: Vec<usize> = (0..n).collect();
    for chunk in indices.chunks(args.batch_size) {
        let batch = make_batch(&data, chunk, &device);
        let logits = loaded.model.forward(batch.inputs)?;
        let pred = logits.argmax(1).into_data().convert::<i64>();
        let pred = pred
            .try_into_vec::<i64>()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        fq_pred.extend(pred.into_iter().map(|p| p as usize));
    }
    let fq_secs = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let int_pred: Vec<usize> = (0..n)
        .map(|i| first_argmax(&im.classify(&input_codes(&im, &data, i)).0))
        .collect();
    let int_secs = started.elapsed().as_secs_f64();
    let labels: Vec<usize> = (0..n).map(|i| data.sample(i).1 as usize).collect();
    let acc = |p: &[usize]| {
        100.0 * p.iter().zip(&labels).filter(|(a, b)| a == b).count() as f64 / n as f64
    };
    let same = fq_pred
        .iter()
        .zip(&int_pred)
        .filter(|(a, b)| a == b)
        .count();
    let result = serde_json::json!({
        "source": loaded.description,
        "dataset": loaded.dataset.to_string(),
        "test_sequences": n,
        "fake_quant_accuracy": acc(&fq_pred),
        "integer_accuracy": acc(&int_pred),
        "accuracy_difference_pts": acc(&int_pred) - acc(&fq_pred),
        "identical_predictions": same,
        "identical_predictions_percent": 100.0 * same as f64 / n as f64,
        "fake_quant_seconds": fq_secs,
        "integer_reference_seconds": int_secs,
    });
    println!(
        "{}: fake-quant {:.2}%, integer {:.2}% on {n} test sequences; identical predictions {same}/{n} ({:.2}%)",
        loaded.description,
        acc(&fq_pred),
        acc(&int_pred),
        100.0 * same as f64 / n as f64
    );
    if let Some(out) = &args.out {
        write_json(out, &result)?;
    }
    Ok(())
}

// ----- C export -------------------------------------------------------------------------

fn c_array<T: std::fmt::Display>(out: &mut String, ty: &str, name: &str, v: &[T]) {
    let _ = write!(out, "static const {ty} {name}[{}] = {{", v.len().max(1));
    for (i, x) in v.iter().enumerate() {
        if i % 16 == 0 {
            out.push_str("\n    ");
        }
        let _ = write!(out, "{x}, ");
    }
    if v.is_empty() {
        out.push('0');
    }
    out.push_str("\n};\n");
}

/// `int64_t` literals: `INT64_C` keeps large constants well-typed in C99.
fn c_i64_array(out: &mut String, name: &str, v: &[i64]) {
    let lits: Vec<String> = v
        .iter()
        .map(|&x| {
            if x == i64::MIN {
                "INT64_MIN".into()
            } else {
                format!("INT64_C({x})")
            }
        })
        .collect();
    c_array(out, "int64_t", name, &lits);
}

fn c_requant(out: &mut String, prefix: &str, r: &qat::integer::Requant) {
    c_array(out, "int32_t", &format!("{prefix}_M"), &r.m);
    c_array(out, "uint8_t", &format!("{prefix}_SHIFT"), &r.shift);
    if let Some(b) = &r.bias {
        c_i64_array(out, &format!("{prefix}_BIAS"), b);
    }
}

/// The header: dimensions, the state type and the API.
fn c_header(im: &IntegerModel) -> String {
    format!(
        r#"/* s4q integer S4D classifier, exported by `experiments export --format c`.
 * C99, no malloc, no floating point, weights const. Bit-exact with s4q-runtime and the
 * qat::integer reference (same arithmetic, same half-to-even rounding). */
#ifndef S4Q_MODEL_H
#define S4Q_MODEL_H

#include <stdint.h>

#define S4Q_D_INPUT {d}
#define S4Q_HEADS {h}
#define S4Q_MODES {m}
#define S4Q_CLASSES {k}
#define S4Q_MAX_STEPS (UINT32_C(1) << 24)

/* One stream's state: state codes [H][M][re, im], activation scratch, pooled sums, steps. */
typedef struct {{
    int8_t x[2 * S4Q_HEADS * S4Q_MODES];
    int8_t g[S4Q_HEADS];
    int64_t sums[S4Q_HEADS];
    uint32_t t;
}} s4q_state;

/* Zero state (x = 0, empty pool). */
void s4q_reset(s4q_state *s);
/* One time step of S4Q_D_INPUT input codes; 0, or -1 past S4Q_MAX_STEPS. */
int s4q_advance(s4q_state *s, const int8_t *input);
/* Logit codes of the sequence so far. */
void s4q_logits(const s4q_state *s, int8_t *out);
/* advance + logits. */
int s4q_step(s4q_state *s, const int8_t *input, int8_t *out);
/* Whole sequence of `steps` steps from the zero state; returns the predicted class. */
int s4q_classify(s4q_state *s, const int8_t *inputs, uint32_t steps, int8_t *out);

#endif
"#,
        d = im.d_input,
        h = im.heads,
        m = im.modes,
        k = im.classes
    )
}

/// The model source: constants and the integer forward pass.
fn c_source(im: &IntegerModel) -> String {
    let mut s = String::from(
        "/* s4q integer S4D classifier (generated; see s4q_model.h). */\n#include \"s4q_model.h\"\n\n",
    );
    let _ = writeln!(
        s,
        "#define FRAC {}u\n#define POOL_FRAC {}u",
        im.frac, im.pool_frac
    );
    let _ = writeln!(
        s,
        "#define IN_Z {}\n#define IN_QMIN {}\n#define IN_QMAX {}",
        im.input.z, im.input.qmin, im.input.qmax
    );
    let _ = writeln!(
        s,
        "#define Y_Z {}\n#define Y_QMIN {}\n#define Y_QMAX {}\n#define G_Z {}",
        im.ssm_out.z, im.ssm_out.qmin, im.ssm_out.qmax, im.act_z
    );
    let _ = writeln!(
        s,
        "#define O_Z {}\n#define O_QMIN {}\n#define O_QMAX {}\n#define L_QMIN {}\n#define L_QMAX {}\n",
        im.glu_out.z, im.glu_out.qmin, im.glu_out.qmax, im.logits_qmin, im.logits_qmax
    );
    c_array(&mut s, "int8_t", "ENC_W", &im.enc_w);
    c_array(&mut s, "int32_t", "ENC_WZ", &im.enc_wz);
    c_requant(&mut s, "ENC", &im.enc);
    for (name, v) in [
        ("A_RE", &im.a_re),
        ("A_IM", &im.a_im),
        ("B_RE", &im.b_re),
        ("B_IM", &im.b_im),
        ("C_RE", &im.c_re),
        ("C_IM", &im.c_im),
    ] {
        c_array(&mut s, "int8_t", name, v);
    }
    c_array(&mut s, "int32_t", "A_Z", &im.a_z);
    c_array(&mut s, "int32_t", "B_Z", &im.b_z);
    c_array(&mut s, "int32_t", "C_Z", &im.c_z);
    c_requant(&mut s, "ARQ", &im.a_rq);
    c_requant(&mut s, "BURQ", &im.bu_rq);
    c_requant(&mut s, "CYRQ", &im.cy_rq);
    c_requant(&mut s, "DYRQ", &im.dy_rq);
    c_array(&mut s, "int32_t", "ST_Z", &im.state_z);
    c_array(&mut s, "int32_t", "ST_LO", &im.state_lo);
    c_array(&mut s, "int32_t", "ST_HI", &im.state_hi);
    c_array(&mut s, "int8_t", "GELU", &im.gelu);
    c_array(&mut s, "int8_t", "LIN_W", &im.lin_w);
    c_array(&mut s, "int32_t", "LIN_WZ", &im.lin_wz);
    c_requant(&mut s, "LIN", &im.lin);
    c_array(&mut s, "int32_t", "SIGMOID", &im.sigmoid);
    c_array(&mut s, "int8_t", "DEC_W", &im.dec_w);
    c_array(&mut s, "int32_t", "DEC_WZ", &im.dec_wz);
    c_requant(&mut s, "DEC", &im.dec);
    c_array(&mut s, "int32_t", "L_Z", &im.logits_z);
    s.push_str(C_ENGINE);
    s
}

/// The forward pass in C: the same stages, order and rounding as `s4q_runtime::Model`.
const C_ENGINE: &str = r#"
/* round_half_even(x / 2^s), s in 0..62: the one rounding rule (as s4q_runtime::fixed). The
 * floor is computed without right-shifting a negative value (implementation-defined in C99). */
static int64_t s4q_shr_round(int64_t x, uint32_t s) {
    int64_t q, r, half;
    if (s == 0) return x;
    if (s > 62) s = 62;
    q = (x >= 0) ? (x >> s) : ~((~x) >> s);
    r = x & (((int64_t)1 << s) - 1);
    half = (int64_t)1 << (s - 1);
    if (r > half || (r == half && (q & 1))) q += 1;
    return q;
}

/* round_half_even(n / d), d > 0. */
static int64_t s4q_div_round(int64_t n, int64_t d) {
    int64_t q = n / d, r = n % d, rest;
    if (r < 0) { q -= 1; r += d; }
    rest = d - r;
    if (r > rest || (r == rest && (q & 1))) q += 1;
    return q;
}

static int32_t s4q_sat32(int64_t x) {
    if (x > INT32_MAX) return INT32_MAX;
    if (x < INT32_MIN) return INT32_MIN;
    return (int32_t)x;
}

static int64_t s4q_clamp(int64_t x, int64_t lo, int64_t hi) {
    return x < lo ? lo : (x > hi ? hi : x);
}

static int64_t s4q_requant(int32_t acc, int32_t m, int64_t bias, uint32_t s) {
    return s4q_shr_round((int64_t)acc * m + bias, s);
}

static int64_t s4q_sigmoid_q30(int32_t b) {
    int64_t mag = b < 0 ? -(int64_t)b : (int64_t)b, s;
    int64_t idx = mag >> 10;
    if (idx >= 1024) {
        s = SIGMOID[1024];
    } else {
        int64_t t0 = SIGMOID[idx], t1 = SIGMOID[idx + 1];
        s = t0 + s4q_shr_round((t1 - t0) * (mag & 1023), 10);
    }
    return b < 0 ? ((int64_t)1 << 30) - s : s;
}

void s4q_reset(s4q_state *st) {
    int k;
    for (k = 0; k < S4Q_HEADS * S4Q_MODES; k++) {
        st->x[2 * k] = (int8_t)ST_Z[k / S4Q_MODES];
        st->x[2 * k + 1] = (int8_t)ST_Z[k / S4Q_MODES];
    }
    for (k = 0; k < S4Q_HEADS; k++) { st->g[k] = 0; st->sums[k] = 0; }
    st->t = 0;
}

int s4q_advance(s4q_state *st, const int8_t *input) {
    int h, n, i, j;
    if (st->t >= S4Q_MAX_STEPS) return -1;
    for (h = 0; h < S4Q_HEADS; h++) {
        int32_t acc = 0, u, az = A_Z[h], bz = B_Z[h], cz = C_Z[h];
        int32_t sz = ST_Z[h], lo = ST_LO[h], hi = ST_HI[h], am = ARQ_M[h];
        uint32_t ash = ARQ_SHIFT[h];
        int64_t w, re_cx = 0, yacc, qy;
        for (i = 0; i < S4Q_D_INPUT; i++) {
            int32_t x = (int32_t)s4q_clamp(input[i], IN_QMIN, IN_QMAX) - IN_Z;
            acc += x * ((int32_t)ENC_W[i * S4Q_HEADS + h] - ENC_WZ[h]);
        }
        u = s4q_sat32(s4q_requant(acc, ENC_M[h], ENC_BIAS[h], ENC_SHIFT[h]));
        w = s4q_sat32(s4q_requant(u, BURQ_M[h], 0, BURQ_SHIFT[h]));
        for (n = 0; n < S4Q_MODES; n++) {
            int k = h * S4Q_MODES + n;
            int32_t ar = A_RE[k] - az, ai = A_IM[k] - az;
            int32_t xr = st->x[2 * k] - sz, xi = st->x[2 * k + 1] - sz;
            int32_t pr = ar * xr - ai * xi, pi = ar * xi + ai * xr;
            int64_t vr = s4q_shr_round((int64_t)pr * am, ash) + (int64_t)(B_RE[k] - bz) * w;
            int64_t vi = s4q_shr_round((int64_t)pi * am, ash) + (int64_t)(B_IM[k] - bz) * w;
            int32_t qr = (int32_t)s4q_clamp(s4q_shr_round(vr, FRAC) + sz, lo, hi);
            int32_t qi = (int32_t)s4q_clamp(s4q_shr_round(vi, FRAC) + sz, lo, hi);
            st->x[2 * k] = (int8_t)qr;
            st->x[2 * k + 1] = (int8_t)qi;
            re_cx += (int64_t)((C_RE[k] - cz) * (qr - sz) - (C_IM[k] - cz) * (qi - sz));
        }
        yacc = s4q_requant(s4q_sat32(re_cx), CYRQ_M[h], 0, CYRQ_SHIFT[h])
             + s4q_requant(u, DYRQ_M[h], 0, DYRQ_SHIFT[h]);
        qy = s4q_clamp(s4q_shr_round(yacc, FRAC) + Y_Z, Y_QMIN, Y_QMAX);
        st->g[h] = GELU[qy - Y_QMIN];
    }
    for (j = 0; j < S4Q_HEADS; j++) {
        int32_t za = LIN_WZ[j], zb = LIN_WZ[S4Q_HEADS + j], acc_a = 0, acc_b = 0, b;
        int64_t a, o;
        for (h = 0; h < S4Q_HEADS; h++) {
            int32_t g = st->g[h] - G_Z;
            acc_a += g * ((int32_t)LIN_W[h * 2 * S4Q_HEADS + j] - za);
            acc_b += g * ((int32_t)LIN_W[h * 2 * S4Q_HEADS + S4Q_HEADS + j] - zb);
        }
        a = s4q_sat32(s4q_requant(acc_a, LIN_M[j], LIN_BIAS[j], LIN_SHIFT[j]));
        b = s4q_sat32(s4q_requant(acc_b, LIN_M[S4Q_HEADS + j], LIN_BIAS[S4Q_HEADS + j],
                                  LIN_SHIFT[S4Q_HEADS + j]));
        o = s4q_clamp(s4q_shr_round(a * s4q_sigmoid_q30(b), 30 + FRAC) + O_Z, O_QMIN, O_QMAX);
        st->sums[j] += o - O_Z;
    }
    st->t += 1;
    return 0;
}

void s4q_logits(const s4q_state *st, int8_t *out) {
    int k, h;
    for (k = 0; k < S4Q_CLASSES; k++) {
        int64_t acc = 0, l;
        int32_t p = 0;
        for (h = 0; h < S4Q_HEADS; h++)
            acc += st->sums[h] * ((int32_t)DEC_W[h * S4Q_CLASSES + k] - DEC_WZ[k]);
        if (st->t > 0)
            p = s4q_sat32(s4q_div_round(acc * ((int64_t)1 << POOL_FRAC), (int64_t)st->t));
        l = s4q_clamp(s4q_requant(p, DEC_M[k], DEC_BIAS[k], DEC_SHIFT[k]) + L_Z[k], L_QMIN, L_QMAX);
        out[k] = (int8_t)l;
    }
}

int s4q_step(s4q_state *st, const int8_t *input, int8_t *out) {
    int r = s4q_advance(st, input);
    s4q_logits(st, out);
    return r;
}

int s4q_classify(s4q_state *st, const int8_t *inputs, uint32_t steps, int8_t *out) {
    uint32_t t;
    int k, best = 0;
    s4q_reset(st);
    for (t = 0; t < steps; t++) s4q_advance(st, inputs + (uint32_t)S4Q_D_INPUT * t);
    s4q_logits(st, out);
    for (k = 1; k < S4Q_CLASSES; k++)
        if (out[k] > out[best]) best = k;
    return best;
}
"#;

/// The golden test harness: classifies every embedded sequence, prints one line per sequence
/// in the golden format, counts matches with the embedded reference logits, and reports
/// instruction counts where the platform has a counter.
const C_HARNESS: &str = r##"/* Golden harness (generated): prints `logits | class` per sequence, then a summary. */
#include "s4q_model.h"
#include "s4q_golden.h"

void s4q_out(const char *s);   /* platform: write a string */
uint32_t s4q_ticks(void);      /* platform: a monotonic tick counter (0 if none) */
uint32_t s4q_tick_calibration(void); /* platform: ticks for 2,000,000 instructions (0 if none) */
void s4q_exit(int code);       /* platform: stop with a status */

static void put_int(long v) {
    char buf[24];
    int i = 23;
    int neg = v < 0;
    unsigned long u = neg ? 0UL - (unsigned long)v : (unsigned long)v;
    buf[i] = 0;
    do { buf[--i] = (char)('0' + (int)(u % 10)); u /= 10; } while (u);
    if (neg) buf[--i] = '-';
    s4q_out(buf + i);
}

static s4q_state state;

int main(void) {
    int8_t out[S4Q_CLASSES];
    uint32_t i, passed = 0, failed = 0, t0, t1, ticks = 0;
    int k;
    for (i = 0; i < S4Q_GOLDEN_N; i++) {
        int cls, same = 1;
        t0 = s4q_ticks();
        cls = s4q_classify(&state, s4q_golden_inputs[i], S4Q_GOLDEN_STEPS, out);
        t1 = s4q_ticks();
        ticks += t1 - t0;
        for (k = 0; k < S4Q_CLASSES; k++) {
            put_int(out[k]);
            s4q_out(" ");
            if (out[k] != s4q_golden_logits[i][k]) same = 0;
        }
        s4q_out("| ");
        put_int(cls);
        s4q_out("\n");
        if (same) passed++; else failed++;
    }
    s4q_out("# ticks ");
    put_int((long)ticks);
    s4q_out(" steps ");
    put_int((long)S4Q_GOLDEN_N * S4Q_GOLDEN_STEPS);
    s4q_out(" calibration_ticks_per_2M_instructions ");
    put_int((long)s4q_tick_calibration());
    s4q_out(" state_bytes ");
    put_int((long)sizeof(s4q_state));
    s4q_out("\n# golden: ");
    put_int((long)passed);
    s4q_out(" passed, ");
    put_int((long)failed);
    s4q_out(" failed\n");
    s4q_exit(failed == 0 ? 0 : 1);
    return failed == 0 ? 0 : 1;
}
"##;

const C_PLATFORM_HOST: &str = r#"/* Host platform for the golden harness: stdout, no tick counter. */
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>

void s4q_out(const char *s) { fputs(s, stdout); }
uint32_t s4q_ticks(void) { return 0; }
uint32_t s4q_tick_calibration(void) { return 0; }
void s4q_exit(int code) { fflush(stdout); exit(code); }
"#;

const C_PLATFORM_M4: &str = r#"/* Cortex-M4 (QEMU mps2-an386) platform for the golden harness: vector table, reset
 * handler, semihosting output and exit, SysTick as the tick counter. No libc needed. */
#include <stdint.h>

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
int main(void);
void s4q_exit(int code);

static volatile uint32_t systick_wraps;

void Reset_Handler(void) {
    uint32_t *src = &_sidata, *dst = &_sdata;
    while (dst < &_edata) *dst++ = *src++;
    for (dst = &_sbss; dst < &_ebss;) *dst++ = 0;
    s4q_exit(main());
}

void Default_Handler(void) { for (;;) {} }
void SysTick_Handler(void) { systick_wraps++; }

__attribute__((section(".isr_vector"), used))
static void (*const vectors[16])(void) = {
    (void (*)(void))(&_estack), Reset_Handler, Default_Handler, Default_Handler,
    Default_Handler, Default_Handler, Default_Handler, 0, 0, 0, 0,
    Default_Handler, Default_Handler, 0, Default_Handler, SysTick_Handler,
};

static int semihost(int op, const void *arg) {
    int result;
    __asm__ volatile("mov r0, %1\n\tmov r1, %2\n\tbkpt 0xAB\n\tmov %0, r0"
                     : "=r"(result) : "r"(op), "r"(arg) : "r0", "r1", "memory");
    return result;
}

void s4q_out(const char *s) { semihost(0x04, s); }

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)

/* SysTick on the processor clock, 24-bit, counting down; wraps counted by the interrupt. */
uint32_t s4q_ticks(void) {
    uint32_t w, v;
    if (!(SYST_CSR & 1u)) {
        SYST_RVR = 0xFFFFFFu;
        SYST_CVR = 0;
        SYST_CSR = 7u;
    }
    do {
        w = systick_wraps;
        v = SYST_CVR;
    } while (w != systick_wraps);
    return w * 0x1000000u + (0xFFFFFFu - v);
}

/* Ticks for a loop of exactly 2,000,000 instructions (1,000,000 x `subs; bne`), so the
 * harness can convert ticks to instructions under `qemu -icount`. */
uint32_t s4q_tick_calibration(void) {
    uint32_t t0 = s4q_ticks(), n = 1000000u;
    __asm__ volatile("1:\n\tsubs %0, %0, #1\n\tbne 1b" : "+r"(n) : : "cc");
    return s4q_ticks() - t0;
}

void s4q_exit(int code) {
    /* SYS_EXIT with ADP_Stopped_ApplicationExit (0x20026) or RunTimeErrorUnknown (0x20023). */
    semihost(0x18, (const void *)(uintptr_t)(code == 0 ? 0x20026u : 0x20023u));
    for (;;) {}
}
"#;

const C_LINK_M4: &str = r#"/* mps2-an386: 4 MB code SSRAM at 0x0 (flash role), 4 MB data SSRAM at 0x20000000. */
MEMORY {
    FLASH (rx) : ORIGIN = 0x00000000, LENGTH = 4M
    RAM (rwx)  : ORIGIN = 0x20000000, LENGTH = 4M
}
ENTRY(Reset_Handler)
SECTIONS {
    .isr_vector : { KEEP(*(.isr_vector)) } > FLASH
    .text : { *(.text*) *(.rodata*) . = ALIGN(4); } > FLASH
    .ARM.exidx : { *(.ARM.exidx*) } > FLASH
    _sidata = LOADADDR(.data);
    .data : { _sdata = .; *(.data*) . = ALIGN(4); _edata = .; } > RAM AT > FLASH
    .bss (NOLOAD) : { _sbss = .; *(.bss*) *(COMMON) . = ALIGN(4); _ebss = .; } > RAM
    _estack = ORIGIN(RAM) + LENGTH(RAM);
}
"#;

fn write_c(im: &IntegerModel, seqs: &[Vec<i8>], golden: &[String], dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let steps = seqs.first().map_or(0, |s| s.len() / im.d_input);
    let mut g = String::from(
        "/* Golden inputs and reference logits (generated). */\n#ifndef S4Q_GOLDEN_H\n#define S4Q_GOLDEN_H\n#include <stdint.h>\n",
    );
    let _ = writeln!(
        g,
        "#define S4Q_GOLDEN_N {}u\n#define S4Q_GOLDEN_STEPS {steps}u",
        seqs.len()
    );
    let _ = writeln!(
        g,
        "static const int8_t s4q_golden_inputs[{}][{}] = {{",
        seqs.len(),
        steps * im.d_input
    );
    for s in seqs {
        g.push_str("  {");
        for (i, v) in s.iter().enumerate() {
            if i % 32 == 0 {
                g.push_str("\n    ");
            }
            let _ = write!(g, "{v},");
        }
        g.push_str("\n  },\n");
    }
    g.push_str("};\n");
    let _ = writeln!(
        g,
        "static const int8_t s4q_golden_logits[{}][{}] = {{",
        seqs.len(),
        im.classes
    );
    for line in golden {
        let logits = line.split('|').next().unwrap_or("");
        let vals: Vec<&str> = logits.split_whitespace().collect();
        let _ = writeln!(g, "  {{{}}},", vals.join(", "));
    }
    g.push_str("};\n#endif\n");
    let files = [
        ("s4q_model.h", c_header(im)),
        ("s4q_model.c", c_source(im)),
        ("s4q_golden.h", g),
        ("harness.c", C_HARNESS.to_string()),
        ("platform_host.c", C_PLATFORM_HOST.to_string()),
        ("platform_m4.c", C_PLATFORM_M4.to_string()),
        ("link_m4.ld", C_LINK_M4.to_string()),
    ];
    for (name, text) in files {
        write_atomic(&dir.join(name), text.as_bytes())?;
    }
    info!("wrote C sources to {}", dir.display());
    Ok(())
}
