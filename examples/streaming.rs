//! Streaming inference, the way a device runs S4D: one pixel at a time through `S4d::step`,
//! checked against the whole-sequence convolution view.
//!
//! `cargo run --release -p experiments --example streaming`

use burn::prelude::*;
use s4d_model::{S4dClassifierConfig, SsmMode};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let device = Device::flex();
    device.seed(0);
    let model = S4dClassifierConfig::preset("s4d-16h")?.init(&device);
    let split = datasets::load(
        datasets::DatasetName::Embedded,
        std::path::Path::new("data"),
    )?;
    let (pixels, label) = split.test.sample(0);
    let len = pixels.len();
    let x = Tensor::<1>::from_floats(pixels, &device).reshape([1, len, 1]);

    // Whole sequence at once (convolution view).
    let block = &model.blocks[0];
    let features = model.features(x.clone(), SsmMode::Convolution); // [1, L, H]

    // The same block, one time step at a time; the SSM keeps only its state between steps.
    let u = model.encoder.forward(x); // [1, L, H]
    let heads = block.s4d.heads();
    let disc = block.s4d.discretize();
    let mut state = block.s4d.zero_state(1);
    let mut max_err = 0.0f32;
    for t in 0..len {
        let u_t = u
            .clone()
            .slice([0..1, t..t + 1, 0..heads])
            .reshape([1, heads]);
        let (y_t, next) = block.s4d.step(&disc, state, u_t);
        state = next;
        let y_t = block.activation.forward(y_t);
        let h_t = burn::tensor::activation::glu(block.conv.forward(y_t), 1); // [1, H]
        let want = features
            .clone()
            .slice([0..1, t..t + 1, 0..heads])
            .reshape([1, heads]);
        let err = (h_t - want).abs().max().into_scalar::<f32>();
        max_err = max_err.max(err);
    }
    println!("sample 0 (label {label}): {len} steps, max |streamed - convolution| = {max_err:.2e}");
    Ok(())
}
