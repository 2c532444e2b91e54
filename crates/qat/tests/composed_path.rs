//! The switch that forces burn's composed tensor ops instead of the fused CPU kernels: it
//! reaches every op of a deep quantized model, and both paths compute the same model.
//! (Its own test binary: the switch is process-wide.)

mod common;

use burn::prelude::*;
use common::{host, uniform_signed};
use qat::{Parameterization, QuantSpec, QuantizedClassifier, calibrate};
use s4d_model::{OpPath, S4dClassifierConfig, S4dConfig, SsmMode, op_path, set_force_composed};

#[test]
fn forced_composed_ops_compute_the_same_deep_quantized_model() {
    let device = Device::default();
    assert_eq!(
        op_path(&device),
        OpPath::Fused,
        "Flex runs the fused kernels by default"
    );
    let model = S4dClassifierConfig::new(S4dConfig::new(8).with_d_state(8))
        .with_n_layers(2)
        .with_d_input(2)
        .with_n_classes(4)
        .with_residual(true)
        .with_layer_norm(true)
        .init(&device);
    let x = Tensor::<3>::from_data(
        TensorData::new(uniform_signed(3 * 20 * 2, 7), [3, 20, 2]),
        &device,
    );
    let mut q = QuantizedClassifier::from_float(
        model.clone(),
        QuantSpec::preset("w8a8").unwrap(),
        Parameterization::FrozenA,
    )
    .unwrap();
    calibrate(&mut q, [x.clone()]).unwrap();
    let fused_q = host(q.features(x.clone()).unwrap());
    let fused_f = host(model.forward(x.clone(), SsmMode::Convolution));

    set_force_composed(true);
    assert_eq!(op_path(&device), OpPath::Composed);
    let composed_q = host(q.features(x.clone()).unwrap());
    let composed_f = host(model.forward(x, SsmMode::Convolution));
    set_force_composed(false);
    assert_eq!(op_path(&device), OpPath::Fused);

    // Float: the same function by different f32 operation orders (FFT vs direct sums).
    let worst = fused_f
        .iter()
        .zip(&composed_f)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-4, "float logits differ by {worst}");
    // Fake-quant: codes agree except where f32 noise straddles a rounding boundary, which
    // moves one element by one step (and what depends on it); such flips must be rare.
    let differing = fused_q
        .iter()
        .zip(&composed_q)
        .filter(|(a, b)| (*a - *b).abs() > 1e-4)
        .count();
    assert!(
        differing * 100 <= fused_q.len(),
        "{differing} of {} features differ",
        fused_q.len()
    );
}
