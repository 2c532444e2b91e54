//! The parsed model (zero-copy views into the file) and integer inference.
//!
//! Notation: every quantized tensor `T` has integer codes `q` on a signed grid of at most 8
//! bits, a zero point `z` and a real scale `s` (`T ~ (q - z) s`); scales never reach the
//! runtime, only the fixed-point multipliers derived from them. Per time step, per head `h`:
//!
//! 1. `U[h] = requant(sum_i (q_in[i] - z_in) (We[i,h] - zWe[h]))`: the encoder output in a
//!    per-head fixed-point unit (`~2^22` full scale), never quantized (it is float in the
//!    fake-quant model either).
//! 2. `W[h] = clamp(requant(U[h]), -Wmax[h], Wmax[h])`: `Bbar`'s real input in state units
//!    with `S` fraction bits (`S` = the file's `state_shift`; `Wmax` is the export-time bound
//!    on `|W|`, so the clamp never binds for a valid model and only fences hostile files).
//! 3. per mode `n` (**32-bit only**): with `x' = x_{t-1} - zx` and `A = round(Abar 2^S)` (the
//!    dequantized `Abar`, pre-scaled at export, an `i32` re/im pair)
//!    `v = (Bbar - zB) W + A x'` (complex, `i32`), `x_t = clamp(((v + 2^(S-1)) >> S) + zx, lo, hi)`
//!    (round half up; the state clamp `+-50` and the grid folded into `lo, hi`). The parser
//!    proves, from the file's own numbers, `max |v| + 2^(S-1) + |zx| 2^S <= i32::MAX` for every
//!    mode (see `Model::parse`), so no `i32` here can overflow, in this runtime or in the C
//!    export that folds `zx` into the rounding constant.
//! 4. `y = clamp(shr_round(requant(2 Re sum_n (C - zC) (x_t - zx)) + requant(D U), F) + zy)`:
//!    SSM output code (`Re sum` in `i32`: `M <= 1024` codes of at most `255 x 255 x 2`).
//! 5. `g = GELU_LUT[y]`: GELU and the activation quantizer as one table over the `y` grid
//!    (exact: a function of one quantized value is a table).
//! 6. `a_j, b_j = requant(sum_h (g - zg) (Wc[h,j] - zWc[j]))`; `o_j = clamp(shr_round(a_j
//!    sigmoid(b_j), 30 + F) + zo)` with `sigmoid` from a 1025-entry `Q30` table on `[0, 16)`
//!    (step `1/64`, linear interpolation, `sigmoid(-b) = 1 - sigmoid(b)`).
//! 7. `S[j] += o_j - zo` (the mean pool as a running sum).
//!
//! Logits after `t` steps: `P_k = div_round((sum_h S[h] (Wd[h,k] - zWd[k])) 2^Fp, t)`, then
//! `l_k = clamp(requant(P_k) + zl[k])`.
//!
//! **Stacked blocks** (format version 3): steps 2-6 run once per block, in order, each block
//! with its own arrays, `F` and `S`. Block 0's input is `U`; block `k >= 1`'s input is block
//! `k - 1`'s output code minus its zero point (`V[h] = q[h] - zq`, in place of `U[h]` in
//! steps 2 and 4; the export derived `requant` for that unit). After the GLU, per channel:
//!
//! - residual (if the block has one): `r_j = clamp(shr_round(requant_f(o_j - zo) +
//!   requant_x(V_j), Fr) + zr)`, both terms in `Q.Fr` residual-code units, one rounding;
//! - norm (if any) on the step's codes `q` (the residual's, else the GLU output's): LayerNorm
//!   by [`crate::norm::LnStep`] (integer mean and variance, exact square root, one division)
//!   to `Q22` values `n`, then `clamp(shr_round(n_j m_j + bias_j, s))`; BatchNorm
//!   `clamp(shr_round((q_j - zq) m_j + bias_j, s))` (its frozen affine folded at export).
//!
//! - or, with a pre-norm (format 3 norm kinds 3 and 4), the same norm before step 2 on the
//!   block input `V` clamped to the file's range (block 0: `U`, for LayerNorm in one unit for
//!   all heads, with `sqrt_frac` root fraction bits, see [`crate::norm`]); steps 2 and 4 read
//!   its codes minus their zero point, and the residual still adds `V`.
//!
//! The block's output codes (post-norm, else residual, else GLU) feed the next block; the last
//! block's are what step 7 pools. Between blocks and for a norm the step keeps `H` output
//! codes in scratch bytes at the end of the state buffer ([`Model::state_len`]).
//!
//! Weight codes (`We`, `Bbar`, `C`, `Wc`, `Wd`) are stored bit-packed at their grid's width
//! (two 4-bit codes per byte, four 2-bit, a 6-bit code straddling bytes; see
//! [`crate::format`]).

use crate::fixed::{div_round, requant, sat32, shr_round};
use crate::format::{Error, Reader, VERSION_ONE_BLOCK, split_header_versioned};
use crate::norm::{LN_SQRT_FRAC, LnStep, affine_code, layer_norm_fits_frac};

/// Largest dimension (inputs, heads, modes, classes) a file may declare: keeps every
/// accumulator provably inside its integer type.
pub const MAX_DIM: usize = 1024;
/// Most time steps one state can take (`2^24`): the pooled sums and logit numerators stay
/// inside `i64` for any valid model.
pub const MAX_STEPS: u32 = 1 << 24;
/// Entries of the sigmoid table (`[0, 16]` in steps of `1/64`).
pub const SIGMOID_LEN: usize = 1025;
/// Fraction bits of the sigmoid's input (`b` in `Q16`).
pub const SIGMOID_IN_FRAC: u32 = 16;
/// The table's step in input units: `2^-6`, i.e. 10 of the 16 fraction bits interpolate.
pub const SIGMOID_INTERP_BITS: u32 = 10;
/// Fraction bits of the sigmoid's output (`Q30`).
pub const SIGMOID_OUT_FRAC: u32 = 30;

