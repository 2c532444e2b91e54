//! `Abar` quantizers that cannot leave the unit disc: polar and log-polar grids, and per-head
//! bit widths.
//!
//! The paper quantizes `Abar` on a Cartesian grid (real and imaginary parts on one uniform
//! grid). Near `|Abar| = 1`, where the slow modes live, the corners of that grid lie outside
//! the unit circle, so a quantized mode can grow instead of decay; below 8 bits that is what
//! collapses the model. Here the magnitude and the phase of `Abar = r e^{i theta}` are
//! quantized on separate uniform grids instead ([`AbarGrid`]):
//!
//! - **polar**: `r` on `lo + k s`, `k = 0..=2^b - 1`, with `lo + (2^b - 1) s <= ` [`MAX_MAGNITUDE`];
//! - **log-polar**: the decay rate `rho = -ln r` on `lo + k s` with `lo >= ` [`MIN_DECAY`], so
//!   the grid is uniform in `ln r` (fine where `r` is close to 1);
//! - the phase `theta = atan2(Im, Re)` on its own `lo + k s` grid in both cases.
//!
//! Every channel (head, by default) has its own `(lo, s)` for each of the two grids, from the
//! channel's values ([`RangeMethod::MinMax`] or [`RangeMethod::Percentile`]). Stability holds by
//! construction, not by calibration: after dequantization the magnitude is clamped to
//! `[0, MAX_MAGNITUDE]` (polar) and the decay rate to `>= MIN_DECAY` (log-polar), and a learned
//! (LSQ) step is clamped to `>= MIN_SCALE`, so no code, range or learned step can produce
//! `|Abar| >= 1`. [`representable`] enumerates every value of a calibrated grid (the tests
//! check all of them).
//!
//! Storage: the quantizer state keeps `2 C` entries for `C` channels: `scale = [s_mag..,
//! s_phase..]` and `zero_point = [lo_mag.., lo_phase..]` (real-valued level-0 offsets, not
//! integer zero points). Memory is unchanged: `b` bits for the magnitude code and `b` for the
//! phase code, as the Cartesian grid's two `b`-bit parts. The integer deployment path supports
//! the Cartesian grid only.
//!
//! Gradients: straight-through. Within a grid's range the rounding passes gradients unchanged to
//! `(rho or r, theta)`, and from there through the exact polar <-> Cartesian maps to the
//! parameters; outside it the gradient is zero (the clipped STE), as for [`crate::fake_quant`].
//! With a learned scale the same expression gives LSQ's step gradient.
//!
//! Per-head bit widths (`QuantSpec::a_bar_head_bits`) give channel `c` the grid `0..=2^b_c - 1`
//! (polar and log-polar: both codes; Cartesian: `[-2^(b_c - 1), 2^(b_c - 1) - 1]`, affine per
//! [`affine_params`]).

use burn::prelude::*;
use s4d_model::ComplexTensor;
use serde::{Deserialize, Serialize};

use crate::error::{QatError, Result};
use crate::fake_quant::ste_round;
use crate::observer::{estimate_range, split_channels};
use crate::quantizer::{
    Calibration, MIN_SCALE, Quantizer, QuantizerConfig, RangeMethod, affine_params, stack_complex,
    to_host,
};

/// Largest magnitude a polar `Abar` code can decode to: `1 - 2^-17`. The margin (7.6e-6) is
/// far above the f32 rounding of `r cos(theta)`, `r sin(theta)` (a few 1e-8), so the stored
/// Cartesian pair has modulus below 1 as well.
pub const MAX_MAGNITUDE: f32 = 1.0 - 1.0 / 131_072.0;

/// Smallest decay rate `-ln|Abar|` a log-polar code can decode to: `2^-17`, the log-polar twin
/// of [`MAX_MAGNITUDE`] (`exp(-2^-17) < 1 - 7.6e-6`).
pub const MIN_DECAY: f32 = 1.0 / 131_072.0;

