//! Stacked blocks with residual connections and norms: the residual-sum and norm-output
//! quantizers against a reference that fake-quantizes in f64 and normalises by the closed
//! forms, wiring (pre- and post-norm) against the float model, and spec handling of the
//! optional points.

mod common;

use burn::module::{Param, RunningState};
use burn::prelude::*;
use common::{host, uniform_signed, uniform_unit};
use qat::{
    Component, MemoryReport, ModelDims, Parameterization, QuantSpec, QuantizedClassifier,
    Quantizer, calibrate,
};
use s4d_model::{
    NormKind, NormPosition, S4dBlock, S4dClassifier, S4dClassifierConfig, S4dConfig, SsmMode,
};

const H: usize = 6;
const B: usize = 4;
const L: usize = 12;
const D_IN: usize = 2;
/// burn's `LayerNormConfig` default, which the classifier builds its LayerNorm with.
const LN_EPS: f64 = 1e-5;

fn config(norm: Option<NormKind>, prenorm: bool) -> S4dClassifierConfig {
    S4dClassifierConfig::new(S4dConfig::new(H).with_d_state(4))
        .with_n_layers(2)
        .with_d_input(D_IN)
        .with_n_classes(3)
        .with_residual(true)
        .with_norm(norm)
        .with_norm_position(prenorm.then_some(NormPosition::Pre))
}

