//! Runs [`datasets::fetch`] for every dataset without the `experiments`
//! binary, e.g. while that crate is being built.
//!
//! Usage: `cargo run --release -p datasets --example fetch [ROOT]`
//! (`ROOT` defaults to the workspace's `data/`).

use std::path::PathBuf;

fn main() -> Result<(), datasets::DatasetError> {
    let root = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data"));
    let report = datasets::fetch(&root, &[])?;
    print!("{report}");
    Ok(())
}
