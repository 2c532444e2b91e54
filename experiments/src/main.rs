//! `experiments`: the s4q command line. Fetches data, trains float S4D models, evaluates them,
//! and benchmarks the backends; quantization commands come from the `qat` crate.

mod args;
mod autobits;
// The loops live in the `s4q-train` library; the CLI reaches them under their old paths.
use s4q_train::{checkpoint, data, eval, metrics, train};
mod bench;
mod cli;
mod deploy;
mod device;
mod export;
mod interop;
mod predict;
mod quant;
mod reproduce;

use std::io::IsTerminal;

/// burn allocates and frees tensors of many megabytes per op; the system allocator maps and
/// zero-fills fresh pages for each (12% of a QAT step in `perf`), mimalloc reuses them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `purge_delay` option (`mi_option_t` 15 in mimalloc 2.x's `mimalloc.h`).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps freed pages mapped: by default mimalloc returns them to the OS after 10 ms, and the
/// next tensor of the same size page-faults them back in, zero-filled (55k faults and a third
/// of a QAT step's time in `perf`). Training reuses the same sizes every step, so the
/// resident set stays bounded by the peak of one step.
fn keep_freed_pages() {
    // SAFETY: sets a plain integer option; called before any other thread exists.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

use anyhow::Result;
use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> Result<()> {
    keep_freed_pages();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
    let cli = cli::Cli::parse();
    cli::run(cli)
}
