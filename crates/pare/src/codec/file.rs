//! The compressed model file (`model.pare`).
//!
//! Layout, little-endian:
//!
//! | bytes | field |
//! |---|---|
//! | 4 | magic `PARE` |
//! | 2 | format version ([`VERSION`]) |
//! | 4 | header length `H` |
//! | H | header: DEFLATE-compressed JSON: the graph (as in `arch.json`) and, per parameter in order, its [`Encoding`] and payload length |
//! | ... | payloads, one per parameter, back to back |
//! | 4 | CRC-32 of everything before it |
//!
//! Payloads by encoding:
//! - `f32`: the values.
//! - `uniform`: per row (channel or tensor) an f32 scale and, if asymmetric, an i32 zero
//!   point; then a symbol stream of `q - qmin` (see [`super::stream`]).
//! - `shared`: `u32 K`, K f32 codebook values; a stream of one index per element.
//! - `sparse`: `u32 K`, K f32 non-zero codebook values, `u32` entry count, the stream of
//!   relative gaps (alphabet `2^gap_bits`) and the stream of value indices (alphabet `K + 1`,
//!   `K` = filler zero); see [`super::sparse`].
//! - `binary`: per row of axis 0 an f32 magnitude `alpha`, then one sign bit per element
//!   (1 for `+alpha`), eight to a byte from the lowest bit: the weights of a binary network.
//!
//! Decoding gives back exactly the values that were evaluated: codebook values are stored as
//! the f32 bits the model held, and uniform values are recomputed by the same
//! `dequantize` the fake quantizer used (zeros may lose their sign: `-0.0` decodes as `0.0`).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;

use flate2::read::DeflateDecoder;
use flate2::write::DeflateEncoder;
use serde::{Deserialize, Serialize};

use super::reader::Reader;
use super::sparse;
use super::stream::{self, StreamBytes};
use crate::error::{Error, Result};
use crate::ir::quant::{dequantize, BITS, GAP_BITS};
use crate::ir::{io, Graph, Model, Params, Tensor, WeightQuant};

pub const MAGIC: &[u8; 4] = b"PARE";
pub const VERSION: u16 = 1;
/// Magic, version and header length.
pub const PREAMBLE: usize = 10;
pub const CHECKSUM: usize = 4;
/// Largest tensor the decoder will allocate (elements): the graph check bounds every model's
/// parameters by it in total, before any tensor is read.
pub use crate::ir::graph::MAX_ELEMENTS;

/// The most parameters a file may declare per byte of its body (plus 2^20 for any file), checked
/// before any tensor is decoded: a few hundred bytes must not make the decoder allocate
/// gigabytes. The densest real encodings stay far below it: Deep Compression's LeNet-300-100
/// stores about 10 weights per byte, and even a sparse index of 8-bit gaps with one-bit Huffman
/// codes holds about 2,000 positions per byte.
pub const MAX_ELEMENTS_PER_BYTE: usize = 4096;

/// How one parameter is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Encoding {
    /// Plain f32 (biases, BN parameters, anything left unquantized).
    F32,
    /// IEEE half precision, rounded to nearest (the real-valued layers of a binary network);
    /// decoded as held ([`crate::ir::tensor::Store::Half`]). A value beyond f16's range
    /// (65504) is refused, naming the tensor.
    F16,
    /// Integer codes of a uniform quantizer, recomputed from the float weights.
    Uniform {
        bits: u32,
        per_channel: bool,
        symmetric: bool,
        huffman: bool,
    },
    /// A codebook of the tensor's distinct values and one index per element.
    Shared { huffman: bool },
    /// A codebook of the distinct non-zero values and a relative sparse index.
    Sparse { gap_bits: u32, huffman: bool },
    /// One sign bit per element and one magnitude per row (`alpha_r * sign`, what binary
    /// networks deploy).
    Binary,
}

