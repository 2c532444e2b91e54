//! Reader for NumPy `.npy` arrays and `.npz` archives, the way most Python
//! pipelines hand over preprocessed features (`np.save`, `np.savez`,
//! `np.savez_compressed`).
//!
//! # Arrays
//! Header versions 1.0, 2.0 and 3.0; C or Fortran order (Fortran arrays are
//! reordered to C order). Little-endian (or byte-order-free) dtypes only:
//! floats `<f4 <f8`, integers `|i1 <i2 <i4 <i8 |u1 <u2 <u4 <u8`, `|b1`,
//! fixed-width strings `<U n` (UTF-32) and `|S n` (bytes). Refused with a
//! clear error: big-endian data, `f2` (half floats), complex, object
//! (pickled) and structured dtypes.
//!
//! # Datasets
//! `X` is `[n, L]` (one channel) or `[n, L, d]`, float32 or float64, without
//! NaN/inf in the real steps. `y` is `[n]` (or `[n, 1]`): integers, floats
//! holding whole numbers (both non-negative) or strings. An `.npz` holds `X`
//! and `y` (also accepted: `x`, `Y`) and optionally `lengths` (`[n]`
//! integers in `1..=L`: steps past a sequence's length are ignored). A plain
//! `.npy` X file takes its labels from an explicit path or from the sibling
//! whose name has the first `X` replaced by `y` (`X_train.npy` ->
//! `y_train.npy`). Numeric labels become class indices by sorting the
//! distinct values of the training file (see [`crate::files`]).

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{DatasetError, Location};
use crate::zip::ZipArchive;

/// The element values of an array, widened to one type per kind.
#[derive(Clone, Debug, PartialEq)]
pub enum NpyData {
    /// `<f4`.
    F32(Vec<f32>),
    /// `<f8`.
    F64(Vec<f64>),
    /// Any integer or bool dtype, widened (a `u8` value above `i64::MAX` is an error).
    Int(Vec<i64>),
    /// `<U n` or `|S n`, trailing NULs removed.
    Text(Vec<String>),
}

impl NpyData {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Self::F32(v) => v.len(),
            Self::F64(v) => v.len(),
            Self::Int(v) => v.len(),
            Self::Text(v) => v.len(),
        }
    }

    /// Whether there is no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The dtype family, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::F32(_) => "float32",
            Self::F64(_) => "float64",
            Self::Int(_) => "integer",
            Self::Text(_) => "string",
        }
    }
}

/// One decoded array in C (row-major) order.
///
/// Exists so `.npy` files and `.npz` members go through the same dataset
/// checks whatever their dtype or memory order was.
#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray {
    /// Dimensions (empty for a scalar).
    pub shape: Vec<usize>,
    /// Elements, row-major.
    pub data: NpyData,
}

/// A minimal Python literal, enough for the `.npy` header dict.
#[derive(Clone, Debug, PartialEq)]
enum PyVal {
    Str(String),
    Bool(bool),
    Int(u64),
    Seq(Vec<PyVal>),
    Dict(Vec<(String, PyVal)>),
    None,
}

