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

/// The UCR/UEA sets from `datasets::fetch_ucr` (pip download of the pinned
/// aeon wheel; `cargo run -p datasets --example fetch_ucr`). Shapes are the
/// published ones; value sums, first values and class counts were computed
/// by an independent Python parse of the same files.
#[test]
#[ignore = "needs `cargo run -p datasets --example fetch_ucr` (PyPI)"]
fn ucr_sets_have_published_shapes() {
    use datasets::{UCR_SETS, load_ucr};
    let root = root();
    // (name, n_train, n_test, d_input, train seq_len, test seq_len, classes, equal length)
    let expected = [
        ("ACSF1", 100, 100, 1, 1460, 1460, 10, true),
        ("ArrowHead", 36, 175, 1, 251, 251, 3, true),
        ("BasicMotions", 40, 40, 6, 100, 100, 4, true),
        ("GunPoint", 50, 150, 1, 150, 150, 2, true),
        ("ItalyPowerDemand", 67, 1029, 1, 24, 24, 2, true),
        ("JapaneseVowels", 270, 370, 12, 26, 29, 9, false),
        ("OSULeaf", 200, 242, 1, 427, 427, 6, true),
        ("PickupGestureWiimoteZ", 50, 50, 1, 361, 324, 10, false),
    ];
    assert_eq!(UCR_SETS.len(), expected.len());
    for (name, ntr, nte, d, ltr, lte, k, equal) in expected {
        let s = load_ucr(&root, name).unwrap();
        let got = (
            s.train.len(),
            s.test.len(),
            s.train.d_input,
            s.train.seq_len,
            s.test.seq_len,
            s.train.n_classes,
            s.train.is_equal_length() && s.test.is_equal_length(),
        );
        assert_eq!(got, (ntr, nte, d, ltr, lte, k, equal), "{name}");
        assert_eq!(s.train.class_names, s.test.class_names, "{name}");
    }
    let sum = |d: &datasets::SequenceDataset| d.inputs.iter().map(|&v| f64::from(v)).sum::<f64>();
    // (name, train sum, test sum, first train value, first test value)
    let checks = [
        ("GunPoint", 0.0, 0.0, -0.647_885_4, -1.125_013_3),
        ("BasicMotions", 646.184, -278.363, 0.079_106, -0.740_653),
        ("JapaneseVowels", -1057.452, -2146.513, 1.860_936, 1.635_533),
        ("PickupGestureWiimoteZ", 6394.829, 6279.212, 1.0, 0.885),
    ];
    for (name, str_, ste, ftr, fte) in checks {
        let s = load_ucr(&root, name).unwrap();
        assert!(
            (sum(&s.train) - str_).abs() < 0.01,
            "{name}: {}",
            sum(&s.train)
        );
        assert!(
            (sum(&s.test) - ste).abs() < 0.01,
            "{name}: {}",
            sum(&s.test)
        );
        assert!((s.train.inputs[0] - ftr).abs() < 1e-6, "{name}");
        assert!((s.test.inputs[0] - fte).abs() < 1e-6, "{name}");
    }
    let jv = load_ucr(&root, "JapaneseVowels").unwrap();
    assert_eq!(jv.train.class_counts(), vec![30; 9]);
    assert_eq!(jv.test.class_counts(), [31, 35, 88, 44, 29, 24, 40, 50, 29]);
    assert_eq!(*jv.train.lengths.iter().min().unwrap(), 7);
    let bm = load_ucr(&root, "BasicMotions").unwrap();
    assert_eq!(
        bm.train.class_names,
        ["Standing", "Running", "Walking", "Badminton"]
    );
    assert_eq!(bm.train.class_counts(), [10, 10, 10, 10]);
}

/// Downloads the pinned aeon wheel from PyPI into a scratch root and checks
/// one set arrives; run with `--ignored` where PyPI is reachable.
#[test]
#[ignore = "needs PyPI access (pip download)"]
fn fetch_ucr_downloads_from_pypi() {
    let dir = std::env::temp_dir().join(format!("s4q-ucr-fetch-{}", std::process::id()));
    let got = datasets::fetch_ucr(&dir, &["ItalyPowerDemand"]).unwrap();
    assert_eq!(got, [dir.join("ucr/ItalyPowerDemand")]);
    let s = datasets::load_ucr(&dir, "ItalyPowerDemand").unwrap();
    assert_eq!((s.train.len(), s.test.len()), (67, 1029));
    // Second call: present, no download.
    datasets::fetch_ucr(&dir, &["ItalyPowerDemand"]).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
