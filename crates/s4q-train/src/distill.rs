//! Knowledge distillation for QAT fine-tuning: the float model a QAT run starts from is also
//! its teacher.
//!
//! A low-bit student trained on hard labels alone only learns which class wins; the float
//! model's full output distribution also says how close the runners-up were, which is the
//! information quantization noise destroys first. With `weight` w and temperature T the
//! training loss becomes
//!
//! `(1 - w) * CE(student, labels) + w * T^2 * KL(softmax(teacher / T) || softmax(student / T))`,
//!
//! the T² keeping the soft term's gradient on the same scale as the hard term's as T grows.
//! The teacher is frozen and the training data has no augmentation, so its logits are the same
//! every epoch: [`TeacherLogits`] computes them once per training sequence, without autodiff and
//! in convolution mode, and each step gathers the rows of its batch.

use anyhow::{Result, bail};
use burn::prelude::*;
use burn::tensor::TensorData;
use burn::tensor::activation::{log_softmax, softmax};
use datasets::SequenceDataset;
use s4d_model::{S4dClassifier, SsmMode};
use serde::{Deserialize, Serialize};

use crate::data::make_batch;
use crate::progress::progress_bar;

/// The frozen teacher's logits for every sequence of a dataset, kept on the host: one float
/// inference pass for the whole run instead of one per epoch (`C` floats per sequence).
#[derive(Debug, Clone)]
pub struct TeacherLogits {
    classes: usize,
    /// `[N, C]` row-major, row `i` for sequence `i`.
    rows: Vec<f32>,
}

impl TeacherLogits {
    /// Runs `teacher` over all of `data`, `batch_size` sequences at a time. Sequences are
    /// batched in order of length, so unequal-length data pads each batch little; the masked
    /// forward makes a sequence's logits independent of its batch up to f32 rounding.
    pub fn compute(
        teacher: &S4dClassifier,
        data: &SequenceDataset,
        batch_size: usize,
        device: &Device,
    ) -> Result<Self> {
        let classes = data.n_classes;
        let mut order: Vec<usize> = (0..data.len()).collect();
        order.sort_by_key(|&i| data.lengths[i]);
        let mut rows = vec![0.0f32; data.len() * classes];
        let batch_size = batch_size.max(1);
        let bar = progress_bar(data.len().div_ceil(batch_size) as u64, "teacher logits");
        for chunk in order.chunks(batch_size) {
            let batch = make_batch(data, chunk, device);
            let out = teacher.forward_masked(batch.inputs, SsmMode::Convolution, &batch.lengths);
            let [n, c] = out.dims();
            if n != chunk.len() || c != classes {
                bail!(
                    "the teacher gives [{n}, {c}] logits for a batch of {} sequences of {classes} classes",
                    chunk.len()
                );
            }
            let values: Vec<f32> = out
                .into_data()
                .try_to_vec::<f32>()
                .map_err(|e| anyhow::anyhow!("teacher logits: {e:?}"))?;
            for (&i, row) in chunk.iter().zip(values.chunks_exact(classes)) {
                rows[i * classes..(i + 1) * classes].copy_from_slice(row);
            }
            bar.inc(1);
        }
        bar.finish_and_clear();
        Ok(Self { classes, rows })
    }

    /// The logits of the sequences `indices`, in that order: `[indices.len(), C]`.
    ///
    /// # Panics
    /// If an index is out of range; indices come from the trainer's own epoch order.
    pub fn gather(&self, indices: &[usize], device: &Device) -> Tensor<2> {
        let c = self.classes;
        let mut flat = Vec::with_capacity(indices.len() * c);
        for &i in indices {
            flat.extend_from_slice(&self.rows[i * c..(i + 1) * c]);
        }
        Tensor::from_data(TensorData::new(flat, [indices.len(), c]), device)
    }
}

/// How much of the QAT loss comes from matching the float teacher, and how soft its targets
/// are; stored in `qat_config.json`, so a resumed run distils the same way.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct DistillConfig {
    /// Share `w` of the distillation term, in (0, 1]; 1 trains on the teacher alone.
    pub weight: f32,
    /// Softmax temperature `T > 0` of teacher and student in the distillation term.
    pub temperature: f32,
}

impl DistillConfig {
    /// Rejects weights outside (0, 1] and non-positive or non-finite temperatures.
    pub fn validate(&self) -> Result<()> {
        if !(self.weight > 0.0 && self.weight <= 1.0) {
            bail!("--distill must be in (0, 1], got {}", self.weight);
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            bail!(
                "--distill-temperature must be a positive number, got {}",
                self.temperature
            );
        }
        Ok(())
    }

