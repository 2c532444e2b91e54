//! Convolution view == recurrent view == float64 reference, on Flex (FFT) and NdArray (Toeplitz).
mod common;

use burn::prelude::*;
use common::{RefParams, lcg_values, rel_err, to_f64};
use s4d_model::{Discretization, S4d, S4dConfig, causal_conv_fft, causal_conv_toeplitz};

fn layer(device: &Device, rule: Discretization) -> S4d {
    device.seed(3);
    S4dConfig::new(3)
        .with_d_state(8)
        .with_discretization(rule)
        .init(device)
}

fn input(
    device: &Device,
    batch: usize,
    heads: usize,
    len: usize,
) -> (Tensor<3>, Vec<Vec<Vec<f64>>>) {
    let vals = lcg_values(batch * heads * len, 11);
    let t = Tensor::<1>::from_floats(vals.as_slice(), device).reshape([batch, heads, len]);
    let nested = (0..batch)
        .map(|b| {
            (0..heads)
                .map(|h| {
                    (0..len)
                        .map(|l| f64::from(vals[(b * heads + h) * len + l]))
                        .collect()
                })
                .collect()
        })
        .collect();
    (t, nested)
}

/// Relative tolerance 1e-4: both views are f32 (24-bit mantissa); the recurrence accumulates
/// ~L rounding errors of size 6e-8 on a decaying state, the FFT ~log2(2L) of them.
const TOL: f64 = 1e-4;

fn check_modes(device: Device, rule: Discretization) {
    let layer = layer(&device, rule);
    let reference = RefParams::from_layer(&layer);
    for len in [1, 5, 64, 784] {
        let (u, u64) = input(&device, 2, 3, len);
        let conv = to_f64(layer.forward_conv(u.clone()));
        let disc = layer.discretize();
        let rec = to_f64(s4d_model::diagonal_scan(&disc, u).0);
        let want: Vec<f64> = reference.recurrent(&u64).concat().concat();
        let e1 = rel_err(&conv, &rec);
        let e2 = rel_err(&conv, &want);
        let e3 = rel_err(&rec, &want);
        assert!(e1 < TOL, "{rule:?} L={len}: conv vs recurrent {e1:e}");
        assert!(e2 < TOL, "{rule:?} L={len}: conv vs f64 {e2:e}");
        assert!(e3 < TOL, "{rule:?} L={len}: recurrent vs f64 {e3:e}");
    }
}

#[test]
fn flex_conv_equals_recurrent_zoh() {
    check_modes(Device::flex(), Discretization::Zoh);
}

#[test]
fn flex_conv_equals_recurrent_bilinear() {
    check_modes(Device::flex(), Discretization::Bilinear);
}

#[test]
fn ndarray_conv_equals_recurrent_zoh_and_bilinear() {
    check_modes(common::ndarray_device(), Discretization::Zoh);
    check_modes(common::ndarray_device(), Discretization::Bilinear);
}

#[test]
fn fft_and_toeplitz_convolutions_agree() {
    let device = Device::flex();
    for len in [1, 3, 100, 784] {
        let (u, _) = input(&device, 2, 3, len);
        let k =
            Tensor::<1>::from_floats(lcg_values(3 * len, 5).as_slice(), &device).reshape([3, len]);
        let a = to_f64(causal_conv_fft(u.clone(), k.clone()));
        let b = to_f64(causal_conv_toeplitz(u, k));
        assert!(rel_err(&a, &b) < TOL, "L={len}");
    }
}
