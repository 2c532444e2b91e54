//! A float64 S4D written in plain Rust, independent of burn and of the crate's code paths
//! (complex numbers by hand, powers by repeated multiplication, time-domain convolution).
#![allow(dead_code)]

use burn::prelude::*;
use s4d_model::{Discretization, S4d};

/// Complex number in f64.
#[derive(Clone, Copy, Debug)]
pub struct C64 {
    pub re: f64,
    pub im: f64,
}

impl C64 {
    pub fn new(re: f64, im: f64) -> Self {
        Self { re, im }
    }
    pub fn mul(self, o: Self) -> Self {
        Self::new(
            self.re * o.re - self.im * o.im,
            self.re * o.im + self.im * o.re,
        )
    }
    pub fn div(self, o: Self) -> Self {
        let d = o.re * o.re + o.im * o.im;
        Self::new(
            (self.re * o.re + self.im * o.im) / d,
            (self.im * o.re - self.re * o.im) / d,
        )
    }
    pub fn add(self, o: Self) -> Self {
        Self::new(self.re + o.re, self.im + o.im)
    }
    pub fn exp(self) -> Self {
        let m = self.re.exp();
        Self::new(m * self.im.cos(), m * self.im.sin())
    }
}

/// Flat copies of an S4D layer's parameters, in f64.
#[derive(Clone, Debug)]
pub struct RefParams {
    pub heads: usize,
    pub modes: usize,
    pub log_dt: Vec<f64>,
    pub log_a_real: Vec<f64>,
    pub a_imag: Vec<f64>,
    pub b_re: Vec<f64>,
    pub b_im: Vec<f64>,
    pub c_re: Vec<f64>,
    pub c_im: Vec<f64>,
    pub d: Vec<f64>,
    pub rule: Discretization,
}

pub fn to_f64<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32 data")
        .into_iter()
        .map(f64::from)
        .collect()
}

impl RefParams {
    pub fn from_layer(layer: &S4d) -> Self {
        Self {
            heads: layer.heads(),
            modes: layer.modes(),
            log_dt: to_f64(layer.log_dt.val()),
            log_a_real: to_f64(layer.log_a_real.val()),
            a_imag: to_f64(layer.a_imag.val()),
            b_re: to_f64(layer.b_re.val()),
            b_im: to_f64(layer.b_im.val()),
            c_re: to_f64(layer.c_re.val()),
            c_im: to_f64(layer.c_im.val()),
            d: to_f64(layer.d.val()),
            rule: layer.discretization,
        }
    }

    /// (Abar, Bbar) for head h, mode n.
    pub fn discrete(&self, h: usize, n: usize) -> (C64, C64) {
        let i = h * self.modes + n;
        let dt = self.log_dt[h].exp();
        let a = C64::new(-self.log_a_real[i].exp(), self.a_imag[i]);
        let b = C64::new(self.b_re[i], self.b_im[i]);
        let dta = C64::new(dt * a.re, dt * a.im);
        match self.rule {
            Discretization::Zoh => {
                let ab = dta.exp();
                let bb = b.mul(C64::new(ab.re - 1.0, ab.im).div(a));
                (ab, bb)
            }
            Discretization::Bilinear => {
                let num = C64::new(1.0 + dta.re / 2.0, dta.im / 2.0);
                let den = C64::new(1.0 - dta.re / 2.0, -dta.im / 2.0);
                (num.div(den), C64::new(b.re * dt, b.im * dt).div(den))
            }
        }
    }

    /// K[h][l] = 2 Re sum_n C Bbar Abar^l, powers by repeated multiplication.
    pub fn kernel(&self, len: usize) -> Vec<Vec<f64>> {
        (0..self.heads)
            .map(|h| {
                let mut k = vec![0.0; len];
                for n in 0..self.modes {
                    let i = h * self.modes + n;
                    let (ab, bb) = self.discrete(h, n);
                    let mut p = C64::new(self.c_re[i], self.c_im[i]).mul(bb);
                    for kl in k.iter_mut() {
                        *kl += 2.0 * p.re;
                        p = p.mul(ab);
                    }
                }
                k
            })
            .collect()
    }

