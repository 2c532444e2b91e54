//! The fused fake-quant op against the composed one (`fake_quant_affine`): identical values,
//! identical STE gradients, and the same LSQ scale gradient, per tensor and per channel on
//! each axis, on Flex and NdArray.

mod common;

use common::{host, uniform_signed};

use burn::prelude::*;
use qat::{fake_quant_affine, fused_fake_quant};

const SHAPE: [usize; 3] = [3, 5, 4];

/// Inputs spread over +-3 so that both clamps bind; scales and zero points per channel of
/// `axis` (or one of each).
fn problem(axis: Option<usize>, device: &Device) -> (Tensor<3>, Vec<f32>, Vec<f32>) {
    let n: usize = SHAPE.iter().product();
    let x: Vec<f32> = uniform_signed(n, 3).iter().map(|v| 3.0 * v).collect();
    let c = axis.map_or(1, |a| SHAPE[a]);
    let scale: Vec<f32> = (0..c).map(|k| 0.011 + 0.003 * k as f32).collect();
    let zero: Vec<f32> = (0..c).map(|k| 120.0 + 2.0 * k as f32).collect();
    (
        Tensor::<1>::from_floats(x.as_slice(), device).reshape(SHAPE),
        scale,
        zero,
    )
}

fn broadcast(v: &[f32], axis: Option<usize>, device: &Device) -> Tensor<3> {
    let mut shape = [1usize; 3];
    if let Some(a) = axis {
        shape[a] = v.len();
    }
    Tensor::<1>::from_floats(v, device).reshape(shape)
}

/// Values must be bit-identical: the fused op performs the composed path's f32 operations in
/// the same order.
fn check_values(device: Device) {
    for axis in [None, Some(0), Some(1), Some(2)] {
        let (x, s, z) = problem(axis, &device);
        let want = host(fake_quant_affine(
            x.clone(),
            broadcast(&s, axis, &device),
            broadcast(&z, axis, &device),
            0.0,
            255.0,
        ));
        let got = host(fused_fake_quant(
            x,
            Tensor::<1>::from_floats(s.as_slice(), &device),
            Tensor::<1>::from_floats(z.as_slice(), &device),
            axis,
            0.0,
            255.0,
        ));
        assert_eq!(got, want, "axis {axis:?}");
    }
}

#[test]
fn values_equal_the_composed_op() {
    check_values(Device::flex());
    #[allow(deprecated)]
    check_values(Device::ndarray());
}

/// Gradients of `sum(w * y)` for `x` and a tracked scale. The `x` gradient is the 0/1 mask
/// times `w` in both, except that the composed chain rule multiplies by `s * (1 / s)`, which
/// is 1 only up to an ulp: same zeros, values within 1e-6 relative. The scale gradient sums per-element terms that the composed path
/// forms through the chain rule of `x / s` (`-x / s^2 * s`) and the fused op in closed form
/// (`round(v) - v`), and the composed path sums them in f32 while the fused op uses f64.
/// Clamped terms are as large as `|q - z| <= 255` times `|w|` and cancel, so the bound is f32
/// summation error over up to 60 terms, `60 * 6e-8 * sum |w| * 255`, rounded up to
/// `4e-6 * 255 * sum |w|`; a wrong term (a sign, a missed clamp) is O(100).
#[test]
fn gradients_equal_the_composed_op() {
    let device = Device::flex().autodiff();
    for axis in [None, Some(1), Some(2)] {
        let (x, s, z) = problem(axis, &device);
        let w_host = uniform_signed(60, 7);
        let tol = 4e-6 * 255.0 * w_host.iter().map(|v| v.abs()).sum::<f32>();
        let w = Tensor::<1>::from_floats(w_host.as_slice(), &device).reshape(SHAPE);
        let run = |fused: bool| {
            let x = x.clone().detach().require_grad();
            let scale = Tensor::<1>::from_floats(s.as_slice(), &device).require_grad();
            let zero = Tensor::<1>::from_floats(z.as_slice(), &device);
            let y = if fused {
                fused_fake_quant(x.clone(), scale.clone(), zero, axis, 0.0, 255.0)
            } else {
                let mut shape = [1usize; 3];
                if let Some(a) = axis {
                    shape[a] = s.len();
                }
                fake_quant_affine(
                    x.clone(),
                    scale.clone().reshape(shape),
                    zero.reshape(shape),
                    0.0,
                    255.0,
                )
            };
            let grads = (y * w.clone()).sum().backward();
            (
                host(x.grad(&grads).expect("x tracked")),
                host(scale.grad(&grads).expect("scale tracked")),
            )
        };
        let (gx1, gs1) = run(true);
        let (gx0, gs0) = run(false);
        for (a, b) in gx1.iter().zip(&gx0) {
            assert_eq!(*a == 0.0, *b == 0.0, "mask, axis {axis:?}");
            assert!(
                (a - b).abs() <= 1e-6 * b.abs(),
                "dx {a} vs {b}, axis {axis:?}"
            );
        }
        assert!(gx1.contains(&0.0), "some inputs must be clamped");
        for (a, b) in gs1.iter().zip(&gs0) {
            assert!((a - b).abs() <= tol, "ds {a} vs {b}, axis {axis:?}");
        }
    }
}

/// With a fixed scale (the usual QAT: calibrated, not learned) the backward takes a shorter
/// path that skips the scale's gradient; the input's gradient (the clipped STE: `dy` or 0)
/// must equal the learned-scale path's exactly, per tensor and per channel.
#[test]
fn fixed_scale_input_gradient_equals_the_learned_scale_one() {
    let device = Device::flex().autodiff();
    for axis in [None, Some(1), Some(2)] {
        let (x, s, z) = problem(axis, &device);
        let w = Tensor::<1>::from_floats(uniform_signed(60, 9).as_slice(), &device).reshape(SHAPE);
        let run = |learn_scale: bool| {
            let x = x.clone().detach().require_grad();
            let mut scale = Tensor::<1>::from_floats(s.as_slice(), &device);
            if learn_scale {
                scale = scale.require_grad();
            }
            let zero = Tensor::<1>::from_floats(z.as_slice(), &device);
            let y = fused_fake_quant(x.clone(), scale, zero, axis, 0.0, 255.0);
            let grads = (y * w.clone()).sum().backward();
            host(x.grad(&grads).expect("x tracked"))
        };
        let fixed = run(false);
        assert_eq!(fixed, run(true), "axis {axis:?}");
        assert!(fixed.contains(&0.0), "some inputs must be clamped");
        assert!(fixed.iter().any(|&g| g != 0.0), "some inputs must pass");
    }
}

#[test]
#[should_panic(expected = "scales for axis")]
fn rejects_a_scale_of_the_wrong_length() {
    let device = Device::flex();
    let (x, _, _) = problem(None, &device);
    let _ = fused_fake_quant(
        x,
        Tensor::<1>::ones([3], &device),
        Tensor::<1>::zeros([3], &device),
        Some(1),
        0.0,
        255.0,
    );
}
