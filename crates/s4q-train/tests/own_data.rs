//! The own-data path end to end on a small `.ts` pair written here: float training with a
//! validation split, QAT fine-tuning and QAT from scratch, each saving the preprocessing that
//! the next step and prediction reuse.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use datasets::{DataFileSpec, Standardizer};
use qat::QuantSpec;
use s4q_train::predict::{Engine, Predictor, predict};
use s4q_train::{
    DataConfig, DistillConfig, QatRunConfig, RunKind, RunManifest, TrainConfig, qat, train,
};

/// Three classes of two-channel sequences (a ramp, a square wave, a constant; offsets and
/// scales far from 0 and 1 so standardisation matters), lengths 6..=17.
fn write_ts(dir: &Path, split: &str, n: usize) -> PathBuf {
    let mut text = String::from(
        "@problemName Shapes\n@univariate false\n@dimensions 2\n@equalLength false\n\
         @classLabel true ramp square flat\n@data\n",
    );
    for i in 0..n {
        let (k, len) = (i % 3, 6 + (i * 5) % 12);
        let value = |t: usize| match k {
            0 => 100.0 + 3.0 * t as f32,
            1 => 100.0 + if t % 4 < 2 { 20.0 } else { -20.0 },
            _ => 110.0,
        };
        let a: Vec<String> = (0..len).map(|t| format!("{}", value(t))).collect();
        let b: Vec<String> = (0..len).map(|t| format!("{}", -0.01 * value(t))).collect();
        let label = ["ramp", "square", "flat"][k];
        text += &format!("{}:{}:{label}\n", a.join(","), b.join(","));
    }
    let path = dir.join(format!("Shapes_{split}.ts"));
    std::fs::write(&path, text).unwrap();
    path
}

