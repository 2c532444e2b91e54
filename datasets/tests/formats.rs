//! The user-file loaders against the hand-written fixtures in
//! `tests/fixtures/` (`.ts` and CSV written by hand, `.npy`/`.npz` made by
//! `tests/fixtures/npy/make_fixtures.py` with NumPy and committed).
//!
//! Every bad-input test checks that the message names the file and the line
//! (text formats) or the field/element (binary formats).

use std::path::{Path, PathBuf};

use datasets::npy::{NpyData, read_npy, read_npz};
use datasets::ts::read_ts;
use datasets::{
    DataFileSpec, DatasetError, FileFormat, FileOptions, SequenceDataset, Standardizer, load_file,
    load_file_pair, load_for_prediction, load_ts,
};

fn fx(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// The error message of `r`, asserting it names `file` and contains every needle.
fn err_msg<T: std::fmt::Debug>(r: Result<T, DatasetError>, file: &str, needles: &[&str]) -> String {
    let msg = r.expect_err("expected an error").to_string();
    assert!(msg.contains(file), "message does not name {file}: {msg}");
    for n in needles {
        assert!(msg.contains(n), "message lacks `{n}`: {msg}");
    }
    msg
}

fn opts() -> FileOptions {
    FileOptions::default()
}

// ---------------------------------------------------------------- .ts

#[test]
fn ts_multivariate_unequal_pair() {
    let s = load_file_pair(&fx("ts/Toy_TRAIN.ts"), &fx("ts/Toy_TEST.ts"), &opts()).unwrap();
    let (tr, te) = (&s.train, &s.test);
    assert_eq!(tr.name, "Toy/train");
    assert_eq!(te.name, "Toy/test");
    assert_eq!(
        (tr.len(), tr.seq_len, tr.d_input, tr.n_classes),
        (4, 4, 2, 3)
    );
    assert_eq!(tr.lengths, [3, 2, 4, 1]);
    assert!(!tr.is_equal_length());
    assert_eq!(tr.class_names, ["walk", "run", "jump"]);
    assert_eq!(te.class_names, tr.class_names);
    assert_eq!(tr.labels, [0, 1, 0, 1]);
    // Time-major, channels interleaved, zero padded to 4 steps.
    assert_eq!(tr.sample(0).0, &[0.5, 10., 1.5, 20., 2.5, 30., 0., 0.]);
    assert_eq!(tr.sample(3).0, &[7., 8., 0., 0., 0., 0., 0., 0.]);
    // Test: its own @classLabel order (jump walk run) is mapped by name.
    assert_eq!(te.labels, [2, 0]);
    assert_eq!((te.seq_len, te.lengths.clone()), (5, vec![5, 1]));
    assert_eq!(te.sample(1).0[..2], [9., 9.]);
}

#[test]
fn ts_univariate_equal_uses_declared_order() {
    let ds = load_ts(&fx("ts/Uni_TRAIN.ts")).unwrap();
    assert_eq!(ds.class_names, ["2", "1"]);
    assert_eq!(ds.labels, [1, 0, 1]);
    assert!(ds.is_equal_length());
    assert_eq!((ds.seq_len, ds.d_input), (4, 1));
    let f = read_ts(&fx("ts/Uni_TRAIN.ts")).unwrap();
    assert_eq!(f.problem_name.as_deref(), Some("Uni"));
    assert_eq!(f.lines, [10, 11, 12]);
    let s = load_file_pair(&fx("ts/Uni_TRAIN.ts"), &fx("ts/Uni_TEST.ts"), &opts()).unwrap();
    // Train's order rules: test label "2" is class 0, "1" is class 1.
    assert_eq!(s.test.labels, [0, 1]);
    assert_eq!(s.test.n_classes, 2);
}

#[test]
fn ts_bad_inputs_name_file_and_line() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "bad_label.ts",
            "bad_label.ts:6:",
            &["label \"3\" is not in @classLabel (1, 2)"],
        ),
        (
            "missing_q.ts",
            "missing_q.ts:6:",
            &["missing values are not supported; impute them first"],
        ),
        (
            "missing_nan.ts",
            "missing_nan.ts:5:",
            &["missing values are not supported"],
        ),
        ("inf_value.ts", "inf_value.ts:6:", &["not finite"]),
        (
            "not_number.ts",
            "not_number.ts:6:",
            &["bad value `x3`", "channel 0, value 2"],
        ),
        (
            "timestamped.ts",
            "timestamped.ts:4:",
            &["timestamped .ts data is not supported"],
        ),
        (
            "timestamps_header.ts",
            "timestamps_header.ts:2:",
            &["timestamped .ts data is not supported"],
        ),
        (
            "regression.ts",
            "regression.ts:3:",
            &["no class labels: only classification files are supported"],
        ),
        (
            "classlabel_false.ts",
            "classlabel_false.ts:2:",
            &["no class labels"],
        ),
        ("no_data.ts", "no_data.ts:3:", &["before the data"]),
        ("no_data_line.ts", "no_data_line.ts", &["no @data line"]),
        ("empty.ts", "empty.ts", &["no sequences"]),
        (
            "channel_count.ts",
            "channel_count.ts:7:",
            &["1 channels, expected 2"],
        ),
        (
            "channel_count_undeclared.ts",
            "channel_count_undeclared.ts:5:",
            &["3 channels, expected 2"],
        ),
        (
            "ragged_channels.ts",
            "ragged_channels.ts:5:",
            &["same length", "channel 1 has 2"],
        ),
        (
            "ragged_equal.ts",
            "ragged_equal.ts:8:",
            &["@equalLength is true"],
        ),
        (
            "series_length.ts",
            "series_length.ts:7:",
            &["@seriesLength 3"],
        ),
    ];
    for (file, located, needles) in cases {
        err_msg(load_ts(&fx(&format!("ts/{file}"))), located, needles);
    }
    err_msg(load_ts(&fx("ts/nope.ts")), "nope.ts", &["not found"]);
}

