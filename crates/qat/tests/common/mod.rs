//! Helpers shared by the qat integration tests: a seeded generator (no `rand` dependency, the
//! same values on every platform) and reading tensors back.

#![allow(dead_code)] // each test binary uses a subset

use burn::prelude::*;
use qat::quantizer::to_host;

/// The next state of a 64-bit linear congruential generator (Knuth's MMIX constants).
fn next(s: &mut u64) -> u64 {
    *s = s
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *s
}

/// `n` values in `[-1, 1)` from `seed`.
pub fn uniform_signed(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| ((next(&mut s) >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0)
        .collect()
}

/// `n` values in `[0, 1)` from `seed`.
pub fn uniform_unit(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| (next(&mut s) >> 40) as f32 / (1u64 << 24) as f32)
        .collect()
}

/// A tensor's values on the host (test tensors are always readable f32).
pub fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    to_host(t).expect("test tensors are readable")
}
