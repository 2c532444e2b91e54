//! Uniform integer quantizers: configuration (serde), frozen state (serde, exact), and the
//! [`Quantizer`] module that fake-quantizes real and complex tensors.
//!
//! Grid: `bits` in 2..=16; signed `[-2^(b-1), 2^(b-1) - 1]` or unsigned `[0, 2^b - 1]`.
//! Asymmetric: the range `[lo, hi]` is widened to contain 0, `s = (hi - lo) / (qmax - qmin)`,
//! `z = clamp(qmin - round(lo / s), qmin, qmax)` (so 0 is exactly representable).
//! Symmetric: `z = 0`, `s = max(|lo|, |hi|) / qmax`.
//! Rounding is half to even everywhere ([`crate::rounding`]).

use burn::module::Param;
use burn::prelude::*;
use s4d_model::ComplexTensor;
use serde::{Deserialize, Serialize};

use crate::error::{QatError, Result};
use crate::fake_quant::fake_quant_affine;
use crate::fake_quant_op::{fused_fake_quant, fused_fake_quant_supported};
use crate::observer::{estimate_range, split_channels};
use crate::rounding::round_half_even_f32;

/// Smallest scale used, so an all-zero channel does not divide by zero.
pub const MIN_SCALE: f32 = 1e-8;

/// How a clipping range is estimated from observed values (see [`crate::observer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RangeMethod {
    /// Minimum and maximum.
    MinMax,
    /// The `percentile`-th percentile (the paper's choice, 99.999).
    #[default]
    Percentile,
    /// Clipping ratio minimising the quantization MSE.
    Mse,
}

/// When ranges are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Calibration {
    /// Calibrated once (weights from their values, activations on data), then frozen.
    #[default]
    Static,
    /// Recomputed from every tensor it is applied to (per batch, per scan step).
    Dynamic,
}

fn default_true() -> bool {
    true
}
fn default_percentile() -> f64 {
    99.999
}
fn default_mse_steps() -> usize {
    100
}

/// One quantizer's configuration: what users write in a spec file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuantizerConfig {
    /// Bit width, 2..=16.
    pub bits: u32,
    /// Symmetric (zero point 0) instead of asymmetric.
    #[serde(default)]
    pub symmetric: bool,
    /// Signed integer grid (the default) or unsigned.
    #[serde(default = "default_true")]
    pub signed: bool,
    /// One scale per channel (per head) instead of one per tensor.
    #[serde(default = "default_true")]
    pub per_channel: bool,
    /// Channel axis; `None` uses the component's head/output axis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub axis: Option<usize>,
    /// Range estimator.
    #[serde(default)]
    pub range: RangeMethod,
    /// Percentile for [`RangeMethod::Percentile`], in (0, 100].
    #[serde(default = "default_percentile")]
    pub percentile: f64,
    /// Number of clipping ratios tried by [`RangeMethod::Mse`].
    #[serde(default = "default_mse_steps")]
    pub mse_steps: usize,
    /// Static or dynamic ranges.
    #[serde(default)]
    pub calibration: Calibration,
    /// Learn the scale during QAT (LSQ); static quantizers only.
    #[serde(default)]
    pub learned_scale: bool,
}

impl QuantizerConfig {
    /// The paper's default at `bits`: asymmetric, signed, per channel, static, percentile 99.999.
    pub fn new(bits: u32) -> Self {
        Self {
            bits,
            symmetric: false,
            signed: true,
            per_channel: true,
            axis: None,
            range: RangeMethod::Percentile,
            percentile: 99.999,
            mse_steps: 100,
            calibration: Calibration::Static,
            learned_scale: false,
        }
    }

    /// Sets [`QuantizerConfig::symmetric`].
    pub fn with_symmetric(mut self, symmetric: bool) -> Self {
        self.symmetric = symmetric;
        self
    }

    /// Sets [`QuantizerConfig::signed`].
    pub fn with_signed(mut self, signed: bool) -> Self {
        self.signed = signed;
        self
    }

    /// Sets [`QuantizerConfig::per_channel`].
    pub fn with_per_channel(mut self, per_channel: bool) -> Self {
        self.per_channel = per_channel;
        self
    }

    /// Sets [`QuantizerConfig::axis`].
    pub fn with_axis(mut self, axis: Option<usize>) -> Self {
        self.axis = axis;
        self
    }

    /// Sets [`QuantizerConfig::range`].
    pub fn with_range(mut self, range: RangeMethod) -> Self {
        self.range = range;
        self
    }

    /// Sets [`QuantizerConfig::percentile`].
    pub fn with_percentile(mut self, percentile: f64) -> Self {
        self.percentile = percentile;
        self
    }

