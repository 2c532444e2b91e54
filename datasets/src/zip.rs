//! A minimal reader for ZIP archives: `.npz` files (`np.savez`,
//! `np.savez_compressed`) and Python wheels (UCR `.ts` files in `aeon`).
//!
//! Written here instead of taking the `zip` crate because both uses need only
//! "list members, read one member" on an in-memory archive with stored or
//! deflated members, which `flate2` (already a dependency) covers. Reads the
//! central directory (with ZIP64 sizes/offsets, which NumPy writes), checks
//! every member's CRC-32 and refuses encryption and other compressions.

use std::io::Read;
use std::path::Path;

use crate::error::{DatasetError, Location};

const EOCD_SIG: u32 = 0x0605_4b50;
const ZIP64_EOCD_LOCATOR_SIG: u32 = 0x0706_4b50;
const ZIP64_EOCD_SIG: u32 = 0x0606_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const LOCAL_SIG: u32 = 0x0403_4b50;

/// One member of an archive, as listed in its central directory.
#[derive(Clone, Debug)]
pub(crate) struct ZipMember {
    /// Path inside the archive (`X.npy`, `aeon/datasets/data/...`).
    pub name: String,
    method: u16,
    flags: u16,
    crc: u32,
    compressed_size: u64,
    size: u64,
    local_offset: u64,
}

/// An archive held in memory with its member list.
pub(crate) struct ZipArchive<'a> {
    bytes: &'a [u8],
    path: &'a Path,
    /// Members in central-directory order.
    pub members: Vec<ZipMember>,
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn le64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

impl<'a> ZipArchive<'a> {
    /// Parses the central directory of `bytes`; `path` names the archive in errors.
    pub(crate) fn new(bytes: &'a [u8], path: &'a Path) -> Result<Self, DatasetError> {
        let err = |reason: String| DatasetError::parse(path, Location::File, reason);
        let corrupt = |what: &str| err(format!("not a valid zip archive: {what}"));
        // End of central directory: 22 bytes + comment (<= 65535), search backwards.
        let min_start = bytes.len().saturating_sub(22 + 0xFFFF);
        let eocd = (min_start..=bytes.len().saturating_sub(22))
            .rev()
            .find(|&i| le32(bytes, i) == Some(EOCD_SIG))
            .ok_or_else(|| corrupt("no end-of-central-directory record (truncated file?)"))?;
        let mut count = u64::from(le16(bytes, eocd + 10).ok_or_else(|| corrupt("short EOCD"))?);
        let mut cd_size = u64::from(le32(bytes, eocd + 12).ok_or_else(|| corrupt("short EOCD"))?);
        let mut cd_offset = u64::from(le32(bytes, eocd + 16).ok_or_else(|| corrupt("short EOCD"))?);
        if eocd >= 20 && le32(bytes, eocd - 20) == Some(ZIP64_EOCD_LOCATOR_SIG) {
            let rec = le64(bytes, eocd - 12).ok_or_else(|| corrupt("short ZIP64 locator"))?;
            let rec = usize::try_from(rec).map_err(|_| corrupt("ZIP64 record offset"))?;
            if le32(bytes, rec) != Some(ZIP64_EOCD_SIG) {
                return Err(corrupt("bad ZIP64 end-of-central-directory record"));
            }
            count = le64(bytes, rec + 32).ok_or_else(|| corrupt("short ZIP64 record"))?;
            cd_size = le64(bytes, rec + 40).ok_or_else(|| corrupt("short ZIP64 record"))?;
            cd_offset = le64(bytes, rec + 48).ok_or_else(|| corrupt("short ZIP64 record"))?;
        }
        let start = usize::try_from(cd_offset).map_err(|_| corrupt("central directory offset"))?;
        let end = usize::try_from(cd_size)
            .ok()
            .and_then(|s| start.checked_add(s))
            .filter(|&e| e <= bytes.len())
            .ok_or_else(|| corrupt("central directory lies outside the file"))?;
        let mut members = Vec::new();
        let mut at = start;
        for i in 0..count {
            let bad = |what: &str| corrupt(&format!("central directory entry {i}: {what}"));
            if at + 46 > end || le32(bytes, at) != Some(CENTRAL_SIG) {
                return Err(bad("bad signature"));
            }
            let field16 = |o: usize| le16(bytes, at + o).unwrap_or(0);
            let field32 = |o: usize| le32(bytes, at + o).unwrap_or(0);
            let (flags, method, crc) = (field16(8), field16(10), field32(16));
            let mut compressed_size = u64::from(field32(20));
            let mut size = u64::from(field32(24));
            let (name_len, extra_len, comment_len) = (
                field16(28) as usize,
                field16(30) as usize,
                field16(32) as usize,
            );
            let mut local_offset = u64::from(field32(42));
            let name_end = at + 46 + name_len;
            let extra_end = name_end + extra_len;
            if extra_end + comment_len > end {
                return Err(bad("name or extra field runs past the directory"));
            }
            let name = String::from_utf8_lossy(&bytes[at + 46..name_end]).into_owned();
            // ZIP64 extended information (id 1): the 0xFFFFFFFF fields, in order.
            let mut x = name_end;
            while x + 4 <= extra_end {
                let id = le16(bytes, x).unwrap_or(0);
                let len = le16(bytes, x + 2).unwrap_or(0) as usize;
                if id == 1 {
                    let mut p = x + 4;
                    let limit = (x + 4 + len).min(extra_end);
                    let mut next = |slot: &mut u64| {
                        if *slot == 0xFFFF_FFFF && p + 8 <= limit {
                            *slot = le64(bytes, p).unwrap_or(*slot);
                            p += 8;
                        }
                    };
                    next(&mut size);
                    next(&mut compressed_size);
                    next(&mut local_offset);
                }
                x += 4 + len;
            }
            members.push(ZipMember {
                name,
                method,
                flags,
                crc,
                compressed_size,
                size,
                local_offset,
            });
            at = extra_end + comment_len;
        }
        Ok(Self {
            bytes,
            path,
            members,
        })
    }