#[test]
fn ts_pair_errors_name_the_test_file() {
    err_msg(
        load_file_pair(&fx("ts/Uni_TRAIN.ts"), &fx("ts/unseen_TEST.ts"), &opts()),
        "unseen_TEST.ts:6:",
        &[
            "label \"3\" does not occur in the training file",
            "Uni_TRAIN.ts",
            "(classes: 2, 1)",
        ],
    );
    err_msg(
        load_file_pair(
            &fx("ts/Toy_TRAIN.ts"),
            &fx("ts/one_channel_test.ts"),
            &opts(),
        ),
        "one_channel_test.ts",
        &["1 channels per step", "Toy_TRAIN.ts has 2"],
    );
    err_msg(
        load_file_pair(&fx("ts/Toy_TRAIN.ts"), &fx("ts/empty.ts"), &opts()),
        "empty.ts",
        &["no sequences"],
    );
}

// ---------------------------------------------------------------- .npy / .npz

#[test]
fn npy_pair_with_sibling_labels_sorts_numeric_labels() {
    let s = load_file_pair(
        &fx("npy/uni_X_train.npy"),
        &fx("npy/uni_X_test.npy"),
        &opts(),
    )
    .unwrap();
    let (tr, te) = (&s.train, &s.test);
    assert_eq!(tr.name, "uni/train");
    assert_eq!((tr.len(), tr.seq_len, tr.d_input), (4, 5, 1));
    assert_eq!(tr.class_names, ["1", "2"]);
    assert_eq!(tr.labels, [0, 1, 0, 1]);
    assert_eq!(tr.sample(3).0, &[9., 8., 7., 6., 5.]);
    // Test is longer (6) and its uint8 labels map through the train classes.
    assert_eq!((te.seq_len, te.labels.clone()), (6, vec![1, 0]));
    assert_eq!(te.class_names, tr.class_names);
    err_msg(
        load_file_pair(
            &fx("npy/uni_X_train.npy"),
            &fx("npy/unseen_X_test.npy"),
            &opts(),
        ),
        "unseen_y_test.npy: field y[1]",
        &["label \"3\" does not occur in the training file"],
    );
}

