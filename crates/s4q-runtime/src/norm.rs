//! Integer norm stages of deep S4D blocks: LayerNorm by integer mean, variance and square
//! root, and a per-channel affine on codes (BatchNorm at inference, and LayerNorm's scale and
//! shift). One definition for the integer reference (`qat`) and this runtime; the C export
//! writes the same operations out again. (The residual sum is a stage of the block itself,
//! see the `model` module.)
//!
//! **LayerNorm.** For the `H` codes `q` of one step (one grid, so its scale cancels):
//! `d_i = H q_i - sum q`, `V = sum d_i^2`, and `T = V / H + E` kept with 16 fraction bits,
//! `T16 = V 2^16 / H + E16` (integer division), `E16 = round(2^16 H^2 eps / s^2)` fixed at
//! export (`s` the input scale), so that `d_i / sqrt(T) = (x_i - mean) / sqrt(var + eps)`
//! exactly in real arithmetic. The square root is taken at full precision whatever the
//! spread of the step: `T16` is shifted left by `2k` bits until it lies in `[2^60, 2^62)`,
//! `r = isqrt(T16 4^k)` (exact floor square root, in `[2^30, 2^31)`, so `~2^(8+k) sqrt(T)`),
//! `inv = 2^62 / r` (one division per step) and the normalised value in `Q22` is
//! `n_i = shr_round(d_i inv, 32 - k)`. Its error against exact arithmetic is at most
//! `|n| (2^-29 + 2^-16 / T) + 2^-22` (the floor square root and the reciprocal, each
//! relative `< 2^-30`; the integer division of `V` with the rounding of `E16`; the last
//! rounding), which `qat::integer::layer_norm_error_bound` evaluates and its tests check
//! against `f64`. A fixed 8-bit square-root fraction (format 3 as first written) erred by
//! `|n| 2^-8 / sqrt(T)`, about 30 times float32's own error on sMNIST activations, and moved
//! codes off fake quant's often enough to flip predictions of a 4-block model.
//! [`layer_norm_fits`] checks the sizes (up to `H = 256` channels of 8-bit codes).
//!
//! **Wide inputs.** A pre-norm block 0 normalises the encoder output `u`, held in a common
//! fixed-point unit with ~20 bits of range instead of 8-bit codes. There `V` alone nearly
//! fills the 62 bits, so `T` keeps fewer fraction bits: `T = V 2^(2 f) / H + E` with
//! `f = sqrt_frac` in `0..=8` (8 for codes, as above; the export picks the largest that
//! fits, stores it, and `E` is in the same units). The normalised value's shift becomes
//! `62 - f - 22 - k`. The error bound is the same with `2^-2f / T` for `2^-16 / T`; for wide
//! inputs `T` is of order `H^2 2^40`, so that term vanishes.

use crate::fixed::shr_round;

/// Fraction bits of the square root of the variance term before normalisation:
/// `T16 = T 2^(2 LN_SQRT_FRAC)`.
pub const LN_SQRT_FRAC: u32 = 8;
/// The square root's argument is normalised into `[2^(LN_NORM_BITS - 2), 2^LN_NORM_BITS)`
/// and the reciprocal is `2^LN_NORM_BITS / r`.
pub const LN_NORM_BITS: u32 = 62;
/// Fraction bits of the normalised value.
pub const LN_FRAC: u32 = 22;

/// `floor(sqrt(x))`, exactly, by the digit-by-digit method (no floating point; the C export
/// writes the same loop).
pub fn isqrt_u64(x: u64) -> u64 {
    let mut rem = x;
    let mut root = 0u64;
    let mut bit = 1u64 << 62;
    while bit > rem {
        bit >>= 2;
    }
    while bit != 0 {
        if rem >= root + bit {
            rem -= root + bit;
            root = (root >> 1) + bit;
        } else {
            root >>= 1;
        }
        bit >>= 2;
    }
    root
}

/// Whether LayerNorm's integer arithmetic cannot overflow for `h` channels of codes spanning
/// `range = qmax - qmin` and the eps term `e16`: `V 2^16` and `T16` must fit `u64` with room.
pub fn layer_norm_fits(h: usize, range: u32, e16: u64) -> bool {
    layer_norm_fits_frac(h, range, e16, LN_SQRT_FRAC)
}

