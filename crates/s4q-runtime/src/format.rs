//! The binary model file (`.s4qm`), versions 2 and 3: layout, checksum and a bounds-checked
//! reader.
//!
//! Version 2 (issue 20) replaced version 1's 64-bit state update with the 32-bit one (`Abar`
//! pre-scaled to `i32`, a global `state_shift`, per-head `w_max` bounds) and bit-packs weight
//! codes; a version-1 file is rejected with [`Error::UnsupportedVersion`] (re-export it).
//!
//! Version 3 (issue 18) carries stacked blocks: after the dimensions, the bytes `blocks`
//! (`1..=MAX_BLOCKS`), `pool_frac`, 0, 0; the input grid and encoder; the sigmoid table; then
//! per block the bytes `frac`, `state_shift`, residual flag (0/1), norm kind (0 none, 1
//! LayerNorm, 2 BatchNorm after the residual sum; 3 LayerNorm, 4 BatchNorm on the block
//! input), the block's arrays in version 2's order (from `a_re` to the GLU grid, without the
//! sigmoid table), the residual stage (`f` and `x` requantizations, `u8` fraction bits,
//! residual grid) and the norm stage (kinds 3 and 4 first: the `i32` pair `lo`, `hi` the
//! block input is clamped to, and for kind 3 a `u8` root fraction width; LayerNorm: a
//! one-element `i64` array with the eps term, then the affine; BatchNorm: the affine; an
//! affine is `i32` multipliers, `i64` biases, a `u8` shift and the output grid); then the
//! decoder and logits as in version 2. Kinds 3 and 4 came after the first version-3 files,
//! which they leave byte for byte as they were. The exporter still writes version 2 for the paper's one-block model (no
//! residual, no norm), so those files and their golden outputs are unchanged, and this
//! runtime reads both.
//!
//! All integers are little-endian. A 16-byte header:
//!
//! | offset | type | field |
//! |---|---|---|
//! | 0 | `[u8; 4]` | magic `S4QM` |
//! | 4 | `u16` | format version (2 or 3) |
//! | 6 | `u16` | flags (0; anything else is rejected) |
//! | 8 | `u32` | payload length in bytes (the file is exactly header + payload) |
//! | 12 | `u32` | CRC-32 (IEEE, as zlib) of the payload |
//!
//! The payload is a sequence of fields in a fixed order (see [`crate::Model::parse`] and
//! `qat::integer::IntegerModel::to_bytes`, which writes it). Scalars are bare; every array is a
//! `u32` element count followed by the elements, and the count must equal the length the
//! dimensions imply, so a file can never make the runtime index past an array. Weight codes
//! are *packed*: a `u8` width `b` in `1..=8`, the `u32` count `n`, then `ceil(n b / 8)` bytes
//! holding the codes' low `b` bits LSB-first (code `i` at bit `i b`), sign-extended on read.

use core::fmt;

/// First four bytes of every model file.
pub const MAGIC: [u8; 4] = *b"S4QM";
/// The current format version (stacked blocks with residual and norm stages); what the
/// exporter writes for any model but the paper's one-block one.
pub const VERSION: u16 = 3;
/// The one-block format (issue 20), still written for the paper's model (one block, no
/// residual, no norm), so its committed exports stay byte for byte, and still read.
pub const VERSION_ONE_BLOCK: u16 = 2;
/// Header size in bytes.
pub const HEADER_LEN: usize = 16;