#[derive(Clone, Copy)]
struct I8s<'a>(&'a [u8]);
impl I8s<'_> {
    #[inline]
    fn at(&self, i: usize) -> i32 {
        self.0[i] as i8 as i32
    }
}

#[derive(Clone, Copy)]
struct I32s<'a>(&'a [u8]);
impl I32s<'_> {
    #[inline]
    fn at(&self, i: usize) -> i32 {
        let b = &self.0[4 * i..4 * i + 4];
        i32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
    fn len(&self) -> usize {
        self.0.len() / 4
    }
}

#[derive(Clone, Copy)]
struct I64s<'a>(&'a [u8]);
impl I64s<'_> {
    #[inline]
    fn at(&self, i: usize) -> i64 {
        let b = &self.0[8 * i..8 * i + 8];
        i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
    }
}

/// Signed codes of `bits` bits each, packed LSB-first into bytes (two 4-bit codes per byte;
/// a 6-bit code may straddle two bytes); 8-bit codes are plain `i8`.
#[derive(Clone, Copy)]
struct Codes<'a> {
    bytes: &'a [u8],
    bits: u32,
}
impl Codes<'_> {
    #[inline]
    fn at(&self, i: usize) -> i32 {
        if self.bits == 8 {
            return self.bytes[i] as i8 as i32;
        }
        let bit = i * self.bits as usize;
        let (byte, off) = (bit / 8, (bit % 8) as u32);
        let lo = self.bytes[byte] as u32;
        let hi = self.bytes.get(byte + 1).map_or(0, |&b| b as u32);
        let v = ((lo | (hi << 8)) >> off) << (32 - self.bits);
        (v as i32) >> (32 - self.bits)
    }
}

#[derive(Clone, Copy)]
struct U8s<'a>(&'a [u8]);
impl U8s<'_> {
    #[inline]
    fn at(&self, i: usize) -> u32 {
        self.0[i] as u32
    }
}

/// A grid `[qmin, qmax]` with zero point `z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Grid {
    z: i32,
    qmin: i32,
    qmax: i32,
}

/// Per-channel fixed-point multipliers: mantissa, shift and pre-scaled bias.
#[derive(Clone, Copy)]
struct Requant<'a> {
    m: I32s<'a>,
    shift: U8s<'a>,
    bias: Option<I64s<'a>>,
}

impl Requant<'_> {
    #[inline]
    fn apply(&self, c: usize, acc: i32) -> i64 {
        let bias = self.bias.map_or(0, |b| b.at(c));
        requant(acc, self.m.at(c), bias, self.shift.at(c))
    }
}

/// Most S4D blocks a file may declare (the parsed model holds a fixed array of block views,
/// so its size is bounded without allocation).
pub const MAX_BLOCKS: usize = 8;

/// A block's residual sum (both terms to `Q.frac` residual units, then the residual grid).
#[derive(Clone, Copy)]
struct Residual<'a> {
    f: Requant<'a>,
    x: Requant<'a>,
    frac: u32,
    out: Grid,
}

/// A per-channel affine to an output grid (BatchNorm, and LayerNorm's scale and shift).
#[derive(Clone, Copy)]
struct Affine<'a> {
    m: I32s<'a>,
    bias: I64s<'a>,
    shift: u32,
    out: Grid,
}

impl Affine<'_> {
    #[inline]
    fn apply(&self, c: usize, x: i32) -> i8 {
        affine_code(
            x,
            self.m.at(c),
            self.bias.at(c),
            self.shift,
            self.out.qmin,
            self.out.qmax,
        ) as i8
    }
}

#[derive(Clone, Copy)]
enum Norm<'a> {
    Layer {
        e16: u64,
        sqrt_frac: u32,
        affine: Affine<'a>,
    },
    Batch(Affine<'a>),
}

impl Norm<'_> {
    fn out(&self) -> Grid {
        match self {
            Norm::Layer { affine, .. } => affine.out,
            Norm::Batch(a) => a.out,
        }
    }
}

/// A norm over one step: LayerNorm's statistics of the step (none for BatchNorm) and the
/// affine from the normalised (LayerNorm) or centred (BatchNorm) value to a code. The same
/// for a pre-norm (on the block input) and a post-norm (on the residual sum's codes).
#[derive(Clone, Copy)]
struct NormStep<'a> {
    ln: Option<LnStep>,
    affine: Affine<'a>,
}

impl<'a> NormStep<'a> {
    /// The step of `norm` over the `h` centred values `x(0..h)` (LayerNorm is unchanged by a
    /// common offset, so centring is exact for it too).
    fn new(norm: &Norm<'a>, h: usize, x: impl Fn(usize) -> i32) -> Self {
        match *norm {
            Norm::Layer {
                e16,
                sqrt_frac,
                affine,
            } => Self {
                ln: Some(LnStep::with_frac(h, e16, sqrt_frac, x)),
                affine,
            },
            Norm::Batch(affine) => Self { ln: None, affine },
        }
    }

    /// Output code of channel `c` for its centred value `x`.
    #[inline]
    fn code(&self, c: usize, x: i32) -> i8 {
        self.affine.apply(c, self.ln.map_or(x, |st| st.value(x)))
    }
}

