//! The fused GELU and GLU against burn's composed ops: values and autodiff gradients, on
//! Flex and NdArray.
mod common;

use burn::prelude::*;
use burn::tensor::activation;
use common::{lcg_values, ndarray_device, rel_err, to_f64};
use s4d_model::{gelu, glu_last};

/// Inputs over +-6 (both GELU tails and the sigmoid's saturation), shape `[3, 7, 10]`.
fn input(device: &Device) -> Tensor<3> {
    let v: Vec<f32> = lcg_values(210, 17).iter().map(|x| 6.0 * x).collect();
    Tensor::<1>::from_floats(v.as_slice(), device).reshape([3, 7, 10])
}

/// Values: 1e-6 of the output's scale. burn's GELU rounds `1 + erf` in f32 (absolute error
/// ~6e-8 in Phi) and ours carries the A&S bound (7.5e-8 in Phi); times |x| <= 6 that is
/// <= 1e-6 of max |y| ~ 6. GLU: two exp implementations, each within a few ulps.
fn check_values(device: Device) {
    let x = input(&device);
    let e = rel_err(
        &to_f64(gelu(x.clone())),
        &to_f64(activation::gelu(x.clone())),
    );
    assert!(e < 1e-6, "gelu rel err {e:e}");
    let e = rel_err(&to_f64(glu_last(x.clone())), &to_f64(activation::glu(x, 2)));
    assert!(e < 1e-6, "glu rel err {e:e}");
}

#[test]
fn values_match_burn_flex() {
    check_values(Device::flex());
}

#[test]
fn values_match_burn_ndarray() {
    check_values(ndarray_device());
}

/// Gradients of `sum(w * f(x))` against burn's autodiff of the composed ops: 1e-5 of the
/// gradient's scale (the same error budget as the values, through one more product).
#[test]
fn gradients_match_burn_autodiff() {
    let device = Device::flex().autodiff();
    let w = Tensor::<1>::from_floats(lcg_values(210, 5).as_slice(), &device).reshape([3, 7, 10]);
    let w_half =
        Tensor::<1>::from_floats(lcg_values(105, 6).as_slice(), &device).reshape([3, 7, 5]);
    type Op = fn(Tensor<3>) -> Tensor<3>;
    let cases: [(&str, Op, Op, bool); 2] = [
        ("gelu", gelu, activation::gelu, false),
        ("glu", glu_last, |x| activation::glu(x, 2), true),
    ];
    for (name, fused, composed, halves) in cases {
        let grad = |f: Op| {
            let x = input(&device).require_grad();
            let weights = if halves { w_half.clone() } else { w.clone() };
            let grads = (f(x.clone()) * weights).sum().backward();
            to_f64(x.grad(&grads).expect("tracked"))
        };
        let e = rel_err(&grad(fused), &grad(composed));
        assert!(e < 1e-5, "{name}: gradient rel err {e:e}");
    }
}