/// burn's device RNG is process-wide: two tests seeding and drawing from it at once would
/// make each other's initialisations differ, so these tests take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("s4q-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn files_to_float_to_qat_keep_their_preprocessing() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tmp("own-data");
    let (train_ts, test_ts) = (write_ts(&dir, "TRAIN", 36), write_ts(&dir, "TEST", 12));
    let mut data = DataConfig::files(DataFileSpec::pair(&train_ts, &test_ts));
    data.valid_fraction = Some(0.25);
    let mut cfg = TrainConfig::for_data("s4d-16h", data.clone()).unwrap();
    assert_eq!((cfg.model.d_input, cfg.model.n_classes), (2, 3));
    cfg.model.ssm.d_model = 4;
    cfg.model.ssm.d_state = 4;
    (cfg.epochs, cfg.batch_size) = (3, 9);
    let device = Device::flex();
    let float_dir = dir.join("float");
    let result = train(&cfg, &float_dir, &device, false).unwrap();
    assert_eq!(
        result.train_samples, 27,
        "a stratified quarter of 36 is held out"
    );
    assert!(result.valid_acc.is_some() && (1..=3).contains(&result.kept_epoch));

    // The saved preprocessing is what the training part fits: class names in @classLabel
    // order and per-channel statistics of the (unpadded) training sequences.
    let manifest = RunManifest::load(&float_dir).unwrap();
    assert_eq!(manifest.kind, RunKind::Float);
    let p = &manifest.preprocess;
    assert_eq!(p.class_names, ["ramp", "square", "flat"]);
    let raw = data.load_raw().unwrap();
    let (fit_part, _) = raw
        .train
        .stratified_split(0.25, s4q_train::data::VALID_SPLIT_SEED)
        .unwrap();
    assert_eq!(p.standardizer.as_ref(), Some(&Standardizer::fit(&fit_part)));
    let prepared = data.prepare().unwrap();
    let mean0: f64 = {
        let t = &prepared.train;
        let (mut s, mut n) = (0.0f64, 0usize);
        for i in 0..t.len() {
            for step in 0..t.lengths[i] {
                s += f64::from(t.sample(i).0[step * 2]);
                n += 1;
            }
        }
        s / n as f64
    };
    // Standardised channel 0 has mean 0 over the real steps (f32 values near 1e2 scaled to
    // O(1): the f64 mean of a few hundred of them is exact to ~1e-6).
    assert!(mean0.abs() < 1e-4, "standardised mean {mean0}");

    // QAT fine-tuning reuses the float run's preprocessing and records its parent.
    let mut qcfg = QatRunConfig::fine_tune(&float_dir, QuantSpec::preset("w8a8").unwrap());
    (qcfg.epochs, qcfg.batch_size, qcfg.calib_batches) = (1, 9, 2);
    let qat_dir = dir.join("qat");
    qat(&qcfg, "w8a8", Path::new("data"), &qat_dir, false, &device).unwrap();
    let qm = RunManifest::load(&qat_dir).unwrap();
    assert_eq!((qm.kind, &qm.preprocess), (RunKind::Qat, p));
    assert_eq!(qm.parent.as_deref(), Some(float_dir.as_path()));

    // Distilled from the float run: the loop's loss is the KL divergence to the teacher, which
    // after 8-bit calibration is far below the label loss of this barely trained model.
    let mut kd = qcfg.clone();
    kd.distill = Some(DistillConfig {
        weight: 1.0,
        temperature: 2.0,
    });
    let kd_dir = dir.join("qat-kd");
    qat(&kd, "w8a8", Path::new("data"), &kd_dir, false, &device).unwrap();
    let first_loss = |run: &Path| -> f64 {
        let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        line["train_loss"].as_f64().unwrap()
    };
    let (hard, soft) = (first_loss(&qat_dir), first_loss(&kd_dir));
    assert!(
        soft < 0.5 * hard,
        "distillation loss {soft} should be well below the label loss {hard}"
    );
    let saved: QatRunConfig =
        serde_json::from_str(&std::fs::read_to_string(kd_dir.join("qat_config.json")).unwrap())
            .unwrap();
    assert_eq!(saved.distill, kd.distill);
    // A resume with other distillation settings is refused rather than mixed.
    kd.distill = Some(DistillConfig {
        weight: 0.5,
        temperature: 2.0,
    });
    let err = qat(&kd, "w8a8", Path::new("data"), &kd_dir, true, &device).unwrap_err();
    assert!(format!("{err:#}").contains("different options"), "{err:#}");

    // Prediction with the integer model names classes and gives a distribution per sequence.
    let integer = Predictor::load(&qat_dir, Engine::Integer, &device).unwrap();
    let preds = predict(&integer, &prepared.test, &p.class_names, true, 5, &device).unwrap();
    assert_eq!(preds.len(), 12);
    for pr in &preds {
        let total: f32 = pr.probabilities.iter().sum();
        assert!((total - 1.0).abs() < 1e-5);
        assert_eq!(pr.class, p.class_names[pr.class_index]);
    }
    assert!(Predictor::load(&float_dir, Engine::Integer, &device).is_err());

    // Through export: the C header names the classes and folds the saved standardisation into
    // the input conversion, which gives the same codes as standardising and then quantizing.
    let im =
        qat::integer::IntegerModel::derive(&s4q_train::load_quantized(&qat_dir, &device).unwrap())
            .unwrap();
    let meta = s4q_train::run_dir::load_preprocess(&qat_dir)
        .unwrap()
        .export_meta();
    let c_dir = dir.join("c");
    s4q_export::write_c_model(&im, &meta, &c_dir).unwrap();
    let header = std::fs::read_to_string(c_dir.join("s4q_model.h")).unwrap();
    assert!(
        header.contains(r#"#define S4Q_CLASS_NAMES { "ramp", "square", "flat" }"#),
        "{header}"
    );
    let st = p.standardizer.as_ref().unwrap();
    let (scale, offset) = meta.input_conversion(&im);
    let mut same = 0;
    for raw in [95.0f32, 100.0, 104.5, 118.0, 131.0] {
        let via_model = im.quantize_input((raw - st.mean[0]) / st.std[0]);
        let folded = (raw / scale[0] + offset[0])
            .clamp(im.input.qmin as f32, im.input.qmax as f32)
            .round_ties_even() as i8;
        // f32 rounding of the two algebraically equal forms may differ by one code at a tie.
        assert!((i32::from(via_model) - i32::from(folded)).abs() <= 1);
        same += usize::from(via_model == folded);
    }
    assert!(
        same >= 4,
        "the folded conversion should match away from ties"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn qat_from_scratch_resumes_exactly() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tmp("scratch");
    let (train_ts, test_ts) = (write_ts(&dir, "TRAIN", 30), write_ts(&dir, "TEST", 12));
    let data = DataConfig::files(DataFileSpec::pair(&train_ts, &test_ts));
    let (d, k) = data.shape().unwrap();
    let model = s4d_model::S4dClassifierConfig::new(s4d_model::S4dConfig::new(6).with_d_state(4))
        .with_d_input(d)
        .with_n_classes(k);
    let mut cfg = QatRunConfig::from_scratch(model, data, QuantSpec::preset("w8a8").unwrap());
    (cfg.epochs, cfg.batch_size, cfg.calib_batches) = (3, 6, 2);
    cfg.scratch.as_mut().unwrap().recalibrate_every = 2;
    let device = Device::flex();
    let (a, b) = (dir.join("a"), dir.join("b"));
    let full = qat(&cfg, "w8a8", Path::new("data"), &a, false, &device).unwrap();
    assert!(full.from_scratch);
    assert_eq!(RunManifest::load(&a).unwrap().kind, RunKind::QatScratch);
    // Interrupt a second run after epoch 2 (the observer epochs are over by then) and resume:
    // the same final model, so the same accuracy.
    qat(&cfg, "w8a8", Path::new("data"), &b, false, &device).unwrap();
    let ckpt = b.join("checkpoints");
    std::fs::remove_dir_all(ckpt.join("epoch-0003")).unwrap();
    std::fs::write(ckpt.join("LATEST"), "epoch-0002").unwrap();
    let resumed = qat(&cfg, "w8a8", Path::new("data"), &b, true, &device).unwrap();
    assert_eq!(resumed.qat_acc, full.qat_acc);
    assert_eq!(
        std::fs::read(a.join("quant_state.json")).unwrap(),
        std::fs::read(b.join("quant_state.json")).unwrap()
    );
    // Invalid: observer epochs beyond the run.
    cfg.scratch.as_mut().unwrap().observer_epochs = 9;
    let err = qat(
        &cfg,
        "w8a8",
        Path::new("data"),
        &dir.join("c"),
        false,
        &device,
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("--observer-epochs"), "{err:#}");
    // Invalid: distillation without a float model to learn from.
    cfg.scratch.as_mut().unwrap().observer_epochs = 1;
    cfg.distill = Some(DistillConfig {
        weight: 0.5,
        temperature: 1.0,
    });
    let err = cfg.validate().unwrap_err();
    assert!(format!("{err:#}").contains("no teacher"), "{err:#}");
    let _ = std::fs::remove_dir_all(&dir);
}