/// One block's arrays (views into the file).
#[derive(Clone, Copy)]
struct Block<'a> {
    frac: u32,
    state_shift: u32,
    a_re: I32s<'a>,
    a_im: I32s<'a>,
    b_re: Codes<'a>,
    b_im: Codes<'a>,
    b_z: I32s<'a>,
    c_re: Codes<'a>,
    c_im: Codes<'a>,
    c_z: I32s<'a>,
    bu_rq: Requant<'a>,
    w_max: I32s<'a>,
    cy_rq: Requant<'a>,
    dy_rq: Requant<'a>,
    st_z: I32s<'a>,
    st_lo: I32s<'a>,
    st_hi: I32s<'a>,
    y: Grid,
    gelu: I8s<'a>,
    g_z: i32,
    lin_w: Codes<'a>,
    lin_wz: I32s<'a>,
    lin: Requant<'a>,
    out: Grid,
    residual: Option<Residual<'a>>,
    norm: Option<Norm<'a>>,
    /// Pre-norm: `norm` reads the block input clamped to `(lo, hi)`; `None`: post-norm.
    pre: Option<(i32, i32)>,
}

impl Block<'_> {
    /// The grid of the residual sum, else of the GLU output (what a post-norm reads).
    fn sum_grid(&self) -> Grid {
        self.residual.map_or(self.out, |r| r.out)
    }

    /// The norm after the residual sum, if the block's norm is there.
    fn post_norm(&self) -> Option<&Norm<'_>> {
        self.norm.as_ref().filter(|_| self.pre.is_none())
    }

    /// The norm on the block input, if the block's norm is there.
    fn pre_norm(&self) -> Option<&Norm<'_>> {
        self.norm.as_ref().filter(|_| self.pre.is_some())
    }

    /// The grid of the block's output codes.
    fn out_grid(&self) -> Grid {
        self.post_norm().map_or(self.sum_grid(), Norm::out)
    }
}

/// A parsed model file. Holds only slices into the caller's bytes (which may sit in flash);
/// nothing is copied or allocated.
#[derive(Clone, Copy)]
pub struct Model<'a> {
    d_input: usize,
    heads: usize,
    modes: usize,
    classes: usize,
    pool_frac: u32,
    input: Grid,
    enc_w: Codes<'a>,
    enc_wz: I32s<'a>,
    enc: Requant<'a>,
    /// `n_blocks` blocks; the entries past them repeat block 0 (never read).
    blocks: [Block<'a>; MAX_BLOCKS],
    n_blocks: usize,
    sigmoid: I32s<'a>,
    dec_w: Codes<'a>,
    dec_wz: I32s<'a>,
    dec: Requant<'a>,
    l_z: I32s<'a>,
    l_qmin: i32,
    l_qmax: i32,
}

fn in_i8(v: i32) -> bool {
    (-128..=127).contains(&v)
}

fn check(ok: bool, field: &'static str) -> Result<(), Error> {
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidValue { field })
    }
}

fn dim(r: &mut Reader<'_>, field: &'static str, min: usize) -> Result<usize, Error> {
    let v = r.u16(field)? as usize;
    check((min..=MAX_DIM).contains(&v), field)?;
    Ok(v)
}

fn grid(r: &mut Reader<'_>, field: &'static str) -> Result<Grid, Error> {
    let z = r.i32(field)?;
    let qmin = r.i32(field)?;
    let qmax = r.i32(field)?;
    check(
        in_i8(qmin) && in_i8(qmax) && qmin < qmax && (qmin..=qmax).contains(&z),
        field,
    )?;
    Ok(Grid { z, qmin, qmax })
}

fn i8s<'a>(r: &mut Reader<'a>, len: usize, field: &'static str) -> Result<I8s<'a>, Error> {
    Ok(I8s(r.array(len, 1, field)?))
}

/// Packed weight codes: a `u8` width (1..=8 bits), then `len` codes in
/// `ceil(len bits / 8)` bytes (see [`crate::format`]).
fn codes_packed<'a>(
    r: &mut Reader<'a>,
    len: usize,
    field: &'static str,
) -> Result<Codes<'a>, Error> {
    let bits = r.u8(field)? as u32;
    check((1..=8).contains(&bits), field)?;
    let bytes = r.packed(len, bits as usize, field)?;
    Ok(Codes { bytes, bits })
}

fn i32s<'a>(r: &mut Reader<'a>, len: usize, field: &'static str) -> Result<I32s<'a>, Error> {
    Ok(I32s(r.array(len, 4, field)?))
}

/// An `i32` array whose values must all be valid `i8` codes (zero points, state bounds).
fn codes<'a>(r: &mut Reader<'a>, len: usize, field: &'static str) -> Result<I32s<'a>, Error> {
    let a = i32s(r, len, field)?;
    check((0..a.len()).all(|i| in_i8(a.at(i))), field)?;
    Ok(a)
}

fn requant_arrays<'a>(
    r: &mut Reader<'a>,
    len: usize,
    with_bias: bool,
    field: &'static str,
) -> Result<Requant<'a>, Error> {
    let m = i32s(r, len, field)?;
    let shift = U8s(r.array(len, 1, field)?);
    check((0..len).all(|i| shift.at(i) <= 62), field)?;
    let bias = if with_bias {
        Some(I64s(r.array(len, 8, field)?))
    } else {
        None
    };
    Ok(Requant { m, shift, bias })
}

