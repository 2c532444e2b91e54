//! The paper's Table I parameter counts, which pin down the architecture (2H^2 + 208H + 10).
use burn::prelude::*;
use s4d_model::{ModelError, S4dClassifierConfig};

#[test]
fn preset_parameter_counts_match_table_one() {
    let device = Device::flex();
    for (name, expected) in [
        ("s4d-16h", 3_850),
        ("s4d-64h", 21_514),
        ("s4d-256h", 184_330),
        ("s4d-512h", 630_794),
    ] {
        let model = S4dClassifierConfig::preset(name).unwrap().init(&device);
        assert_eq!(model.num_params(), expected, "{name}");
        let h = model.encoder.weight.dims()[1];
        assert_eq!(expected, 2 * h * h + 208 * h + 10, "{name} closed form");
    }
}

#[test]
fn unknown_preset_is_an_error() {
    assert_eq!(
        S4dClassifierConfig::preset("s4d-17h"),
        Err(ModelError::UnknownPreset("s4d-17h".into()))
    );
}

#[test]
fn invalid_configs_are_rejected() {
    let mut cfg = S4dClassifierConfig::preset("s4d-16h").unwrap();
    cfg.ssm.d_state = 63;
    assert!(cfg.validate().is_err());
    let mut cfg = S4dClassifierConfig::preset("s4d-16h").unwrap();
    cfg.ssm.dt_min = 0.5;
    assert!(cfg.validate().is_err(), "dt_min > dt_max");
    let mut cfg = S4dClassifierConfig::preset("s4d-16h").unwrap();
    cfg.dropout = 1.0;
    assert!(cfg.validate().is_err());
}

#[test]
fn config_round_trips_through_json() {
    let cfg = S4dClassifierConfig::preset("s4d-64h").unwrap();
    let json = serde_json::to_string(&cfg).unwrap();
    let back: S4dClassifierConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(cfg, back);
}

#[test]
fn deeper_recipe_builds_and_runs() {
    let device = Device::flex();
    let mut cfg = S4dClassifierConfig::preset("s4d-16h").unwrap();
    cfg.n_layers = 2;
    cfg.layer_norm = true;
    cfg.residual = true;
    cfg.dropout = 0.1;
    let model = cfg.init(&device);
    let x = Tensor::<3>::ones([2, 16, 1], &device);
    let y = model.forward(x, s4d_model::SsmMode::Convolution);
    assert_eq!(y.dims(), [2, 10]);
    // one extra block (S4D 194H + conv 2H^2+2H) and two LayerNorms (2H each)
    let h = 16;
    assert_eq!(
        model.num_params(),
        3_850 + 194 * h + 2 * h * h + 2 * h + 2 * 2 * h
    );
}

/// Configs saved before `norm` and `norm_position` existed (every committed run) still load,
/// and mean what they meant; the new fields round-trip.
#[test]
fn configs_without_the_norm_fields_still_load() {
    let old = r#"{"ssm":{"d_model":16,"d_state":64,"dt_min":0.001,"dt_max":0.1,"init":"lin",
        "discretization":"zoh","trainable_b":true},"d_input":1,"n_classes":10,"n_layers":2,
        "activation":"gelu","layer_norm":true,"residual":true,"dropout":0.0}"#;
    let cfg: S4dClassifierConfig = serde_json::from_str(old).unwrap();
    assert_eq!(cfg.norm_kind(), Some(s4d_model::NormKind::Layer));
    assert!(!cfg.prenorm());
    let mut cfg = cfg;
    cfg.layer_norm = false;
    cfg.norm = Some(s4d_model::NormKind::Batch);
    cfg.norm_position = Some(s4d_model::NormPosition::Pre);
    cfg.validate().unwrap();
    let back: S4dClassifierConfig =
        serde_json::from_str(&serde_json::to_string(&cfg).unwrap()).unwrap();
    assert_eq!(back, cfg);
    assert_eq!(back.norm_kind(), Some(s4d_model::NormKind::Batch));
    assert!(back.prenorm());
    let model = back.init(&Device::flex());
    assert!(model.blocks[1].batch_norm.is_some() && model.blocks[1].norm.is_none());
    // Both norms at once, or pre-norm without a norm, are refused.
    cfg.layer_norm = true;
    assert!(cfg.validate().is_err());
    cfg.layer_norm = false;
    cfg.norm = None;
    assert!(cfg.validate().is_err());
}
