//! Binary Linear and Conv2d layers (BNN, XNOR-Net): weights and activations of `+1`/`-1`
//! packed 64 to a word, so that a dot product of `k` terms is `k - 2 * popcount(a XOR w)` over
//! `k / 64` words instead of `k` multiply-adds.
//!
//! A compiled plan runs a layer this way when every row (filter) of its weight holds one
//! magnitude with either sign (`alpha_r * sign(w)`, what [`crate::ir::Reparam::Binarize`]
//! bakes) and its input is the output of an [`crate::ir::Op::Sign`] node: `y_r = alpha_r *
//! dot(sign(x), sign(w_r)) + b_r`, exact in integers. The popcount runs on AVX-512 VPOPCNTDQ
//! (512 bits per instruction; for a Linear layer over weights interleaved eight rows to a
//! register, so the sums need no horizontal addition), on AVX2 (nibble table lookups, Mula et
//! al.), on the POPCNT instruction, or portably, chosen at run time; every path is tested
//! against [`dot_reference`].

mod conv;

use rayon::prelude::*;

use super::Fused;
use crate::ir::tensor::Store;
use crate::ir::Tensor;
pub(in crate::native) use conv::BinaryConv;

/// (Sample, row, word) triples below which the product runs on one thread: waking the other
/// costs more than 64k word products take on one core with VPOPCNTDQ (1024 x 1024 at batch 1:
/// 0.022 ms on two threads, 0.002 ms on one).
const PARALLEL_ABOVE: usize = 1 << 16;

/// A `[rows, width]` matrix of signs, each row scaled by `alpha[r]`; bit `j % 64` of word
/// `r * words + j / 64` is 1 for `+alpha`, 0 for `-alpha`. Bits past `width` are 0.
#[derive(Clone, Debug)]
pub struct BinaryMatrix {
    rows: usize,
    width: usize,
    words: usize,
    bits: Vec<u64>,
    /// The same bits with eight rows interleaved: word `j` of rows `8 g .. 8 g + 8` at
    /// `(g * words + j) * 8 ..` (rows past the last are 0), so that one 512-bit load holds a
    /// word of eight rows and their sums build up in separate lanes, with no horizontal sum at
    /// the end (the AVX-512 path of the Linear layer).
    lanes: Vec<u64>,
    alpha: Vec<f32>,
}

/// Which popcount the CPU runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PopcountPath {
    /// AVX-512 VPOPCNTDQ: a popcount of each 64-bit lane of 512 bits in one instruction.
    Avx512,
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
                if has_vpopcntdq() {
                    PopcountPath::Avx512
                } else if is_x86_feature_detected!("avx2") {
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
            if has_vpopcntdq() {
                v.push(PopcountPath::Avx512);
            }
        }
        v
    }
}

#[cfg(target_arch = "x86_64")]
fn has_vpopcntdq() -> bool {
    is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vpopcntdq")
}

impl BinaryMatrix {
    /// Whether every row of a row-major `[rows, width]` weight holds one finite magnitude.
    pub(super) fn is_binary(w: &[f32], rows: usize, width: usize) -> bool {
        rows > 0
            && width > 0
            && w.len() == rows * width
            && w.chunks(width).all(|row| {
                let a = row[0].abs();
                a.is_finite() && row.iter().all(|v| v.abs() == a)
            })
    }

    /// The binary form of a row-major `[rows, width]` weight, or `None` when some row holds
    /// more than one magnitude.
    pub fn from_dense(w: &[f32], rows: usize, width: usize) -> Option<BinaryMatrix> {
        if !Self::is_binary(w, rows, width) {
            return None;
        }
        let words = width.div_ceil(64);
        let mut bits = vec![0u64; rows * words];
        let mut alpha = Vec::with_capacity(rows);
        for (r, row) in w.chunks(width).enumerate() {
            alpha.push(row[0].abs());
            pack_row(row, &mut bits[r * words..(r + 1) * words]);
        }
        Some(Self::from_bits(rows, width, bits, alpha))
    }

