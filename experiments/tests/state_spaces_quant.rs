//! PTQ and QAT of an imported state-spaces checkpoint: the fixture of
//! `crates/interop/tests/fixtures` (made by `scripts/make-state-spaces-fixture.py`, a PyTorch
//! model following the state-spaces S4D example model: 3 residual blocks, post-norm LayerNorm)
//! is imported, wrapped in fake quantizers (w8a8, FrozenA), calibrated, compared with the float
//! model, fine-tuned for a few QAT steps, and exported to the integer runtime.

use std::path::PathBuf;

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;
use interop::{Layout, TensorFile, import_safetensors};
use qat::integer::IntegerModel;
use qat::{Parameterization, QuantSpec, QuantizedClassifier, calibrate};
use s4d_model::{S4dClassifier, SsmMode};
use s4q_runtime::{Model, State};

const D_INPUT: usize = 2;
const N_CLASSES: usize = 4;
const L: usize = 24;
const N_BLOCKS: usize = 3;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/interop/tests/fixtures")
        .join(name)
}

fn import(device: &Device) -> S4dClassifier {
    let imported = import_safetensors(
        &fixture("state_spaces_h6_l3.safetensors"),
        Some(&Layout::state_spaces()),
        device,
    )
    .expect("import the state-spaces fixture");
    assert!(imported.unused.is_empty(), "{:?}", imported.unused);
    assert_eq!(imported.model.blocks.len(), N_BLOCKS);
    imported.model
}

/// The PyTorch input of the fixture, `[3, L, d_input]`.
fn fixture_x(device: &Device) -> Tensor<3> {
    let file = TensorFile::open(&fixture("state_spaces_h6_l3_io.safetensors")).expect("io");
    let t = file.get("x", "fixture").expect("x");
    let shape: [usize; 3] = t.shape.clone().try_into().expect("rank 3");
    Tensor::from_data(TensorData::new(t.data, shape), device)
}

/// `batch` sequences of standard normal values (the fixture's inputs are `torch.randn`), from a
/// seeded LCG and Box-Muller so the test does not depend on a backend's RNG.
fn normal_batch(batch: usize, seed: u64, device: &Device) -> Tensor<3> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut uniform = move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 40) as f32 + 0.5) / (1u64 << 24) as f32
    };
    let values: Vec<f32> = (0..batch * L * D_INPUT)
        .map(|_| {
            let (u1, u2) = (uniform(), uniform());
            (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
        })
        .collect();
    Tensor::from_data(TensorData::new(values, [batch, L, D_INPUT]), device)
}

fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32")
}

fn argmax_rows(v: &[f32]) -> Vec<usize> {
    v.chunks(N_CLASSES)
        .map(|row| {
            (0..row.len())
                .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                .expect("non-empty row")
        })
        .collect()
}

/// Four calibration batches of 64 sequences, disjoint from the evaluation inputs.
fn calibration_batches(device: &Device) -> Vec<Tensor<3>> {
    (0..4).map(|i| normal_batch(64, 100 + i, device)).collect()
}