/// Floor on `|Abar|^2` before the logarithm and the square root, so an exact zero does not
/// produce an infinite value or gradient.
const MIN_NORM_SQ: f32 = 1e-30;

/// How `Abar` is gridded: the paper's Cartesian grid, or magnitude and phase on separate grids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AbarGrid {
    /// Real and imaginary parts on one uniform grid (the paper; integer-exportable).
    #[default]
    Cartesian,
    /// `|Abar|` and `arg Abar` on uniform grids, `|Abar| <= MAX_MAGNITUDE`.
    Polar,
    /// `-ln|Abar|` and `arg Abar` on uniform grids, `-ln|Abar| >= MIN_DECAY`.
    LogPolar,
}

impl AbarGrid {
    /// Every grid, for sweeps.
    pub const ALL: [AbarGrid; 3] = [AbarGrid::Cartesian, AbarGrid::Polar, AbarGrid::LogPolar];

    /// Whether this is the paper's grid (the serde default, skipped when writing specs).
    pub fn is_cartesian(&self) -> bool {
        *self == AbarGrid::Cartesian
    }

    /// The spec/preset name (`cartesian`, `polar`, `log_polar`).
    pub fn name(self) -> &'static str {
        match self {
            AbarGrid::Cartesian => "cartesian",
            AbarGrid::Polar => "polar",
            AbarGrid::LogPolar => "log_polar",
        }
    }

    /// The magnitude coordinate of a polar grid (`r` or `-ln r`) from `|z|^2`, host side.
    fn magnitude_coordinate(self, norm_sq: f32) -> f32 {
        let n = norm_sq.max(MIN_NORM_SQ);
        match self {
            AbarGrid::LogPolar => -0.5 * n.ln(),
            _ => n.sqrt(),
        }
    }
}

/// Highest code of a `bits`-bit polar grid, `2^bits - 1`.
fn max_code(bits: u32) -> f32 {
    (2f64.powi(bits.clamp(1, 31) as i32) - 1.0) as f32
}

/// `cfg` at another bit width (per-head grids).
fn with_bits(cfg: &QuantizerConfig, bits: u32) -> QuantizerConfig {
    let mut out = cfg.clone();
    out.bits = bits;
    out
}

/// Bits of channel `c`: from the per-head list when given, else the config's.
fn channel_bits(cfg: &QuantizerConfig, head_bits: Option<&[u32]>, c: usize) -> u32 {
    head_bits
        .and_then(|b| b.get(c).copied())
        .unwrap_or(cfg.bits)
}

/// Checks that `grid` / `head_bits` can be used with `cfg` on `Abar`; `QuantSpec::validate`
/// and the model builder call it so a bad spec fails before any data is touched.
pub fn validate_abar(
    grid: AbarGrid,
    cfg: &QuantizerConfig,
    head_bits: Option<&[u32]>,
) -> Result<()> {
    let err = |message: String| QatError::InvalidConfig {
        component: "a_bar".into(),
        message,
    };
    if let Some(bits) = head_bits {
        if bits.is_empty() {
            return Err(err("a_bar_head_bits is empty".into()));
        }
        if let Some(b) = bits.iter().find(|b| !(2..=16).contains(*b)) {
            return Err(err(format!("a_bar_head_bits must be in 2..=16, got {b}")));
        }
        if !cfg.per_channel || cfg.axis.is_some_and(|a| a != 0) {
            return Err(err(
                "a_bar_head_bits needs per-channel scales on the head axis (per_channel = true, \
                 axis 0)"
                    .into(),
            ));
        }
        if cfg.calibration == Calibration::Dynamic {
            return Err(err("a_bar_head_bits needs static calibration".into()));
        }
    }
    if grid.is_cartesian() {
        return Ok(());
    }
    if cfg.calibration == Calibration::Dynamic {
        return Err(err(format!(
            "the {} grid needs static calibration, got dynamic",
            grid.name()
        )));
    }
    if cfg.symmetric {
        return Err(err(format!(
            "the {} grid has no symmetric form (magnitude and phase grids start at their \
             calibrated minimum); set symmetric = false",
            grid.name()
        )));
    }
    if cfg.range == RangeMethod::Mse {
        return Err(err(format!(
            "the {} grid supports min_max and percentile ranges, not mse",
            grid.name()
        )));
    }
    Ok(())
}

