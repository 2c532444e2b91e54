//! The integer reference of stacked S4D blocks (residual sums, pre- or post-norm LayerNorm or
//! BatchNorm) against the fake-quant model it is derived from: small random deep models,
//! calibrated w8a8 (one also with per-block precision), must predict the same class on at
//! least 99% of random sequences (the fake-quant side's f32 sums vary slightly from run to
//! run, so a sequence near a tie may flip between runs) and give
//! logit codes within a code or two, and the runtime must compute the same integers from the
//! version-3 file; likewise for pre-norm blocks.

mod common;

use burn::module::{Param, RunningState};
use burn::prelude::*;
use common::{host, uniform_signed, uniform_unit};
use qat::integer::{IntegerModel, NormStage, first_argmax};
use qat::{Parameterization, QuantSpec, QuantizedClassifier, calibrate};
use s4d_model::{NormKind, NormPosition, S4dClassifier, S4dClassifierConfig, S4dConfig};
use s4q_runtime::norm::LN_SQRT_FRAC;
use s4q_runtime::{Model, State};

const H: usize = 8;
const N: usize = 8;
const L: usize = 32;
const D_IN: usize = 2;
const K: usize = 5;
const BATCH: usize = 50;

fn model(layers: usize, norm: Option<NormKind>, prenorm: bool, seed: u64) -> S4dClassifier {
    let device = Device::default();
    let mut m = S4dClassifierConfig::new(S4dConfig::new(H).with_d_state(N))
        .with_n_layers(layers)
        .with_d_input(D_IN)
        .with_n_classes(K)
        .with_residual(true)
        .with_norm(norm)
        .with_norm_position(prenorm.then_some(NormPosition::Pre))
        .init(&device);
    let vec1 = |v: Vec<f32>| Tensor::<1>::from_floats(v.as_slice(), &device);
    // Norms away from the identity: random affine parameters and, for BatchNorm, running
    // statistics away from (0, 1).
    for (i, block) in m.blocks.iter_mut().enumerate() {
        let s = seed + 10 * i as u64;
        let gamma: Vec<f32> = uniform_unit(H, s).iter().map(|u| 0.5 + u).collect();
        let beta: Vec<f32> = uniform_signed(H, s + 1).iter().map(|u| 0.3 * u).collect();
        if let Some(ln) = block.norm.as_mut() {
            ln.gamma = Param::from_tensor(vec1(gamma.clone()));
            ln.beta = Some(Param::from_tensor(vec1(beta.clone())));
        }
        if let Some(bn) = block.batch_norm.as_mut() {
            bn.gamma = Param::from_tensor(vec1(gamma));
            bn.beta = Param::from_tensor(vec1(beta));
            let mean: Vec<f32> = uniform_signed(H, s + 2).iter().map(|u| 0.2 * u).collect();
            let var: Vec<f32> = uniform_unit(H, s + 3)
                .iter()
                .map(|u| 0.3 + 2.0 * u)
                .collect();
            bn.running_mean = RunningState::new(vec1(mean));
            bn.running_var = RunningState::new(vec1(var));
        }
    }
    m
}

/// Sequences that differ as wholes (a random amplitude, frequency and phase per sequence and
/// channel, plus noise), so the mean pool tells them apart.
fn inputs(seed: u64) -> Tensor<3> {
    let p = uniform_unit(3 * BATCH * D_IN, seed);
    let noise = uniform_signed(BATCH * L * D_IN, seed + 1);
    let mut v = vec![0f32; BATCH * L * D_IN];
    for b in 0..BATCH {
        for i in 0..D_IN {
            let k = 3 * (b * D_IN + i);
            let (amp, freq, phase) = (
                p[k],
                0.05 + 0.5 * p[k + 1],
                std::f32::consts::TAU * p[k + 2],
            );
            for t in 0..L {
                let at = (b * L + t) * D_IN + i;
                v[at] = (amp * (freq * t as f32 + phase).sin() + 0.2 * noise[at]).clamp(-1.0, 1.0);
            }
        }
    }
    Tensor::<3>::from_data(TensorData::new(v, [BATCH, L, D_IN]), &Device::default())
}