/// Recursive-descent parser over the header text.
struct PyParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl PyParser<'_> {
    fn skip_ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.skip_ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Result<PyVal, String> {
        if depth > 8 {
            return Err("header nested too deeply".into());
        }
        self.skip_ws();
        let Some(&c) = self.s.get(self.i) else {
            return Err("header ends early".into());
        };
        match c {
            b'\'' | b'"' => {
                self.i += 1;
                let start = self.i;
                while self.i < self.s.len() && self.s[self.i] != c {
                    self.i += 1;
                }
                if self.i >= self.s.len() {
                    return Err("unterminated string".into());
                }
                let text = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
                self.i += 1;
                Ok(PyVal::Str(text))
            }
            b'(' | b'[' => {
                self.i += 1;
                let close = if c == b'(' { b')' } else { b']' };
                let mut items = Vec::new();
                loop {
                    if self.eat(close) {
                        return Ok(PyVal::Seq(items));
                    }
                    items.push(self.value(depth + 1)?);
                    if !self.eat(b',') {
                        if self.eat(close) {
                            return Ok(PyVal::Seq(items));
                        }
                        return Err("expected `,` or a closing bracket".into());
                    }
                }
            }
            b'{' => {
                self.i += 1;
                let mut items = Vec::new();
                loop {
                    if self.eat(b'}') {
                        return Ok(PyVal::Dict(items));
                    }
                    let PyVal::Str(key) = self.value(depth + 1)? else {
                        return Err("dict keys must be strings".into());
                    };
                    if !self.eat(b':') {
                        return Err(format!("expected `:` after key '{key}'"));
                    }
                    items.push((key, self.value(depth + 1)?));
                    if !self.eat(b',') {
                        if self.eat(b'}') {
                            return Ok(PyVal::Dict(items));
                        }
                        return Err("expected `,` or `}`".into());
                    }
                }
            }
            _ => {
                let start = self.i;
                while self.i < self.s.len()
                    && (self.s[self.i].is_ascii_alphanumeric() || self.s[self.i] == b'_')
                {
                    self.i += 1;
                }
                let word = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
                match word {
                    "True" => Ok(PyVal::Bool(true)),
                    "False" => Ok(PyVal::Bool(false)),
                    "None" => Ok(PyVal::None),
                    "" => Err(format!("unexpected character `{}`", c as char)),
                    w => w
                        .trim_end_matches('L')
                        .parse()
                        .map(PyVal::Int)
                        .map_err(|_| format!("unexpected token `{w}`")),
                }
            }
        }
    }
}

/// Element type of an array.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Dtype {
    Float(usize),
    Int(usize),
    UInt(usize),
    Bool,
    Unicode(usize),
    Bytes(usize),
}

impl Dtype {
    fn item_size(self) -> usize {
        match self {
            Self::Float(n) | Self::Int(n) | Self::UInt(n) | Self::Bytes(n) => n,
            Self::Bool => 1,
            Self::Unicode(n) => 4 * n,
        }
    }
}

fn parse_descr(descr: &str) -> Result<Dtype, String> {
    let (order, rest) = descr.split_at(descr.len().min(1));
    let kind = rest.chars().next().unwrap_or(' ');
    if kind == 'O' {
        return Err(
            "object arrays (pickled Python objects) are not supported; save labels as integers or fixed-width strings (arr.astype('U'))"
                .into(),
        );
    }
    let size: usize = rest
        .get(1..)
        .unwrap_or("")
        .parse()
        .map_err(|_| format!("dtype `{descr}` is not supported"))?;
    let one_byte = matches!((kind, size), ('i' | 'u' | 'b' | 'S', 1) | ('S', _));
    match order {
        "<" | "|" => {}
        "=" if cfg!(target_endian = "little") => {}
        ">" if one_byte => {}
        ">" => {
            return Err(format!(
                "big-endian dtype `{descr}` is not supported; convert with arr.astype('<{kind}{size}')"
            ));
        }
        _ => return Err(format!("dtype `{descr}` is not supported")),
    }
    match (kind, size) {
        ('f', 4 | 8) => Ok(Dtype::Float(size)),
        ('f', 2) => Err(format!(
            "float16 (`{descr}`) is not supported; save as float32 (arr.astype('<f4'))"
        )),
        ('i', 1 | 2 | 4 | 8) => Ok(Dtype::Int(size)),
        ('u', 1 | 2 | 4 | 8) => Ok(Dtype::UInt(size)),
        ('b', 1) => Ok(Dtype::Bool),
        ('U', n) if n > 0 => Ok(Dtype::Unicode(n)),
        ('S', n) if n > 0 => Ok(Dtype::Bytes(n)),
        ('c', _) => Err(format!("complex dtype `{descr}` is not supported")),
        _ => Err(format!("dtype `{descr}` is not supported")),
    }
}