#[test]
fn npz_stored_and_deflated_with_lengths_and_string_labels() {
    let s = load_file_pair(
        &fx("npy/multi_train.npz"),
        &fx("npy/multi_test.npz"),
        &opts(),
    )
    .unwrap();
    let (tr, te) = (&s.train, &s.test);
    assert_eq!((tr.len(), tr.seq_len, tr.d_input), (4, 3, 2));
    assert_eq!(tr.lengths, [3, 2, 1, 3]);
    // Lexicographic order of the train strings.
    assert_eq!(tr.class_names, ["jump", "run", "walk"]);
    assert_eq!(tr.labels, [2, 1, 2, 0]);
    // The NaN at step 2 of sequence 1 lies beyond its length: ignored, zeroed.
    assert_eq!(tr.sample(1).0, &[6., 7., 8., 9., 0., 0.]);
    assert_eq!(tr.sample(2).0, &[12., 13., 0., 0., 0., 0.]);
    assert_eq!(
        (te.len(), te.seq_len, te.labels.clone()),
        (2, 4, vec![1, 0])
    );
    assert!(te.inputs.iter().all(|&v| v == 1.0));
    let members: Vec<String> = read_npz(&fx("npy/multi_test.npz"))
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(members, ["x", "y"]);
}

#[test]
fn npy_fortran_order_and_header_versions() {
    let f = read_npy(&fx("npy/fortran_X.npy"), "X").unwrap();
    assert_eq!(f.shape, [2, 3]);
    assert_eq!(f.data, NpyData::F32(vec![0., 1., 2., 3., 4., 5.]));
    for v in ["v2", "v3"] {
        let a = read_npy(&fx(&format!("npy/{v}_X.npy")), "X").unwrap();
        assert_eq!(a, f, "{v}");
    }
    let ds = load_file(&fx("npy/fortran_X.npy"), &opts()).unwrap();
    assert_eq!(ds.sample(1).0, &[3., 4., 5.]);
    // Float labels holding whole numbers; uint16 labels 5, 7 -> classes 0, 1.
    let ds = load_file(&fx("npy/v2_X.npy"), &opts()).unwrap();
    assert_eq!(
        (ds.labels.clone(), ds.class_names.clone()),
        (vec![0, 1], vec!["0".into(), "1".into()])
    );
    let ds = load_file(&fx("npy/v3_X.npy"), &opts()).unwrap();
    assert_eq!(ds.class_names, ["5", "7"]);
}

#[test]
fn npy_bad_inputs_name_file_and_field() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "bigendian_X.npy",
            "bigendian_X.npy: field X (dtype)",
            &["big-endian"],
        ),
        (
            "half_X.npy",
            "half_X.npy: field X (dtype)",
            &["float16", "not supported"],
        ),
        (
            "nan_X.npy",
            "nan_X.npy: field X[1, 1, 0]",
            &["NaN", "sequence 1, step 1, channel 0", "impute"],
        ),
        ("neg_X.npy", "neg_y.npy: field y[2]", &["negative label -1"]),
        (
            "frac_X.npy",
            "frac_y.npy: field y[1]",
            &["1.5 is not a whole number"],
        ),
        (
            "count_X.npy",
            "count_y.npy: field y",
            &["y has shape [2] but X has 3 sequences"],
        ),
        (
            "object_X.npy",
            "object_y.npy: field y (dtype)",
            &["object arrays", "not supported"],
        ),
        (
            "int_X.npy",
            "int_X.npy: field X",
            &["float32 or float64", "found integer"],
        ),
        (
            "rank4_X.npy",
            "rank4_X.npy: field X",
            &["[n, L] or [n, L, d]"],
        ),
        (
            "truncated_X.npy",
            "truncated_X.npy: field X (data)",
            &["expected 80 bytes of data", "found 74"],
        ),
        (
            "badmagic_X.npy",
            "badmagic_X.npy: field X (magic)",
            &["bad magic"],
        ),
        (
            "nolabels_X.npy",
            "nolabels_y.npy",
            &["not found", "nolabels_X.npy", ".npz", "train_labels"],
        ),
        (
            "features.npy",
            "features.npy",
            &["no `X`", ".npz", "train_labels"],
        ),
        (
            "noy.npz",
            "noy.npz: field y",
            &["no array `y`", "[X, labels]"],
        ),
        (
            "badlengths.npz",
            "badlengths.npz: field lengths[1]",
            &["length 4 is outside 1..=3"],
        ),
        (
            "nan.npz",
            "nan.npz: field X[1, 1, 0]",
            &["inf is not finite"],
        ),
    ];
    for (file, located, needles) in cases {
        err_msg(
            load_file(&fx(&format!("npy/{file}")), &opts()),
            located,
            needles,
        );
    }
}

