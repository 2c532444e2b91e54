//! From a calibrated [`QuantizedClassifier`] to an [`IntegerModel`]: codes by the fake-quant
//! formula, multipliers from the scales (in `f64`, once, at export), bounds checked so no
//! integer on the inference path can overflow.

use std::collections::BTreeMap;

use burn::prelude::*;

use burn::nn::LayerNormConfig;
use s4d_model::NormKind;
use s4q_runtime::norm::{LN_SQRT_FRAC, layer_norm_fits_frac};

use super::{
    BlockBits, ChannelAffine, IntBlock, IntGrid, IntLayerNorm, IntegerModel, NormInput, NormStage,
    Requant, ResidualStage, WeightBits, sigmoid_table,
};
use crate::quantized_model::QuantizedClassifier;
use crate::quantizer::{Calibration, QuantizerState, to_host};

/// Why a quantized model has no integer realisation here.
#[derive(Debug, thiserror::Error)]
pub enum IntegerError {
    /// A model or spec feature the integer path does not implement.
    #[error("integer deployment does not support {0}")]
    Unsupported(String),
    /// A quantizer the integer model needs is absent or uncalibrated.
    #[error(
        "quantizer `{0}` is missing or not calibrated: every component must be quantized with static ranges"
    )]
    Missing(String),
    /// A fixed-point quantity would not fit its integer type.
    #[error("fixed-point bounds: {0}")]
    Bounds(String),
    /// Reading the model failed.
    #[error(transparent)]
    Qat(#[from] crate::QatError),
}

type Result<T> = std::result::Result<T, IntegerError>;

/// Full scale of the encoder output `u` in its per-head integer unit (`2^22`): 22 bits of
/// precision for a value the fake-quant model keeps in float, with 9 bits of headroom in `i32`.
const U_FULL_SCALE: f64 = (1u64 << 22) as f64;
/// Accumulators that feed an `i32` requantization stay below `2^30` (one bit of margin for
/// rounding and for the bias).
const I32_BOUND: f64 = (1u64 << 30) as f64;

/// The most bits of `u`'s common unit (full scale `2^bits`, at most 22) for which a
/// LayerNorm over `heads` channels of it fits `s4q_runtime::norm`'s wide-input arithmetic.
fn pre_norm_u_bits(heads: usize) -> Result<u32> {
    (8..=22u32)
        .rev()
        .find(|&b| layer_norm_fits_frac(heads, (1u32 << (b + 1)) + 16, 0, 0))
        .ok_or_else(|| {
            IntegerError::Bounds(format!(
                "a LayerNorm over {heads} channels of the encoder output does not fit 64 bits"
            ))
        })
}

/// One quantizer's frozen parameters, read from its exported state.
#[derive(Clone)]
struct Q {
    scale: Vec<f32>,
    zp: Vec<f32>,
    qmin: f32,
    qmax: f32,
    bits: u32,
}

impl Q {
    fn from_state(
        key: &str,
        st: Option<&QuantizerState>,
        channels: usize,
        axis: usize,
    ) -> Result<Self> {
        let st = st.ok_or_else(|| IntegerError::Missing(key.to_string()))?;
        let cfg = &st.config;
        if !st.calibrated || cfg.calibration != Calibration::Static {
            return Err(IntegerError::Missing(key.to_string()));
        }
        if cfg.bits > 8 || !cfg.signed {
            return Err(IntegerError::Unsupported(format!(
                "`{key}` at {} bits {} (needs a signed grid of at most 8 bits)",
                cfg.bits,
                if cfg.signed { "signed" } else { "unsigned" }
            )));
        }
        let n = st.scale.len();
        let per_tensor = n == 1 && st.zero_point.len() == 1;
        let per_channel = n == channels && st.zero_point.len() == channels && st.axis == Some(axis);
        if !(per_tensor || per_channel) {
            return Err(IntegerError::Unsupported(format!(
                "`{key}` with {n} scales on axis {:?} (needs per-tensor or {channels} on axis {axis})",
                st.axis
            )));
        }
        if st.scale.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(IntegerError::Bounds(format!(
                "`{key}` has a non-positive scale"
            )));
        }
        let (qmin, qmax) = cfg.grid();
        Ok(Self {
            scale: st.scale.clone(),
            zp: st.zero_point.clone(),
            qmin,
            qmax,
            bits: cfg.bits,
        })
    }

    fn s(&self, c: usize) -> f32 {
        if self.scale.len() == 1 {
            self.scale[0]
        } else {
            self.scale[c]
        }
    }

    fn z(&self, c: usize) -> f32 {
        if self.zp.len() == 1 {
            self.zp[0]
        } else {
            self.zp[c]
        }
    }

    /// The fake-quant code: `clamp(x / s + z, qmin, qmax)` rounded half to even, in f32.
    fn code(&self, x: f32, c: usize) -> i32 {
        (x / self.s(c) + self.z(c))
            .clamp(self.qmin, self.qmax)
            .round_ties_even() as i32
    }

    /// The dequantized value as the fake-quant model computes it, `(q - z) s` in f32.
    fn deq(&self, q: i32, c: usize) -> f32 {
        (q as f32 - self.z(c)) * self.s(c)
    }

    /// Code minus zero point, exact.
    fn centered(&self, q: i32, c: usize) -> f64 {
        q as f64 - self.z(c) as f64
    }

    fn grid(&self) -> IntGrid {
        IntGrid {
            z: self.z(0) as i32,
            qmin: self.qmin as i32,
            qmax: self.qmax as i32,
        }
    }

    /// Largest `|q - z|` on the grid of channel `c`.
    fn max_centered(&self, c: usize) -> f64 {
        let z = self.z(c) as f64;
        (self.qmax as f64 - z)
            .abs()
            .max((self.qmin as f64 - z).abs())
    }
}