    /// The binary form of a `[rows, width]` weight tensor: from its sign bits as they are held
    /// ([`Store::Signs`] with magnitudes >= 0; no f32 copy is made), else from its f32 values
    /// ([`BinaryMatrix::from_dense`]).
    pub fn from_tensor(t: &Tensor, rows: usize, width: usize) -> Option<BinaryMatrix> {
        let Some((held, alpha)) = held_signs(t, rows, width) else {
            return Self::from_dense(t.data(), rows, width);
        };
        let words = width.div_ceil(64);
        let mut bits = vec![0u64; rows * words];
        for (r, row) in bits.chunks_mut(words).enumerate() {
            for j in 0..width {
                let k = r * width + j;
                row[j / 64] |= u64::from(held[k / 8] >> (k % 8) & 1) << (j % 64);
            }
        }
        Some(Self::from_bits(rows, width, bits, alpha.to_vec()))
    }

    /// Whether [`BinaryMatrix::from_tensor`] would accept `t`.
    pub(in crate::native) fn is_binary_tensor(t: &Tensor, rows: usize, width: usize) -> bool {
        held_signs(t, rows, width).is_some() || Self::is_binary(t.data(), rows, width)
    }

    /// The matrix of packed rows `bits` (`width.div_ceil(64)` words each) and magnitudes.
    fn from_bits(rows: usize, width: usize, bits: Vec<u64>, alpha: Vec<f32>) -> BinaryMatrix {
        let words = width.div_ceil(64);
        let mut lanes = vec![0u64; rows.div_ceil(8) * 8 * words];
        for (r, row) in bits.chunks(words).enumerate() {
            for (j, &v) in row.iter().enumerate() {
                lanes[((r / 8) * words + j) * 8 + r % 8] = v;
            }
        }
        BinaryMatrix {
            rows,
            width,
            words,
            bits,
            lanes,
            alpha,
        }
    }

    /// Output `r` from `mismatches` among `valid` bit products: `alpha_r * (valid - 2 *
    /// mismatches) + b_r`, the ReLU fused when `relu` says so.
    fn output(&self, r: usize, valid: usize, mismatches: u32, bias: Option<&[f32]>, relu: Fused) -> f32 {
        let dot = valid as i64 - 2 * mismatches as i64;
        let v = self.alpha[r] * dot as f32 + bias.map_or(0.0, |b| b[r]);
        if relu == Fused::Relu {
            v.max(0.0)
        } else {
            v
        }
    }

    /// `y = alpha * dot(sign(x), sign(W))^T + b` on `n` rows of `width` values, the ReLU fused
    /// when `relu` says so.
    pub(super) fn linear(&self, x: &[f32], n: usize, bias: Option<&[f32]>, relu: Fused) -> Vec<f32> {
        self.linear_on(PopcountPath::best(), x, n, bias, relu)
    }

    /// [`BinaryMatrix::linear`] on one popcount path (for tests and benchmarks).
    pub fn linear_path(&self, path: PopcountPath, x: &[f32], n: usize, bias: Option<&[f32]>) -> Vec<f32> {
        self.linear_on(path, x, n, bias, Fused::None)
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
        let (rows, words) = (self.rows, self.words);
        let packed = pack(x, n, self.width);
        let mut y = super::buffers::scratch(n * rows);
        let zeros;
        let bias = match bias {
            Some(b) => b,
            None => {
                zeros = vec![0.0; rows];
                &zeros
            }
        };
        let width = self.width as i32;
        // Samples `i0..i0 + out.len() / rows`, output rows `r0..r0 + out.len() / samples`.
        let finish = |i0: usize, r0: usize, samples: usize, out: &mut [f32]| {
            let span = out.len() / samples;
            let mut counts = vec![0u32; samples * span];
            let a = &packed[i0 * words..(i0 + samples) * words];
            self.mismatches_rows(path, a, samples, r0, span, &mut counts);
            // [`BinaryMatrix::output`] over a sample's run of outputs, so that it vectorizes.
            let (alpha, b) = (&self.alpha[r0..r0 + span], &bias[r0..r0 + span]);
            for (o, c) in out.chunks_mut(span).zip(counts.chunks(span)) {
                for j in 0..span {
                    o[j] = alpha[j] * (width - 2 * c[j] as i32) as f32 + b[j];
                }
                if relu == Fused::Relu {
                    o.iter_mut().for_each(|v| *v = v.max(0.0));
                }
            }
        };
        let parallel = n * rows * words > PARALLEL_ABOVE;
        if n == 1 && parallel {
            // One sample: split the rows between the threads (whole groups of eight rows).
            let chunk = rows.div_ceil(rayon::current_num_threads()).div_ceil(8).max(1) * 8;
            y.par_chunks_mut(chunk)
                .enumerate()
                .for_each(|(k, out)| finish(0, k * chunk, 1, out));
        } else {
            // Pairs of samples (the portable and POPCNT tiles load each weight word once for
            // both).
            let pair = |(k, out): (usize, &mut [f32])| finish(2 * k, 0, out.len() / rows, out);
            if parallel {
                y.par_chunks_mut(2 * rows).enumerate().for_each(pair);
            } else {
                y.chunks_mut(2 * rows).enumerate().for_each(pair);
            }
        }
        y
    }
}

