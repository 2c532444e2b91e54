//! Host loops of the fused S4D convolution: kernel generation, FFT causal convolution and the
//! skip term in one pass, with the matching backward.
//!
//! Composed tensor ops spend most of a convolution-mode training step on bookkeeping: an
//! `[H, M, L]` Vandermonde tensor and its backward, two transposes of the activations, and an
//! FFT round trip per op. Here the kernel `K[h, l] = 2 Re(sum_m W[h,m] Abar[h,m]^l)` (with
//! `W = C * Bbar`) comes from running powers in `f64`, `u` is read in its `[B, L, H]` layout,
//! and each `(b, h)` sequence makes one real FFT round trip. The backward is closed-form:
//!
//! - `dU = irfft(G conj(K^))` (a correlation) plus `D G`; `dD[h] = sum G u`;
//! - `dK = irfft(sum_b G conj(U^))`, then `dW = 2 sum_l dK[l] conj(z^l)` and
//!   `dz = 2 conj(W sum_l dK[l] l z^(l-1))` as (re, im) pairs, `z = Abar`.
//!
//! The FFT length is the smallest 5-smooth even `n >= 2L - 1`, so the circular wrap never
//! reaches the first `L` outputs (nor the `L` lags of a correlation).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use rayon::prelude::*;
use realfft::num_complex::Complex32;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};

/// Sizes of one fused convolution call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvDims {
    /// `B`.
    pub batch: usize,
    /// `L`.
    pub len: usize,
    /// `H`.
    pub heads: usize,
    /// `M`.
    pub modes: usize,
}

impl ConvDims {
    /// The FFT length used for sequences of `len` samples.
    pub fn fft_len(&self) -> usize {
        fft_len(self.len)
    }

    /// Complex bins of a real FFT of [`ConvDims::fft_len`] samples.
    pub fn bins(&self) -> usize {
        self.fft_len() / 2 + 1
    }
}

/// The layer's discrete parameters on the host: `a_* = Abar`, `w_* = C * Bbar` (`[H, M]`),
/// `d` (`[H]`).
#[derive(Debug, Clone, Copy)]
pub struct ConvParams<'a> {
    /// `Re Abar`, `[H, M]`.
    pub a_re: &'a [f32],
    /// `Im Abar`, `[H, M]`.
    pub a_im: &'a [f32],
    /// `Re(C * Bbar)`, `[H, M]`.
    pub w_re: &'a [f32],
    /// `Im(C * Bbar)`, `[H, M]`.
    pub w_im: &'a [f32],
    /// Skip weight `D`, `[H]`.
    pub d: &'a [f32],
}

/// The smallest even `n >= 2 len - 1` whose only prime factors are 2, 3 and 5 (fast for
/// rustfft's mixed-radix plans; 1600 instead of 2048 for sMNIST's `L = 784`).
pub fn fft_len(len: usize) -> usize {
    let target = (2 * len).saturating_sub(1).max(2);
    let smooth = |mut n: usize| {
        for p in [2, 3, 5] {
            while n.is_multiple_of(p) {
                n /= p;
            }
        }
        n == 1
    };
    (target..)
        .find(|n| n.is_multiple_of(2) && smooth(*n))
        .unwrap_or(target)
}

type Plans = (Arc<dyn RealToComplex<f32>>, Arc<dyn ComplexToReal<f32>>);
type PlanCache = Mutex<(RealFftPlanner<f32>, HashMap<usize, Plans>)>;

/// Forward and inverse real FFT plans of length `n`, planned once per process.
fn plans(n: usize) -> Plans {
    static CACHE: OnceLock<PlanCache> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new((RealFftPlanner::new(), HashMap::new())));
    // A poisoned lock only means another thread panicked mid-planning; the planner's cache
    // is still usable (at worst it plans again).
    let mut guard = cache.lock().unwrap_or_else(|e| e.into_inner());
    let (planner, map) = &mut *guard;
    if let Some(p) = map.get(&n) {
        return p.clone();
    }
    let p = (planner.plan_fft_forward(n), planner.plan_fft_inverse(n));
    map.insert(n, p.clone());
    p
}

/// Per-thread buffers for one FFT round trip.
struct Scratch {
    r2c: Arc<dyn RealToComplex<f32>>,
    c2r: Arc<dyn ComplexToReal<f32>>,
    real: Vec<f32>,
    spec: Vec<Complex32>,
    spec2: Vec<Complex32>,
    work: Vec<Complex32>,
}