impl Encoding {
    pub fn label(&self) -> String {
        let h = |h: bool| if h { "+huffman" } else { "" };
        match *self {
            Encoding::F32 => "f32".into(),
            Encoding::F16 => "f16".into(),
            Encoding::Uniform {
                bits,
                per_channel,
                symmetric,
                huffman,
            } => format!(
                "int{bits} {}{}{}",
                if per_channel { "per-channel" } else { "per-tensor" },
                if symmetric { "" } else { " asym" },
                h(huffman)
            ),
            Encoding::Shared { huffman } => format!("codebook{}", h(huffman)),
            Encoding::Sparse { gap_bits, huffman } => format!("sparse gap{gap_bits} codebook{}", h(huffman)),
            Encoding::Binary => "binary".into(),
        }
    }
}

/// Where each byte of one tensor's payload went.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TensorBytes {
    pub name: String,
    pub shape: Vec<usize>,
    pub elements: usize,
    pub nonzero: usize,
    pub encoding: Encoding,
    /// Codebook values, or scales and zero points.
    pub codebook: usize,
    /// Fixed fields (counts) and stream headers, including Huffman code-length tables.
    pub tables: usize,
    /// Bit stream of value indices (or integer codes, or raw f32 values).
    pub values: usize,
    /// Bit stream of relative sparse indices.
    pub index: usize,
}

impl TensorBytes {
    pub fn total(&self) -> usize {
        self.codebook + self.tables + self.values + self.index
    }
}

/// Every byte of a compressed file.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FileBytes {
    pub preamble: usize,
    pub header: usize,
    pub tensors: Vec<TensorBytes>,
    pub checksum: usize,
}