/// [`layer_norm_fits`] for inputs of any width `range < 2^31` with `sqrt_frac` fraction bits
/// of the root (module doc, wide inputs): `V 2^(2 f)` and `T` fit `u64` with room, and the
/// normalising product `d inv` (`|d| <= H range`, `inv <= 2^32`) fits `i64`.
pub fn layer_norm_fits_frac(h: usize, range: u32, e: u64, sqrt_frac: u32) -> bool {
    if h == 0 || h > 4096 || sqrt_frac > LN_SQRT_FRAC {
        return false;
    }
    // |d_i| <= h range, so V <= h (h range)^2.
    let d_max = h as u128 * range as u128;
    if d_max >= 1u128 << 30 {
        return false;
    }
    let v_max = h as u128 * d_max * d_max;
    let t_max = (v_max << (2 * sqrt_frac)) + e as u128;
    (v_max << (2 * sqrt_frac)) < (1u128 << 62) && t_max < (1u128 << 62)
}

/// One step's LayerNorm statistics (the code sum and the reciprocal square root), so the
/// normalised values can be produced one channel at a time, in place over the codes (the
/// runtime's and C's form); [`layer_norm_q22`] is the same arithmetic over a slice.
#[derive(Debug, Clone, Copy)]
pub struct LnStep {
    h: i64,
    sum: i64,
    inv: i64,
    shift: u32,
}

impl LnStep {
    /// The statistics of the `h` codes `code(0..h)` with the eps term `e16` (module doc).
    /// A constant step with `e16 = 0` has `isqrt(T16) = 0`: every value normalises to 0.
    pub fn new(h: usize, e16: u64, code: impl Fn(usize) -> i32) -> Self {
        Self::with_frac(h, e16, LN_SQRT_FRAC, code)
    }

    /// [`LnStep::new`] for wide inputs: `T` with `2 sqrt_frac` fraction bits and the eps term
    /// `e` in those units (module doc, wide inputs; `sqrt_frac <= 8`).
    pub fn with_frac(h: usize, e: u64, sqrt_frac: u32, code: impl Fn(usize) -> i32) -> Self {
        let hi = h as i64;
        let sum: i64 = (0..h).map(|i| code(i) as i64).sum();
        let mut v = 0u64;
        for i in 0..h {
            let d = hi * code(i) as i64 - sum;
            v = v.wrapping_add((d * d) as u64);
        }
        let t16 = if h == 0 {
            0
        } else {
            ((v << (2 * sqrt_frac)) / h as u64).wrapping_add(e)
        };
        // Normalise so the root has 31 significant bits: `k` pairs of bits, `r ~ 2^(f + k)
        // sqrt(T)`, and the value's shift drops by `k`. `T16 >= 1` gives `k <= 30`.
        let (mut t, mut k) = (t16, 0u32);
        if t != 0 {
            while t < 1u64 << (LN_NORM_BITS - 2) {
                t <<= 2;
                k += 1;
            }
        }
        let r = isqrt_u64(t);
        let inv = (1u64 << LN_NORM_BITS).checked_div(r).unwrap_or(0) as i64;
        let shift = LN_NORM_BITS - sqrt_frac - LN_FRAC - k;
        Self {
            h: hi,
            sum,
            inv,
            shift,
        }
    }

    /// The normalised value (`Q22`) of code `x` of this step.
    #[inline]
    pub fn value(&self, x: i32) -> i32 {
        let d = self.h * x as i64 - self.sum;
        shr_round(d * self.inv, self.shift) as i32
    }
}

/// The normalised values of one step, `(x_i - mean) / sqrt(var + eps)` in `Q22`, from codes
/// `q` (any zero point: it cancels) and the export-time constant `e16` (module doc). Writes
/// `out[i]` for every `i < q.len()`; a constant step with `e16 = 0` normalises to zeros.
pub fn layer_norm_q22(q: &[i32], e16: u64, out: &mut [i32]) {
    let st = LnStep::new(q.len(), e16, |i| q[i]);
    for (o, &x) in out.iter_mut().zip(q) {
        *o = st.value(x);
    }
}

/// `clamp(shr_round(x m + bias, shift), lo, hi)`: a per-channel affine requantization of a
/// value `x` (a code minus its zero point, or a `Q22` normalised value) to an output code;
/// `bias` holds the shift's scale, the output zero point and the rounding offset-free bias.
#[inline]
pub fn affine_code(x: i32, m: i32, bias: i64, shift: u32, lo: i32, hi: i32) -> i32 {
    let y = shr_round((x as i64 * m as i64).wrapping_add(bias), shift);
    y.clamp(lo as i64, hi as i64) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isqrt_is_the_exact_floor() {
        for x in 0u64..20_000 {
            let r = isqrt_u64(x);
            assert!(r * r <= x && (r + 1) * (r + 1) > x, "{x}");
        }
        for &x in &[
            u64::MAX,
            (1 << 62) - 1,
            1 << 62,
            999_999_999_999,
            ((1u64 << 32) - 1) * ((1 << 32) - 1),
        ] {
            let r = isqrt_u64(x) as u128;
            assert!(r * r <= x as u128 && (r + 1) * (r + 1) > x as u128, "{x}");
        }
    }
}
