use burn::module::Param;
use burn::prelude::*;
use burn::tensor::Distribution;

use crate::complex::ComplexTensor;
use crate::config::{Discretization, S4dConfig, S4dInit, SsmMode};
use crate::conv::causal_conv;
use crate::conv_op::{fused_conv_supported, fused_s4d_conv};
use crate::discretize::{Discretized, discretize};
use crate::kernel::vandermonde_kernel;
use crate::scan::{S4dState, diagonal_scan, scan_step};
use crate::scan_op::{fused_diagonal_scan, fused_diagonal_scan_time_major, fused_scan_supported};

/// One S4D layer: `H` independent diagonal complex SSMs, one per channel.
///
/// Continuous parameters (S4D, Gu et al. 2022), `M = N / 2` modes per head:
/// - `dt = exp(log_dt)`, `[H]`
/// - `A = -exp(log_a_real) + i a_imag`, `[H, M]` (real part negative: stable by construction)
/// - `B = b_re + i b_im`, `C = c_re + i c_im`, `[H, M]`
/// - `D`, `[H]`
///
/// Output `y = 2 Re(C x) + D u` where `x` follows the discretized recurrence; the factor 2
/// accounts for the conjugate modes that are not stored.
#[derive(Module, Debug)]
pub struct S4d {
    /// Log step size per head, `[H]`.
    pub log_dt: Param<Tensor<1>>,
    /// Log of minus the real part of `A`, `[H, M]`.
    pub log_a_real: Param<Tensor<2>>,
    /// Imaginary part of `A`, `[H, M]`.
    pub a_imag: Param<Tensor<2>>,
    /// Real part of `B`, `[H, M]`.
    pub b_re: Param<Tensor<2>>,
    /// Imaginary part of `B`, `[H, M]`.
    pub b_im: Param<Tensor<2>>,
    /// Real part of `C`, `[H, M]`.
    pub c_re: Param<Tensor<2>>,
    /// Imaginary part of `C`, `[H, M]`.
    pub c_im: Param<Tensor<2>>,
    /// Skip connection, `[H]`.
    pub d: Param<Tensor<1>>,
    /// Discretization rule (configuration, not a parameter).
    #[module(skip)]
    pub discretization: Discretization,
}

impl S4dConfig {
    /// Builds the layer with the S4D initialisation: `log_dt ~ U[log dt_min, log dt_max]`,
    /// `A = -1/2 + i * (S4D-Lin or S4D-Inv)`, `B = 1`, `C` complex normal with unit variance
    /// (each part `N(0, 1/2)`), `D ~ N(0, 1)`. Random draws follow the device seed.
    ///
    /// # Panics
    /// On an invalid config; call [`S4dConfig::validate`] first to get an error instead.
    pub fn init(&self, device: &Device) -> S4d {
        if let Err(err) = self.validate() {
            panic!("{err}");
        }
        let heads = self.d_model;
        let modes = self.modes();
        let log_dt = Tensor::<1>::random(
            [heads],
            Distribution::Uniform(self.dt_min.ln(), self.dt_max.ln()),
            device,
        );
        let log_a_real = Tensor::<2>::full([heads, modes], 0.5f64.ln(), device);
        let n = self.d_state as f64;
        let imag: Vec<f32> = (0..modes)
            .map(|m| match self.init {
                S4dInit::Lin => std::f64::consts::PI * m as f64,
                S4dInit::Inv => n / std::f64::consts::PI * (n / (2.0 * m as f64 + 1.0) - 1.0),
            } as f32)
            .collect();
        let a_imag = Tensor::<1>::from_floats(imag.as_slice(), device)
            .reshape([1, modes])
            .repeat_dim(0, heads);
        let std = 0.5f64.sqrt();
        let c_re = Tensor::<2>::random([heads, modes], Distribution::Normal(0.0, std), device);
        let c_im = Tensor::<2>::random([heads, modes], Distribution::Normal(0.0, std), device);
        let d = Tensor::<1>::random([heads], Distribution::Normal(0.0, 1.0), device);
        let b_re = Param::from_tensor(Tensor::<2>::ones([heads, modes], device))
            .set_require_grad(self.trainable_b);
        let b_im = Param::from_tensor(Tensor::<2>::zeros([heads, modes], device))
            .set_require_grad(self.trainable_b);
        S4d {
            log_dt: Param::from_tensor(log_dt),
            log_a_real: Param::from_tensor(log_a_real),
            a_imag: Param::from_tensor(a_imag),
            b_re,
            b_im,
            c_re: Param::from_tensor(c_re),
            c_im: Param::from_tensor(c_im),
            d: Param::from_tensor(d),
            discretization: self.discretization,
        }
    }
}

