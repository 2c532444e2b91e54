//! Streaming `step()` reproduces the whole-sequence recurrent forward.
mod common;

use burn::prelude::*;
use common::{lcg_values, rel_err, to_f64};
use s4d_model::{S4dConfig, SsmMode};

#[test]
fn step_l_times_equals_recurrent_forward() {
    let device = Device::flex();
    device.seed(1);
    let layer = S4dConfig::new(4).with_d_state(8).init(&device);
    let (batch, len, heads) = (2, 50, 4);
    let u = Tensor::<1>::from_floats(lcg_values(batch * len * heads, 9).as_slice(), &device)
        .reshape([batch, len, heads]);
    let whole = to_f64(layer.forward(u.clone(), SsmMode::Recurrent));
    let disc = layer.discretize();
    let mut state = layer.zero_state(batch);
    let mut ys = Vec::new();
    for t in 0..len {
        let u_t = u
            .clone()
            .slice([0..batch, t..t + 1, 0..heads])
            .reshape([batch, heads]);
        let (y_t, next) = layer.step(&disc, state, u_t);
        state = next;
        ys.push(y_t.unsqueeze_dim::<3>(1));
    }
    let streamed = to_f64(Tensor::cat(ys, 1));
    // Same arithmetic in the same order: only reshapes differ, so equality is exact up to
    // a couple of ulps.
    assert!(rel_err(&streamed, &whole) < 1e-6);
    // and the state after the last step is what a longer stream would continue from
    assert_eq!(state.x.re.dims(), [batch, heads, 4]);
}
