//! Test-set evaluation of a float classifier.

use burn::nn::loss::CrossEntropyLossConfig;
use burn::prelude::*;
use datasets::SequenceDataset;
use serde::{Deserialize, Serialize};

use crate::data::make_batch;
use crate::progress::progress_bar;
use crate::train::count_correct;
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

/// Evaluates `model` on all of `data` in order.
pub fn evaluate(
    model: &S4dClassifier,
    data: &SequenceDataset,
    batch_size: usize,
    mode: SsmMode,
    device: &Device,
) -> Evaluation {
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    let indices: Vec<usize> = (0..data.len()).collect();
    let bar = progress_bar(indices.len().div_ceil(batch_size) as u64, "eval");
    let (mut correct, mut loss_sum) = (0usize, 0.0f64);
    for chunk in indices.chunks(batch_size) {
        let batch = make_batch(data, chunk, device);
        let logits = model.forward(batch.inputs, mode);
        loss_sum += loss_fn
            .forward(logits.clone(), batch.targets.clone())
            .into_scalar::<f32>()
            .to_f64()
            * chunk.len() as f64;
        correct += count_correct(logits, batch.targets);
        bar.inc(1);
    }
    bar.finish_and_clear();
    Evaluation {
        accuracy: 100.0 * correct as f64 / data.len() as f64,
        loss: loss_sum / data.len() as f64,
        samples: data.len(),
    }
}
