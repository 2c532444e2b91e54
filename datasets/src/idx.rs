//! Reader and writer for the IDX format used by MNIST and Fashion-MNIST.
//!
//! Only the two layouts those sets use are supported: unsigned-byte images
//! (magic `0x00000803`, dims `[n, rows, cols]`) and unsigned-byte labels
//! (magic `0x00000801`, dims `[n]`). All integers are big-endian. Files may be
//! raw or gzip-compressed; compression is detected from the gzip magic bytes
//! (`1f 8b`), not from the file name. Every size is bounds-checked, so a
//! truncated or corrupt file yields [`DatasetError::Idx`] naming the file
//! instead of a panic.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;

use crate::error::DatasetError;

/// Magic number of an IDX file holding `u8` images `[n, rows, cols]`.
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file holding `u8` labels `[n]`.
pub const LABELS_MAGIC: u32 = 0x0000_0801;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// A stack of greyscale images as stored in an IDX file.
///
/// Exists as the neutral in-memory form between files (read or written) and
/// [`crate::SequenceDataset`], which flattens each image into a sequence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxImages {
    /// Number of images.
    pub n: usize,
    /// Rows per image.
    pub rows: usize,
    /// Columns per image.
    pub cols: usize,
    /// Row-major pixels `[n, rows, cols]`, 0 = background, 255 = ink.
    pub pixels: Vec<u8>,
}

impl IdxImages {
    /// Pixels of image `i` (`rows * cols` bytes), or `None` if out of range;
    /// used by converters and tests that inspect single digits.
    pub fn image(&self, i: usize) -> Option<&[u8]> {
        let size = self.rows * self.cols;
        let start = i.checked_mul(size)?;
        self.pixels.get(start..start.checked_add(size)?)
    }
}

/// Returns the path of `dir/name` or `dir/name.gz`, whichever exists (raw
/// first), so callers accept both the shipped `.gz` and a decompressed copy.
pub fn locate(dir: &Path, name: &str) -> Option<PathBuf> {
    let raw = dir.join(name);
    if raw.is_file() {
        return Some(raw);
    }
    let gz = dir.join(format!("{name}.gz"));
    gz.is_file().then_some(gz)
}

/// Reads a whole file and gunzips it if it starts with the gzip magic, so
/// parsing sees the same bytes whatever the file's compression.
fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, DatasetError> {
    let bytes = fs::read(path).map_err(DatasetError::io(path))?;
    decompress_if_gz(bytes, path)
}

/// Gunzips `bytes` if they start with the gzip magic; errors name `path`.
pub(crate) fn decompress_if_gz(bytes: Vec<u8>, path: &Path) -> Result<Vec<u8>, DatasetError> {
    if bytes.starts_with(&GZIP_MAGIC) {
        let mut out = Vec::new();
        GzDecoder::new(bytes.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| DatasetError::Idx {
                path: path.to_path_buf(),
                reason: format!("bad gzip stream: {e}"),
            })?;
        Ok(out)
    } else {
        Ok(bytes)
    }
}

/// Splits the header of an IDX byte buffer: checks the magic, reads
/// `n_dims` big-endian u32 dimensions and returns them with the payload.
fn parse_header<'a>(
    bytes: &'a [u8],
    magic: u32,
    n_dims: usize,
    path: &Path,
) -> Result<(Vec<usize>, &'a [u8]), DatasetError> {
    let err = |reason: String| DatasetError::Idx {
        path: path.to_path_buf(),
        reason,
    };
    let header_len = 4 * (1 + n_dims);
    let word = |i: usize| {
        u32::from_be_bytes([
            bytes[4 * i],
            bytes[4 * i + 1],
            bytes[4 * i + 2],
            bytes[4 * i + 3],
        ])
    };
    if bytes.len() >= 4 && word(0) != magic {
        return Err(err(format!(
            "bad magic number {:#010x}, expected {magic:#010x}",
            word(0)
        )));
    }
    if bytes.len() < header_len {
        return Err(err(format!(
            "truncated header: {} bytes, need {header_len}",
            bytes.len()
        )));
    }
    let dims: Vec<usize> = (1..=n_dims).map(|i| word(i) as usize).collect();
    Ok((dims, &bytes[header_len..]))
}

