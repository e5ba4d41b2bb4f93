//! The IDX format of (Fashion-)MNIST: a 4-byte magic (two zero bytes, a type code, the number
//! of dimensions), big-endian u32 dimensions, then the values. Gzipped files are detected by
//! their magic and decompressed on the fly.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// An unsigned-byte IDX array (the only type the image and label files use).
#[derive(Clone, Debug, PartialEq)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Reads an IDX file of unsigned bytes (type 0x08), gzipped or raw.
pub fn read_idx(path: &Path) -> Result<IdxArray> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_idx(&raw, path)
}

/// The largest IDX body pare reads: 2 GiB (Fashion-MNIST's training images are 47 MB).
pub const MAX_IDX_BYTES: usize = 1 << 31;

/// Parses IDX bytes (gzipped or raw); `path` is only used in error messages.
///
/// The header is read first and the body only up to the size it declares (plus one byte to
/// detect trailing data), so a small gzip stream that inflates to gigabytes is refused after
/// reading at most the declared size, never decompressed whole.
pub fn parse_idx(raw: &[u8], path: &Path) -> Result<IdxArray> {
    let err = |reason: String| Error::Idx {
        path: path.to_path_buf(),
        reason,
    };
    let gz = raw.starts_with(&[0x1f, 0x8b]);
    let mut input: Box<dyn Read + '_> = if gz {
        Box::new(flate2::read::GzDecoder::new(raw))
    } else {
        Box::new(raw)
    };
    let corrupt = |e: std::io::Error| err(format!("gzip stream is corrupt or truncated: {e}"));
    // Reads up to `n` bytes (fewer at the end of the stream).
    let mut read_up_to = |n: usize| -> Result<Vec<u8>> {
        let mut out = Vec::new();
        input
            .by_ref()
            .take(n as u64)
            .read_to_end(&mut out)
            .map_err(corrupt)?;
        Ok(out)
    };
    let magic = read_up_to(4)?;
    if magic.len() < 4 {
        return Err(err(format!(
            "{} bytes is too short for the 4-byte magic",
            magic.len()
        )));
    }
    if magic[0] != 0 || magic[1] != 0 {
        return Err(err(format!(
            "wrong magic {:02x} {:02x} {:02x} {:02x} (expected 00 00 08 NDIM)",
            magic[0], magic[1], magic[2], magic[3]
        )));
    }
    if magic[2] != 0x08 {
        return Err(err(format!(
            "element type 0x{:02x} is not supported (expected 0x08, unsigned byte)",
            magic[2]
        )));
    }
    let ndim = magic[3] as usize;
    if ndim == 0 {
        return Err(err("zero dimensions".into()));
    }
    let head = read_up_to(4 * ndim)?;
    if head.len() < 4 * ndim {
        return Err(err(format!(
            "header declares {ndim} dimensions but the file ends after {} bytes",
            4 + head.len()
        )));
    }
    let dims: Vec<usize> = head
        .chunks(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let n = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&n| n <= MAX_IDX_BYTES)
        .ok_or_else(|| {
            err(format!(
                "dimensions {dims:?} declare more than {MAX_IDX_BYTES} bytes"
            ))
        })?;
    let data = read_up_to(n.saturating_add(1))?;
    if data.len() != n {
        let have = if data.len() > n {
            "more".to_string()
        } else {
            data.len().to_string()
        };
        return Err(err(format!(
            "dimensions {dims:?} need {n} data bytes, the file has {have} (truncated or wrong file)"
        )));
    }
    Ok(IdxArray { dims, data })
}

/// Encodes an unsigned-byte IDX array (raw, not gzipped). Used by tests and tools that write
/// small data sets.
pub fn encode_idx(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        out.extend((*d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}
