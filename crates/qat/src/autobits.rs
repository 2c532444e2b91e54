//! Automatic mixed precision: choose a bit width per component (and a grid for `Abar`) that
//! minimises the measured sensitivity under a memory budget, exactly.
//!
//! Model: quantizing component `c` at `b` bits on its own costs `cost(c, b)` (a measured loss
//! increase, see [`SensitivityPoint`]), costs add up across components, and memory is the sum
//! of `values(c) * b` over components plus the rows no quantizer controls (a norm's 32-bit
//! parameters), which is exactly [`MemoryReport`]'s total ([`component_values`] reads the
//! counts off the report itself). The problem is then a multiple-choice knapsack: pick one width per
//! component, total bits `<= budget`, least total cost. With 16 components and a budget of a
//! few 10^5 bits it is solved exactly by dynamic programming over the budget in units of the
//! greatest common divisor of all item sizes ([`allocate`]); the answer is re-checked against
//! [`MemoryReport`] before it is returned.
//!
//! Cost cleaning: a measured delta below zero (noise: quantization rarely helps) counts as
//! zero, one above [`MAX_COST`] as `MAX_COST`, a non-finite one removes the candidate, and cost is made non-increasing in bits (`cost(c, b) = max over b' >= b`), so the
//! search never prefers fewer bits for a measurement artefact. Among equal costs the search
//! keeps more bits.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{QatError, Result};
use crate::memory::{MemoryReport, ModelDims};
use crate::polar::AbarGrid;
use crate::spec::{Component, PointOverride, QuantPoint, QuantSpec};

/// Cap on one candidate's cost: a diverged model's loss increase can reach 1e17, which would
/// swamp every other term's precision in the sums; anything this large means "never" anyway.
pub const MAX_COST: f64 = 1e6;

/// Bit width meaning "keep in float" in the search (32, as in [`QuantSpec::bits`]).
pub const FLOAT_BITS: u32 = 32;

/// One measurement: `component` alone quantized at `bits` (on `grid` for `Abar`), everything
/// else float; deltas are against the float model on the same sequences.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SensitivityPoint {
    /// The quantized component.
    pub component: Component,
    /// The block it was quantized in alone (`None`: in every block at once, or a component
    /// at the classifier's ends). Per-block points make the search choose widths per block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block: Option<usize>,
    /// Its bit width.
    pub bits: u32,
    /// `Abar`'s grid (Cartesian for every other component).
    #[serde(default)]
    pub grid: AbarGrid,
    /// Mean cross-entropy increase over the float model (the search's cost; NaN when the
    /// quantized model diverged, written as `null` in JSON).
    #[serde(deserialize_with = "nan_from_null")]
    pub loss_delta: f64,
    /// Accuracy change in points (reported, and used by the saturation rule of [`CostModel`]).
    #[serde(deserialize_with = "nan_from_null")]
    pub acc_delta: f64,
}

/// JSON has no NaN: serde_json writes it as `null`, so `null` reads back as NaN.
fn nan_from_null<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// A memory budget in bits, the unit [`MemoryReport`] counts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    /// Largest allowed total, in bits.
    pub bits: u64,
}

impl Budget {
    /// `bytes` of memory (fractions of a byte are dropped, so the budget is never exceeded).
    pub fn from_bytes(bytes: f64) -> Result<Self> {
        if !(bytes.is_finite() && bytes > 0.0) {
            return Err(invalid(format!(
                "budget must be a positive number of bytes, got {bytes}"
            )));
        }
        Ok(Self {
            bits: (bytes * 8.0).floor() as u64,
        })
    }

    /// The largest budget whose every spec saves at least `percent` % against FP32 under
    /// [`MemoryReport::savings_percent`] (the check uses that same f64 formula, so a
    /// spec that fits reports savings `>= percent`).
    pub fn from_savings(dims: ModelDims, percent: f64) -> Result<Self> {
        if !(percent.is_finite() && (0.0..100.0).contains(&percent)) {
            return Err(invalid(format!(
                "savings must be in [0, 100) percent, got {percent}"
            )));
        }
        let fp32 = MemoryReport::new(dims, &QuantSpec::fp32()).fp32_bits();
        let saves = |bits: u64| 100.0 * (1.0 - bits as f64 / fp32 as f64) >= percent;
        let mut bits = ((1.0 - percent / 100.0) * fp32 as f64).floor() as u64;
        while bits > 0 && !saves(bits) {
            bits -= 1;
        }
        while saves(bits + 1) {
            bits += 1;
        }
        Ok(Self { bits })
    }

