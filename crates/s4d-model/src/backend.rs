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
