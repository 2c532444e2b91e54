//! A file of your own -> float model -> QAT w8a8 -> integer model -> C source, as library calls.
//! `cargo run --release -p experiments --example own_data [-- TRAIN TEST]` (any .ts/.npy/.npz/.csv
//! pair; without arguments it writes a small synthetic 2-channel .ts pair of unequal lengths).
use std::path::{Path, PathBuf};

use burn::prelude::*;
use datasets::DataFileSpec;
use qat::{QuantSpec, integer::IntegerModel};
use s4q_train::{DataConfig, QatRunConfig, TrainConfig, load_quantized, qat, train};

fn main() -> anyhow::Result<()> {
    let out = std::env::temp_dir().join(format!("s4q-own-data-{}", std::process::id()));
    let args: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    let (train_file, test_file) = match args.as_slice() {
        [a, b] => (a.clone(), b.clone()),
        _ => synthetic_ts(&out)?,
    };
    let data = DataConfig::files(DataFileSpec::pair(train_file, test_file));
    let mut cfg = TrainConfig::for_data("s4d-16h", data)?; // d_input, classes from the files
    (cfg.epochs, cfg.batch_size) = (15, 16);
    let device = Device::flex();
    let float = train(&cfg, &out.join("float"), &device, false)?;
    let mut qcfg = QatRunConfig::fine_tune(out.join("float"), QuantSpec::preset("w8a8")?);
    (qcfg.epochs, qcfg.batch_size) = (3, 16);
    let q = qat(
        &qcfg,
        "w8a8",
        Path::new("data"),
        &out.join("qat"),
        false,
        &device,
    )?;
    let integer = IntegerModel::derive(&load_quantized(&out.join("qat"), &device)?)?;
    let c_dir = out.join("c");
    s4q_export::write_c_model(&integer, &c_dir)?; // model.h + model.c: int8 weights, no float
    println!(
        "float {:.1}% -> QAT w8a8 {:.1}% -> C model in {}",
        float.test_acc,
        q.qat_acc,
        c_dir.display()
    );
    Ok(())
}

/// Two channels, three classes told apart by frequency, lengths 24..48, as a UCR `.ts` pair.
fn synthetic_ts(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir)?;
    let mut files = Vec::new();
    for (split, n) in [("TRAIN", 96), ("TEST", 48)] {
        let mut text = "@problemName Toy\n@univariate false\n@dimensions 2\n".to_string();
        text += "@equalLength false\n@classLabel true slow mid fast\n@data\n";
        for i in 0..n {
            let (k, len, phase) = (i % 3, 24 + (i * 7) % 25, i as f32);
            let wave = |shift: f32| -> Vec<String> {
                let f = 0.05 + 0.08 * k as f32;
                let v = |t: usize| (6.283 * f * t as f32 + phase + shift).sin();
                (0..len).map(|t| format!("{:.4}", v(t))).collect()
            };
            let label = ["slow", "mid", "fast"][k];
            text += &format!("{}:{}:{label}\n", wave(0.0).join(","), wave(1.5).join(","));
        }
        files.push(dir.join(format!("Toy_{split}.ts")));
        std::fs::write(&files[files.len() - 1], text)?;
    }
    Ok((files[0].clone(), files[1].clone()))
}