/// Parses an in-memory IDX image file (raw or gzip); `path` is only used to
/// name the source in errors (embedded data passes a pseudo-path).
pub fn parse_images(bytes: &[u8], path: &Path) -> Result<IdxImages, DatasetError> {
    let bytes = decompress_if_gz(bytes.to_vec(), path)?;
    let (dims, payload) = parse_header(&bytes, IMAGES_MAGIC, 3, path)?;
    let (n, rows, cols) = (dims[0], dims[1], dims[2]);
    let expected = n
        .checked_mul(rows)
        .and_then(|v| v.checked_mul(cols))
        .ok_or_else(|| DatasetError::Idx {
            path: path.to_path_buf(),
            reason: format!("dimensions {n}x{rows}x{cols} overflow"),
        })?;
    if payload.len() != expected {
        return Err(DatasetError::Idx {
            path: path.to_path_buf(),
            reason: format!(
                "{n} images of {rows}x{cols} need {expected} pixel bytes, found {}{}",
                payload.len(),
                if payload.len() < expected {
                    " (truncated)"
                } else {
                    ""
                }
            ),
        });
    }
    Ok(IdxImages {
        n,
        rows,
        cols,
        pixels: payload.to_vec(),
    })
}

/// Parses an in-memory IDX label file (raw or gzip); `path` names the source
/// in errors.
pub fn parse_labels(bytes: &[u8], path: &Path) -> Result<Vec<u8>, DatasetError> {
    let bytes = decompress_if_gz(bytes.to_vec(), path)?;
    let (dims, payload) = parse_header(&bytes, LABELS_MAGIC, 1, path)?;
    let n = dims[0];
    if payload.len() != n {
        return Err(DatasetError::Idx {
            path: path.to_path_buf(),
            reason: format!(
                "header says {n} labels, found {}{}",
                payload.len(),
                if payload.len() < n {
                    " (truncated)"
                } else {
                    ""
                }
            ),
        });
    }
    Ok(payload.to_vec())
}

/// Reads an IDX image file from disk (raw or gzip).
pub fn read_images(path: &Path) -> Result<IdxImages, DatasetError> {
    let bytes = read_maybe_gz(path)?;
    parse_images(&bytes, path)
}

/// Reads an IDX label file from disk (raw or gzip).
pub fn read_labels(path: &Path) -> Result<Vec<u8>, DatasetError> {
    let bytes = read_maybe_gz(path)?;
    parse_labels(&bytes, path)
}

/// Converts a dimension to the u32 the IDX header stores, naming `path` if
/// it does not fit.
fn dim_u32(v: usize, path: &Path) -> Result<[u8; 4], DatasetError> {
    u32::try_from(v)
        .map(u32::to_be_bytes)
        .map_err(|_| DatasetError::Idx {
            path: path.to_path_buf(),
            reason: format!("dimension {v} does not fit in u32"),
        })
}

/// Writes `header ++ payload` to `path`, gzip-compressed (best) if the file
/// name ends in `.gz`. Writes to a temporary sibling then renames, so an
/// interrupted write never leaves a half file under the final name.
fn write_idx(path: &Path, header: &[u8], payload: &[u8]) -> Result<(), DatasetError> {
    let mut data = Vec::with_capacity(header.len() + payload.len());
    data.extend_from_slice(header);
    data.extend_from_slice(payload);
    let gz = path.extension().is_some_and(|e| e == "gz");
    let bytes = if gz {
        let mut enc = GzEncoder::new(Vec::new(), Compression::best());
        enc.write_all(&data).map_err(DatasetError::io(path))?;
        enc.finish().map_err(DatasetError::io(path))?
    } else {
        data
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".part");
    let tmp = PathBuf::from(tmp);
    fs::write(&tmp, bytes).map_err(DatasetError::io(&tmp))?;
    fs::rename(&tmp, path).map_err(DatasetError::io(path))
}

/// Writes images as an IDX file (gzip if `path` ends in `.gz`); used by the
/// npm converter and by tests to build fixtures.
pub fn write_images(path: &Path, images: &IdxImages) -> Result<(), DatasetError> {
    let expected = images
        .n
        .checked_mul(images.rows)
        .and_then(|v| v.checked_mul(images.cols));
    if expected != Some(images.pixels.len()) {
        return Err(DatasetError::Idx {
            path: path.to_path_buf(),
            reason: format!(
                "refusing to write {} pixels as {}x{}x{}",
                images.pixels.len(),
                images.n,
                images.rows,
                images.cols
            ),
        });
    }
    let mut header = IMAGES_MAGIC.to_be_bytes().to_vec();
    for d in [images.n, images.rows, images.cols] {
        header.extend_from_slice(&dim_u32(d, path)?);
    }
    write_idx(path, &header, &images.pixels)
}

