//! A file of your own -> float model -> QAT w8a8 -> integer model -> C source, as library calls.
//! `cargo run --release -p experiments --example own_data [-- TRAIN TEST]` (any .ts/.npy/.npz/.csv
//! pair; without arguments it writes a small synthetic 2-channel .ts pair of unequal lengths).
use std::path::{Path, PathBuf};

use burn::prelude::*;
use datasets::DataFileSpec;
use qat::{QuantSpec, integer::IntegerModel};
use s4q_train::run_dir::load_preprocess;
use s4q_train::{DataConfig, QatRunConfig, TrainConfig, load_quantized, qat, train};

fn main() -> anyhow::Result<()> {
    let out = std::env::temp_dir().join(format!("s4q-own-data-{}", std::process::id()));
    let files: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    let [train_file, test_file] = <[PathBuf; 2]>::try_from(files).or_else(|_| toy_ts(&out))?;
    let data = DataConfig::files(DataFileSpec::pair(train_file, test_file));
    let mut cfg = TrainConfig::for_data("s4d-16h", data)?; // d_input, classes from the files
    (cfg.epochs, cfg.batch_size) = (15, 16);
    let (device, float_dir, qat_dir) = (Device::flex(), out.join("float"), out.join("qat"));
    let float = train(&cfg, &float_dir, &device, false)?;
    let mut qcfg = QatRunConfig::fine_tune(&float_dir, QuantSpec::preset("w8a8")?);
    (qcfg.epochs, qcfg.batch_size) = (3, 16);
    let q = qat(&qcfg, "w8a8", Path::new("data"), &qat_dir, false, &device)?;
    let integer = IntegerModel::derive(&load_quantized(&qat_dir, &device)?)?;
    let (meta, c_dir) = (load_preprocess(&qat_dir)?.export_meta(), out.join("c"));
    s4q_export::write_c_model(&integer, &meta, &c_dir)?; // s4q_model.{h,c}: no float, no malloc
    let (f, qa, c) = (float.test_acc, q.qat_acc, c_dir.display());
    println!("float {f:.1}% -> QAT w8a8 {qa:.1}% -> C model in {c}");
    Ok(())
}

/// Two channels, three classes told apart by frequency, lengths 24..48, as a UCR `.ts` pair.
fn toy_ts(dir: &Path) -> anyhow::Result<[PathBuf; 2]> {
    std::fs::create_dir_all(dir)?;
    let paths = ["TRAIN", "TEST"].map(|s| dir.join(format!("Toy_{s}.ts")));
    for (path, n) in paths.iter().zip([96, 48]) {
        let mut text = "@problemName Toy\n@dimensions 2\n@equalLength false\n".to_string();
        text += "@classLabel true a b c\n@data\n";
        for i in 0..n {
            let (k, len) = (i % 3, 24 + (i * 7) % 25);
            let w = std::f32::consts::TAU * (0.05 + 0.08 * k as f32);
            let wave = |s: f32| (0..len).map(move |t| format!("{:.4}", (w * t as f32 + s).sin()));
            let (a, b) = (
                wave(i as f32).collect::<Vec<_>>(),
                wave(i as f32 + 1.5).collect::<Vec<_>>(),
            );
            text += &format!("{}:{}:{}\n", a.join(","), b.join(","), ["a", "b", "c"][k]);
        }
        std::fs::write(path, text)?;
    }
    Ok(paths)
}
