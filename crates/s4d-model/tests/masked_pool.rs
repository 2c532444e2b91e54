//! Unequal-length sequences in one padded batch: every sequence must get the logits it gets
//! alone. The SSM is causal, so only the mean pool can leak padding into a result.

use burn::prelude::*;
use burn::tensor::TensorData;
use s4d_model::{S4dClassifier, S4dClassifierConfig, S4dConfig, SsmMode, masked_mean};

const D_INPUT: usize = 3;

fn model(device: &Device) -> S4dClassifier {
    device.seed(7);
    S4dClassifierConfig::new(S4dConfig::new(8).with_d_state(8))
        .with_d_input(D_INPUT)
        .with_n_classes(4)
        .init(device)
}

/// Deterministic inputs in [-1, 1) from a small LCG, `len * D_INPUT` values.
fn sequence(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len * D_INPUT)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn logits_alone(m: &S4dClassifier, seq: &[f32], mode: SsmMode, device: &Device) -> Vec<f32> {
    let len = seq.len() / D_INPUT;
    let x = Tensor::<3>::from_data(TensorData::new(seq.to_vec(), [1, len, D_INPUT]), device);
    m.forward(x, mode).into_data().try_to_vec::<f32>().unwrap()
}

/// Max |a - b| over two logit vectors.
fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn padded_batch_gives_each_sequence_its_own_logits() {
    let device = Device::flex();
    let m = model(&device);
    let lengths = [5usize, 13, 9, 1];
    let longest = 13;
    let seqs: Vec<Vec<f32>> = lengths
        .iter()
        .enumerate()
        .map(|(i, &l)| sequence(l, i as u64 + 1))
        .collect();
    let mut padded = vec![0.0f32; lengths.len() * longest * D_INPUT];
    for (i, s) in seqs.iter().enumerate() {
        padded[i * longest * D_INPUT..][..s.len()].copy_from_slice(s);
    }
    for mode in [SsmMode::Convolution, SsmMode::Recurrent] {
        let x = Tensor::<3>::from_data(
            TensorData::new(padded.clone(), [lengths.len(), longest, D_INPUT]),
            &device,
        );
        let batch = m
            .forward_masked(x, mode, &lengths)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        for (i, s) in seqs.iter().enumerate() {
            let alone = logits_alone(&m, s, mode, &device);
            // f32 sums over at most 13 steps of O(1) features, taken in another order (a
            // weighted sum vs a mean, FFT lengths 16 vs 32): differences of a few ulp of 1.
            let d = max_diff(&batch[i * 4..(i + 1) * 4], &alone);
            assert!(d < 1e-5, "{mode:?} sequence {i}: max diff {d}");
        }
    }
}

#[test]
fn masked_mean_is_the_plain_mean_at_full_length_and_ignores_padding() {
    let device = Device::flex();
    let h = Tensor::<3>::from_data(
        TensorData::new((0..24).map(|v| v as f32).collect::<Vec<_>>(), [2, 4, 3]),
        &device,
    );
    let full = masked_mean(h.clone(), &[4, 4])
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let mean = h
        .clone()
        .mean_dim(1)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    assert_eq!(full, mean, "bit-identical at full length");
    // Sequence 0 keeps steps 0..2: channel c averages c and 3 + c; sequence 1 keeps step 0.
    let part = masked_mean(h, &[2, 1])
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    assert_eq!(part, vec![1.5, 2.5, 3.5, 12.0, 13.0, 14.0]);
}