    /// Sets [`QuantizerConfig::calibration`].
    pub fn with_calibration(mut self, calibration: Calibration) -> Self {
        self.calibration = calibration;
        self
    }

    /// Sets [`QuantizerConfig::learned_scale`].
    pub fn with_learned_scale(mut self, learned: bool) -> Self {
        self.learned_scale = learned;
        self
    }

    /// Integer grid `(qmin, qmax)` as floats.
    pub fn grid(&self) -> (f32, f32) {
        let b = self.bits.clamp(1, 31);
        if self.signed {
            (
                -(2f64.powi(b as i32 - 1)) as f32,
                (2f64.powi(b as i32 - 1) - 1.0) as f32,
            )
        } else {
            (0.0, (2f64.powi(b as i32) - 1.0) as f32)
        }
    }

    /// Rejects out-of-range values; `component` names the owner in the message.
    pub fn validate(&self, component: &str) -> Result<()> {
        let err = |message: String| QatError::InvalidConfig {
            component: component.to_string(),
            message,
        };
        if !(2..=16).contains(&self.bits) {
            return Err(err(format!("bits must be in 2..=16, got {}", self.bits)));
        }
        if !(self.percentile > 0.0 && self.percentile <= 100.0) {
            return Err(err(format!(
                "percentile must be in (0, 100], got {}",
                self.percentile
            )));
        }
        if self.range == RangeMethod::Mse && self.mse_steps == 0 {
            return Err(err("mse_steps must be at least 1".into()));
        }
        if self.learned_scale && self.calibration == Calibration::Dynamic {
            return Err(err(
                "learned_scale (LSQ) needs static calibration, got dynamic".into(),
            ));
        }
        Ok(())
    }
}

/// `(scale, zero_point)` for the range `[lo, hi]` under `cfg` (see the module doc).
pub fn affine_params(lo: f32, hi: f32, cfg: &QuantizerConfig) -> (f32, f32) {
    let (qmin, qmax) = cfg.grid();
    if cfg.symmetric {
        let amax = lo.abs().max(hi.abs());
        ((amax / qmax).max(MIN_SCALE), 0.0)
    } else {
        let (lo, hi) = (lo.min(0.0), hi.max(0.0));
        let scale = ((hi - lo) / (qmax - qmin)).max(MIN_SCALE);
        let zp = (qmin - round_half_even_f32(lo / scale)).clamp(qmin, qmax);
        (scale, zp)
    }
}

/// A quantizer's complete state, serialisable exactly (f32 values round-trip through JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuantizerState {
    /// The configuration (bits, grid, estimator).
    pub config: QuantizerConfig,
    /// Resolved channel axis (`None`: per tensor).
    pub axis: Option<usize>,
    /// Scale per channel (one entry per tensor when per-tensor); empty until calibrated.
    pub scale: Vec<f32>,
    /// Zero point per channel (integer-valued).
    pub zero_point: Vec<f32>,
    /// Whether a static range has been set.
    pub calibrated: bool,
}

/// A fake quantizer as a module, so a learned (LSQ) scale is a [`Param`] that optimizers and
/// burnpack see; everything else is plain state in [`QuantizerState`].
#[derive(Module, Debug)]
pub struct Quantizer {
    /// The trainable scale when `config.learned_scale` is set (after calibration), `[C]`.
    pub lsq_scale: Option<Param<Tensor<1>>>,
    /// Configuration, ranges and the calibrated flag.
    #[module(skip)]
    pub state: QuantizerState,
}

impl Quantizer {
    /// An uncalibrated quantizer; `default_axis` is the owner's channel axis, used when the
    /// config is per channel and names no axis; `rank` is the rank of the tensors it will see.
    pub fn new(
        config: QuantizerConfig,
        default_axis: usize,
        rank: usize,
        name: &str,
    ) -> Result<Self> {
        config.validate(name)?;
        let axis = config
            .per_channel
            .then(|| config.axis.unwrap_or(default_axis));
        if let Some(a) = axis
            && a >= rank
        {
            return Err(QatError::InvalidConfig {
                component: name.to_string(),
                message: format!("axis {a} out of range for a rank-{rank} tensor"),
            });
        }
        Ok(Self {
            lsq_scale: None,
            state: QuantizerState {
                config,
                axis,
                scale: Vec::new(),
                zero_point: Vec::new(),
                calibrated: false,
            },
        })
    }

    /// The configuration.
    pub fn config(&self) -> &QuantizerConfig {
        &self.state.config
    }

