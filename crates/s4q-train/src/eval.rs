//! Evaluation of float and fake-quantized classifiers: one batched loop, two models.

use anyhow::Result;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::prelude::*;
use datasets::SequenceDataset;
use qat::QuantizedClassifier;
use serde::{Deserialize, Serialize};

use crate::data::{Batch, make_batch};
use crate::progress::progress_bar;
use s4d_model::{S4dClassifier, SsmMode};

/// Accuracy (%) and mean cross-entropy over a dataset.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Evaluation {
    /// Top-1 accuracy in percent.
    pub accuracy: f64,
    /// Mean cross-entropy.
    pub loss: f64,
    /// Sequences evaluated.
    pub samples: usize,
}

/// Runs `logits` over `data` in order, `batch_size` sequences at a time (each batch padded to
/// its longest sequence), and scores the results: the loop every evaluation shares.
pub fn evaluate_with(
    data: &SequenceDataset,
    batch_size: usize,
    label: &str,
    device: &Device,
    mut logits: impl FnMut(&Batch) -> Result<Tensor<2>>,
) -> Result<Evaluation> {
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    let indices: Vec<usize> = (0..data.len()).collect();
    let bar = progress_bar(indices.len().div_ceil(batch_size) as u64, label);
    let (mut correct, mut loss_sum) = (0usize, 0.0f64);
    for chunk in indices.chunks(batch_size) {
        let batch = make_batch(data, chunk, device);
        let out = logits(&batch)?;
        loss_sum += loss_fn
            .forward(out.clone(), batch.targets.clone())
            .into_scalar::<f32>()
            .to_f64()
            * chunk.len() as f64;
        correct += count_correct(out, batch.targets);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let n = data.len().max(1) as f64;
    Ok(Evaluation {
        accuracy: 100.0 * correct as f64 / n,
        loss: loss_sum / n,
        samples: data.len(),
    })
}

/// Evaluates a float model on all of `data` in `mode`.
pub fn evaluate(
    model: &S4dClassifier,
    data: &SequenceDataset,
    batch_size: usize,
    mode: SsmMode,
    device: &Device,
) -> Evaluation {
    let run = evaluate_with(data, batch_size, "eval", device, |b| {
        Ok(model.forward_masked(b.inputs.clone(), mode, &b.lengths))
    });
    // The float forward has no failure path, so neither has its evaluation.
    run.unwrap_or_else(|e| unreachable!("float evaluation cannot fail: {e}"))
}

/// Evaluates a fake-quantized model (recurrent mode) on all of `data`.
pub fn evaluate_quantized_full(
    model: &QuantizedClassifier,
    data: &SequenceDataset,
    batch_size: usize,
    device: &Device,
) -> Result<Evaluation> {
    evaluate_with(data, batch_size, "eval (quantized)", device, |b| {
        Ok(model.forward_masked(b.inputs.clone(), &b.lengths)?)
    })
}

/// Test accuracy (%) of a fake-quantized model (recurrent mode).
pub fn evaluate_quantized(
    model: &QuantizedClassifier,
    data: &SequenceDataset,
    batch_size: usize,
    device: &Device,
) -> Result<f64> {
    Ok(evaluate_quantized_full(model, data, batch_size, device)?.accuracy)
}

/// Number of rows whose argmax equals the target.
pub fn count_correct(logits: Tensor<2>, targets: Tensor<1, Int>) -> usize {
    let pred = logits.argmax(1).squeeze_dim::<1>(1);
    pred.equal(targets)
        .int()
        .sum()
        .into_scalar::<i64>()
        .to_i64() as usize
}
