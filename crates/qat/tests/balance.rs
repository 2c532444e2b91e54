//! State balancing (`qat::balance`): the rescaled model computes the same function, its
//! per-mode state ranges move exactly as `(amp / amp_max)^(1 - alpha)` predicts, and bad
//! input fails with an error.

mod common;

use burn::prelude::*;
use common::{host, uniform_unit};
use qat::balance::{balance_factors, mode_amplitudes};
use qat::{QatError, balance_state};
use s4d_model::{S4dClassifier, S4dClassifierConfig, S4dConfig, SsmMode};

const H: usize = 4;
const N: usize = 16; // 8 complex modes per head
const L: usize = 120;

fn model(device: &Device, layers: usize) -> S4dClassifier {
    device.seed(7);
    S4dClassifierConfig::new(S4dConfig::new(H).with_d_state(N))
        .with_n_layers(layers)
        .init(device)
}

fn batches(device: &Device) -> Vec<Tensor<3>> {
    (0..2)
        .map(|i| {
            let v = uniform_unit(3 * L, 40 + i);
            Tensor::<1>::from_floats(v.as_slice(), device).reshape([3, L, 1])
        })
        .collect()
}

/// Max |a - b| / max |b|.
fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-12);
    a.iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

/// A diagonal change of basis changes no output: logits and per-step features agree in both
/// views. Only f32 rounding differs (B / r and C r each round once, the scan sums 120 steps):
/// 1e-5 of the output scale is far below any real change (a wrong factor is O(1)).
#[test]
fn balanced_model_computes_the_same_function() {
    let device = Device::flex();
    for layers in [1, 2] {
        let m = model(&device, layers);
        let amps = mode_amplitudes(&m, batches(&device)).unwrap();
        assert_eq!(amps.len(), layers);
        let (balanced, report) = balance_state(m.clone(), &amps, 1.0).unwrap();
        assert!(report.iter().all(|b| b.spread_before > 1.5), "{report:?}");
        let x = batches(&device).remove(0);
        for mode in [SsmMode::Convolution, SsmMode::Recurrent] {
            let want = host(m.features(x.clone(), mode));
            let got = host(balanced.features(x.clone(), mode));
            let err = rel_err(&got, &want);
            assert!(err < 1e-5, "{layers} layers, {mode:?}: rel err {err:e}");
        }
    }
}

/// After balancing, the state is `x / r`, so each mode's amplitude is `amp / r`: with
/// alpha = 1 every mode of a head reaches the head's largest, with alpha = 0.5 the spread is
/// the square root of the old one. Measured again on the rescaled model; the amplitudes are
/// maxima of f32 states (rounding ~1e-6), so 1e-4 relative is a safe bound.
#[test]
fn balancing_evens_out_the_measured_mode_ranges() {
    let device = Device::flex();
    let m = model(&device, 1);
    let amps = mode_amplitudes(&m, batches(&device)).unwrap();
    let (full, report) = balance_state(m.clone(), &amps, 1.0).unwrap();
    assert!((report[0].spread_after - 1.0).abs() < 1e-5, "{report:?}");
    let after = mode_amplitudes(&full, batches(&device)).unwrap();
    for (before, after) in amps[0].chunks(N / 2).zip(after[0].chunks(N / 2)) {
        let top = before.iter().fold(0.0f32, |m, &a| m.max(a));
        for &a in after {
            assert!((a - top).abs() <= 1e-4 * top, "mode at {a}, head max {top}");
        }
    }
    let (_, half) = balance_state(m, &amps, 0.5).unwrap();
    let want = report[0].spread_before.sqrt();
    assert!(
        (half[0].spread_after - want).abs() <= 1e-4 * want,
        "alpha 0.5: spread {} vs sqrt {}",
        half[0].spread_after,
        want
    );
}

/// Closed forms of the factors: alpha = 0 is the identity; the factors are `(a / max)^alpha`;
/// an all-zero head is left alone and an unexcited mode is scaled at most by the floor
/// (1e-3 of its head's range), so its `B` grows at most 1000x.
#[test]
fn factors_follow_the_closed_form() {
    let amp = [4.0, 1.0, 0.25, 0.0, 0.0, 0.0];
    let id = balance_factors(&amp, 3, 0.0).unwrap();
    assert!(id.factors.iter().all(|&r| r == 1.0), "{id:?}");
    let b = balance_factors(&amp, 3, 0.5).unwrap();
    let want = [1.0, 0.5, 0.25, 1.0, 1.0, 1.0];
    for (r, w) in b.factors.iter().zip(want) {
        assert!((r - w).abs() < 1e-6, "{:?}", b.factors);
    }
    assert!((b.spread_before - 16.0).abs() < 1e-4);
    assert!((b.spread_after - 4.0).abs() < 1e-4);
    let floored = balance_factors(&[2.0, 0.0], 2, 1.0).unwrap();
    assert_eq!(floored.factors, vec![1.0, 1e-3]);
}

#[test]
fn bad_input_is_an_error() {
    let device = Device::flex();
    let m = model(&device, 1);
    for alpha in [-0.1, 1.5, f32::NAN] {
        assert!(matches!(
            balance_factors(&[1.0, 2.0], 2, alpha),
            Err(QatError::InvalidConfig { .. })
        ));
    }
    assert!(matches!(
        balance_factors(&[1.0, f32::INFINITY], 2, 0.5),
        Err(QatError::InvalidConfig { .. })
    ));
    assert!(matches!(
        balance_factors(&[1.0, 2.0, 3.0], 2, 0.5),
        Err(QatError::StateMismatch(_))
    ));
    assert!(matches!(
        mode_amplitudes(&m, Vec::<Tensor<3>>::new()),
        Err(QatError::NoCalibrationData)
    ));
    assert!(matches!(
        balance_state(m, &[], 1.0),
        Err(QatError::StateMismatch(_))
    ));
}

/// On an autodiff device the rescaled `B` and `C` are trainable leaves: QAT fine-tunes them.
#[test]
fn balanced_parameters_stay_trainable() {
    let device = Device::flex().autodiff();
    let m = model(&device, 1);
    let amps = mode_amplitudes(&m.valid(), batches(&Device::flex())).unwrap();
    let (balanced, _) = balance_state(m, &amps, 1.0).unwrap();
    let x = batches(&device).remove(0);
    let grads = balanced.forward(x, SsmMode::Convolution).sum().backward();
    let s4d = &balanced.blocks[0].s4d;
    for p in [&s4d.b_re, &s4d.b_im, &s4d.c_re, &s4d.c_im] {
        let g = host(
            p.grad(&grads)
                .expect("a trainable parameter gets a gradient"),
        );
        assert!(g.iter().all(|v| v.is_finite()) && g.iter().any(|v| *v != 0.0));
    }
}
