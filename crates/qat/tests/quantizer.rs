//! Quantizer grid, idempotence, error bound, per-head scales, STE mask and LSQ gradients.

mod common;

use common::{host, uniform_signed};

use burn::prelude::*;
use qat::{
    Calibration, Quantizer, QuantizerConfig, RangeMethod, round_half_even, round_half_even_f32,
    ste_round,
};

#[test]
fn rounding_is_half_to_even() {
    let d = Device::flex();
    let x = Tensor::<1>::from_floats([0.5, 1.5, 2.5, -0.5, -1.5, 0.49], &d);
    assert_eq!(
        host(round_half_even(x)),
        vec![0.0, 2.0, 2.0, -0.0, -2.0, 0.0]
    );
    assert_eq!(round_half_even_f32(2.5), 2.0);
    assert_eq!(round_half_even_f32(-3.5), -4.0);
}

#[test]
fn lands_on_grid_idempotent_and_error_bounded() {
    let d = Device::flex();
    for (bits, symmetric, per_channel) in [
        (8, false, true),
        (4, true, false),
        (3, false, false),
        (16, true, true),
    ] {
        let cfg = QuantizerConfig::new(bits)
            .with_symmetric(symmetric)
            .with_per_channel(per_channel)
            .with_range(RangeMethod::MinMax);
        let data: Vec<f32> = uniform_signed(4 * 50, bits as u64)
            .iter()
            .map(|v| v * 3.0 + 0.5)
            .collect();
        let x = Tensor::<1>::from_floats(data.as_slice(), &d).reshape([4, 50]);
        let mut q = Quantizer::new(cfg.clone(), 0, 2, "t").unwrap();
        q.calibrate_from(x.clone()).unwrap();
        let (qmin, qmax) = cfg.grid();
        let y = q.forward(x.clone());
        let yv = host(y.clone());
        let s = &q.state.scale;
        let z = &q.state.zero_point;
        for (i, v) in yv.iter().enumerate() {
            let c = if per_channel { i / 50 } else { 0 };
            let level = v / s[c] + z[c];
            // f32 keeps ~7 digits: allow a few ulps of the level itself (16-bit levels reach 3e4).
            let tol = 1e-3 + 8.0 * level.abs() * f32::EPSILON;
            assert!((level - level.round()).abs() < tol, "off grid: {level}");
            assert!(level.round() >= qmin && level.round() <= qmax);
            // min-max range: every input is inside, so the error is at most half a step.
            assert!((v - data[i]).abs() <= s[c] / 2.0 * (1.0 + 1e-4) + 1e-6);
        }
        assert_eq!(host(q.forward(y)), yv, "not idempotent");
    }
}

#[test]
fn per_head_scales_hand_computed() {
    let d = Device::flex();
    // Head 0 spans [-1, 3], head 1 spans [0, 2]: 8-bit asymmetric signed grid [-128, 127].
    let x = Tensor::<1>::from_floats([-1.0, 3.0, 1.0, 0.0, 2.0, 1.0], &d).reshape([2, 3]);
    let cfg = QuantizerConfig::new(8).with_range(RangeMethod::MinMax);
    let mut q = Quantizer::new(cfg, 0, 2, "t").unwrap();
    q.calibrate_from(x).unwrap();
    let s = &q.state.scale;
    assert_eq!(s.len(), 2);
    assert!((s[0] - 4.0 / 255.0).abs() < 1e-7);
    assert!((s[1] - 2.0 / 255.0).abs() < 1e-7);
    // z = qmin - round(lo / s): head 0: -128 - round(-63.75) = -64; head 1: -128 - 0.
    assert_eq!(q.state.zero_point, vec![-64.0, -128.0]);
    // Symmetric per tensor: s = 3 / 127.
    let cfg = QuantizerConfig::new(8)
        .with_symmetric(true)
        .with_per_channel(false)
        .with_range(RangeMethod::MinMax);
    let mut q = Quantizer::new(cfg, 0, 2, "t").unwrap();
    q.calibrate_from(Tensor::<1>::from_floats([-1.0, 3.0, 1.0, 0.0], &d).reshape([2, 2]))
        .unwrap();
    assert_eq!(q.state.scale, vec![3.0 / 127.0]);
    assert_eq!(q.state.zero_point, vec![0.0]);
}

#[test]
fn percentile_clips_outliers() {
    let d = Device::flex();
    let mut data = uniform_signed(100_000, 3);
    data[17] = 1000.0;
    let x = Tensor::<1>::from_floats(data.as_slice(), &d);
    let cfg = QuantizerConfig::new(8)
        .with_per_channel(false)
        .with_percentile(99.99);
    let mut q = Quantizer::new(cfg, 0, 1, "t").unwrap();
    q.calibrate_from(x).unwrap();
    assert!(q.state.scale[0] < 2.1 / 255.0, "{:?}", q.state.scale);
}

