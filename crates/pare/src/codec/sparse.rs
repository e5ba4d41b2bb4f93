//! The relative sparse index of Deep Compression (section 2, figure 2): a sparse tensor is a
//! list of entries, each the number of zeros skipped since the previous entry (a `gap_bits`-bit
//! field) and a value symbol. A run of zeros longer than the field can express is bridged by a
//! *filler* entry: a maximal gap whose value is the filler symbol, i.e. an explicit zero.

/// Entries of a sparse symbol sequence: `gaps[i]` zeros, then `values[i]`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Relative {
    pub gaps: Vec<u32>,
    pub values: Vec<u32>,
}

/// Encodes `symbols` (`None` = zero) with gaps of `gap_bits` bits; `filler` is the symbol of
/// an explicit zero. Trailing zeros are implied by the tensor's length.
pub fn encode(symbols: &[Option<u32>], gap_bits: u32, filler: u32) -> Relative {
    let max_gap = (1u32 << gap_bits) - 1;
    let mut r = Relative::default();
    let mut run = 0u32;
    for s in symbols {
        match s {
            None => run += 1,
            Some(v) => {
                while run > max_gap {
                    r.gaps.push(max_gap);
                    r.values.push(filler);
                    run -= max_gap + 1;
                }
                r.gaps.push(run);
                r.values.push(*v);
                run = 0;
            }
        }
    }
    r
}

/// Decodes entries into `len` symbols; `Err` if they run past `len`.
pub fn decode(r: &Relative, len: usize, filler: u32) -> Result<Vec<Option<u32>>, String> {
    let mut out = vec![None; len];
    let mut pos = 0usize;
    for (&g, &v) in r.gaps.iter().zip(&r.values) {
        pos += g as usize;
        if pos >= len {
            return Err(format!("sparse index runs past the tensor's {len} elements"));
        }
        if v != filler {
            out[pos] = Some(v);
        }
        pos += 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn paper_example_with_filler() {
        // 3-bit gaps: a run of 10 zeros needs one filler entry (8 positions) and a gap of 2.
        let mut s = vec![None; 14];
        s[1] = Some(4);
        s[12] = Some(2);
        let r = encode(&s, 3, 9);
        assert_eq!(r.gaps, vec![1, 7, 2]);
        assert_eq!(r.values, vec![4, 9, 2]);
        assert_eq!(decode(&r, 14, 9).unwrap(), s);
        assert!(decode(&r, 12, 9).is_err());
    }

    proptest! {
        #[test]
        fn round_trip(v in prop::collection::vec(prop::option::weighted(0.1, 0u32..8), 0..3000), bits in 1u32..9) {
            let r = encode(&v, bits, 8);
            prop_assert!(r.gaps.iter().all(|&g| g < (1 << bits)));
            prop_assert_eq!(decode(&r, v.len(), 8).unwrap(), v);
        }
    }
}
