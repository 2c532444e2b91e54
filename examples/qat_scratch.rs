//! QAT from scratch of a custom shape, from code: a W8A8 S4D trained from random
//! initialisation (no float run), ranges re-estimated while the weights move, then frozen.
//!
//! `cargo run --release -p experiments --example qat_scratch`

use std::path::Path;

use burn::prelude::*;
use datasets::DatasetName;
use qat::QuantSpec;
use s4d_model::{S4dClassifierConfig, S4dConfig};
use s4q_train::{DataConfig, QatRunConfig, qat};

fn main() -> anyhow::Result<()> {
    // 300 of the bundled MNIST digits as pixel sequences (L = 784), a held-out tenth of them
    // choosing the kept epoch.
    let mut data = DataConfig::named(DatasetName::Embedded);
    (data.train_limit, data.test_limit, data.valid_fraction) = (Some(300), Some(200), Some(0.1));
    let (d_input, n_classes) = data.shape()?;
    // A shape of our own: 24 heads, 16 real states per head.
    let model = S4dClassifierConfig::new(S4dConfig::new(24).with_d_state(16))
        .with_d_input(d_input)
        .with_n_classes(n_classes);
    let mut cfg = QatRunConfig::from_scratch(model, data, QuantSpec::preset("w8a8")?);
    (cfg.epochs, cfg.batch_size, cfg.lr) = (6, 20, 1e-2);
    let out = std::env::temp_dir().join(format!("s4q-qat-scratch-{}", std::process::id()));
    let result = qat(
        &cfg,
        "w8a8",
        Path::new("data"),
        &out,
        false,
        &Device::flex(),
    )?;
    println!(
        "W8A8 from scratch: {:.1}% test accuracy after {} epochs (random init, calibrated: {:.1}%; \
         kept epoch {}, validation {:.1}%)",
        result.qat_acc,
        result.epochs,
        result.ptq_acc,
        result.kept_epoch,
        result.valid_acc.unwrap_or(f64::NAN)
    );
    // Chance is 10%: a model that learned nothing fails here.
    anyhow::ensure!(result.qat_acc > 30.0, "QAT from scratch did not learn");
    Ok(())
}
