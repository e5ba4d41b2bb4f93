//! Binary Linear layers (BNN, XNOR-Net): weights and activations of `+1`/`-1` packed 64 to a
//! word, so that a dot product of `k` terms is `k - 2 * popcount(a XOR w)` over `k / 64` words
//! instead of `k` multiply-adds.
//!
//! A compiled plan runs a Linear layer this way when every row of its weight holds one
//! magnitude with either sign (`alpha_r * sign(w)`, what [`crate::ir::Reparam::Binarize`]
//! bakes) and its input is the output of an [`crate::ir::Op::Sign`] node: `y_r = alpha_r *
//! dot(sign(x), sign(w_r)) + b_r`, exact in integers. The popcount runs on AVX2 (nibble table
//! lookups, Mula et al.), on the POPCNT instruction, or portably, chosen at run time; every
//! path is tested against [`dot_reference`].

use rayon::prelude::*;

use super::Fused;

/// Pairs of (sample, row) below which the product runs on one thread.
const PARALLEL_ABOVE: usize = 1 << 12;

/// A `[rows, width]` matrix of signs, each row scaled by `alpha[r]`; bit `j % 64` of word
/// `r * words + j / 64` is 1 for `+alpha`, 0 for `-alpha`. Bits past `width` are 0.
#[derive(Clone, Debug)]
pub(super) struct BinaryMatrix {
    rows: usize,
    width: usize,
    words: usize,
    bits: Vec<u64>,
    alpha: Vec<f32>,
}

/// Which popcount the CPU runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PopcountPath {
    Avx2,
    Popcnt,
    Portable,
}

impl PopcountPath {
    /// The fastest path this CPU has (checked once).
    pub fn best() -> PopcountPath {
        #[cfg(target_arch = "x86_64")]
        {
            static BEST: std::sync::OnceLock<PopcountPath> = std::sync::OnceLock::new();
            *BEST.get_or_init(|| {
                if is_x86_feature_detected!("avx2") {
                    PopcountPath::Avx2
                } else if is_x86_feature_detected!("popcnt") {
                    PopcountPath::Popcnt
                } else {
                    PopcountPath::Portable
                }
            })
        }
        #[cfg(not(target_arch = "x86_64"))]
        PopcountPath::Portable
    }

    /// Every path this CPU can run, the portable one included.
    pub fn available() -> Vec<PopcountPath> {
        let mut v = vec![PopcountPath::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("popcnt") {
                v.push(PopcountPath::Popcnt);
            }
            if is_x86_feature_detected!("avx2") {
                v.push(PopcountPath::Avx2);
            }
        }
        v
    }
}

impl BinaryMatrix {
    /// The binary form of a row-major `[rows, width]` weight, or `None` when some row holds
    /// more than one magnitude.
    pub(super) fn from_dense(w: &[f32], rows: usize, width: usize) -> Option<BinaryMatrix> {
        if rows == 0 || width == 0 || w.len() != rows * width {
            return None;
        }
        let words = width.div_ceil(64);
        let mut bits = vec![0u64; rows * words];
        let mut alpha = Vec::with_capacity(rows);
        for (r, row) in w.chunks(width).enumerate() {
            let a = row[0].abs();
            if !a.is_finite() || row.iter().any(|v| v.abs() != a) {
                return None;
            }
            alpha.push(a);
            pack_row(row, &mut bits[r * words..(r + 1) * words]);
        }
        Some(BinaryMatrix {
            rows,
            width,
            words,
            bits,
            alpha,
        })
    }

    /// `y = alpha * dot(sign(x), sign(W))^T + b` on `n` rows of `width` values, the ReLU fused
    /// when `relu` says so.
    pub(super) fn linear(&self, x: &[f32], n: usize, bias: Option<&[f32]>, relu: Fused) -> Vec<f32> {
        self.linear_on(PopcountPath::best(), x, n, bias, relu)
    }