/// `r ~ m / 2^shift` with `|m|` in `[2^30, 2^31)` (smaller only when `shift` hits 62).
fn multiplier(r: f64, what: &str) -> Result<(i32, u8)> {
    if r == 0.0 {
        return Ok((0, 0));
    }
    if !r.is_finite() {
        return Err(IntegerError::Bounds(format!(
            "{what}: multiplier {r} is not finite"
        )));
    }
    let e = r.abs().log2().floor() as i32;
    let mut shift = 30 - e;
    if shift < 0 {
        return Err(IntegerError::Bounds(format!(
            "{what}: multiplier {r} exceeds 2^30"
        )));
    }
    shift = shift.min(62);
    let mut m = (r * 2f64.powi(shift)).round_ties_even();
    if m.abs() >= 2f64.powi(31) {
        shift -= 1;
        m = (r * 2f64.powi(shift)).round_ties_even();
    }
    Ok((m as i32, shift as u8))
}

/// A bias in output units, pre-scaled by `2^shift` into the product domain.
fn bias_fixed(units: f64, shift: u8, what: &str) -> Result<i64> {
    let v = (units * 2f64.powi(shift as i32)).round_ties_even();
    if v.is_nan() || v.abs() >= 2f64.powi(62) {
        return Err(IntegerError::Bounds(format!(
            "{what}: bias {units} out of range"
        )));
    }
    Ok(v as i64)
}

/// Per-channel multipliers sharing **one shift per stage** (the largest `|r|` sets it, so every
/// `|m| < 2^31`; a channel `2^k` times smaller keeps `31 - k` bits, far below the f32 noise of
/// the fake-quant model for the ranges seen). The shared shift is a compile-time constant in
/// the exported C, where a constant 64-bit rounding shift costs a few instructions on a
/// 32-bit core instead of a variable one's dozens.
fn requant(rs: &[f64], biases: Option<&[f64]>, what: &str) -> Result<Requant> {
    let rmax = rs.iter().fold(0f64, |a, &r| a.max(r.abs()));
    let stage_shift = if rmax > 0.0 {
        multiplier(rmax, what)?.1
    } else {
        0
    };
    let mut m = Vec::with_capacity(rs.len());
    let mut shift = Vec::with_capacity(rs.len());
    let mut bias = Vec::new();
    for (c, &r) in rs.iter().enumerate() {
        if !r.is_finite() {
            return Err(IntegerError::Bounds(format!(
                "{what}: multiplier {r} is not finite"
            )));
        }
        let sc = stage_shift;
        let mc = (r * 2f64.powi(sc as i32)).round_ties_even();
        if mc.abs() >= 2f64.powi(31) {
            return Err(IntegerError::Bounds(format!(
                "{what}: multiplier {r} at shift {sc}"
            )));
        }
        let mc = mc as i32;
        m.push(mc);
        shift.push(sc);
        if let Some(b) = biases {
            bias.push(bias_fixed(b[c], sc, what)?);
        }
    }
    Ok(Requant {
        m,
        shift,
        bias: biases.map(|_| bias),
    })
}