#[test]
fn explicit_labels_paths_and_format_override() {
    let o = FileOptions {
        format: Some(FileFormat::Npy),
        train_labels: Some(fx("npy/uni_y_train.npy")),
        test_labels: Some(fx("npy/uni_y_test.npy")),
        ..FileOptions::default()
    };
    let s = load_file_pair(&fx("npy/features.npy"), &fx("npy/fortran_X.npy"), &o).unwrap_err();
    // features.npy has 2 sequences, uni_y_train.npy 4 labels.
    assert!(s.to_string().contains("uni_y_train.npy: field y"), "{s}");
    let s = load_file_pair(&fx("npy/uni_X_train.npy"), &fx("npy/fortran_X.npy"), &o).unwrap();
    assert_eq!(s.test.labels, [1, 0]);
    let wrong_d = FileOptions {
        d_input: Some(3),
        ..FileOptions::default()
    };
    err_msg(
        load_file(&fx("npy/uni_X_train.npy"), &wrong_d),
        "uni_X_train.npy",
        &["1 channels but d_input = 3"],
    );
    err_msg(
        FileFormat::from_path(Path::new("/d/data.parquet")),
        "data.parquet",
        &[".ts, .npy, .npz, .csv"],
    );
    assert_eq!(
        FileFormat::from_path(Path::new("A.NPZ")).unwrap(),
        FileFormat::Npz
    );
    assert_eq!(serde_json::to_string(&FileFormat::Ts).unwrap(), "\"ts\"");
}

// ---------------------------------------------------------------- CSV

#[test]
fn csv_pair_maps_sorted_labels_and_reports_lines() {
    let o = FileOptions {
        d_input: Some(2),
        ..FileOptions::default()
    };
    let s = load_file_pair(&fx("csv/train.csv"), &fx("csv/test.csv"), &o).unwrap();
    assert_eq!(s.train.class_names, ["5", "7"]);
    assert_eq!(s.train.labels, [0, 1, 0]);
    assert_eq!((s.train.seq_len, s.test.seq_len), (2, 3));
    assert_eq!(s.test.labels, [1, 0]);
    assert_eq!(s.train.name, "csv/train");
    let o1 = FileOptions {
        d_input: Some(2),
        ..FileOptions::default()
    };
    err_msg(
        load_file_pair(&fx("csv/train.csv"), &fx("csv/unseen.csv"), &o1),
        "unseen.csv:3:",
        &["label \"6\""],
    );
}

// ---------------------------------------------------------------- TOML spec

#[test]
fn spec_toml_resolves_relative_paths() {
    let spec = DataFileSpec::from_toml_file(&fx("spec/toy.toml")).unwrap();
    assert_eq!(spec.train, fx("spec/../ts/Toy_TRAIN.ts"));
    let s = spec.load().unwrap();
    assert_eq!(
        (s.train.name.as_str(), s.test.name.as_str()),
        ("toy/train", "toy/test")
    );
    assert_eq!(s.train.n_classes, 3);

    let spec = DataFileSpec::from_toml_file(&fx("spec/npy.toml")).unwrap();
    assert_eq!(spec.options().format, Some(FileFormat::Npy));
    let s = spec.load().unwrap();
    assert_eq!(s.train.name, "uni/train");
    assert_eq!(s.test.labels, [1, 0]);

    let s = DataFileSpec::from_toml_file(&fx("spec/csv.toml"))
        .unwrap()
        .load()
        .unwrap();
    assert_eq!(s.train.d_input, 2);

    err_msg(
        DataFileSpec::from_toml_file(&fx("spec/typo.toml")),
        "typo.toml:3:",
        &["unknown field `labels`"],
    );
    err_msg(
        DataFileSpec::from_toml_file(&fx("spec/missing.toml")),
        "missing.toml",
        &["not found"],
    );
    let bad = DataFileSpec::from_toml_str(
        "train = 3\ntest = \"b\"\n",
        Path::new("/d"),
        Path::new("x.toml"),
    );
    err_msg(bad, "x.toml:1:", &[]);
    let spec = DataFileSpec::from_toml_str(
        "train = \"/abs/a.ts\"\ntest = \"b.ts\"\n",
        Path::new("/d"),
        Path::new("x.toml"),
    )
    .unwrap();
    assert_eq!(
        (spec.train.as_path(), spec.test.as_path()),
        (Path::new("/abs/a.ts"), Path::new("/d/b.ts"))
    );
}

