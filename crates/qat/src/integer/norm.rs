//! Integer constants of the deep-block norm stages (BatchNorm, LayerNorm), derived
//! from the fake-quant model's grids and the float norm parameters, and their application
//! through `s4q_runtime::norm` (the arithmetic itself, shared with the runtime).
//!
//! Every stage rescales into an output grid with per-channel multipliers that share one shift
//! (as the other stages do, so the C export's shifts are constants), with the output zero
//! point and the float shift folded into a pre-scaled bias.

use s4q_runtime::norm::{LN_FRAC, LN_SQRT_FRAC, LnStep, affine_code, layer_norm_fits_frac};
use serde::{Deserialize, Serialize};

use super::IntGrid;
use super::derive::IntegerError;

type Result<T> = std::result::Result<T, IntegerError>;

/// Per-channel affine to an output grid: `clamp(shr_round(x m_c + bias_c, shift))`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelAffine {
    /// Multipliers, one per channel.
    pub m: Vec<i32>,
    /// Pre-scaled biases (output zero point included).
    pub bias: Vec<i64>,
    /// The stage's shared shift.
    pub shift: u32,
    /// Output grid.
    pub out: IntGrid,
}

impl ChannelAffine {
    /// `y_c = r_c x + b_c` in output-code units (`b_c` without the zero point), as integers.
    pub fn derive(r: &[f64], b: &[f64], out: IntGrid, what: &str) -> Result<Self> {
        if r.len() != b.len() {
            return Err(IntegerError::Bounds(format!(
                "{what}: {} scales, {} shifts",
                r.len(),
                b.len()
            )));
        }
        let shift = shared_shift(r, what)?;
        let scale = 2f64.powi(shift as i32);
        let mut m = Vec::with_capacity(r.len());
        let mut bias = Vec::with_capacity(r.len());
        for (&rc, &bc) in r.iter().zip(b) {
            m.push((rc * scale).round_ties_even() as i32);
            let bf = ((bc + out.z as f64) * scale).round_ties_even();
            if !bf.is_finite() || bf.abs() >= 2f64.powi(62) {
                return Err(IntegerError::Bounds(format!(
                    "{what}: bias {bc} at shift {shift}"
                )));
            }
            bias.push(bf as i64);
        }
        Ok(Self {
            m,
            bias,
            shift,
            out,
        })
    }

    /// Output code of channel `c` for input `x`.
    pub fn apply(&self, c: usize, x: i32) -> i32 {
        affine_code(
            x,
            self.m[c],
            self.bias[c],
            self.shift,
            self.out.qmin,
            self.out.qmax,
        )
    }
}

/// The largest shift at which every `|r| 2^shift` stays below `2^31` (and at most 62).
fn shared_shift(r: &[f64], what: &str) -> Result<u32> {
    let rmax = r.iter().fold(0f64, |a, &v| a.max(v.abs()));
    if !rmax.is_finite() || r.iter().any(|v| !v.is_finite()) {
        return Err(IntegerError::Bounds(format!(
            "{what}: a multiplier is not finite"
        )));
    }
    if rmax == 0.0 {
        return Ok(31);
    }
    let mut shift = 62i32;
    while shift >= 0 && rmax * 2f64.powi(shift) >= 2f64.powi(31) - 1.0 {
        shift -= 1;
    }
    if shift < 0 {
        return Err(IntegerError::Bounds(format!(
            "{what}: multiplier {rmax} too large"
        )));
    }
    Ok(shift as u32)
}

/// LayerNorm over the `H` channels of a step, from input codes to output codes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntLayerNorm {
    /// `round(2^(2 f) H^2 eps / s_in^2)`: eps in the units of the integer variance term
    /// (`f = sqrt_frac`; `2^16` for 8-bit input codes).
    pub e16: u64,
    /// Fraction bits `f` of the root of the variance term: 8 for 8-bit codes, fewer for the
    /// wide encoder output a pre-norm block 0 reads (`s4q_runtime::norm`, wide inputs).
    #[serde(
        default = "default_sqrt_frac",
        skip_serializing_if = "is_default_sqrt_frac"
    )]
    pub sqrt_frac: u32,
    /// `gamma / s_out` on the `Q22` normalised value, `beta / s_out + z_out` as bias.
    pub affine: ChannelAffine,
}

fn default_sqrt_frac() -> u32 {
    LN_SQRT_FRAC
}

fn is_default_sqrt_frac(f: &u32) -> bool {
    *f == LN_SQRT_FRAC
}

impl IntLayerNorm {
    /// From LayerNorm's `gamma`, `beta` and `eps`, the input unit `s_in` and range of input
    /// values `in_range` (codes, or the wide encoder output), and the output grid (scale
    /// `s_out`). Keeps the most root fraction bits (at most 8) for which the integer
    /// arithmetic provably fits.
    pub fn derive(
        gamma: &[f64],
        beta: &[f64],
        eps: f64,
        s_in: f64,
        in_range: u32,
        s_out: f64,
        out: IntGrid,
    ) -> Result<Self> {
        let h = gamma.len();
        let eps_term = |f: u32| {
            (h as f64 * h as f64 * eps / (s_in * s_in) * 2f64.powi(2 * f as i32)).round_ties_even()
        };
        let e = eps_term(0);
        if !(e.is_finite() && e >= 0.0 && e < 2f64.powi(60)) {
            return Err(IntegerError::Bounds(format!("LayerNorm eps term {e}")));
        }
        let fits = |f: u32| {
            let e = eps_term(f);
            (e < 2f64.powi(62))
                .then_some(e as u64)
                .filter(|&e| layer_norm_fits_frac(h, in_range, e, f))
                .map(|e| (f, e))
        };
        let Some((sqrt_frac, e)) = (0..=LN_SQRT_FRAC).rev().find_map(fits) else {
            return Err(IntegerError::Bounds(format!(
                "LayerNorm over {h} channels of a {in_range}-unit input range (eps term {e}) overflows"
            )));
        };
        let r: Vec<f64> = gamma
            .iter()
            .map(|g| g / s_out * 2f64.powi(-(LN_FRAC as i32)))
            .collect();
        let b: Vec<f64> = beta.iter().map(|b| b / s_out).collect();
        Ok(Self {
            e16: e,
            sqrt_frac,
            affine: ChannelAffine::derive(&r, &b, out, "LayerNorm")?,
        })
    }

    /// Output codes of one step's input values `q` (`out.len() == q.len()`).
    pub fn apply(&self, q: &[i32], out: &mut [i32]) {
        let st = LnStep::with_frac(q.len(), self.e16, self.sqrt_frac, |i| q[i]);
        for (c, (o, &v)) in out.iter_mut().zip(q).enumerate() {
            *o = self.affine.apply(c, st.value(v));
        }
    }
}

/// Worst-case error (real units) of the integer normalised value of magnitude `n_abs` for a
/// step whose variance term is `t = V / H + E`, with 8 root fraction bits (8-bit codes;
/// `s4q_runtime::norm` module doc).
pub fn layer_norm_error_bound(n_abs: f64, t: f64) -> f64 {
    layer_norm_error_bound_frac(n_abs, t, LN_SQRT_FRAC)
}

/// [`layer_norm_error_bound`] with `sqrt_frac` root fraction bits (wide inputs).
pub fn layer_norm_error_bound_frac(n_abs: f64, t: f64, sqrt_frac: u32) -> f64 {
    let unit = 2f64.powi(-(2 * sqrt_frac as i32));
    let t = t.max(unit);
    n_abs * (2f64.powi(-29) + unit / t) + 2f64.powi(-(LN_FRAC as i32))
}