/// Host-side grid parameters of `Abar` (`re`, `im` row-major of shape `dims`) per channel along
/// `axis`: `(scale, offset)`, `2 C` entries each (`[magnitude.., phase..]`).
pub fn polar_params(
    grid: AbarGrid,
    cfg: &QuantizerConfig,
    head_bits: Option<&[u32]>,
    re: &[f32],
    im: &[f32],
    dims: &[usize],
    axis: Option<usize>,
) -> (Vec<f32>, Vec<f32>) {
    let mag: Vec<f32> = re
        .iter()
        .zip(im)
        .map(|(a, b)| grid.magnitude_coordinate(a * a + b * b))
        .collect();
    let phase: Vec<f32> = re.iter().zip(im).map(|(a, b)| b.atan2(*a)).collect();
    let mags = split_channels(&mag, dims, axis);
    let phases = split_channels(&phase, dims, axis);
    let range_cfg = cfg.clone().with_symmetric(false);
    let channels = mags.len();
    let mut scale = vec![0.0; 2 * channels];
    let mut offset = vec![0.0; 2 * channels];
    for (c, (mut m, mut p)) in mags.into_iter().zip(phases).enumerate() {
        let k = max_code(channel_bits(cfg, head_bits, c));
        let (lo, hi) = estimate_range(&mut m, &range_cfg);
        let (lo, hi) = match grid {
            AbarGrid::LogPolar => {
                let lo = lo.max(MIN_DECAY);
                (lo, hi.max(lo))
            }
            _ => {
                let hi = hi.min(MAX_MAGNITUDE);
                (lo.clamp(0.0, hi.max(0.0)), hi.max(0.0))
            }
        };
        scale[c] = ((hi - lo) / k).max(MIN_SCALE);
        offset[c] = lo;
        let (lo, hi) = estimate_range(&mut p, &range_cfg);
        scale[channels + c] = ((hi - lo) / k).max(MIN_SCALE);
        offset[channels + c] = lo;
    }
    (scale, offset)
}

/// Calibrates `q` (the `Abar` quantizer) from `z` for `grid`, data-free like every weight.
pub fn calibrate_abar(
    q: &mut Quantizer,
    grid: AbarGrid,
    head_bits: Option<&[u32]>,
    z: &ComplexTensor<2>,
) -> Result<()> {
    validate_abar(grid, q.config(), head_bits)?;
    let device = z.re.device();
    let dims = z.dims();
    let axis = q.state.axis;
    if let Some(bits) = head_bits
        && bits.len() != dims[0]
    {
        return Err(QatError::InvalidConfig {
            component: "a_bar".into(),
            message: format!(
                "a_bar_head_bits has {} entries for a model with {} heads",
                bits.len(),
                dims[0]
            ),
        });
    }
    match (grid, head_bits) {
        (AbarGrid::Cartesian, None) => q.calibrate_from_complex(z),
        (AbarGrid::Cartesian, Some(bits)) => {
            let stacked = stack_complex(z, axis);
            let sdims = stacked.dims();
            let data = to_host(stacked)?;
            let cfg = q.config().clone();
            let (scale, zp): (Vec<f32>, Vec<f32>) = split_channels(&data, &sdims, axis)
                .into_iter()
                .enumerate()
                .map(|(c, mut v)| {
                    let cfg_c = with_bits(&cfg, channel_bits(&cfg, Some(bits), c));
                    let (lo, hi) = estimate_range(&mut v, &cfg_c);
                    affine_params(lo, hi, &cfg_c)
                })
                .unzip();
            q.set_params(scale, zp, &device);
            Ok(())
        }
        (grid, bits) => {
            let re = to_host(z.re.clone())?;
            let im = to_host(z.im.clone())?;
            let (scale, offset) = polar_params(grid, q.config(), bits, &re, &im, &dims, axis);
            q.set_params(scale, offset, &device);
            Ok(())
        }
    }
}