    /// Recurrent forward of u[b][h][t] (channel-major), zero initial state.
    pub fn recurrent(&self, u: &[Vec<Vec<f64>>]) -> Vec<Vec<Vec<f64>>> {
        u.iter()
            .map(|ub| {
                (0..self.heads)
                    .map(|h| {
                        let len = ub[h].len();
                        let mut y = vec![0.0; len];
                        for n in 0..self.modes {
                            let i = h * self.modes + n;
                            let (ab, bb) = self.discrete(h, n);
                            let c = C64::new(self.c_re[i], self.c_im[i]);
                            let mut x = C64::new(0.0, 0.0);
                            for t in 0..len {
                                x = ab.mul(x).add(C64::new(bb.re * ub[h][t], bb.im * ub[h][t]));
                                y[t] += 2.0 * c.mul(x).re;
                            }
                        }
                        for t in 0..len {
                            y[t] += self.d[h] * ub[h][t];
                        }
                        y
                    })
                    .collect()
            })
            .collect()
    }
}

/// Deterministic pseudo-random values in [-1, 1) (an LCG; tests must not depend on burn's RNG).
pub fn lcg_values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f64 / (1u64 << 24) as f64 * 2.0 - 1.0) as f32
        })
        .collect()
}

/// Max |a - b| / max |b|: error relative to the signal's scale, so near-zero entries of a
/// decaying kernel do not dominate.
pub fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-12);
    a.iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

impl RefParams {
    /// The parameter vector called `name` (the burn field name), for finite differences.
    pub fn field_mut(&mut self, name: &str) -> &mut Vec<f64> {
        match name {
            "log_dt" => &mut self.log_dt,
            "log_a_real" => &mut self.log_a_real,
            "a_imag" => &mut self.a_imag,
            "b_re" => &mut self.b_re,
            "b_im" => &mut self.b_im,
            "c_re" => &mut self.c_re,
            "c_im" => &mut self.c_im,
            "d" => &mut self.d,
            other => panic!("no field {other}"),
        }
    }
}

/// The NdArray device. Deprecated upstream in favour of Flex, but s4q's users asked for it,
/// so the tests keep covering it.
#[allow(deprecated)]
pub fn ndarray_device() -> Device {
    Device::ndarray()
}

/// Checks analytic gradients against central differences of an f64 loss, one pseudo-random
/// direction per input: `sum(grad_i * dir)` vs `(loss(x + eps dir) - loss(x - eps dir)) / 2
/// eps` with `eps = 1e-6` (the f64 quotient is exact to ~1e-9). `grads[i]` is the f32
/// gradient of input `i`, `base[i]` its values; `tol` bounds the error relative to
/// `max(|numeric|, 1e-3)`.
pub fn check_directional_derivatives<const N: usize>(
    grads: &[Vec<f64>; N],
    base: &[Vec<f64>; N],
    loss: impl Fn(&[Vec<f64>; N]) -> f64,
    tol: f64,
) {
    let eps = 1e-6;
    for (i, g) in grads.iter().enumerate() {
        let dir: Vec<f64> = lcg_values(g.len(), 500 + i as u64)
            .iter()
            .map(|&x| f64::from(x))
            .collect();
        let analytic: f64 = g.iter().zip(&dir).map(|(a, b)| a * b).sum();
        let shifted = |sign: f64| {
            let mut v = base.clone();
            v[i].iter_mut()
                .zip(&dir)
                .for_each(|(x, d)| *x += sign * eps * d);
            loss(&v)
        };
        let numeric = (shifted(1.0) - shifted(-1.0)) / (2.0 * eps);
        let err = (analytic - numeric).abs() / numeric.abs().max(1e-3);
        assert!(
            err < tol,
            "input {i}: analytic {analytic} numeric {numeric} (rel {err:e})"
        );
    }
}
