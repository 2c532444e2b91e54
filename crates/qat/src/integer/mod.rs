//! The true-integer reference of a quantized S4D classifier: integer weights, integer state,
//! fixed-point requantization, and nothing but integer arithmetic per time step.
//!
//! [`IntegerModel::derive`] turns a calibrated (PTQ) or fine-tuned (QAT)
//! [`QuantizedClassifier`](crate::QuantizedClassifier) into integer codes, zero points and
//! `i32` multiplier + shift pairs; [`IntegerState`] runs it. The arithmetic is specified in
//! `s4q_runtime`'s `model` module docs (the deployment runtime implements the same spec
//! separately, and the exported C a third time); the rounding rule is `s4q_runtime::fixed`'s
//! half-to-even `shr_round` / `div_round`, the one definition shared by all three.
//!
//! Where the fake-quant model computes in float between two quantization points, this model
//! computes in fixed point with enough fraction bits that the result rounds to the same code
//! except within about `2^-16` of a rounding boundary:
//! - the encoder output `u` (float in the fake-quant model) is an `i32` with `~2^22` full
//!   scale per head;
//! - `Abar x + Bbar u` is summed in 32 bits, in `Q.S` state units (`S = state_shift`, the
//!   largest for which the export-time bound [`IntegerModel::state_bound`] fits `i32`), with
//!   `Abar` pre-scaled to `round(Abar 2^S)` and rounded once (half up: an exact tie in `S >= 14`
//!   fraction bits is below the fake-quant model's own f32 noise);
//! - `2 Re(C x) + D u` is summed in `Q.F` units of the SSM-output grid (`F` up to 24) and
//!   rounded once;
//! - GELU (exact, or qGELU) between the SSM-output and activation quantizers is a lookup table
//!   over the SSM-output grid, computed with the model's own tensor ops, so it is exact;
//! - GLU's `sigmoid` is a `Q30` table with linear interpolation (error below `3e-6`); its
//!   input is `Q16`;
//! - the mean over time is a running sum divided once by the step count (`div_round`).
//!
//! **Stacked blocks.** [`IntegerModel::blocks`] runs in order. Each block's input is a value
//! `v[h]` per head in a per-head unit `s_v[h]`: the encoder output `u` (unit `s_u[h]`) for
//! block 0, the previous block's output code minus its zero point (unit: that grid's scale)
//! for the others, so the fake-quant model's quantized block input is exact here. `Bbar v`
//! and `D v` are requantized from that unit (`bu_rq`, `dy_rq`), and the state shift `S` is
//! chosen per block from the block input's range. After the GLU, per channel:
//! - the residual sum `x + f(x)` ([`ResidualStage`]): the GLU output (code minus zero point)
//!   and the block input `v` are each requantized into `Q16` residual-code units (each with
//!   its own 31-bit multiplier: `u` is `~2^22` wide, and one shared shift would leave its
//!   multiplier a few bits), added, rounded once (`shr_round`) and clamped to the residual
//!   grid;
//! - the post-norm ([`NormStage`]) on those codes: LayerNorm by `s4q_runtime::norm`'s
//!   integer mean, variance and exact square root ([`IntLayerNorm`]), or BatchNorm's frozen
//!   affine `gamma (x - mean) / sqrt(var + eps) + beta` folded into one multiplier and bias
//!   per channel on the centered code ([`ChannelAffine`]), into the norm-output grid;
//! - or, instead, the pre-norm ([`IntBlock::prenorm`], `x + f(norm(x))`): the same stages on the
//!   block input `v` itself, before the SSM, which then reads the norm's codes; the residual
//!   adds the unnormalised `v`. Block 0's `v` is the encoder output `u`, which the fake-quant
//!   model keeps in float: BatchNorm folds its per-head unit into the affine; LayerNorm needs
//!   one unit for all heads, so `u` then gets a common unit with ~20 bits of range (the
//!   most that `s4q_runtime::norm`'s wide-input arithmetic fits for `H` channels).
//!
//! The block output grid is a post-norm's, else the residual's, else the GLU's; the mean
//! pool reads the last block's.
//!
//! Supported: one or more S4D blocks, each with an optional residual connection and an
//! optional norm (LayerNorm or BatchNorm, before the block or after the residual sum), every
//! component quantized with a static, signed grid of at most 8 bits, per-tensor or
//! per-head/per-output-channel weight scales and per-tensor activation grids (the presets'
//! layout). Anything else is an [`IntegerError`] at derivation. The binary format carries all of it (version 3; the paper's one-block model
//! is still written as version 2, byte for byte as before), and so does the C export
//! (`s4q-export`: a portable engine for stacked blocks, the specialised one for the paper's
//! model).
//!
//! The JSON form (`integer.json`) lists the blocks; the flat one-block layout of exports made
//! before deep blocks still reads (see [`IntegerModel`]'s `Deserialize`).

