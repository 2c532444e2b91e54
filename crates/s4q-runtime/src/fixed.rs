//! The integer arithmetic every stage shares, written once: the rounding rule and the
//! fixed-point requantization built on it.
//!
//! **Rounding rule: round half to even** on exact rational values, the same rule as the
//! fake-quant model (`qat::rounding`), so a value that lands exactly on `.5` goes the same way
//! in both. [`div_round`] applies it to any positive divisor; [`shr_round`] is its
//! power-of-two case (the only one on the per-step path). The C export reimplements exactly
//! these two functions (`s4q_shr_round`, `s4q_div_round`) and nothing else rounds.
//!
//! **Requantization**: a real multiplier `r` is stored as an `i32` mantissa `m` and a shift
//! `s` (`r ~ m / 2^s`, `|m|` in `[2^30, 2^31)` unless `r` is tiny), applied to an `i32`
//! accumulator as `shr_round(acc * m + bias, s)` with the product in `i64` (one `SMULL` on a
//! Cortex-M4). Biases are pre-scaled into the product's domain so each requantization rounds
//! once.

/// `round_half_even(x / 2^shift)` for `shift` in `0..=62`; larger shifts are treated as 62
/// (the model parser rejects them, this only keeps the function total).
#[inline]
pub fn shr_round(x: i64, shift: u32) -> i64 {
    if shift == 0 {
        return x;
    }
    let s = if shift > 62 { 62 } else { shift };
    let q = x >> s; // arithmetic shift: floor(x / 2^s)
    let r = x & ((1i64 << s) - 1); // x - q * 2^s, in [0, 2^s)
    let half = 1i64 << (s - 1);
    if r > half || (r == half && (q & 1) == 1) {
        q + 1
    } else {
        q
    }
}

/// `round_half_even(n / d)` for `d > 0`; `d <= 0` returns 0 (callers never pass it).
#[inline]
pub fn div_round(n: i64, d: i64) -> i64 {
    if d <= 0 {
        return 0;
    }
    let q = n.div_euclid(d); // floor, since d > 0
    let r = n - q * d; // in [0, d)
    // Compare 2r with d without overflow: r >= d - r  <=>  2r >= d.
    let rest = d - r;
    if r > rest || (r == rest && (q & 1) == 1) {
        q + 1
    } else {
        q
    }
}

/// Saturates an `i64` into `i32` (values of valid models never saturate; the export checks
/// bounds, this keeps hostile files from wrapping silently into other values).
#[inline]
pub fn sat32(x: i64) -> i32 {
    if x > i32::MAX as i64 {
        i32::MAX
    } else if x < i32::MIN as i64 {
        i32::MIN
    } else {
        x as i32
    }
}

/// `shr_round(acc * m + bias, shift)`: one fixed-point requantization (see the module doc).
#[inline]
pub fn requant(acc: i32, m: i32, bias: i64, shift: u32) -> i64 {
    shr_round((acc as i64 * m as i64).wrapping_add(bias), shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shr_round_is_half_to_even() {
        // 2.5 -> 2, 3.5 -> 4, -2.5 -> -2, -3.5 -> -4, 2.25 -> 2, 2.75 -> 3, -2.75 -> -3
        assert_eq!(shr_round(5, 1), 2);
        assert_eq!(shr_round(7, 1), 4);
        assert_eq!(shr_round(-5, 1), -2);
        assert_eq!(shr_round(-7, 1), -4);
        assert_eq!(shr_round(9, 2), 2);
        assert_eq!(shr_round(11, 2), 3);
        assert_eq!(shr_round(-11, 2), -3);
        assert_eq!(shr_round(-1, 1), 0);
        assert_eq!(shr_round(i64::MIN, 62), -2);
        assert_eq!(shr_round(3, 0), 3);
    }

    #[test]
    fn shr_round_matches_div_round_and_float_rounding() {
        for x in -5000i64..5000 {
            for s in 1..8u32 {
                let d = 1i64 << s;
                assert_eq!(shr_round(x, s), div_round(x, d), "x={x} s={s}");
                let f = (x as f64 / d as f64).round_ties_even() as i64;
                assert_eq!(shr_round(x, s), f, "x={x} s={s}");
            }
        }
        for d in 1..50i64 {
            for n in -300i64..300 {
                let f = (n as f64 / d as f64).round_ties_even() as i64;
                assert_eq!(div_round(n, d), f, "n={n} d={d}");
            }
        }
    }

    #[test]
    fn sat32_clamps() {
        assert_eq!(sat32(1 << 40), i32::MAX);
        assert_eq!(sat32(-(1 << 40)), i32::MIN);
        assert_eq!(sat32(-7), -7);
    }
}