/// The calibrated w8a8 model of `m`, with logits centred (the decoder bias cancels the mean
/// fake-quant logit of a calibration batch, then calibration runs again), so that the random
/// model predicts more than one class.
fn quantized(mut m: S4dClassifier) -> QuantizedClassifier {
    let q = calibrated(m.clone());
    let mean = q
        .forward(inputs(999))
        .expect("forward")
        .mean_dim(0)
        .reshape([K]);
    let bias = m
        .decoder
        .bias
        .as_ref()
        .map(|b| b.val())
        .expect("decoder bias");
    m.decoder.bias = Some(Param::from_tensor(bias - mean));
    calibrated(m)
}

fn calibrated(m: S4dClassifier) -> QuantizedClassifier {
    calibrated_with(m, QuantSpec::preset("w8a8").expect("preset"))
}

fn calibrated_with(m: S4dClassifier, spec: QuantSpec) -> QuantizedClassifier {
    let mut q =
        QuantizedClassifier::from_float(m, spec, Parameterization::Continuous).expect("quantizes");
    calibrate(&mut q, (0..4).map(|s| inputs(1000 + s))).expect("calibrates");
    q
}

/// Agreement of the integer model with the fake-quant model on `batches` random batches:
/// (identical predictions, sequences, largest logit-code difference, mean difference).
fn agreement(
    q: &QuantizedClassifier,
    im: &IntegerModel,
    batches: u64,
) -> (usize, usize, i32, f64, usize) {
    let st = q.quant_state().expect("state").quantizers;
    let ql = &st["logits"];
    let (mut same, mut total, mut worst, mut sum_diff) = (0, 0, 0i32, 0f64);
    let mut classes = std::collections::BTreeSet::new();
    for b in 0..batches {
        let x = inputs(2000 + b);
        let xs = host(x.clone());
        let logits = host(q.forward(x).expect("forward"));
        for s in 0..BATCH {
            let codes: Vec<i8> = xs[s * L * D_IN..(s + 1) * L * D_IN]
                .iter()
                .map(|&v| im.quantize_input(v))
                .collect();
            let (int_logits, int_pred) = im.classify(&codes);
            // The fake-quant logits are dequantized codes: back to codes.
            let fq: Vec<i8> = (0..K)
                .map(|k| {
                    let (sc, z) = if ql.scale.len() == 1 {
                        (ql.scale[0], ql.zero_point[0])
                    } else {
                        (ql.scale[k], ql.zero_point[k])
                    };
                    (logits[s * K + k] / sc + z).round() as i8
                })
                .collect();
            same += usize::from(first_argmax(&fq) == int_pred);
            classes.insert(int_pred);
            total += 1;
            for (a, b) in fq.iter().zip(&int_logits) {
                let d = (*a as i32 - *b as i32).abs();
                worst = worst.max(d);
                sum_diff += d as f64;
            }
        }
    }
    (
        same,
        total,
        worst,
        sum_diff / (total * K) as f64,
        classes.len(),
    )
}

/// The runtime on `file` against the reference `im`, step by step: identical state codes of
/// every block and identical logits after every step, and the same whole-sequence result.
fn runtime_matches_reference(im: &IntegerModel, file: &[u8], codes: &[i8]) {
    let model = Model::parse(file).expect("parses");
    assert_eq!(model.blocks(), im.blocks.len());
    let mut x = vec![0i8; model.state_len()];
    let mut g = vec![0i8; model.heads()];
    let mut sums = vec![0i64; model.heads()];
    let mut state = State::new(&model, &mut x, &mut g, &mut sums).expect("state");
    let mut rs = im.state();
    let mut out = vec![0i8; model.classes()];
    for (t, step) in codes.chunks_exact(im.d_input).enumerate() {
        model.step(&mut state, step, &mut out).expect("step");
        rs.step(step);
        assert_eq!(
            state.codes(),
            rs.codes().as_slice(),
            "state codes at step {t}"
        );
        assert_eq!(out, rs.logits(), "logits at step {t}");
    }
    let pred = model.classify(&mut state, codes, &mut out).expect("runs");
    assert_eq!((out, pred), im.classify(codes));
}