/// The index in Fortran memory order of each C-order position.
fn fortran_to_c<T: Clone>(data: &[T], shape: &[usize]) -> Vec<T> {
    if shape.len() < 2 {
        return data.to_vec();
    }
    let mut strides = vec![1usize; shape.len()];
    for k in 1..shape.len() {
        strides[k] = strides[k - 1] * shape[k - 1];
    }
    let mut index = vec![0usize; shape.len()];
    let mut out = Vec::with_capacity(data.len());
    for _ in 0..data.len() {
        let off: usize = index.iter().zip(&strides).map(|(i, s)| i * s).sum();
        out.push(data[off].clone());
        for k in (0..shape.len()).rev() {
            index[k] += 1;
            if index[k] < shape[k] {
                break;
            }
            index[k] = 0;
        }
    }
    out
}

/// Parses the bytes of one `.npy` file; `path` and `field` (e.g. `"X"`)
/// name it in errors.
pub fn parse_npy(bytes: &[u8], path: &Path, field: &str) -> Result<NpyArray, DatasetError> {
    let err = |what: &str, reason: String| {
        DatasetError::parse(path, Location::Field(format!("{field} ({what})")), reason)
    };
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(err(
            "magic",
            "bad magic: not a .npy file (expected \\x93NUMPY)".into(),
        ));
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (header_len, header_start): (usize, usize) = match major {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        _ => {
            return Err(err(
                "header",
                format!("unsupported .npy format version {major}.{minor}"),
            ));
        }
    };
    let header_end = header_start
        .checked_add(header_len)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| {
            err(
                "header",
                format!(
                    "header of {header_len} bytes runs past the end of the file ({} bytes)",
                    bytes.len()
                ),
            )
        })?;
    let header_text = &bytes[header_start..header_end];
    let mut parser = PyParser {
        s: header_text,
        i: 0,
    };
    let dict = match parser.value(0) {
        Ok(PyVal::Dict(d)) => d,
        Ok(_) => return Err(err("header", "bad header: not a dict".into())),
        Err(e) => return Err(err("header", format!("bad header: {e}"))),
    };
    let get = |k: &str| dict.iter().find(|(key, _)| key == k).map(|(_, v)| v);
    let dtype = match get("descr") {
        Some(PyVal::Str(d)) => parse_descr(d).map_err(|e| err("dtype", e))?,
        Some(PyVal::Seq(_)) => {
            return Err(err(
                "dtype",
                "structured (record) dtypes are not supported".into(),
            ));
        }
        _ => return Err(err("header", "bad header: no 'descr' string".into())),
    };
    let fortran = match get("fortran_order") {
        Some(PyVal::Bool(b)) => *b,
        _ => {
            return Err(err(
                "header",
                "bad header: no 'fortran_order' True/False".into(),
            ));
        }
    };
    let shape: Vec<usize> = match get("shape") {
        Some(PyVal::Seq(items)) => items
            .iter()
            .map(|v| match v {
                PyVal::Int(n) => usize::try_from(*n).ok(),
                _ => None,
            })
            .collect::<Option<_>>()
            .ok_or_else(|| {
                err(
                    "header",
                    "bad header: 'shape' is not a tuple of integers".into(),
                )
            })?,
        _ => return Err(err("header", "bad header: no 'shape' tuple".into())),
    };
    let count = shape
        .iter()
        .try_fold(1usize, |a, &b| a.checked_mul(b))
        .ok_or_else(|| err("header", format!("shape {shape:?} is too large")))?;
    let expected = count
        .checked_mul(dtype.item_size())
        .ok_or_else(|| err("header", format!("shape {shape:?} is too large")))?;
    let body = &bytes[header_end..];
    if body.len() != expected {
        return Err(err(
            "data",
            format!(
                "expected {expected} bytes of data for shape {shape:?}, found {}{}",
                body.len(),
                if body.len() < expected {
                    " (truncated file)"
                } else {
                    ""
                }
            ),
        ));
    }
    let size = dtype.item_size();
    let chunks = body.chunks_exact(size.max(1));
    let data = match dtype {
        Dtype::Float(4) => NpyData::F32(
            chunks
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        Dtype::Float(_) => NpyData::F64(
            chunks
                .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                .collect(),
        ),
        Dtype::Int(n) => NpyData::Int(
            chunks
                .map(|c| {
                    // Sign-extend from the top byte.
                    let mut buf = if c[n - 1] & 0x80 != 0 {
                        [0xFF; 8]
                    } else {
                        [0; 8]
                    };
                    buf[..n].copy_from_slice(c);
                    i64::from_le_bytes(buf)
                })
                .collect(),
        ),
        Dtype::UInt(n) => {
            let mut out = Vec::with_capacity(count);
            for (i, c) in chunks.enumerate() {
                let mut buf = [0u8; 8];
                buf[..n].copy_from_slice(c);
                let v = u64::from_le_bytes(buf);
                out.push(i64::try_from(v).map_err(|_| {
                    err(&format!("element {i}"), format!("value {v} is too large"))
                })?);
            }
            NpyData::Int(out)
        }
        Dtype::Bool => NpyData::Int(chunks.map(|c| i64::from(c[0] != 0)).collect()),
        Dtype::Unicode(_) => {
            let mut out = Vec::with_capacity(count);
            for (i, c) in chunks.enumerate() {
                let mut s = String::new();
                for cp in c.chunks_exact(4) {
                    let cp = u32::from_le_bytes([cp[0], cp[1], cp[2], cp[3]]);
                    if cp == 0 {
                        break;
                    }
                    s.push(char::from_u32(cp).ok_or_else(|| {
                        err(
                            &format!("element {i}"),
                            format!("invalid unicode code point {cp:#x}"),
                        )
                    })?);
                }
                out.push(s);
            }
            NpyData::Text(out)
        }
        Dtype::Bytes(_) => NpyData::Text(
            chunks
                .map(|c| {
                    let end = c.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
                    String::from_utf8_lossy(&c[..end]).into_owned()
                })
                .collect(),
        ),
    };
    let data = if fortran {
        match data {
            NpyData::F32(v) => NpyData::F32(fortran_to_c(&v, &shape)),
            NpyData::F64(v) => NpyData::F64(fortran_to_c(&v, &shape)),
            NpyData::Int(v) => NpyData::Int(fortran_to_c(&v, &shape)),
            NpyData::Text(v) => NpyData::Text(fortran_to_c(&v, &shape)),
        }
    } else {
        data
    };
    Ok(NpyArray { shape, data })
}