#[test]
fn ste_gradient_is_the_in_range_mask() {
    let d = Device::flex().autodiff();
    let cfg = QuantizerConfig::new(4).with_per_channel(false);
    let mut q = Quantizer::new(cfg, 0, 1, "t").unwrap();
    // Range [-1, 1]: s = 2/15, z = -128..: use set_params for a clean grid: s = 0.125, z = 0.
    q.set_params(vec![0.125], vec![0.0], &d);
    // grid [-8, 7] * 0.125 = [-1, 0.875]
    let x =
        Tensor::<1>::from_floats([-2.0, -0.9, -0.3, 0.0, 0.4, 0.8, 0.95, 3.0], &d).require_grad();
    let y = q.forward(x.clone());
    let w = Tensor::<1>::from_floats([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], &d);
    let grads = (y * w).sum().backward();
    let g = host(x.grad(&grads).unwrap());
    assert_eq!(g, vec![0.0, 2.0, 3.0, 4.0, 5.0, 6.0, 0.0, 0.0]);
    // ste_round alone: gradient 1 everywhere.
    let v = Tensor::<1>::from_floats([0.2, 1.7], &d).require_grad();
    let grads = ste_round(v.clone()).sum().backward();
    assert_eq!(host(v.grad(&grads).unwrap()), vec![1.0, 1.0]);
}

#[test]
fn lsq_scale_gradient_matches_finite_differences() {
    let d = Device::flex().autodiff();
    let cfg = QuantizerConfig::new(4)
        .with_per_channel(false)
        .with_symmetric(true)
        .with_learned_scale(true);
    let xs = [-1.3f32, -0.61, -0.07, 0.33, 0.52, 0.9, 2.0];
    let w = [0.7f32, -1.1, 0.4, 1.3, -0.2, 0.9, 0.5];
    let s0 = 0.1f32; // grid [-8, 7] * 0.1: -1.3 and 0.9, 2.0 are clipped
    // LSQ (Esser et al. 2020, eq. 3) differentiates the STE surrogate in which the rounding
    // residual `round(v) - v` is a constant: fq(x; s) = s * (clamp(x/s, qmin, qmax) + r_i),
    // r_i = round(clamp(x/s0)) - clamp(x/s0) frozen at s0. The loss
    // L(s) = sum w_i fq(x_i; s)^2 of that surrogate is smooth in s except where x/s crosses
    // the clip bounds; x/s0 is -13, 9 and 20 for the clipped points and at most 6.1 in
    // magnitude inside, so |ds| = 1e-4 (x/s moves by < 0.02) crosses no bound. The central
    // difference then has truncation error O(ds^2) ~ 1e-8 and f32 cancellation error
    // ~ 1e-7 * |L| / ds ~ 1e-3 * |L|, hence a 2e-3 relative tolerance.
    let resid: Vec<f32> = xs
        .iter()
        .map(|x| {
            let v = (x / s0).clamp(-8.0, 7.0);
            round_half_even_f32(v) - v
        })
        .collect();
    let loss_host = |s: f32| -> f64 {
        xs.iter()
            .zip(w)
            .zip(&resid)
            .map(|((x, w), r)| {
                let q = f64::from(s) * (f64::from((x / s).clamp(-8.0, 7.0)) + f64::from(*r));
                f64::from(w) * q * q
            })
            .sum()
    };
    let mut q = Quantizer::new(cfg, 0, 1, "t").unwrap();
    q.set_params(vec![s0], vec![0.0], &d);
    let x = Tensor::<1>::from_floats(xs, &d);
    let wt = Tensor::<1>::from_floats(w, &d);
    let y = q.forward(x);
    let grads = (y.clone() * y * wt).sum().backward();
    let g = host(q.lsq_scale.as_ref().unwrap().val().grad(&grads).unwrap())[0];
    let eps = 1e-4f32;
    let fd = ((loss_host(s0 + eps) - loss_host(s0 - eps)) / (2.0 * f64::from(eps))) as f32;
    assert!(
        (g - fd).abs() <= 2e-3 * fd.abs().max(1.0),
        "lsq {g} vs fd {fd}"
    );
}

#[test]
fn dynamic_minmax_matches_static_on_the_same_tensor() {
    let d = Device::flex();
    let x = Tensor::<1>::from_floats(uniform_signed(60, 9).as_slice(), &d).reshape([3, 20]);
    let base = QuantizerConfig::new(6).with_range(RangeMethod::MinMax);
    let mut st = Quantizer::new(base.clone(), 0, 2, "s").unwrap();
    st.calibrate_from(x.clone()).unwrap();
    let dy = Quantizer::new(base.with_calibration(Calibration::Dynamic), 0, 2, "d").unwrap();
    let a = host(st.forward(x.clone()));
    let b = host(dy.forward(x));
    for (u, v) in a.iter().zip(&b) {
        assert!((u - v).abs() < 1e-6);
    }
}