impl Scratch {
    fn new(n: usize) -> Self {
        let (r2c, c2r) = plans(n);
        let work_len = r2c.get_scratch_len().max(c2r.get_scratch_len());
        Self {
            real: vec![0.0; n],
            spec: vec![Complex32::ZERO; n / 2 + 1],
            spec2: vec![Complex32::ZERO; n / 2 + 1],
            work: vec![Complex32::ZERO; work_len],
            r2c,
            c2r,
        }
    }

    /// `spec = rfft(real)`; `real` is clobbered.
    fn forward(&mut self) {
        self.r2c
            .process_with_scratch(&mut self.real, &mut self.spec, &mut self.work)
            .unwrap_or_else(|e| panic!("fused conv: forward FFT failed: {e}"));
    }

    /// `real = irfft(spec2)` (unnormalized); `spec2` is clobbered. The DC and Nyquist bins of a
    /// product of real signals' spectra are real up to rounding; they are set exactly real.
    fn inverse(&mut self) {
        let last = self.spec2.len() - 1;
        self.spec2[0].im = 0.0;
        self.spec2[last].im = 0.0;
        self.c2r
            .process_with_scratch(&mut self.spec2, &mut self.real, &mut self.work)
            .unwrap_or_else(|e| panic!("fused conv: inverse FFT failed: {e}"));
    }
}

fn check(dims: ConvDims, p: &ConvParams<'_>, u: &[f32]) {
    let hm = dims.heads * dims.modes;
    assert!(
        [p.a_re, p.a_im, p.w_re, p.w_im]
            .iter()
            .all(|m| m.len() == hm)
            && p.d.len() == dims.heads
            && u.len() == dims.batch * dims.len * dims.heads,
        "fused conv: buffer sizes do not match {dims:?}"
    );
}

/// The SSM kernel `K[h, l] = 2 Re(sum_m W z^l)`, `[H, L]`, accumulated in `f64` over running
/// powers (`L` products drift by about `L * 1e-16`, far below `f32` resolution).
pub fn ssm_kernel(dims: ConvDims, p: &ConvParams<'_>) -> Vec<f32> {
    let (len, modes) = (dims.len, dims.modes);
    let mut k = vec![0.0f32; dims.heads * len];
    k.par_chunks_mut(len.max(1))
        .enumerate()
        .for_each(|(h, row)| {
            let range = h * modes..(h + 1) * modes;
            let (zr, zi) = (&p.a_re[range.clone()], &p.a_im[range.clone()]);
            // The running terms `W z^l`, one per mode.
            let mut tr: Vec<f64> = p.w_re[range.clone()].iter().map(|&v| v as f64).collect();
            let mut ti: Vec<f64> = p.w_im[range].iter().map(|&v| v as f64).collect();
            let zr: Vec<f64> = zr.iter().map(|&v| v as f64).collect();
            let zi: Vec<f64> = zi.iter().map(|&v| v as f64).collect();
            for out in row.iter_mut() {
                *out = (2.0 * tr.iter().sum::<f64>()) as f32;
                for m in 0..modes {
                    let (r, i) = (tr[m], ti[m]);
                    tr[m] = r * zr[m] - i * zi[m];
                    ti[m] = r * zi[m] + i * zr[m];
                }
            }
        });
    k
}

