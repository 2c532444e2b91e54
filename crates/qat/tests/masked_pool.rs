//! A fake-quantized model on a padded batch of unequal-length sequences gives each sequence
//! the logits it gets alone: padding reaches neither the (causal) recurrent scan of the real
//! steps nor the masked mean pool.

mod common;

use burn::prelude::*;
use burn::tensor::TensorData;
use common::{host, uniform_signed};
use qat::{Parameterization, QuantSpec, QuantizedClassifier, calibrate};
use s4d_model::{S4dClassifierConfig, S4dConfig};

const D_INPUT: usize = 2;
const CLASSES: usize = 3;

#[test]
fn padded_batch_matches_each_sequence_alone_under_fake_quant() {
    let device = Device::flex();
    device.seed(3);
    let float = S4dClassifierConfig::new(S4dConfig::new(8).with_d_state(8))
        .with_d_input(D_INPUT)
        .with_n_classes(CLASSES)
        .init(&device);
    let spec = QuantSpec::preset("w8a8").unwrap();
    let mut q = QuantizedClassifier::from_float(float, spec, Parameterization::Continuous).unwrap();
    let longest = 12;
    let calib = Tensor::<3>::from_data(
        TensorData::new(
            uniform_signed(4 * longest * D_INPUT, 9),
            [4, longest, D_INPUT],
        ),
        &device,
    );
    calibrate(&mut q, [calib]).unwrap();

    let lengths = [4usize, 12, 7];
    let seqs: Vec<Vec<f32>> = lengths
        .iter()
        .enumerate()
        .map(|(i, &l)| uniform_signed(l * D_INPUT, 20 + i as u64))
        .collect();
    let mut padded = vec![0.0f32; lengths.len() * longest * D_INPUT];
    for (i, s) in seqs.iter().enumerate() {
        padded[i * longest * D_INPUT..][..s.len()].copy_from_slice(s);
    }
    let x = Tensor::<3>::from_data(
        TensorData::new(padded, [lengths.len(), longest, D_INPUT]),
        &device,
    );
    let batch = host(q.forward_masked(x, &lengths).unwrap());
    for (i, s) in seqs.iter().enumerate() {
        let alone = Tensor::<3>::from_data(
            TensorData::new(s.clone(), [1, lengths[i], D_INPUT]),
            &device,
        );
        let alone = host(q.forward(alone).unwrap());
        // Both paths quantize the same real steps on the same static grids; only the pool's
        // float sum differs in order (a weighted sum vs a mean), a few ulp before the decoder,
        // which the logit grid (a step of ~1e-2 here) absorbs or passes through unchanged.
        let diff = batch[i * CLASSES..(i + 1) * CLASSES]
            .iter()
            .zip(&alone)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(diff < 1e-5, "sequence {i}: max diff {diff}");
    }
}