/// A model whose norms are not the identity: random affine parameters and, for BatchNorm,
/// running statistics away from (0, 1).
fn model(norm: Option<NormKind>, prenorm: bool, seed: u64) -> S4dClassifier {
    let device = Device::default();
    let mut m = config(norm, prenorm).init(&device);
    let vec1 = |v: Vec<f32>| Tensor::<1>::from_floats(v.as_slice(), &device);
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

fn inputs(seed: u64) -> Tensor<3> {
    Tensor::<3>::from_data(
        TensorData::new(uniform_signed(B * L * D_IN, seed), [B, L, D_IN]),
        &Device::default(),
    )
}

fn to_tensor(v: &[f64]) -> Tensor<3> {
    let f: Vec<f32> = v.iter().map(|x| *x as f32).collect();
    Tensor::<3>::from_data(TensorData::new(f, [B, L, H]), &Device::default())
}

fn to_f64(t: Tensor<3>) -> Vec<f64> {
    host(t).into_iter().map(f64::from).collect()
}

/// Per-tensor affine fake quantization in f64 with a calibrated quantizer's scale and zero
/// point: `(clamp(x / s + z, qmin, qmax) rounded - z) s`.
fn fake_quant(v: &[f64], q: &Quantizer) -> Vec<f64> {
    let st = &q.state;
    assert_eq!(st.scale.len(), 1, "the test specs are per tensor");
    let (s, z) = (f64::from(st.scale[0]), f64::from(st.zero_point[0]));
    let (lo, hi) = st.config.grid();
    v.iter()
        .map(|x| ((x / s + z).clamp(f64::from(lo), f64::from(hi)).round() - z) * s)
        .collect()
}

/// The block's norm by its closed form on `[B, L, H]` values: LayerNorm over the channels of
/// each step, BatchNorm as the running-statistics affine per channel.
fn norm_reference(block: &S4dBlock, v: &[f64]) -> Vec<f64> {
    let host1 = |t: Tensor<1>| -> Vec<f64> { host(t).into_iter().map(f64::from).collect() };
    let mut out = v.to_vec();
    match block.norm_kind() {
        Some(NormKind::Layer) => {
            let ln = block.norm.as_ref().expect("layer norm");
            let g = host1(ln.gamma.val());
            let b = host1(ln.beta.as_ref().expect("bias").val());
            for (row, o) in v.chunks_exact(H).zip(out.chunks_exact_mut(H)) {
                let mean = row.iter().sum::<f64>() / H as f64;
                let var = row.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / H as f64;
                for c in 0..H {
                    o[c] = (row[c] - mean) / (var + LN_EPS).sqrt() * g[c] + b[c];
                }
            }
        }
        Some(NormKind::Batch) => {
            let bn = block.batch_norm.as_ref().expect("batch norm");
            let (g, b) = (host1(bn.gamma.val()), host1(bn.beta.val()));
            let mean = host1(bn.running_mean.value());
            let var = host1(bn.running_var.value());
            for (i, o) in out.iter_mut().enumerate() {
                let c = i % H;
                *o = (v[i] - mean[c]) / (var[c] + bn.epsilon).sqrt() * g[c] + b[c];
            }
        }
        None => {}
    }
    out
}

/// Features of `model` with the residual sums and norm outputs fake-quantized by `q`'s
/// quantizers, everything else float: the block's SSM, activation and GLU come from the float
/// block (recurrent mode) with its residual and norm switched off.
fn reference(model: &S4dClassifier, q: &QuantizedClassifier, x: Tensor<3>) -> Vec<f64> {
    let mut h = to_f64(model.encoder.forward(x));
    for (i, block) in model.blocks.iter().enumerate() {
        let qs = &q.blocks[i];
        let mut core = block.clone();
        core.residual = false;
        core.prenorm = false;
        core.norm = None;
        core.batch_norm = None;
        let has_norm = block.norm_kind().is_some();
        let z = if block.prenorm {
            let n = norm_reference(block, &h);
            fake_quant(&n, qs.get(Component::NormOutput).expect("norm quantizer"))
        } else {
            h.clone()
        };
        let y = to_f64(core.forward(to_tensor(&z), SsmMode::Recurrent));
        let sum: Vec<f64> = y.iter().zip(&h).map(|(a, b)| a + b).collect();
        let r = fake_quant(
            &sum,
            qs.get(Component::Residual).expect("residual quantizer"),
        );
        h = if !block.prenorm && has_norm {
            let n = norm_reference(block, &r);
            fake_quant(&n, qs.get(Component::NormOutput).expect("norm quantizer"))
        } else {
            r
        };
    }
    h
}

fn residual_and_norm_spec(bits: u32) -> QuantSpec {
    let per_tensor = |c: Component| Some(c.default_config(bits).with_per_channel(false));
    QuantSpec::fp32()
        .with(Component::Residual, per_tensor(Component::Residual))
        .with(Component::NormOutput, per_tensor(Component::NormOutput))
}

#[test]
fn residual_and_norm_quantizers_match_the_f64_reference() {
    let cases = [
        (None, false),
        (Some(NormKind::Layer), false),
        (Some(NormKind::Batch), false),
        (Some(NormKind::Layer), true),
        (Some(NormKind::Batch), true),
    ];
    for (k, (norm, prenorm)) in cases.into_iter().enumerate() {
        let m = model(norm, prenorm, 100 + k as u64);
        let mut q = QuantizedClassifier::from_float(
            m.clone(),
            residual_and_norm_spec(5),
            Parameterization::Continuous,
        )
        .unwrap();
        calibrate(&mut q, [inputs(1), inputs(2)]).unwrap();
        let x = inputs(3);
        let got = to_f64(q.features(x.clone()).unwrap());
        let want = reference(&m, &q, x);
        // Both sides compute the float parts in f32 (the scan in a different order), about
        // 1e-6 apart; a 5-bit step is ~0.1, so a rounding flip would show as an error of a
        // whole step. 1e-4 passes only when every code agrees.
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(
            worst < 1e-4,
            "case {k} ({norm:?}, prenorm {prenorm}): {worst}"
        );
        // And the quantizers did something: the features are not the float model's.
        let float = to_f64(m.features(inputs(3), SsmMode::Recurrent));
        let moved = got
            .iter()
            .zip(&float)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(
            moved > 1e-3,
            "case {k}: the 5-bit quantizers changed nothing"
        );
    }
}

/// With no quantizer at all, the quantized model's block wiring (pre/post norm, residual,
/// frozen BatchNorm) is the float model's in recurrent mode on a plain (non-autodiff) device.
#[test]
fn unquantized_deep_model_is_the_float_model() {
    for (k, (norm, prenorm)) in [
        (Some(NormKind::Layer), false),
        (Some(NormKind::Batch), false),
        (Some(NormKind::Layer), true),
        (Some(NormKind::Batch), true),
    ]
    .into_iter()
    .enumerate()
    {
        let m = model(norm, prenorm, 200 + k as u64);
        let q = QuantizedClassifier::from_float(
            m.clone(),
            QuantSpec::fp32(),
            Parameterization::Continuous,
        )
        .unwrap();
        let got = to_f64(q.features(inputs(4)).unwrap());
        let want = to_f64(m.features(inputs(4), SsmMode::Recurrent));
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        // Same f32 ops in the same order except the scan kernel: float noise only.
        assert!(worst < 1e-5, "case {k}: {worst}");
    }
}

#[test]
fn presets_quantize_residual_and_norm_of_deep_models_and_reload() {
    let m = model(Some(NormKind::Layer), false, 300);
    let mut q = QuantizedClassifier::from_float(
        m.clone(),
        QuantSpec::preset("w8a8").unwrap(),
        Parameterization::FrozenA,
    )
    .unwrap();
    calibrate(&mut q, [inputs(5)]).unwrap();
    assert!(q.uncalibrated().is_empty());
    let state = q.quant_state().unwrap();
    for key in ["block0.residual", "block1.residual", "block1.norm_output"] {
        assert!(state.quantizers.contains_key(key), "{key}");
    }
    let mut back =
        QuantizedClassifier::from_float(m, state.spec.clone(), Parameterization::FrozenA).unwrap();
    back.load_quant_state(&state).unwrap();
    let a = host(q.forward(inputs(6)).unwrap());
    let b = host(back.forward(inputs(6)).unwrap());
    assert_eq!(a, b);
}

#[test]
fn paper_models_keep_their_spec_and_state_keys() {
    let device = Device::default();
    let m = S4dClassifierConfig::new(S4dConfig::new(4).with_d_state(4)).init(&device);
    let q = QuantizedClassifier::from_float(
        m,
        QuantSpec::preset("w8a8").unwrap(),
        Parameterization::Continuous,
    )
    .unwrap();
    // The preset sets the optional points; a model without them drops them, so specs and
    // state files saved before these points existed still compare equal.
    assert!(q.spec.get(Component::Residual).is_none());
    assert!(q.spec.get(Component::NormOutput).is_none());
    assert!(q.blocks[0].get(Component::Residual).is_none());
    let keys: Vec<String> = q.quant_state().unwrap().quantizers.into_keys().collect();
    assert!(
        keys.iter()
            .all(|k| !k.contains("residual") && !k.contains("norm")),
        "{keys:?}"
    );
}

#[test]
fn overrides_of_points_a_block_lacks_are_errors() {
    let device = Device::default();
    let plain = S4dClassifierConfig::new(S4dConfig::new(4).with_d_state(4))
        .with_n_layers(2)
        .init(&device);
    let spec = QuantSpec::from_toml_str("blocks.1.residual = 6\n").unwrap();
    let e = QuantizedClassifier::from_float(plain, spec, Parameterization::Continuous)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("blocks.1.residual") && e.contains("no residual point"),
        "{e}"
    );
    let deep = model(Some(NormKind::Batch), false, 400);
    let spec = QuantSpec::from_toml_str("[blocks.\"*\"]\nresidual = 6\nnorm_output = 6\n").unwrap();
    let q = QuantizedClassifier::from_float(deep, spec, Parameterization::Continuous).unwrap();
    assert_eq!(
        q.blocks[1]
            .get(Component::NormOutput)
            .unwrap()
            .config()
            .bits,
        6
    );
}

