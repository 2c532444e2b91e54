//! Predictions of a trained model on sequences: class name and class probabilities per
//! sequence, from the float model, the fake-quantized model or the integer model that a
//! microcontroller runs.

use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use burn::tensor::activation::softmax;
use datasets::SequenceDataset;
use qat::QuantizedClassifier;
use qat::integer::IntegerModel;
use serde::Serialize;

use crate::checkpoint::load_classifier;
use crate::data::make_batch;
use crate::quantize::load_quantized;
use crate::run_dir::RunManifest;
use s4d_model::{S4dClassifier, SsmMode};

/// Which arithmetic makes the predictions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// The float model (convolution mode).
    Float,
    /// The fake-quantized model (recurrent mode, float arithmetic on integer grids).
    FakeQuant,
    /// The integer-only model, as the Rust reference of the exported C computes it.
    Integer,
}

/// A loaded model ready to predict.
pub enum Predictor {
    /// A float run.
    Float(Box<S4dClassifier>),
    /// A quantized run.
    FakeQuant(Box<QuantizedClassifier>),
    /// A quantized run converted to integers, with the logit grid's scale and zero points to
    /// turn logit codes into probabilities.
    Integer {
        /// The integer model.
        model: Box<IntegerModel>,
        /// Scale of one logit code.
        logit_scale: f32,
    },
}

/// One sequence's prediction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    /// Position of the sequence in the input file.
    pub index: usize,
    /// Predicted class name.
    pub class: String,
    /// The class's index.
    pub class_index: usize,
    /// Probability of every class, in class-index order.
    pub probabilities: Vec<f32>,
    /// The file's label for the sequence, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

impl Predictor {
    /// Loads the model of run directory `run` for `engine`: a float run for `Float`, a
    /// quantized run (`quant_state.json`) for `FakeQuant` and `Integer`.
    pub fn load(run: &Path, engine: Engine, device: &Device) -> Result<Self> {
        let quantized = run.join("quant_state.json").exists();
        match (engine, quantized) {
            (Engine::Float, false) => Ok(Self::Float(Box::new(load_classifier(run, device)?))),
            (Engine::Float, true) => bail!(
                "{} is a quantized run; predict with --engine fake-quant or integer",
                run.display()
            ),
            (_, false) => bail!(
                "{} is a float run; --engine fake-quant/integer need a quantized run (from `qat` or `export --spec`)",
                run.display()
            ),
            (Engine::FakeQuant, true) => {
                Ok(Self::FakeQuant(Box::new(load_quantized(run, device)?)))
            }
            (Engine::Integer, true) => {
                let q = load_quantized(run, device)?;
                let model = IntegerModel::derive(&q)
                    .with_context(|| format!("converting {} to integers", run.display()))?;
                let state = q.quant_state()?;
                let logit_scale = state
                    .quantizers
                    .get("logits")
                    .and_then(|s| s.scale.first().copied())
                    .context("the model has no logits quantizer, so no integer logits")?;
                Ok(Self::Integer {
                    model: Box::new(model),
                    logit_scale,
                })
            }
        }
    }

    /// Class probabilities of every sequence of `data` (already preprocessed), in order.
    pub fn probabilities(
        &self,
        data: &SequenceDataset,
        batch_size: usize,
        device: &Device,
    ) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(data.len());
        let indices: Vec<usize> = (0..data.len()).collect();
        match self {
            Self::Float(_) | Self::FakeQuant(_) => {
                for chunk in indices.chunks(batch_size.max(1)) {
                    let b = make_batch(data, chunk, device);
                    let logits = match self {
                        Self::Float(m) => {
                            m.forward_masked(b.inputs, SsmMode::Convolution, &b.lengths)
                        }
                        Self::FakeQuant(m) => m.forward_masked(b.inputs, &b.lengths)?,
                        Self::Integer { .. } => unreachable!("handled below"),
                    };
                    let p = softmax(logits, 1).into_data();
                    let p = p
                        .try_to_vec::<f32>()
                        .map_err(|e| anyhow::anyhow!("reading probabilities: {e:?}"))?;
                    out.extend(p.chunks(data.n_classes).map(<[f32]>::to_vec));
                }
            }
            Self::Integer { model, logit_scale } => {
                for i in indices {
                    let codes = integer_input_codes(model, data, i);
                    let (logits, _) = model.classify(&codes);
                    let vals: Vec<f32> = logits
                        .iter()
                        .zip(&model.logits_z)
                        .map(|(&c, &z)| (c as i32 - z) as f32 * logit_scale)
                        .collect();
                    out.push(softmax_host(&vals));
                }
            }
        }
        Ok(out)
    }
}

/// The input codes of sequence `i` over its real steps only, as the fake-quant input
/// quantizer rounds them.
pub fn integer_input_codes(model: &IntegerModel, data: &SequenceDataset, i: usize) -> Vec<i8> {
    let (row, _) = data.sample(i);
    row[..data.lengths[i] * data.d_input]
        .iter()
        .map(|&x| model.quantize_input(x))
        .collect()
}

fn softmax_host(v: &[f32]) -> Vec<f32> {
    let max = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = v.iter().map(|x| (x - max).exp()).collect();
    let sum: f32 = e.iter().sum();
    e.into_iter().map(|x| x / sum).collect()
}

/// Predictions for `data` with class names from `class_names`; `labelled` says whether the
/// dataset's labels are real (reported beside the prediction) or placeholders.
pub fn predict(
    predictor: &Predictor,
    data: &SequenceDataset,
    class_names: &[String],
    labelled: bool,
    batch_size: usize,
    device: &Device,
) -> Result<Vec<Prediction>> {
    let probs = predictor.probabilities(data, batch_size, device)?;
    Ok(probs
        .into_iter()
        .enumerate()
        .map(|(index, p)| {
            // First maximum, the integer runtime's tie rule.
            let class_index = p
                .iter()
                .enumerate()
                .fold(0, |best, (k, &v)| if v > p[best] { k } else { best });
            Prediction {
                index,
                class: class_names[class_index].clone(),
                class_index,
                probabilities: p,
                label: labelled.then(|| class_names[data.labels[index] as usize].clone()),
            }
        })
        .collect())
}

/// Reads the class names a run predicts (its manifest's label map).
pub fn class_names(run: &Path) -> Result<Vec<String>> {
    Ok(RunManifest::load(run)?.preprocess.class_names)
}
