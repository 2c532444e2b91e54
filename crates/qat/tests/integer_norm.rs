//! The integer deep-block stages against `f64` references: LayerNorm's normalised values
//! within the documented error bound, and every output code equal to the reference's except
//! where the reference value lies within that bound of a rounding boundary; BatchNorm's affine
//! likewise (its only error is the multipliers' rounding); the wide-input LayerNorm of a
//! pre-norm block 0 to its own bound. The residual sum is part of the
//! block arithmetic (`qat::integer`), checked with it in `integer_deep.rs`.

mod common;

use common::{uniform_signed, uniform_unit};
use qat::integer::IntGrid;
use qat::integer::norm::{
    ChannelAffine, IntLayerNorm, layer_norm_error_bound, layer_norm_error_bound_frac,
};
use s4q_runtime::norm::{LN_FRAC, LnStep, layer_norm_fits, layer_norm_fits_frac, layer_norm_q22};

const GRID8: IntGrid = IntGrid {
    z: -3,
    qmin: -128,
    qmax: 127,
};

/// Codes of one step: `h` values around a random centre with a random spread (some steps
/// nearly constant, where eps dominates).
fn step_codes(h: usize, seed: u64) -> Vec<i32> {
    let u = uniform_unit(2, seed);
    let centre = -100.0 + 200.0 * u[0];
    let spread = [0.0, 0.5, 3.0, 40.0, 127.0][(u[1] * 5.0) as usize % 5];
    uniform_signed(h, seed + 1)
        .iter()
        .map(|v| (centre + spread * v).round().clamp(-128.0, 127.0) as i32)
        .collect()
}

/// Distance of `v` to the nearest rounding boundary (`k + 1/2`).
fn to_boundary(v: f64) -> f64 {
    (v - v.floor() - 0.5).abs()
}

#[test]
fn layer_norm_values_are_within_the_documented_bound() {
    let mut worst_ratio = 0f64;
    for (k, &h) in [4usize, 16, 64, 256].iter().cycle().take(400).enumerate() {
        let q = step_codes(h, 1000 + k as u64);
        let s_in = 0.01 + 0.2 * uniform_unit(1, k as u64)[0] as f64;
        let eps = 1e-5;
        let e = (h as f64 * h as f64 * eps / (s_in * s_in) * 65536.0).round_ties_even() as u64;
        assert!(layer_norm_fits(h, 255, e));
        let mut n = vec![0i32; h];
        layer_norm_q22(&q, e, &mut n);
        // f64 reference on the real values (the zero point cancels).
        let x: Vec<f64> = q.iter().map(|&c| s_in * (c - GRID8.z) as f64).collect();
        let mean = x.iter().sum::<f64>() / h as f64;
        let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / h as f64;
        // The step's integer variance term, as the kernel computes it.
        let sum: i64 = q.iter().map(|&c| c as i64).sum();
        let v: u64 = q
            .iter()
            .map(|&c| (h as i64 * c as i64 - sum).pow(2) as u64)
            .sum();
        let t = v as f64 / h as f64 + e as f64 / 65536.0;
        for (&ni, xi) in n.iter().zip(&x) {
            let want = (xi - mean) / (var + eps).sqrt();
            let got = ni as f64 / 2f64.powi(LN_FRAC as i32);
            let bound = layer_norm_error_bound(want.abs(), t);
            let err = (got - want).abs();
            assert!(
                err <= bound,
                "h {h} step {k}: {got} vs {want} (err {err} > {bound})"
            );
            worst_ratio = worst_ratio.max(err / bound);
        }
    }
    // The bound is not vacuous: the worst case uses a good part of it.
    assert!(
        worst_ratio > 0.01,
        "bound far from the observed error ({worst_ratio})"
    );
}

