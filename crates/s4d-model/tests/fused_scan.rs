//! The fused scan against the composed tensor scan (forward and autodiff gradients, with and
//! without state quantization, on Flex and NdArray), against central finite differences of a
//! float64 scan written out here, and on long sequences.
mod common;

use burn::prelude::*;
use common::{check_directional_derivatives, lcg_values, ndarray_device, rel_err, to_f64};
use s4d_model::{
    ComplexTensor, FusedStateQuant, StateGrid, diagonal_scan_with, fused_diagonal_scan,
    fused_diagonal_scan_time_major,
};

/// A scan problem: stable `Abar` (|Abar| in [0.55, 0.95]), and `Bbar`, `C`, `D`, `u` in [-1, 1].
struct Problem {
    batch: usize,
    heads: usize,
    len: usize,
    modes: usize,
    /// `a_re, a_im, b_re, b_im, c_re, c_im` (`[H, M]` each), `d` (`[H]`), `u` (`[B, H, L]`).
    values: [Vec<f32>; 8],
}

impl Problem {
    fn new(batch: usize, heads: usize, len: usize, modes: usize, seed: u64) -> Self {
        let hm = heads * modes;
        let radius: Vec<f32> = lcg_values(hm, seed)
            .iter()
            .map(|v| 0.75 + 0.2 * v)
            .collect();
        let angle = lcg_values(hm, seed + 1);
        let a_re = radius
            .iter()
            .zip(&angle)
            .map(|(r, a)| r * (2.0 * a).cos())
            .collect();
        let a_im = radius
            .iter()
            .zip(&angle)
            .map(|(r, a)| r * (2.0 * a).sin())
            .collect();
        Self {
            batch,
            heads,
            len,
            modes,
            values: [
                a_re,
                a_im,
                lcg_values(hm, seed + 2),
                lcg_values(hm, seed + 3),
                lcg_values(hm, seed + 4),
                lcg_values(hm, seed + 5),
                lcg_values(heads, seed + 6),
                lcg_values(batch * heads * len, seed + 7),
            ],
        }
    }

    /// The inputs as tensors on `device` (an autodiff device: tracked).
    fn tensors(&self, device: &Device) -> Vec<Tensor<1>> {
        self.untracked(device)
            .into_iter()
            .map(|t| t.require_grad())
            .collect()
    }

    /// The inputs as plain tensors (any device).
    fn untracked(&self, device: &Device) -> Vec<Tensor<1>> {
        self.values
            .iter()
            .map(|v| Tensor::<1>::from_floats(v.as_slice(), device))
            .collect()
    }
}

/// An 8-bit asymmetric state grid whose clamp (2.0) and range (about +-2.5) both bind on
/// these problems, so every branch of the quantizer's derivative is exercised.
fn state_quant(heads: usize, device: &Device) -> (Tensor<1>, Tensor<1>, StateGrid) {
    let scale: Vec<f32> = (0..heads).map(|h| 0.016 + 0.004 * h as f32).collect();
    let zero: Vec<f32> = (0..heads).map(|h| 120.0 + h as f32).collect();
    (
        Tensor::<1>::from_floats(scale.as_slice(), device),
        Tensor::<1>::from_floats(zero.as_slice(), device),
        StateGrid {
            qmin: 0.0,
            qmax: 255.0,
            clamp: Some(2.0),
        },
    )
}

struct Inputs {
    a: ComplexTensor<2>,
    b: ComplexTensor<2>,
    c: ComplexTensor<2>,
    d: Tensor<1>,
    u: Tensor<3>,
}

fn shaped(p: &Problem, t: &[Tensor<1>]) -> Inputs {
    let (h, m) = (p.heads, p.modes);
    let mat = |i: usize| t[i].clone().reshape([h, m]);
    Inputs {
        a: ComplexTensor::new(mat(0), mat(1)),
        b: ComplexTensor::new(mat(2), mat(3)),
        c: ComplexTensor::new(mat(4), mat(5)),
        d: t[6].clone(),
        u: t[7].clone().reshape([p.batch, h, p.len]),
    }
}