/// Case `c`: a `layers`-block model with `norm` (pre- or post-) derives, agrees with fake
/// quant on random sequences, and the runtime computes the reference's integers from its file.
fn check_deep_case(c: usize, layers: usize, norm: Option<NormKind>, prenorm: bool) {
    let q = quantized(model(layers, norm, prenorm, 50 + c as u64));
    let im = IntegerModel::derive(&q).expect("derives");
    assert_eq!(im.blocks.len(), layers);
    for (k, b) in im.blocks.iter().enumerate() {
        assert!(b.residual.is_some());
        assert_eq!(b.prenorm.is_some(), prenorm && norm.is_some());
        match (norm, &b.norm) {
            (Some(NormKind::Layer), Some(NormStage::Layer(ln))) => {
                // A pre-norm block 0 normalises the wide encoder output, with fewer root
                // fraction bits; every other LayerNorm reads 8-bit codes.
                assert_eq!(ln.sqrt_frac < LN_SQRT_FRAC, prenorm && k == 0, "block {k}");
            }
            (Some(NormKind::Batch), Some(NormStage::Batch(_))) | (None, None) => {}
            other => panic!("case {c} block {k}: {other:?}"),
        }
    }
    let (same, total, worst, mean, classes) = agreement(&q, &im, 8);
    // Not a degenerate model: the sequences are told apart.
    assert!(classes >= 2, "case {c}: one class predicted throughout");
    eprintln!(
        "case {c} ({layers} blocks, {norm:?}, prenorm {prenorm}): {same}/{total} identical \
         predictions, logit codes differ by at most {worst}, mean {mean:.4}, {classes} classes \
         predicted"
    );
    assert!(
        same * 100 >= 99 * total,
        "case {c}: {same}/{total} identical predictions"
    );
    assert!(worst <= 2, "case {c}: logit codes differ by {worst}");
    assert!(mean < 0.05, "case {c}: mean logit-code difference {mean}");
    // The runtime reads the version-3 file and computes the same integers, step by step.
    let file = im.to_bytes();
    assert_eq!(u16::from_le_bytes([file[4], file[5]]), s4q_runtime::VERSION);
    let xs = host(inputs(3000));
    for s in 0..BATCH {
        let codes: Vec<i8> = xs[s * L * D_IN..(s + 1) * L * D_IN]
            .iter()
            .map(|&v| im.quantize_input(v))
            .collect();
        runtime_matches_reference(&im, &file, &codes);
    }
    // The JSON form round-trips.
    let back: IntegerModel =
        serde_json::from_str(&serde_json::to_string(&im).expect("json")).expect("parses");
    assert_eq!(back, im);
}

#[test]
fn deep_integer_models_agree_with_fake_quant() {
    let cases = [
        (2, Some(NormKind::Layer)),
        (3, Some(NormKind::Layer)),
        (2, Some(NormKind::Batch)),
        (3, Some(NormKind::Batch)),
        (2, None),
    ];
    for (c, &(layers, norm)) in cases.iter().enumerate() {
        check_deep_case(c, layers, norm, false);
    }
}

/// Pre-norm blocks (`x + f(norm(x))`), LayerNorm and BatchNorm: block 0's norm reads the
/// encoder output the fake-quant model keeps in float, the later ones codes.
#[test]
fn pre_norm_models_agree_with_fake_quant() {
    let cases = [
        (1, NormKind::Layer),
        (3, NormKind::Layer),
        (2, NormKind::Batch),
        (3, NormKind::Batch),
    ];
    for (c, &(layers, norm)) in cases.iter().enumerate() {
        check_deep_case(10 + c, layers, Some(norm), true);
    }
}

/// Per-block precision (`blocks.1.*` overrides of w8a8): block 1's `Bbar` and conv weights
/// at 4 bits and its state at 6 bits; the integer model packs each block at its own widths
/// and still agrees with fake quant, and the runtime with the reference.
#[test]
fn per_block_precision_is_deployed_per_block() {
    let toml = QuantSpec::preset("w8a8")
        .expect("preset")
        .to_toml_string()
        .expect("toml")
        + "\n[blocks.1]\nb_bar = 4\nconv_weight = 4\nstate = 6\n";
    let spec = QuantSpec::from_toml_str(&toml).expect("spec");
    let mut m = model(3, Some(NormKind::Layer), false, 77);
    let q = calibrated_with(m.clone(), spec.clone());
    let mean = q
        .forward(inputs(999))
        .expect("forward")
        .mean_dim(0)
        .reshape([K]);
    let bias = m
        .decoder
        .bias
        .as_ref()
        .map(|b| b.val())
        .expect("decoder bias");
    m.decoder.bias = Some(Param::from_tensor(bias - mean));
    let q = calibrated_with(m, spec);
    let im = IntegerModel::derive(&q).expect("derives");
    let bits: Vec<(u32, u32)> = im.blocks.iter().map(|b| (b.bits.b, b.bits.lin)).collect();
    assert_eq!(bits, vec![(8, 8), (4, 4), (8, 8)]);
    let (same, total, worst, mean, classes) = agreement(&q, &im, 8);
    eprintln!(
        "per-block precision: {same}/{total} identical predictions, logit codes differ by at \
         most {worst}, mean {mean:.4}, {classes} classes predicted"
    );
    assert!(same * 100 >= 99 * total, "{same}/{total}");
    assert!(worst <= 2 && classes >= 2);
    let file = im.to_bytes();
    let xs = host(inputs(3001));
    for s in 0..10 {
        let codes: Vec<i8> = xs[s * L * D_IN..(s + 1) * L * D_IN]
            .iter()
            .map(|&v| im.quantize_input(v))
            .collect();
        runtime_matches_reference(&im, &file, &codes);
    }
    // The 4-bit block packs smaller than an all-8-bit file of the same model.
    let mut wide = im.clone();
    wide.blocks[1].bits.b = 8;
    wide.blocks[1].bits.lin = 8;
    assert!(wide.to_bytes().len() > file.len());
}

