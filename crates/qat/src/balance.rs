//! State balancing: a per-mode change of state basis, free at inference, that evens out the
//! ranges a per-head state quantizer has to cover.
//!
//! The state of a diagonal SSM is defined only up to a scale per mode: with `x' = x / r`,
//! `(Abar, Bbar, C) -> (Abar, Bbar / r, C r)` computes the same outputs (for both
//! discretizations, `Bbar` is linear in `B`, so scaling `B` scales `Bbar`). A per-head state
//! quantizer gives every mode of a head one step size, so a mode whose state stays 20x below
//! the head's largest gets about 1.6 of the 32 positive levels of a 6-bit grid and is all but
//! cut. Choosing `r_n = (amp_n / amp_max)^alpha` moves every mode's range towards the head's
//! largest (`alpha = 1`: all equal) and spreads the ranges of `Bbar` and `C` by the same
//! factors (`alpha = 0.5` splits the spread between the state and those weights). `Abar`, the
//! component the paper finds most fragile, is untouched. Nothing is added to the deployed
//! model: the scales are folded into `B` and `C` before quantization.

use burn::module::Param;
use burn::prelude::*;
use s4d_model::{S4d, S4dClassifier, SsmMode, diagonal_scan_with};
use serde::{Deserialize, Serialize};

use crate::error::{QatError, Result};
use crate::quantizer::to_host;

/// Modes whose amplitude is below this fraction of their head's largest are scaled as if they
/// were at it: a mode the data barely excites has no range worth evening out, and dividing its
/// `B` by more than 1000 would only blow up `Bbar`'s range.
const MIN_RELATIVE_AMPLITUDE: f32 = 1e-3;

/// What balancing did to one block, for logs and run records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockBalance {
    /// Largest ratio, over heads, of a head's largest mode amplitude to its smallest, before.
    pub spread_before: f32,
    /// The same ratio after balancing (`spread_before^(1 - alpha)` when every mode is excited).
    pub spread_after: f32,
    /// The per-mode factors `r`, `[H * M]` row-major: the state is divided by them.
    pub factors: Vec<f32>,
}

/// Largest `max(|Re x|, |Im x|)` of every mode's state over `batches` and time, per block,
/// `[H * M]` row-major: the range a per-head state quantizer must cover, mode by mode.
pub fn mode_amplitudes<I>(model: &S4dClassifier, batches: I) -> Result<Vec<Vec<f32>>>
where
    I: IntoIterator<Item = Tensor<3>>,
{
    let mut amps: Vec<Option<Tensor<2>>> = vec![None; model.blocks.len()];
    let mut seen = 0usize;
    for x in batches {
        seen += 1;
        let mut h = model.encoder.forward(x);
        for (block, amp) in model.blocks.iter().zip(amps.iter_mut()) {
            let disc = block.s4d.discretize();
            let u = h.clone().swap_dims(1, 2); // [B, H, L]
            let mut running: Option<Tensor<2>> = amp.take();
            diagonal_scan_with(&disc.a_bar, &disc.b_bar, &disc.c, &disc.d, u, |x| {
                let parts = x.re.clone().abs().max_pair(x.im.clone().abs()); // [B, H, M]
                let step = parts.max_dim(0).squeeze_dim::<2>(0); // [H, M]
                running = Some(match running.take() {
                    Some(r) => r.max_pair(step),
                    None => step,
                });
                x
            });
            *amp = running;
            h = block.forward(h, SsmMode::Convolution);
        }
    }
    if seen == 0 {
        return Err(QatError::NoCalibrationData);
    }
    amps.into_iter()
        .map(|a| {
            let a = a.ok_or(QatError::NoCalibrationData)?; // zero-length sequences
            to_host(a)
        })
        .collect()
}

