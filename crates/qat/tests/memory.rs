//! Memory report numbers for S4D-64 against a hand computation.

use qat::{MemoryReport, ModelDims, QuantSpec};
use s4d_model::S4dClassifierConfig;

fn s4d64() -> ModelDims {
    ModelDims::from_config(&S4dClassifierConfig::preset("s4d-64h").unwrap())
}

#[test]
fn s4d64_w8a8_and_w4a6_a8x8() {
    // Values: weights 128 + 3*4096 + 64 + 8320 + 650 = 21450; state 4096;
    // activations 1 + 64 + 64 + 128 + 64 + 10 = 331; total 25877 -> FP32 828064 bits.
    let r = MemoryReport::new(s4d64(), &QuantSpec::preset("w8a8").unwrap());
    assert_eq!(r.fp32_bits(), 828_064);
    assert_eq!(r.total_bits(), 25_877 * 8);
    assert!((r.savings_percent() - 75.0).abs() < 1e-9);
    // W4A6, Abar 8, state 8: 4*(21450 - 4096) + 8*4096 + 8*4096 + 6*331 = 136938 bits.
    let r = MemoryReport::new(s4d64(), &QuantSpec::preset("w4a6-a8x8").unwrap());
    assert_eq!(r.total_bits(), 136_938);
    let want = 100.0 * (1.0 - 136_938.0 / 828_064.0); // 83.46 %
    assert!((r.savings_percent() - want).abs() < 1e-9);
    let table = r.to_string();
    assert!(
        table.contains("| a_bar | Weight | 4096 | 8 | 4096.0 |"),
        "{table}"
    );
    let fp = MemoryReport::new(s4d64(), &QuantSpec::fp32());
    assert_eq!(fp.savings_percent(), 0.0);
}
