//! burn's autodiff gradients of every S4D parameter against central finite differences of the
//! independent float64 reference, in both views.
mod common;

use burn::prelude::*;
use common::{RefParams, lcg_values, to_f64};
use s4d_model::{Discretization, S4d, S4dConfig, SsmMode};

const B: usize = 2;
const H: usize = 2;
const L: usize = 24;

fn weights() -> Vec<f64> {
    lcg_values(B * H * L, 21)
        .into_iter()
        .map(f64::from)
        .collect()
}

fn inputs() -> Vec<f32> {
    lcg_values(B * H * L, 17)
}

/// loss = sum_{b,h,t} w[b,h,t] y[b,h,t] for the f64 reference.
fn ref_loss(p: &RefParams) -> f64 {
    let u = inputs();
    let nested: Vec<Vec<Vec<f64>>> = (0..B)
        .map(|b| {
            (0..H)
                .map(|h| (0..L).map(|t| f64::from(u[(b * H + h) * L + t])).collect())
                .collect()
        })
        .collect();
    let y = p.recurrent(&nested).concat().concat();
    y.iter().zip(weights()).map(|(a, w)| a * w).sum()
}

fn check(rule: Discretization, mode: SsmMode) {
    let device = Device::flex().autodiff();
    device.seed(5);
    let layer: S4d = S4dConfig::new(H)
        .with_d_state(8)
        .with_dt_min(0.01)
        .with_dt_max(0.2)
        .with_discretization(rule)
        .init(&device);
    // y is [B, L, H] from forward; the reference is channel-major [B, H, L].
    let u = Tensor::<1>::from_floats(inputs().as_slice(), &device)
        .reshape([B, H, L])
        .swap_dims(1, 2);
    let w = Tensor::<1>::from_floats(
        weights()
            .iter()
            .map(|v| *v as f32)
            .collect::<Vec<_>>()
            .as_slice(),
        &device,
    )
    .reshape([B, H, L])
    .swap_dims(1, 2);
    let loss = (layer.forward(u, mode) * w).sum();
    let grads = loss.backward();

    let base = RefParams::from_layer(&layer);
    let autodiff: Vec<(&str, Vec<f64>)> = vec![
        ("log_dt", to_f64(layer.log_dt.val().grad(&grads).unwrap())),
        (
            "log_a_real",
            to_f64(layer.log_a_real.val().grad(&grads).unwrap()),
        ),
        ("a_imag", to_f64(layer.a_imag.val().grad(&grads).unwrap())),
        ("b_re", to_f64(layer.b_re.val().grad(&grads).unwrap())),
        ("b_im", to_f64(layer.b_im.val().grad(&grads).unwrap())),
        ("c_re", to_f64(layer.c_re.val().grad(&grads).unwrap())),
        ("c_im", to_f64(layer.c_im.val().grad(&grads).unwrap())),
        ("d", to_f64(layer.d.val().grad(&grads).unwrap())),
    ];
    // Central differences in f64: truncation error O(eps^2) ~ 1e-12, rounding ~ 1e-16 / eps.
    let eps = 1e-6;
    for (name, got) in autodiff {
        let n = base.clone().field_mut(name).len();
        let fd: Vec<f64> = (0..n)
            .map(|i| {
                let mut plus = base.clone();
                plus.field_mut(name)[i] += eps;
                let mut minus = base.clone();
                minus.field_mut(name)[i] -= eps;
                (ref_loss(&plus) - ref_loss(&minus)) / (2.0 * eps)
            })
            .collect();
        let scale = fd.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-6);
        let err = got
            .iter()
            .zip(&fd)
            .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()))
            / scale;
        // The autodiff side runs in f32 (relative precision ~1e-7 per op over a few hundred
        // ops); 1e-4 of the largest gradient (observed ~1e-6) leaves room for that and nothing else.
        assert!(
            err < 1e-4,
            "{rule:?} {mode:?} d/d{name}: rel err {err:e}\n got {got:?}\n fd {fd:?}"
        );
    }
}

#[test]
fn conv_mode_gradients_match_finite_differences() {
    check(Discretization::Zoh, SsmMode::Convolution);
    check(Discretization::Bilinear, SsmMode::Convolution);
}

#[test]
fn recurrent_mode_gradients_match_finite_differences() {
    check(Discretization::Zoh, SsmMode::Recurrent);
}
