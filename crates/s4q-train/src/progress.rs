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
