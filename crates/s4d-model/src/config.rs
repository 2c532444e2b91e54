use burn::config::Config;
use serde::{Deserialize, Serialize};

use crate::error::ModelError;

/// How the continuous system `x' = A x + B u` becomes the discrete recurrence: the choice
/// changes `Abar` and `Bbar` and therefore what a quantizer has to represent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Discretization {
    /// Zero-order hold: `Abar = exp(dt A)`, `Bbar = B (exp(dt A) - 1) / A` (the paper's choice).
    #[default]
    Zoh,
    /// Bilinear (Tustin): `Abar = (1 + dt A / 2) / (1 - dt A / 2)`, `Bbar = dt B / (1 - dt A / 2)`.
    Bilinear,
}

/// Initialisation of the imaginary parts of `A` (S4D paper, Gu et al. 2022): decides which
/// frequencies each mode starts at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum S4dInit {
    /// S4D-Lin: `A_n = -1/2 + i pi n` (the paper's choice).
    #[default]
    Lin,
    /// S4D-Inv: `A_n = -1/2 + i (N / pi) (N / (2n + 1) - 1)`, `N` the real state size.
    Inv,
}

/// Which of the two equivalent views of the SSM a forward pass uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SsmMode {
    /// Kernel + FFT convolution: parallel over time, the fast way to train in float.
    #[default]
    Convolution,
    /// The step-by-step diagonal recurrence: what runs on a device, and where state
    /// quantization has to be simulated.
    Recurrent,
}

/// Configuration of one [`crate::S4d`] layer (`H` independent single-input single-output SSMs).
#[derive(Config, Debug, PartialEq)]
pub struct S4dConfig {
    /// Number of heads `H` (the model width): one SSM per channel.
    pub d_model: usize,
    /// Real state size `N` per head; the layer keeps `N / 2` complex conjugate-pair modes.
    #[config(default = 64)]
    pub d_state: usize,
    /// Smallest initial step size: `log_dt ~ U[log dt_min, log dt_max]`.
    #[config(default = 1e-3)]
    pub dt_min: f64,
    /// Largest initial step size.
    #[config(default = 1e-1)]
    pub dt_max: f64,
    /// Initialisation of the imaginary part of `A`.
    #[config(default = "S4dInit::Lin")]
    pub init: S4dInit,
    /// Discretisation rule.
    #[config(default = "Discretization::Zoh")]
    pub discretization: Discretization,
    /// Whether `B` is trained (true in the paper's parameter count) or frozen at `1 + 0i`.
    #[config(default = true)]
    pub trainable_b: bool,
}

impl S4dConfig {
    /// Number of complex modes `M = N / 2` per head.
    pub fn modes(&self) -> usize {
        self.d_state / 2
    }

    /// Rejects configurations that would build a meaningless layer, with a message a user can act on.
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.d_model == 0 {
            return Err(ModelError::InvalidConfig("d_model must be >= 1".into()));
        }
        if self.d_state < 2 || !self.d_state.is_multiple_of(2) {
            return Err(ModelError::InvalidConfig(format!(
                "d_state must be even and >= 2 (pairs of complex-conjugate modes), got {}",
                self.d_state
            )));
        }
        let dt_ok = self.dt_min.is_finite()
            && self.dt_max.is_finite()
            && self.dt_min > 0.0
            && self.dt_min <= self.dt_max;
        if !dt_ok {
            return Err(ModelError::InvalidConfig(format!(
                "need 0 < dt_min <= dt_max, got dt_min={} dt_max={}",
                self.dt_min, self.dt_max
            )));
        }
        Ok(())
    }
}