    /// Whether the quantizer can run: dynamic ones always, static ones once calibrated.
    pub fn is_ready(&self) -> bool {
        self.state.config.calibration == Calibration::Dynamic || self.state.calibrated
    }

    /// Freezes the range `[lo, hi]` per channel (static calibration); creates the LSQ
    /// parameter on `device` when the config asks for a learned scale.
    pub fn set_range(&mut self, lo: &[f32], hi: &[f32], device: &Device) {
        let (scale, zp): (Vec<f32>, Vec<f32>) = lo
            .iter()
            .zip(hi)
            .map(|(l, h)| affine_params(*l, *h, &self.state.config))
            .unzip();
        self.set_params(scale, zp, device);
    }

    /// Sets scales and zero points directly (reloading, or hand-computed tests).
    pub fn set_params(&mut self, scale: Vec<f32>, zero_point: Vec<f32>, device: &Device) {
        self.lsq_scale = self
            .state
            .config
            .learned_scale
            .then(|| Param::from_tensor(Tensor::<1>::from_floats(scale.as_slice(), device)));
        self.state.scale = scale;
        self.state.zero_point = zero_point;
        self.state.calibrated = true;
    }

    /// Calibrates from `values` alone (data-free: weights, SSM matrices).
    pub fn calibrate_from<const D: usize>(&mut self, values: Tensor<D>) -> Result<()> {
        let device = values.device();
        let dims = values.dims();
        let data = to_host(values)?;
        let (lo, hi) = self.host_ranges(&data, &dims);
        self.set_range(&lo, &hi, &device);
        Ok(())
    }

    /// Like [`Quantizer::calibrate_from`] with real and imaginary parts sharing the range.
    pub fn calibrate_from_complex<const D: usize>(&mut self, z: &ComplexTensor<D>) -> Result<()> {
        self.calibrate_from(stack_complex(z, self.state.axis))
    }

    /// The current state, with a learned scale read back from its parameter.
    pub fn export_state(&self) -> Result<QuantizerState> {
        let mut state = self.state.clone();
        if let Some(p) = &self.lsq_scale {
            state.scale = to_host(p.val())?;
        }
        Ok(state)
    }

    fn host_ranges(&self, data: &[f32], dims: &[usize]) -> (Vec<f32>, Vec<f32>) {
        split_channels(data, dims, self.state.axis)
            .into_iter()
            .map(|mut v| estimate_range(&mut v, &self.state.config))
            .unzip()
    }

    /// Shape `[1, .., C, .., 1]` that broadcasts per-channel values against a rank-`D` tensor.
    fn broadcast_shape<const D: usize>(&self, channels: usize) -> [usize; D] {
        let mut shape = [1; D];
        if let Some(a) = self.state.axis {
            shape[a] = channels;
        }
        shape
    }

    /// `(scale, zero_point)` tensors for `x` (whose values set the range when dynamic).
    fn params_for<const D: usize>(&self, x: &Tensor<D>) -> (Tensor<D>, Tensor<D>) {
        let device = x.device();
        match self.state.config.calibration {
            Calibration::Static => {
                let shape = self.broadcast_shape::<D>(self.state.scale.len());
                let (scale, zp) = self.static_params(&device);
                (scale.reshape(shape), zp.reshape(shape))
            }
            Calibration::Dynamic => self.dynamic_params(x.clone().detach()),
        }
    }

    /// Range from the tensor itself: min-max on the device, other estimators on the host.
    fn dynamic_params<const D: usize>(&self, x: Tensor<D>) -> (Tensor<D>, Tensor<D>) {
        let cfg = &self.state.config;
        let device = x.device();
        let dims = x.dims();
        let channels = self.state.axis.map_or(1, |a| dims[a]);
        let shape = self.broadcast_shape::<D>(channels);
        if cfg.range == RangeMethod::MinMax {
            let flat: Tensor<2> = match self.state.axis {
                Some(a) => x.swap_dims(0, a).reshape([channels as i32, -1]),
                None => x.reshape([1, -1]),
            };
            let lo = flat.clone().min_dim(1).reshape([channels]);
            let hi = flat.max_dim(1).reshape([channels]);
            let (qmin, qmax) = cfg.grid();
            let (scale, zp) = if cfg.symmetric {
                let amax = lo.abs().max_pair(hi.abs());
                (
                    amax.div_scalar(qmax).clamp_min(MIN_SCALE),
                    Tensor::<1>::zeros([channels], &device),
                )
            } else {
                let lo = lo.clamp_max(0.0);
                let hi = hi.clamp_min(0.0);
                let scale = (hi - lo.clone())
                    .div_scalar(qmax - qmin)
                    .clamp_min(MIN_SCALE);
                let zp = crate::rounding::round_half_even(lo / scale.clone())
                    .neg()
                    .add_scalar(qmin)
                    .clamp(qmin, qmax);
                (scale, zp)
            };
            return (scale.reshape(shape), zp.reshape(shape));
        }
        // Host path; a read failure falls back to min-max semantics via an empty range.
        let data = to_host(x).unwrap_or_default();
        let (lo, hi) = self.host_ranges(&data, &dims);
        let (scale, zp): (Vec<f32>, Vec<f32>) = lo
            .iter()
            .zip(&hi)
            .map(|(l, h)| affine_params(*l, *h, cfg))
            .unzip();
        (
            Tensor::<1>::from_floats(scale.as_slice(), &device).reshape(shape),
            Tensor::<1>::from_floats(zp.as_slice(), &device).reshape(shape),
        )
    }

