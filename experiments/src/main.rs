//! `experiments`: the s4q command line. Fetches data, trains float S4D models, evaluates them,
//! and benchmarks the backends; quantization commands come from the `qat` crate.

mod bench;
mod checkpoint;
mod cli;
mod data;
mod device;
mod eval;
mod metrics;
mod progress;
mod quant;
mod train;

use std::io::IsTerminal;

use anyhow::Result;
use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> Result<()> {
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
