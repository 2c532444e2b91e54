//! Per-channel standardization (`(x - mean) / std`) fitted on training data.
//!
//! User sensor data (IMU in m/s², audio features in dB, ECG in mV) arrives on
//! wildly different scales per channel; a model trains better on
//! zero-mean, unit-variance inputs. The statistics are fitted on the train
//! split only, serialized next to the model, and applied unchanged to test
//! data and to single time steps on the device ([`Standardizer::apply_step`]).

use serde::{Deserialize, Serialize};

use crate::error::DatasetError;
use crate::sequence::SequenceDataset;

/// Below this standard deviation a channel counts as constant and is only
/// centred (its std is stored as 1.0), so it cannot blow up to inf/NaN.
pub const MIN_STD: f64 = 1e-8;

/// Mean and standard deviation of each input channel.
///
/// Exists so the exact normalization used in training can be saved (serde)
/// and replayed at inference time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Standardizer {
    /// Mean of each channel over all real (unpadded) steps.
    pub mean: Vec<f32>,
    /// Population standard deviation of each channel (1.0 for constant channels).
    pub std: Vec<f32>,
}

impl Standardizer {
    /// Fits per-channel mean and population std over every sequence's real
    /// steps (padding is ignored), accumulating in `f64`. A channel with
    /// std < [`MIN_STD`] gets std 1.0; an empty dataset gives the identity.
    pub fn fit(data: &SequenceDataset) -> Self {
        let d = data.d_input;
        let mut sum = vec![0.0f64; d];
        let mut count = 0usize;
        for (i, &len) in data.lengths.iter().enumerate() {
            let (x, _) = data.sample(i);
            for step in x[..len * d].chunks_exact(d) {
                for (s, &v) in sum.iter_mut().zip(step) {
                    *s += f64::from(v);
                }
            }
            count += len;
        }
        if count == 0 {
            return Self::identity(d);
        }
        let mean: Vec<f64> = sum.iter().map(|s| s / count as f64).collect();
        // Second pass on centred values: numerically safer than E[x²] - E[x]².
        let mut sq = vec![0.0f64; d];
        for (i, &len) in data.lengths.iter().enumerate() {
            let (x, _) = data.sample(i);
            for step in x[..len * d].chunks_exact(d) {
                for ((s, &v), m) in sq.iter_mut().zip(step).zip(&mean) {
                    let c = f64::from(v) - m;
                    *s += c * c;
                }
            }
        }
        let std = sq
            .iter()
            .map(|s| {
                let sd = (s / count as f64).sqrt();
                if sd < MIN_STD { 1.0 } else { sd as f32 }
            })
            .collect();
        Self {
            mean: mean.iter().map(|&m| m as f32).collect(),
            std,
        }
    }

    /// The no-op standardizer (mean 0, std 1) for `d_input` channels, for
    /// data that is already normalized (e.g. pixels in `[0, 1]`).
    pub fn identity(d_input: usize) -> Self {
        Self {
            mean: vec![0.0; d_input],
            std: vec![1.0; d_input],
        }
    }

    /// Number of channels it was fitted on.
    pub fn d_input(&self) -> usize {
        self.mean.len()
    }

    /// Standardizes every real step of `data` in place; padding stays exactly
    /// 0. Errors if `data` has a different number of channels (or the
    /// standardizer itself is inconsistent, e.g. after hand-editing its JSON).
    pub fn apply(&self, data: &mut SequenceDataset) -> Result<(), DatasetError> {
        let d = data.d_input;
        if self.mean.len() != d || self.std.len() != d {
            return Err(DatasetError::Shape {
                name: data.name.clone(),
                reason: format!(
                    "standardizer has {} means and {} stds but the data has d_input = {d}",
                    self.mean.len(),
                    self.std.len()
                ),
            });
        }
        if let Some(c) = self.std.iter().position(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(DatasetError::Shape {
                name: data.name.clone(),
                reason: format!("standardizer std of channel {c} is {}", self.std[c]),
            });
        }
        let row = data.row_len();
        for (r, &len) in data.lengths.iter().enumerate() {
            let x = &mut data.inputs[r * row..r * row + len * d];
            for step in x.chunks_exact_mut(d) {
                self.apply_step(step);
            }
        }
        Ok(())
    }

    /// Standardizes one time step (`d_input` values) in place: the streaming
    /// path on a device.
    ///
    /// # Panics
    /// If `x.len()` differs from the number of channels (a programming error,
    /// checked once by the caller, not per step).
    pub fn apply_step(&self, x: &mut [f32]) {
        assert_eq!(
            x.len(),
            self.mean.len(),
            "time step has {} channels, standardizer {}",
            x.len(),
            self.mean.len()
        );
        for ((v, m), s) in x.iter_mut().zip(&self.mean).zip(&self.std) {
            *v = (*v - m) / s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two sequences, d = 2: lengths 2 and 1 of seq_len 3; padding is zero.
    fn padded() -> SequenceDataset {
        let seqs = vec![vec![1.0, 10.0, 3.0, 10.0], vec![5.0, 10.0]];
        SequenceDataset::from_sequences("p", &seqs, vec![0, 1], 2, 2).unwrap()
    }

    #[test]
    fn fit_ignores_padding_and_constant_channels_get_unit_std() {
        let ds = padded();
        assert_eq!(ds.seq_len, 2);
        let s = Standardizer::fit(&ds);
        // Channel 0 real values 1, 3, 5: mean 3, population std sqrt(8/3).
        assert!((s.mean[0] - 3.0).abs() < 1e-6, "{s:?}");
        assert!((s.std[0] - (8.0f32 / 3.0).sqrt()).abs() < 1e-6, "{s:?}");
        // Channel 1 is constant 10 on real steps (padding 0 would give std 5).
        assert_eq!((s.mean[1], s.std[1]), (10.0, 1.0));
    }

    #[test]
    fn apply_keeps_padding_zero_and_centres_real_steps() {
        let mut ds = padded();
        let s = Standardizer::fit(&ds);
        s.apply(&mut ds).unwrap();
        // Row 1 has length 1: its second step is padding.
        assert_eq!(&ds.inputs[6..8], &[0.0, 0.0]);
        let (x, _) = ds.sample(0);
        assert!(
            (x[0] + (3.0f32 / 8.0).sqrt() * 2.0 / 1.0).abs() < 1e-5,
            "{x:?}"
        );
        assert_eq!(x[1], 0.0);
        let refit = Standardizer::fit(&ds);
        assert!(refit.mean.iter().all(|m| m.abs() < 1e-6), "{refit:?}");
        assert!((refit.std[0] - 1.0).abs() < 1e-5, "{refit:?}");
    }

    #[test]
    fn apply_rejects_channel_mismatch_and_identity_is_noop() {
        let mut ds = padded();
        let before = ds.clone();
        let err = Standardizer::identity(3).apply(&mut ds).unwrap_err();
        assert!(err.to_string().contains("d_input = 2"), "{err}");
        Standardizer::identity(2).apply(&mut ds).unwrap();
        assert_eq!(ds, before);
        let bad = Standardizer {
            mean: vec![0.0; 2],
            std: vec![1.0, 0.0],
        };
        assert!(bad.apply(&mut ds).is_err());
    }

    #[test]
    fn serde_json_round_trip_is_exact() {
        let s = Standardizer::fit(&padded());
        let json = serde_json::to_string(&s).unwrap();
        let back: Standardizer = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        let mut step = [3.0, 10.0];
        back.apply_step(&mut step);
        assert_eq!(step, [0.0, 0.0]);
    }
}
