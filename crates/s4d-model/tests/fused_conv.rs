//! The fused S4D convolution against the composed path (Vandermonde kernel + Toeplitz or FFT
//! convolution, forward and autodiff gradients, on Flex and NdArray), against central finite
//! differences of a float64 time-domain convolution written out here, and on long and odd
//! sequence lengths.
mod common;

use burn::prelude::*;
use common::{check_directional_derivatives, lcg_values, ndarray_device, rel_err, to_f64};
use s4d_model::{
    ComplexTensor, S4dClassifierConfig, SsmMode, causal_conv_toeplitz, fused_s4d_conv,
};

/// A convolution problem: stable `Abar` (|Abar| in [0.55, 0.95]); `Bbar`, `C`, `D` and `u`
/// (time-major, `[B, L, H]`) in [-1, 1].
struct Problem {
    batch: usize,
    heads: usize,
    len: usize,
    modes: usize,
    /// `a_re, a_im, b_re, b_im, c_re, c_im` (`[H, M]`), `d` (`[H]`), `u` (`[B, L, H]`).
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
        let polar = |f: fn(f32) -> f32| -> Vec<f32> {
            radius
                .iter()
                .zip(&angle)
                .map(|(r, a)| r * f(2.0 * a))
                .collect()
        };
        Self {
            batch,
            heads,
            len,
            modes,
            values: [
                polar(f32::cos),
                polar(f32::sin),
                lcg_values(hm, seed + 2),
                lcg_values(hm, seed + 3),
                lcg_values(hm, seed + 4),
                lcg_values(hm, seed + 5),
                lcg_values(heads, seed + 6),
                lcg_values(batch * len * heads, seed + 7),
            ],
        }
    }

    fn tensors(&self, device: &Device, tracked: bool) -> Vec<Tensor<1>> {
        self.values
            .iter()
            .map(|v| {
                let t = Tensor::<1>::from_floats(v.as_slice(), device);
                if tracked { t.require_grad() } else { t }
            })
            .collect()
    }

    /// The loss weights `w: [B, L, H]`, so that `dL/dy = w` is not constant.
    fn weights(&self) -> Vec<f32> {
        lcg_values(self.batch * self.len * self.heads, 99)
    }
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
        u: t[7].clone().reshape([p.batch, p.len, h]),
    }
}

fn fused(p: &Problem, t: &[Tensor<1>]) -> Tensor<3> {
    let i = shaped(p, t);
    fused_s4d_conv(&i.a, &i.b, &i.c, &i.d, i.u)
}

/// The composed reference: the kernel from powers written as tensor ops (`z^l` by repeated
/// products, no FFT, no log), then the exact Toeplitz convolution and the skip term.
fn composed(p: &Problem, t: &[Tensor<1>]) -> Tensor<3> {
    let i = shaped(p, t);
    let w = i.c * i.b; // [H, M]
    let mut power = w;
    let mut columns = Vec::with_capacity(p.len);
    for _ in 0..p.len {
        columns.push(power.re.clone().sum_dim(1).mul_scalar(2.0)); // [H, 1]
        power = power * i.a.clone();
    }
    let k = Tensor::cat(columns, 1); // [H, L]
    let u = i.u.swap_dims(1, 2); // [B, H, L]
    let y = causal_conv_toeplitz(u.clone(), k) + u * i.d.reshape([1, p.heads, 1]);
    y.swap_dims(1, 2)
}

/// `sum(w * y)` in f64 straight from the definition: kernel by repeated products, then the
/// time-domain causal sum.
fn loss_f64(p: &Problem, v: &[Vec<f64>; 8], w: &[f64]) -> f64 {
    let (hn, mn, ln) = (p.heads, p.modes, p.len);
    let mut total = 0.0;
    for h in 0..hn {
        let mut k = vec![0.0f64; ln];
        for m in 0..mn {
            let i = h * mn + m;
            let (ar, ai) = (v[0][i], v[1][i]);
            // W = C * Bbar
            let (mut pr, mut pi) = (
                v[4][i] * v[2][i] - v[5][i] * v[3][i],
                v[4][i] * v[3][i] + v[5][i] * v[2][i],
            );
            for kl in k.iter_mut() {
                *kl += 2.0 * pr;
                (pr, pi) = (pr * ar - pi * ai, pr * ai + pi * ar);
            }
        }
        for b in 0..p.batch {
            let at = |t: usize| (b * ln + t) * hn + h;
            for t in 0..ln {
                let mut y = v[6][h] * v[7][at(t)];
                for j in 0..=t {
                    y += k[t - j] * v[7][at(j)];
                }
                total += w[at(t)] * y;
            }
        }
    }
    total
}

/// Forward tolerance 1e-5 of the output's scale: the f32 FFT round trip (n = 200..1600) has
/// a relative error of a few 1e-7 (log2 n rounding steps of eps = 6e-8); the Toeplitz path
/// sums up to L products in f32, the same order of error.
const FORWARD_TOL: f64 = 1e-5;

fn check_forward(device: Device, p: &Problem) {
    let t = p.tensors(&device, false);
    let want = to_f64(composed(p, &t));
    let got = to_f64(fused(p, &t));
    let err = rel_err(&got, &want);
    assert!(err < FORWARD_TOL, "forward rel err {err:e} (L = {})", p.len);
}

#[test]
fn forward_matches_composed_flex() {
    for (len, seed) in [(1, 1), (2, 2), (97, 3), (200, 4)] {
        check_forward(Device::flex(), &Problem::new(3, 4, len, 8, seed));
    }
}

#[test]
fn forward_matches_composed_ndarray() {
    check_forward(ndarray_device(), &Problem::new(2, 3, 150, 8, 5));
}