/// Why a model file (or a call) was rejected. Parsing never panics: every defect is one of
/// these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Shorter than the header, or a field runs past the end of the payload.
    Truncated {
        /// The field being read.
        field: &'static str,
    },
    /// The first four bytes are not `S4QM`.
    BadMagic,
    /// A version this runtime does not read.
    UnsupportedVersion(u16),
    /// Reserved flags set.
    UnsupportedFlags(u16),
    /// Header length disagrees with the file size.
    LengthMismatch {
        /// Payload length in the header.
        declared: u32,
        /// Bytes present after the header.
        actual: usize,
    },
    /// Payload CRC-32 differs from the header's.
    Checksum {
        /// CRC in the header.
        expected: u32,
        /// CRC of the bytes.
        actual: u32,
    },
    /// An array's element count is not what the dimensions require.
    ArrayLength {
        /// The array.
        field: &'static str,
        /// Count the dimensions imply.
        expected: usize,
        /// Count in the file.
        found: u32,
    },
    /// A value outside its allowed range (dimension, shift, zero point, grid bound, ...).
    InvalidValue {
        /// The field.
        field: &'static str,
    },
    /// Bytes left after the last field.
    TrailingBytes(usize),
    /// A caller buffer (input, output, state) has the wrong length for this model.
    BufferSize {
        /// Which buffer.
        buffer: &'static str,
        /// Length the model needs.
        expected: usize,
        /// Length given.
        found: usize,
    },
    /// More time steps than the runtime's bound ([`crate::MAX_STEPS`]).
    SequenceTooLong,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated { field } => write!(f, "file truncated while reading `{field}`"),
            Error::BadMagic => write!(f, "not an s4q model file (bad magic)"),
            Error::UnsupportedVersion(v) => {
                write!(
                    f,
                    "format version {v} is not supported (this runtime reads versions \
                     {VERSION_ONE_BLOCK} and {VERSION} only; re-export the model with \
                     `experiments export`)"
                )
            }
            Error::UnsupportedFlags(x) => write!(f, "unsupported header flags {x:#06x}"),
            Error::LengthMismatch { declared, actual } => write!(
                f,
                "header declares a {declared}-byte payload but {actual} bytes follow"
            ),
            Error::Checksum { expected, actual } => write!(
                f,
                "payload checksum {actual:#010x} differs from the header's {expected:#010x}"
            ),
            Error::ArrayLength {
                field,
                expected,
                found,
            } => write!(f, "`{field}` has {found} elements, expected {expected}"),
            Error::InvalidValue { field } => write!(f, "`{field}` is out of its valid range"),
            Error::TrailingBytes(n) => write!(f, "{n} unexpected bytes after the last field"),
            Error::BufferSize {
                buffer,
                expected,
                found,
            } => write!(f, "{buffer} buffer has length {found}, expected {expected}"),
            Error::SequenceTooLong => write!(f, "sequence longer than the runtime's step limit"),
        }
    }
}

/// CRC-32 (IEEE 802.3 polynomial, reflected, as zlib's `crc32`), bitwise: no table, so no RAM
/// and 4 KB less flash; the check runs once per load.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

/// Validates the header and returns the payload.
pub fn split_header(file: &[u8]) -> Result<&[u8], Error> {
    split_header_versioned(file).map(|(_, p)| p)
}

/// Validates the header and returns the format version and the payload.
pub fn split_header_versioned(file: &[u8]) -> Result<(u16, &[u8]), Error> {
    let header = file
        .get(..HEADER_LEN)
        .ok_or(Error::Truncated { field: "header" })?;
    if header[0..4] != MAGIC {
        return Err(Error::BadMagic);
    }
    let version = u16::from_le_bytes([header[4], header[5]]);
    if version != VERSION && version != VERSION_ONE_BLOCK {
        return Err(Error::UnsupportedVersion(version));
    }
    let flags = u16::from_le_bytes([header[6], header[7]]);
    if flags != 0 {
        return Err(Error::UnsupportedFlags(flags));
    }
    let declared = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
    let expected = u32::from_le_bytes([header[12], header[13], header[14], header[15]]);
    let payload = &file[HEADER_LEN..];
    if declared as usize != payload.len() {
        return Err(Error::LengthMismatch {
            declared,
            actual: payload.len(),
        });
    }
    let actual = crc32(payload);
    if actual != expected {
        return Err(Error::Checksum { expected, actual });
    }
    Ok((version, payload))
}

/// Cursor over the payload; every read is bounds-checked.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], Error> {
        let end = self.pos.checked_add(n).ok_or(Error::Truncated { field })?;
        let out = self
            .bytes
            .get(self.pos..end)
            .ok_or(Error::Truncated { field })?;
        self.pos = end;
        Ok(out)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, Error> {
        Ok(self.take(1, field)?[0])
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, Error> {
        let b = self.take(2, field)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    pub(crate) fn i32(&mut self, field: &'static str) -> Result<i32, Error> {
        let b = self.take(4, field)?;
        Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// An element count (`u32`) that must equal `len`.
    fn count(&mut self, len: usize, field: &'static str) -> Result<(), Error> {
        let found = {
            let b = self.take(4, field)?;
            u32::from_le_bytes([b[0], b[1], b[2], b[3]])
        };
        if found as usize != len {
            return Err(Error::ArrayLength {
                field,
                expected: len,
                found,
            });
        }
        Ok(())
    }

    /// An array of `len` elements of `width` bytes, after its `u32` count.
    pub(crate) fn array(
        &mut self,
        len: usize,
        width: usize,
        field: &'static str,
    ) -> Result<&'a [u8], Error> {
        self.count(len, field)?;
        let bytes = len.checked_mul(width).ok_or(Error::Truncated { field })?;
        self.take(bytes, field)
    }

    /// `len` codes of `bits` bits packed LSB-first, after their `u32` count.
    pub(crate) fn packed(
        &mut self,
        len: usize,
        bits: usize,
        field: &'static str,
    ) -> Result<&'a [u8], Error> {
        self.count(len, field)?;
        let bits_total = len.checked_mul(bits).ok_or(Error::Truncated { field })?;
        self.take(bits_total.div_ceil(8), field)
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_zlib() {
        // zlib.crc32(b"123456789") == 0xCBF43926 (the standard check value).
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }
}