fn read_bytes(path: &Path, what: &str) -> Result<Vec<u8>, DatasetError> {
    if !path.is_file() {
        return Err(DatasetError::Missing {
            path: path.to_path_buf(),
            hint: format!("check the path given for the {what}"),
        });
    }
    fs::read(path).map_err(DatasetError::io(path))
}

/// Reads one `.npy` file; `field` names the array's role in errors (`"X"`, `"y"`).
pub fn read_npy(path: &Path, field: &str) -> Result<NpyArray, DatasetError> {
    let bytes = read_bytes(path, ".npy file")?;
    parse_npy(&bytes, path, field)
}

/// Reads every `*.npy` member of an `.npz` archive (stored or deflated), as
/// `(name without .npy, array)` in archive order.
pub fn read_npz(path: &Path) -> Result<Vec<(String, NpyArray)>, DatasetError> {
    let bytes = read_bytes(path, ".npz file")?;
    let zip = ZipArchive::new(&bytes, path)?;
    let mut out = Vec::new();
    for member in &zip.members {
        let Some(name) = member.name.strip_suffix(".npy") else {
            continue;
        };
        let data = zip.read(member)?;
        out.push((name.to_string(), parse_npy(&data, path, name)?));
    }
    Ok(out)
}

/// The labels file that goes with a plain `.npy` X file: its name with the
/// first `X` replaced by `y` (`X_train.npy` -> `y_train.npy`), or `None` if
/// the name has no `X`.
pub fn sibling_labels_path(x_path: &Path) -> Option<PathBuf> {
    let name = x_path.file_name()?.to_str()?;
    let at = name.find('X')?;
    let mut sibling = name.to_string();
    sibling.replace_range(at..at + 1, "y");
    Some(x_path.with_file_name(sibling))
}

