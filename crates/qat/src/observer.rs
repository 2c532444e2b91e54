//! Range observers: turn observed values into a clipping range `[lo, hi]` per channel.
//!
//! Estimation runs on the host (values are read back once per observation).
//! - `min_max`: the extremes.
//! - `percentile`: the `p`-th and `(100 - p)`-th percentiles (linear interpolation between order
//!   statistics, like `numpy.percentile`); symmetric quantizers use the `p`-th percentile of `|x|`.
//! - `mse`: the min-max range shrunk by the ratio `k / mse_steps`, `k = 1..=mse_steps`, that
//!   minimises the mean squared fake-quantization error (on at most [`MSE_MAX_SAMPLES`]
//!   evenly strided values per channel, to bound the cost).
//!
//! Static calibration over several observations (batches) combines them as: extremes of the
//! extremes for `min_max`, the mean of the per-observation ranges for `percentile` and `mse`
//! (per-batch averaging, as e.g. PyTorch's moving-average observers do without momentum).

use crate::quantizer::{QuantizerConfig, RangeMethod, affine_params};
use crate::rounding::round_half_even_f32;

/// Cap on values per channel the MSE search evaluates, so a state tensor stays cheap.
pub const MSE_MAX_SAMPLES: usize = 65_536;

/// Splits row-major `data` of shape `dims` into per-channel value lists along `axis`
/// (`None`: one list with everything).
pub fn split_channels(data: &[f32], dims: &[usize], axis: Option<usize>) -> Vec<Vec<f32>> {
    let Some(axis) = axis else {
        return vec![data.to_vec()];
    };
    let channels = dims[axis];
    let inner: usize = dims[axis + 1..].iter().product();
    let mut out = vec![Vec::with_capacity(data.len() / channels.max(1)); channels];
    for (i, v) in data.iter().enumerate() {
        out[(i / inner) % channels].push(*v);
    }
    out
}

/// Per-channel values of a complex trajectory (per step, real and imaginary parts of shape
/// `[B, H, M]`), listed as [`split_channels`] lists the tensor that concatenates the steps
/// along the batch axis and stacks the parts as `stack_complex` does: along the last axis
/// (`[L B, H, 2 M]`), or along the first when the channel axis is the last (`[2 L B, H, M]`).
pub fn trajectory_channels(
    steps: &[(&[f32], &[f32])],
    [batch, heads, modes]: [usize; 3],
    axis: Option<usize>,
) -> Vec<Vec<f32>> {
    let rows = steps.len() * batch;
    let total = 2 * rows * heads * modes;
    let lists = |channels: usize| -> Vec<Vec<f32>> {
        (0..channels)
            .map(|_| Vec::with_capacity(total / channels.max(1)))
            .collect()
    };
    match axis {
        Some(2) => {
            // [2 L B, H, M]: every real part, then every imaginary part; channel = mode.
            let mut out = lists(modes);
            for part in 0..2 {
                for (re, im) in steps {
                    let v = if part == 0 { re } else { im };
                    for (i, &x) in v.iter().enumerate() {
                        out[i % modes].push(x);
                    }
                }
            }
            out
        }
        None | Some(0) | Some(1) => {
            // [L B, H, 2 M]: per row and head, M real parts then M imaginary parts.
            let channels = match axis {
                None => 1,
                Some(0) => rows,
                _ => heads,
            };
            let mut out = lists(channels);
            for (t, (re, im)) in steps.iter().enumerate() {
                for b in 0..batch {
                    for h in 0..heads {
                        let at = (b * heads + h) * modes;
                        let c = match axis {
                            None => 0,
                            Some(0) => t * batch + b,
                            _ => h,
                        };
                        out[c].extend_from_slice(&re[at..at + modes]);
                        out[c].extend_from_slice(&im[at..at + modes]);
                    }
                }
            }
            out
        }
        Some(a) => panic!("trajectory_channels: axis {a} out of range for [B, H, M] states"),
    }
}

/// `q`-quantile (`q` in [0, 1]) of `values` with linear interpolation; reorders `values`.
fn quantile(values: &mut [f32], q: f64) -> f32 {
    let n = values.len();
    if n == 0 {
        return 0.0;
    }
    let pos = q * (n - 1) as f64;
    let k = pos.floor() as usize;
    let frac = (pos - k as f64) as f32;
    let (_, kth, right) = values.select_nth_unstable_by(k, f32::total_cmp);
    let lower = *kth;
    if frac == 0.0 || right.is_empty() {
        return lower;
    }
    let upper = right.iter().copied().fold(f32::INFINITY, f32::min);
    lower + frac * (upper - lower)
}