    /// The budget in bytes.
    pub fn bytes(&self) -> f64 {
        self.bits as f64 / 8.0
    }
}

fn invalid(message: String) -> QatError {
    QatError::InvalidConfig {
        component: "autobits".into(),
        message,
    }
}

/// Values stored per component (summed over blocks) under our memory accounting, read off
/// [`MemoryReport`] by changing one component's width: `values(c) = (T(32) - T(16)) / 16`
/// where `T(b)` is the total with only `c` at `b` bits. Components with no values are left
/// out.
pub fn component_values(dims: ModelDims) -> BTreeMap<Component, u64> {
    point_values(dims, false)
        .into_iter()
        .map(|(p, n)| (p.component, n))
        .collect()
}

/// Values stored per search item, read off [`MemoryReport`] like [`component_values`]: with
/// `per_block`, every block point of every block is its own item (`blocks.<i>.<c>`, changed
/// through a spec override) and the classifier's ends are items with `block: None`; without,
/// a block component counts over all blocks as one item.
pub fn point_values(dims: ModelDims, per_block: bool) -> BTreeMap<QuantPoint, u64> {
    let total = |p: QuantPoint, bits: u32| -> u64 {
        let mut spec = QuantSpec::fp32();
        match p.block {
            Some(i) => {
                // Only fails for a non-block component, which never reaches here.
                let _ = spec.set_block(Some(i), p.component, PointOverride::Bits(bits));
            }
            None => spec.set(p.component, Some(p.component.default_config(bits))),
        }
        MemoryReport::new(dims, &spec).total_bits()
    };
    let mut points = Vec::new();
    for c in Component::ALL {
        if per_block && c.is_per_block() {
            points.extend((0..dims.n_layers).map(|i| QuantPoint::new(Some(i), c)));
        } else {
            points.push(QuantPoint::new(None, c));
        }
    }
    points
        .into_iter()
        .map(|p| (p, (total(p, 32) - total(p, 16)) / 16))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// Whether `points` hold per-block measurements (then the search works per block).
pub fn is_per_block(points: &[SensitivityPoint]) -> bool {
    points.iter().any(|p| p.block.is_some())
}

/// One candidate of a component in the search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    /// Bit width ([`FLOAT_BITS`] = float).
    pub bits: u32,
    /// `Abar`'s grid for this width (the cheapest measured one).
    pub grid: AbarGrid,
    /// Cleaned cost (see the module doc).
    pub cost: f64,
}

/// How measured deltas become costs ([`choices`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CostModel {
    /// Offer float (32 bits, cost 0) for every component.
    pub allow_float: bool,
    /// Saturation threshold in accuracy points: when even the widest measured width of a
    /// component (and grid) changes accuracy by this much or worse, the PTQ model is broken
    /// at every width and the measurements cannot rank them (the static state of S4D does
    /// this: -70 points and more at every width up to 8 bits). Such a component's cost is
    /// then extrapolated from the widest width by quantization-noise power,
    /// `cost(b) = cost(widest) * 4^(widest - b)` (each bit less doubles the step, so
    /// quadruples the noise). `None`: use the measurements as they are.
    pub saturated_below: Option<f64>,
}

impl Default for CostModel {
    fn default() -> Self {
        Self {
            allow_float: false,
            saturated_below: Some(-50.0),
        }
    }
}