impl S4d {
    /// Number of heads `H`.
    pub fn heads(&self) -> usize {
        self.log_dt.dims()[0]
    }

    /// Number of complex modes `M` per head.
    pub fn modes(&self) -> usize {
        self.a_imag.dims()[1]
    }

    /// Continuous `A`, `[H, M]`.
    pub fn a(&self) -> ComplexTensor<2> {
        ComplexTensor::new(self.log_a_real.val().exp().neg(), self.a_imag.val())
    }

    /// Step sizes `dt = exp(log_dt)`, `[H]`.
    pub fn dt(&self) -> Tensor<1> {
        self.log_dt.val().exp()
    }

    /// The discrete matrices `Abar, Bbar, C, D` under this layer's discretization rule.
    pub fn discretize(&self) -> Discretized {
        discretize(
            self.discretization,
            self.dt(),
            self.a(),
            ComplexTensor::new(self.b_re.val(), self.b_im.val()),
            ComplexTensor::new(self.c_re.val(), self.c_im.val()),
            self.d.val(),
        )
    }

    /// The convolution kernel for sequences of length `len`, `[H, L]`.
    pub fn kernel(&self, len: usize) -> Tensor<2> {
        vandermonde_kernel(&self.discretize(), len)
    }

    /// Applies the layer to `u: [B, L, H]` and returns `y: [B, L, H]`, in either view.
    pub fn forward(&self, u: Tensor<3>, mode: SsmMode) -> Tensor<3> {
        // The fused ops read the time-major layout directly: no transposes.
        if mode == SsmMode::Convolution && fused_conv_supported(&u.device()) {
            let disc = self.discretize();
            return fused_s4d_conv(&disc.a_bar, &disc.b_bar, &disc.c, &disc.d, u);
        }
        if mode == SsmMode::Recurrent && fused_scan_supported(&u.device()) {
            let disc = self.discretize();
            return fused_diagonal_scan_time_major(
                &disc.a_bar,
                &disc.b_bar,
                &disc.c,
                &disc.d,
                u,
                None,
            );
        }
        let u = u.swap_dims(1, 2); // [B, H, L]
        let y = match mode {
            SsmMode::Convolution => self.forward_conv(u),
            SsmMode::Recurrent => self.forward_recurrent(u),
        };
        y.swap_dims(1, 2)
    }

    /// Recurrent view on channel-major input `u: [B, H, L]`: the fused scan on CPU backends,
    /// the composed tensor scan elsewhere (same function, see `tests/fused_scan.rs`).
    pub fn forward_recurrent(&self, u: Tensor<3>) -> Tensor<3> {
        let disc = self.discretize();
        if fused_scan_supported(&u.device()) {
            fused_diagonal_scan(&disc.a_bar, &disc.b_bar, &disc.c, &disc.d, u, None)
        } else {
            diagonal_scan(&disc, u).0
        }
    }

    /// Convolution view on channel-major input `u: [B, H, L]`, composed from tensor ops
    /// (every backend; [`S4d::forward`] takes the fused op on CPU instead).
    pub fn forward_conv(&self, u: Tensor<3>) -> Tensor<3> {
        let [_, heads, len] = u.dims();
        let disc = self.discretize();
        let k = vandermonde_kernel(&disc, len);
        let skip = u.clone() * disc.d.reshape([1, heads, 1]);
        causal_conv(u, k) + skip
    }

    /// The zero state for a batch of `batch` streams.
    pub fn zero_state(&self, batch: usize) -> S4dState {
        S4dState::zeros(batch, self.heads(), self.modes(), &self.log_dt.device())
    }

    /// Streaming inference: advances `state` by one input `u_t: [B, H]`, returns `y_t: [B, H]`.
    /// `disc` comes from [`S4d::discretize`], computed once for the whole stream.
    pub fn step(
        &self,
        disc: &Discretized,
        state: S4dState,
        u_t: Tensor<2>,
    ) -> (Tensor<2>, S4dState) {
        scan_step(disc, state, u_t)
    }
}