/// A block's SSM, GELU table, pointwise conv and GLU grid (version 2 has the sigmoid table
/// between the conv's requantization and the GLU grid: `sigmoid_v2` receives it).
fn block_core<'a>(
    r: &mut Reader<'a>,
    heads: usize,
    modes: usize,
    frac: u32,
    state_shift: u32,
    sigmoid_v2: Option<&mut Option<I32s<'a>>>,
) -> Result<Block<'a>, Error> {
    check((1..=30).contains(&frac), "frac")?;
    check((1..=30).contains(&state_shift), "state_shift")?;
    let (h, hm) = (heads, heads * modes);
    let a_re = i32s(r, hm, "a_re")?;
    let a_im = i32s(r, hm, "a_im")?;
    let b_re = codes_packed(r, hm, "b_re")?;
    let b_im = codes_packed(r, hm, "b_im")?;
    let b_z = codes(r, h, "b_z")?;
    let c_re = codes_packed(r, hm, "c_re")?;
    let c_im = codes_packed(r, hm, "c_im")?;
    let c_z = codes(r, h, "c_z")?;
    let bu_rq = requant_arrays(r, h, false, "bu_rq")?;
    let w_max = i32s(r, h, "w_max")?;
    check((0..h).all(|i| w_max.at(i) >= 0), "w_max")?;
    let cy_rq = requant_arrays(r, h, false, "cy_rq")?;
    let dy_rq = requant_arrays(r, h, false, "dy_rq")?;
    let st_z = codes(r, h, "state_z")?;
    let st_lo = codes(r, h, "state_lo")?;
    let st_hi = codes(r, h, "state_hi")?;
    check(
        (0..h).all(|i| st_lo.at(i) <= st_hi.at(i)),
        "state_lo/state_hi",
    )?;
    // The 32-bit state update's bound (module doc, step 3), from the file's own numbers.
    let state_ok = (0..h).all(|i| {
        let (z, wm) = (st_z.at(i) as i64, w_max.at(i) as i64);
        let xmax = (st_lo.at(i) as i64 - z)
            .abs()
            .max((st_hi.at(i) as i64 - z).abs());
        let fixed = (1i64 << (state_shift - 1)) + z.abs() * (1i64 << state_shift);
        let bz = b_z.at(i) as i64;
        (0..modes).all(|n| {
            let k = i * modes + n;
            let a = (a_re.at(k) as i64).abs() + (a_im.at(k) as i64).abs();
            let b = (b_re.at(k) as i64 - bz)
                .abs()
                .max((b_im.at(k) as i64 - bz).abs());
            a * xmax + b * wm + fixed <= i32::MAX as i64
        })
    });
    check(
        state_ok,
        "state accumulator bound (a_re/a_im/w_max/state_shift)",
    )?;
    let y = grid(r, "ssm_output_grid")?;
    let gelu = i8s(r, (y.qmax - y.qmin + 1) as usize, "gelu_lut")?;
    let g_z = r.i32("activation_z")?;
    check(in_i8(g_z), "activation_z")?;
    let lin_w = codes_packed(r, h * 2 * h, "lin_w")?;
    let lin_wz = codes(r, 2 * h, "lin_wz")?;
    let lin = requant_arrays(r, 2 * h, true, "lin_rq")?;
    if let Some(slot) = sigmoid_v2 {
        *slot = Some(sigmoid_table(r)?);
    }
    let out = grid(r, "glu_output_grid")?;
    Ok(Block {
        frac,
        state_shift,
        a_re,
        a_im,
        b_re,
        b_im,
        b_z,
        c_re,
        c_im,
        c_z,
        bu_rq,
        w_max,
        cy_rq,
        dy_rq,
        st_z,
        st_lo,
        st_hi,
        y,
        gelu,
        g_z,
        lin_w,
        lin_wz,
        lin,
        out,
        residual: None,
        norm: None,
        pre: None,
    })
}

fn sigmoid_table<'a>(r: &mut Reader<'a>) -> Result<I32s<'a>, Error> {
    let sigmoid = i32s(r, SIGMOID_LEN, "sigmoid")?;
    check(
        (0..SIGMOID_LEN).all(|i| (0..=1 << SIGMOID_OUT_FRAC).contains(&sigmoid.at(i))),
        "sigmoid",
    )?;
    Ok(sigmoid)
}

fn affine<'a>(r: &mut Reader<'a>, h: usize, field: &'static str) -> Result<Affine<'a>, Error> {
    let m = i32s(r, h, field)?;
    let bias = I64s(r.array(h, 8, field)?);
    let shift = r.u8(field)? as u32;
    check(shift <= 62, field)?;
    let out = grid(r, field)?;
    Ok(Affine {
        m,
        bias,
        shift,
        out,
    })
}