/// Mean squared error of fake-quantizing `values` with range `[lo, hi]` under `cfg`.
fn quant_mse(values: &[f32], lo: f32, hi: f32, cfg: &QuantizerConfig) -> f64 {
    let (scale, zp) = affine_params(lo, hi, cfg);
    let (qmin, qmax) = cfg.grid();
    values
        .iter()
        .map(|&x| {
            let q = round_half_even_f32((x / scale + zp).clamp(qmin, qmax));
            let e = f64::from((q - zp) * scale - x);
            e * e
        })
        .sum::<f64>()
        / values.len().max(1) as f64
}

/// Clipping range of one channel's values under `cfg` (see the module doc). `values` is
/// scratch: it comes back reordered, and as magnitudes for a symmetric percentile.
pub fn estimate_range(values: &mut [f32], cfg: &QuantizerConfig) -> (f32, f32) {
    if values.is_empty() {
        return (0.0, 0.0);
    }
    let (mut lo, mut hi) = values
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    if cfg.symmetric {
        let amax = lo.abs().max(hi.abs());
        (lo, hi) = (-amax, amax);
    }
    match cfg.range {
        RangeMethod::MinMax => (lo, hi),
        RangeMethod::Percentile => {
            let p = cfg.percentile / 100.0;
            if cfg.symmetric {
                // `values` is scratch: take magnitudes in place instead of in a copy.
                values.iter_mut().for_each(|v| *v = v.abs());
                let a = quantile(values, p);
                (-a, a)
            } else {
                let l = quantile(values, 1.0 - p);
                let h = quantile(values, p);
                (l, h)
            }
        }
        RangeMethod::Mse => {
            let stride = values.len().div_ceil(MSE_MAX_SAMPLES).max(1);
            let sample: Vec<f32> = values.iter().step_by(stride).copied().collect();
            let steps = cfg.mse_steps.max(1);
            let mut best = (f64::INFINITY, lo, hi);
            for k in 1..=steps {
                let r = k as f32 / steps as f32;
                let err = quant_mse(&sample, lo * r, hi * r, cfg);
                if err < best.0 {
                    best = (err, lo * r, hi * r);
                }
            }
            (best.1, best.2)
        }
    }
}

/// Accumulates ranges over observations for one static quantizer during calibration.
#[derive(Debug, Clone)]
pub struct Observer {
    config: QuantizerConfig,
    axis: Option<usize>,
    lo: Vec<f64>,
    hi: Vec<f64>,
    count: usize,
}

impl Observer {
    /// An empty observer for a quantizer with `config` whose channels lie along `axis`.
    pub fn new(config: QuantizerConfig, axis: Option<usize>) -> Self {
        Self {
            config,
            axis,
            lo: Vec::new(),
            hi: Vec::new(),
            count: 0,
        }
    }

    /// Number of observations so far.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Adds one observation: row-major `data` of shape `dims`.
    pub fn observe(&mut self, data: &[f32], dims: &[usize]) {
        self.observe_channels(split_channels(data, dims, self.axis));
    }

    /// Adds one observation of a complex state trajectory: per step, the real and imaginary
    /// parts `[B, H, M]` (row-major). The same ranges as [`Observer::observe`] of the steps
    /// concatenated along the batch axis with the parts stacked as
    /// [`stack_complex`](crate::quantizer::stack_complex) stacks them, without building that
    /// tensor (1.3 GB for a batch of 100 sequences of 784 steps at S4D-64h, several times over).
    pub fn observe_trajectory(&mut self, steps: &[(&[f32], &[f32])], dims: [usize; 3]) {
        self.observe_channels(trajectory_channels(steps, dims, self.axis));
    }

    /// Adds one observation given as per-channel values (each list is scratch: reordered and
    /// overwritten).
    pub fn observe_channels(&mut self, channels: Vec<Vec<f32>>) {
        let ranges: Vec<(f32, f32)> = channels
            .into_iter()
            .map(|mut v| estimate_range(&mut v, &self.config))
            .collect();
        if self.count == 0 || self.lo.len() != ranges.len() {
            self.lo = ranges.iter().map(|r| f64::from(r.0)).collect();
            self.hi = ranges.iter().map(|r| f64::from(r.1)).collect();
            self.count = 1;
            return;
        }
        let n = self.count as f64;
        for (i, (l, h)) in ranges.into_iter().enumerate() {
            let (l, h) = (f64::from(l), f64::from(h));
            if self.config.range == RangeMethod::MinMax {
                self.lo[i] = self.lo[i].min(l);
                self.hi[i] = self.hi[i].max(h);
            } else {
                self.lo[i] = (self.lo[i] * n + l) / (n + 1.0);
                self.hi[i] = (self.hi[i] * n + h) / (n + 1.0);
            }
        }
        self.count += 1;
    }

    /// The combined range per channel, `(lo, hi)`; `None` before any observation.
    pub fn range(&self) -> Option<(Vec<f32>, Vec<f32>)> {
        (self.count > 0).then(|| {
            (
                self.lo.iter().map(|v| *v as f32).collect(),
                self.hi.iter().map(|v| *v as f32).collect(),
            )
        })
    }
}