impl BinaryMatrix {
    /// `counts[s * span + k]`: the mismatches of sample `s` of `a` (`samples` rows of `words`
    /// words) against row `r0 + k`, for `k < span`.
    fn mismatches_rows(
        &self,
        path: PopcountPath,
        a: &[u64],
        samples: usize,
        r0: usize,
        span: usize,
        counts: &mut [u32],
    ) {
        let words = self.words;
        assert!(r0 + span <= self.rows && a.len() >= samples * words && counts.len() >= samples * span);
        #[cfg(target_arch = "x86_64")]
        if path == PopcountPath::Avx512 && r0.is_multiple_of(8) {
            let lanes = &self.lanes[r0 * words..];
            // SAFETY: the CPU has the features (`best` and `available` offer the path only
            // then); the lengths were checked above and `lanes` holds whole groups of 8 rows
            // from row r0 on.
            return unsafe {
                match samples {
                    2 => lanes_avx512::<2>(a, lanes, words, span, counts),
                    _ => {
                        for s in 0..samples {
                            let c = &mut counts[s * span..(s + 1) * span];
                            lanes_avx512::<1>(&a[s * words..(s + 1) * words], lanes, words, span, c)
                        }
                    }
                }
            };
        }
        mismatches(
            path,
            a,
            samples,
            &self.bits[r0 * words..(r0 + span) * words],
            words,
            counts,
        )
    }
}

/// The mismatches of `S` samples (`a`, `S` rows of `words` words) against the first `span`
/// rows of interleaved weights (`lanes`, see [`BinaryMatrix`]) into `counts[s * span + k]`:
/// per word, each sample's word broadcast against eight rows' words, two groups of eight rows
/// at a time.
///
/// # Safety
/// The CPU has AVX-512 F and VPOPCNTDQ; `a` holds `S * words` words, `lanes` `span.div_ceil(8)
/// * 8 * words`, `counts` `S * span`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vpopcntdq")]
unsafe fn lanes_avx512<const S: usize>(
    a: &[u64],
    lanes: &[u64],
    words: usize,
    span: usize,
    counts: &mut [u32],
) {
    use std::arch::x86_64::*;
    let groups = span.div_ceil(8);
    debug_assert!(a.len() >= S * words && lanes.len() >= groups * 8 * words && counts.len() >= S * span);
    let (ap, lp) = (a.as_ptr(), lanes.as_ptr());
    let mut g = 0;
    while g < groups {
        let two = g + 1 < groups;
        let mut acc = [[_mm512_setzero_si512(); 2]; S];
        for j in 0..words {
            let w0 = _mm512_loadu_si512(lp.add((g * words + j) * 8) as *const _);
            let w1 = if two {
                _mm512_loadu_si512(lp.add(((g + 1) * words + j) * 8) as *const _)
            } else {
                w0
            };
            for (s, acc_s) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_epi64(*ap.add(s * words + j) as i64);
                acc_s[0] = _mm512_add_epi64(acc_s[0], _mm512_popcnt_epi64(_mm512_xor_si512(av, w0)));
                acc_s[1] = _mm512_add_epi64(acc_s[1], _mm512_popcnt_epi64(_mm512_xor_si512(av, w1)));
            }
        }
        for (s, acc_s) in acc.iter().enumerate() {
            for (h, v) in acc_s.iter().enumerate().take(if two { 2 } else { 1 }) {
                let mut lane = [0u32; 8];
                _mm256_storeu_si256(lane.as_mut_ptr() as *mut __m256i, _mm512_cvtepi64_epi32(*v));
                let r = (g + h) * 8;
                let valid = 8.min(span - r);
                counts[s * span + r..s * span + r + valid].copy_from_slice(&lane[..valid]);
            }
        }
        g += if two { 2 } else { 1 };
    }
}