/// Step by step, the last block's output codes of the integer model (what the pool reads)
/// equal the fake-quant features' codes except for rare flips at rounding boundaries.
#[test]
fn last_block_codes_agree_step_by_step() {
    let cases = [
        (NormKind::Layer, false),
        (NormKind::Batch, false),
        (NormKind::Layer, true),
        (NormKind::Batch, true),
    ];
    for (c, (norm, prenorm)) in cases.into_iter().enumerate() {
        let q = quantized(model(3, Some(norm), prenorm, 500 + c as u64));
        let im = IntegerModel::derive(&q).expect("derives");
        let st = q.quant_state().expect("state").quantizers;
        // A pre-norm block's output is its residual sum.
        let qo = &st[if prenorm {
            "block2.residual"
        } else {
            "block2.norm_output"
        }];
        let (sc, z) = (qo.scale[0], qo.zero_point[0]);
        let x = inputs(4000 + c as u64);
        let xs = host(x.clone());
        let feats = host(q.features(x).expect("features"));
        let (mut same, mut total) = (0usize, 0usize);
        for s in 0..BATCH {
            let mut rs = im.state();
            for t in 0..L {
                let at = (s * L + t) * D_IN;
                let codes: Vec<i8> = xs[at..at + D_IN]
                    .iter()
                    .map(|&v| im.quantize_input(v))
                    .collect();
                let out = rs.step_features(&codes);
                for (h, &o) in out.iter().enumerate() {
                    let fq = (feats[(s * L + t) * H + h] / sc + z).round() as i32;
                    same += usize::from(fq == o);
                    total += 1;
                }
            }
        }
        eprintln!(
            "case {c} ({norm:?}, prenorm {prenorm}): last-block codes identical {same}/{total}"
        );
        assert!(same * 1000 >= 995 * total, "case {c}: {same}/{total}");
    }
}

/// A pre-norm's clamp range is part of the file's proof obligations: a later block's range
/// outside the previous block's output grid, or a block-0 LayerNorm range too wide for its
/// arithmetic, is rejected at parse rather than computed on.
#[test]
fn pre_norm_ranges_are_validated_by_the_runtime() {
    let q = quantized(model(2, Some(NormKind::Layer), true, 21));
    let im = IntegerModel::derive(&q).expect("derives");
    assert!(Model::parse(&im.to_bytes()).is_ok());
    let field = |im: &IntegerModel| match Model::parse(&im.to_bytes()) {
        Err(s4q_runtime::Error::InvalidValue { field }) => field,
        other => panic!("expected InvalidValue, got {:?}", other.map(|_| ())),
    };
    let mut wide = im.clone();
    let r = wide.blocks[1].prenorm.as_mut().expect("pre-norm");
    r.hi += 1000;
    assert_eq!(field(&wide), "pre_norm_range");
    let mut wide = im.clone();
    let r = wide.blocks[0].prenorm.as_mut().expect("pre-norm");
    (r.lo, r.hi) = (i32::MIN / 2, i32::MAX / 2);
    assert_eq!(field(&wide), "layer_norm_eps");
    let mut flipped = im.clone();
    let r = flipped.blocks[0].prenorm.as_mut().expect("pre-norm");
    (r.lo, r.hi) = (r.hi, r.lo);
    assert_eq!(field(&flipped), "pre_norm_range");
}