/// The composed reference: the crate's tensor scan with the quantizer written as tensor ops
/// (clamp, `x / s + z`, clip, STE round, `(r - z) s`), the same formula as the qat crate.
fn composed(
    p: &Problem,
    t: &[Tensor<1>],
    q: Option<&(Tensor<1>, Tensor<1>, StateGrid)>,
) -> Tensor<3> {
    let i = shaped(p, t);
    let heads = p.heads;
    diagonal_scan_with(&i.a, &i.b, &i.c, &i.d, i.u, |x| match q {
        None => x,
        Some((s, z, grid)) => {
            let s3 = s.clone().reshape([1, heads, 1]);
            let z3 = z.clone().reshape([1, heads, 1]);
            x.map(|part| {
                let c = grid.clamp.unwrap_or(f32::INFINITY);
                let v = part.clamp(-c, c) / s3.clone() + z3.clone();
                let v = v.clamp(grid.qmin, grid.qmax);
                let r = v.clone() + (v.clone().round() - v).detach();
                (r - z3.clone()) * s3.clone()
            })
        }
    })
    .0
}

fn fused(p: &Problem, t: &[Tensor<1>], q: Option<&(Tensor<1>, Tensor<1>, StateGrid)>) -> Tensor<3> {
    let i = shaped(p, t);
    let quant = q.map(|(s, z, grid)| FusedStateQuant {
        scale: s.clone(),
        zero_point: z.clone(),
        grid: *grid,
    });
    fused_diagonal_scan(&i.a, &i.b, &i.c, &i.d, i.u, quant)
}

/// Loss weights `w` (`[B, H, L]`) so that `dL/dy = w` is not constant.
fn weights(p: &Problem, device: &Device) -> Tensor<3> {
    Tensor::<1>::from_floats(lcg_values(p.batch * p.heads * p.len, 99).as_slice(), device)
        .reshape([p.batch, p.heads, p.len])
}

/// Forward tolerance 1e-5 of the output's scale: states are computed with the same f32
/// operations in the same order (bit-identical), so only the readout's summation order over
/// M <= 32 modes differs, a few ulps of the largest term.
const FORWARD_TOL: f64 = 1e-5;

/// Mode counts that take each of the kernel's row loops: 8 and 32 the fixed-width loops
/// (one and four vectors of eight modes), 12 the generic loop.
const MODE_CASES: [usize; 3] = [8, 32, 12];

fn check_forward(device: Device, quantized: bool) {
    for modes in MODE_CASES {
        check_forward_modes(device.clone(), quantized, modes);
    }
}

fn check_forward_modes(device: Device, quantized: bool, modes: usize) {
    let p = Problem::new(3, 4, 200, modes, 11);
    let t = p.untracked(&device);
    let q = quantized.then(|| {
        let (s, z, grid) = state_quant(p.heads, &device);
        (s.detach(), z, grid)
    });
    let want = to_f64(composed(&p, &t, q.as_ref()));
    let got = to_f64(fused(&p, &t, q.as_ref()));
    let err = rel_err(&got, &want);
    assert!(
        err < FORWARD_TOL,
        "forward rel err {err:e} (quantized {quantized}, M = {modes})"
    );
}

#[test]
fn forward_matches_composed_flex() {
    check_forward(Device::flex(), false);
    check_forward(Device::flex(), true);
}

#[test]
fn forward_matches_composed_ndarray() {
    check_forward(ndarray_device(), false);
    check_forward(ndarray_device(), true);
}

#[test]
fn forward_matches_composed_under_autodiff() {
    let device = Device::flex().autodiff();
    let p = Problem::new(2, 3, 100, 8, 13);
    let t = p.tensors(&device);
    let q = state_quant(p.heads, &device);
    let want = to_f64(composed(&p, &t, Some(&q)));
    let got = to_f64(fused(&p, &t, Some(&q)));
    assert!(rel_err(&got, &want) < FORWARD_TOL);
}