mod derive;
mod format;
pub mod norm;

use s4q_runtime::fixed::{div_round, sat32, shr_round};
use s4q_runtime::{SIGMOID_IN_FRAC, SIGMOID_INTERP_BITS, SIGMOID_LEN, SIGMOID_OUT_FRAC};
use serde::{Deserialize, Serialize};

pub use derive::IntegerError;
pub use format::pack_codes;
pub use norm::{ChannelAffine, IntLayerNorm};

/// An integer grid: zero point and code range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntGrid {
    /// Zero point (a code).
    pub z: i32,
    /// Smallest code.
    pub qmin: i32,
    /// Largest code.
    pub qmax: i32,
}

/// Per-channel fixed-point requantization `shr_round(acc * m + bias, shift)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requant {
    /// Multiplier mantissas.
    pub m: Vec<i32>,
    /// Right shifts, `0..=62`.
    pub shift: Vec<u8>,
    /// Biases pre-scaled into the product's domain (`None` where the stage has no bias).
    pub bias: Option<Vec<i64>>,
}

impl Requant {
    fn apply(&self, c: usize, acc: i64) -> i64 {
        let acc = sat32(acc) as i64;
        let bias = self.bias.as_ref().map_or(0, |b| b[c]);
        shr_round(
            (acc * self.m[c] as i64).wrapping_add(bias),
            self.shift[c] as u32,
        )
    }
}

/// Integer model of an S4D classifier: encoder, a stack of [`IntBlock`]s, mean pool, decoder.
/// Arrays are row-major: `enc_w[i * H + h]`, `dec_w[h * K + k]` (and inside a block
/// `Abar[h * M + n]`, `lin_w[h * 2H + j]`). Codes are raw grid codes; each `*_z` holds the
/// zero points (per channel).
///
/// Serialised as JSON (`integer.json` of an export) with a `blocks` list; the flat one-block
/// layout written before deep blocks existed still deserialises (as one block).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct IntegerModel {
    /// Input features per step.
    pub d_input: usize,
    /// Heads `H`.
    pub heads: usize,
    /// Complex modes per head `M`.
    pub modes: usize,
    /// Classes `K`.
    pub classes: usize,
    /// Fraction bits of the pooled mean.
    pub pool_frac: u32,
    /// Bit widths of the packed encoder and decoder weight codes.
    pub weight_bits: WeightBits,
    /// Input grid.
    pub input: IntGrid,
    /// Input scale: host-side only (quantizing raw inputs), never used in inference.
    pub input_scale: f32,
    /// Encoder weight codes `[I, H]`.
    pub enc_w: Vec<i8>,
    /// Encoder weight zero points `[H]`.
    pub enc_wz: Vec<i32>,
    /// Encoder requantization into the per-head `u` unit (bias included).
    pub enc: Requant,
    /// The S4D blocks in order (at least one). Block 0 reads the encoder output `u`; block
    /// `k >= 1` reads block `k - 1`'s output codes.
    pub blocks: Vec<IntBlock>,
    /// `round(sigmoid(i / 64) 2^30)`, `i = 0..=1024` (shared by every block's GLU).
    pub sigmoid: Vec<i32>,
    /// Decoder weight codes `[H, K]`.
    pub dec_w: Vec<i8>,
    /// Decoder zero points `[K]`.
    pub dec_wz: Vec<i32>,
    /// Pooled mean (`Q.pool_frac`) into logit codes (bias included).
    pub dec: Requant,
    /// Logit zero points `[K]`.
    pub logits_z: Vec<i32>,
    /// Smallest logit code.
    pub logits_qmin: i32,
    /// Largest logit code.
    pub logits_qmax: i32,
}

