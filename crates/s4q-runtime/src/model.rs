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
//! Weight codes (`We`, `Bbar`, `C`, `Wc`, `Wd`) are stored bit-packed at their grid's width
//! (two 4-bit codes per byte, four 2-bit, a 6-bit code straddling bytes; see
//! [`crate::format`]).

use crate::fixed::{div_round, requant, sat32, shr_round};
use crate::format::{Error, Reader, split_header};

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

/// A parsed model file. Holds only slices into the caller's bytes (which may sit in flash);
/// nothing is copied or allocated.
#[derive(Clone, Copy)]
pub struct Model<'a> {
    d_input: usize,
    heads: usize,
    modes: usize,
    classes: usize,
    frac: u32,
    pool_frac: u32,
    state_shift: u32,
    input: Grid,
    enc_w: Codes<'a>,
    enc_wz: I32s<'a>,
    enc: Requant<'a>,
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
    sigmoid: I32s<'a>,
    out: Grid,
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

impl<'a> Model<'a> {
    /// Parses and validates a model file (header, checksum, every length and range). Never
    /// panics; every defect is an [`Error`].
    pub fn parse(file: &'a [u8]) -> Result<Self, Error> {
        let payload = split_header(file)?;
        let mut r = Reader::new(payload);
        let d_input = dim(&mut r, "d_input", 1)?;
        let heads = dim(&mut r, "heads", 1)?;
        let modes = dim(&mut r, "modes", 1)?;
        let classes = dim(&mut r, "classes", 2)?;
        let frac = r.u8("frac")? as u32;
        check((1..=30).contains(&frac), "frac")?;
        let pool_frac = r.u8("pool_frac")? as u32;
        check(pool_frac <= 30, "pool_frac")?;
        let state_shift = r.u8("state_shift")? as u32;
        check((1..=30).contains(&state_shift), "state_shift")?;
        check(r.u8("reserved")? == 0, "reserved")?;
        let input = grid(&mut r, "input_grid")?;
        let (h, hm) = (heads, heads * modes);
        let enc_w = codes_packed(&mut r, d_input * h, "enc_w")?;
        let enc_wz = codes(&mut r, h, "enc_wz")?;
        let enc = requant_arrays(&mut r, h, true, "enc_rq")?;
        let a_re = i32s(&mut r, hm, "a_re")?;
        let a_im = i32s(&mut r, hm, "a_im")?;
        let b_re = codes_packed(&mut r, hm, "b_re")?;
        let b_im = codes_packed(&mut r, hm, "b_im")?;
        let b_z = codes(&mut r, h, "b_z")?;
        let c_re = codes_packed(&mut r, hm, "c_re")?;
        let c_im = codes_packed(&mut r, hm, "c_im")?;
        let c_z = codes(&mut r, h, "c_z")?;
        let bu_rq = requant_arrays(&mut r, h, false, "bu_rq")?;
        let w_max = i32s(&mut r, h, "w_max")?;
        check((0..h).all(|i| w_max.at(i) >= 0), "w_max")?;
        let cy_rq = requant_arrays(&mut r, h, false, "cy_rq")?;
        let dy_rq = requant_arrays(&mut r, h, false, "dy_rq")?;
        let st_z = codes(&mut r, h, "state_z")?;
        let st_lo = codes(&mut r, h, "state_lo")?;
        let st_hi = codes(&mut r, h, "state_hi")?;
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
        let y = grid(&mut r, "ssm_output_grid")?;
        let gelu = i8s(&mut r, (y.qmax - y.qmin + 1) as usize, "gelu_lut")?;
        let g_z = r.i32("activation_z")?;
        check(in_i8(g_z), "activation_z")?;
        let lin_w = codes_packed(&mut r, h * 2 * h, "lin_w")?;
        let lin_wz = codes(&mut r, 2 * h, "lin_wz")?;
        let lin = requant_arrays(&mut r, 2 * h, true, "lin_rq")?;
        let sigmoid = i32s(&mut r, SIGMOID_LEN, "sigmoid")?;
        check(
            (0..SIGMOID_LEN).all(|i| (0..=1 << SIGMOID_OUT_FRAC).contains(&sigmoid.at(i))),
            "sigmoid",
        )?;
        let out = grid(&mut r, "glu_output_grid")?;
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
            frac,
            pool_frac,
            state_shift,
            input,
            enc_w,
            enc_wz,
            enc,
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
            sigmoid,
            out,
            dec_w,
            dec_wz,
            dec,
            l_z,
            l_qmin,
            l_qmax,
        })
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

    /// Length of the state buffer: `2 H M` codes (real and imaginary part per mode).
    pub fn state_len(&self) -> usize {
        2 * self.heads * self.modes
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
        let (h_n, m_n, f) = (self.heads, self.modes, self.frac);
        for h in 0..h_n {
            // 1. encoder
            let wz = self.enc_wz.at(h);
            let mut acc = 0i32;
            for (i, &x) in input.iter().enumerate() {
                let x = (x as i32).clamp(self.input.qmin, self.input.qmax) - self.input.z;
                acc += x * (self.enc_w.at(i * h_n + h) - wz);
            }
            let u = sat32(self.enc.apply(h, acc));
            // 2. Bbar's input in Q.S state units, fenced by the export-time bound
            let wm = self.w_max.at(h);
            let w = sat32(self.bu_rq.apply(h, u)).clamp(-wm, wm);
            let (bz, cz) = (self.b_z.at(h), self.c_z.at(h));
            let (sz, lo, hi) = (self.st_z.at(h), self.st_lo.at(h), self.st_hi.at(h));
            let (s, half) = (self.state_shift, 1i32 << (self.state_shift - 1));
            let mut re_cx = 0i32;
            // Per-head views: the bounds are checked once here, not per mode.
            let k0 = h * m_n;
            let a_re = &self.a_re.0[4 * k0..4 * (k0 + m_n)];
            let a_im = &self.a_im.0[4 * k0..4 * (k0 + m_n)];
            let xs = &mut state.x[2 * k0..2 * (k0 + m_n)];
            let modes = xs
                .chunks_exact_mut(2)
                .zip(a_re.chunks_exact(4).zip(a_im.chunks_exact(4)));
            for (n, (x, (are, aim))) in modes.enumerate() {
                let k = k0 + n;
                // 3. state update, all in i32 (bound proved at parse; wrapping ops only keep
                // overflow-checked builds total)
                let ar = i32::from_le_bytes([are[0], are[1], are[2], are[3]]);
                let ai = i32::from_le_bytes([aim[0], aim[1], aim[2], aim[3]]);
                let xr = x[0] as i32 - sz;
                let xi = x[1] as i32 - sz;
                let (br, bi) = (self.b_re.at(k) - bz, self.b_im.at(k) - bz);
                let vr = br
                    .wrapping_mul(w)
                    .wrapping_add(ar.wrapping_mul(xr))
                    .wrapping_sub(ai.wrapping_mul(xi));
                let vi = bi
                    .wrapping_mul(w)
                    .wrapping_add(ar.wrapping_mul(xi))
                    .wrapping_add(ai.wrapping_mul(xr));
                let qr = ((vr.wrapping_add(half) >> s) + sz).clamp(lo, hi);
                let qi = ((vi.wrapping_add(half) >> s) + sz).clamp(lo, hi);
                x[0] = qr as i8;
                x[1] = qi as i8;
                // 4. readout Re(C x)
                let (cr, ci) = (self.c_re.at(k) - cz, self.c_im.at(k) - cz);
                re_cx += cr * (qr - sz) - ci * (qi - sz);
            }
            let yacc = self
                .cy_rq
                .apply(h, re_cx)
                .wrapping_add(self.dy_rq.apply(h, u));
            let qy = (shr_round(yacc, f) + self.y.z as i64)
                .clamp(self.y.qmin as i64, self.y.qmax as i64) as i32;
            // 5. GELU + activation quantizer
            state.g[h] = self.gelu.at((qy - self.y.qmin) as usize) as i8;
        }
        // 6. pointwise linear H -> 2H and GLU, 7. pooled sum
        let two_h = 2 * h_n;
        for j in 0..h_n {
            let (za, zb) = (self.lin_wz.at(j), self.lin_wz.at(h_n + j));
            let (mut acc_a, mut acc_b) = (0i32, 0i32);
            for h in 0..h_n {
                let g = state.g[h] as i32 - self.g_z;
                acc_a += g * (self.lin_w.at(h * two_h + j) - za);
                acc_b += g * (self.lin_w.at(h * two_h + h_n + j) - zb);
            }
            let a = sat32(self.lin.apply(j, acc_a)) as i64;
            let b = sat32(self.lin.apply(h_n + j, acc_b));
            let o = (shr_round(a * self.sigmoid_q30(b), SIGMOID_OUT_FRAC + f) + self.out.z as i64)
                .clamp(self.out.qmin as i64, self.out.qmax as i64);
            state.sums[j] += o - self.out.z as i64;
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
}

impl<'s> State<'s> {
    /// Wraps caller buffers sized for `model` and sets them to the zero state.
    pub fn new(
        model: &Model<'_>,
        x: &'s mut [i8],
        g: &'s mut [i8],
        sums: &'s mut [i64],
    ) -> Result<Self, Error> {
        let mut s = Self { x, g, sums, t: 0 };
        model.check_state(&s)?;
        s.reset(model)?;
        Ok(s)
    }

    /// Back to `x_{-1} = 0` (every code at its head's zero point) and an empty pool.
    pub fn reset(&mut self, model: &Model<'_>) -> Result<(), Error> {
        model.check_state(self)?;
        for (k, pair) in self.x.chunks_exact_mut(2).enumerate() {
            let z = model.st_z.at(k / model.modes) as i8;
            pair[0] = z;
            pair[1] = z;
        }
        self.g.fill(0);
        self.sums.fill(0);
        self.t = 0;
        Ok(())
    }

    /// Overwrites the state codes (`[H][M][re, im]`, as [`State::codes`] returns them), e.g.
    /// to restore a saved stream or to drive worst-case states in tests. Every code must lie
    /// in its head's `[lo, hi]` (the only states the update can produce), else
    /// [`Error::InvalidValue`] and nothing changes.
    pub fn set_codes(&mut self, model: &Model<'_>, codes: &[i8]) -> Result<(), Error> {
        model.check_state(self)?;
        if codes.len() != self.x.len() {
            return Err(Error::BufferSize {
                buffer: "state codes",
                expected: self.x.len(),
                found: codes.len(),
            });
        }
        let ok = codes.iter().enumerate().all(|(i, &c)| {
            let h = i / 2 / model.modes;
            (model.st_lo.at(h)..=model.st_hi.at(h)).contains(&(c as i32))
        });
        if !ok {
            return Err(Error::InvalidValue {
                field: "state codes",
            });
        }
        self.x.copy_from_slice(codes);
        Ok(())
    }

    /// Time steps taken since the last reset.
    pub fn steps(&self) -> u32 {
        self.t
    }

    /// The state codes, `[H][M][re, im]`.
    pub fn codes(&self) -> &[i8] {
        self.x
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
