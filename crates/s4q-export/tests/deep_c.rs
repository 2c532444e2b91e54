//! The exported C of stacked blocks against the integer reference: small deep models
//! (residual + LayerNorm, residual + BatchNorm, each after the sum and on the block input),
//! calibrated w8a8, exported with the golden
//! harness, built with gcc (C99, pedantic, warnings as errors, ASan + UBSan) and run on the
//! host; every golden sequence's logits must equal the reference's byte for byte. And the
//! paper models' committed C is what the generator writes today, byte for byte.

use std::path::{Path, PathBuf};
use std::process::Command;

use burn::module::{Param, RunningState};
use burn::prelude::*;
use qat::integer::{IntegerModel, format_logits};
use qat::{Parameterization, QuantSpec, QuantizedClassifier, calibrate};
use s4d_model::{NormKind, NormPosition, S4dClassifier, S4dClassifierConfig, S4dConfig};
use s4q_export::{ModelMeta, write_c_golden};

const H: usize = 8;
const L: usize = 24;
const D_IN: usize = 2;
const K: usize = 4;

/// Uniform values in `[-1, 1)` from a fixed generator.
fn uniform(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn model(layers: usize, norm: NormKind, prenorm: bool, seed: u64) -> S4dClassifier {
    let device = Device::default();
    let mut m = S4dClassifierConfig::new(S4dConfig::new(H).with_d_state(8))
        .with_n_layers(layers)
        .with_d_input(D_IN)
        .with_n_classes(K)
        .with_residual(true)
        .with_norm(Some(norm))
        .with_norm_position(prenorm.then_some(NormPosition::Pre))
        .init(&device);
    let vec1 = |v: Vec<f32>| Tensor::<1>::from_floats(v.as_slice(), &device);
    for (i, block) in m.blocks.iter_mut().enumerate() {
        let u = |k: u64| uniform(H, seed + 10 * i as u64 + k);
        let gamma: Vec<f32> = u(0).iter().map(|v| 1.0 + 0.4 * v).collect();
        let beta: Vec<f32> = u(1).iter().map(|v| 0.3 * v).collect();
        if let Some(ln) = block.norm.as_mut() {
            ln.gamma = Param::from_tensor(vec1(gamma.clone()));
            ln.beta = Some(Param::from_tensor(vec1(beta.clone())));
        }
        if let Some(bn) = block.batch_norm.as_mut() {
            bn.gamma = Param::from_tensor(vec1(gamma));
            bn.beta = Param::from_tensor(vec1(beta));
            bn.running_mean = RunningState::new(vec1(u(2).iter().map(|v| 0.2 * v).collect()));
            bn.running_var =
                RunningState::new(vec1(u(3).iter().map(|v| 1.2 + v).collect::<Vec<_>>()));
        }
    }
    m
}

fn batch(seed: u64, n: usize) -> Tensor<3> {
    Tensor::<3>::from_data(
        TensorData::new(uniform(n * L * D_IN, seed), [n, L, D_IN]),
        &Device::default(),
    )
}

fn derived(m: S4dClassifier) -> IntegerModel {
    let mut q = QuantizedClassifier::from_float(
        m,
        QuantSpec::preset("w8a8").expect("preset"),
        Parameterization::Continuous,
    )
    .expect("quantizes");
    calibrate(&mut q, (0..3).map(|s| batch(100 + s, 16))).expect("calibrates");
    IntegerModel::derive(&q).expect("derives")
}

/// Builds `dir`'s harness with gcc (sanitizers on) and returns its logit lines, or `None`
/// without gcc.
fn run_host_harness(dir: &Path) -> Option<Vec<String>> {
    if Command::new("gcc").arg("--version").output().is_err() {
        eprintln!("no gcc: C check skipped");
        return None;
    }
    let exe = dir.join("harness");
    let status = Command::new("gcc")
        .args([
            "-std=c99",
            "-pedantic",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-O2",
            "-g",
            "-fsanitize=address,undefined",
            "-fno-sanitize-recover=all",
        ])
        .arg(dir.join("s4q_model.c"))
        .arg(dir.join("harness.c"))
        .arg(dir.join("platform_host.c"))
        .arg("-o")
        .arg(&exe)
        .status()
        .expect("gcc runs");
    assert!(status.success(), "gcc failed on {}", dir.display());
    let out = Command::new(&exe).output().expect("harness runs");
    assert!(out.status.success(), "harness failed: {out:?}");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    Some(
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(str::to_string)
            .collect(),
    )
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("s4q-deep-c-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn deep_c_export_is_bit_exact_with_the_reference_on_the_host() {
    let cases = [
        (2, NormKind::Layer, false),
        (3, NormKind::Batch, false),
        (2, NormKind::Layer, true),
        (3, NormKind::Batch, true),
    ];
    for (c, (layers, norm, prenorm)) in cases.into_iter().enumerate() {
        let im = derived(model(layers, norm, prenorm, 40 + c as u64));
        assert_eq!(im.blocks[0].prenorm.is_some(), prenorm);
        let x = uniform(64 * L * D_IN, 900 + c as u64);
        let seqs: Vec<Vec<i8>> = x
            .chunks_exact(L * D_IN)
            .map(|s| s.iter().map(|&v| im.quantize_input(v)).collect())
            .collect();
        let golden: Vec<String> = seqs
            .iter()
            .map(|s| {
                let (l, p) = im.classify(s);
                format_logits(&l, p)
            })
            .collect();
        // Not a degenerate model: the sequences get different logits.
        let distinct: std::collections::BTreeSet<&String> = golden.iter().collect();
        assert!(
            distinct.len() > 10,
            "case {c}: {} distinct logit lines",
            distinct.len()
        );
        // The Rust runtime on the model file agrees (the three-way chain of the paper models).
        let file = im.to_bytes();
        let rt = s4q_runtime::Model::parse(&file).expect("parses");
        let mut x = vec![0i8; rt.state_len()];
        let (mut g, mut sums) = (vec![0i8; H], vec![0i64; H]);
        let mut st = s4q_runtime::State::new(&rt, &mut x, &mut g, &mut sums).expect("state");
        let runtime: Vec<String> = seqs
            .iter()
            .map(|s| {
                let mut out = [0i8; K];
                let p = rt.classify(&mut st, s, &mut out).expect("runs");
                format_logits(&out, p)
            })
            .collect();
        assert_eq!(
            runtime, golden,
            "case {c}: runtime differs from the reference"
        );
        // With S4Q_DEEP_C_OUT set, the export stays there in the layout of
        // `experiments export` (c/ plus the golden files) for scripts/deploy-qemu.sh.
        let keep =
            std::env::var_os("S4Q_DEEP_C_OUT").map(|d| PathBuf::from(d).join(format!("deep-{c}")));
        let dir = match &keep {
            Some(d) => {
                let join = |v: &[String]| v.iter().map(|l| format!("{l}\n")).collect::<String>();
                std::fs::create_dir_all(d).expect("out dir");
                std::fs::write(d.join("golden_logits.txt"), join(&golden)).expect("write");
                std::fs::write(d.join("golden_runtime.txt"), join(&runtime)).expect("write");
                d.join("c")
            }
            None => scratch(&format!("{c}")),
        };
        write_c_golden(&im, &ModelMeta::raw(D_IN, K), &seqs, &golden, &dir).expect("exports");
        if let Some(lines) = run_host_harness(&dir) {
            assert_eq!(lines.len(), golden.len(), "case {c}: line count");
            assert_eq!(
                lines, golden,
                "case {c}: C logits differ from the reference"
            );
            eprintln!(
                "case {c} ({layers} blocks, {norm:?}, prenorm {prenorm}): C == reference on {} \
                 sequences",
                golden.len()
            );
        }
        if keep.is_none() {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

/// The C writers are unchanged: regenerating every committed export's C (the one-block paper
/// models and the deep ones) from its `integer.json` gives the committed `s4q_model.c` byte
/// for byte.
#[test]
fn committed_exports_regenerate_their_c_byte_for_byte() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../results/deploy");
    let Ok(dirs) = std::fs::read_dir(&root) else {
        return;
    };
    let mut n = 0;
    for dir in dirs.flatten().map(|e| e.path()) {
        let (Ok(json), Ok(c)) = (
            std::fs::read_to_string(dir.join("integer.json")),
            std::fs::read_to_string(dir.join("c/s4q_model.c")),
        ) else {
            continue;
        };
        let im: IntegerModel = serde_json::from_str(&json).expect("integer.json parses");
        assert_eq!(
            s4q_export::c_model::c_source(&im),
            c,
            "{}: generated C differs from the committed one",
            dir.display()
        );
        n += 1;
    }
    eprintln!("{n} committed C exports regenerated");
}