/// Writes labels as an IDX file (gzip if `path` ends in `.gz`).
pub fn write_labels(path: &Path, labels: &[u8]) -> Result<(), DatasetError> {
    let mut header = LABELS_MAGIC.to_be_bytes().to_vec();
    header.extend_from_slice(&dim_u32(labels.len(), path)?);
    write_idx(path, &header, labels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::TempDir;

    fn sample() -> IdxImages {
        IdxImages {
            n: 3,
            rows: 2,
            cols: 4,
            pixels: (0..24).map(|v| (v * 10) as u8).collect(),
        }
    }

    #[test]
    fn round_trip_raw_and_gz() {
        let dir = TempDir::new("idx-rt");
        for name in ["imgs", "imgs.gz"] {
            let p = dir.path().join(name);
            write_images(&p, &sample()).unwrap();
            assert_eq!(read_images(&p).unwrap(), sample());
            let lp = dir.path().join(format!("l-{name}"));
            write_labels(&lp, &[0, 9, 3]).unwrap();
            assert_eq!(read_labels(&lp).unwrap(), vec![0, 9, 3]);
        }
        let raw = fs::read(dir.path().join("imgs")).unwrap();
        assert_eq!(&raw[..4], &[0, 0, 8, 3]);
        assert_eq!(raw.len(), 16 + 24);
        let gz = fs::read(dir.path().join("imgs.gz")).unwrap();
        assert_eq!(&gz[..2], &GZIP_MAGIC);
    }

    #[test]
    fn gzip_detected_by_content_not_name() {
        let dir = TempDir::new("idx-sniff");
        let gz = dir.path().join("a.gz");
        write_images(&gz, &sample()).unwrap();
        let renamed = dir.path().join("no-extension");
        fs::rename(&gz, &renamed).unwrap();
        assert_eq!(read_images(&renamed).unwrap(), sample());
    }

    #[test]
    fn locate_prefers_raw_then_gz() {
        let dir = TempDir::new("idx-locate");
        assert_eq!(locate(dir.path(), "x"), None);
        write_labels(&dir.path().join("x.gz"), &[1]).unwrap();
        assert_eq!(locate(dir.path(), "x"), Some(dir.path().join("x.gz")));
        write_labels(&dir.path().join("x"), &[1]).unwrap();
        assert_eq!(locate(dir.path(), "x"), Some(dir.path().join("x")));
    }

    #[test]
    fn truncated_files_error_and_name_the_file() {
        let dir = TempDir::new("idx-trunc");
        let p = dir.path().join("imgs");
        write_images(&p, &sample()).unwrap();
        let full = fs::read(&p).unwrap();
        for cut in [0, 3, 7, 15, 16, 30, full.len() - 1] {
            fs::write(&p, &full[..cut]).unwrap();
            let err = read_images(&p).unwrap_err();
            assert!(matches!(err, DatasetError::Idx { .. }), "{err}");
            assert!(err.to_string().contains(&p.display().to_string()), "{err}");
        }
        let lp = dir.path().join("labels");
        write_labels(&lp, &[1, 2, 3]).unwrap();
        let full = fs::read(&lp).unwrap();
        fs::write(&lp, &full[..full.len() - 1]).unwrap();
        let err = read_labels(&lp).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
        assert!(err.to_string().contains(&lp.display().to_string()), "{err}");
    }

    #[test]
    fn truncated_gzip_stream_errors() {
        let dir = TempDir::new("idx-trunc-gz");
        let p = dir.path().join("imgs.gz");
        write_images(&p, &sample()).unwrap();
        let full = fs::read(&p).unwrap();
        fs::write(&p, &full[..full.len() / 2]).unwrap();
        let err = read_images(&p).unwrap_err();
        assert!(err.to_string().contains(&p.display().to_string()), "{err}");
    }

    #[test]
    fn bad_magic_and_huge_dims_error() {
        let dir = TempDir::new("idx-magic");
        let p = dir.path().join("labels-as-images");
        write_labels(&p, &[1, 2, 3]).unwrap();
        let err = read_images(&p).unwrap_err();
        assert!(err.to_string().contains("bad magic"), "{err}");
        assert!(err.to_string().contains(&p.display().to_string()), "{err}");

        let mut huge = IMAGES_MAGIC.to_be_bytes().to_vec();
        for _ in 0..3 {
            huge.extend_from_slice(&u32::MAX.to_be_bytes());
        }
        assert!(parse_images(&huge, Path::new("huge")).is_err());
    }

    #[test]
    fn missing_file_is_io_error_with_path() {
        let err = read_labels(Path::new("/nonexistent/s4q/labels")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/s4q/labels"));
    }
}