/// The per-mode factors `r = (amp / amp_max)^alpha` of one block (`amp`: `[H * M]`).
pub fn balance_factors(amp: &[f32], modes: usize, alpha: f32) -> Result<BlockBalance> {
    if !(0.0..=1.0).contains(&alpha) {
        return Err(QatError::InvalidConfig {
            component: "state balance".into(),
            message: format!("alpha must be in [0, 1], got {alpha}"),
        });
    }
    if modes == 0 || !amp.len().is_multiple_of(modes) {
        return Err(QatError::StateMismatch(format!(
            "{} amplitudes do not split into heads of {modes} modes",
            amp.len()
        )));
    }
    if let Some(bad) = amp.iter().find(|a| !a.is_finite() || **a < 0.0) {
        return Err(QatError::InvalidConfig {
            component: "state balance".into(),
            message: format!("state amplitude {bad} is not a finite non-negative number"),
        });
    }
    let (mut spread_before, mut spread_after) = (1.0f32, 1.0f32);
    let mut factors = Vec::with_capacity(amp.len());
    for head in amp.chunks(modes) {
        let top = head.iter().fold(0.0f32, |m, &a| m.max(a));
        if top == 0.0 {
            factors.extend(std::iter::repeat_n(1.0, modes));
            continue;
        }
        let floor = top * MIN_RELATIVE_AMPLITUDE;
        let low = head.iter().fold(top, |m, &a| m.min(a.max(floor)));
        spread_before = spread_before.max(top / low);
        let mut low_after = top;
        for &a in head {
            let r = (a.max(floor) / top).powf(alpha);
            low_after = low_after.min(a.max(floor) / r);
            factors.push(r);
        }
        spread_after = spread_after.max(top / low_after);
    }
    Ok(BlockBalance {
        spread_before,
        spread_after,
        factors,
    })
}

/// `x' = x / r` in one layer: `B / r`, `C r` (same outputs, rescaled state).
fn rescale_layer(s4d: S4d, factors: &[f32]) -> S4d {
    let [heads, modes] = s4d.b_re.dims();
    let device = s4d.b_re.device();
    let r = Tensor::<1>::from_floats(factors, &device).reshape([heads, modes]);
    // Detached after the product too: a parameter must be a leaf of the autodiff graph.
    let scaled =
        |p: Param<Tensor<2>>, f: Tensor<2>| Param::from_tensor((p.val().detach() * f).detach());
    let inv = r.clone().recip();
    S4d {
        b_re: scaled(s4d.b_re, inv.clone()),
        b_im: scaled(s4d.b_im, inv),
        c_re: scaled(s4d.c_re, r.clone()),
        c_im: scaled(s4d.c_im, r),
        ..s4d
    }
}

/// Balances the state of every block of `model` with strength `alpha`, given the per-mode
/// amplitudes its states reach on calibration data ([`mode_amplitudes`], measured on an
/// inference copy so no autodiff graph is recorded). Returns the rescaled model, which
/// computes the same function, and what changed per block.
pub fn balance_state(
    model: S4dClassifier,
    amplitudes: &[Vec<f32>],
    alpha: f32,
) -> Result<(S4dClassifier, Vec<BlockBalance>)> {
    if amplitudes.len() != model.blocks.len() {
        return Err(QatError::StateMismatch(format!(
            "amplitudes for {} blocks, model has {}",
            amplitudes.len(),
            model.blocks.len()
        )));
    }
    let mut report = Vec::with_capacity(amplitudes.len());
    let mut model = model;
    let blocks = std::mem::take(&mut model.blocks);
    for (mut block, amp) in blocks.into_iter().zip(amplitudes) {
        let balance = balance_factors(amp, block.s4d.modes(), alpha)?;
        if balance.factors.len() != block.s4d.heads() * block.s4d.modes() {
            return Err(QatError::StateMismatch(format!(
                "{} amplitudes for a layer of {} heads x {} modes",
                balance.factors.len(),
                block.s4d.heads(),
                block.s4d.modes()
            )));
        }
        block.s4d = rescale_layer(block.s4d, &balance.factors);
        model.blocks.push(block);
        report.push(balance);
    }
    Ok((model, report))
}