    fn linear_on(
        &self,
        path: PopcountPath,
        x: &[f32],
        n: usize,
        bias: Option<&[f32]>,
        relu: Fused,
    ) -> Vec<f32> {
        debug_assert_eq!(x.len(), n * self.width);
        let packed = pack(x, n, self.width);
        let mut y = super::buffers::scratch(n * self.rows);
        let sample = |(i, out): (usize, &mut [f32])| {
            let a = &packed[i * self.words..(i + 1) * self.words];
            let mut counts = vec![0u32; self.rows];
            mismatches(path, a, &self.bits, self.words, &mut counts);
            for (r, (o, c)) in out.iter_mut().zip(&counts).enumerate() {
                let dot = self.width as i64 - 2 * *c as i64;
                let mut v = self.alpha[r] * dot as f32 + bias.map_or(0.0, |b| b[r]);
                if relu == Fused::Relu {
                    v = v.max(0.0);
                }
                *o = v;
            }
        };
        if n * self.rows * self.words > PARALLEL_ABOVE && n > 1 {
            y.par_chunks_mut(self.rows).enumerate().for_each(sample);
        } else if self.rows * self.words > PARALLEL_ABOVE {
            // One sample: split the rows between the threads.
            let a = &packed[..self.words];
            let chunk = self.rows.div_ceil(rayon::current_num_threads()).max(1);
            y.par_chunks_mut(chunk).enumerate().for_each(|(k, out)| {
                let r0 = k * chunk;
                let w = &self.bits[r0 * self.words..(r0 + out.len()) * self.words];
                let mut counts = vec![0u32; out.len()];
                mismatches(path, a, w, self.words, &mut counts);
                for (j, (o, c)) in out.iter_mut().zip(&counts).enumerate() {
                    let r = r0 + j;
                    let dot = self.width as i64 - 2 * *c as i64;
                    let mut v = self.alpha[r] * dot as f32 + bias.map_or(0.0, |b| b[r]);
                    if relu == Fused::Relu {
                        v = v.max(0.0);
                    }
                    *o = v;
                }
            });
        } else {
            y.chunks_mut(self.rows).enumerate().for_each(sample);
        }
        y
    }
}

/// Packs one row of values into sign bits (1 for `>= 0`), 64 to a word.
fn pack_row(row: &[f32], out: &mut [u64]) {
    for (word, chunk) in out.iter_mut().zip(row.chunks(64)) {
        *word = chunk
            .iter()
            .enumerate()
            .fold(0u64, |acc, (j, v)| acc | (((*v >= 0.0) as u64) << j));
    }
}

/// The sign bits of `n` rows of `width` values.
fn pack(x: &[f32], n: usize, width: usize) -> Vec<u64> {
    let words = width.div_ceil(64);
    let mut out = vec![0u64; n * words];
    for (row, o) in x.chunks(width).zip(out.chunks_mut(words)) {
        pack_row(row, o);
    }
    out
}

/// `counts[r] = popcount(a XOR w_r)` for every row `w_r` of `w` (`words` words each).
fn mismatches(path: PopcountPath, a: &[u64], w: &[u64], words: usize, counts: &mut [u32]) {
    match path {
        // SAFETY: `best` and `available` offer these paths only when the CPU has the feature.
        #[cfg(target_arch = "x86_64")]
        PopcountPath::Avx2 => unsafe { mismatches_avx2(a, w, words, counts) },
        #[cfg(target_arch = "x86_64")]
        PopcountPath::Popcnt => unsafe { mismatches_popcnt(a, w, words, counts) },
        _ => mismatches_portable(a, w, words, counts),
    }
}