/// Per-channel tensors broadcastable against `[H, M]` (`axis` 0 or 1, or per tensor).
fn channel_tensor(values: Tensor<1>, axis: Option<usize>) -> Tensor<2> {
    let n = values.dims()[0];
    match axis {
        Some(1) => values.reshape([1, n]),
        Some(_) => values.reshape([n, 1]),
        None => values.reshape([1, 1]),
    }
}

/// The step sizes of a calibrated quantizer (the LSQ parameter when learned), `[len]`.
fn steps(q: &Quantizer, device: &Device) -> Tensor<1> {
    match &q.lsq_scale {
        Some(p) => p.val(),
        None => Tensor::<1>::from_floats(q.state.scale.as_slice(), device),
    }
}

/// Highest code per channel as a broadcastable tensor.
fn max_codes(
    q: &Quantizer,
    head_bits: Option<&[u32]>,
    channels: usize,
    device: &Device,
) -> Tensor<2> {
    let k: Vec<f32> = (0..channels)
        .map(|c| max_code(channel_bits(q.config(), head_bits, c)))
        .collect();
    channel_tensor(Tensor::<1>::from_floats(k.as_slice(), device), q.state.axis)
}

/// The grid parameters of a calibrated polar quantizer as broadcastable tensors:
/// `(s_mag, lo_mag, s_phase, lo_phase, k_max)`.
fn polar_tensors(
    q: &Quantizer,
    head_bits: Option<&[u32]>,
    device: &Device,
) -> (Tensor<2>, Tensor<2>, Tensor<2>, Tensor<2>, Tensor<2>) {
    let c = q.state.scale.len() / 2;
    let axis = q.state.axis;
    let s = steps(q, device).clamp_min(MIN_SCALE);
    let o = Tensor::<1>::from_floats(q.state.zero_point.as_slice(), device);
    (
        channel_tensor(s.clone().narrow(0, 0, c), axis),
        channel_tensor(o.clone().narrow(0, 0, c), axis),
        channel_tensor(s.narrow(0, c, c), axis),
        channel_tensor(o.narrow(0, c, c), axis),
        max_codes(q, head_bits, c, device),
    )
}

/// Decodes magnitude and phase codes (already integers, or STE-rounded) to `Abar`. The one
/// decoder of the module: the forward pass and [`representable`] both call it, and it is
/// where the magnitude bound is enforced.
fn decode(
    grid: AbarGrid,
    k_mag: Tensor<2>,
    k_phase: Tensor<2>,
    (s_mag, lo_mag, s_phase, lo_phase): (Tensor<2>, Tensor<2>, Tensor<2>, Tensor<2>),
) -> ComplexTensor<2> {
    let m = k_mag * s_mag + lo_mag;
    let r = match grid {
        AbarGrid::LogPolar => m.clamp_min(MIN_DECAY).neg().exp(),
        _ => m.clamp(0.0, MAX_MAGNITUDE),
    };
    let theta = k_phase * s_phase + lo_phase;
    ComplexTensor::new(r.clone() * theta.clone().cos(), r * theta.sin())
}