#[test]
fn ptq_of_the_imported_model_tracks_the_float_model() {
    let device = Device::flex();
    let float = import(&device);
    let spec = QuantSpec::preset("w8a8").expect("preset");
    let mut q = QuantizedClassifier::from_float(float.clone(), spec, Parameterization::FrozenA)
        .expect("wrap the imported model");
    assert_eq!(
        calibrate(&mut q, calibration_batches(&device)).expect("calibrate"),
        4
    );
    assert!(q.uncalibrated().is_empty(), "{:?}", q.uncalibrated());

    // The residual sum and the norm output of every block get a quantizer of their own.
    let state = q.quant_state().expect("quant state");
    for i in 0..N_BLOCKS {
        for point in [
            "residual",
            "norm_output",
            "state",
            "ssm_output",
            "glu_output",
        ] {
            let key = format!("block{i}.{point}");
            let qs = state
                .quantizers
                .get(&key)
                .unwrap_or_else(|| panic!("no quantizer {key}"));
            assert!(qs.calibrated, "{key} not calibrated");
        }
    }

    // Fake-quantized (recurrent mode) vs float (convolution mode) logits on the PyTorch input
    // and on 32 more sequences. The logits quantizer's static range is the mean of the
    // calibration batches' ranges (percentile observer), so the most extreme logits of unseen
    // sequences are clipped to it: that clipping is reported and bounded on its own, and the
    // rest of the error is measured against the float logits clamped to the same range.
    let x = Tensor::cat(vec![fixture_x(&device), normal_batch(32, 7, &device)], 0);
    let want = to_vec(float.forward(x.clone(), SsmMode::Convolution));
    let got = to_vec(q.forward(x).expect("fake-quant forward"));
    let logits_q = &state.quantizers["logits"];
    let (qmin, qmax) = logits_q.config.grid();
    let (s, z) = (logits_q.scale[0], logits_q.zero_point[0]);
    let (lo, hi) = ((qmin - z) * s, (qmax - z) * s);
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let max_err = |reference: &dyn Fn(f32) -> f32| {
        want.iter()
            .zip(&got)
            .fold(0f32, |m, (a, b)| m.max((reference(*a) - b).abs()))
    };
    let err = max_err(&|v| v);
    let err_in_range = max_err(&|v| v.clamp(lo, hi));
    let clipped = want.iter().filter(|v| **v < lo || **v > hi).count();
    let (wa, ga) = (argmax_rows(&want), argmax_rows(&got));
    let agree = wa.iter().zip(&ga).filter(|(a, b)| a == b).count();
    println!(
        "w8a8 PTQ: max |fake-quant - float| logits {err:.2e} (relative to max |logit| {scale:.3}: \
         {:.2e}); against float clamped to the logits range [{lo:.3}, {hi:.3}]: \
         {err_in_range:.2e} ({:.2e}); {clipped}/{} logits clipped; argmax agreement {agree}/{}",
        err / scale,
        err_in_range / scale,
        want.len(),
        wa.len()
    );
    // 8-bit grids have 255 steps over each calibrated range: one rounding is at most 1/510 of
    // the range (~0.2 %), and a block applies about ten of them (input, Abar..Dbar, state,
    // SSM output, activation, conv weight, GLU output, residual, norm output), three blocks
    // deep, plus the decoder and the logits. Errors partly cancel in the mean over 24 steps; a
    // bound of 5 % of the largest logit leaves room for the LayerNorms, which scale an error
    // by gamma / std of their input, while a broken quantization point (a range calibrated on
    // the wrong tensor, a wrong axis, a block skipped) costs tens of percent.
    assert!(
        err_in_range < 0.05 * scale,
        "fake-quant logits off by {err_in_range} within the logits range (max |logit| {scale})"
    );
    // Clipping touches only the tails: few logits, and none by more than a quarter of the
    // largest one.
    assert!(clipped * 10 <= want.len(), "{clipped} logits clipped");
    assert!(err < 0.25 * scale, "fake-quant logits off by {err}");
    // Rows whose top two float logits are further apart than twice the error keep their class.
    let clear_rows: Vec<usize> = want
        .chunks(N_CLASSES)
        .enumerate()
        .filter(|(_, row)| {
            let mut r = row.to_vec();
            r.sort_by(|a, b| b.total_cmp(a));
            r[0] - r[1] > 2.0 * err
        })
        .map(|(i, _)| i)
        .collect();
    for i in &clear_rows {
        assert_eq!(wa[*i], ga[*i], "sequence {i} changed class");
    }
    assert!(
        agree * 10 >= wa.len() * 9,
        "argmax agreement only {agree}/{}",
        wa.len()
    );
}