/// A version-3 block: `frac`, `state_shift`, the residual flag (0/1) and the norm kind (0
/// none, 1 LayerNorm and 2 BatchNorm after the residual sum, 3 LayerNorm and 4 BatchNorm on
/// the block input) as bytes, the core, then the stages (a pre-norm's clamp range first, and
/// a pre-norm LayerNorm's root fraction bits). `prev` is the previous block's output grid
/// (`None` for block 0): a later block's pre-norm range must lie inside it.
fn block_v3<'a>(
    r: &mut Reader<'a>,
    heads: usize,
    modes: usize,
    prev: Option<Grid>,
) -> Result<Block<'a>, Error> {
    let frac = r.u8("block frac")? as u32;
    let state_shift = r.u8("block state_shift")? as u32;
    let has_residual = r.u8("residual flag")?;
    check(has_residual <= 1, "residual flag")?;
    let norm_kind = r.u8("norm kind")?;
    check(norm_kind <= 4, "norm kind")?;
    let mut b = block_core(r, heads, modes, frac, state_shift, None)?;
    if has_residual == 1 {
        let f = requant_arrays(r, heads, false, "residual_f")?;
        let x = requant_arrays(r, heads, false, "residual_x")?;
        let frac = r.u8("residual_frac")? as u32;
        check(frac <= 62, "residual_frac")?;
        let out = grid(r, "residual_grid")?;
        b.residual = Some(Residual { f, x, frac, out });
    }
    if norm_kind >= 3 {
        let lo = r.i32("pre_norm_range")?;
        let hi = r.i32("pre_norm_range")?;
        check(lo <= hi, "pre_norm_range")?;
        // After block 0 the input is a code minus its zero point: inside an 8-bit range.
        if let Some(g) = prev {
            check(lo >= g.qmin - g.z && hi <= g.qmax - g.z, "pre_norm_range")?;
        }
        b.pre = Some((lo, hi));
    }
    b.norm = match norm_kind {
        1 | 3 => {
            let sqrt_frac = if norm_kind == 3 {
                r.u8("layer_norm_sqrt_frac")? as u32
            } else {
                LN_SQRT_FRAC
            };
            let e = I64s(r.array(1, 8, "layer_norm_eps")?).at(0);
            let range = match b.pre {
                Some((lo, hi)) => (hi as i64 - lo as i64).min(u32::MAX as i64) as u32,
                None => {
                    let g = b.sum_grid();
                    (g.qmax - g.qmin) as u32
                }
            };
            check(
                e >= 0 && layer_norm_fits_frac(heads, range, e as u64, sqrt_frac),
                "layer_norm_eps",
            )?;
            Some(Norm::Layer {
                e16: e as u64,
                sqrt_frac,
                affine: affine(r, heads, "layer_norm_affine")?,
            })
        }
        2 | 4 => Some(Norm::Batch(affine(r, heads, "batch_norm_affine")?)),
        _ => None,
    };
    Ok(b)
}

impl<'a> Model<'a> {
    /// Parses and validates a model file (header, checksum, every length and range) of
    /// format version 3 (stacked blocks) or 2 (one block). Never panics; every defect is an
    /// [`Error`].
    pub fn parse(file: &'a [u8]) -> Result<Self, Error> {
        let (version, payload) = split_header_versioned(file)?;
        let v2 = version == VERSION_ONE_BLOCK;
        let mut r = Reader::new(payload);
        let d_input = dim(&mut r, "d_input", 1)?;
        let heads = dim(&mut r, "heads", 1)?;
        let modes = dim(&mut r, "modes", 1)?;
        let classes = dim(&mut r, "classes", 2)?;
        // Version 2: frac, pool_frac, state_shift, 0; version 3: blocks, pool_frac, 0, 0.
        let b0 = r.u8("frac / blocks")? as u32;
        let pool_frac = r.u8("pool_frac")? as u32;
        check(pool_frac <= 30, "pool_frac")?;
        let b2 = r.u8("state_shift")? as u32;
        check(r.u8("reserved")? == 0, "reserved")?;
        let n_blocks = if v2 { 1 } else { b0 as usize };
        check((1..=MAX_BLOCKS).contains(&n_blocks), "blocks")?;
        check(v2 || b2 == 0, "reserved")?;
        let input = grid(&mut r, "input_grid")?;
        let h = heads;
        let enc_w = codes_packed(&mut r, d_input * h, "enc_w")?;
        let enc_wz = codes(&mut r, h, "enc_wz")?;
        let enc = requant_arrays(&mut r, h, true, "enc_rq")?;
        let (first, sigmoid) = if v2 {
            let mut sig = None;
            let b = block_core(&mut r, heads, modes, b0, b2, Some(&mut sig))?;
            (b, sig.ok_or(Error::Truncated { field: "sigmoid" })?)
        } else {
            let sig = sigmoid_table(&mut r)?;
            (block_v3(&mut r, heads, modes, None)?, sig)
        };
        let mut blocks = [first; MAX_BLOCKS];
        for k in 1..n_blocks {
            let prev = blocks[k - 1].out_grid();
            blocks[k] = block_v3(&mut r, heads, modes, Some(prev))?;
        }
        let dec_w = codes_packed(&mut r, h * classes, "dec_w")?;
        let dec_wz = codes(&mut r, classes, "dec_wz")?;
        let dec = requant_arrays(&mut r, classes, true, "dec_rq")?;
        let l_z = codes(&mut r, classes, "logits_z")?;
        let l_qmin = r.i32("logits_grid")?;
        let l_qmax = r.i32("logits_grid")?;
        check(
            in_i8(l_qmin) && in_i8(l_qmax) && l_qmin < l_qmax,
            "logits_grid",
        )?;
        if r.remaining() != 0 {
            return Err(Error::TrailingBytes(r.remaining()));
        }
        Ok(Self {
            d_input,
            heads,
            modes,
            classes,
            pool_frac,
            input,
            enc_w,
            enc_wz,
            enc,
            blocks,
            n_blocks,
            sigmoid,
            dec_w,
            dec_wz,
            dec,
            l_z,
            l_qmin,
            l_qmax,
        })
    }

    /// S4D blocks.
    pub fn blocks(&self) -> usize {
        self.n_blocks
    }

    /// Input features per time step.
    pub fn d_input(&self) -> usize {
        self.d_input
    }

    /// Heads `H`.
    pub fn heads(&self) -> usize {
        self.heads
    }

    /// Complex modes per head `M`.
    pub fn modes(&self) -> usize {
        self.modes
    }