fn codes_i8(v: impl IntoIterator<Item = i32>) -> Vec<i8> {
    v.into_iter().map(|q| q as i8).collect()
}

/// A block's input as the integer model holds it: a value per head in a per-head unit `s`
/// (real value `v s`), within `range` (inclusive).
struct BlockInput {
    s: Vec<f64>,
    range: Vec<(i64, i64)>,
}

type QMap = BTreeMap<String, QuantizerState>;

fn qget(states: &QMap, name: &str, channels: usize, axis: usize) -> Result<Q> {
    Q::from_state(name, states.get(name), channels, axis)
}

/// Biases: quantized with their quantizer when the layer has one; absent ones are zero.
fn bias_values(states: &QMap, t: Option<Tensor<1>>, name: &str, n: usize) -> Result<Vec<f64>> {
    match t {
        None => Ok(vec![0.0; n]),
        Some(t) => {
            let qb = qget(states, name, n, 0)?;
            Ok(to_host(t)?
                .iter()
                .enumerate()
                .map(|(i, &v)| qb.deq(qb.code(v, i), i) as f64)
                .collect())
        }
    }
}

fn per_tensor(key: &str, q: &Q) -> Result<()> {
    if q.scale.len() != 1 {
        return Err(IntegerError::Unsupported(format!(
            "a per-channel `{key}` quantizer (activation grids must be per tensor)"
        )));
    }
    Ok(())
}

/// Fraction bits of the residual sum's accumulator: both terms keep 16 bits below a residual
/// code, so the sum rounds like the fake-quant model's except within `~2^-16` of a boundary.
const RES_FRAC: u32 = 16;

