//! The mixed-precision search: budgets respected exactly under `MemoryReport`, optimality
//! against brute force, savings targets, cost cleaning.

use std::collections::BTreeMap;

use qat::autobits::{
    Budget, Choice, CostModel, FLOAT_BITS, SensitivityPoint, allocate, choices, component_values,
};
use qat::{AbarGrid, Component, MemoryReport, ModelDims, QuantPoint, QuantSpec};
use s4d_model::S4dClassifierConfig;

/// Measurements used as they are (no saturation rule).
fn raw(allow_float: bool) -> CostModel {
    CostModel {
        allow_float,
        saturated_below: None,
    }
}

fn dims(model: &str) -> ModelDims {
    ModelDims::from_config(&S4dClassifierConfig::preset(model).unwrap())
}

/// Deterministic pseudo-random costs in [0, 1).
fn lcg(seed: &mut u64) -> f64 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (*seed >> 11) as f64 / (1u64 << 53) as f64
}

/// Sensitivities for every component at `bits`, cost falling with bits, Abar on two grids.
fn synthetic(bits: &[u32], seed: u64) -> Vec<SensitivityPoint> {
    let mut s = seed;
    let mut out = Vec::new();
    for c in Component::ALL {
        let weight = lcg(&mut s) * 3.0;
        for &b in bits {
            let grids: &[AbarGrid] = if c == Component::ABar {
                &[AbarGrid::Cartesian, AbarGrid::LogPolar]
            } else {
                &[AbarGrid::Cartesian]
            };
            for &g in grids {
                let noise = lcg(&mut s) * 0.05 - 0.02;
                let base = weight * 2f64.powi(-(b as i32) + 2);
                let base = if g == AbarGrid::LogPolar {
                    base * 0.3
                } else {
                    base
                };
                out.push(SensitivityPoint {
                    component: c,
                    block: None,
                    bits: b,
                    grid: g,
                    loss_delta: base + noise,
                    acc_delta: 0.0,
                });
            }
        }
    }
    out
}

#[test]
fn component_values_add_up_to_the_memory_report() {
    for model in ["s4d-16h", "s4d-64h"] {
        let d = dims(model);
        let values = component_values(d);
        let fp32 = MemoryReport::new(d, &QuantSpec::fp32()).fp32_bits();
        assert_eq!(values.values().sum::<u64>() * 32, fp32);
        // Any spec: the report's total is sum(values * bits).
        let spec = QuantSpec::preset("w4a6-a8x8").unwrap();
        let want: u64 = values
            .iter()
            .map(|(c, n)| n * u64::from(spec.bits(*c)))
            .sum();
        assert_eq!(MemoryReport::new(d, &spec).total_bits(), want);
    }
    let v = component_values(dims("s4d-64h"));
    assert_eq!(v[&Component::ABar], 2 * 64 * 32);
    assert_eq!(v[&Component::GluOutput], 64 + 128); // GLU output + conv output row
}

#[test]
fn budget_is_respected_exactly_and_used_well() {
    let d = dims("s4d-64h");
    let bits = [2, 3, 4, 5, 6, 7, 8, 16];
    let points = synthetic(&bits, 1);
    let table = choices(&points, &bits, raw(false), d).unwrap();
    let min: u64 = component_values(d).values().map(|n| n * 2).sum();
    let fp32 = MemoryReport::new(d, &QuantSpec::fp32()).fp32_bits();
    let mut seed = 7;
    let mut budgets: Vec<u64> = (0..40)
        .map(|_| min + (lcg(&mut seed) * (fp32 / 2 - min) as f64) as u64)
        .collect();
    budgets.extend([min, min + 1, 132_076, 136_938, 136_937]);
    let mut last_cost = f64::INFINITY;
    budgets.sort_unstable();
    for b in budgets {
        let a = allocate(d, &table, Budget { bits: b }).unwrap();
        let report = MemoryReport::new(d, &a.spec);
        assert_eq!(report.total_bits(), a.total_bits);
        assert!(a.total_bits <= b, "{} > {b}", a.total_bits);
        // A larger budget never costs more.
        assert!(a.cost <= last_cost + 1e-12);
        last_cost = a.cost;
        // No single component can be widened within the budget at a lower cost: a local
        // optimality check that holds for the exact optimum.
        for p in &a.picks {
            let n = component_values(d)[&p.component];
            for ch in &table[&QuantPoint::new(None, p.component)] {
                let extra = n * u64::from(ch.bits) - p.memory_bits.min(n * u64::from(ch.bits));
                if ch.bits > p.bits && a.total_bits + extra <= b {
                    assert!(ch.cost >= p.cost - 1e-12, "{:?} could widen", p.component);
                }
            }
        }
    }
    let err = allocate(d, &table, Budget { bits: min - 1 }).unwrap_err();
    assert!(err.to_string().contains("below the smallest"), "{err}");
}