/// The sign bits and magnitudes of a `[rows, width]` tensor held as signs, when they fit.
fn held_signs(t: &Tensor, rows: usize, width: usize) -> Option<(&[u8], &[f32])> {
    match t.store() {
        Store::Signs { bits, magnitudes }
            if rows > 0
                && width > 0
                && t.len() == rows * width
                && magnitudes.len() == rows
                && magnitudes.iter().all(|m| *m >= 0.0) =>
        {
            Some((bits, magnitudes))
        }
        _ => None,
    }
}

/// Packs one row of values into sign bits (1 for `>= 0`, so 0 for NaN as `sign` gives -1),
/// 64 to a word.
fn pack_row(row: &[f32], out: &mut [u64]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx() {
        // SAFETY: the CPU has AVX (checked at run time).
        return unsafe { pack_row_avx(row, out) };
    }
    pack_row_portable(row, out)
}

fn pack_row_portable(row: &[f32], out: &mut [u64]) {
    for (word, chunk) in out.iter_mut().zip(row.chunks(64)) {
        *word = chunk
            .iter()
            .enumerate()
            .fold(0u64, |acc, (j, v)| acc | (((*v >= 0.0) as u64) << j));
    }
}

#[cfg(target_arch = "x86_64")]
fn has_avx() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| is_x86_feature_detected!("avx"))
}

/// [`pack_row_portable`] eight values per compare (`vcmpps` >= 0, ordered) and `vmovmskps`.
///
/// # Safety
/// The CPU has AVX; `out.len() >= row.len().div_ceil(64)`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn pack_row_avx(row: &[f32], out: &mut [u64]) {
    use std::arch::x86_64::*;
    let zero = _mm256_setzero_ps();
    let full = row.len() / 64 * 64;
    for (k, word) in out.iter_mut().enumerate().take(full / 64) {
        let p = row.as_ptr().add(k * 64);
        let mut bits = 0u64;
        for b in 0..8 {
            let ge = _mm256_cmp_ps::<_CMP_GE_OQ>(_mm256_loadu_ps(p.add(8 * b)), zero);
            bits |= (_mm256_movemask_ps(ge) as u32 as u64) << (8 * b);
        }
        *word = bits;
    }
    pack_row_portable(&row[full..], &mut out[full / 64..]);
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

/// `counts[s * rows + r] = popcount(a_s XOR w_r)` for `samples` (1 or 2) packed inputs `a_s`
/// and every row `w_r` of `w` (`words` words each).
fn mismatches(path: PopcountPath, a: &[u64], samples: usize, w: &[u64], words: usize, counts: &mut [u32]) {
    match path {
        // SAFETY: `best` and `available` offer these paths only when the CPU has the feature.
        #[cfg(target_arch = "x86_64")]
        PopcountPath::Avx512 => unsafe { mismatches_avx512(a, samples, w, words, counts) },
        #[cfg(target_arch = "x86_64")]
        PopcountPath::Avx2 => unsafe { mismatches_avx2(a, samples, w, words, counts) },
        #[cfg(target_arch = "x86_64")]
        PopcountPath::Popcnt => unsafe { mismatches_popcnt(a, samples, w, words, counts) },
        _ => mismatches_portable(a, samples, w, words, counts),
    }
}