/// Sequences and raw labels taken from `X`, `y` (and `lengths`) arrays,
/// checked; the common result of the `.npy` and `.npz` loaders.
#[derive(Clone, Debug, PartialEq)]
pub struct NpySequences {
    /// Channels per step.
    pub d_input: usize,
    /// Each sequence time-major, cut to its length.
    pub sequences: Vec<Vec<f32>>,
    /// Labels as text (`"3"` for integer 3; strings as stored).
    pub labels: Vec<String>,
    /// Whether the labels were numbers (sorted numerically) or strings.
    pub numeric_labels: bool,
}

/// Checks and combines the arrays. `x_file`/`y_file` name where `X` and `y`
/// came from (the same `.npz`, or two `.npy` files); `lengths` lives with X.
pub fn sequences_from_arrays(
    x: &NpyArray,
    x_file: &Path,
    y: &NpyArray,
    y_file: &Path,
    lengths: Option<&NpyArray>,
) -> Result<NpySequences, DatasetError> {
    let xerr =
        |loc: String, reason: String| DatasetError::parse(x_file, Location::Field(loc), reason);
    let yerr =
        |loc: String, reason: String| DatasetError::parse(y_file, Location::Field(loc), reason);
    for (arr, file, field) in [(x, x_file, "X"), (y, y_file, "y")]
        .into_iter()
        .chain(lengths.map(|l| (l, x_file, "lengths")))
    {
        let count = arr.shape.iter().try_fold(1usize, |a, &b| a.checked_mul(b));
        if count != Some(arr.data.len()) {
            return Err(DatasetError::parse(
                file,
                Location::Field(field.into()),
                format!(
                    "shape {:?} does not match its {} elements",
                    arr.shape,
                    arr.data.len()
                ),
            ));
        }
    }
    let (n, steps, d) = match x.shape[..] {
        [n, l] => (n, l, 1),
        [n, l, d] => (n, l, d),
        _ => {
            return Err(xerr(
                "X".into(),
                format!("X must have shape [n, L] or [n, L, d], found {:?}", x.shape),
            ));
        }
    };
    if n == 0 || steps == 0 || d == 0 {
        return Err(xerr(
            "X".into(),
            format!("X of shape {:?} holds no sequences", x.shape),
        ));
    }
    let values: Vec<f64> = match &x.data {
        NpyData::F32(v) => v.iter().map(|&f| f64::from(f)).collect(),
        NpyData::F64(v) => v.clone(),
        other => {
            return Err(xerr(
                "X".into(),
                format!(
                    "X must be float32 or float64 (`<f4`/`<f8`), found {}; convert with X.astype('float32')",
                    other.kind()
                ),
            ));
        }
    };
    let y_ok = matches!(y.shape[..], [m] | [m, 1] if m == n);
    if !y_ok {
        return Err(yerr(
            "y".into(),
            format!(
                "y has shape {:?} but X has {n} sequences (expected [{n}])",
                y.shape
            ),
        ));
    }
    let (labels, numeric_labels) = match &y.data {
        NpyData::Int(v) => {
            if let Some(i) = v.iter().position(|&l| l < 0) {
                return Err(yerr(format!("y[{i}]"), format!("negative label {}", v[i])));
            }
            (v.iter().map(i64::to_string).collect(), true)
        }
        NpyData::F32(_) | NpyData::F64(_) => {
            let v: Vec<f64> = match &y.data {
                NpyData::F32(v) => v.iter().map(|&f| f64::from(f)).collect(),
                NpyData::F64(v) => v.clone(),
                _ => Vec::new(),
            };
            let mut out = Vec::with_capacity(v.len());
            for (i, &l) in v.iter().enumerate() {
                if !l.is_finite() || l.fract() != 0.0 || l.abs() > 9.0e15 {
                    return Err(yerr(
                        format!("y[{i}]"),
                        format!("label {l} is not a whole number"),
                    ));
                }
                if l < 0.0 {
                    return Err(yerr(format!("y[{i}]"), format!("negative label {l}")));
                }
                out.push((l as i64).to_string());
            }
            (out, true)
        }
        NpyData::Text(v) => {
            if let Some(i) = v.iter().position(|s| s.trim().is_empty()) {
                return Err(yerr(format!("y[{i}]"), "empty label".into()));
            }
            (v.iter().map(|s| s.trim().to_string()).collect(), false)
        }
    };
    let lens: Vec<usize> = match lengths {
        None => vec![steps; n],
        Some(arr) => {
            let NpyData::Int(v) = &arr.data else {
                return Err(xerr(
                    "lengths".into(),
                    format!("lengths must be integers, found {}", arr.data.kind()),
                ));
            };
            if arr.shape[..] != [n] {
                return Err(xerr(
                    "lengths".into(),
                    format!("lengths has shape {:?}, expected [{n}]", arr.shape),
                ));
            }
            let mut out = Vec::with_capacity(n);
            for (i, &l) in v.iter().enumerate() {
                match usize::try_from(l) {
                    Ok(l) if (1..=steps).contains(&l) => out.push(l),
                    _ => {
                        return Err(xerr(
                            format!("lengths[{i}]"),
                            format!("length {l} is outside 1..={steps}"),
                        ));
                    }
                }
            }
            out
        }
    };
    let row = steps * d;
    let mut sequences = Vec::with_capacity(n);
    for (i, &len) in lens.iter().enumerate() {
        let real = &values[i * row..i * row + len * d];
        if let Some(p) = real.iter().position(|v| !v.is_finite()) {
            let (t, c) = (p / d, p % d);
            let what = if real[p].is_nan() {
                "NaN: missing values are not supported; impute them first".to_string()
            } else {
                format!("{} is not finite", real[p])
            };
            return Err(xerr(
                format!("X[{i}, {t}, {c}]"),
                format!("{what} (sequence {i}, step {t}, channel {c})"),
            ));
        }
        if let Some(p) = real.iter().position(|v| v.abs() > f64::from(f32::MAX)) {
            let (t, c) = (p / d, p % d);
            return Err(xerr(
                format!("X[{i}, {t}, {c}]"),
                format!("{} overflows float32", real[p]),
            ));
        }
        sequences.push(real.iter().map(|&v| v as f32).collect());
    }
    Ok(NpySequences {
        d_input: d,
        sequences,
        labels,
        numeric_labels,
    })
}