#[test]
fn exact_search_matches_brute_force() {
    // Two candidates per component for 16 components: 65,536 specs, all enumerated.
    let d = dims("s4d-16h");
    let values = component_values(d);
    let comps: Vec<Component> = values.keys().copied().collect();
    for seed in 0..4u64 {
        let mut s = seed + 100;
        let mut table: BTreeMap<Component, Vec<Choice>> = BTreeMap::new();
        for c in &comps {
            let lo = 2 + (lcg(&mut s) * 4.0) as u32;
            let hi = lo + 1 + (lcg(&mut s) * 4.0) as u32;
            let c_hi = lcg(&mut s);
            let c_lo = c_hi + lcg(&mut s);
            table.insert(
                *c,
                vec![
                    Choice {
                        bits: hi,
                        grid: AbarGrid::Cartesian,
                        cost: c_hi,
                    },
                    Choice {
                        bits: lo,
                        grid: AbarGrid::Cartesian,
                        cost: c_lo,
                    },
                ],
            );
        }
        let all_lo: u64 = comps
            .iter()
            .map(|c| values[c] * u64::from(table[c][1].bits))
            .sum();
        let all_hi: u64 = comps
            .iter()
            .map(|c| values[c] * u64::from(table[c][0].bits))
            .sum();
        let budget = all_lo + (lcg(&mut s) * (all_hi - all_lo) as f64) as u64;
        let mut best = f64::INFINITY;
        for mask in 0u32..(1 << comps.len()) {
            let (mut bits, mut cost) = (0u64, 0.0);
            for (i, c) in comps.iter().enumerate() {
                let ch = &table[c][((mask >> i) & 1) as usize];
                bits += values[c] * u64::from(ch.bits);
                cost += ch.cost;
            }
            if bits <= budget && cost < best {
                best = cost;
            }
        }
        let a = allocate(
            d,
            &table
                .iter()
                .map(|(c, l)| (QuantPoint::new(None, *c), l.clone()))
                .collect(),
            Budget { bits: budget },
        )
        .unwrap();
        assert!(a.total_bits <= budget);
        assert!(
            (a.cost - best).abs() < 1e-9,
            "seed {seed}: {} vs {best}",
            a.cost
        );
    }
}

#[test]
fn savings_target_is_met_and_tight() {
    let d = dims("s4d-64h");
    for pct in [84.05, 75.0, 50.0, 90.123] {
        let b = Budget::from_savings(d, pct).unwrap();
        let fp32 = MemoryReport::new(d, &QuantSpec::fp32()).fp32_bits() as f64;
        assert!(100.0 * (1.0 - b.bits as f64 / fp32) >= pct);
        assert!(100.0 * (1.0 - (b.bits + 1) as f64 / fp32) < pct);
    }
    // The paper's 84.05 % on S4D-64h: w4a6-a8x8 (83.46 % here) does not fit, the search finds
    // a spec that does, and its report says so.
    let b = Budget::from_savings(d, 84.05).unwrap();
    assert!(MemoryReport::new(d, &QuantSpec::preset("w4a6-a8x8").unwrap()).total_bits() > b.bits);
    let bits = [3, 4, 5, 6, 7, 8];
    let table = choices(&synthetic(&bits, 3), &bits, raw(false), d).unwrap();
    let a = allocate(d, &table, b).unwrap();
    assert!(a.savings_percent >= 84.05, "{}", a.savings_percent);
    assert!(Budget::from_savings(d, 100.0).is_err());
    assert!(Budget::from_bytes(-1.0).is_err());
    assert_eq!(Budget::from_bytes(16_509.9).unwrap().bits, 132_079);
}