    /// The member called `name`, if any.
    pub(crate) fn find(&self, name: &str) -> Option<&ZipMember> {
        self.members.iter().find(|m| m.name == name)
    }

    /// Decompresses one member and checks its size and CRC-32.
    pub(crate) fn read(&self, member: &ZipMember) -> Result<Vec<u8>, DatasetError> {
        let err = |reason: String| {
            DatasetError::parse(
                self.path,
                Location::Field(format!("zip member `{}`", member.name)),
                reason,
            )
        };
        if member.flags & 1 != 0 {
            return Err(err("encrypted zip members are not supported".into()));
        }
        let at = usize::try_from(member.local_offset)
            .map_err(|_| err("local header offset too large".into()))?;
        if le32(self.bytes, at) != Some(LOCAL_SIG) {
            return Err(err(
                "bad local header signature (corrupt or truncated archive)".into(),
            ));
        }
        let name_len = le16(self.bytes, at + 26).unwrap_or(0) as usize;
        let extra_len = le16(self.bytes, at + 28).unwrap_or(0) as usize;
        let data_start = at + 30 + name_len + extra_len;
        if data_start > self.bytes.len() {
            return Err(err("local header runs past the end of the archive".into()));
        }
        let available = self.bytes.len() - data_start;
        let csize = usize::try_from(member.compressed_size).unwrap_or(usize::MAX);
        if csize > available {
            return Err(err(format!(
                "expected {csize} bytes of compressed data, found {available}"
            )));
        }
        let raw = &self.bytes[data_start..data_start + csize];
        let size = usize::try_from(member.size)
            .map_err(|_| err(format!("member size {} too large", member.size)))?;
        let data = match member.method {
            0 => raw.to_vec(),
            8 => {
                // The declared size is untrusted: reserve at most 64 MiB up front.
                let mut out = Vec::with_capacity(size.min(1 << 26));
                flate2::read::DeflateDecoder::new(raw)
                    .take(member.size.saturating_add(1))
                    .read_to_end(&mut out)
                    .map_err(|e| err(format!("corrupt deflate data: {e}")))?;
                out
            }
            m => {
                return Err(err(format!(
                    "compression method {m} is not supported (only stored and deflate)"
                )));
            }
        };
        if data.len() != size {
            return Err(err(format!(
                "expected {size} bytes of data, found {}",
                data.len()
            )));
        }
        let mut crc = flate2::Crc::new();
        crc.update(&data);
        if crc.sum() != member.crc {
            return Err(err(format!(
                "CRC-32 mismatch (stored {:08x}, computed {:08x}): corrupt archive",
                member.crc,
                crc.sum()
            )));
        }
        Ok(data)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A stored-member archive built by hand: local header, data, central
    /// directory entry, end record.
    pub(crate) fn stored_zip(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut central = Vec::new();
        for (name, data) in files {
            let mut crc = flate2::Crc::new();
            crc.update(data);
            let offset = out.len() as u32;
            let common = |v: &mut Vec<u8>| {
                v.extend_from_slice(&20u16.to_le_bytes()); // version needed
                v.extend_from_slice(&0u16.to_le_bytes()); // flags
                v.extend_from_slice(&0u16.to_le_bytes()); // stored
                v.extend_from_slice(&[0; 4]); // time, date
                v.extend_from_slice(&crc.sum().to_le_bytes());
                v.extend_from_slice(&(data.len() as u32).to_le_bytes());
                v.extend_from_slice(&(data.len() as u32).to_le_bytes());
                v.extend_from_slice(&(name.len() as u16).to_le_bytes());
                v.extend_from_slice(&0u16.to_le_bytes()); // extra len
            };
            out.extend_from_slice(&LOCAL_SIG.to_le_bytes());
            common(&mut out);
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(data);
            central.extend_from_slice(&CENTRAL_SIG.to_le_bytes());
            central.extend_from_slice(&20u16.to_le_bytes()); // version made by
            common(&mut central);
            central.extend_from_slice(&[0; 6]); // comment len, disk, internal attrs
            central.extend_from_slice(&[0; 4]); // external attrs
            central.extend_from_slice(&offset.to_le_bytes());
            central.extend_from_slice(name.as_bytes());
        }
        let cd_offset = out.len() as u32;
        out.extend_from_slice(&central);
        out.extend_from_slice(&EOCD_SIG.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&(files.len() as u16).to_le_bytes());
        out.extend_from_slice(&(files.len() as u16).to_le_bytes());
        out.extend_from_slice(&(central.len() as u32).to_le_bytes());
        out.extend_from_slice(&cd_offset.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out
    }

    #[test]
    fn reads_stored_members_and_detects_corruption() {
        let bytes = stored_zip(&[("a.txt", b"hello"), ("b/c.bin", &[1, 2, 3])]);
        let p = Path::new("t.zip");
        let z = ZipArchive::new(&bytes, p).unwrap();
        let names: Vec<&str> = z.members.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["a.txt", "b/c.bin"]);
        assert_eq!(z.read(z.find("a.txt").unwrap()).unwrap(), b"hello");
        assert!(z.find("zz").is_none());

        let mut bad = bytes.clone();
        let at = bad.windows(5).position(|w| w == b"hello").unwrap();
        bad[at] = b'j';
        let z = ZipArchive::new(&bad, p).unwrap();
        let msg = z.read(&z.members[0]).unwrap_err().to_string();
        assert!(msg.contains("t.zip") && msg.contains("CRC-32"), "{msg}");

        let msg = ZipArchive::new(&bytes[..bytes.len() - 30], p)
            .err()
            .unwrap()
            .to_string();
        assert!(
            msg.contains("t.zip") && msg.contains("not a valid zip"),
            "{msg}"
        );
    }
}