/// One S4D block in integers: SSM, GELU table, pointwise conv + GLU, then the optional
/// residual sum and (post-)norm. Its input is a value `v[h]` per head in a per-head unit: the
/// encoder output `u` for block 0, the previous block's output code minus its zero point for
/// the others; the requantizations `bu_rq`, `dy_rq` and the residual's `x` carry that unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntBlock {
    /// Fraction bits `F` of the SSM-output and GLU accumulators.
    pub frac: u32,
    /// Fraction bits `S` of the 32-bit state accumulator.
    pub state_shift: u32,
    /// Bit widths of the packed `Bbar`, `C` and pointwise-conv codes.
    pub bits: BlockBits,
    /// `Re Abar` pre-scaled: `round((q - z) s 2^S)` of the fake-quant `Abar` code `q` `[H, M]`.
    pub a_re: Vec<i32>,
    /// `Im Abar`, pre-scaled as `a_re`.
    pub a_im: Vec<i32>,
    /// `Re Bbar` codes.
    pub b_re: Vec<i8>,
    /// `Im Bbar` codes.
    pub b_im: Vec<i8>,
    /// `Bbar` zero points.
    pub b_z: Vec<i32>,
    /// `Re C` codes.
    pub c_re: Vec<i8>,
    /// `Im C` codes.
    pub c_im: Vec<i8>,
    /// `C` zero points.
    pub c_z: Vec<i32>,
    /// The block input `v` into `Q.S` state units per `Bbar` code.
    pub bu_rq: Requant,
    /// Bound on `|w|` (the `bu_rq` output) per head, from the bound on `|v|`.
    pub w_max: Vec<i32>,
    /// `2 Re(C x)` into `Q.F` SSM-output units.
    pub cy_rq: Requant,
    /// `D v` into `Q.F` SSM-output units.
    pub dy_rq: Requant,
    /// State zero points `[H]`.
    pub state_z: Vec<i32>,
    /// Lowest state code per head (grid and `-state_clamp` folded together).
    pub state_lo: Vec<i32>,
    /// Highest state code per head.
    pub state_hi: Vec<i32>,
    /// SSM-output grid.
    pub ssm_out: IntGrid,
    /// Activation code for every SSM-output code (`qmin..=qmax`).
    pub gelu: Vec<i8>,
    /// Activation zero point.
    pub act_z: i32,
    /// Pointwise-conv weight codes `[H, 2H]`.
    pub lin_w: Vec<i8>,
    /// Pointwise-conv zero points `[2H]`.
    pub lin_wz: Vec<i32>,
    /// First `H`: GLU value half into `Q.F` GLU-output units; last `H`: gate half into `Q16`.
    pub lin: Requant,
    /// GLU-output grid.
    pub glu_out: IntGrid,
    /// The residual sum `v + GLU output` into the residual grid, if the block has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub residual: Option<ResidualStage>,
    /// The block's norm, if it has one: after the residual sum (post-norm), or on the block
    /// input when `prenorm` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub norm: Option<NormStage>,
    /// Pre-norm (`v + f(norm(v))`): the norm reads the block input `v` clamped to this range
    /// (its exact bound, so the clamp only fences a hostile file), the SSM reads the norm's
    /// codes and the residual adds `v`. `None`: the norm (if any) is a post-norm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prenorm: Option<NormInput>,
}

/// The range of block-input values a pre-norm reads (inclusive, in the block input's unit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NormInput {
    /// Lowest value.
    pub lo: i32,
    /// Highest value.
    pub hi: i32,
}

/// A block's residual sum `x + f(x)` requantized to the residual grid: both terms are
/// brought to `Q.frac` residual-code units by their own requantization (31-bit multipliers
/// each, so neither loses precision to the other's scale, as one shared shift would when `x`
/// is the wide encoder output `u`), added, rounded once and clamped:
/// `clamp(shr_round(f(o - zo) + x(v), frac) + out.z)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResidualStage {
    /// GLU output (code minus zero point) into `Q.frac` residual units, per channel.
    pub f: Requant,
    /// Block input `v` into `Q.frac` residual units, per channel.
    pub x: Requant,
    /// Fraction bits of the sum.
    pub frac: u32,
    /// Residual grid.
    pub out: IntGrid,
}