#[test]
fn memory_counts_residual_norm_rows_only_where_blocks_have_them() {
    let cfg = config(Some(NormKind::Layer), false);
    let dims = ModelDims::from_config(&cfg);
    assert!(dims.residual && dims.norm);
    let r = MemoryReport::new(dims, &QuantSpec::preset("w8a8").unwrap());
    let row = |l: &str| r.entries.iter().find(|e| e.label == l).cloned();
    assert_eq!(row("residual").map(|e| (e.count, e.bits)), Some((2 * H, 8)));
    assert_eq!(
        row("norm_output").map(|e| (e.count, e.bits)),
        Some((2 * H, 8))
    );
    assert_eq!(
        row("norm_params").map(|e| (e.count, e.bits)),
        Some((2 * 2 * H, 32))
    );
    let plain = ModelDims::from_config(&S4dClassifierConfig::preset("s4d-16h").unwrap());
    let r = MemoryReport::new(plain, &QuantSpec::preset("w8a8").unwrap());
    assert!(
        r.entries
            .iter()
            .all(|e| !e.label.contains("residual") && !e.label.contains("norm"))
    );
}

/// `first_blocks` cuts every per-block table together: all blocks reproduce the whole
/// model exactly, one block gives a model of one block whose features (block 0's output)
/// differ from the two-block model's.
#[test]
fn first_blocks_is_a_model_of_its_own() {
    let m = model(Some(NormKind::Layer), false, 7);
    let mut q =
        QuantizedClassifier::from_float(m, residual_and_norm_spec(8), Parameterization::FrozenA)
            .unwrap();
    calibrate(&mut q, [inputs(1), inputs(2)]).unwrap();
    let x = inputs(3);
    let whole = to_f64(q.features(x.clone()).unwrap());
    assert_eq!(
        to_f64(q.first_blocks(2).features(x.clone()).unwrap()),
        whole
    );
    let one = q.first_blocks(1);
    assert_eq!(
        (
            one.float.blocks.len(),
            one.blocks.len(),
            one.block_specs.len(),
            one.discrete.len()
        ),
        (1, 1, 1, 1)
    );
    let first = to_f64(one.features(x).unwrap());
    assert_eq!(first.len(), whole.len());
    assert_ne!(first, whole);
}