// ---------------------------------------------------------------- dataset ops

fn toy() -> SequenceDataset {
    load_file_pair(&fx("ts/Toy_TRAIN.ts"), &fx("ts/Toy_TEST.ts"), &opts())
        .unwrap()
        .train
}

#[test]
fn batch_padded_cuts_to_the_batch_longest() {
    let ds = toy();
    let b = ds.batch_padded(&[1, 3]);
    assert_eq!(
        (b.seq_len, b.lengths.clone(), b.labels.clone()),
        (2, vec![2, 1], vec![1, 1])
    );
    assert_eq!(b.inputs, [1., 3., 2., 4., 7., 8., 0., 0.]);
    let b = ds.batch_padded(&[3, 2]);
    assert_eq!(b.seq_len, 4);
    assert_eq!(b.inputs.len(), 2 * 4 * 2);
    assert_eq!(&b.inputs[2..8], &[0.; 6]);
    let empty = ds.batch_padded(&[]);
    assert_eq!((empty.seq_len, empty.inputs.len()), (0, 0));
    // The old batch still pads to the dataset's seq_len.
    assert_eq!(ds.batch(&[1, 3]).0.len(), 2 * 4 * 2);
}

#[test]
fn standardizer_fits_real_steps_only_and_round_trips() {
    let mut ds = toy();
    let s = Standardizer::fit(&ds);
    // Channel 0 real values: 0.5 1.5 2.5 1 2 -1 -2 -3 -4 7 (10 values).
    let ch0 = [0.5f64, 1.5, 2.5, 1., 2., -1., -2., -3., -4., 7.];
    let mean = ch0.iter().sum::<f64>() / 10.0;
    let std = (ch0.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 10.0).sqrt();
    assert!((f64::from(s.mean[0]) - mean).abs() < 1e-6, "{s:?}");
    assert!((f64::from(s.std[0]) - std).abs() < 1e-6, "{s:?}");
    let json = serde_json::to_string(&s).unwrap();
    assert_eq!(serde_json::from_str::<Standardizer>(&json).unwrap(), s);
    s.apply(&mut ds).unwrap();
    // Padding of sequence 3 (length 1) stays exactly zero.
    assert!(ds.sample(3).0[2..].iter().all(|&v| v == 0.0));
    let refit = Standardizer::fit(&ds);
    assert!(refit.mean.iter().all(|m| m.abs() < 1e-5), "{refit:?}");
    assert!(
        refit.std.iter().all(|d| (d - 1.0).abs() < 1e-5),
        "{refit:?}"
    );
}

