//! Fetches the UCR/UEA sets of [`datasets::UCR_SETS`] from the pinned `aeon`
//! wheel on PyPI and prints each set's measured shape (the table in the
//! crate README comes from this output).
//!
//! Usage: `cargo run --release -p datasets --example fetch_ucr [ROOT [NAME...]]`
//! (`ROOT` defaults to the workspace's `data/`; no names = all sets).

use std::path::PathBuf;

fn main() -> Result<(), datasets::DatasetError> {
    let mut args = std::env::args().skip(1);
    let root = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data"));
    let names: Vec<String> = args.collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let dirs = datasets::fetch_ucr(&root, &names)?;
    println!("| set | train | test | channels | lengths train | lengths test | classes |");
    println!("|---|---|---|---|---|---|---|");
    for dir in dirs {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let s = datasets::load_ucr(&root, &name)?;
        let range = |d: &datasets::SequenceDataset| {
            let lo = d.lengths.iter().min().copied().unwrap_or(0);
            let hi = d.lengths.iter().max().copied().unwrap_or(0);
            if lo == hi {
                format!("{hi}")
            } else {
                format!("{lo}..{hi}")
            }
        };
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} ({}) |",
            s.train.len(),
            s.test.len(),
            s.train.d_input,
            range(&s.train),
            range(&s.test),
            s.train.n_classes,
            s.train.class_names.join(" ")
        );
    }
    Ok(())
}