impl IntegerModel {
    /// Derives the integer model from a calibrated quantized classifier (PTQ or QAT). Fails
    /// with [`IntegerError`] when the model or spec is outside what the integer path supports
    /// (see the module doc) or a fixed-point bound cannot be met.
    pub fn derive(qc: &QuantizedClassifier) -> Result<Self> {
        for grid in std::iter::once(&qc.spec).chain(&qc.block_specs) {
            if !grid.a_bar_grid.is_cartesian() {
                return Err(IntegerError::Unsupported(format!(
                    "Abar on the {:?} grid (spec `a_bar_grid`): the integer runtime multiplies \
                     Cartesian int re/im pairs; export a spec with the Cartesian grid",
                    grid.a_bar_grid
                )));
            }
        }
        let f = &qc.float;
        if f.blocks.is_empty() {
            return Err(IntegerError::Unsupported(
                "a model without S4D blocks".into(),
            ));
        }
        let states: QMap = qc.quant_state()?.quantizers;
        let [d_input, heads] = f.encoder.weight.dims();
        let [_, classes] = f.decoder.weight.dims();
        let [_, modes] = qc.ssm_matrices(0).0.re.dims();
        let q = |name: &str, channels: usize, axis: usize| qget(&states, name, channels, axis);
        let qin = q("input", 1, 2)?;
        let qwe = q("encoder_weight", heads, 1)?;
        let qdw = q("decoder_weight", classes, 1)?;
        let ql = q("logits", classes, 1)?;
        per_tensor("input", &qin)?;
        let enc_b = bias_values(
            &states,
            f.encoder.bias.as_ref().map(|p| p.val()),
            "encoder_bias",
            heads,
        )?;
        let dec_b = bias_values(
            &states,
            f.decoder.bias.as_ref().map(|p| p.val()),
            "decoder_bias",
            classes,
        )?;

        // Encoder: u's unit per head from the largest |u| the input grid allows.
        let enc_wf = to_host(f.encoder.weight.val())?;
        let enc_q: Vec<i32> = enc_wf
            .iter()
            .enumerate()
            .map(|(i, &v)| qwe.code(v, i % heads))
            .collect();
        let s_in = qin.s(0) as f64;
        let x_abs = qin.max_centered(0) * s_in;
        let umax: Vec<f64> = (0..heads)
            .map(|h| {
                (0..d_input)
                    .map(|i| {
                        x_abs * (qwe.centered(enc_q[i * heads + h], h) * qwe.s(h) as f64).abs()
                    })
                    .sum::<f64>()
                    + enc_b[h].abs()
            })
            .collect();
        // A LayerNorm on block 0's input mixes the heads, so `u` then has one unit for all
        // of them, as wide as that LayerNorm's integer arithmetic allows.
        let s_u: Vec<f64> =
            if f.blocks[0].prenorm && f.blocks[0].norm_kind() == Some(NormKind::Layer) {
                let all = umax.iter().fold(0f64, |a, &b| a.max(b));
                let bits = pre_norm_u_bits(heads)?;
                vec![
                    if all > 0.0 {
                        all / 2f64.powi(bits as i32)
                    } else {
                        1.0
                    };
                    heads
                ]
            } else {
                umax.iter()
                    .map(|&m| if m > 0.0 { m / U_FULL_SCALE } else { 1.0 })
                    .collect()
            };
        let enc = requant(
            &(0..heads)
                .map(|h| s_in * qwe.s(h) as f64 / s_u[h])
                .collect::<Vec<_>>(),
            Some(&(0..heads).map(|h| enc_b[h] / s_u[h]).collect::<Vec<_>>()),
            "encoder",
        )?;
        let input = qin.grid();
        let enc_w = codes_i8(enc_q);
        let enc_wz: Vec<i32> = (0..heads).map(|h| qwe.z(h) as i32).collect();
        // |u| is bounded exactly: the encoder sum is extremal at the input grid's ends, and
        // the requantization is monotone in it.
        let u_range: Vec<(i64, i64)> = (0..heads)
            .map(|h| {
                let (xlo, xhi) = (
                    qin.qmin as i64 - input.z as i64,
                    qin.qmax as i64 - input.z as i64,
                );
                let (mut lo, mut hi) = (0i64, 0i64);
                for i in 0..d_input {
                    let w = enc_w[i * heads + h] as i64 - enc_wz[h] as i64;
                    lo += (xlo * w).min(xhi * w);
                    hi += (xlo * w).max(xhi * w);
                }
                let (a, b) = (enc.apply(h, lo), enc.apply(h, hi));
                (sat32(a.min(b)) as i64, sat32(a.max(b)) as i64)
            })
            .collect();

        let mut block_in = BlockInput {
            s: s_u,
            range: u_range,
        };
        let mut blocks = Vec::with_capacity(f.blocks.len());
        let mut qo = None;
        for i in 0..f.blocks.len() {
            let (block, out) = derive_block(qc, &states, i, heads, modes, &block_in)?;
            let g = block.out_grid();
            block_in = BlockInput {
                s: vec![out.s(0) as f64; heads],
                range: vec![(g.qmin as i64 - g.z as i64, g.qmax as i64 - g.z as i64); heads],
            };
            blocks.push(block);
            qo = Some(out);
        }
        let qo = qo.ok_or_else(|| IntegerError::Unsupported("no blocks".into()))?;

        // Decoder and the pooled-mean precision, on the last block's output grid.
        let s_o = qo.s(0) as f64;
        let dec_wf = to_host(f.decoder.weight.val())?;
        let dec_q: Vec<i32> = dec_wf
            .iter()
            .enumerate()
            .map(|(i, &v)| qdw.code(v, i % classes))
            .collect();
        let o_abs = qo.max_centered(0);
        let mean_bound = (0..classes)
            .map(|k| {
                o_abs
                    * (0..heads)
                        .map(|h| qdw.centered(dec_q[h * classes + k], k).abs())
                        .sum::<f64>()
            })
            .fold(0.0, f64::max);
        let pool_frac = (0..=30u32)
            .rev()
            .find(|&p| mean_bound * 2f64.powi(p as i32) < I32_BOUND)
            .ok_or_else(|| IntegerError::Bounds(format!("pooled mean bound {mean_bound}")))?;
        let dec = requant(
            &(0..classes)
                .map(|k| s_o * qdw.s(k) as f64 / ql.s(k) as f64 / 2f64.powi(pool_frac as i32))
                .collect::<Vec<_>>(),
            Some(
                &(0..classes)
                    .map(|k| dec_b[k] / ql.s(k) as f64)
                    .collect::<Vec<_>>(),
            ),
            "decoder",
        )?;
        Ok(Self {
            d_input,
            heads,
            modes,
            classes,
            pool_frac,
            weight_bits: WeightBits {
                enc: qwe.bits,
                dec: qdw.bits,
            },
            input,
            input_scale: qin.s(0),
            enc_w,
            enc_wz,
            enc,
            blocks,
            sigmoid: sigmoid_table(),
            dec_w: codes_i8(dec_q),
            dec_wz: (0..classes).map(|k| qdw.z(k) as i32).collect(),
            dec,
            logits_z: (0..classes).map(|k| ql.z(k) as i32).collect(),
            logits_qmin: ql.qmin as i32,
            logits_qmax: ql.qmax as i32,
        })
    }
}

