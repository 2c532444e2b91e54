//! Turning a `--device` name into a burn [`Device`].

use anyhow::{Result, bail};
use burn::prelude::*;
use clap::ValueEnum;
use serde::{Deserialize, Serialize};

/// Backends a run can be placed on; GPU ones exist only when compiled in (`--features wgpu`,
/// `--features cuda`), and asking for a missing one is an error, not a silent CPU fallback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DeviceName {
    /// burn's pure-Rust CPU backend (default).
    #[default]
    Flex,
    /// The ndarray CPU backend (deprecated upstream, kept for comparison).
    Ndarray,
    /// wgpu (Vulkan/Metal/DX12; lavapipe on a CPU-only Linux box).
    Wgpu,
    /// CUDA.
    Cuda,
}

impl DeviceName {
    /// The inference device (no autodiff).
    pub fn device(self) -> Result<Device> {
        Ok(match self {
            DeviceName::Flex => Device::flex(),
            #[allow(deprecated)] // NdArray is deprecated upstream; users asked to keep it.
            DeviceName::Ndarray => Device::ndarray(),
            DeviceName::Wgpu => wgpu_device()?,
            DeviceName::Cuda => cuda_device()?,
        })
    }
}

#[cfg(feature = "wgpu")]
fn wgpu_device() -> Result<Device> {
    Ok(Device::wgpu(Default::default()))
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_device() -> Result<Device> {
    bail!("this binary was built without wgpu; rebuild with `--features wgpu`")
}

#[cfg(feature = "cuda")]
fn cuda_device() -> Result<Device> {
    Ok(Device::cuda(0))
}

#[cfg(not(feature = "cuda"))]
fn cuda_device() -> Result<Device> {
    bail!("this binary was built without CUDA; rebuild with `--features cuda`")
}