/// Four rows at a time, so that each word of `a` is loaded once for four popcounts.
#[inline(always)]
fn mismatches_portable(a: &[u64], w: &[u64], words: usize, counts: &mut [u32]) {
    let rows = counts.len();
    let mut r = 0;
    while r + 4 <= rows {
        let ws = [0, 1, 2, 3].map(|k| &w[(r + k) * words..(r + k + 1) * words]);
        let mut acc = [0u32; 4];
        for (j, &aj) in a.iter().enumerate() {
            for k in 0..4 {
                acc[k] += (aj ^ ws[k][j]).count_ones();
            }
        }
        counts[r..r + 4].copy_from_slice(&acc);
        r += 4;
    }
    for (k, c) in counts.iter_mut().enumerate().skip(r) {
        *c = dot_reference(a, &w[k * words..(k + 1) * words]);
    }
}

/// [`mismatches_portable`] compiled with the POPCNT instruction.
///
/// # Safety
/// The CPU has POPCNT.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
unsafe fn mismatches_popcnt(a: &[u64], w: &[u64], words: usize, counts: &mut [u32]) {
    mismatches_portable(a, w, words, counts)
}

/// 256 bits at a time: the popcount of each byte from two 16-entry nibble tables (`vpshufb`),
/// summed into 64-bit lanes by `vpsadbw`; the words past the last multiple of four by scalar
/// counts.
///
/// # Safety
/// The CPU has AVX2; `w.len() >= counts.len() * words` and `a.len() == words`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn mismatches_avx2(a: &[u64], w: &[u64], words: usize, counts: &mut [u32]) {
    use std::arch::x86_64::*;
    let table = _mm256_setr_epi8(
        0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
    );
    let low = _mm256_set1_epi8(0x0f);
    let zero = _mm256_setzero_si256();
    let full = words / 4 * 4;
    let count = |v: __m256i| -> __m256i {
        let lo = _mm256_shuffle_epi8(table, _mm256_and_si256(v, low));
        let hi = _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(v, 4), low));
        _mm256_sad_epu8(_mm256_add_epi8(lo, hi), zero)
    };
    let ap = a.as_ptr();
    let rows = counts.len();
    let mut r = 0;
    // Two rows per pass: each 256-bit block of `a` is loaded once for both.
    while r + 2 <= rows {
        let (w0, w1) = (w.as_ptr().add(r * words), w.as_ptr().add((r + 1) * words));
        let (mut s0, mut s1) = (zero, zero);
        let mut j = 0;
        while j < full {
            let av = _mm256_loadu_si256(ap.add(j) as *const __m256i);
            let x0 = _mm256_xor_si256(av, _mm256_loadu_si256(w0.add(j) as *const __m256i));
            let x1 = _mm256_xor_si256(av, _mm256_loadu_si256(w1.add(j) as *const __m256i));
            s0 = _mm256_add_epi64(s0, count(x0));
            s1 = _mm256_add_epi64(s1, count(x1));
            j += 4;
        }
        for (k, s) in [(0, s0), (1, s1)] {
            let mut lanes = [0u64; 4];
            _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, s);
            let wr = std::slice::from_raw_parts(w.as_ptr().add((r + k) * words + full), words - full);
            let tail = dot_reference(&a[full..], wr);
            counts[r + k] = lanes.iter().sum::<u64>() as u32 + tail;
        }
        r += 2;
    }
    for (k, c) in counts.iter_mut().enumerate().skip(r) {
        *c = dot_reference(a, &w[k * words..(k + 1) * words]);
    }
}

/// `popcount(a XOR b)` one word at a time: the definition every path is tested against.
pub fn dot_reference(a: &[u64], b: &[u64]) -> u32 {
    a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum()
}

/// Test and benchmark access to one path: `alpha * dot(sign(x), sign(W)) + b` for a `[rows,
/// width]` binary weight given as f32 `+-alpha_r`; `None` when the weight is not binary.
pub fn binary_linear_on(
    path: PopcountPath,
    w: &[f32],
    rows: usize,
    width: usize,
    x: &[f32],
    n: usize,
    bias: Option<&[f32]>,
) -> Option<Vec<f32>> {
    let m = BinaryMatrix::from_dense(w, rows, width)?;
    Some(m.linear_on(path, x, n, bias, Fused::None))
}