/// Block `i` of `qc` on the input `inp`: its integer stages, and the quantizer of its output
/// grid (the next block's input, or the pool's).
fn derive_block(
    qc: &QuantizedClassifier,
    states: &QMap,
    i: usize,
    heads: usize,
    modes: usize,
    inp: &BlockInput,
) -> Result<(IntBlock, Q)> {
    let block = &qc.float.blocks[i];
    let key = |c: &str| format!("block{i}.{c}");
    let q = |c: &str, channels: usize, axis: usize| qget(states, &key(c), channels, axis);
    let (a, b, c, d) = qc.ssm_matrices(i);
    let qa = q("a_bar", heads, 0)?;
    let qb = q("b_bar", heads, 0)?;
    let qc_ = q("c_bar", heads, 0)?;
    let qd = q("d_bar", heads, 0)?;
    let qst = q("state", heads, 1)?;
    let qy = q("ssm_output", 1, 2)?;
    let qg = q("activation", 1, 2)?;
    let qcw = q("conv_weight", 2 * heads, 1)?;
    let qo = q("glu_output", 1, 2)?;
    for (name, qq) in [
        ("ssm_output", &qy),
        ("activation", &qg),
        ("glu_output", &qo),
    ] {
        per_tensor(&key(name), qq)?;
    }
    let lin_b = bias_values(
        states,
        block.conv.bias.as_ref().map(|p| p.val()),
        &key("conv_bias"),
        2 * heads,
    )?;

    // The norm and its output grid. A pre-norm reads the block input (clamped to its exact
    // range) and the SSM reads its codes; a post-norm reads the residual sum (below).
    let norm_q = match block.norm_kind() {
        Some(kind) => {
            let qn = q("norm_output", 1, 2)?;
            per_tensor(&key("norm_output"), &qn)?;
            Some((kind, qn))
        }
        None => None,
    };
    let (pre_q, post_q) = if block.prenorm {
        (norm_q, None)
    } else {
        (None, norm_q)
    };
    let (pre_norm, pre_out) = match pre_q {
        Some((kind, qn)) => {
            let (stage, range, codes) = pre_norm_stage(qc, i, kind, inp, &qn)?;
            (Some((stage, range)), Some(codes))
        }
        None => (None, None),
    };
    // What the SSM reads: the block input, or the pre-norm's codes.
    let ssm_in = pre_out.as_ref().unwrap_or(inp);

    // SSM matrices.
    let host = |t: Tensor<2>| to_host(t);
    let cq = |qq: &Q, vals: &[f32]| -> Vec<i32> {
        vals.iter()
            .enumerate()
            .map(|(k, &v)| qq.code(v, k / modes))
            .collect()
    };
    let a_re = cq(&qa, &host(a.re)?);
    let a_im = cq(&qa, &host(a.im)?);
    // Abar as the fake-quant model uses it: the f32 dequantized code.
    let a_hat = |codes: &[i32]| -> Vec<f64> {
        codes
            .iter()
            .enumerate()
            .map(|(k, &q)| qa.deq(q, k / modes) as f64)
            .collect()
    };
    let (a_hat_re, a_hat_im) = (a_hat(&a_re), a_hat(&a_im));
    let b_re = cq(&qb, &host(b.re)?);
    let b_im = cq(&qb, &host(b.im)?);
    let c_re = cq(&qc_, &host(c.re)?);
    let c_im = cq(&qc_, &host(c.im)?);
    let d_hat: Vec<f64> = to_host(d)?
        .iter()
        .enumerate()
        .map(|(h, &v)| qd.deq(qd.code(v, h), h) as f64)
        .collect();
    let zs = |qq: &Q| (0..heads).map(|h| qq.z(h) as i32).collect::<Vec<_>>();
    let (state_lo, state_hi): (Vec<i32>, Vec<i32>) = (0..heads)
        .map(|h| {
            if qc.spec.clamp_state {
                let m = qc.spec.state_clamp;
                (qst.code(-m, h), qst.code(m, h))
            } else {
                (qst.qmin as i32, qst.qmax as i32)
            }
        })
        .unzip();

    // GELU (or qGELU) and the activation quantizer as one table, by the model's own ops.
    let ygrid = qy.grid();
    let yvals: Vec<f32> = (ygrid.qmin..=ygrid.qmax).map(|q| qy.deq(q, 0)).collect();
    let device = qc.float.decoder.weight.val().device();
    let n = yvals.len();
    let act = block
        .activation
        .forward(Tensor::<1>::from_floats(yvals.as_slice(), &device).reshape([1, 1, n]));
    let gelu = codes_i8(to_host(act)?.iter().map(|&v| qg.code(v, 0)));

    // Pointwise conv.
    let lin_wf = to_host(block.conv.weight.val())?;
    let lin_q: Vec<i32> = lin_wf
        .iter()
        .enumerate()
        .map(|(i, &v)| qcw.code(v, i % (2 * heads)))
        .collect();
    let (s_g, s_o, s_y) = (qg.s(0) as f64, qo.s(0) as f64, qy.s(0) as f64);

    // F: the most fraction bits (<= 24) for which every Q.F quantity fits its i32.
    let g_abs = qg.max_centered(0);
    let frac_ok = |fb: i32| {
        let p = 2f64.powi(fb);
        (0..heads).all(|j| {
            let acc = g_abs
                * (0..heads)
                    .map(|h| qcw.centered(lin_q[h * 2 * heads + j], j).abs())
                    .sum::<f64>();
            (acc * s_g * qcw.s(j) as f64 + lin_b[j].abs()) / s_o * p < I32_BOUND
        })
    };
    let frac = (8..=24)
        .rev()
        .find(|&fb| frac_ok(fb))
        .ok_or_else(|| IntegerError::Bounds("no fraction width in 8..=24 fits".into()))?;
    let p = 2f64.powi(frac);
    let per_head = |r: &dyn Fn(usize) -> f64| (0..heads).map(r).collect::<Vec<f64>>();
    let cy_rq = requant(
        &per_head(&|h| 2.0 * qc_.s(h) as f64 * qst.s(h) as f64 / s_y * p),
        None,
        "C x",
    )?;
    let dy_rq = requant(
        &per_head(&|h| d_hat[h] * ssm_in.s[h] / s_y * p),
        None,
        "D u",
    )?;
    let q16 = 2f64.powi(s4q_runtime::SIGMOID_IN_FRAC as i32);
    let lin_r: Vec<f64> = (0..2 * heads)
        .map(|j| {
            let r = s_g * qcw.s(j) as f64;
            if j < heads { r / s_o * p } else { r * q16 }
        })
        .collect();
    let lin_bias: Vec<f64> = (0..2 * heads)
        .map(|j| {
            if j < heads {
                lin_b[j] / s_o * p
            } else {
                lin_b[j] * q16
            }
        })
        .collect();
    // Two stages: the GLU value half (Q.F output units) and the gate half (Q16).
    let lin_a = requant(&lin_r[..heads], Some(&lin_bias[..heads]), "pointwise conv")?;
    let lin_b = requant(
        &lin_r[heads..],
        Some(&lin_bias[heads..]),
        "pointwise conv gate",
    )?;
    let lin = Requant {
        m: [lin_a.m, lin_b.m].concat(),
        shift: [lin_a.shift, lin_b.shift].concat(),
        bias: Some(
            [
                lin_a.bias.unwrap_or_default(),
                lin_b.bias.unwrap_or_default(),
            ]
            .concat(),
        ),
    };

    // Residual sum: the GLU output and the block input into Q.RES_FRAC residual units.
    let mut out_q = qo.clone();
    let residual = if block.residual {
        let qr = q("residual", 1, 2)?;
        per_tensor(&key("residual"), &qr)?;
        let (s_r, pr) = (qr.s(0) as f64, 2f64.powi(RES_FRAC as i32));
        let stage = ResidualStage {
            f: requant(
                &vec![s_o / s_r * pr; heads],
                None,
                "residual (block output)",
            )?,
            x: requant(
                &per_head(&|h| inp.s[h] / s_r * pr),
                None,
                "residual (block input)",
            )?,
            frac: RES_FRAC,
            out: qr.grid(),
        };
        out_q = qr;
        Some(stage)
    } else {
        None
    };
    // Post-norm on the codes of the residual (or GLU-output) grid.
    let (norm, prenorm) = match (post_q, pre_norm) {
        (Some((kind, qn)), _) => {
            let (s_in, in_grid) = (out_q.s(0) as f64, out_q.grid());
            let stage = norm_stage(
                qc,
                i,
                kind,
                &vec![s_in; heads],
                (in_grid.qmax - in_grid.qmin) as u32,
                &qn,
            )?;
            if let NormStage::Layer(ln) = &stage
                && ln.sqrt_frac != LN_SQRT_FRAC
            {
                return Err(IntegerError::Bounds(format!(
                    "block {i}: LayerNorm over {heads} channels of 8-bit codes overflows"
                )));
            }
            out_q = qn;
            (Some(stage), None)
        }
        (None, Some((stage, range))) => (Some(stage), Some(range)),
        (None, None) => (None, None),
    };
    let mut ib = IntBlock {
        frac: frac as u32,
        state_shift: 0,
        bits: BlockBits {
            b: qb.bits,
            c: qc_.bits,
            lin: qcw.bits,
        },
        a_re: Vec::new(),
        a_im: Vec::new(),
        b_re: codes_i8(b_re),
        b_im: codes_i8(b_im),
        b_z: zs(&qb),
        c_re: codes_i8(c_re),
        c_im: codes_i8(c_im),
        c_z: zs(&qc_),
        bu_rq: Requant {
            m: Vec::new(),
            shift: Vec::new(),
            bias: None,
        },
        w_max: Vec::new(),
        cy_rq,
        dy_rq,
        state_z: zs(&qst),
        state_lo,
        state_hi,
        ssm_out: ygrid,
        gelu,
        act_z: qg.z(0) as i32,
        lin_w: codes_i8(lin_q),
        lin_wz: (0..2 * heads).map(|j| qcw.z(j) as i32).collect(),
        lin,
        glu_out: qo.grid(),
        residual,
        norm,
        prenorm,
    };
    // S: the most state fraction bits (<= 30) for which the 32-bit state accumulator's
    // bound holds, over the block input's range.
    let scaled = |v: &[f64], p: f64| -> Option<Vec<i32>> {
        v.iter()
            .map(|&a| {
                let x = (a * p).round_ties_even();
                (x.abs() < I32_BOUND).then_some(x as i32)
            })
            .collect()
    };
    for st in (8..=30u32).rev() {
        let p = 2f64.powi(st as i32);
        let (Some(are), Some(aim)) = (scaled(&a_hat_re, p), scaled(&a_hat_im, p)) else {
            continue;
        };
        let Ok(bu_rq) = requant(
            &per_head(&|h| qb.s(h) as f64 * ssm_in.s[h] / qst.s(h) as f64 * p),
            None,
            "Bbar u",
        ) else {
            continue;
        };
        ib.w_max = (0..heads)
            .map(|h| {
                let (lo, hi) = ssm_in.range[h];
                sat32(bu_rq.apply(h, lo))
                    .unsigned_abs()
                    .max(sat32(bu_rq.apply(h, hi)).unsigned_abs())
                    .min(i32::MAX as u32) as i32
            })
            .collect();
        (ib.a_re, ib.a_im, ib.bu_rq, ib.state_shift) = (are, aim, bu_rq, st);
        if ib.state_bound(heads, modes) <= i32::MAX as i64 {
            return Ok((ib, out_q));
        }
    }
    Err(IntegerError::Bounds(format!(
        "block {i}: no state shift in 8..=30 keeps the 32-bit state accumulator inside i32"
    )))
}