#[test]
fn layer_norm_codes_match_the_f64_reference_away_from_ties() {
    let (mut equal, mut total) = (0usize, 0usize);
    for k in 0..300u64 {
        let h = [8usize, 32, 64, 128][k as usize % 4];
        let q = step_codes(h, 5000 + k);
        let g: Vec<f64> = uniform_signed(h, k)
            .iter()
            .map(|v| 1.0 + 0.5 * *v as f64)
            .collect();
        let b: Vec<f64> = uniform_signed(h, k + 7)
            .iter()
            .map(|v| 0.3 * *v as f64)
            .collect();
        let (s_in, s_out, eps) = (0.05, 0.03, 1e-5);
        let out = IntGrid {
            z: 2,
            qmin: -128,
            qmax: 127,
        };
        let ln = IntLayerNorm::derive(&g, &b, eps, s_in, 255, s_out, out).unwrap();
        let mut got = vec![0i32; h];
        ln.apply(&q, &mut got);
        let x: Vec<f64> = q.iter().map(|&c| s_in * c as f64).collect();
        let mean = x.iter().sum::<f64>() / h as f64;
        let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / h as f64;
        let t = var * (h * h) as f64 / (s_in * s_in) + ln.e16 as f64 / 65536.0;
        for c in 0..h {
            let xhat = (x[c] - mean) / (var + eps).sqrt();
            let pre = g[c] * xhat / s_out + b[c] / s_out + out.z as f64;
            let want = pre.round_ties_even().clamp(-128.0, 127.0) as i32;
            total += 1;
            if got[c] == want {
                equal += 1;
                continue;
            }
            // A different code only where the value is within the error of a boundary:
            // the normalised value's bound scaled by gamma / s_out, plus the multiplier's
            // rounding (relative 2^-30).
            let slack = layer_norm_error_bound(xhat.abs(), t) * g[c].abs() / s_out
                + pre.abs() * 2f64.powi(-29);
            assert!(
                (got[c] - want).abs() == 1 && to_boundary(pre) <= slack,
                "step {k} channel {c}: {} vs {want} (value {pre})",
                got[c]
            );
        }
    }
    assert!(
        equal * 1000 >= total * 999,
        "{equal} of {total} codes equal"
    );
}

#[test]
fn batch_norm_affine_matches_f64() {
    let h = 16;
    let (s_in, s_out) = (0.04, 0.025);
    let a: Vec<f64> = uniform_signed(h, 3)
        .iter()
        .map(|v| 1.5 * *v as f64)
        .collect();
    let b: Vec<f64> = uniform_signed(h, 4)
        .iter()
        .map(|v| 0.8 * *v as f64)
        .collect();
    let out = IntGrid {
        z: -1,
        qmin: -32,
        qmax: 31,
    };
    // BatchNorm at inference: y = a (x - mean) / sqrt(var + eps) + beta, folded to a, b.
    let r: Vec<f64> = a.iter().map(|a| a * s_in / s_out).collect();
    let bb: Vec<f64> = b.iter().map(|b| b / s_out).collect();
    let bn = ChannelAffine::derive(&r, &bb, out, "bn").unwrap();
    let mut checked = 0;
    for q in -128..=127 {
        for c in 0..h {
            let pre = r[c] * (q - GRID8.z) as f64 + bb[c] + out.z as f64;
            let want = pre.round_ties_even().clamp(-32.0, 31.0) as i32;
            let got = bn.apply(c, q - GRID8.z);
            if to_boundary(pre) > 1e-6 {
                assert_eq!(got, want, "q {q} c {c} value {pre}");
                checked += 1;
            }
        }
    }
    assert!(checked > 4000);
}

#[test]
fn layer_norm_refuses_what_would_overflow() {
    assert!(!layer_norm_fits(8192, 255, 0));
    assert!(!layer_norm_fits(64, 1 << 20, 0));
    assert!(!layer_norm_fits(64, 255, u64::MAX));
    assert!(layer_norm_fits(256, 255, 1 << 30));
    assert!(!layer_norm_fits(2048, 255, 0));
    let g = vec![1.0; 8];
    let err = IntLayerNorm::derive(&g, &g, 1e30, 1e-9, 255, 0.1, GRID8).unwrap_err();
    assert!(err.to_string().contains("LayerNorm"), "{err}");
    assert!(ChannelAffine::derive(&[f64::NAN], &[0.0], GRID8, "x").is_err());
}

