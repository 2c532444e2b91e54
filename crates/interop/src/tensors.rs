//! Reading and writing safetensors containers as named `f32` host arrays.
//!
//! Checkpoints are small (a few thousand to a few hundred thousand parameters), so every tensor
//! is copied into an owned buffer once; conversion to `f32` and the finiteness check happen only
//! for the tensors a layout asks for, so unrelated entries (optimizer step counters, buffers of
//! other modules) never fail an import.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::{Dtype, SafeTensors};

use crate::error::InteropError;

/// A float tensor on the host, row-major, values as `f32`.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// Dimensions, outermost first (PyTorch order).
    pub shape: Vec<usize>,
    /// `shape.iter().product()` values.
    pub data: Vec<f32>,
}

impl HostTensor {
    /// Pairs a shape and its row-major values; the caller guarantees they agree.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Self { shape, data }
    }
}

/// One raw entry of a container: dtype, shape and the little-endian bytes.
#[derive(Debug, Clone)]
struct RawEntry {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

/// The tensors of one safetensors file, looked up by name with errors that name the tensor.
#[derive(Debug, Clone)]
pub struct TensorFile {
    origin: String,
    entries: BTreeMap<String, RawEntry>,
    metadata: BTreeMap<String, String>,
}

impl TensorFile {
    /// Reads and validates the container at `path` (header, offsets, sizes).
    pub fn open(path: &Path) -> Result<Self, InteropError> {
        let bytes = std::fs::read(path).map_err(|source| InteropError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&bytes, &path.display().to_string())
    }

    /// Parses an in-memory container; `origin` names it in error messages.
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Self, InteropError> {
        let container_error = |e: safetensors::SafeTensorError| InteropError::Container {
            origin: origin.to_string(),
            detail: e.to_string(),
        };
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(container_error)?;
        let parsed = SafeTensors::deserialize(bytes).map_err(container_error)?;
        let entries = parsed
            .iter()
            .map(|(name, view)| {
                let entry = RawEntry {
                    dtype: view.dtype(),
                    shape: view.shape().to_vec(),
                    bytes: view.data().to_vec(),
                };
                (name.to_string(), entry)
            })
            .collect();
        let metadata = header
            .metadata()
            .as_ref()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        Ok(Self {
            origin: origin.to_string(),
            entries,
            metadata,
        })
    }

    /// Where the file came from, for messages.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Tensor names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Whether a tensor of that name exists (whatever its dtype).
    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// The free-form `__metadata__` of the header.
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// Up to 40 tensor names with shapes, for error messages.
    pub fn summary(&self) -> String {
        const SHOWN: usize = 40;
        let mut parts: Vec<String> = self
            .entries
            .iter()
            .take(SHOWN)
            .map(|(name, e)| format!("{name} {:?} {}", e.shape, e.dtype))
            .collect();
        if self.entries.len() > SHOWN {
            parts.push(format!("... ({} more)", self.entries.len() - SHOWN));
        }
        if parts.is_empty() {
            "nothing".to_string()
        } else {
            parts.join(", ")
        }
    }

    /// The tensor `name` converted to `f32`, rejecting non-float dtypes and non-finite values.
    ///
    /// A complex (`C64`) tensor of shape `s` comes back as the real view `s + [2]`
    /// (`[..., 0]` real part, `[..., 1]` imaginary part), the layout `torch.view_as_real` gives.
    /// `role` says what the tensor is for when it is missing.
    pub fn get(&self, name: &str, role: &str) -> Result<HostTensor, InteropError> {
        let entry = self
            .entries
            .get(name)
            .ok_or_else(|| InteropError::MissingTensor {
                name: name.to_string(),
                role: role.to_string(),
                origin: self.origin.clone(),
                available: self.summary(),
            })?;
        let (data, shape) = match entry.dtype {
            Dtype::F32 => (
                decode::<4>(&entry.bytes, f32::from_le_bytes),
                entry.shape.clone(),
            ),
            Dtype::F64 => (
                decode::<8>(&entry.bytes, |b| f64::from_le_bytes(b) as f32),
                entry.shape.clone(),
            ),
            Dtype::F16 => (
                decode::<2>(&entry.bytes, |b| f16_to_f32(u16::from_le_bytes(b))),
                entry.shape.clone(),
            ),
            Dtype::BF16 => (
                decode::<2>(&entry.bytes, |b| {
                    f32::from_bits(u32::from(u16::from_le_bytes(b)) << 16)
                }),
                entry.shape.clone(),
            ),
            Dtype::C64 => {
                let mut shape = entry.shape.clone();
                shape.push(2);
                (decode::<4>(&entry.bytes, f32::from_le_bytes), shape)
            }
            other => {
                return Err(InteropError::NotFloat {
                    name: name.to_string(),
                    dtype: other.to_string(),
                });
            }
        };
        check_finite(name, &data)?;
        Ok(HostTensor::new(shape, data))
    }
}

/// Little-endian fixed-width decoding; the container parser already checked the byte count.
fn decode<const W: usize>(bytes: &[u8], f: impl Fn([u8; W]) -> f32) -> Vec<f32> {
    bytes
        .chunks_exact(W)
        .map(|chunk| {
            let mut word = [0u8; W];
            word.copy_from_slice(chunk);
            f(word)
        })
        .collect()
}

/// IEEE 754 half precision to single precision (exact: every f16 is an f32).
fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let mant = u32::from(h & 0x3ff);
    let bits = match (exp, mant) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal: value = mant * 2^-24, which f32 represents exactly.
            let value = mant as f32 * f32::from_bits(0x3380_0000); // 2^-24
            return if sign != 0 { -value } else { value };
        }
        (0x1f, 0) => sign | 0x7f80_0000,
        (0x1f, _) => sign | 0x7fc0_0000 | (mant << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (mant << 13),
    };
    f32::from_bits(bits)
}

/// Rejects NaN and infinities with the first offending index.
pub(crate) fn check_finite(name: &str, data: &[f32]) -> Result<(), InteropError> {
    let mut bad = data.iter().enumerate().filter(|(_, v)| !v.is_finite());
    if let Some((index, &value)) = bad.next() {
        return Err(InteropError::NonFinite {
            name: name.to_string(),
            index,
            value,
            count: 1 + bad.count(),
        });
    }
    Ok(())
}

/// Serializes named `f32` tensors as a safetensors container with header metadata.
pub fn write_safetensors(
    tensors: &[(String, HostTensor)],
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<u8>, InteropError> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, t)| {
            let raw = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
            (name.clone(), t.shape.clone(), raw)
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(name, shape, raw)| {
            safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), raw)
                .map(|view| (name.as_str(), view))
                .map_err(|e| InteropError::Serialize(format!("tensor `{name}`: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let info: HashMap<String, String> = metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    safetensors::serialize(views, Some(info)).map_err(|e| InteropError::Serialize(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::f16_to_f32;

    #[test]
    fn half_precision_decodes_exactly() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert!(f16_to_f32(0x7e00).is_nan());
    }
}
