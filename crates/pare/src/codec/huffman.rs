//! Canonical Huffman coding (Deep Compression section 4) of symbol streams: cluster indices and
//! relative sparse indices. Only the code lengths are stored; the codes are rebuilt from them
//! in canonical order (by length, then symbol), as DEFLATE does.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::bits::{BitReader, BitWriter};

/// Longest code pare writes; longer optimal codes are avoided by flattening the frequencies.
pub const MAX_LEN: u8 = 24;

/// Optimal code lengths for `freq` (0 for unused symbols), limited to [`MAX_LEN`] bits. A
/// single used symbol gets a 1-bit code.
pub fn code_lengths(freq: &[u64]) -> Vec<u8> {
    let mut f = freq.to_vec();
    loop {
        let lengths = unlimited(&f);
        if lengths.iter().all(|&l| l <= MAX_LEN) {
            return lengths;
        }
        // Halving the counts (keeping used symbols used) flattens the tree until it fits.
        f.iter_mut()
            .filter(|x| **x > 0)
            .for_each(|x| *x = (*x >> 1).max(1));
    }
}

fn unlimited(freq: &[u64]) -> Vec<u8> {
    let used: Vec<usize> = (0..freq.len()).filter(|&i| freq[i] > 0).collect();
    let mut lengths = vec![0u8; freq.len()];
    match used.len() {
        0 => return lengths,
        1 => {
            lengths[used[0]] = 1;
            return lengths;
        }
        _ => {}
    }
    // Nodes: leaves first, then internal nodes; parent links give each leaf's depth.
    let mut parent: Vec<usize> = vec![usize::MAX; used.len()];
    let mut heap: BinaryHeap<Reverse<(u64, usize)>> = used
        .iter()
        .enumerate()
        .map(|(i, &s)| Reverse((freq[s], i)))
        .collect();
    while heap.len() > 1 {
        let Reverse((fa, a)) = heap.pop().expect("two nodes");
        let Reverse((fb, b)) = heap.pop().expect("two nodes");
        let id = parent.len();
        parent.push(usize::MAX);
        parent[a] = id;
        parent[b] = id;
        heap.push(Reverse((fa + fb, id)));
    }
    for (i, &s) in used.iter().enumerate() {
        let (mut d, mut n) = (0u8, i);
        while parent[n] != usize::MAX {
            n = parent[n];
            d = d.saturating_add(1);
        }
        lengths[s] = d;
    }
    lengths
}

/// A canonical code rebuilt from code lengths.
pub struct Code {
    lengths: Vec<u8>,
    codes: Vec<u32>,
    /// Per length: number of codes, first code, and index of the first symbol in `sorted`.
    count: [u32; MAX_LEN as usize + 1],
    first: [u32; MAX_LEN as usize + 1],
    offset: [u32; MAX_LEN as usize + 1],
    sorted: Vec<u32>,
}

impl Code {
    /// Rebuilds the canonical code; lengths that over-subscribe the code space or exceed
    /// [`MAX_LEN`] are errors (a corrupt table).
    pub fn from_lengths(lengths: &[u8]) -> Result<Code, String> {
        let mut count = [0u32; MAX_LEN as usize + 1];
        for &l in lengths {
            if l > MAX_LEN {
                return Err(format!("Huffman code length {l} exceeds {MAX_LEN}"));
            }
            count[l as usize] += 1;
        }
        count[0] = 0;
        // Kraft inequality: sum 2^-l <= 1.
        let kraft: u64 = (1..=MAX_LEN as usize)
            .map(|l| (count[l] as u64) << (MAX_LEN as usize - l))
            .sum();
        if kraft > 1u64 << MAX_LEN {
            return Err("Huffman code lengths over-subscribe the code space".into());
        }
        let mut first = [0u32; MAX_LEN as usize + 1];
        let mut offset = [0u32; MAX_LEN as usize + 1];
        let (mut code, mut idx) = (0u32, 0u32);
        for l in 1..=MAX_LEN as usize {
            code = (code + count[l - 1]) << 1;
            first[l] = code;
            offset[l] = idx;
            idx += count[l];
        }
        let mut sorted: Vec<u32> = (0..lengths.len() as u32)
            .filter(|&s| lengths[s as usize] > 0)
            .collect();
        sorted.sort_by_key(|&s| (lengths[s as usize], s));
        let mut next = first;
        let codes = lengths
            .iter()
            .map(|&l| {
                if l == 0 {
                    0
                } else {
                    let c = next[l as usize];
                    next[l as usize] += 1;
                    c
                }
            })
            .collect();
        Ok(Code {
            lengths: lengths.to_vec(),
            codes,
            count,
            first,
            offset,
            sorted,
        })
    }

    pub fn lengths(&self) -> &[u8] {
        &self.lengths
    }

    /// Bits `symbols` take with this code.
    pub fn cost(&self, symbols: &[u32]) -> u64 {
        symbols.iter().map(|&s| self.lengths[s as usize] as u64).sum()
    }

    pub fn encode(&self, symbols: &[u32], w: &mut BitWriter) {
        for &s in symbols {
            w.write(self.codes[s as usize], self.lengths[s as usize] as u32);
        }
    }

    /// Decodes one symbol; `Err` on a code that is not in the table or past the end.
    pub fn decode(&self, r: &mut BitReader) -> Result<u32, String> {
        let mut code = 0u32;
        for l in 1..=MAX_LEN as usize {
            code = (code << 1) | r.bit().ok_or("Huffman stream ends early")?;
            let c = code.wrapping_sub(self.first[l]);
            if code >= self.first[l] && c < self.count[l] {
                return Ok(self.sorted[(self.offset[l] + c) as usize]);
            }
        }
        Err("invalid Huffman code".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn textbook_lengths() {
        // Frequencies 45, 13, 12, 16, 9, 5 (CLRS): lengths 1, 3, 3, 3, 4, 4.
        assert_eq!(code_lengths(&[45, 13, 12, 16, 9, 5]), vec![1, 3, 3, 3, 4, 4]);
        assert_eq!(code_lengths(&[0, 7, 0]), vec![0, 1, 0]);
    }

    #[test]
    fn skewed_frequencies_stay_within_the_limit() {
        let freq: Vec<u64> = (0..40).map(|i| 1u64 << i.min(62)).collect();
        let l = code_lengths(&freq);
        assert!(l.iter().all(|x| (1..=MAX_LEN).contains(x)));
        assert!(Code::from_lengths(&l).is_ok());
    }

    #[test]
    fn corrupt_tables_are_rejected() {
        assert!(Code::from_lengths(&[1, 1, 1]).is_err());
        assert!(Code::from_lengths(&[30]).is_err());
    }

    proptest! {
        #[test]
        fn round_trip(symbols in prop::collection::vec(0u32..50, 1..2000)) {
            let mut freq = vec![0u64; 50];
            symbols.iter().for_each(|&s| freq[s as usize] += 1);
            let code = Code::from_lengths(&code_lengths(&freq)).unwrap();
            let mut w = BitWriter::default();
            code.encode(&symbols, &mut w);
            let bytes = w.finish();
            prop_assert_eq!(bytes.len() as u64, code.cost(&symbols).div_ceil(8));
            let mut r = BitReader::new(&bytes);
            let back: Vec<u32> = (0..symbols.len()).map(|_| code.decode(&mut r).unwrap()).collect();
            prop_assert_eq!(back, symbols);
        }
    }
}