/// A block's norm, on the codes of the residual grid (or the GLU-output grid without a
/// residual), to the norm-output grid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NormStage {
    /// LayerNorm over the `H` channels of a step (`s4q_runtime::norm::layer_norm_q22`).
    Layer(IntLayerNorm),
    /// BatchNorm in inference form: a per-channel affine of the centered input code.
    Batch(ChannelAffine),
}

impl NormStage {
    fn out(&self) -> IntGrid {
        match self {
            NormStage::Layer(ln) => ln.affine.out,
            NormStage::Batch(a) => a.out,
        }
    }

    /// Output codes of one step's centred input values `x` (a code minus its zero point, or
    /// the block input): LayerNorm over the step (where any common offset cancels exactly),
    /// BatchNorm per channel. The same whether the norm is before the block or after the sum.
    fn apply(&self, x: &[i32], out: &mut [i32]) {
        match self {
            NormStage::Layer(ln) => ln.apply(x, out),
            NormStage::Batch(a) => {
                for (c, o) in out.iter_mut().enumerate() {
                    *o = a.apply(c, x[c]);
                }
            }
        }
    }
}

impl IntBlock {
    /// Largest `|v| + 2^(S-1) + |zx| 2^S` over heads and modes, where `v = (Bbar - zB) w +
    /// A (x - zx)` is the 32-bit state accumulator (re or im part) for any state codes in
    /// `[lo, hi]` and any `|w| <= w_max`: each term at its largest magnitude, signs aligned
    /// (attainable, so the bound is tight). Export requires it `<= i32::MAX`; the runtime's
    /// parser recomputes it from the file.
    pub fn state_bound(&self, heads: usize, modes: usize) -> i64 {
        let (hn, mn, s) = (heads, modes, self.state_shift);
        (0..hn)
            .flat_map(|h| (0..mn).map(move |n| (h, h * mn + n)))
            .map(|(h, k)| {
                let z = self.state_z[h] as i64;
                let xmax = (self.state_lo[h] as i64 - z)
                    .abs()
                    .max((self.state_hi[h] as i64 - z).abs());
                let bz = self.b_z[h] as i64;
                let b = (self.b_re[k] as i64 - bz)
                    .abs()
                    .max((self.b_im[k] as i64 - bz).abs());
                let a = (self.a_re[k] as i64).abs() + (self.a_im[k] as i64).abs();
                a * xmax + b * self.w_max[h] as i64 + (1i64 << (s - 1)) + z.abs() * (1i64 << s)
            })
            .max()
            .unwrap_or(0)
    }

    /// The grid of the block's output codes: a post-norm's, else the residual's, else the
    /// GLU's.
    pub fn out_grid(&self) -> IntGrid {
        match (self.post_norm(), &self.residual) {
            (Some(n), _) => n.out(),
            (None, Some(r)) => r.out,
            (None, None) => self.glu_out,
        }
    }

    /// The norm after the residual sum, if the block's norm is there.
    pub fn post_norm(&self) -> Option<&NormStage> {
        self.norm.as_ref().filter(|_| self.prenorm.is_none())
    }

    /// The norm on the block input and the range it reads, if the block's norm is there.
    pub fn pre_norm(&self) -> Option<(&NormStage, NormInput)> {
        self.norm.as_ref().zip(self.prenorm)
    }
}

/// Bit widths of the packed encoder and decoder weight codes (the grids' widths, 1..=8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightBits {
    /// Encoder weights.
    pub enc: u32,
    /// Decoder.
    pub dec: u32,
}

/// Bit widths of a block's packed weight codes (1..=8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockBits {
    /// `Bbar` (both parts).
    pub b: u32,
    /// `C` (both parts).
    pub c: u32,
    /// Pointwise conv.
    pub lin: u32,
}

impl Serialize for IntegerModel {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        IntegerModel::serialize(self, s)
    }
}