    /// Classes (length of the logits).
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// State codes of all blocks: `2 H M` per block (real and imaginary part per mode).
    pub fn codes_len(&self) -> usize {
        2 * self.heads * self.modes * self.n_blocks
    }

    /// Whether a step needs the `H`-byte block-output scratch: between blocks, and for a norm
    /// (which reads every channel of a step before writing one).
    fn needs_io(&self) -> bool {
        self.n_blocks > 1 || self.blocks[0].norm.is_some()
    }

    /// Length of the state buffer: the state codes ([`Model::codes_len`]), plus `H` bytes of
    /// per-step scratch for the block outputs when the model has more than one block or a
    /// norm. `2 H M` for the paper's one-block model.
    pub fn state_len(&self) -> usize {
        self.codes_len() + if self.needs_io() { self.heads } else { 0 }
    }

    /// The input grid `(zero point, qmin, qmax)`: callers quantize raw inputs onto it.
    pub fn input_grid(&self) -> (i32, i32, i32) {
        (self.input.z, self.input.qmin, self.input.qmax)
    }

    #[inline]
    fn sigmoid_q30(&self, b: i32) -> i64 {
        let mag = (b as i64).unsigned_abs();
        let idx = (mag >> SIGMOID_INTERP_BITS) as usize;
        let s = if idx >= SIGMOID_LEN - 1 {
            self.sigmoid.at(SIGMOID_LEN - 1) as i64
        } else {
            let frac = (mag & ((1 << SIGMOID_INTERP_BITS) - 1)) as i64;
            let t0 = self.sigmoid.at(idx) as i64;
            let t1 = self.sigmoid.at(idx + 1) as i64;
            t0 + shr_round((t1 - t0) * frac, SIGMOID_INTERP_BITS)
        };
        if b < 0 {
            (1i64 << SIGMOID_OUT_FRAC) - s
        } else {
            s
        }
    }

    /// Encoder output `u` of head `h` (block 0's input, per-head fixed-point unit).
    #[inline]
    fn encode(&self, input: &[i8], h: usize) -> i32 {
        let wz = self.enc_wz.at(h);
        let mut acc = 0i32;
        for (i, &x) in input.iter().enumerate() {
            let x = (x as i32).clamp(self.input.qmin, self.input.qmax) - self.input.z;
            acc += x * (self.enc_w.at(i * self.heads + h) - wz);
        }
        sat32(self.enc.apply(h, acc))
    }

