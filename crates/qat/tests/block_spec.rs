//! Per-block spec overrides (`blocks.<i>.<point>`): resolution order, validation messages,
//! file round trips, the model's quantizers, memory accounting and the per-block search.

use burn::prelude::*;
use qat::autobits::{Budget, CostModel, SensitivityPoint, allocate, choices, point_values};
use qat::{
    AbarGrid, BlockFeatures, Component, MemoryReport, ModelDims, Parameterization, PointFields,
    PointOverride, QuantPoint, QuantSpec, QuantizedClassifier,
};
use s4d_model::{S4dClassifierConfig, S4dConfig};

const TOML: &str = r#"
[input]
bits = 8

[state]
bits = 8

[a_bar]
bits = 8

[blocks.1]
state = 6

[blocks."*".a_bar]
bits = 6
grid = "log_polar"
"#;

fn two_block_dims() -> ModelDims {
    ModelDims {
        heads: 8,
        modes: 4,
        d_input: 1,
        n_classes: 3,
        n_layers: 2,
        residual: false,
        norm: false,
    }
}

fn message(spec: qat::Result<QuantSpec>) -> String {
    match spec {
        Ok(s) => panic!("expected an error, got {s:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn overrides_apply_star_then_index_and_round_trip() {
    let spec = QuantSpec::from_toml_str(TOML).unwrap();
    assert!(spec.has_block_overrides());
    let b0 = spec.block_spec(0).unwrap();
    let b1 = spec.block_spec(1).unwrap();
    // The base keeps the state at 8; block 1 overrides it; "*" sets Abar in every block.
    assert_eq!(b0.bits(Component::State), 8);
    assert_eq!(b1.bits(Component::State), 6);
    for b in [&b0, &b1] {
        assert_eq!(b.bits(Component::ABar), 6);
        assert_eq!(b.a_bar_grid, AbarGrid::LogPolar);
        assert!(!b.has_block_overrides());
        // A bare width keeps the base config's other fields.
        assert_eq!(b.get(Component::State).unwrap().percentile, 99.999);
    }
    // The base is unchanged for the classifier's ends.
    assert_eq!(spec.bits(Component::ABar), 8);
    assert_eq!(spec.a_bar_grid, AbarGrid::Cartesian);
    // An index beats "*".
    let mut s = spec.clone();
    s.set_block(Some(0), Component::ABar, PointOverride::Bits(7))
        .unwrap();
    let b0 = s.block_spec(0).unwrap();
    assert_eq!(b0.bits(Component::ABar), 7);
    assert_eq!(
        b0.a_bar_grid,
        AbarGrid::LogPolar,
        "the grid still comes from *"
    );
    // TOML and JSON round trips keep every override.
    let toml_back = QuantSpec::from_toml_str(&s.to_toml_string().unwrap()).unwrap();
    assert_eq!(toml_back, s);
    let json_back = QuantSpec::from_json_str(&s.to_json_string().unwrap()).unwrap();
    assert_eq!(json_back, s);
    // A spec without overrides serializes as before (no `blocks` key).
    assert!(
        !QuantSpec::preset("w8a8")
            .unwrap()
            .to_toml_string()
            .unwrap()
            .contains("blocks")
    );
}

#[test]
fn bad_paths_and_values_are_errors_that_name_them() {
    let e = message(QuantSpec::from_toml_str("blocks.0.bogus = 4\n"));
    assert!(e.contains("blocks.0.bogus"), "{e}");
    assert!(
        e.contains("valid paths") && e.contains("blocks.<i>.a_bar"),
        "{e}"
    );
    // A point of the classifier's ends is not a block point.
    let e = message(QuantSpec::from_toml_str("blocks.0.decoder_weight = 4\n"));
    assert!(
        e.contains("blocks.0.decoder_weight") && e.contains("valid paths"),
        "{e}"
    );
    let e = message(QuantSpec::from_toml_str("blocks.first.state = 4\n"));
    assert!(e.contains("blocks.first") && e.contains("index"), "{e}");
    let e = message(QuantSpec::from_toml_str("blocks.01.state = 4\n"));
    assert!(e.contains("blocks.01"), "{e}");
    let e = message(QuantSpec::from_toml_str("blocks.0.state = 40\n"));
    assert!(e.contains("blocks.0.state"), "{e}");
    let e = message(QuantSpec::from_toml_str(
        "[blocks.1.state]\nper_channel = false\n",
    ));
    assert!(
        e.contains("blocks.1.state") && e.contains("needs `bits`"),
        "{e}"
    );
    let e = message(QuantSpec::from_toml_str(
        "[blocks.1.state]\nbits = 6\ngrid = \"polar\"\n",
    ));
    assert!(e.contains("a_bar` only"), "{e}");
    let e = message(QuantSpec::from_toml_str(
        "[blocks.1.state]\nbits = 6\nfloat = true\n",
    ));
    assert!(e.contains("float = true"), "{e}");
    // An unknown field of the table form is refused, not ignored.
    assert!(QuantSpec::from_toml_str("[blocks.1.state]\nbitz = 6\n").is_err());
    // "*" with a width the Abar grid cannot take is refused through the grid's own check.
    let e = message(QuantSpec::from_toml_str(
        "[blocks.\"*\".a_bar]\nbits = 1\ngrid = \"log_polar\"\n",
    ));
    assert!(e.contains("blocks.*.a_bar"), "{e}");
}

#[test]
fn overrides_of_blocks_the_model_lacks_are_refused() {
    let spec = QuantSpec::from_toml_str("[blocks.3]\nstate = 6\n").unwrap();
    let e = spec.check_blocks(2).unwrap_err().to_string();
    assert!(e.contains("blocks.3") && e.contains("2 block(s)"), "{e}");
    assert!(e.contains("blocks.0 .. blocks.1"), "{e}");
    assert!(spec.check_blocks(4).is_ok());
    let device = Device::default();
    let model = S4dClassifierConfig::new(S4dConfig::new(4).with_d_state(4))
        .with_n_layers(2)
        .with_n_classes(3)
        .init(&device);
    let e = QuantizedClassifier::from_float(model, spec, Parameterization::Continuous)
        .unwrap_err()
        .to_string();
    assert!(e.contains("blocks.3"), "{e}");
}

#[test]
fn model_builds_each_block_with_its_own_widths() {
    let device = Device::default();
    let model = S4dClassifierConfig::new(S4dConfig::new(4).with_d_state(4))
        .with_n_layers(3)
        .with_n_classes(3)
        .init(&device);
    let mut spec = QuantSpec::preset("w8a8").unwrap();
    spec.set_block(Some(1), Component::State, PointOverride::Bits(6))
        .unwrap();
    spec.set_block(
        Some(2),
        Component::ConvWeight,
        PointOverride::Fields(PointFields {
            float: true,
            ..PointFields::default()
        }),
    )
    .unwrap();
    let q = QuantizedClassifier::from_float(model, spec, Parameterization::Continuous).unwrap();
    let bits = |i: usize, c: Component| q.blocks[i].get(c).map(|q| q.config().bits);
    assert_eq!(bits(0, Component::State), Some(8));
    assert_eq!(bits(1, Component::State), Some(6));
    assert_eq!(bits(2, Component::State), Some(8));
    assert_eq!(bits(2, Component::ConvWeight), None, "float in block 2");
    assert_eq!(bits(1, Component::ConvWeight), Some(8));
    // The ends follow the base spec.
    assert_eq!(
        q.top.get(Component::DecoderWeight).map(|q| q.config().bits),
        Some(8)
    );
}

#[test]
fn memory_counts_each_block_at_its_widths() {
    let d = two_block_dims();
    let base = QuantSpec::preset("w8a8").unwrap();
    let plain = MemoryReport::new(d, &base);
    // Without overrides the report keeps one row per component, all blocks together.
    assert!(
        plain
            .entries
            .iter()
            .all(|e| !e.label.starts_with("blocks."))
    );
    let mut spec = base.clone();
    spec.set_block(Some(1), Component::State, PointOverride::Bits(6))
        .unwrap();
    let r = MemoryReport::new(d, &spec);
    let row = |label: &str| r.entries.iter().find(|e| e.label == label).cloned();
    let state_values = 2 * d.heads * d.modes; // per block, re + im
    let b0 = row("blocks.0.state").unwrap();
    let b1 = row("blocks.1.state").unwrap();
    assert_eq!((b0.count, b0.bits), (state_values, 8));
    assert_eq!((b1.count, b1.bits), (state_values, 6));
    assert!(row("state").is_none());
    // Exactly block 1's state got 2 bits per value cheaper.
    assert_eq!(plain.total_bits() - r.total_bits(), 2 * state_values as u64,);
    assert_eq!(plain.fp32_bits(), r.fp32_bits());
    // Per-head Abar widths in one block split that block's Abar row by width.
    let mut spec = base.clone();
    spec.set_block(
        Some(0),
        Component::ABar,
        PointOverride::Fields(PointFields {
            head_bits: Some(vec![4, 4, 8, 8, 8, 8, 8, 8]),
            ..PointFields::default()
        }),
    )
    .unwrap();
    let r = MemoryReport::new(d, &spec);
    let labels: Vec<&str> = r.entries.iter().map(|e| e.label.as_str()).collect();
    assert!(
        labels.contains(&"blocks.0.a_bar@4") && labels.contains(&"blocks.1.a_bar"),
        "{labels:?}"
    );
    assert_eq!(
        plain.total_bits() - r.total_bits(),
        2 * 2 * d.modes as u64 * 4
    );
}

/// Two blocks with equal costs except that block 1's state is very sensitive below 8 bits:
/// under a budget that forces some state bits off, the search must take them from block 0.
#[test]
fn per_block_search_spends_bits_on_the_sensitive_block() {
    let d = two_block_dims();
    let bits = [4u32, 6, 8];
    let mut points = Vec::new();
    for item in point_values(d, true).keys() {
        for &b in &bits {
            // Below 8 bits: block 1's state is very costly, block 0's nearly free, and every
            // other point in between, so the cheapest way to meet the budget is block 0's state.
            let per_bit = match (item.block, item.component) {
                (Some(1), Component::State) => 5.0,
                (Some(0), Component::State) => 0.001,
                _ => 0.5,
            };
            let loss_delta = per_bit * f64::from(8 - b);
            points.push(SensitivityPoint {
                component: item.component,
                block: item.block,
                bits: b,
                grid: AbarGrid::Cartesian,
                loss_delta,
                acc_delta: 0.0,
            });
        }
    }
    let cost = CostModel {
        allow_float: false,
        saturated_below: None,
    };
    let table = choices(&points, &bits, cost, d).unwrap();
    assert!(table.contains_key(&QuantPoint::new(Some(1), Component::State)));
    assert!(table.contains_key(&QuantPoint::new(None, Component::DecoderWeight)));
    // Everything at 8 bits except 2 bits off half the state values.
    let all8 = MemoryReport::new(d, &QuantSpec::preset("w8a8").unwrap()).total_bits();
    let state_values = (2 * d.heads * d.modes) as u64;
    let budget = Budget {
        bits: all8 - 2 * state_values,
    };
    let a = allocate(d, &table, budget).unwrap();
    assert!(a.total_bits <= budget.bits);
    let pick = |block, c| {
        a.picks
            .iter()
            .find(|p| p.block == block && p.component == c)
            .map(|p| p.bits)
    };
    assert_eq!(pick(Some(1), Component::State), Some(8), "{:?}", a.picks);
    assert!(
        pick(Some(0), Component::State).is_some_and(|b| b < 8),
        "{:?}",
        a.picks
    );
    // The chosen spec is a valid per-block spec whose memory is what the search counted,
    // and it builds a model.
    let spec = a.spec.clone();
    assert!(spec.has_block_overrides());
    assert_eq!(MemoryReport::new(d, &spec).total_bits(), a.total_bits);
    let back = QuantSpec::from_json_str(&spec.to_json_string().unwrap()).unwrap();
    assert_eq!(back, spec);
    let device = Device::default();
    let model = S4dClassifierConfig::new(S4dConfig::new(d.heads).with_d_state(2 * d.modes))
        .with_n_layers(2)
        .with_n_classes(d.n_classes)
        .init(&device);
    let q = QuantizedClassifier::from_float(model, spec, Parameterization::Continuous).unwrap();
    assert_eq!(q.blocks[1].get(Component::State).unwrap().config().bits, 8);
    // Choices serialize with their paths as keys.
    let json = serde_json::to_string(&table).unwrap();
    assert!(json.contains("\"blocks.1.state\""), "{json}");
}

#[test]
fn quant_points_parse_their_paths() {
    for text in ["a_bar", "blocks.2.state", "decoder_weight"] {
        let p: QuantPoint = text.parse().unwrap();
        assert_eq!(p.to_string(), text);
    }
    assert!("blocks.2".parse::<QuantPoint>().is_err());
    assert!("blocks.2.logits".parse::<QuantPoint>().is_err());
    assert!("nope".parse::<QuantPoint>().is_err());
}

/// The README's example spec file parses to the preset plus its overrides.
#[test]
fn committed_example_spec_is_the_preset_plus_overrides() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../specs/deep-w4a6-mixed.toml"
    );
    let spec = QuantSpec::load(path).unwrap();
    let mut want = QuantSpec::preset("w4a6-a8x8").unwrap();
    want.state = Some(Component::State.default_config(6));
    want.set_block(Some(3), Component::State, PointOverride::Bits(8))
        .unwrap();
    want.set_block(
        None,
        Component::ABar,
        PointOverride::Fields(PointFields {
            bits: Some(6),
            grid: Some(AbarGrid::LogPolar),
            ..PointFields::default()
        }),
    )
    .unwrap();
    assert_eq!(spec, want);
    let deep = BlockFeatures {
        residual: true,
        norm: true,
    };
    spec.check_model(&[deep; 4]).unwrap();
    assert!(spec.check_model(&[deep; 3]).is_err());
    let b3 = spec.block_spec(3).unwrap();
    assert_eq!(
        (b3.bits(Component::State), b3.bits(Component::ABar)),
        (8, 6)
    );
}