#[test]
fn stratified_split_keeps_proportions_and_is_deterministic() {
    // 60 of class 0, 30 of class 1, 10 of class 2, in interleaved order.
    let labels: Vec<u32> = (0..100)
        .map(|i| match i % 10 {
            0 => 2,
            1..=3 => 1,
            _ => 0,
        })
        .collect();
    let inputs: Vec<f32> = (0..100).map(|i| i as f32).collect();
    let ds = SequenceDataset::new("s", inputs, labels, 1, 1, 3)
        .unwrap()
        .with_class_names(vec!["a".into(), "b".into(), "c".into()])
        .unwrap();
    let (tr, va) = ds.stratified_split(0.2, 7).unwrap();
    assert_eq!(va.class_counts(), [12, 6, 2]);
    assert_eq!(tr.class_counts(), [48, 24, 8]);
    assert_eq!(va.class_names, ds.class_names);
    // Disjoint, covering, each part in dataset order.
    let mut all: Vec<f32> = tr.inputs.iter().chain(&va.inputs).copied().collect();
    assert!(tr.inputs.windows(2).all(|w| w[0] < w[1]));
    assert!(va.inputs.windows(2).all(|w| w[0] < w[1]));
    all.sort_by(f32::total_cmp);
    assert_eq!(all, (0..100).map(|i| i as f32).collect::<Vec<_>>());
    // Deterministic for a seed, different for another.
    assert_eq!(
        ds.stratified_split(0.2, 7).unwrap(),
        (tr.clone(), va.clone())
    );
    assert_ne!(ds.stratified_split(0.2, 8).unwrap().1.inputs, va.inputs);
    // A 2-member class always lands in both parts, even at a small fraction.
    let small = SequenceDataset::new("t", vec![0.; 5], vec![0, 0, 0, 1, 1], 1, 1, 2).unwrap();
    let (tr, va) = small.stratified_split(0.1, 1).unwrap();
    assert_eq!(
        (tr.class_counts(), va.class_counts()),
        (vec![2, 1], vec![1, 1])
    );
    for f in [0.0, 1.0, -0.5, f64::NAN] {
        assert!(ds.stratified_split(f, 1).is_err(), "{f}");
    }
    let single = SequenceDataset::new("u", vec![0.; 2], vec![0, 1], 1, 1, 2).unwrap();
    let msg = single.stratified_split(0.5, 1).unwrap_err().to_string();
    assert!(msg.contains("both must be non-empty"), "{msg}");
}

#[test]
fn lengths_and_class_names_follow_take_select_permuted() {
    let ds = toy();
    assert_eq!(ds.take(2).lengths, [3, 2]);
    let sel = ds.select(&[3, 0, 3]);
    assert_eq!(sel.lengths, [1, 3, 1]);
    assert_eq!(sel.class_names, ds.class_names);
    assert_eq!(ds.subset(1).class_names, ds.class_names);
    let p = ds.permuted(3);
    assert!(p.is_equal_length());
    let plain = SequenceDataset::new("n", vec![0.; 4], vec![0, 1], 2, 1, 2).unwrap();
    assert_eq!(plain.lengths, [2, 2]);
    assert_eq!(plain.class_names, ["0", "1"]);
    assert!(plain.clone().with_lengths(vec![1]).is_err());
    assert!(plain.clone().with_lengths(vec![0, 2]).is_err());
    assert!(plain.clone().with_lengths(vec![3, 2]).is_err());
    assert!(plain.clone().with_class_names(vec!["x".into()]).is_err());
    assert!(
        plain
            .clone()
            .with_class_names(vec!["x".into(), "x".into()])
            .is_err()
    );
    assert!(
        plain
            .clone()
            .with_class_names(vec!["x".into(), " ".into()])
            .is_err()
    );
    let l = plain.with_lengths(vec![1, 2]).unwrap();
    assert_eq!(l.lengths, [1, 2]);
}

// ---------------------------------------------------------------- prediction inputs

#[test]
fn prediction_inputs_may_lack_labels() {
    // .ts with @classLabel false: channels only, lengths kept, one placeholder class.
    let (data, labelled) = load_for_prediction(&fx("ts/unlabelled.ts"), &opts()).unwrap();
    assert!(!labelled);
    assert_eq!((data.len(), data.d_input, data.seq_len), (2, 2, 3));
    assert_eq!(data.lengths, [3, 1]);
    assert_eq!(data.sample(0).0, [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    assert_eq!(data.sample(1).0[..2], [7.0, 8.0]);
    // .npy without a labels sibling.
    let (data, labelled) = load_for_prediction(&fx("npy/nolabels_X.npy"), &opts()).unwrap();
    assert!(!labelled && !data.is_empty());
    // A labelled file stays labelled, with its own class names.
    let (data, labelled) = load_for_prediction(&fx("ts/Toy_TRAIN.ts"), &opts()).unwrap();
    assert!(labelled);
    assert_eq!(data.class_names, ["walk", "run", "jump"]);
    // Training still refuses unlabelled files, naming file and line.
    err_msg(
        load_file(&fx("ts/unlabelled.ts"), &opts()),
        "unlabelled.ts",
        &[":6:", "@classLabel false"],
    );
}
