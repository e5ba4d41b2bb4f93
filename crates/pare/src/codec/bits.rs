//! MSB-first bit streams (the order canonical Huffman codes are decoded in).

/// Appends bit fields to a byte buffer; the last byte is zero-padded.
#[derive(Default)]
pub struct BitWriter {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl BitWriter {
    /// Writes the low `bits` bits of `value` (`bits <= 32`), most significant first.
    pub fn write(&mut self, value: u32, bits: u32) {
        debug_assert!(bits <= 32);
        if bits == 0 {
            return;
        }
        self.acc = (self.acc << bits) | (value as u64 & ((1u64 << bits) - 1));
        self.n += bits;
        while self.n >= 8 {
            self.n -= 8;
            self.out.push((self.acc >> self.n) as u8);
        }
        self.acc &= (1u64 << self.n) - 1;
    }

    pub fn finish(mut self) -> Vec<u8> {
        if self.n > 0 {
            self.out.push((self.acc << (8 - self.n)) as u8);
        }
        self.out
    }
}

/// Reads bit fields written by [`BitWriter`]; `None` past the end of the data.
pub struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        BitReader { data, pos: 0 }
    }

    pub fn bit(&mut self) -> Option<u32> {
        let byte = *self.data.get(self.pos / 8)?;
        let b = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Some(b as u32)
    }

    pub fn read(&mut self, bits: u32) -> Option<u32> {
        (0..bits).try_fold(0u32, |acc, _| Some((acc << 1) | self.bit()?))
    }

    /// Bits left to read (including the final padding).
    pub fn remaining(&self) -> usize {
        self.data.len() * 8 - self.pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn fields_round_trip(fields in prop::collection::vec((any::<u32>(), 0u32..=32), 0..100)) {
            let mut w = BitWriter::default();
            for &(v, b) in &fields {
                w.write(v, b);
            }
            let bytes = w.finish();
            let total: u32 = fields.iter().map(|f| f.1).sum();
            prop_assert_eq!(bytes.len(), total.div_ceil(8) as usize);
            let mut r = BitReader::new(&bytes);
            for &(v, b) in &fields {
                let mask = if b == 32 { u32::MAX } else { (1u32 << b) - 1 };
                prop_assert_eq!(r.read(b), Some(v & mask));
            }
        }
    }
}
