//! Symbol streams as stored in a compressed file: fixed-width fields or canonical Huffman
//! codes with their length table. Layout (little-endian):
//! `u8 mode` (0 fixed, 1 Huffman), then `u8 width` (fixed) or `u16 alphabet` + one `u8` code
//! length per symbol (Huffman), then `u32 byte length` and the bit stream.

use super::bits::{BitReader, BitWriter};
use super::huffman::{code_lengths, Code};
use super::reader::Reader;

/// Bits needed for symbols `0..alphabet` in a fixed-width field.
pub fn width(alphabet: usize) -> u32 {
    usize::BITS - alphabet.saturating_sub(1).leading_zeros()
}

/// How many bytes of a stream are the table and how many the bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StreamBytes {
    pub table: usize,
    pub bits: usize,
}

/// Appends the stream for `symbols` (each `< alphabet`) to `out`. Alphabets too large for a
/// Huffman table (over 65535 symbols, e.g. asymmetric 16-bit codes) are written fixed-width.
pub fn write(symbols: &[u32], alphabet: usize, huffman: bool, out: &mut Vec<u8>) -> StreamBytes {
    let start = out.len();
    let mut w = BitWriter::default();
    if huffman && alphabet <= u16::MAX as usize {
        let mut freq = vec![0u64; alphabet];
        symbols.iter().for_each(|&s| freq[s as usize] += 1);
        let code = Code::from_lengths(&code_lengths(&freq)).expect("lengths from code_lengths are valid");
        out.push(1);
        out.extend_from_slice(&(alphabet as u16).to_le_bytes());
        out.extend_from_slice(code.lengths());
        code.encode(symbols, &mut w);
    } else {
        let bits = width(alphabet);
        out.push(0);
        out.push(bits as u8);
        symbols.iter().for_each(|&s| w.write(s, bits));
    }
    let bytes = w.finish();
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    let table = out.len() - start;
    out.extend_from_slice(&bytes);
    StreamBytes {
        table,
        bits: bytes.len(),
    }
}

enum Decoder {
    Fixed(u32),
    Huffman(Box<Code>),
}

/// Reads `n` symbols, each checked to be `< alphabet`.
pub fn read(r: &mut Reader, n: usize, alphabet: usize) -> Result<Vec<u32>, String> {
    let decoder = match r.u8()? {
        0 => {
            let bits = r.u8()? as u32;
            if bits > 32 || bits < width(alphabet) {
                return Err(format!(
                    "fixed-width stream of {bits} bits for {alphabet} symbols"
                ));
            }
            Decoder::Fixed(bits)
        }
        1 => {
            let a = r.u16()? as usize;
            if a != alphabet {
                return Err(format!("Huffman table for {a} symbols, expected {alphabet}"));
            }
            Decoder::Huffman(Box::new(Code::from_lengths(r.bytes(a)?)?))
        }
        m => return Err(format!("unknown stream mode {m}")),
    };
    let len = r.u32()? as usize;
    let mut br = BitReader::new(r.bytes(len)?);
    // Every symbol takes at least one bit, except in a fixed stream of a 1-symbol alphabet.
    if n > br.remaining() && !matches!(decoder, Decoder::Fixed(0)) {
        return Err(format!("a stream of {len} bytes cannot hold {n} symbols"));
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let s = match &decoder {
            Decoder::Huffman(c) => c.decode(&mut br)?,
            Decoder::Fixed(bits) => br.read(*bits).ok_or("fixed-width stream ends early")?,
        };
        if s as usize >= alphabet {
            return Err(format!("symbol {s} out of range (alphabet {alphabet})"));
        }
        out.push(s);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_modes_round_trip_and_reject_garbage() {
        let symbols: Vec<u32> = (0..500).map(|i| (i * i % 7) as u32).collect();
        for huffman in [false, true] {
            let mut out = Vec::new();
            let b = write(&symbols, 7, huffman, &mut out);
            assert_eq!(b.table + b.bits, out.len());
            assert_eq!(read(&mut Reader::new(&out), symbols.len(), 7).unwrap(), symbols);
            assert!(read(&mut Reader::new(&out[..out.len() - 1]), symbols.len(), 7).is_err());
            assert!(read(&mut Reader::new(&out), symbols.len(), 4).is_err());
        }
        assert_eq!(width(1), 0);
        assert_eq!(width(2), 1);
        assert_eq!(width(33), 6);
    }
}