impl FileBytes {
    pub fn total(&self) -> usize {
        self.preamble
            + self.header
            + self.checksum
            + self.tensors.iter().map(TensorBytes::total).sum::<usize>()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    graph: Graph,
    tensors: Vec<Entry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    encoding: Encoding,
    length: u64,
}

/// Per-parameter encodings; parameters not named are stored as f32.
pub type Plan = BTreeMap<String, Encoding>;

fn config(name: &str, reason: impl std::fmt::Display) -> Error {
    Error::Config(format!("encoding '{name}': {reason}"))
}

/// Sorted distinct values of `data`, zeros (of either sign) counted once as `0.0`, when there
/// are at most `limit` of them.
fn codebook(data: &[f32], skip_zero: bool, limit: usize) -> Option<Vec<f32>> {
    let mut bits: Vec<u32> = data
        .iter()
        .filter(|v| !(skip_zero && **v == 0.0))
        .map(|v| if *v == 0.0 { 0 } else { v.to_bits() })
        .collect();
    bits.sort_unstable();
    bits.dedup();
    if bits.len() > limit {
        return None;
    }
    let mut values: Vec<f32> = bits.into_iter().map(f32::from_bits).collect();
    values.sort_unstable_by(f32::total_cmp);
    Some(values)
}

fn index_of(book: &[f32], v: f32) -> u32 {
    let v = if v == 0.0 { 0.0 } else { v };
    book.binary_search_by(|c| c.total_cmp(&v))
        .expect("value is in its codebook") as u32
}

/// Largest codebook pare stores (16-bit indices).
const MAX_CODEBOOK: usize = 1 << 16;

fn encode_tensor(name: &str, t: &Tensor, enc: Encoding, out: &mut Vec<u8>) -> Result<TensorBytes> {
    let start = out.len();
    let mut b = TensorBytes {
        name: name.to_string(),
        shape: t.shape().to_vec(),
        elements: t.len(),
        nonzero: t.data().iter().filter(|v| **v != 0.0).count(),
        encoding: enc,
        codebook: 0,
        tables: 0,
        values: 0,
        index: 0,
    };
    let add_stream = |s: StreamBytes, b: &mut TensorBytes, is_index: bool| {
        b.tables += s.table;
        if is_index {
            b.index += s.bits;
        } else {
            b.values += s.bits;
        }
    };
    match enc {
        Encoding::F32 => {
            t.data()
                .iter()
                .for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
            b.values = t.len() * 4;
        }
        Encoding::F16 => {
            for &v in t.data() {
                let h = half::f16::from_f32(v);
                if h.is_infinite() {
                    return Err(config(
                        name,
                        format!("holds {v}, beyond the range of f16 (65504): store it as f32"),
                    ));
                }
                out.extend_from_slice(&h.to_bits().to_le_bytes());
            }
            b.values = t.len() * 2;
        }
        Encoding::Uniform {
            bits,
            per_channel,
            symmetric,
            huffman,
        } => {
            if !BITS.contains(&bits) {
                return Err(config(name, format!("uniform bits = {bits} must be in {BITS:?}")));
            }
            let q = WeightQuant {
                bits,
                per_channel,
                symmetric,
            };
            let (codes, params) = q.quantize(t.shape(), t.data());
            for p in &params {
                out.extend_from_slice(&p.scale.to_le_bytes());
                if !symmetric {
                    out.extend_from_slice(&p.zero_point.to_le_bytes());
                }
            }
            b.codebook = out.len() - start;
            let qmin = params[0].qmin;
            let alphabet = (params[0].qmax - qmin + 1) as usize;
            let symbols: Vec<u32> = codes.iter().map(|&c| (c - qmin) as u32).collect();
            add_stream(stream::write(&symbols, alphabet, huffman, out), &mut b, false);
        }
        Encoding::Shared { huffman } => {
            let book = codebook(t.data(), false, MAX_CODEBOOK).ok_or_else(|| {
                config(
                    name,
                    "more than 65536 distinct values; cluster or quantize it first",
                )
            })?;
            out.extend_from_slice(&(book.len() as u32).to_le_bytes());
            b.tables += 4;
            book.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
            b.codebook = book.len() * 4;
            let symbols: Vec<u32> = t.data().iter().map(|&v| index_of(&book, v)).collect();
            add_stream(stream::write(&symbols, book.len(), huffman, out), &mut b, false);
        }
        Encoding::Sparse { gap_bits, huffman } => {
            if !GAP_BITS.contains(&gap_bits) {
                return Err(config(
                    name,
                    format!("gap_bits = {gap_bits} must be in {GAP_BITS:?}"),
                ));
            }
            let book = codebook(t.data(), true, MAX_CODEBOOK - 1).ok_or_else(|| {
                config(
                    name,
                    "more than 65535 distinct values; cluster or quantize it first",
                )
            })?;
            let filler = book.len() as u32;
            let symbols: Vec<Option<u32>> = t
                .data()
                .iter()
                .map(|&v| (v != 0.0).then(|| index_of(&book, v)))
                .collect();
            let rel = sparse::encode(&symbols, gap_bits, filler);
            out.extend_from_slice(&(book.len() as u32).to_le_bytes());
            book.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
            out.extend_from_slice(&(rel.gaps.len() as u32).to_le_bytes());
            b.tables += 8;
            b.codebook = book.len() * 4;
            add_stream(
                stream::write(&rel.gaps, 1 << gap_bits, huffman, out),
                &mut b,
                true,
            );
            add_stream(
                stream::write(&rel.values, book.len() + 1, huffman, out),
                &mut b,
                false,
            );
        }
        Encoding::Binary => {
            let rows = t.shape().first().copied().unwrap_or(1).max(1);
            let per = t.len() / rows;
            for (r, row) in t.data().chunks(per.max(1)).enumerate() {
                let a = row[0].abs();
                if let Some(v) = row.iter().find(|v| v.abs() != a || !a.is_finite()) {
                    return Err(config(
                        name,
                        format!("row {r} holds {} and {v}: a binary weight has one magnitude per row (binarize the model first)", row[0]),
                    ));
                }
                out.extend_from_slice(&a.to_le_bytes());
            }
            b.codebook = out.len() - start;
            let mut bits = vec![0u8; t.len().div_ceil(8)];
            for (k, v) in t.data().iter().enumerate() {
                if v.is_sign_positive() {
                    bits[k / 8] |= 1 << (k % 8);
                }
            }
            out.extend_from_slice(&bits);
            b.values = bits.len();
        }
    }
    debug_assert_eq!(b.total(), out.len() - start);
    Ok(b)
}

/// One tensor's payload. Integer codes of up to 8 bits, f16 values and sign bits stay as they
/// are stored ([`crate::ir::tensor::Store`]); the other encodings decode to f32.
fn decode_tensor(r: &mut Reader, shape: &[usize], enc: Encoding) -> std::result::Result<Tensor, String> {
    let n: usize = shape.iter().product();
    let dense = |v: Vec<f32>| Tensor::from_vec(shape.to_vec(), v);
    match enc {
        Encoding::F32 => r.f32s(n).map(dense),
        Encoding::F16 => {
            let bytes = r.bytes(n.checked_mul(2).ok_or("too many values")?)?;
            let bits = bytes
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            Tensor::from_half(shape.to_vec(), false, bits).ok_or_else(|| "f16 values".to_string())
        }
        Encoding::Uniform {
            bits,
            per_channel,
            symmetric,
            ..
        } => {
            if !BITS.contains(&bits) {
                return Err(format!("uniform bits = {bits} must be in {BITS:?}"));
            }
            let q = WeightQuant {
                bits,
                per_channel,
                symmetric,
            };
            let (qmin, qmax) = q.scheme().levels();
            let rows = q.rows(shape);
            if !n.is_multiple_of(rows) {
                return Err(format!("{n} elements do not split into {rows} channels"));
            }
            let mut params = Vec::with_capacity(rows.min(n));
            for _ in 0..rows {
                let scale = r.f32()?;
                let zero_point = if symmetric { 0 } else { r.i32()? };
                if !(scale.is_finite() && scale > 0.0) || zero_point < qmin || zero_point > qmax {
                    return Err(format!("invalid scale {scale} or zero point {zero_point}"));
                }
                params.push(crate::ir::QParams {
                    scale,
                    zero_point,
                    qmin,
                    qmax,
                });
            }
            let symbols = stream::read(r, n, (qmax - qmin + 1) as usize)?;
            let codes: Vec<i32> = symbols.iter().map(|&s| s as i32 + qmin).collect();
            let scales: Vec<f32> = params.iter().map(|p| p.scale).collect();
            let held = if symmetric {
                let small = codes.iter().map(|&q| i8::try_from(q).ok()).collect::<Option<_>>();
                small.and_then(|q| Tensor::from_codes(shape.to_vec(), bits, q, scales))
            } else {
                let small = codes.iter().map(|&q| u8::try_from(q).ok()).collect::<Option<_>>();
                let zero_points = params.iter().map(|p| p.zero_point).collect();
                small.and_then(|q| Tensor::from_ucodes(shape.to_vec(), bits, q, scales, zero_points))
            };
            Ok(held.unwrap_or_else(|| dense(dequantize(&codes, &params))))
        }
        Encoding::Shared { .. } => {
            let k = r.u32()? as usize;
            if k == 0 || k > MAX_CODEBOOK {
                return Err(format!("codebook of {k} values"));
            }
            let book = r.f32s(k)?;
            let symbols = stream::read(r, n, k)?;
            Ok(dense(symbols.iter().map(|&s| book[s as usize]).collect()))
        }
        Encoding::Sparse { gap_bits, .. } => {
            if !GAP_BITS.contains(&gap_bits) {
                return Err(format!("gap_bits = {gap_bits} must be in {GAP_BITS:?}"));
            }
            let k = r.u32()? as usize;
            if k >= MAX_CODEBOOK {
                return Err(format!("codebook of {k} values"));
            }
            let book = r.f32s(k)?;
            let entries = r.u32()? as usize;
            if entries > n {
                return Err(format!("{entries} sparse entries for {n} elements"));
            }
            let gaps = stream::read(r, entries, 1 << gap_bits)?;
            let values = stream::read(r, entries, k + 1)?;
            let rel = sparse::Relative { gaps, values };
            let symbols = sparse::decode(&rel, n, k as u32)?;
            Ok(dense(
                symbols
                    .iter()
                    .map(|s| s.map_or(0.0, |s| book[s as usize]))
                    .collect(),
            ))
        }
        Encoding::Binary => {
            let rows = shape.first().copied().unwrap_or(1).max(1);
            let alpha = r.f32s(rows)?;
            if let Some(a) = alpha.iter().find(|a| !(a.is_finite() && **a >= 0.0)) {
                return Err(format!("binary magnitude {a} is not a finite value >= 0"));
            }
            let mut bits = r.bytes(n.div_ceil(8))?.to_vec();
            // Bits past the last element mean nothing.
            if let Some(last) = bits.last_mut().filter(|_| !n.is_multiple_of(8)) {
                *last &= (1u8 << (n % 8)) - 1;
            }
            Tensor::from_signs(shape.to_vec(), bits, alpha)
                .ok_or_else(|| format!("{rows} magnitudes for shape {shape:?}"))
        }
    }
}

/// Encodes `model` with `plan`; returns the file's bytes and where they went.
pub fn encode(model: &Model, plan: &Plan) -> Result<(Vec<u8>, FileBytes)> {
    for name in plan.keys() {
        if !model.params.contains_key(name) {
            return Err(config(name, "the model has no parameter of that name"));
        }
    }
    let mut payload = Vec::new();
    let mut tensors = Vec::new();
    let mut entries = Vec::new();
    for r in model.param_refs() {
        let enc = plan.get(&r.name).copied().unwrap_or(Encoding::F32);
        let start = payload.len();
        let b = encode_tensor(&r.name, &model.params[&r.name], enc, &mut payload)?;
        entries.push(Entry {
            name: r.name.clone(),
            encoding: enc,
            length: (payload.len() - start) as u64,
        });
        tensors.push(b);
    }
    let header = Header {
        graph: model.graph.clone(),
        tensors: entries,
    };
    let json = serde_json::to_vec(&header).expect("the header serializes");
    let mut z = DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(&json)
        .and_then(|_| z.flush())
        .expect("deflate into memory");
    let header_bytes = z.finish().expect("deflate into memory");
    let mut out = Vec::with_capacity(PREAMBLE + header_bytes.len() + payload.len() + CHECKSUM);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(header_bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(&header_bytes);
    out.extend_from_slice(&payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    let bytes = FileBytes {
        preamble: PREAMBLE,
        header: header_bytes.len(),
        tensors,
        checksum: CHECKSUM,
    };
    debug_assert_eq!(bytes.total(), out.len());
    Ok((out, bytes))
}

/// Decodes a compressed model, checking the checksum first.
pub fn decode(bytes: &[u8]) -> std::result::Result<Model, String> {
    decode_body(checked_body(bytes)?)
}

/// The file without its checksum, once the magic, version and checksum are checked.
pub fn checked_body(bytes: &[u8]) -> std::result::Result<&[u8], String> {
    if bytes.len() < PREAMBLE + CHECKSUM {
        return Err(format!(
            "truncated: {} bytes is shorter than any pare file",
            bytes.len()
        ));
    }
    if &bytes[..4] != MAGIC {
        return Err("not a pare compressed model (bad magic)".into());
    }
    let (body, crc) = bytes.split_at(bytes.len() - CHECKSUM);
    let stored = u32::from_le_bytes(crc.try_into().expect("4 bytes"));
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    if version != VERSION {
        return Err(format!(
            "format version {version}; this pare reads version {VERSION}"
        ));
    }
    if crc32fast::hash(body) != stored {
        return Err("checksum mismatch: the file is corrupt or truncated".into());
    }
    Ok(body)
}

/// Decodes without checking the checksum, so that fuzzing reaches the parser behind it.
#[doc(hidden)]
pub fn decode_body(body: &[u8]) -> std::result::Result<Model, String> {
    let mut r = Reader::new(body);
    r.bytes(6)?;
    let hlen = r.u32()? as usize;
    let mut json = Vec::new();
    DeflateDecoder::new(r.bytes(hlen)?)
        .take(64 << 20)
        .read_to_end(&mut json)
        .map_err(|e| format!("header: {e}"))?;
    let header: Header = serde_json::from_slice(&json).map_err(|e| format!("header: {e}"))?;
    let graph = header.graph;
    graph.shapes().map_err(|e| format!("header: {e}"))?;
    let refs = crate::ir::model::param_refs(&graph);
    if refs.len() != header.tensors.len() {
        return Err(format!(
            "header lists {} tensors, the graph has {} parameters",
            header.tensors.len(),
            refs.len()
        ));
    }
    let declared = refs.iter().try_fold(0usize, |n, r| {
        n.checked_add(r.spec.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?)
    });
    let most = body
        .len()
        .saturating_mul(MAX_ELEMENTS_PER_BYTE)
        .saturating_add(1 << 20);
    if declared.is_none_or(|n| n > most) {
        return Err(format!(
            "the header declares {} parameters, more than a file of {} bytes can hold (at most {most})",
            declared.map_or("too many".into(), |n| n.to_string()),
            body.len()
        ));
    }
    let mut params = Params::new();
    for (r_, e) in refs.iter().zip(&header.tensors) {
        if r_.name != e.name {
            return Err(format!(
                "tensor '{}' where the graph expects '{}'",
                e.name, r_.name
            ));
        }
        let n = r_.spec.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if n.is_none_or(|n| n > MAX_ELEMENTS) {
            return Err(format!(
                "tensor '{}' is implausibly large ({:?})",
                e.name, r_.spec.shape
            ));
        }
        let len = usize::try_from(e.length).map_err(|_| format!("tensor '{}': bad length", e.name))?;
        let mut tr = Reader::new(r.bytes(len).map_err(|m| format!("tensor '{}': {m}", e.name))?);
        let t = decode_tensor(&mut tr, &r_.spec.shape, e.encoding)
            .map_err(|m| format!("tensor '{}': {m}", e.name))?;
        if !tr.is_done() {
            return Err(format!("tensor '{}': payload has trailing bytes", e.name));
        }
        if let Some((i, v)) = t.first_non_finite() {
            return Err(format!(
                "tensor '{}' holds the non-finite value {v} at flat position {i}",
                e.name
            ));
        }
        params.insert(e.name.clone(), t);
    }
    if !r.is_done() {
        return Err("trailing bytes after the last tensor".into());
    }
    Model::new(graph, params).map_err(|e| e.to_string())
}

/// Writes `model` compressed with `plan` to `path` (atomically).
pub fn write(path: &Path, model: &Model, plan: &Plan) -> Result<FileBytes> {
    let (bytes, report) = encode(model, plan)?;
    io::write_atomic(path, &bytes)?;
    Ok(report)
}

/// Reads a compressed model; every failure names the file.
pub fn read(path: &Path) -> Result<Model> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode(&bytes).map_err(|reason| Error::Compressed {
        path: path.to_path_buf(),
        reason,
    })
}

/// Among the codebook encodings (dense, or sparse with gaps of 2..=8 bits), the one that
/// stores `t` in the fewest bytes.
pub fn smallest_codebook_encoding(name: &str, t: &Tensor, huffman: bool) -> Result<(Encoding, usize)> {
    let mut best: Option<(Encoding, usize)> = None;
    let candidates = std::iter::once(Encoding::Shared { huffman })
        .chain((2..=8).map(|gap_bits| Encoding::Sparse { gap_bits, huffman }));
    for enc in candidates {
        let size = encode_tensor(name, t, enc, &mut Vec::new())?.total();
        if best.is_none_or(|(_, s)| size < s) {
            best = Some((enc, size));
        }
    }
    Ok(best.expect("at least one candidate"))
}
