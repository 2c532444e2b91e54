use std::ops::{Add, Div, Mul};

use burn::prelude::*;

/// A complex tensor stored as two real tensors of the same shape.
///
/// burn has no complex dtype; keeping the parts apart also matches how the paper quantizes a
/// complex matrix (real and imaginary parts on one shared Cartesian grid).
#[derive(Debug, Clone)]
pub struct ComplexTensor<const D: usize> {
    /// Real part.
    pub re: Tensor<D>,
    /// Imaginary part.
    pub im: Tensor<D>,
}

impl<const D: usize> ComplexTensor<D> {
    /// Pairs a real and an imaginary part; they must have the same shape.
    pub fn new(re: Tensor<D>, im: Tensor<D>) -> Self {
        debug_assert_eq!(re.dims(), im.dims());
        Self { re, im }
    }

    /// Shape shared by both parts.
    pub fn dims(&self) -> [usize; D] {
        self.re.dims()
    }

    /// Multiplies both parts by a real tensor (broadcast like an ordinary product).
    pub fn scale(self, factor: Tensor<D>) -> Self {
        Self {
            re: self.re * factor.clone(),
            im: self.im * factor,
        }
    }

    /// Multiplies both parts by a real scalar.
    pub fn mul_scalar(self, factor: f64) -> Self {
        Self {
            re: self.re.mul_scalar(factor),
            im: self.im.mul_scalar(factor),
        }
    }

    /// Adds a real scalar to the real part.
    pub fn add_real_scalar(self, value: f64) -> Self {
        Self {
            re: self.re.add_scalar(value),
            im: self.im,
        }
    }

    /// `exp(a + ib) = e^a (cos b + i sin b)`.
    pub fn exp(self) -> Self {
        let mag = self.re.exp();
        Self {
            re: mag.clone() * self.im.clone().cos(),
            im: mag * self.im.sin(),
        }
    }

    /// Principal logarithm `ln|z| + i arg z`; used to turn any `Abar` into Vandermonde powers.
    pub fn ln(self) -> Self {
        let norm_sq = self.re.clone().powi_scalar(2) + self.im.clone().powi_scalar(2);
        Self {
            re: norm_sq.log().mul_scalar(0.5),
            im: self.im.atan2(self.re),
        }
    }

    /// Squared magnitude `|z|^2`: what decides whether a recurrence is stable.
    pub fn norm_sq(&self) -> Tensor<D> {
        self.re.clone().powi_scalar(2) + self.im.clone().powi_scalar(2)
    }

    /// Applies the same shape operation to both parts.
    pub fn map<const E: usize>(self, f: impl Fn(Tensor<D>) -> Tensor<E>) -> ComplexTensor<E> {
        ComplexTensor {
            re: f(self.re),
            im: f(self.im),
        }
    }
}

/// `(a + ib)(c + id) = (ac - bd) + i(ad + bc)`.
impl<const D: usize> Mul for ComplexTensor<D> {
    type Output = Self;

    fn mul(self, other: Self) -> Self {
        let re = self.re.clone() * other.re.clone() - self.im.clone() * other.im.clone();
        let im = self.re * other.im + self.im * other.re;
        Self { re, im }
    }
}

/// `(a + ib) / (c + id) = ((ac + bd) + i(bc - ad)) / (c^2 + d^2)`.
impl<const D: usize> Div for ComplexTensor<D> {
    type Output = Self;

    fn div(self, other: Self) -> Self {
        let denom = other.norm_sq();
        let re = self.re.clone() * other.re.clone() + self.im.clone() * other.im.clone();
        let im = self.im * other.re - self.re * other.im;
        Self {
            re: re / denom.clone(),
            im: im / denom,
        }
    }
}

/// Elementwise complex sum.
impl<const D: usize> Add for ComplexTensor<D> {
    type Output = Self;

    fn add(self, other: Self) -> Self {
        Self {
            re: self.re + other.re,
            im: self.im + other.im,
        }
    }
}