#[test]
fn qat_steps_on_the_imported_model_lower_the_loss() {
    let device = Device::flex();
    let ad = device.clone().autodiff();
    let spec = QuantSpec::preset("w8a8").expect("preset");
    let mut model = QuantizedClassifier::from_float(import(&ad), spec, Parameterization::FrozenA)
        .expect("wrap the imported model");
    // Calibrate an inference copy and hand its ranges over, as `s4q-train`'s QAT does (on the
    // autodiff model calibration would leave a graph behind).
    let mut plain = model.valid();
    calibrate(&mut plain, calibration_batches(&device)).expect("calibrate");
    let calibrated = plain.quant_state().expect("state");
    model.load_quant_state(&calibrated).expect("load ranges");

    // A fixed labelled batch: 16 sequences, label = the sign pattern of the two input
    // channels' sums (a function of the input the model can fit in a few steps).
    let n = 16;
    let x = normal_batch(n, 42, &ad);
    let sums = to_vec(x.clone().sum_dim(1)); // [n, 1, D_INPUT]
    let labels: Vec<i64> = sums
        .chunks(D_INPUT)
        .map(|s| i64::from(s[0] > 0.0) + 2 * i64::from(s[1] > 0.0))
        .collect();
    let targets = |d: &Device| Tensor::<1, Int>::from_data(TensorData::new(labels.clone(), [n]), d);

    let mut optim = AdamWConfig::new().with_weight_decay(0.0).init();
    let mut losses = Vec::new();
    for _ in 0..12 {
        let logits = model.forward(x.clone()).expect("QAT forward");
        let loss = CrossEntropyLossConfig::new()
            .init(&ad)
            .forward(logits, targets(&ad));
        losses.push(loss.clone().into_scalar::<f32>());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(5e-3, model, grads);
    }
    // The loss after the last step, on an inference copy.
    let plain = model.valid();
    let logits = plain
        .forward(normal_batch(n, 42, &device))
        .expect("forward");
    let after = CrossEntropyLossConfig::new()
        .init(&device)
        .forward(logits, targets(&device))
        .into_scalar::<f32>();
    println!("QAT losses {losses:?}; after the last step {after:.4}");
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    let (first, last) = (losses[0], after);
    assert!(
        last < 0.9 * first,
        "QAT did not lower the loss: {first} -> {last} ({losses:?})"
    );
    // QAT trains weights, not the static ranges: every block keeps its residual and
    // norm-output quantizers with the calibrated ranges.
    let state = plain.quant_state().expect("state");
    for i in 0..N_BLOCKS {
        for point in ["residual", "norm_output"] {
            let key = format!("block{i}.{point}");
            assert_eq!(
                state.quantizers.get(&key),
                calibrated.quantizers.get(&key),
                "{key}"
            );
            assert!(state.quantizers.contains_key(&key), "{key}");
        }
    }
}

/// The imported model deploys: PTQ w8a8, then the integer model (format 3: three post-norm
/// LayerNorm blocks) derived from it classifies like the fake-quant model, and the Rust
/// runtime reading the exported file produces the reference's logit codes bit for bit.
#[test]
fn the_imported_model_exports_to_integers() {
    let device = Device::flex();
    let spec = QuantSpec::preset("w8a8").expect("preset");
    let mut q = QuantizedClassifier::from_float(import(&device), spec, Parameterization::FrozenA)
        .expect("wrap the imported model");
    calibrate(&mut q, calibration_batches(&device)).expect("calibrate");
    let im = IntegerModel::derive(&q).expect("the imported model has an integer form");
    assert_eq!(im.blocks.len(), N_BLOCKS);
    let file = im.to_bytes();
    assert_eq!(u16::from_le_bytes([file[4], file[5]]), s4q_runtime::VERSION);
    let runtime = Model::parse(&file).expect("the runtime reads the export");

    let n = 64;
    let x = normal_batch(n, 11, &device);
    let xs = to_vec(x.clone());
    let fq = argmax_rows(&to_vec(q.forward(x).expect("fake-quant forward")));
    let mut same = 0;
    let mut xbuf = vec![0i8; runtime.state_len()];
    let mut gbuf = vec![0i8; runtime.heads()];
    let mut sums = vec![0i64; runtime.heads()];
    for (s, fq_pred) in fq.iter().enumerate() {
        let codes: Vec<i8> = xs[s * L * D_INPUT..(s + 1) * L * D_INPUT]
            .iter()
            .map(|&v| im.quantize_input(v))
            .collect();
        let (ref_logits, ref_pred) = im.classify(&codes);
        let mut state = State::new(&runtime, &mut xbuf, &mut gbuf, &mut sums).expect("state");
        let mut out = vec![0i8; runtime.classes()];
        let pred = runtime
            .classify(&mut state, &codes, &mut out)
            .expect("runtime classifies");
        assert_eq!((&out, pred), (&ref_logits, ref_pred), "sequence {s}");
        same += usize::from(pred == *fq_pred);
    }
    println!("imported w8a8: integer vs fake quant identical predictions {same}/{n}");
    // Both compute the same grids; they part only where an f32 value sits within its rounding
    // error of a code boundary, which on 24-step sequences flips a class rarely. 60 of 64
    // leaves room for a few near-tie logits while a wrong stage (a block skipped, a norm
    // without its affine) scrambles most of them (4 classes: ~16 of 64 by chance).
    assert!(same >= 60, "integer and fake quant agree on {same}/{n}");
}