/// Gradients of a loss through [`ssm_kernel`], from `dk: [H, L]`:
/// `(dAbar_re, dAbar_im, dW_re, dW_im)`, each `[H, M]`.
pub fn ssm_kernel_backward(dims: ConvDims, p: &ConvParams<'_>, dk: &[f32]) -> [Vec<f32>; 4] {
    let (len, modes, hm) = (dims.len, dims.modes, dims.heads * dims.modes);
    let per_mode: Vec<[f32; 4]> = (0..hm)
        .into_par_iter()
        .map(|i| {
            let h = i / modes;
            let g = &dk[h * len..(h + 1) * len];
            let (zr, zi) = (p.a_re[i] as f64, p.a_im[i] as f64);
            // q = z^l; pw = sum_l g[l] z^l; sw = sum_{l>=1} g[l] l z^(l-1).
            let (mut qr, mut qi) = (1.0f64, 0.0f64);
            let (mut pr, mut pi, mut sr, mut si) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
            for l in 0..len {
                let gl = g[l] as f64;
                pr += gl * qr;
                pi += gl * qi;
                if l + 1 < len {
                    let c = g[l + 1] as f64 * (l + 1) as f64;
                    sr += c * qr;
                    si += c * qi;
                }
                (qr, qi) = (qr * zr - qi * zi, qr * zi + qi * zr);
            }
            let (wr, wi) = (p.w_re[i] as f64, p.w_im[i] as f64);
            let (ws_r, ws_i) = (wr * sr - wi * si, wr * si + wi * sr);
            [
                (2.0 * ws_r) as f32,
                (-2.0 * ws_i) as f32,
                (2.0 * pr) as f32,
                (-2.0 * pi) as f32,
            ]
        })
        .collect();
    let mut out = [vec![0.0; hm], vec![0.0; hm], vec![0.0; hm], vec![0.0; hm]];
    for (i, g) in per_mode.iter().enumerate() {
        for (o, v) in out.iter_mut().zip(g) {
            o[i] = *v;
        }
    }
    out
}

/// What the forward pass leaves for the backward.
#[derive(Debug, Clone)]
pub struct ConvForward {
    /// `y = causal_conv(u, K) + D u`, `[B, L, H]`.
    pub y: Vec<f32>,
    /// `rfft(K) / n`, `[H, F]`.
    pub k_hat: Vec<Complex32>,
    /// `rfft(u)` per sequence, `[B, H, F]`, when asked for (training).
    pub u_hat: Option<Vec<Complex32>>,
}

/// The layer's output `y = causal_conv(u, K) + D u` for `u: [B, L, H]`.
pub fn conv_forward(dims: ConvDims, p: &ConvParams<'_>, u: &[f32], keep: bool) -> ConvForward {
    check(dims, p, u);
    let (n, f, len, heads) = (dims.fft_len(), dims.bins(), dims.len, dims.heads);
    let k = ssm_kernel(dims, p);
    let mut k_hat = vec![Complex32::ZERO; heads * f];
    let inv_n = 1.0 / n as f32;
    k_hat
        .par_chunks_mut(f)
        .zip(k.par_chunks(len.max(1)))
        .for_each_init(
            || Scratch::new(n),
            |s, (out, row)| {
                s.real[..len].copy_from_slice(row);
                s.real[len..].fill(0.0);
                s.forward();
                for (o, v) in out.iter_mut().zip(&s.spec) {
                    *o = v * inv_n;
                }
            },
        );

    let slab = len * heads;
    let mut y = vec![0.0f32; dims.batch * slab];
    let mut u_hat = keep.then(|| vec![Complex32::ZERO; dims.batch * heads * f]);
    let body = |s: &mut Scratch, b: usize, y_b: &mut [f32], mut uh_b: Option<&mut [Complex32]>| {
        let u_b = &u[b * slab..(b + 1) * slab];
        for h in 0..heads {
            for (t, r) in s.real[..len].iter_mut().enumerate() {
                *r = u_b[t * heads + h];
            }
            s.real[len..].fill(0.0);
            s.forward();
            if let Some(uh) = uh_b.as_deref_mut() {
                uh[h * f..(h + 1) * f].copy_from_slice(&s.spec);
            }
            let kh = &k_hat[h * f..(h + 1) * f];
            for ((o, a), b) in s.spec2.iter_mut().zip(&s.spec).zip(kh) {
                *o = a * b;
            }
            s.inverse();
            let dh = p.d[h];
            for t in 0..len {
                let i = t * heads + h;
                y_b[i] = s.real[t] + dh * u_b[i];
            }
        }
    };
    match u_hat.as_mut() {
        Some(uh) => y
            .par_chunks_mut(slab.max(1))
            .zip(uh.par_chunks_mut((heads * f).max(1)))
            .enumerate()
            .for_each_init(
                || Scratch::new(n),
                |s, (b, (y_b, uh_b))| body(s, b, y_b, Some(uh_b)),
            ),
        None => y
            .par_chunks_mut(slab.max(1))
            .enumerate()
            .for_each_init(|| Scratch::new(n), |s, (b, y_b)| body(s, b, y_b, None)),
    }
    ConvForward { y, k_hat, u_hat }
}