/// Block `i`'s pre-norm of kind `kind` on the block input `inp`, into the grid of `qn`: the
/// stage, the range it clamps its input to (the input's exact bound), and the norm's codes
/// (minus the zero point) as the SSM's input.
fn pre_norm_stage(
    qc: &QuantizedClassifier,
    i: usize,
    kind: NormKind,
    inp: &BlockInput,
    qn: &Q,
) -> Result<(NormStage, NormInput, BlockInput)> {
    let heads = inp.s.len();
    let lo = inp.range.iter().map(|r| r.0).min().unwrap_or(0);
    let hi = inp.range.iter().map(|r| r.1).max().unwrap_or(0);
    let range = u32::try_from(hi - lo)
        .map_err(|_| IntegerError::Bounds(format!("block {i}: input range {lo}..={hi}")))?;
    let stage = norm_stage(qc, i, kind, &inp.s, range, qn)?;
    // BatchNorm multiplies the (possibly wide) input itself: `|x m| + |bias|` < 2^62.
    if let NormStage::Batch(a) = &stage {
        let x_abs = lo.unsigned_abs().max(hi.unsigned_abs()) as f64;
        let worst =
            a.m.iter()
                .zip(&a.bias)
                .map(|(&m, &b)| x_abs * (m as f64).abs() + (b as f64).abs())
                .fold(0f64, f64::max);
        if worst >= 2f64.powi(62) {
            return Err(IntegerError::Bounds(format!(
                "block {i}: BatchNorm on the block input reaches {worst:e}"
            )));
        }
    }
    let g = qn.grid();
    let codes = BlockInput {
        s: vec![qn.s(0) as f64; heads],
        range: vec![(g.qmin as i64 - g.z as i64, g.qmax as i64 - g.z as i64); heads],
    };
    let range = NormInput {
        lo: lo as i32,
        hi: hi as i32,
    };
    Ok((stage, range, codes))
}