/// The cleaned candidates per component: measured widths among `bits` (plus float when
/// `model.allow_float`), saturated measurements extrapolated (see [`CostModel`]), best grid
/// per width for `Abar`, non-negative, non-increasing in bits. Every component of `dims`
/// needs at least one candidate.
pub fn choices(
    points: &[SensitivityPoint],
    bits: &[u32],
    model: CostModel,
    dims: ModelDims,
) -> Result<BTreeMap<QuantPoint, Vec<Choice>>> {
    let allow_float = model.allow_float;
    let per_block = is_per_block(points);
    let mut out = BTreeMap::new();
    for (item, _) in point_values(dims, per_block) {
        let c = item.component;
        let mut best: BTreeMap<u32, Choice> = BTreeMap::new();
        // A diverged case (NaN/inf loss) is no candidate at all.
        let usable: Vec<&SensitivityPoint> = points
            .iter()
            .filter(|p| {
                p.component == c
                    && p.block == item.block
                    && bits.contains(&p.bits)
                    && p.loss_delta.is_finite()
            })
            .collect();
        for p in &usable {
            let grid = if c == Component::ABar {
                p.grid
            } else {
                AbarGrid::Cartesian
            };
            let widest = usable
                .iter()
                .filter(|q| q.grid == p.grid)
                .max_by_key(|q| q.bits)
                .copied()
                .unwrap_or(p);
            let saturated = model.saturated_below.is_some_and(|t| widest.acc_delta <= t);
            let cost = if saturated {
                let anchor = widest.loss_delta.clamp(0.0, MAX_COST);
                anchor * 4f64.powi((widest.bits - p.bits) as i32)
            } else {
                p.loss_delta
            };
            let cand = Choice {
                bits: p.bits,
                grid,
                cost: cost.clamp(0.0, MAX_COST),
            };
            match best.get(&p.bits) {
                Some(b) if b.cost <= cand.cost => {}
                _ => {
                    best.insert(p.bits, cand);
                }
            }
        }
        if allow_float {
            best.insert(
                FLOAT_BITS,
                Choice {
                    bits: FLOAT_BITS,
                    grid: AbarGrid::Cartesian,
                    cost: 0.0,
                },
            );
        }
        if best.is_empty() {
            return Err(invalid(format!(
                "no measured sensitivity for `{item}` at any of the bit widths {bits:?}"
            )));
        }
        // Highest width first; cost(b) = max(cost(b), cost(next wider)).
        let mut list: Vec<Choice> = best.into_values().rev().collect();
        for i in 1..list.len() {
            list[i].cost = list[i].cost.max(list[i - 1].cost);
        }
        out.insert(item, list);
    }
    Ok(out)
}

/// One component's pick in an [`Allocation`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pick {
    /// The component.
    pub component: Component,
    /// Its block, for a per-block search.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block: Option<usize>,
    /// Chosen width ([`FLOAT_BITS`] = float).
    pub bits: u32,
    /// `Abar`'s grid (Cartesian elsewhere).
    pub grid: AbarGrid,
    /// Its cleaned cost.
    pub cost: f64,
    /// Its memory, `values * bits`.
    pub memory_bits: u64,
}

/// The search's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Allocation {
    /// The chosen spec (each component at its width with [`Component::default_config`]).
    pub spec: QuantSpec,
    /// Per-component picks, in [`Component::ALL`] order.
    pub picks: Vec<Pick>,
    /// Total memory in bits ([`MemoryReport::total_bits`] of `spec`).
    pub total_bits: u64,
    /// The budget it was searched under.
    pub budget_bits: u64,
    /// Sum of the picks' costs (the minimised objective).
    pub cost: f64,
    /// [`MemoryReport::savings_percent`] of `spec`.
    pub savings_percent: f64,
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Largest DP table (budget units x components) the exact search accepts, so a huge budget
/// fails with a message instead of exhausting memory.
const MAX_CELLS: u64 = 400_000_000;

