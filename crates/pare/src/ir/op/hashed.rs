//! The hash of [`super::Op::HashedLinear`]: which shared value, and with which sign, each
//! position of the virtual weight reads. A pure function of the seed and the position (a
//! SplitMix64 finalizer), so both engines and every machine build the same weight.

/// SplitMix64's finalizer: a bijection of 64-bit words with good avalanche.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// For every position `(i, j)` of an `[out, inp]` virtual weight, row-major: the bucket it
/// reads (`< buckets`) and its sign (+1 or -1). The bucket comes from the hash's high 32 bits
/// and the sign from its lowest bit, so the two are independent, as HashedNets' two hash
/// functions are.
pub fn hashed_index(seed: u64, out: usize, inp: usize, buckets: usize) -> (Vec<u32>, Vec<f32>) {
    let key = mix(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x6a09_e667_f3bc_c908);
    let mut index = Vec::with_capacity(out * inp);
    let mut sign = Vec::with_capacity(out * inp);
    for i in 0..out {
        for j in 0..inp {
            let h = mix(key ^ (((i as u64) << 32) | j as u64));
            index.push(((h >> 32) % buckets.max(1) as u64) as u32);
            sign.push(if h & 1 == 0 { 1.0 } else { -1.0 });
        }
    }
    (index, sign)
}

/// The dense `[out, inp]` weight (row-major) that the buckets `table` stand for: what an
/// engine without hashing runs, and what ONNX export writes.
pub fn hashed_weight(seed: u64, out: usize, inp: usize, table: &[f32]) -> Vec<f32> {
    let (index, sign) = hashed_index(seed, out, inp, table.len());
    index
        .iter()
        .zip(&sign)
        .map(|(&b, s)| s * table[b as usize])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_fill_evenly_and_signs_balance() {
        let (index, sign) = hashed_index(3, 100, 80, 1000);
        let mut count = vec![0usize; 1000];
        index.iter().for_each(|&b| count[b as usize] += 1);
        // 8 positions per bucket on average: none empty is too much to ask, but none should
        // hold more than a few times the mean.
        assert!(count.iter().all(|&c| c < 30), "{:?}", count.iter().max());
        let plus = sign.iter().filter(|&&s| s > 0.0).count();
        assert!((3700..4300).contains(&plus), "{plus} of 8000 positive");
        assert_ne!(hashed_index(4, 100, 80, 1000).0, index, "the seed picks the hash");
        assert_eq!(hashed_index(3, 100, 80, 1000).0, index);
    }
}