    /// Advances `state` by one time step of input codes `input` (`d_input` of them, clamped to
    /// the input grid) without computing logits.
    pub fn advance(&self, state: &mut State<'_>, input: &[i8]) -> Result<(), Error> {
        self.check_state(state)?;
        if input.len() != self.d_input {
            return Err(Error::BufferSize {
                buffer: "input",
                expected: self.d_input,
                found: input.len(),
            });
        }
        if state.t >= MAX_STEPS {
            return Err(Error::SequenceTooLong);
        }
        let (h_n, m_n) = (self.heads, self.modes);
        let per_block = 2 * h_n * m_n;
        let (xs, io) = state.x.split_at_mut(self.codes_len());
        for (bi, blk) in self.blocks.iter().take(self.n_blocks).enumerate() {
            let last = bi + 1 == self.n_blocks;
            // The block input per head: `u` for block 0, else the previous output code minus
            // its zero point (`io` holds it).
            let zin = if bi == 0 {
                0
            } else {
                self.blocks[bi - 1].out_grid().z
            };
            let input_of = |io: &[i8], h: usize| {
                if bi == 0 {
                    self.encode(input, h)
                } else {
                    io[h] as i32 - zin
                }
            };
            // A pre-norm's input (the block input clamped to the file's range) and this step
            // of it.
            let (lo, hi) = blk.pre.unwrap_or((i32::MIN, i32::MAX));
            let pre_in = |io: &[i8], h: usize| input_of(io, h).clamp(lo, hi);
            let pre = blk
                .pre_norm()
                .map(|norm| NormStep::new(norm, h_n, |i| pre_in(io, i)));
            let f = blk.frac;
            let xb = &mut xs[bi * per_block..(bi + 1) * per_block];
            for h in 0..h_n {
                // 1. block input, or a pre-norm's code of it minus the zero point
                let u = match &pre {
                    Some(step) => step.code(h, pre_in(io, h)) as i32 - step.affine.out.z,
                    None => input_of(io, h),
                };
                // 2. Bbar's input in Q.S state units, fenced by the export-time bound
                let wm = blk.w_max.at(h);
                let w = sat32(blk.bu_rq.apply(h, u)).clamp(-wm, wm);
                let (bz, cz) = (blk.b_z.at(h), blk.c_z.at(h));
                let (sz, lo, hi) = (blk.st_z.at(h), blk.st_lo.at(h), blk.st_hi.at(h));
                let (s, half) = (blk.state_shift, 1i32 << (blk.state_shift - 1));
                let mut re_cx = 0i32;
                // Per-head views: the bounds are checked once here, not per mode.
                let k0 = h * m_n;
                let a_re = &blk.a_re.0[4 * k0..4 * (k0 + m_n)];
                let a_im = &blk.a_im.0[4 * k0..4 * (k0 + m_n)];
                let xh = &mut xb[2 * k0..2 * (k0 + m_n)];
                let modes = xh
                    .chunks_exact_mut(2)
                    .zip(a_re.chunks_exact(4).zip(a_im.chunks_exact(4)));
                for (n, (x, (are, aim))) in modes.enumerate() {
                    let k = k0 + n;
                    // 3. state update, all in i32 (bound proved at parse; wrapping ops only
                    // keep overflow-checked builds total)
                    let ar = i32::from_le_bytes([are[0], are[1], are[2], are[3]]);
                    let ai = i32::from_le_bytes([aim[0], aim[1], aim[2], aim[3]]);
                    let xr = x[0] as i32 - sz;
                    let xi = x[1] as i32 - sz;
                    let (br, bim) = (blk.b_re.at(k) - bz, blk.b_im.at(k) - bz);
                    let vr = br
                        .wrapping_mul(w)
                        .wrapping_add(ar.wrapping_mul(xr))
                        .wrapping_sub(ai.wrapping_mul(xi));
                    let vi = bim
                        .wrapping_mul(w)
                        .wrapping_add(ar.wrapping_mul(xi))
                        .wrapping_add(ai.wrapping_mul(xr));
                    let qr = ((vr.wrapping_add(half) >> s) + sz).clamp(lo, hi);
                    let qi = ((vi.wrapping_add(half) >> s) + sz).clamp(lo, hi);
                    x[0] = qr as i8;
                    x[1] = qi as i8;
                    // 4. readout Re(C x)
                    let (cr, ci) = (blk.c_re.at(k) - cz, blk.c_im.at(k) - cz);
                    re_cx += cr * (qr - sz) - ci * (qi - sz);
                }
                let yacc = blk
                    .cy_rq
                    .apply(h, re_cx)
                    .wrapping_add(blk.dy_rq.apply(h, u));
                let qy = (shr_round(yacc, f) + blk.y.z as i64)
                    .clamp(blk.y.qmin as i64, blk.y.qmax as i64) as i32;
                // 5. GELU + activation quantizer
                state.g[h] = blk.gelu.at((qy - blk.y.qmin) as usize) as i8;
            }
            // 6. pointwise linear H -> 2H and GLU, 7. residual sum, then the pooled sum (last
            // block without a norm) or the block output into `io`
            let two_h = 2 * h_n;
            let pool_z = blk.out_grid().z as i64;
            for j in 0..h_n {
                let (za, zb) = (blk.lin_wz.at(j), blk.lin_wz.at(h_n + j));
                let (mut acc_a, mut acc_b) = (0i32, 0i32);
                for h in 0..h_n {
                    let g = state.g[h] as i32 - blk.g_z;
                    acc_a += g * (blk.lin_w.at(h * two_h + j) - za);
                    acc_b += g * (blk.lin_w.at(h * two_h + h_n + j) - zb);
                }
                let a = sat32(blk.lin.apply(j, acc_a)) as i64;
                let b = sat32(blk.lin.apply(h_n + j, acc_b));
                let mut o = (shr_round(a * self.sigmoid_q30(b), SIGMOID_OUT_FRAC + f)
                    + blk.out.z as i64)
                    .clamp(blk.out.qmin as i64, blk.out.qmax as i64);
                if let Some(r) = &blk.residual {
                    let v = input_of(io, j);
                    let acc =
                        r.f.apply(j, (o - blk.out.z as i64) as i32)
                            .wrapping_add(r.x.apply(j, v));
                    o = (shr_round(acc, r.frac) + r.out.z as i64)
                        .clamp(r.out.qmin as i64, r.out.qmax as i64);
                }
                if last && blk.post_norm().is_none() {
                    state.sums[j] += o - pool_z;
                } else {
                    io[j] = o as i8;
                }
            }
            // 8. post-norm over the step's codes, in place
            if let Some(norm) = blk.post_norm() {
                let io = &mut io[..h_n];
                let zn = blk.sum_grid().z;
                let step = NormStep::new(norm, h_n, |i| io[i] as i32 - zn);
                for (c, q) in io.iter_mut().enumerate() {
                    *q = step.code(c, *q as i32 - zn);
                }
                if last {
                    for (s, &q) in state.sums.iter_mut().zip(io.iter()) {
                        *s += q as i64 - pool_z;
                    }
                }
            }
        }
        state.t += 1;
        Ok(())
    }

    /// Writes the logit codes of the mean-pooled sequence so far into `out` (`classes` of
    /// them); all zero-point codes' logits (the bias alone) before the first step.
    pub fn logits(&self, state: &State<'_>, out: &mut [i8]) -> Result<(), Error> {
        self.check_state(state)?;
        if out.len() != self.classes {
            return Err(Error::BufferSize {
                buffer: "logits",
                expected: self.classes,
                found: out.len(),
            });
        }
        let k_n = self.classes;
        for (k, o) in out.iter_mut().enumerate() {
            let wz = self.dec_wz.at(k);
            let mut acc = 0i64;
            for (h, &s) in state.sums.iter().enumerate() {
                acc = acc.wrapping_add(s.wrapping_mul((self.dec_w.at(h * k_n + k) - wz) as i64));
            }
            let p = if state.t == 0 {
                0
            } else {
                sat32(div_round(acc << self.pool_frac, state.t as i64))
            };
            let l = (self.dec.apply(k, p) + self.l_z.at(k) as i64)
                .clamp(self.l_qmin as i64, self.l_qmax as i64);
            *o = l as i8;
        }
        Ok(())
    }

    /// One streaming step: [`Model::advance`], then [`Model::logits`] of everything so far.
    pub fn step(&self, state: &mut State<'_>, input: &[i8], out: &mut [i8]) -> Result<(), Error> {
        self.advance(state, input)?;
        self.logits(state, out)
    }