/// Block `i`'s norm of kind `kind` on inputs in per-channel units `s_in` spanning `in_range`
/// units, into the grid of `qn`: LayerNorm's integer statistics (one unit for all channels),
/// or BatchNorm's frozen affine folded into one multiplier and bias per channel.
fn norm_stage(
    qc: &QuantizedClassifier,
    i: usize,
    kind: NormKind,
    s_in: &[f64],
    in_range: u32,
    qn: &Q,
) -> Result<NormStage> {
    let block = &qc.float.blocks[i];
    let heads = s_in.len();
    let s_n = qn.s(0) as f64;
    let host1 =
        |t: Tensor<1>| -> Result<Vec<f64>> { Ok(to_host(t)?.into_iter().map(f64::from).collect()) };
    match (kind, &block.norm, &block.batch_norm) {
        (NormKind::Layer, Some(ln), _) => {
            if s_in.iter().any(|&s| s != s_in[0]) {
                return Err(IntegerError::Unsupported(format!(
                    "block {i}: a LayerNorm over inputs in per-channel units"
                )));
            }
            let gamma = host1(ln.gamma.val())?;
            let beta = match &ln.beta {
                Some(b) => host1(b.val())?,
                None => vec![0.0; heads],
            };
            // The classifier builds its LayerNorm with burn's default epsilon.
            let eps = LayerNormConfig::new(heads).epsilon;
            Ok(NormStage::Layer(IntLayerNorm::derive(
                &gamma,
                &beta,
                eps,
                s_in[0],
                in_range,
                s_n,
                qn.grid(),
            )?))
        }
        (NormKind::Batch, _, Some(bn)) => {
            let gamma = host1(bn.gamma.val())?;
            let beta = host1(bn.beta.val())?;
            let mean = host1(bn.running_mean.value())?;
            let var = host1(bn.running_var.value())?;
            let k: Vec<f64> = (0..heads)
                .map(|c| gamma[c] / (var[c] + bn.epsilon).sqrt())
                .collect();
            let r: Vec<f64> = (0..heads).map(|c| s_in[c] * k[c] / s_n).collect();
            let b: Vec<f64> = (0..heads)
                .map(|c| (beta[c] - mean[c] * k[c]) / s_n)
                .collect();
            Ok(NormStage::Batch(ChannelAffine::derive(
                &r,
                &b,
                qn.grid(),
                "BatchNorm",
            )?))
        }
        _ => Err(IntegerError::Unsupported(format!(
            "block {i}'s norm parameters"
        ))),
    }
}