/// Gradients of `sum(w * y)` for all inputs (and the state scale) from the fused op and from
/// burn's autodiff of the composed scan. Both follow the same clipped-STE masks (the states
/// are bit-identical); they differ only by f32 summation order across up to L = 120 terms
/// of the adjoint recurrence, hence 1e-4 of each gradient's scale.
fn check_gradients(device: Device, quantized: bool) {
    for modes in MODE_CASES {
        check_gradients_modes(device.clone(), quantized, modes);
    }
}

fn check_gradients_modes(device: Device, quantized: bool, modes: usize) {
    let p = Problem::new(2, 3, 120, modes, 23);
    let w = weights(&p, &device);
    let grads_of = |use_fused: bool| -> Vec<Vec<f64>> {
        let t = p.tensors(&device);
        let q = quantized.then(|| {
            let (s, z, grid) = state_quant(p.heads, &device);
            (s.require_grad(), z, grid)
        });
        let y = if use_fused {
            fused(&p, &t, q.as_ref())
        } else {
            composed(&p, &t, q.as_ref())
        };
        let grads = (y * w.clone()).sum().backward();
        let mut out: Vec<Vec<f64>> = t
            .iter()
            .map(|x| to_f64(x.grad(&grads).expect("every input is used")))
            .collect();
        if let Some((s, _, _)) = &q {
            out.push(to_f64(s.grad(&grads).expect("the scale is tracked")));
        }
        out
    };
    let want = grads_of(false);
    let got = grads_of(true);
    let names = [
        "a_re", "a_im", "b_re", "b_im", "c_re", "c_im", "d", "u", "scale",
    ];
    for ((g, w), name) in got.iter().zip(&want).zip(names) {
        let err = rel_err(g, w);
        assert!(
            err < 1e-4,
            "d/d{name}: rel err {err:e} (quantized {quantized}, M = {modes})"
        );
    }
    assert_eq!(got.len(), if quantized { 9 } else { 8 });
}

#[test]
fn gradients_match_composed_autodiff() {
    check_gradients(Device::flex().autodiff(), false);
    check_gradients(Device::flex().autodiff(), true);
    check_gradients(ndarray_device().autodiff(), true);
}

/// `sum(w * y)` of the float scan in f64, straight from the definition.
fn loss_f64(p: &Problem, v: &[Vec<f64>; 8], w: &[f64]) -> f64 {
    let (h_n, m_n, l_n) = (p.heads, p.modes, p.len);
    let mut total = 0.0;
    for b in 0..p.batch {
        for h in 0..h_n {
            let (mut xr, mut xi) = (vec![0.0f64; m_n], vec![0.0f64; m_n]);
            for t in 0..l_n {
                let row = (b * h_n + h) * l_n + t;
                let ut = v[7][row];
                let mut y = v[6][h] * ut;
                for n in 0..m_n {
                    let k = h * m_n + n;
                    let (ar, ai) = (v[0][k], v[1][k]);
                    let nr = ar * xr[n] - ai * xi[n] + v[2][k] * ut;
                    let ni = ar * xi[n] + ai * xr[n] + v[3][k] * ut;
                    xr[n] = nr;
                    xi[n] = ni;
                    y += 2.0 * (v[4][k] * nr - v[5][k] * ni);
                }
                total += w[row] * y;
            }
        }
    }
    total
}

/// Directional derivatives of the fused gradient against central differences of the f64
/// scan, one random direction per input. f64 with eps = 1e-6 makes the difference quotient
/// exact to ~1e-9; the fused gradient is f32 (relative error ~1e-6 after L = 60 steps), so
/// 1e-4 relative leaves a wide margin while any wrong term (a sign, a conjugate) is O(1).
#[test]
fn gradients_match_finite_differences_f64() {
    // M = 4 takes the kernel's generic loops, M = 16 its fixed-width ones.
    for modes in [4, 16] {
        check_finite_differences(modes);
    }
}

