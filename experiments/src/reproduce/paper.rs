//! The paper's numbers (Zhao et al., arXiv:2506.12480, as summarised in `shared/paper.md`),
//! printed beside ours so every table reads as a comparison.

use qat::{Component, Parameterization};

/// FP32 test accuracy (mean, std) on sMNIST per model preset (Table I).
pub fn float(model: &str) -> Option<(f64, f64)> {
    match model {
        "s4d-16h" => Some((97.200, 0.250)),
        "s4d-64h" => Some((98.792, 0.119)),
        "s4d-256h" => Some((99.248, 0.066)),
        "s4d-512h" => Some((99.270, 0.061)),
        _ => None,
    }
}

/// One row of Table III.
#[derive(Debug, Clone, Copy)]
pub struct Table3Row {
    /// Accuracy mean (%).
    pub acc: f64,
    /// Accuracy std over seeds.
    pub std: f64,
    /// Memory savings vs FP32 (%); `None` for the FP row.
    pub savings: Option<f64>,
}

/// Table III for `model`, rows in the order FP, PTQ W4A6 Abar 8x8, QAT W8A8, QAT W4A6 Abar
/// 16x16, 8x8, 6x6.
pub fn table3(model: &str) -> Option<[Table3Row; 6]> {
    let row = |_setting: &str, acc, std, savings| Table3Row { acc, std, savings };
    match model {
        "s4d-16h" => Some([
            row("FP", 97.20, 0.25, None),
            row("PTQ W4A6, Abar 8x8", 29.36, 14.58, Some(82.96)),
            row("QAT W8A8", 92.64, 0.62, Some(76.55)),
            row("QAT W4A6, Abar 16x16", 96.59, 0.30, Some(73.54)),
            row("QAT W4A6, Abar 8x8", 88.39, 1.40, Some(82.96)),
            row("QAT W4A6, Abar 6x6", 57.04, 3.13, Some(85.31)),
        ]),
        "s4d-64h" => Some([
            row("FP", 98.79, 0.12, None),
            row("PTQ W4A6, Abar 8x8", 39.46, 14.98, Some(84.05)),
            row("QAT W8A8", 97.66, 0.30, Some(76.29)),
            row("QAT W4A6, Abar 16x16", 98.62, 0.08, Some(76.70)),
            row("QAT W4A6, Abar 8x8", 95.99, 0.56, Some(84.05)),
            row("QAT W4A6, Abar 6x6", 84.21, 2.53, Some(85.89)),
        ]),
        _ => None,
    }
}

/// The QAT heatmap (S4D-64h, W4A6): accuracy for `method` (`None` = PTQ-static) at
/// `state_bits` in {16, 8, 7, 6} and `abar_bits` in {6, 7, 8, 16}.
pub fn heatmap_64h(
    method: Option<Parameterization>,
    state_bits: u32,
    abar_bits: u32,
) -> Option<f64> {
    const PTQ: [[f64; 4]; 4] = [
        [13.6, 33.2, 65.6, 86.0],
        [13.8, 27.9, 39.5, 50.9],
        [13.1, 15.4, 16.6, 21.8],
        [14.0, 13.9, 15.9, 17.3],
    ];
    const DISCRETE: [[f64; 4]; 4] = [
        [63.7, 86.0, 95.0, 97.6],
        [63.0, 84.8, 93.4, 96.5],
        [61.4, 82.4, 92.1, 94.8],
        [54.2, 76.5, 86.6, 90.5],
    ];
    const CONTINUOUS: [[f64; 4]; 4] = [
        [68.4, 90.7, 97.3, 98.6],
        [66.0, 85.3, 94.0, 97.1],
        [56.0, 71.0, 84.5, 92.1],
        [47.2, 57.1, 72.1, 79.2],
    ];
    const FROZEN: [[f64; 4]; 4] = [
        [93.2, 96.4, 97.7, 98.1],
        [90.7, 94.9, 96.0, 96.7],
        [88.3, 92.2, 94.1, 94.5],
        [82.7, 86.4, 88.5, 87.8],
    ];
    let row = [16, 8, 7, 6].iter().position(|&b| b == state_bits)?;
    let col = [6, 7, 8, 16].iter().position(|&b| b == abar_bits)?;
    let table = match method {
        None => &PTQ,
        Some(Parameterization::Discrete) => &DISCRETE,
        Some(Parameterization::Continuous) => &CONTINUOUS,
        Some(Parameterization::FrozenA) => &FROZEN,
    };
    Some(table[row][col])
}

/// The paper's PTQ sensitivity readings for S4D-16h (approximate, read off its figures):
/// one component quantized alone at `bits`.
pub fn sensitivity_16h(component: Component, bits: u32) -> Option<&'static str> {
    match (component, bits) {
        (Component::ABar, 8) => Some("~72"),
        (Component::ABar, b) if b <= 6 => Some("chance"),
        (Component::State, 8) => Some("~44 (static), ~88 (dynamic)"),
        (Component::BBar | Component::DBar, b) if b >= 4 => Some("holds"),
        (
            Component::Input
            | Component::SsmOutput
            | Component::Activation
            | Component::GluOutput
            | Component::Logits,
            b,
        ) if b >= 6 => Some("holds"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_numbers_match_paper_md() {
        assert_eq!(heatmap_64h(None, 16, 16), Some(86.0));
        assert_eq!(
            heatmap_64h(Some(Parameterization::FrozenA), 6, 6),
            Some(82.7)
        );
        assert_eq!(
            heatmap_64h(Some(Parameterization::Continuous), 7, 8),
            Some(84.5)
        );
        assert_eq!(
            heatmap_64h(Some(Parameterization::Discrete), 6, 8),
            Some(86.6)
        );
        assert_eq!(heatmap_64h(Some(Parameterization::Discrete), 5, 8), None);
        let t = table3("s4d-64h").unwrap();
        assert_eq!(t[4].acc, 95.99);
        assert_eq!(t[4].savings, Some(84.05));
        assert!(table3("s4d-256h").is_none());
        assert_eq!(float("s4d-16h"), Some((97.2, 0.25)));
    }
}
