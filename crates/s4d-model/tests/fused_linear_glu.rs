//! The fused mixing `GLU(x W + b)` against burn's `linear` followed by GLU: values on Flex and
//! NdArray, and autodiff gradients of every input, for a row count that is not a multiple of
//! the op's row block (so a partial block is covered).
mod common;

use burn::prelude::*;
use burn::tensor::module::linear;
use common::{lcg_values, ndarray_device, rel_err, to_f64};
use s4d_model::{glu_last, linear_glu};

const DIMS: [usize; 3] = [3, 100, 8]; // [B, L, K]: 300 rows, one full block and a partial one
const WIDTH: usize = 12; // N = 2 * 6

fn inputs(device: &Device, track: bool) -> (Tensor<3>, Tensor<2>, Tensor<1>) {
    let n: usize = DIMS.iter().product();
    let x = Tensor::<1>::from_floats(lcg_values(n, 1).as_slice(), device).reshape(DIMS);
    let w = Tensor::<1>::from_floats(lcg_values(DIMS[2] * WIDTH, 2).as_slice(), device)
        .reshape([DIMS[2], WIDTH]);
    let b = Tensor::<1>::from_floats(lcg_values(WIDTH, 3).as_slice(), device);
    if track {
        (x.require_grad(), w.require_grad(), b.require_grad())
    } else {
        (x, w, b)
    }
}

/// Both compute the same f32 products; sums over `K = 8` terms may be ordered differently by
/// the matrix kernel's blocking, so agreement is to f32 rounding (1e-5 relative).
#[test]
fn forward_matches_linear_then_glu() {
    for device in [Device::flex(), ndarray_device()] {
        let (x, w, b) = inputs(&device, false);
        let fused = to_f64(linear_glu(x.clone(), w.clone(), Some(b.clone())));
        let composed = to_f64(glu_last(linear(x, w, Some(b))));
        assert_eq!(fused.len(), DIMS[0] * DIMS[1] * WIDTH / 2);
        let err = rel_err(&fused, &composed);
        assert!(err < 1e-5, "rel err {err:e}");
    }
}

/// Gradients of `sum(weights * GLU(x W + b))` for `x`, `W` and `b`. The weight and bias
/// gradients sum 300 rows in blocks rather than per batch element, so they agree to f32
/// rounding of such sums (1e-5 relative leaves room; a wrong transpose or missing term is
/// O(1)).
#[test]
fn gradients_match_composed_autodiff() {
    let device = Device::flex().autodiff();
    let out: usize = DIMS[0] * DIMS[1] * WIDTH / 2;
    let weights = Tensor::<1>::from_floats(lcg_values(out, 4).as_slice(), &device).reshape([
        DIMS[0],
        DIMS[1],
        WIDTH / 2,
    ]);
    let grads = |fused: bool| {
        let (x, w, b) = inputs(&device, true);
        let y = if fused {
            linear_glu(x.clone(), w.clone(), Some(b.clone()))
        } else {
            glu_last(linear(x.clone(), w.clone(), Some(b.clone())))
        };
        let g = (y * weights.clone()).sum().backward();
        [
            to_f64(x.grad(&g).expect("x is tracked")),
            to_f64(w.grad(&g).expect("w is tracked")),
            to_f64(b.grad(&g).expect("b is tracked")),
        ]
    };
    let (fused, composed) = (grads(true), grads(false));
    for (name, (a, b)) in ["x", "w", "b"].iter().zip(fused.iter().zip(&composed)) {
        let err = rel_err(a, b);
        assert!(err < 1e-5, "d/d{name}: rel err {err:e}");
    }
}

/// Without a bias the composed path runs (the fused op always adds one).
#[test]
fn no_bias_falls_back_to_the_composed_path() {
    let device = Device::flex();
    let (x, w, _) = inputs(&device, false);
    let got = to_f64(linear_glu(x.clone(), w.clone(), None));
    let want = to_f64(glu_last(linear(x, w, None)));
    assert_eq!(got, want);
}
