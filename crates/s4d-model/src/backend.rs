use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

use burn::backend::DispatchDevice;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// Which execution backend a [`Device`] runs on, with autodiff peeled off. burn tensors carry
/// no backend type, so code that must pick an algorithm per backend (FFT or not) asks this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// burn's pure-Rust CPU backend.
    Flex,
    /// The (deprecated upstream) ndarray CPU backend.
    NdArray,
    /// A CubeCL GPU runtime (wgpu, CUDA, ...).
    Cube,
    /// Anything else (remote, capture, libtorch).
    Other,
}

/// Classifies a device by backend.
pub fn backend_kind(device: &Device) -> BackendKind {
    match device.clone().inner().as_dispatch() {
        DispatchDevice::Flex(_) => BackendKind::Flex,
        DispatchDevice::NdArray(_) => BackendKind::NdArray,
        #[cfg(any(feature = "wgpu", feature = "cuda"))]
        DispatchDevice::Cube(_) => BackendKind::Cube,
        #[allow(unreachable_patterns)]
        _ => BackendKind::Other,
    }
}

/// Whether `burn::signal::rfft` runs on this device. It has kernels for Flex and the CubeCL
/// runtimes only; the composed convolution falls back to a Toeplitz product elsewhere (the
/// layer itself runs the fused realfft op on Flex and NdArray).
pub fn has_native_fft(device: &Device) -> bool {
    matches!(backend_kind(device), BackendKind::Flex | BackendKind::Cube)
}

/// The two implementations of the model's hot ops (S4D convolution and scan, pointwise
/// activation/GLU, fake quantization): one function each, so every model runs on either.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpPath {
    /// Hand-written host kernels with their own backward (CPU backends).
    Fused,
    /// burn tensor ops (any backend; what GPUs run).
    Composed,
}

/// Environment variable that forces [`OpPath::Composed`] everywhere when set to `1`
/// (read once, at the first op): checks a model against the composed ops without code.
pub const FORCE_COMPOSED_ENV: &str = "S4Q_FORCE_COMPOSED";

/// 0 = not decided yet, 1 = automatic, 2 = forced composed.
static PATH_MODE: AtomicU8 = AtomicU8::new(0);
static ENV_FORCED: OnceLock<bool> = OnceLock::new();

/// Forces the composed ops on every device (`true`) or returns to the automatic choice
/// (`false`). Process-wide: a test that flips it should own its process.
pub fn set_force_composed(on: bool) {
    PATH_MODE.store(if on { 2 } else { 1 }, Ordering::SeqCst);
}

/// Whether the composed ops are forced (by [`set_force_composed`] or [`FORCE_COMPOSED_ENV`]).
pub fn force_composed() -> bool {
    match PATH_MODE.load(Ordering::Relaxed) {
        1 => false,
        2 => true,
        _ => *ENV_FORCED
            .get_or_init(|| std::env::var(FORCE_COMPOSED_ENV).is_ok_and(|v| v.trim() == "1")),
    }
}

/// The one place that decides which implementation runs on `device`: the fused host
/// kernels on the CPU backends, the composed tensor ops elsewhere or when forced.
pub fn op_path(device: &Device) -> OpPath {
    if force_composed() {
        return OpPath::Composed;
    }
    match backend_kind(device) {
        BackendKind::Flex | BackendKind::NdArray => OpPath::Fused,
        BackendKind::Cube | BackendKind::Other => OpPath::Composed,
    }
}