#[test]
fn costs_are_cleaned_and_abar_takes_its_best_grid() {
    let d = dims("s4d-16h");
    let mut points = Vec::new();
    for c in Component::ALL {
        for (b, delta) in [(8, -0.01), (6, 0.2), (4, 0.1)] {
            points.push(SensitivityPoint {
                component: c,
                block: None,
                bits: b,
                grid: AbarGrid::Cartesian,
                loss_delta: delta,
                acc_delta: 0.0,
            });
        }
    }
    points.push(SensitivityPoint {
        component: Component::ABar,
        block: None,
        bits: 6,
        grid: AbarGrid::LogPolar,
        loss_delta: 0.05,
        acc_delta: 0.0,
    });
    let t = choices(&points, &[4, 6, 8], raw(true), d).unwrap();
    let list = &t[&QuantPoint::new(None, Component::State)];
    let got: Vec<(u32, f64)> = list.iter().map(|c| (c.bits, c.cost)).collect();
    // Negative -> 0; 4 bits measured cheaper than 6 is raised to 6's cost.
    assert_eq!(got, vec![(FLOAT_BITS, 0.0), (8, 0.0), (6, 0.2), (4, 0.2)]);
    let abar = &t[&QuantPoint::new(None, Component::ABar)];
    assert_eq!(abar[2].grid, AbarGrid::LogPolar);
    assert_eq!(abar[2].cost, 0.05);
    assert_eq!(abar[3].cost, 0.1);
    // Diverged cases drop out, huge ones are capped.
    let mut more = points.clone();
    more.push(SensitivityPoint {
        component: Component::ABar,
        block: None,
        bits: 3,
        grid: AbarGrid::Cartesian,
        loss_delta: f64::NAN,
        acc_delta: 0.0,
    });
    more.push(SensitivityPoint {
        component: Component::ABar,
        block: None,
        bits: 2,
        grid: AbarGrid::Cartesian,
        loss_delta: 3e17,
        acc_delta: 0.0,
    });
    let t = choices(&more, &[2, 3, 4, 6, 8], raw(false), d).unwrap();
    let abar: Vec<(u32, f64)> = t[&QuantPoint::new(None, Component::ABar)]
        .iter()
        .map(|c| (c.bits, c.cost))
        .collect();
    assert_eq!(
        abar,
        vec![(8, 0.0), (6, 0.05), (4, 0.1), (2, qat::autobits::MAX_COST)]
    );
    // A component with nothing measured at the requested widths is an error.
    assert!(choices(&points, &[5], raw(false), d).is_err());
}

#[test]
fn saturated_measurements_are_extrapolated_by_noise_power() {
    // The state collapses PTQ at every width (acc -80 points), with noisy losses that would
    // make 7 bits look as good as 8: the default model extrapolates from 8 bits instead, so
    // the search keeps the state wide; Abar (fine at 8 bits) keeps its measurements.
    let d = dims("s4d-64h");
    let mut points = Vec::new();
    for c in Component::ALL {
        for (b, loss) in [(8u32, 0.01), (7, 0.02), (6, 0.1)] {
            points.push(SensitivityPoint {
                component: c,
                block: None,
                bits: b,
                grid: AbarGrid::Cartesian,
                loss_delta: loss,
                acc_delta: -0.5,
            });
        }
    }
    for (b, loss) in [(8u32, 6.2), (7, 2.8), (6, 7.2)] {
        let p = points
            .iter_mut()
            .find(|p| p.component == Component::State && p.bits == b)
            .unwrap();
        p.loss_delta = loss;
        p.acc_delta = -80.0;
    }
    let t = choices(&points, &[6, 7, 8], CostModel::default(), d).unwrap();
    let state: Vec<f64> = t[&QuantPoint::new(None, Component::State)]
        .iter()
        .map(|c| c.cost)
        .collect();
    assert_eq!(state, vec![6.2, 6.2 * 4.0, 6.2 * 16.0]);
    let abar: Vec<f64> = t[&QuantPoint::new(None, Component::ABar)]
        .iter()
        .map(|c| c.cost)
        .collect();
    assert_eq!(abar, vec![0.01, 0.02, 0.1]);
    // Raw costs: 7 bits ties with 8 after cleaning, and the search takes the cheaper memory.
    let t = choices(&points, &[6, 7, 8], raw(false), d).unwrap();
    let state: Vec<f64> = t[&QuantPoint::new(None, Component::State)]
        .iter()
        .map(|c| c.cost)
        .collect();
    assert_eq!(state, vec![6.2, 6.2, 7.2]);
    let budget = Budget {
        bits: MemoryReport::new(d, &QuantSpec::preset("w8a8").unwrap()).total_bits() - 1,
    };
    let a = allocate(d, &t, budget).unwrap();
    assert_eq!(a.spec.bits(Component::State), 7);
    let t = choices(&points, &[6, 7, 8], CostModel::default(), d).unwrap();
    let a = allocate(d, &t, budget).unwrap();
    assert_eq!(a.spec.bits(Component::State), 8);
}

#[test]
fn sensitivity_points_round_trip_through_json_with_nan() {
    let p = SensitivityPoint {
        component: Component::ABar,
        block: None,
        bits: 3,
        grid: AbarGrid::LogPolar,
        loss_delta: f64::NAN,
        acc_delta: -83.5,
    };
    let text = serde_json::to_string(&p).unwrap();
    assert!(text.contains("null"), "{text}");
    let back: SensitivityPoint = serde_json::from_str(&text).unwrap();
    assert!(back.loss_delta.is_nan());
    assert_eq!(
        (back.component, back.bits, back.grid),
        (p.component, p.bits, p.grid)
    );
    assert_eq!(back.acc_delta, -83.5);
}