/// The wide-input LayerNorm of a pre-norm block 0 (the encoder output in one unit with ~20
/// bits of range, not 8-bit codes): fewer root fraction bits, the same guarantees. Every
/// normalised value is within the bound for its `sqrt_frac` of the `f64` value, and every
/// output code equals the reference's except within that error of a rounding boundary.
#[test]
fn wide_input_layer_norm_is_within_its_bound() {
    let (mut equal, mut total, mut worst_ratio) = (0usize, 0usize, 0f64);
    for k in 0..300u64 {
        let h = [8usize, 64, 256][k as usize % 3];
        // The widest common unit the derivation would pick for `h` heads.
        let bits = (8..=22u32)
            .rev()
            .find(|&b| layer_norm_fits_frac(h, (1 << (b + 1)) + 16, 0, 0))
            .expect("a width fits");
        let full = (1i64 << bits) as f64;
        let u = uniform_unit(2, 7000 + k);
        let centre = full * (u[0] as f64 - 0.5);
        // Spreads from a nearly constant step (eps dominates) to the whole range.
        let spread = full * [0.0, 1e-6, 1e-3, 0.05, 0.5][(u[1] * 5.0) as usize % 5];
        let q: Vec<i32> = uniform_signed(h, 7100 + k)
            .iter()
            .map(|v| (centre + spread * *v as f64).round().clamp(-full, full) as i32)
            .collect();
        let g: Vec<f64> = uniform_signed(h, k)
            .iter()
            .map(|v| 1.0 + 0.5 * *v as f64)
            .collect();
        let b: Vec<f64> = uniform_signed(h, k + 3)
            .iter()
            .map(|v| 0.3 * *v as f64)
            .collect();
        let (s_in, s_out, eps) = (2.0 / full, 0.03, 1e-5);
        let out = IntGrid {
            z: 1,
            qmin: -128,
            qmax: 127,
        };
        let ln =
            IntLayerNorm::derive(&g, &b, eps, s_in, 2 * full as u32 + 1, s_out, out).expect("fits");
        assert!(
            ln.sqrt_frac < 8,
            "h {h}: sqrt_frac {} for wide inputs",
            ln.sqrt_frac
        );
        let st = LnStep::with_frac(h, ln.e16, ln.sqrt_frac, |i| q[i]);
        let mut got = vec![0i32; h];
        ln.apply(&q, &mut got);
        let x: Vec<f64> = q.iter().map(|&c| s_in * c as f64).collect();
        let mean = x.iter().sum::<f64>() / h as f64;
        let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / h as f64;
        let unit = 2f64.powi(2 * ln.sqrt_frac as i32);
        let t = var * (h * h) as f64 / (s_in * s_in) + ln.e16 as f64 / unit;
        for c in 0..h {
            let xhat = (x[c] - mean) / (var + eps).sqrt();
            let n = st.value(q[c]) as f64 / 2f64.powi(LN_FRAC as i32);
            let bound = layer_norm_error_bound_frac(xhat.abs(), t, ln.sqrt_frac);
            let err = (n - xhat).abs();
            assert!(
                err <= bound,
                "h {h} step {k}: {n} vs {xhat} (err {err} > {bound})"
            );
            worst_ratio = worst_ratio.max(err / bound);
            let pre = g[c] * xhat / s_out + b[c] / s_out + out.z as f64;
            let want = pre.round_ties_even().clamp(-128.0, 127.0) as i32;
            total += 1;
            if got[c] == want {
                equal += 1;
                continue;
            }
            // As for 8-bit codes: only within the value's error (scaled to output codes, plus
            // the multiplier's relative 2^-29) of a boundary, and by one code.
            let slack = bound * g[c].abs() / s_out + pre.abs() * 2f64.powi(-29);
            assert!(
                (got[c] - want).abs() == 1 && to_boundary(pre) <= slack,
                "step {k} channel {c}: {} vs {want} (value {pre})",
                got[c]
            );
        }
    }
    assert!(
        worst_ratio > 0.01,
        "bound far from the observed error ({worst_ratio})"
    );
    assert!(
        equal * 1000 >= total * 999,
        "{equal} of {total} codes equal"
    );
}