impl<'de> Deserialize<'de> for IntegerModel {
    /// The current layout, or the flat one-block layout of the committed paper exports (the
    /// block's fields at top level, `b`, `c`, `lin` inside `weight_bits`), read as one block.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error;
        let mut v = serde_json::Value::deserialize(d)?;
        if v.get("blocks").is_none()
            && let Some(obj) = v.as_object_mut()
        {
            let bits = obj.get("weight_bits").cloned().unwrap_or_default();
            let mut block = obj.clone();
            block.insert(
                "bits".into(),
                serde_json::json!({"b": bits["b"], "c": bits["c"], "lin": bits["lin"]}),
            );
            obj.insert(
                "blocks".into(),
                serde_json::Value::Array(vec![block.into()]),
            );
        }
        IntegerModel::deserialize(v).map_err(D::Error::custom)
    }
}

/// The `Q30` sigmoid table: `round(sigmoid(i / 64) 2^30)` for `i = 0..=1024` (`[0, 16]`).
pub fn sigmoid_table() -> Vec<i32> {
    let step = (1u32 << (SIGMOID_IN_FRAC - SIGMOID_INTERP_BITS)) as f64; // 64 per unit
    (0..SIGMOID_LEN)
        .map(|i| {
            let x = i as f64 / step;
            let s = 1.0 / (1.0 + (-x).exp());
            (s * (1u64 << SIGMOID_OUT_FRAC) as f64).round_ties_even() as i32
        })
        .collect()
}

impl IntegerModel {
    /// The input code of a raw input value, exactly as the fake-quant model's input quantizer
    /// computes it (`clamp(round(x / s + z))`, f32, half to even).
    pub fn quantize_input(&self, x: f32) -> i8 {
        let v = (x / self.input_scale + self.input.z as f32)
            .clamp(self.input.qmin as f32, self.input.qmax as f32);
        v.round_ties_even() as i8
    }

    /// A fresh zero state.
    pub fn state(&self) -> IntegerState<'_> {
        let zeros = |b: &IntBlock| -> Vec<i32> {
            b.state_z
                .iter()
                .flat_map(|&z| std::iter::repeat_n(z, self.modes))
                .collect()
        };
        IntegerState {
            model: self,
            x_re: self.blocks.iter().map(zeros).collect(),
            x_im: self.blocks.iter().map(zeros).collect(),
            sums: vec![0; self.heads],
            steps: 0,
        }
    }

    /// Logit codes after the whole sequence `inputs` (`L * d_input` codes) and the predicted
    /// class (first maximum).
    pub fn classify(&self, inputs: &[i8]) -> (Vec<i8>, usize) {
        let mut st = self.state();
        for x in inputs.chunks_exact(self.d_input) {
            st.step(x);
        }
        let logits = st.logits();
        let pred = first_argmax(&logits);
        (logits, pred)
    }

    /// The grid the mean pool reads: the last block's output grid.
    pub fn pool_grid(&self) -> IntGrid {
        self.blocks.last().map_or(
            IntGrid {
                z: 0,
                qmin: 0,
                qmax: 0,
            },
            IntBlock::out_grid,
        )
    }

    /// [`IntBlock::state_bound`] over every block.
    pub fn state_bound(&self) -> i64 {
        self.blocks
            .iter()
            .map(|b| b.state_bound(self.heads, self.modes))
            .max()
            .unwrap_or(0)
    }

    fn sigmoid_q30(&self, b: i64) -> i64 {
        let mag = b.abs();
        let idx = (mag >> SIGMOID_INTERP_BITS) as usize;
        let s = match (self.sigmoid.get(idx), self.sigmoid.get(idx + 1)) {
            (Some(&t0), Some(&t1)) => {
                let frac = mag & ((1 << SIGMOID_INTERP_BITS) - 1);
                t0 as i64 + shr_round((t1 as i64 - t0 as i64) * frac, SIGMOID_INTERP_BITS)
            }
            _ => self.sigmoid[SIGMOID_LEN - 1] as i64,
        };
        if b < 0 {
            (1 << SIGMOID_OUT_FRAC) - s
        } else {
            s
        }
    }
}

/// Index of the first largest logit.
pub fn first_argmax(v: &[i8]) -> usize {
    v.iter()
        .enumerate()
        .fold(0, |best, (i, &x)| if x > v[best] { i } else { best })
}