fn check_finite_differences(modes: usize) {
    let device = Device::flex().autodiff();
    let p = Problem::new(2, 2, 60, modes, 31);
    let w32 = lcg_values(p.batch * p.heads * p.len, 99);
    let w: Vec<f64> = w32.iter().map(|&x| f64::from(x)).collect();
    let t = p.tensors(&device);
    let y = fused(&p, &t, None);
    let wt = Tensor::<1>::from_floats(w32.as_slice(), &device).reshape([p.batch, p.heads, p.len]);
    let grads = (y * wt).sum().backward();
    let base: [Vec<f64>; 8] =
        std::array::from_fn(|i| p.values[i].iter().map(|&x| f64::from(x)).collect());
    let analytic: [Vec<f64>; 8] =
        std::array::from_fn(|i| to_f64(t[i].grad(&grads).expect("tracked")));
    check_directional_derivatives(&analytic, &base, |v| loss_f64(&p, v, &w), 1e-4);
}

/// L = 4096 (64 checkpoint segments): finite, and equal to the composed scan in value and
/// gradient. Tolerances as above, times 10 for the longer adjoint sums.
#[test]
fn long_sequences_stay_finite_and_match() {
    // M = 4 takes the kernel's generic loops, M = 8 its fixed-width ones.
    for modes in [4, 8] {
        check_long_sequence(modes);
    }
}

fn check_long_sequence(modes: usize) {
    let device = Device::flex().autodiff();
    let p = Problem::new(1, 2, 4096, modes, 41);
    let w = weights(&p, &device);
    for quantized in [false, true] {
        let run = |use_fused: bool| {
            let t = p.tensors(&device);
            let q = quantized.then(|| state_quant(p.heads, &device));
            let y = if use_fused {
                fused(&p, &t, q.as_ref())
            } else {
                composed(&p, &t, q.as_ref())
            };
            let yv = to_f64(y.clone());
            let grads = (y * w.clone()).sum().backward();
            let ga = to_f64(t[0].grad(&grads).expect("tracked"));
            let gu = to_f64(t[7].grad(&grads).expect("tracked"));
            (yv, ga, gu)
        };
        let (y1, ga1, gu1) = run(true);
        let (y0, ga0, gu0) = run(false);
        for v in [&y1, &ga1, &gu1] {
            assert!(v.iter().all(|x| x.is_finite()));
        }
        let case = format!("quantized {quantized}, M = {modes}");
        assert!(rel_err(&y1, &y0) < 1e-5, "y ({case})");
        assert!(rel_err(&ga1, &ga0) < 1e-3, "dA ({case})");
        assert!(rel_err(&gu1, &gu0) < 1e-3, "du ({case})");
    }
}

/// The time-major entry point (`[B, L, H]`, what the layer and the QAT model call) is the same
/// kernel reading the other layout in place: its output and every gradient equal the
/// channel-major call's bit for bit (same f32 operations in the same order; per-row gradients
/// summed over the batch in the same order), with and without state quantization, on Flex and
/// NdArray.
#[test]
fn time_major_layout_matches_channel_major_exactly() {
    for device in [Device::flex().autodiff(), ndarray_device().autodiff()] {
        for quantized in [false, true] {
            let p = Problem::new(3, 5, 57, 8, 23);
            let q = quantized.then(|| state_quant(p.heads, &device));
            let quant = || {
                q.as_ref().map(|(s, z, grid)| FusedStateQuant {
                    scale: s.clone(),
                    zero_point: z.clone(),
                    grid: *grid,
                })
            };
            let w = weights(&p, &device);

            let t1 = p.tensors(&device);
            let y1 = fused(&p, &t1, q.as_ref());
            let g1 = (y1.clone() * w.clone()).sum().backward();

            let t2 = p.tensors(&device);
            let i = shaped(&p, &t2);
            let y2 = fused_diagonal_scan_time_major(
                &i.a,
                &i.b,
                &i.c,
                &i.d,
                i.u.swap_dims(1, 2),
                quant(),
            )
            .swap_dims(1, 2);
            let g2 = (y2.clone() * w).sum().backward();

            assert_eq!(to_f64(y1), to_f64(y2), "quantized {quantized}: outputs");
            for (k, (a, b)) in t1.iter().zip(&t2).enumerate() {
                let ga = to_f64(a.grad(&g1).expect("tracked"));
                let gb = to_f64(b.grad(&g2).expect("tracked"));
                assert_eq!(ga, gb, "quantized {quantized}: gradient of input {k}");
            }
        }
    }
}