/// Gradients of [`conv_forward`].
#[derive(Debug, Clone)]
pub struct ConvGrads {
    /// `[B, L, H]`.
    pub u: Vec<f32>,
    /// `[H, M]` each.
    pub a_re: Vec<f32>,
    /// `[H, M]`.
    pub a_im: Vec<f32>,
    /// `[H, M]`.
    pub w_re: Vec<f32>,
    /// `[H, M]`.
    pub w_im: Vec<f32>,
    /// `[H]`.
    pub d: Vec<f32>,
}

/// The backward of [`conv_forward`] from `dy: [B, L, H]`; `fwd` must have kept `u_hat`.
pub fn conv_backward(
    dims: ConvDims,
    p: &ConvParams<'_>,
    u: &[f32],
    fwd: &ConvForward,
    dy: &[f32],
) -> ConvGrads {
    check(dims, p, u);
    assert_eq!(dy.len(), u.len(), "fused conv: gradient shape");
    let u_hat = fwd
        .u_hat
        .as_ref()
        .unwrap_or_else(|| panic!("fused conv: backward needs the forward's spectra"));
    let (n, f, len, heads) = (dims.fft_len(), dims.bins(), dims.len, dims.heads);
    let slab = len * heads;
    let mut du = vec![0.0f32; u.len()];

    // Per batch row: dU, and this row's share of sum_b G conj(U^) and of dD.
    let (acc_k, acc_d) = du
        .par_chunks_mut(slab.max(1))
        .enumerate()
        .fold(
            || {
                (
                    Scratch::new(n),
                    vec![Complex32::ZERO; heads * f],
                    vec![0.0f64; heads],
                )
            },
            |(mut s, mut acc_k, mut acc_d), (b, du_b)| {
                let (u_b, g_b) = (&u[b * slab..(b + 1) * slab], &dy[b * slab..(b + 1) * slab]);
                for h in 0..heads {
                    for (t, r) in s.real[..len].iter_mut().enumerate() {
                        *r = g_b[t * heads + h];
                    }
                    s.real[len..].fill(0.0);
                    s.forward();
                    let uh = &u_hat[(b * heads + h) * f..(b * heads + h + 1) * f];
                    let kh = &fwd.k_hat[h * f..(h + 1) * f];
                    let ak = &mut acc_k[h * f..(h + 1) * f];
                    for i in 0..f {
                        let g = s.spec[i];
                        s.spec2[i] = g * kh[i].conj();
                        ak[i] += g * uh[i].conj();
                    }
                    s.inverse();
                    let dh = p.d[h];
                    let mut sd = 0.0f64;
                    for t in 0..len {
                        let i = t * heads + h;
                        du_b[i] = s.real[t] + dh * g_b[i];
                        sd += g_b[i] as f64 * u_b[i] as f64;
                    }
                    acc_d[h] += sd;
                }
                (s, acc_k, acc_d)
            },
        )
        .map(|(_, k, d)| (k, d))
        .reduce(
            || (vec![Complex32::ZERO; heads * f], vec![0.0f64; heads]),
            |(mut k1, mut d1), (k2, d2)| {
                k1.iter_mut().zip(&k2).for_each(|(a, b)| *a += b);
                d1.iter_mut().zip(&d2).for_each(|(a, b)| *a += b);
                (k1, d1)
            },
        );

    // dK = irfft(sum_b G conj(U^)) / n, first L lags.
    let inv_n = 1.0 / n as f32;
    let mut dk = vec![0.0f32; heads * len];
    dk.par_chunks_mut(len.max(1))
        .zip(acc_k.par_chunks(f))
        .for_each_init(
            || Scratch::new(n),
            |s, (out, spec)| {
                s.spec2.copy_from_slice(spec);
                s.inverse();
                for (o, r) in out.iter_mut().zip(&s.real) {
                    *o = r * inv_n;
                }
            },
        );
    let [a_re, a_im, w_re, w_im] = ssm_kernel_backward(dims, p, &dk);
    ConvGrads {
        u: du,
        a_re,
        a_im,
        w_re,
        w_im,
        d: acc_d.into_iter().map(|v| v as f32).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fft_len_is_smooth_even_and_long_enough() {
        for len in [1, 2, 3, 7, 100, 784, 1000, 4096] {
            let n = fft_len(len);
            assert!(n >= 2 * len - 1 && n.is_multiple_of(2), "len {len} -> {n}");
        }
        assert_eq!(fft_len(784), 1600);
        assert_eq!(fft_len(1024), 2048);
    }
}