/// The reference's recurrent state (state codes per block and part, pooled sums, step count).
#[derive(Debug, Clone)]
pub struct IntegerState<'m> {
    model: &'m IntegerModel,
    x_re: Vec<Vec<i32>>,
    x_im: Vec<Vec<i32>>,
    sums: Vec<i64>,
    steps: i64,
}

impl IntegerState<'_> {
    /// One time step (`d_input` input codes): the encoder, then each block's stages in
    /// order, each over all heads, then the pooled sum of the last block's output.
    pub fn step(&mut self, input: &[i8]) {
        self.step_features(input);
    }

    /// [`IntegerState::step`], returning the last block's output codes of this step (what
    /// the pool reads): the integer counterpart of `QuantizedClassifier::features` at this
    /// step, for locating where the two models part.
    pub fn step_features(&mut self, input: &[i8]) -> Vec<i32> {
        let m = self.model;
        let hn = m.heads;
        let x: Vec<i64> = input
            .iter()
            .map(|&v| (v as i64).clamp(m.input.qmin as i64, m.input.qmax as i64) - m.input.z as i64)
            .collect();
        // Encoder: u per head, block 0's input.
        let mut v: Vec<i64> = (0..hn)
            .map(|h| {
                let acc: i64 = x
                    .iter()
                    .enumerate()
                    .map(|(i, xi)| xi * (m.enc_w[i * hn + h] as i64 - m.enc_wz[h] as i64))
                    .sum();
                sat32(m.enc.apply(h, acc)) as i64
            })
            .collect();
        for (k, b) in m.blocks.iter().enumerate() {
            let out = self.block_step(k, b, &v);
            let z = b.out_grid().z as i64;
            v = out.iter().map(|&o| o as i64 - z).collect();
        }
        for (s, o) in self.sums.iter_mut().zip(&v) {
            *s += o;
        }
        self.steps += 1;
        let z = m.pool_grid().z as i64;
        v.iter().map(|&o| (o + z) as i32).collect()
    }

    /// Block `k` on its input `v` (per head, in the block's input unit): its output codes.
    fn block_step(&mut self, k: usize, b: &IntBlock, v: &[i64]) -> Vec<i32> {
        let m = self.model;
        let (hn, mn) = (m.heads, m.modes);
        let f = b.frac;
        let (x_re, x_im) = (&mut self.x_re[k], &mut self.x_im[k]);
        // The SSM's input: the block input, or a pre-norm's codes of it (minus the zero point).
        let s_in: Vec<i64> = match b.pre_norm() {
            None => v.to_vec(),
            Some((norm, r)) => {
                let x: Vec<i32> = v
                    .iter()
                    .map(|&x| x.clamp(r.lo as i64, r.hi as i64) as i32)
                    .collect();
                let mut codes = vec![0i32; hn];
                norm.apply(&x, &mut codes);
                let z = norm.out().z as i64;
                codes.iter().map(|&c| c as i64 - z).collect()
            }
        };
        let w: Vec<i64> = (0..hn)
            .map(|h| {
                let wm = b.w_max[h] as i64;
                (sat32(b.bu_rq.apply(h, s_in[h])) as i64).clamp(-wm, wm)
            })
            .collect();
        // State update (exact in i64 here; the runtime and C do it in i32, which the export's
        // bound `state_bound() <= i32::MAX` makes identical) and readout.
        let (s, half) = (b.state_shift, 1i64 << (b.state_shift - 1));
        let mut y_codes = vec![0i64; hn];
        for h in 0..hn {
            let (bz, cz, sz) = (b.b_z[h] as i64, b.c_z[h] as i64, b.state_z[h] as i64);
            let mut re_cx = 0i64;
            for n in 0..mn {
                let k = h * mn + n;
                let a = (b.a_re[k] as i64, b.a_im[k] as i64);
                let bb = (b.b_re[k] as i64 - bz, b.b_im[k] as i64 - bz);
                let c = (b.c_re[k] as i64 - cz, b.c_im[k] as i64 - cz);
                let xp = (x_re[k] as i64 - sz, x_im[k] as i64 - sz);
                let acc = (
                    bb.0 * w[h] + a.0 * xp.0 - a.1 * xp.1,
                    bb.1 * w[h] + a.0 * xp.1 + a.1 * xp.0,
                );
                let lo = b.state_lo[h] as i64;
                let hi = b.state_hi[h] as i64;
                // floor((acc + 2^(S-1)) / 2^S): round half up (i64 `>>` is a floor).
                let q = (
                    (((acc.0 + half) >> s) + sz).clamp(lo, hi),
                    (((acc.1 + half) >> s) + sz).clamp(lo, hi),
                );
                x_re[k] = q.0 as i32;
                x_im[k] = q.1 as i32;
                re_cx += c.0 * (q.0 - sz) - c.1 * (q.1 - sz);
            }
            let acc = b
                .cy_rq
                .apply(h, re_cx)
                .wrapping_add(b.dy_rq.apply(h, s_in[h]));
            y_codes[h] = (shr_round(acc, f) + b.ssm_out.z as i64)
                .clamp(b.ssm_out.qmin as i64, b.ssm_out.qmax as i64);
        }
        // GELU + activation quantizer by table.
        let g: Vec<i64> = y_codes
            .iter()
            .map(|&y| b.gelu[(y - b.ssm_out.qmin as i64) as usize] as i64 - b.act_z as i64)
            .collect();
        // Pointwise linear H -> 2H.
        let lin: Vec<i64> = (0..2 * hn)
            .map(|j| {
                let acc: i64 = (0..hn)
                    .map(|h| g[h] * (b.lin_w[h * 2 * hn + j] as i64 - b.lin_wz[j] as i64))
                    .sum();
                sat32(b.lin.apply(j, acc)) as i64
            })
            .collect();
        // GLU.
        let oz = b.glu_out.z as i64;
        let mut out: Vec<i32> = (0..hn)
            .map(|j| {
                let gate = m.sigmoid_q30(lin[hn + j]);
                (shr_round(lin[j] * gate, SIGMOID_OUT_FRAC + f) + oz)
                    .clamp(b.glu_out.qmin as i64, b.glu_out.qmax as i64) as i32
            })
            .collect();
        // Residual sum: both terms in Q.frac residual units, rounded once.
        if let Some(r) = &b.residual {
            for (j, o) in out.iter_mut().enumerate() {
                let acc =
                    r.f.apply(j, *o as i64 - oz)
                        .wrapping_add(r.x.apply(j, v[j]));
                *o = (shr_round(acc, r.frac) + r.out.z as i64)
                    .clamp(r.out.qmin as i64, r.out.qmax as i64) as i32;
            }
        }
        // Post-norm on the codes so far, centred on their grid's zero point.
        if let Some(norm) = b.post_norm() {
            let z = b.residual.as_ref().map_or(b.glu_out.z, |r| r.out.z);
            let x: Vec<i32> = out.iter().map(|&o| o - z).collect();
            norm.apply(&x, &mut out);
        }
        out
    }

    /// Logit codes of the mean-pooled sequence so far.
    pub fn logits(&self) -> Vec<i8> {
        let m = self.model;
        (0..m.classes)
            .map(|k| {
                let acc: i64 = (0..m.heads)
                    .map(|h| {
                        self.sums[h] * (m.dec_w[h * m.classes + k] as i64 - m.dec_wz[k] as i64)
                    })
                    .sum();
                let mean = if self.steps == 0 {
                    0
                } else {
                    div_round(acc << m.pool_frac, self.steps)
                };
                (m.dec.apply(k, mean) + m.logits_z[k] as i64)
                    .clamp(m.logits_qmin as i64, m.logits_qmax as i64) as i8
            })
            .collect()
    }

    /// State codes as `[block][H][M][re, im]` (the runtime's layout), for comparisons.
    pub fn codes(&self) -> Vec<i8> {
        self.x_re
            .iter()
            .zip(&self.x_im)
            .flat_map(|(re, im)| re.iter().zip(im).flat_map(|(&r, &i)| [r as i8, i as i8]))
            .collect()
    }
}

#[cfg(test)]
mod tests;

/// One golden line: the logit codes separated by spaces, then `| predicted class`. The C
/// harness prints the same format, so outputs compare byte for byte.
pub fn format_logits(logits: &[i8], pred: usize) -> String {
    let mut s = String::new();
    for l in logits {
        s.push_str(&l.to_string());
        s.push(' ');
    }
    s.push_str(&format!("| {pred}"));
    s
}