/// Tiles of `S` samples by four rows: each loaded word serves several popcounts, and the
/// `4 S` sums are independent (one sum would wait on the previous addition at every word).
#[inline(always)]
fn tile<const S: usize>(a: &[u64], w: &[u64], words: usize, counts: &mut [u32]) {
    let rows = w.len() / words.max(1);
    let a: [&[u64]; S] = std::array::from_fn(|s| &a[s * words..(s + 1) * words]);
    let mut r = 0;
    while r + 4 <= rows {
        let ws: [&[u64]; 4] = std::array::from_fn(|k| &w[(r + k) * words..(r + k + 1) * words]);
        let mut acc = [[0u32; 4]; S];
        for j in 0..words {
            // SAFETY: every row of `ws` and `a` holds `words` words.
            let wj = ws.map(|row| unsafe { *row.get_unchecked(j) });
            for s in 0..S {
                let x = unsafe { *a[s].get_unchecked(j) };
                for k in 0..4 {
                    acc[s][k] += (x ^ wj[k]).count_ones();
                }
            }
        }
        for s in 0..S {
            counts[s * rows + r..s * rows + r + 4].copy_from_slice(&acc[s]);
        }
        r += 4;
    }
    for rr in r..rows {
        for s in 0..S {
            counts[s * rows + rr] = dot_reference(a[s], &w[rr * words..(rr + 1) * words]);
        }
    }
}

#[inline(always)]
fn mismatches_portable(a: &[u64], samples: usize, w: &[u64], words: usize, counts: &mut [u32]) {
    if samples == 2 {
        tile::<2>(a, w, words, counts)
    } else {
        tile::<1>(a, w, words, counts)
    }
}

/// [`mismatches_portable`] compiled with the POPCNT instruction.
///
/// # Safety
/// The CPU has POPCNT.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
unsafe fn mismatches_popcnt(a: &[u64], samples: usize, w: &[u64], words: usize, counts: &mut [u32]) {
    mismatches_portable(a, samples, w, words, counts)
}

/// 256 bits at a time: the popcount of each byte from a 16-entry nibble table (`vpshufb`),
/// byte counts summed over up to 31 blocks (at most 248 per byte), then into 64-bit lanes by
/// `vpsadbw`. Tiles of one input by four rows, so that the loop over a row's words carries four
/// independent sums and the per-tile work (reductions, tails) is paid once per four rows; the
/// words past the last multiple of four are counted by scalar popcounts.
///
/// # Safety
/// The CPU has AVX2; `a.len() == samples * words`, `w.len()` a multiple of `words` and
/// `counts.len() == samples * w.len() / words`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn mismatches_avx2(a: &[u64], samples: usize, w: &[u64], words: usize, counts: &mut [u32]) {
    use std::arch::x86_64::*;
    let table = _mm256_setr_epi8(
        0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
    );
    let low = _mm256_set1_epi8(0x0f);
    let zero = _mm256_setzero_si256();
    let full = words / 4 * 4;
    let rows = w.len() / words.max(1);
    // Macros rather than closures: a closure does not inherit the function's target features.
    const R: usize = 8;
    macro_rules! count {
        ($acc:expr, $x:expr) => {{
            let x = $x;
            let lo = _mm256_shuffle_epi8(table, _mm256_and_si256(x, low));
            let hi = _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(x, 4), low));
            $acc = _mm256_add_epi8($acc, _mm256_add_epi8(lo, hi));
        }};
    }
    macro_rules! load {
        ($p:expr) => {
            _mm256_loadu_si256($p as *const __m256i)
        };
    }
    let wp = w.as_ptr();
    for s in 0..samples {
        let ap = a.as_ptr().add(s * words);
        let out = counts.as_mut_ptr().add(s * rows);
        let mut r = 0;
        while r + R <= rows {
            let p: [*const u64; R] = std::array::from_fn(|k| wp.add((r + k) * words));
            let mut t = [zero; R];
            let mut j = 0;
            while j < full {
                let end = (j + 4 * 31).min(full);
                let mut c = [zero; R];
                while j < end {
                    let av = load!(ap.add(j));
                    for k in 0..R {
                        count!(c[k], _mm256_xor_si256(av, load!(p[k].add(j))));
                    }
                    j += 4;
                }
                for k in 0..R {
                    t[k] = _mm256_add_epi64(t[k], _mm256_sad_epu8(c[k], zero));
                }
            }
            for k in 0..R {
                let mut lanes = [0u64; 4];
                _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, t[k]);
                let mut c = (lanes[0] + lanes[1] + lanes[2] + lanes[3]) as u32;
                for jj in full..words {
                    c += (*ap.add(jj) ^ *p[k].add(jj)).count_ones();
                }
                *out.add(r + k) = c;
            }
            r += R;
        }
        let a_s = std::slice::from_raw_parts(ap, words);
        for rr in r..rows {
            *out.add(rr) = dot_reference(a_s, &w[rr * words..(rr + 1) * words]);
        }
    }
}