    /// The calibrated `(scale, zero_point)` per channel, `[C]`: the learned scale's tracked
    /// parameter when LSQ is on (so its gradient flows), else the stored values.
    fn static_params(&self, device: &Device) -> (Tensor<1>, Tensor<1>) {
        let scale = match &self.lsq_scale {
            Some(p) => p.val(),
            None => Tensor::<1>::from_floats(self.state.scale.as_slice(), device),
        };
        let zero = Tensor::<1>::from_floats(self.state.zero_point.as_slice(), device);
        (scale, zero)
    }

    /// `(scale, zero_point)` as `[heads]` tensors for a static quantizer of a `[B, H, M]` tensor
    /// that is per tensor or per head (axis 1): what the fused scan takes. `None` otherwise.
    /// A learned scale is returned as its tracked parameter, so LSQ gradients reach it.
    pub fn head_params(&self, heads: usize, device: &Device) -> Option<(Tensor<1>, Tensor<1>)> {
        if self.state.config.calibration != Calibration::Static || !self.state.calibrated {
            return None;
        }
        let per_head = match self.state.axis {
            None => false,
            Some(1) => true,
            Some(_) => return None,
        };
        let n = self.state.scale.len();
        if (per_head && n != heads) || (!per_head && n != 1) {
            return None;
        }
        let (scale, zero) = self.static_params(device);
        if per_head {
            Some((scale, zero))
        } else {
            Some((scale.expand([heads]), zero.expand([heads])))
        }
    }

    /// Fake-quantizes a real tensor (clipped STE gradient; LSQ gradient for a learned scale).
    /// Call only when [`Quantizer::is_ready`].
    /// On CPU backends this is one fused op ([`crate::fused_fake_quant`], same function).
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let (qmin, qmax) = self.state.config.grid();
        let (scale, zp) = self.params_for(&x);
        if fused_fake_quant_supported(&x.device()) {
            let c = scale.shape().num_elements();
            let axis = self.state.axis;
            return fused_fake_quant(x, scale.reshape([c]), zp.reshape([c]), axis, qmin, qmax);
        }
        fake_quant_affine(x, scale, zp, qmin, qmax)
    }

    /// Fake-quantizes a complex tensor on one Cartesian grid: real and imaginary parts share
    /// the scale and zero point (per channel when per channel).
    pub fn forward_complex<const D: usize>(&self, z: ComplexTensor<D>) -> ComplexTensor<D> {
        let (qmin, qmax) = self.state.config.grid();
        let (scale, zp) = match self.state.config.calibration {
            Calibration::Static => self.params_for(&z.re),
            Calibration::Dynamic => {
                // Range over both parts: params from the stacked tensor, then drop the extra
                // leading axis (the stacked shape has the channel axis shifted by one).
                self.dynamic_params(stack_complex(&z, self.state.axis).detach())
            }
        };
        ComplexTensor::new(
            fake_quant_affine(z.re, scale.clone(), zp.clone(), qmin, qmax),
            fake_quant_affine(z.im, scale, zp, qmin, qmax),
        )
    }
}

/// Real and imaginary parts concatenated along an axis other than the channel axis `axis`
/// (the last axis, or the first when the channel axis is the last), so that one range per
/// channel covers both parts while channel indices stay put.
pub fn stack_complex<const D: usize>(z: &ComplexTensor<D>, axis: Option<usize>) -> Tensor<D> {
    let along = if axis == Some(D - 1) { 0 } else { D - 1 };
    Tensor::cat(vec![z.re.clone(), z.im.clone()], along)
}

/// Reads a tensor back to the host as `f32`.
pub fn to_host<const D: usize>(x: Tensor<D>) -> Result<Vec<f32>> {
    x.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| QatError::Data(format!("{e:?}")))
}