use s4q_runtime::fixed::sat32;

#[cfg(test)]
mod tests {
    use super::*;

    /// One shift per stage: every channel's `m / 2^shift` is its real multiplier to within
    /// half a unit of the shared last place (the rounding of `m`), the largest channel keeps
    /// 31 significant bits, and no `|m|` reaches `2^31`.
    #[test]
    fn stage_requant_shares_one_shift_and_rounds_each_multiplier() {
        let rs = [3.7e-3, -1.25e-5, 0.0, 2.0e-3, 7.9e-9];
        let bias = [1.5, -2.25, 0.0, 1e3, -0.5];
        let r = requant(&rs, Some(&bias), "test").expect("fits");
        let s = r.shift[0];
        assert!(r.shift.iter().all(|&x| x == s));
        let unit = 2f64.powi(-(s as i32));
        for (c, &rc) in rs.iter().enumerate() {
            let got = r.m[c] as f64 * unit;
            assert!((got - rc).abs() <= 0.5 * unit, "channel {c}: {got} vs {rc}");
            let b = r.bias.as_ref().unwrap()[c] as f64 * unit;
            assert!((b - bias[c]).abs() <= 0.5 * unit, "bias {c}");
        }
        let mmax = r.m.iter().map(|m| m.unsigned_abs()).max().unwrap();
        assert!((1u32 << 30..1u32 << 31).contains(&mmax), "{mmax}");
    }
}