/// 512 bits at a time with `vpopcntq`: tiles of both samples by eight rows (each weight load
/// serves both samples), one 64-bit sum per lane, the words past the last multiple of eight
/// read through a mask.
///
/// # Safety
/// The CPU has AVX-512 F and VPOPCNTDQ; lengths as for [`mismatches_avx2`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vpopcntdq")]
unsafe fn mismatches_avx512(a: &[u64], samples: usize, w: &[u64], words: usize, counts: &mut [u32]) {
    if samples == 2 {
        mismatches_avx512_tile::<2>(a, w, words, counts)
    } else {
        for s in 0..samples {
            let rows = w.len() / words.max(1);
            mismatches_avx512_tile::<1>(
                &a[s * words..(s + 1) * words],
                w,
                words,
                &mut counts[s * rows..(s + 1) * rows],
            )
        }
    }
}

/// [`mismatches_avx512`] for `S` samples at once.
///
/// # Safety
/// As for [`mismatches_avx512`], with `a.len() == S * words`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vpopcntdq")]
unsafe fn mismatches_avx512_tile<const S: usize>(a: &[u64], w: &[u64], words: usize, counts: &mut [u32]) {
    use std::arch::x86_64::*;
    const R: usize = 8;
    let rows = w.len() / words.max(1);
    let full = words / 8 * 8;
    let tail: __mmask8 = ((1u32 << (words - full)) - 1) as __mmask8;
    let wp = w.as_ptr();
    let ap: [*const u64; S] = std::array::from_fn(|s| a.as_ptr().add(s * words));
    let out = counts.as_mut_ptr();
    let mut r = 0;
    while r + R <= rows {
        let p: [*const u64; R] = std::array::from_fn(|k| wp.add((r + k) * words));
        let mut t = [[_mm512_setzero_si512(); R]; S];
        let mut j = 0;
        while j < full + 8 {
            // The last step reads the tail through the mask (nothing when words % 8 == 0).
            let mask: __mmask8 = if j < full { 0xff } else { tail };
            if mask == 0 {
                break;
            }
            let av: [__m512i; S] =
                std::array::from_fn(|s| _mm512_maskz_loadu_epi64(mask, ap[s].add(j) as *const _));
            for k in 0..R {
                let wv = _mm512_maskz_loadu_epi64(mask, p[k].add(j) as *const _);
                for s in 0..S {
                    t[s][k] = _mm512_add_epi64(t[s][k], _mm512_popcnt_epi64(_mm512_xor_si512(av[s], wv)));
                }
            }
            j += 8;
        }
        for (s, ts) in t.iter().enumerate() {
            for (k, tk) in ts.iter().enumerate() {
                *out.add(s * rows + r + k) = _mm512_reduce_add_epi64(*tk) as u32;
            }
        }
        r += R;
    }
    for rr in r..rows {
        for (s, a_s) in a.chunks_exact(words).enumerate() {
            *out.add(s * rows + rr) = dot_reference(a_s, &w[rr * words..(rr + 1) * words]);
        }
    }
}

/// `popcount(a XOR b)` one word at a time: the definition every path is tested against.
pub fn dot_reference(a: &[u64], b: &[u64]) -> u32 {
    a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum()
}
