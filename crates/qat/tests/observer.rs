//! The state observer's trajectory path against the tensor path it replaces.

mod common;

use common::{host, uniform_signed};

use burn::prelude::*;
use qat::observer::{split_channels, trajectory_channels};
use qat::quantizer::stack_complex;
use qat::{Observer, QuantizerConfig, RangeMethod};
use s4d_model::ComplexTensor;

const DIMS: [usize; 3] = [3, 4, 6]; // [B, H, M]
const STEPS: usize = 5;

/// Per step, real and imaginary parts `[B, H, M]` with distinct values, so any difference
/// of order between the two paths shows.
fn steps() -> Vec<(Vec<f32>, Vec<f32>)> {
    let n: usize = DIMS.iter().product();
    (0..STEPS as u64)
        .map(|t| (uniform_signed(n, 2 * t + 1), uniform_signed(n, 2 * t + 2)))
        .collect()
}

/// The steps as the borrowed parts `observe_trajectory` takes.
fn views(steps: &[(Vec<f32>, Vec<f32>)]) -> Vec<(&[f32], &[f32])> {
    steps
        .iter()
        .map(|(re, im)| (re.as_slice(), im.as_slice()))
        .collect()
}

/// What calibration built before: the steps concatenated along the batch axis, real and
/// imaginary parts stacked by `stack_complex`, read back to the host.
fn stacked(steps: &[(Vec<f32>, Vec<f32>)], axis: Option<usize>) -> (Vec<f32>, Vec<usize>) {
    let device = Device::flex();
    let part = |v: &Vec<f32>| Tensor::<1>::from_floats(v.as_slice(), &device).reshape(DIMS);
    let re = Tensor::cat(steps.iter().map(|(re, _)| part(re)).collect(), 0);
    let im = Tensor::cat(steps.iter().map(|(_, im)| part(im)).collect(), 0);
    let t = stack_complex(&ComplexTensor::new(re, im), axis);
    let dims = t.dims().to_vec();
    (host(t), dims)
}

/// Every channel axis lists the same values in the same order as `split_channels` of the
/// stacked tensor (so even an order-dependent estimate, MSE's strided sample, agrees).
#[test]
fn trajectory_channels_list_the_stacked_tensor_in_order() {
    let steps = steps();
    let views = views(&steps);
    for axis in [None, Some(0), Some(1), Some(2)] {
        let (data, dims) = stacked(&steps, axis);
        assert_eq!(
            trajectory_channels(&views, DIMS, axis),
            split_channels(&data, &dims, axis),
            "axis {axis:?}"
        );
    }
}

/// The observer's ranges, bit for bit, for every range method, over two observations.
#[test]
fn observe_trajectory_equals_observe_of_the_stacked_tensor() {
    let steps = steps();
    let views = views(&steps);
    for (range, symmetric) in [
        (RangeMethod::MinMax, false),
        (RangeMethod::Percentile, true),
        (RangeMethod::Percentile, false),
        (RangeMethod::Mse, true),
    ] {
        for axis in [None, Some(1), Some(2)] {
            let cfg = QuantizerConfig::new(8)
                .with_range(range)
                .with_symmetric(symmetric)
                .with_percentile(90.0);
            let (data, dims) = stacked(&steps, axis);
            let mut old = Observer::new(cfg.clone(), axis);
            let mut new = Observer::new(cfg, axis);
            for _ in 0..2 {
                old.observe(&data, &dims);
                new.observe_trajectory(&views, DIMS);
            }
            assert_eq!(old.range(), new.range(), "{range:?} {symmetric} {axis:?}");
        }
    }
}