/// Exact search: one choice per component from `choices`, total bits `<= budget`, least total
/// cost; ties go to more bits. Fails when even the narrowest choices exceed the budget.
pub fn allocate(
    dims: ModelDims,
    choices: &BTreeMap<QuantPoint, Vec<Choice>>,
    budget: Budget,
) -> Result<Allocation> {
    let per_block = choices.keys().any(|p| p.block.is_some());
    let values = point_values(dims, per_block);
    let comps: Vec<(QuantPoint, u64, &Vec<Choice>)> = values
        .iter()
        .map(|(c, n)| {
            choices
                .get(c)
                .filter(|l| !l.is_empty())
                .map(|l| (*c, *n, l))
                .ok_or_else(|| invalid(format!("no candidates for `{c}`")))
        })
        .collect::<Result<_>>()?;
    // Rows no quantizer controls (a norm's 32-bit scale and shift) cost the same in every
    // spec: they come off the budget first.
    let fixed = MemoryReport::new(dims, &QuantSpec::fp32()).total_bits()
        - comps
            .iter()
            .map(|(_, n, _)| n * u64::from(FLOAT_BITS))
            .sum::<u64>();
    let min_bits: u64 = fixed
        + comps
            .iter()
            .map(|(_, n, l)| l.iter().map(|ch| n * u64::from(ch.bits)).min().unwrap_or(0))
            .sum::<u64>();
    if min_bits > budget.bits {
        return Err(invalid(format!(
            "budget {} bits ({:.1} bytes) is below the smallest candidate spec, {min_bits} bits",
            budget.bits,
            budget.bytes()
        )));
    }
    let unit = comps
        .iter()
        .flat_map(|(_, n, l)| l.iter().map(move |ch| n * u64::from(ch.bits)))
        .fold(0, gcd)
        .max(1);
    let cap = ((budget.bits - fixed) / unit) as usize;
    if (cap as u64 + 1) * comps.len() as u64 > MAX_CELLS {
        return Err(invalid(format!(
            "budget of {} units of {unit} bits is too large for the exact search",
            cap
        )));
    }
    // best[w] = least cost of the components so far within w units; pick[i][w] = choice index.
    let mut best = vec![0.0f64; cap + 1];
    let mut pick: Vec<Vec<u16>> = Vec::with_capacity(comps.len());
    for (_, n, list) in &comps {
        let mut next = vec![f64::INFINITY; cap + 1];
        let mut arg = vec![u16::MAX; cap + 1];
        for (k, ch) in list.iter().enumerate() {
            let w = (n * u64::from(ch.bits) / unit) as usize;
            for cap_w in w..=cap {
                let c = best[cap_w - w] + ch.cost;
                if c < next[cap_w] {
                    next[cap_w] = c;
                    arg[cap_w] = k as u16;
                }
            }
        }
        best = next;
        pick.push(arg);
    }
    // Walk back from the full budget.
    let mut w = cap;
    let mut chosen = vec![0usize; comps.len()];
    for i in (0..comps.len()).rev() {
        let k = pick[i][w];
        if k == u16::MAX {
            return Err(invalid("no feasible allocation (internal)".into()));
        }
        chosen[i] = k as usize;
        let (_, n, list) = &comps[i];
        w -= (n * u64::from(list[k as usize].bits) / unit) as usize;
    }
    let mut spec = QuantSpec::fp32();
    let mut picks = Vec::new();
    for ((item, n, list), k) in comps.iter().zip(&chosen) {
        let ch = &list[*k];
        let c = item.component;
        match item.block {
            None => {
                if ch.bits != FLOAT_BITS {
                    spec.set(c, Some(c.default_config(ch.bits)));
                }
                if c == Component::ABar {
                    spec.a_bar_grid = ch.grid;
                }
            }
            // Per-block items are overrides of a base that keeps them in float.
            // (The grid is Cartesian for every point but `Abar`, see `choices`.)
            Some(i) if ch.bits != FLOAT_BITS => {
                spec.set_block(Some(i), c, PointOverride::width(ch.bits, ch.grid))?;
            }
            Some(_) => {}
        }
        picks.push(Pick {
            component: c,
            block: item.block,
            bits: ch.bits,
            grid: ch.grid,
            cost: ch.cost,
            memory_bits: n * u64::from(ch.bits),
        });
    }
    if spec.get(Component::ABar).is_none() {
        spec.a_bar_grid = AbarGrid::Cartesian;
    }
    spec.validate()?;
    let report = MemoryReport::new(dims, &spec);
    let total_bits = report.total_bits();
    let sum: u64 = picks.iter().map(|p| p.memory_bits).sum();
    if total_bits != sum + fixed || total_bits > budget.bits {
        return Err(invalid(format!(
            "memory check failed: report {total_bits} bits, picks {sum} + fixed {fixed}, budget {}",
            budget.bits
        )));
    }
    Ok(Allocation {
        cost: picks.iter().map(|p| p.cost).sum(),
        savings_percent: report.savings_percent(),
        spec,
        picks,
        total_bits,
        budget_bits: budget.bits,
    })
}
