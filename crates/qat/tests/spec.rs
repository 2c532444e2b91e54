//! Spec presets, file round trips and validation.

use qat::{Component, QatError, QuantSpec, QuantizerConfig, RangeMethod};

#[test]
fn preset_w4a6_a8x8_bits() {
    let s = QuantSpec::preset("w4a6-a8x8").unwrap();
    for c in Component::ALL {
        let want = match c {
            Component::ABar | Component::State => 8,
            c if c.is_weight() => 4,
            _ => 6,
        };
        assert_eq!(s.bits(c), want, "{c}");
    }
    assert!(s.get(Component::ABar).unwrap().per_channel);
    assert_eq!(s.get(Component::State).unwrap().percentile, 99.999);
    let s = QuantSpec::preset("w8a8").unwrap();
    assert!(Component::ALL.iter().all(|c| s.bits(*c) == 8));
    let s = QuantSpec::preset("W4A6-A16x16").unwrap();
    assert_eq!(
        (s.bits(Component::ABar), s.bits(Component::State)),
        (16, 16)
    );
    assert!(
        Component::ALL
            .iter()
            .all(|c| QuantSpec::preset("fp32").unwrap().bits(*c) == 32)
    );
    for bad in ["w4", "w1a8", "w4a6-a8", "w4a6-a17x8", "int8", "w4a6-a8x8-x"] {
        assert!(
            matches!(QuantSpec::preset(bad), Err(QatError::UnknownPreset(_))),
            "{bad}"
        );
    }
}

#[test]
fn spec_round_trips_toml_and_json() {
    let mut s = QuantSpec::preset("w4a6-a8x8").unwrap();
    s.set(
        Component::Logits,
        Some(
            QuantizerConfig::new(7)
                .with_range(RangeMethod::Mse)
                .with_axis(Some(1)),
        ),
    );
    s.set(Component::Input, None);
    s.state_clamp = 25.5;
    let toml = s.to_toml_string().unwrap();
    assert_eq!(QuantSpec::from_toml_str(&toml).unwrap(), s, "{toml}");
    let json = s.to_json_string().unwrap();
    assert_eq!(QuantSpec::from_json_str(&json).unwrap(), s);
    let hand = "[a_bar]\nbits = 6\nsymmetric = true\n";
    let h = QuantSpec::from_toml_str(hand).unwrap();
    assert_eq!(h.bits(Component::ABar), 6);
    assert_eq!(h.bits(Component::BBar), 32);
}

#[test]
fn invalid_specs_are_rejected_with_messages() {
    for (text, needle) in [
        ("[a_bar]\nbits = 0\n", "bits must be in 2..=16, got 0"),
        ("[state]\nbits = 17\n", "bits must be in 2..=16, got 17"),
        (
            "[a_bar]\nbits = 8\npercentile = 0.0\n",
            "percentile must be in (0, 100]",
        ),
        (
            "[a_bar]\nbits = 8\npercentile = 101.0\n",
            "percentile must be in (0, 100]",
        ),
        ("[abar]\nbits = 8\n", "unknown field `abar`"),
        ("[a_bar]\nbits = 8\nbogus = 1\n", "unknown field `bogus`"),
    ] {
        let err = QuantSpec::from_toml_str(text).unwrap_err().to_string();
        assert!(err.contains(needle), "{text:?}: {err}");
    }
    let err = QuantSpec::from_json_str(r#"{"conv_weight": {"bits": 17}}"#).unwrap_err();
    assert!(err.to_string().contains("conv_weight"), "{err}");
    assert!(QuantSpec::only(Component::ABar, 1).is_err());
}

#[test]
fn only_and_sensitivity_grid() {
    let s = QuantSpec::only(Component::BBar, 4).unwrap();
    for c in Component::ALL {
        assert_eq!(s.bits(c), if c == Component::BBar { 4 } else { 32 });
    }
    let grid =
        QuantSpec::sensitivity_grid(&[Component::ABar, Component::State], &[4, 6, 8]).unwrap();
    assert_eq!(grid.len(), 6);
    assert_eq!(grid[4].component, Component::State);
    assert_eq!(grid[4].spec.bits(Component::State), 6);
}