#[test]
fn forward_matches_f64_definition() {
    // The f64 loss with one-hot weights reads single outputs; a weighted sum checks them all
    // at once against the definition.
    let p = Problem::new(2, 3, 130, 4, 7);
    let device = Device::flex();
    let t = p.tensors(&device, false);
    let w32 = p.weights();
    let wt = Tensor::<1>::from_floats(w32.as_slice(), &device).reshape([p.batch, p.len, p.heads]);
    let got = to_f64((fused(&p, &t) * wt).sum());
    let v: [Vec<f64>; 8] =
        std::array::from_fn(|i| p.values[i].iter().map(|&x| f64::from(x)).collect());
    let w: Vec<f64> = w32.iter().map(|&x| f64::from(x)).collect();
    let want = loss_f64(&p, &v, &w);
    // A sum of B L H ~ 800 products of O(1) terms in f32: 1e-4 relative to |want| ~ 10-100.
    assert!(
        (got[0] - want).abs() <= 1e-4 * want.abs().max(1.0),
        "fused {} vs f64 {want}",
        got[0]
    );
}

/// Gradients of `sum(w * y)` for every input from the fused op and from burn's autodiff of
/// the composed path. Different algorithms (FFT correlation vs Toeplitz transpose, closed-form
/// kernel derivative vs autodiff through L products), both f32: 1e-4 of each gradient's scale.
fn check_gradients(device: Device) {
    let p = Problem::new(2, 3, 120, 8, 23);
    let w = Tensor::<1>::from_floats(p.weights().as_slice(), &device)
        .reshape([p.batch, p.len, p.heads]);
    let grads_of = |use_fused: bool| -> Vec<Vec<f64>> {
        let t = p.tensors(&device, true);
        let y = if use_fused {
            fused(&p, &t)
        } else {
            composed(&p, &t)
        };
        let grads = (y * w.clone()).sum().backward();
        t.iter()
            .map(|x| to_f64(x.grad(&grads).expect("every input is used")))
            .collect()
    };
    let want = grads_of(false);
    let got = grads_of(true);
    let names = ["a_re", "a_im", "b_re", "b_im", "c_re", "c_im", "d", "u"];
    for ((g, w), name) in got.iter().zip(&want).zip(names) {
        let err = rel_err(g, w);
        assert!(err < 1e-4, "d/d{name}: rel err {err:e}");
    }
}

#[test]
fn gradients_match_composed_autodiff() {
    check_gradients(Device::flex().autodiff());
    check_gradients(ndarray_device().autodiff());
}

/// Directional derivatives of the fused gradient against central differences of the f64
/// definition, one random direction per input. eps = 1e-6 in f64 makes the quotient exact to
/// ~1e-9; the fused gradient is f32 through an FFT (~1e-6 relative), so 1e-4 leaves margin
/// while any wrong term (a sign, a conjugate, an off-by-one lag) is O(1).
#[test]
fn gradients_match_finite_differences_f64() {
    let device = Device::flex().autodiff();
    let p = Problem::new(2, 2, 60, 4, 31);
    let w32 = p.weights();
    let w: Vec<f64> = w32.iter().map(|&x| f64::from(x)).collect();
    let t = p.tensors(&device, true);
    let wt = Tensor::<1>::from_floats(w32.as_slice(), &device).reshape([p.batch, p.len, p.heads]);
    let grads = (fused(&p, &t) * wt).sum().backward();
    let base: [Vec<f64>; 8] =
        std::array::from_fn(|i| p.values[i].iter().map(|&x| f64::from(x)).collect());
    let analytic: [Vec<f64>; 8] =
        std::array::from_fn(|i| to_f64(t[i].grad(&grads).expect("tracked")));
    check_directional_derivatives(&analytic, &base, |v| loss_f64(&p, v, &w), 1e-4);
}

/// L = 4096 (FFT length 8192): finite, and equal to the composed path in value and in the
/// gradients of `u` and `Abar` (the Toeplitz reference is O(L^2) but fine for one head pair).
/// Tolerances as above, times 10 for sums over 4096 lags.
#[test]
fn long_sequences_stay_finite_and_match() {
    let device = Device::flex().autodiff();
    let p = Problem::new(1, 2, 4096, 4, 41);
    let w = Tensor::<1>::from_floats(p.weights().as_slice(), &device)
        .reshape([p.batch, p.len, p.heads]);
    let run = |use_fused: bool| {
        let t = p.tensors(&device, true);
        let y = if use_fused {
            fused(&p, &t)
        } else {
            composed(&p, &t)
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
    assert!(rel_err(&y1, &y0) < 1e-4, "y");
    assert!(rel_err(&ga1, &ga0) < 1e-3, "dAbar_re");
    assert!(rel_err(&gu1, &gu0) < 1e-3, "du");
}

/// The classifier's two views agree with both fused ops in place: convolution mode (fused
/// conv) and recurrent mode (fused scan) compute the same logits. 1e-4: the scan and the FFT
/// round their f32 sums differently over L = 300 steps.
#[test]
fn classifier_views_agree_with_fused_ops() {
    let device = Device::flex();
    device.seed(3);
    let model = S4dClassifierConfig::preset("s4d-16h")
        .expect("preset")
        .init(&device);
    let x =
        Tensor::<1>::from_floats(lcg_values(2 * 300, 5).as_slice(), &device).reshape([2, 300, 1]);
    let conv = to_f64(model.forward(x.clone(), SsmMode::Convolution));
    let rec = to_f64(model.forward(x, SsmMode::Recurrent));
    assert!(rel_err(&conv, &rec) < 1e-4, "{conv:?} vs {rec:?}");
}