    /// Classifies a whole sequence (`inputs`: `L * d_input` codes, time-major) from the zero
    /// state; writes the logits and returns the predicted class (first maximum).
    pub fn classify(
        &self,
        state: &mut State<'_>,
        inputs: &[i8],
        out: &mut [i8],
    ) -> Result<usize, Error> {
        if !inputs.len().is_multiple_of(self.d_input) {
            return Err(Error::BufferSize {
                buffer: "inputs (not a whole number of steps)",
                expected: inputs.len() - inputs.len() % self.d_input,
                found: inputs.len(),
            });
        }
        state.reset(self)?;
        for x in inputs.chunks_exact(self.d_input) {
            self.advance(state, x)?;
        }
        self.logits(state, out)?;
        Ok(argmax(out))
    }

    fn check_state(&self, state: &State<'_>) -> Result<(), Error> {
        let sizes = [
            ("state", self.state_len(), state.x.len()),
            ("activation scratch", self.heads, state.g.len()),
            ("pool sums", self.heads, state.sums.len()),
        ];
        for (buffer, expected, found) in sizes {
            if expected != found {
                return Err(Error::BufferSize {
                    buffer,
                    expected,
                    found,
                });
            }
        }
        Ok(())
    }
}

/// Index of the first largest value (the fake-quant model's `argmax` keeps the first too).
pub fn argmax(values: &[i8]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best
}

/// The recurrent state of one stream, in caller-owned memory: state codes (`2 H M` bytes), a
/// per-step activation scratch (`H` bytes), the pooled sums (`H` words) and the step count.
pub struct State<'s> {
    x: &'s mut [i8],
    g: &'s mut [i8],
    sums: &'s mut [i64],
    t: u32,
    /// How many of `x` are state codes (the rest is block-output scratch).
    codes_len: usize,
}

impl<'s> State<'s> {
    /// Wraps caller buffers sized for `model` and sets them to the zero state.
    pub fn new(
        model: &Model<'_>,
        x: &'s mut [i8],
        g: &'s mut [i8],
        sums: &'s mut [i64],
    ) -> Result<Self, Error> {
        let mut s = Self {
            x,
            g,
            sums,
            t: 0,
            codes_len: model.codes_len(),
        };
        model.check_state(&s)?;
        s.reset(model)?;
        Ok(s)
    }

    /// Back to `x_{-1} = 0` (every code at its head's zero point) and an empty pool.
    pub fn reset(&mut self, model: &Model<'_>) -> Result<(), Error> {
        model.check_state(self)?;
        let per_block = model.heads * model.modes;
        let (codes, io) = self.x.split_at_mut(model.codes_len());
        for (k, pair) in codes.chunks_exact_mut(2).enumerate() {
            let blk = &model.blocks[k / per_block];
            let z = blk.st_z.at(k % per_block / model.modes) as i8;
            pair[0] = z;
            pair[1] = z;
        }
        io.fill(0);
        self.codes_len = model.codes_len();
        self.g.fill(0);
        self.sums.fill(0);
        self.t = 0;
        Ok(())
    }

    /// Overwrites the state codes (`[block][H][M][re, im]`, as [`State::codes`] returns them), e.g.
    /// to restore a saved stream or to drive worst-case states in tests. Every code must lie
    /// in its head's `[lo, hi]` (the only states the update can produce), else
    /// [`Error::InvalidValue`] and nothing changes.
    pub fn set_codes(&mut self, model: &Model<'_>, codes: &[i8]) -> Result<(), Error> {
        model.check_state(self)?;
        let n = model.codes_len();
        if codes.len() != n {
            return Err(Error::BufferSize {
                buffer: "state codes",
                expected: n,
                found: codes.len(),
            });
        }
        let per_block = 2 * model.heads * model.modes;
        let ok = codes.iter().enumerate().all(|(i, &c)| {
            let blk = &model.blocks[i / per_block];
            let h = i % per_block / 2 / model.modes;
            (blk.st_lo.at(h)..=blk.st_hi.at(h)).contains(&(c as i32))
        });
        if !ok {
            return Err(Error::InvalidValue {
                field: "state codes",
            });
        }
        self.x[..n].copy_from_slice(codes);
        Ok(())
    }

    /// Time steps taken since the last reset.
    pub fn steps(&self) -> u32 {
        self.t
    }

    /// The state codes, `[block][H][M][re, im]`.
    pub fn codes(&self) -> &[i8] {
        &self.x[..self.codes_len.min(self.x.len())]
    }
}

/// Fixed-capacity storage for one [`State`] when sizes are known at compile time (no heap):
/// `X >= 2 H M`, `H >= heads`. [`StateStorage::state`] hands out a correctly sized view.
pub struct StateStorage<const X: usize, const H: usize> {
    x: [i8; X],
    g: [i8; H],
    sums: [i64; H],
}

impl<const X: usize, const H: usize> Default for StateStorage<X, H> {
    fn default() -> Self {
        Self {
            x: [0; X],
            g: [0; H],
            sums: [0; H],
        }
    }
}

impl<const X: usize, const H: usize> StateStorage<X, H> {
    /// A zero state for `model`, or [`Error::BufferSize`] when the capacity is too small.
    pub fn state(&mut self, model: &Model<'_>) -> Result<State<'_>, Error> {
        let (xl, hl) = (model.state_len(), model.heads());
        let too_small = |buffer, expected, found| Error::BufferSize {
            buffer,
            expected,
            found,
        };
        let x = self.x.get_mut(..xl).ok_or(too_small("state", xl, X))?;
        let g = self
            .g
            .get_mut(..hl)
            .ok_or(too_small("activation scratch", hl, H))?;
        let sums = self
            .sums
            .get_mut(..hl)
            .ok_or(too_small("pool sums", hl, H))?;
        State::new(model, x, g, sums)
    }
}
