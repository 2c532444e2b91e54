//! Progress bars that stay out of the way when output is not a terminal (CI logs).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar of `len` steps labelled `label`; hidden when stderr is not a TTY.
pub fn progress_bar(len: u64, label: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {elapsed}<{eta} {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(label.to_string());
    bar
}

/// Whether to also log progress lines: when stderr is not a terminal the bar is invisible,
/// and a long epoch would otherwise be silent in a log file. True every tenth of `len`.
pub fn log_tick(step: usize, len: usize) -> bool {
    !std::io::stderr().is_terminal() && len >= 10 && (step + 1).is_multiple_of(len / 10)
}

/// The bookkeeping every training epoch shares (float and QAT alike): the progress bar, a log
/// line every tenth of the epoch when there is no terminal, the divergence check and the
/// running loss and accuracy.
pub struct EpochProgress {
    bar: ProgressBar,
    epoch: usize,
    steps: usize,
    loss_sum: f64,
    correct: usize,
    seen: usize,
}

impl EpochProgress {
    /// Starts epoch `epoch` (0-based) of `epochs`, `steps` optimizer steps long.
    pub fn new(label: &str, epoch: usize, epochs: usize, steps: usize) -> Self {
        Self {
            bar: progress_bar(steps as u64, &format!("{label} {}/{epochs}", epoch + 1)),
            epoch,
            steps,
            loss_sum: 0.0,
            correct: 0,
            seen: 0,
        }
    }

    /// Records step `step` (0-based in the epoch; `global_step` counts from the run's start):
    /// its mean loss over `n` sequences, of which `correct` were classified right. A loss that
    /// is not finite ends the run with an error naming the step.
    pub fn record(
        &mut self,
        step: usize,
        global_step: usize,
        loss: f64,
        n: usize,
        correct: usize,
    ) -> anyhow::Result<()> {
        if !loss.is_finite() {
            anyhow::bail!("training diverged at step {global_step} (loss {loss})");
        }
        self.loss_sum += loss * n as f64;
        self.correct += correct;
        self.seen += n;
        self.bar.inc(1);
        let (mean, acc) = (self.train_loss(), self.train_acc());
        if log_tick(step, self.steps) {
            tracing::info!(
                epoch = self.epoch + 1,
                step = step + 1,
                of = self.steps,
                train_loss = format!("{mean:.4}"),
                "progress"
            );
        }
        self.bar
            .set_message(format!("loss {mean:.4} acc {acc:.2}%"));
        Ok(())
    }

    /// Mean loss per sequence so far.
    pub fn train_loss(&self) -> f64 {
        self.loss_sum / self.seen.max(1) as f64
    }

    /// Training accuracy (%) so far.
    pub fn train_acc(&self) -> f64 {
        100.0 * self.correct as f64 / self.seen.max(1) as f64
    }

    /// Clears the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
