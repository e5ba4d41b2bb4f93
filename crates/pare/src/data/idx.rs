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

/// Parses IDX bytes (gzipped or raw); `path` is only used in error messages.
pub fn parse_idx(raw: &[u8], path: &Path) -> Result<IdxArray> {
    let err = |reason: String| Error::Idx {
        path: path.to_path_buf(),
        reason,
    };
    let bytes: Vec<u8>;
    let buf = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw)
            .read_to_end(&mut out)
            .map_err(|e| err(format!("gzip stream is corrupt or truncated: {e}")))?;
        bytes = out;
        &bytes[..]
    } else {
        raw
    };
    if buf.len() < 4 {
        return Err(err(format!(
            "{} bytes is too short for the 4-byte magic",
            buf.len()
        )));
    }
    if buf[0] != 0 || buf[1] != 0 {
        return Err(err(format!(
            "wrong magic {:02x} {:02x} {:02x} {:02x} (expected 00 00 08 NDIM)",
            buf[0], buf[1], buf[2], buf[3]
        )));
    }
    if buf[2] != 0x08 {
        return Err(err(format!(
            "element type 0x{:02x} is not supported (expected 0x08, unsigned byte)",
            buf[2]
        )));
    }
    let ndim = buf[3] as usize;
    if ndim == 0 {
        return Err(err("zero dimensions".into()));
    }
    let header = 4 + 4 * ndim;
    if buf.len() < header {
        return Err(err(format!(
            "header declares {ndim} dimensions but the file ends after {} bytes",
            buf.len()
        )));
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|i| {
            let o = 4 + 4 * i;
            u32::from_be_bytes([buf[o], buf[o + 1], buf[o + 2], buf[o + 3]]) as usize
        })
        .collect();
    let n = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| err(format!("dimensions {dims:?} overflow")))?;
    let body = buf.len() - header;
    if body != n {
        return Err(err(format!(
            "dimensions {dims:?} need {n} data bytes, the file has {body} (truncated or wrong file)"
        )));
    }
    Ok(IdxArray {
        dims,
        data: buf[header..].to_vec(),
    })
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