    /// The combined loss from the hard-label loss `ce` (a scalar), the student's logits and the
    /// teacher's (`[B, C]`; the teacher's carry no graph).
    pub fn loss(&self, ce: Tensor<1>, student: Tensor<2>, teacher: Tensor<2>) -> Tensor<1> {
        let soft = distillation_loss(student, teacher, self.temperature);
        if self.weight >= 1.0 {
            soft
        } else {
            ce.mul_scalar(1.0 - self.weight) + soft.mul_scalar(self.weight)
        }
    }
}

/// `T^2 * KL(softmax(teacher / T) || softmax(student / T))`, averaged over the batch: 0 exactly
/// when the two distributions agree. Its gradient with respect to the student logits is
/// `T * (softmax(student / T) - softmax(teacher / T)) / B`.
pub fn distillation_loss(student: Tensor<2>, teacher: Tensor<2>, temperature: f32) -> Tensor<1> {
    let batch = student.dims()[0].max(1);
    let inv_t = 1.0 / temperature;
    let log_q = log_softmax(student.mul_scalar(inv_t), 1);
    let teacher = teacher.mul_scalar(inv_t);
    let log_p = log_softmax(teacher.clone(), 1);
    let p = softmax(teacher, 1);
    (p * (log_p - log_q))
        .sum()
        .mul_scalar(temperature * temperature / batch as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits(rows: &[[f32; 4]], device: &Device) -> Tensor<2> {
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        Tensor::from_data(TensorData::new(flat, [rows.len(), 4]), device)
    }

    /// `T^2 * mean_b KL(p_b || q_b)` in f64, straight from the definition.
    fn reference(student: &[[f32; 4]], teacher: &[[f32; 4]], t: f64) -> f64 {
        let soft = |row: &[f32; 4]| {
            let z: Vec<f64> = row.iter().map(|&v| v as f64 / t).collect();
            let m = z.iter().cloned().fold(f64::MIN, f64::max);
            let e: Vec<f64> = z.iter().map(|v| (v - m).exp()).collect();
            let s: f64 = e.iter().sum();
            e.into_iter().map(|v| v / s).collect::<Vec<f64>>()
        };
        let kl: f64 = student
            .iter()
            .zip(teacher)
            .map(|(s, te)| {
                let (q, p) = (soft(s), soft(te));
                p.iter().zip(&q).map(|(p, q)| p * (p / q).ln()).sum::<f64>()
            })
            .sum();
        t * t * kl / student.len() as f64
    }

    const STUDENT: [[f32; 4]; 3] = [
        [2.0, -1.0, 0.5, 0.0],
        [-3.0, 4.0, 1.0, 0.25],
        [0.0, 0.0, 0.0, 8.0],
    ];
    const TEACHER: [[f32; 4]; 3] = [
        [3.0, -2.0, 0.0, 0.5],
        [-1.0, 6.0, 0.5, -0.5],
        [1.0, -1.0, 0.0, 5.0],
    ];

    #[test]
    fn loss_matches_the_f64_definition() {
        let device = Device::flex();
        for t in [0.5f32, 1.0, 2.0, 4.0] {
            let got = distillation_loss(logits(&STUDENT, &device), logits(&TEACHER, &device), t)
                .into_scalar::<f32>() as f64;
            let want = reference(&STUDENT, &TEACHER, t as f64);
            // f32 log-softmax of logits below 20 in magnitude: a few ulps of the log terms
            // (~1e-6 each), times T^2 <= 16.
            assert!((got - want).abs() < 1e-4, "T = {t}: {got} vs {want}");
            assert!(want > 1e-3, "the test pairs must disagree at T = {t}");
        }
        let same = distillation_loss(logits(&STUDENT, &device), logits(&STUDENT, &device), 2.0)
            .into_scalar::<f32>();
        assert!(same.abs() < 1e-6, "identical logits give {same}");
    }

    #[test]
    fn gradient_matches_the_closed_form_and_finite_differences() {
        let device = Device::flex().autodiff();
        let t = 2.0f32;
        let student = logits(&STUDENT, &device).require_grad();
        let teacher = logits(&TEACHER, &device).inner();
        let loss = distillation_loss(student.clone(), teacher, t);
        let grads = loss.backward();
        let got: Vec<f32> = student
            .grad(&grads)
            .expect("the student logits are tracked")
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32 gradient");
        let b = STUDENT.len() as f64;
        let td = t as f64;
        for (row, (s, te)) in STUDENT.iter().zip(&TEACHER).enumerate() {
            let soft = |r: &[f32; 4]| {
                let e: Vec<f64> = r.iter().map(|&v| (v as f64 / td).exp()).collect();
                let sum: f64 = e.iter().sum();
                e.into_iter().map(|v| v / sum).collect::<Vec<f64>>()
            };
            let (q, p) = (soft(s), soft(te));
            for c in 0..4 {
                let closed = td * (q[c] - p[c]) / b;
                // Central difference of the f64 reference, step 1e-3: its truncation error is
                // O(h^2) times the third derivative, far below 1e-5 for these logits.
                let h = 1e-3f32;
                let shifted = |d: f32| {
                    let mut s2 = STUDENT;
                    s2[row][c] += d;
                    reference(&s2, &TEACHER, td)
                };
                let fd = (shifted(h) - shifted(-h)) / (2.0 * h as f64);
                let g = got[row * 4 + c] as f64;
                // f32 softmax differences: ~1e-7 relative, well inside 1e-5.
                assert!(
                    (g - closed).abs() < 1e-5,
                    "[{row},{c}] {g} vs closed {closed}"
                );
                assert!(
                    (fd - closed).abs() < 1e-4,
                    "[{row},{c}] fd {fd} vs {closed}"
                );
            }
        }
    }

    /// The cached rows equal each sequence run alone, unpadded and in recurrent mode (no FFT, no
    /// batch), whatever order the trainer gathers them in.
    #[test]
    fn teacher_logits_match_each_sequence_run_alone() {
        use s4d_model::{S4dClassifierConfig, S4dConfig};
        let device = Device::flex();
        let (d, k) = (2usize, 3usize);
        let lengths = [5usize, 12, 1, 9, 12, 3, 7];
        let sequences: Vec<Vec<f32>> = lengths
            .iter()
            .enumerate()
            .map(|(i, &l)| {
                (0..l * d)
                    .map(|j| ((i * 31 + j * 7) % 13) as f32 / 6.5 - 1.0)
                    .collect()
            })
            .collect();
        let labels = (0..lengths.len() as u32).map(|i| i % 3).collect();
        let data = SequenceDataset::from_sequences("toy", &sequences, labels, d, k).unwrap();
        let model = S4dClassifierConfig::new(S4dConfig::new(4).with_d_state(4))
            .with_d_input(d)
            .with_n_classes(k)
            .init(&device);
        // Batches of 3 mix lengths, so most rows are computed padded.
        let cache = TeacherLogits::compute(&model, &data, 3, &device).unwrap();
        let order = [6usize, 0, 4, 2, 5, 1, 3];
        let got = cache
            .gather(&order, &device)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(got.len(), order.len() * k);
        for (row, &i) in order.iter().enumerate() {
            let x = Tensor::<3>::from_data(
                TensorData::new(sequences[i].clone(), [1, lengths[i], d]),
                &device,
            );
            let want = model
                .forward(x, SsmMode::Recurrent)
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            for c in 0..k {
                let g = got[row * k + c];
                // f32 FFT convolution against an f32 scan over at most 12 steps of O(1)
                // values: both round at ~1e-7 relative per step, far inside 1e-4.
                assert!(
                    (g - want[c]).abs() < 1e-4,
                    "sequence {i} class {c}: {g} vs {}",
                    want[c]
                );
            }
        }
    }

    #[test]
    fn weight_mixes_the_hard_and_soft_terms() {
        let device = Device::flex();
        let ce = Tensor::<1>::from_floats([0.7f32], &device);
        let soft = reference(&STUDENT, &TEACHER, 1.0) as f32;
        let mixed = DistillConfig {
            weight: 0.25,
            temperature: 1.0,
        }
        .loss(
            ce.clone(),
            logits(&STUDENT, &device),
            logits(&TEACHER, &device),
        )
        .into_scalar::<f32>();
        assert!((mixed - (0.75 * 0.7 + 0.25 * soft)).abs() < 1e-5);
        let pure = DistillConfig {
            weight: 1.0,
            temperature: 1.0,
        }
        .loss(ce, logits(&STUDENT, &device), logits(&TEACHER, &device))
        .into_scalar::<f32>();
        assert!((pure - soft).abs() < 1e-5);
    }

    #[test]
    fn invalid_settings_are_refused() {
        for (weight, temperature) in [(0.0, 1.0), (1.5, 1.0), (f32::NAN, 1.0), (0.5, 0.0)] {
            let cfg = DistillConfig {
                weight,
                temperature,
            };
            assert!(cfg.validate().is_err(), "{cfg:?} accepted");
        }
        assert!(
            DistillConfig {
                weight: 0.5,
                temperature: f32::INFINITY
            }
            .validate()
            .is_err()
        );
        let ok = DistillConfig {
            weight: 1.0,
            temperature: 2.0,
        };
        ok.validate().expect("valid settings");
        let json = serde_json::to_string(&ok).expect("serializes");
        assert_eq!(
            serde_json::from_str::<DistillConfig>(&json).expect("parses"),
            ok
        );
    }
}
