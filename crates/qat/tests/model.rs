//! The quantized recurrent classifier: float equivalence, calibration, gradients per
//! parameterization, and exact save/reload of quantizer state.

use burn::prelude::*;
use burn::store::{BurnpackStore, ModuleSnapshot};
use qat::{
    Component, Parameterization, QatError, QuantSpec, QuantizedClassifier, calibrate,
    quantizer::to_host,
};
use s4d_model::{Activation, S4dClassifier, S4dClassifierConfig, S4dConfig, SsmMode};

const B: usize = 2;
const L: usize = 16;
const H: usize = 4;

fn model(device: &Device, seed: u64) -> S4dClassifier {
    device.seed(seed);
    S4dClassifierConfig::new(S4dConfig::new(H).with_d_state(8))
        .with_activation(Activation::Qgelu)
        .init(device)
}

fn input(device: &Device, seed: u64) -> Tensor<3> {
    let mut s = seed;
    let v: Vec<f32> = (0..B * L)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect();
    Tensor::<1>::from_floats(v.as_slice(), device).reshape([B, L, 1])
}

#[test]
fn all_float_quantized_model_equals_float_conv_model() {
    let device = Device::flex();
    for p in [
        Parameterization::Continuous,
        Parameterization::Discrete,
        Parameterization::FrozenA,
    ] {
        let float = model(&device, 3);
        let x = input(&device, 1);
        let want = to_host(float.forward(x.clone(), SsmMode::Convolution)).unwrap();
        let q = QuantizedClassifier::from_float(float, QuantSpec::fp32(), p).unwrap();
        let got = to_host(q.forward(x).unwrap()).unwrap();
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        let err = want
            .iter()
            .zip(&got)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(err <= 1e-4 * scale, "{p:?}: err {err} vs max {scale}");
    }
}

#[test]
fn uncalibrated_static_activations_are_an_error_then_calibration_fixes_it() {
    let device = Device::flex();
    let spec = QuantSpec::preset("w4a6-a8x8").unwrap();
    let mut q =
        QuantizedClassifier::from_float(model(&device, 4), spec, Parameterization::Continuous)
            .unwrap();
    match q.forward(input(&device, 2)) {
        Err(QatError::NotCalibrated(names)) => assert!(names.contains(&"block0.state".into())),
        other => panic!("expected NotCalibrated, got {other:?}"),
    }
    assert!(matches!(
        calibrate(&mut q, Vec::<Tensor<3>>::new()),
        Err(QatError::NoCalibrationData)
    ));
    assert_eq!(
        calibrate(&mut q, [input(&device, 5), input(&device, 6)]).unwrap(),
        2
    );
    let y = to_host(q.forward(input(&device, 2)).unwrap()).unwrap();
    assert!(y.iter().all(|v| v.is_finite()));
    let state = q.quant_state().unwrap();
    assert_eq!(state.quantizers["block0.state"].scale.len(), H);
    assert_eq!(state.quantizers["block0.a_bar"].scale.len(), H);
    assert_eq!(state.quantizers["input"].scale.len(), 1);
}

#[test]
fn gradients_reach_the_right_parameters() {
    let device = Device::flex().autodiff();
    let spec = QuantSpec::preset("w8a8").unwrap();
    for p in [
        Parameterization::Continuous,
        Parameterization::Discrete,
        Parameterization::FrozenA,
    ] {
        let mut q = QuantizedClassifier::from_float(model(&device, 5), spec.clone(), p).unwrap();
        calibrate(&mut q, [input(&device, 7)]).unwrap();
        let grads = q
            .forward(input(&device, 8))
            .unwrap()
            .powi_scalar(2)
            .sum()
            .backward();
        let has = |t: Tensor<2>| t.grad(&grads).is_some();
        let s4d = &q.float.blocks[0].s4d;
        assert!(has(q.float.blocks[0].conv.weight.val()), "{p:?} conv");
        match p {
            Parameterization::Continuous => {
                assert!(has(s4d.log_a_real.val()) && has(s4d.c_re.val()));
                assert!(q.discrete.is_empty());
            }
            Parameterization::Discrete => {
                assert!(has(q.discrete[0].a_re.val()) && has(q.discrete[0].b_im.val()));
                assert!(!has(s4d.log_a_real.val()));
            }
            Parameterization::FrozenA => {
                assert!(!has(q.discrete[0].a_re.val()) && !has(q.discrete[0].a_im.val()));
                assert!(has(q.discrete[0].c_re.val()));
            }
        }
    }
}

#[test]
fn quantizer_state_and_params_reload_exactly() {
    let device = Device::flex();
    let mut spec = QuantSpec::preset("w4a6-a8x8").unwrap();
    let mut lsq = spec.get(Component::ConvWeight).unwrap().clone();
    lsq.learned_scale = true;
    spec.set(Component::ConvWeight, Some(lsq));
    let mut q = QuantizedClassifier::from_float(
        model(&device, 6),
        spec.clone(),
        Parameterization::Discrete,
    )
    .unwrap();
    calibrate(&mut q, [input(&device, 9)]).unwrap();
    let x = input(&device, 10);
    let want = to_host(q.forward(x.clone()).unwrap()).unwrap();

    let dir = std::env::temp_dir().join(format!("qat-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("quant.json");
    let bpk = dir.join("model.bpk");
    q.save_quant_state_json(&json).unwrap();
    let mut store = BurnpackStore::from_file(&bpk)
        .auto_extension(false)
        .overwrite(true);
    q.save_into(&mut store).unwrap();

    // A different float model, same architecture and spec.
    let mut r =
        QuantizedClassifier::from_float(model(&device, 99), spec, Parameterization::Discrete)
            .unwrap();
    r.load_quant_state_json(&json).unwrap();
    let mut store = BurnpackStore::from_file(&bpk).auto_extension(false);
    let res = r.load_from(&mut store).unwrap();
    assert!(
        res.errors.is_empty() && res.missing.is_empty() && res.unused.is_empty(),
        "{res:?}"
    );
    assert_eq!(r.quant_state().unwrap(), q.quant_state().unwrap());
    let got = to_host(r.forward(x).unwrap()).unwrap();
    assert_eq!(got, want);
    std::fs::remove_dir_all(&dir).ok();
}