/// A model with norms has rows no quantizer controls (the norm's 32-bit parameters): the
/// search takes them off the budget and its answer still equals the memory report.
#[test]
fn per_block_search_counts_the_fixed_norm_rows() {
    let d = ModelDims {
        residual: true,
        norm: true,
        ..two_block_dims()
    };
    let bits = [4u32, 8];
    let points: Vec<SensitivityPoint> = point_values(d, true)
        .keys()
        .flat_map(|item| {
            bits.iter().map(move |&b| SensitivityPoint {
                component: item.component,
                block: item.block,
                bits: b,
                grid: AbarGrid::Cartesian,
                loss_delta: if b == 8 { 0.0 } else { 0.1 },
                acc_delta: 0.0,
            })
        })
        .collect();
    assert!(points.iter().any(|p| p.component == Component::NormOutput));
    let table = choices(
        &points,
        &bits,
        CostModel {
            allow_float: false,
            saturated_below: None,
        },
        d,
    )
    .unwrap();
    let all8 = MemoryReport::new(d, &QuantSpec::preset("w8a8").unwrap()).total_bits();
    let a = allocate(d, &table, Budget { bits: all8 }).unwrap();
    assert_eq!(a.total_bits, all8, "everything at 8 bits fits exactly");
    assert!(a.picks.iter().all(|p| p.bits == 8));
    // One bit less than everything at 4 bits plus the fixed rows is infeasible.
    let all4 = MemoryReport::new(d, &QuantSpec::mixed(4, 4, 4, 4).unwrap()).total_bits();
    assert!(allocate(d, &table, Budget { bits: all4 - 1 }).is_err());
    assert_eq!(
        allocate(d, &table, Budget { bits: all4 })
            .unwrap()
            .total_bits,
        all4
    );
}