/// Loads an `.npz` holding `X` (or `x`), `y` (or `Y`) and optionally `lengths`.
pub fn read_npz_sequences(path: &Path) -> Result<NpySequences, DatasetError> {
    let arrays = read_npz(path)?;
    let find = |names: &[&str]| {
        arrays
            .iter()
            .find(|(n, _)| names.contains(&n.as_str()))
            .map(|(_, a)| a)
    };
    let listed = || {
        let names: Vec<&str> = arrays.iter().map(|(n, _)| n.as_str()).collect();
        format!("[{}]", names.join(", "))
    };
    let x = find(&["X", "x"]).ok_or_else(|| {
        DatasetError::parse(
            path,
            Location::Field("X".into()),
            format!("no array `X` (or `x`); the archive holds {}", listed()),
        )
    })?;
    let y = find(&["y", "Y"]).ok_or_else(|| {
        DatasetError::parse(
            path,
            Location::Field("y".into()),
            format!("no array `y` (or `Y`); the archive holds {}", listed()),
        )
    })?;
    sequences_from_arrays(x, path, y, path, find(&["lengths"]))
}

/// Loads a plain `.npy` X file and its labels: `labels` if given, else the
/// sibling from [`sibling_labels_path`].
pub fn read_npy_sequences(
    x_path: &Path,
    labels: Option<&Path>,
) -> Result<NpySequences, DatasetError> {
    let y_path = match labels {
        Some(p) => p.to_path_buf(),
        None => {
            let hint = "store X and y together in an .npz (np.savez(path, X=X, y=y)) or give the labels file with \
                        the `train_labels`/`test_labels` keys of the dataset TOML";
            let sibling = sibling_labels_path(x_path).ok_or_else(|| {
                DatasetError::parse(
                    x_path,
                    Location::File,
                    format!(
                        "cannot find the labels: the file name has no `X` to replace by `y`; {hint}"
                    ),
                )
            })?;
            if !sibling.is_file() {
                return Err(DatasetError::Missing {
                    path: sibling,
                    hint: format!(
                        "looked for the labels of {} there; {hint}",
                        x_path.display()
                    ),
                });
            }
            sibling
        }
    };
    let x = read_npy(x_path, "X")?;
    let y = read_npy(&y_path, "y")?;
    sequences_from_arrays(&x, x_path, &y, &y_path, None)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A v1.0 `.npy` file from a header dict and raw little-endian data.
    pub(crate) fn npy_bytes(descr: &str, shape: &[usize], fortran: bool, data: &[u8]) -> Vec<u8> {
        let shape_txt = match shape {
            [one] => format!("({one},)"),
            _ => format!(
                "({})",
                shape
                    .iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let order = if fortran { "True" } else { "False" };
        let mut header =
            format!("{{'descr': '{descr}', 'fortran_order': {order}, 'shape': {shape_txt}, }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    pub(crate) fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn decodes_dtypes_and_fortran_order() {
        let p = Path::new("a.npy");
        let a = parse_npy(
            &npy_bytes("<f4", &[2, 3], false, &f32_bytes(&[0., 1., 2., 3., 4., 5.])),
            p,
            "X",
        )
        .unwrap();
        assert_eq!(a.shape, [2, 3]);
        assert_eq!(a.data, NpyData::F32(vec![0., 1., 2., 3., 4., 5.]));
        // Fortran order: memory holds column-major [[0,1,2],[3,4,5]] = 0,3,1,4,2,5.
        let f = parse_npy(
            &npy_bytes("<f4", &[2, 3], true, &f32_bytes(&[0., 3., 1., 4., 2., 5.])),
            p,
            "X",
        )
        .unwrap();
        assert_eq!(f, a);
        let i = parse_npy(
            &npy_bytes("<i2", &[3], false, &[1, 0, 0xFE, 0xFF, 0, 0x80]),
            p,
            "y",
        )
        .unwrap();
        assert_eq!(i.data, NpyData::Int(vec![1, -2, -32768]));
        let u = parse_npy(&npy_bytes("|u1", &[2], false, &[200, 7]), p, "y").unwrap();
        assert_eq!(u.data, NpyData::Int(vec![200, 7]));
        let mut s = Vec::new();
        for word in ["ab", "é"] {
            let mut cps: Vec<u32> = word.chars().map(u32::from).collect();
            cps.resize(2, 0);
            s.extend(cps.iter().flat_map(|c| c.to_le_bytes()));
        }
        let t = parse_npy(&npy_bytes("<U2", &[2], false, &s), p, "y").unwrap();
        assert_eq!(t.data, NpyData::Text(vec!["ab".into(), "é".into()]));
        let b = parse_npy(&npy_bytes("|S3", &[2], false, b"ab\0xyz"), p, "y").unwrap();
        assert_eq!(b.data, NpyData::Text(vec!["ab".into(), "xyz".into()]));
        let d = parse_npy(
            &npy_bytes("<f8", &[1], false, &1.5f64.to_le_bytes()),
            p,
            "y",
        )
        .unwrap();
        assert_eq!(d.data, NpyData::F64(vec![1.5]));
    }

    #[test]
    fn header_versions_2_and_3() {
        let v1 = npy_bytes("<f4", &[1, 1], false, &f32_bytes(&[7.0]));
        let header = &v1[10..];
        for major in [2u8, 3] {
            let mut v = vec![0x93, b'N', b'U', b'M', b'P', b'Y', major, 0];
            let hlen = header.len() - 4;
            v.extend_from_slice(&(hlen as u32).to_le_bytes());
            v.extend_from_slice(header);
            let a = parse_npy(&v, Path::new("v.npy"), "X").unwrap();
            assert_eq!(a.data, NpyData::F32(vec![7.0]));
        }
    }

    #[test]
    fn sibling_name_replaces_first_x() {
        assert_eq!(
            sibling_labels_path(Path::new("/d/X_train.npy")).unwrap(),
            Path::new("/d/y_train.npy")
        );
        assert_eq!(
            sibling_labels_path(Path::new("train_X.npy")).unwrap(),
            Path::new("train_y.npy")
        );
        assert!(sibling_labels_path(Path::new("/X/features.npy")).is_none());
    }
}