/// Fake-quantizes `Abar` (`[H, M]`) with the calibrated quantizer `q` on `grid` (see the
/// module doc for the gradients). Cartesian without per-head bits is exactly
/// [`Quantizer::forward_complex`].
pub fn fake_quant_abar(
    q: &Quantizer,
    grid: AbarGrid,
    head_bits: Option<&[u32]>,
    z: ComplexTensor<2>,
) -> ComplexTensor<2> {
    let device = z.re.device();
    match (grid, head_bits) {
        (AbarGrid::Cartesian, None) => q.forward_complex(z),
        (AbarGrid::Cartesian, Some(bits)) => {
            let c = q.state.scale.len();
            let axis = q.state.axis;
            let scale = channel_tensor(steps(q, &device), axis);
            let zp = channel_tensor(
                Tensor::<1>::from_floats(q.state.zero_point.as_slice(), &device),
                axis,
            );
            let (lo, hi): (Vec<f32>, Vec<f32>) = (0..c)
                .map(|i| with_bits(q.config(), channel_bits(q.config(), Some(bits), i)).grid())
                .unzip();
            let qmin = channel_tensor(Tensor::<1>::from_floats(lo.as_slice(), &device), axis);
            let qmax = channel_tensor(Tensor::<1>::from_floats(hi.as_slice(), &device), axis);
            let fq = |x: Tensor<2>| {
                let v = x / scale.clone() + zp.clone();
                let dims = v.dims();
                let v = v
                    .max_pair(qmin.clone().expand(dims))
                    .min_pair(qmax.clone().expand(dims));
                (ste_round(v) - zp.clone()) * scale.clone()
            };
            ComplexTensor::new(fq(z.re), fq(z.im))
        }
        (grid, bits) => {
            let (s_mag, lo_mag, s_phase, lo_phase, k) = polar_tensors(q, bits, &device);
            let norm_sq = (z.re.clone().square() + z.im.clone().square()).clamp_min(MIN_NORM_SQ);
            let m = match grid {
                AbarGrid::LogPolar => norm_sq.log().mul_scalar(-0.5),
                _ => norm_sq.sqrt(),
            };
            let theta = z.im.atan2(z.re);
            let code = |x: Tensor<2>, lo: Tensor<2>, s: Tensor<2>| {
                let v = ((x - lo) / s).clamp_min(0.0);
                let dims = v.dims();
                ste_round(v.min_pair(k.clone().expand(dims)))
            };
            let k_mag = code(m, lo_mag.clone(), s_mag.clone());
            let k_phase = code(theta, lo_phase.clone(), s_phase.clone());
            decode(grid, k_mag, k_phase, (s_mag, lo_mag, s_phase, lo_phase))
        }
    }
}

/// Every value a calibrated polar/log-polar quantizer can output for channel `channel`: all
/// `(magnitude code, phase code)` pairs through the same decoder as the forward pass,
/// `[1, (K + 1)^2]`. `None` for the Cartesian grid or an uncalibrated quantizer.
pub fn representable(
    q: &Quantizer,
    grid: AbarGrid,
    head_bits: Option<&[u32]>,
    channel: usize,
    device: &Device,
) -> Option<ComplexTensor<2>> {
    if grid.is_cartesian() || !q.state.calibrated {
        return None;
    }
    let c = q.state.scale.len() / 2;
    if channel >= c {
        return None;
    }
    let kmax = max_code(channel_bits(q.config(), head_bits, channel)) as usize;
    let n = kmax + 1;
    let (km, kp): (Vec<f32>, Vec<f32>) =
        (0..n * n).map(|i| ((i / n) as f32, (i % n) as f32)).unzip();
    let k_mag = Tensor::<1>::from_floats(km.as_slice(), device).reshape([1, n * n]);
    let k_phase = Tensor::<1>::from_floats(kp.as_slice(), device).reshape([1, n * n]);
    let s = steps(q, device).clamp_min(MIN_SCALE);
    let o = Tensor::<1>::from_floats(q.state.zero_point.as_slice(), device);
    let pick = |t: Tensor<1>, i: usize| t.narrow(0, i, 1).reshape([1, 1]);
    Some(decode(
        grid,
        k_mag,
        k_phase,
        (
            pick(s.clone(), channel),
            pick(o.clone(), channel),
            pick(s, c + channel),
            pick(o, c + channel),
        ),
    ))
}
