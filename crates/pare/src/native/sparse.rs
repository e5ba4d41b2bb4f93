//! Sparse Linear layers: a pruned weight matrix kept in compressed sparse rows (CSR), so that
//! the zeros unstructured pruning leaves cost neither time nor memory traffic.
//!
//! A compiled plan stores a Linear layer this way when at most [`SPARSE_AT_MOST`] of its weights
//! are non-zero; denser layers stay with the dense product, whose rate per multiply-add is
//! several times higher. Batch 1 runs one sparse dot product per output; larger batches add,
//! for each non-zero, a row of the transposed input into the output's row (AVX2 + FMA when the
//! CPU has them, checked at run time, with a portable fallback).

use rayon::prelude::*;

use super::Fused;

/// The largest fraction of non-zero weights at which a Linear layer runs sparse. Measured on
/// LeNet-300-100 with every layer pruned to one density (`pare bench latency`, interleaved with
/// the dense model, 2 cores with AVX2): the sparse layers ran x3.4 / x2.1 / x1.1 the dense
/// speed at batch 1 for 5% / 10% / 20% density and lost from 30% on; at batch 64 x3.2 / x2.2
/// / x1.8 and lost from about 50% on.
pub(super) const SPARSE_AT_MOST: f64 = 0.2;

/// Multiply-adds below which a product runs on one thread: waking the other costs about as
/// much as this many.
const PARALLEL_ABOVE: usize = 1 << 17;

/// A `[rows, cols]` matrix in compressed sparse rows: row `r`'s non-zeros are
/// `values[ptr[r]..ptr[r + 1]]` at columns `cols[ptr[r]..ptr[r + 1]]`.
#[derive(Clone, Debug)]
pub(super) struct Csr {
    rows: usize,
    width: usize,
    ptr: Vec<usize>,
    cols: Vec<u32>,
    values: Vec<f32>,
}

impl Csr {
    /// The non-zeros of a row-major `[rows, width]` matrix.
    pub(super) fn from_dense(w: &[f32], rows: usize, width: usize) -> Csr {
        debug_assert_eq!(w.len(), rows * width);
        let mut ptr = Vec::with_capacity(rows + 1);
        let (mut cols, mut values) = (Vec::new(), Vec::new());
        ptr.push(0);
        for row in w.chunks(width.max(1)).take(rows) {
            for (j, &v) in row.iter().enumerate() {
                if v != 0.0 {
                    cols.push(j as u32);
                    values.push(v);
                }
            }
            ptr.push(values.len());
        }
        // A matrix with no columns still has `rows` (empty) rows.
        ptr.resize(rows + 1, values.len());
        Csr {
            rows,
            width,
            ptr,
            cols,
            values,
        }
    }

    /// The fraction of a `[rows, width]` matrix `w` that is non-zero.
    pub(super) fn density(w: &[f32]) -> f64 {
        if w.is_empty() {
            return 1.0;
        }
        w.iter().filter(|v| **v != 0.0).count() as f64 / w.len() as f64
    }

    /// `y = x W^T + b` on `n` rows of `width` features, the ReLU fused when `relu` says so.
    pub(super) fn linear(&self, x: &[f32], n: usize, bias: Option<&[f32]>, relu: Fused) -> Vec<f32> {
        debug_assert_eq!(x.len(), n * self.width);
        let mut y = super::buffers::scratch(n * self.rows);
        let work = self.values.len() * n;
        let avx2 = has_avx2();
        if n < 8 {
            // Few samples: one sparse dot product per output, reading the sample's features
            // where the row's non-zeros point.
            let rows = |(i, out): (usize, &mut [f32])| {
                let xi = &x[i * self.width..(i + 1) * self.width];
                for (r, o) in out.iter_mut().enumerate() {
                    let (lo, hi) = (self.ptr[r], self.ptr[r + 1]);
                    *o = dot(&self.cols[lo..hi], &self.values[lo..hi], xi);
                }
            };
            if work > PARALLEL_ABOVE {
                y.par_chunks_mut(self.rows).enumerate().for_each(rows);
            } else {
                y.chunks_mut(self.rows).enumerate().for_each(rows);
            }
        } else {
            // Many samples: with the input transposed to `[width, n]`, each non-zero adds a
            // contiguous row of `n` values (which the compiler vectorizes) into its output's
            // row of the transposed result.
            let xt = transpose(x, n, self.width);
            let mut yt = super::buffers::scratch(self.rows * n);
            let row = |(r, out): (usize, &mut [f32])| {
                let (lo, hi) = (self.ptr[r], self.ptr[r + 1]);
                let (cols, values) = (&self.cols[lo..hi], &self.values[lo..hi]);
                match avx2 {
                    // SAFETY: the CPU has AVX2 and FMA (checked at run time); every column
                    // index is below `width` (`from_dense`), `xt` holds `width * n` values and
                    // `out` `n`.
                    #[cfg(target_arch = "x86_64")]
                    true => unsafe { sparse_row_avx2(cols, values, &xt, n, out) },
                    _ => sparse_row(cols, values, &xt, n, out),
                }
            };
            if work > PARALLEL_ABOVE {
                yt.par_chunks_mut(n).enumerate().for_each(row);
            } else {
                yt.chunks_mut(n).enumerate().for_each(row);
            }
            for (r, col) in yt.chunks(n).enumerate() {
                for (i, &v) in col.iter().enumerate() {
                    y[i * self.rows + r] = v;
                }
            }
            super::buffers::recycle(xt);
            super::buffers::recycle(yt);
        }
        if let Some(b) = bias {
            y.chunks_mut(self.rows)
                .for_each(|row| row.iter_mut().zip(b).for_each(|(v, bb)| *v += bb));
        }
        if relu == Fused::Relu {
            y.iter_mut().for_each(|v| *v = v.max(0.0));
        }
        y
    }
}

/// Whether the CPU runs the AVX2 + FMA kernel (checked once).
fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *HAS.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// `sum values[k] * x[cols[k]]`, in four independent sums: one sum would wait on the
/// previous addition at every term. (An AVX2 version gathering eight terms at a time was
/// slower on this machine's CPU: 23 against 18 us for Deep Compression's LeNet-300-100.)
fn dot(cols: &[u32], values: &[f32], x: &[f32]) -> f32 {
    let mut acc = [0.0f32; 4];
    let (c4, v4) = (cols.chunks_exact(4), values.chunks_exact(4));
    let (ct, vt) = (c4.remainder(), v4.remainder());
    for (c, v) in c4.zip(v4) {
        for k in 0..4 {
            acc[k] += v[k] * x[c[k] as usize];
        }
    }
    let tail: f32 = ct.iter().zip(vt).map(|(&c, &v)| v * x[c as usize]).sum();
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// One output row of the transposed product, portable: `out[j] = sum_k values[k] *
/// xt[cols[k] * n + j]`, sixteen columns at a time in a local accumulator (kept in registers,
/// not stored back to memory after every non-zero).
fn sparse_row(cols: &[u32], values: &[f32], xt: &[f32], n: usize, out: &mut [f32]) {
    const W: usize = 16;
    let mut j = 0;
    while j + W <= n {
        let mut acc = [0.0f32; W];
        for (&c, &v) in cols.iter().zip(values) {
            let src = &xt[c as usize * n + j..][..W];
            for k in 0..W {
                acc[k] += v * src[k];
            }
        }
        out[j..j + W].copy_from_slice(&acc);
        j += W;
    }
    columns_from(j, cols, values, xt, n, out);
}

/// Columns `j..n` of one output row, one at a time (what the wider passes leave).
fn columns_from(j: usize, cols: &[u32], values: &[f32], xt: &[f32], n: usize, out: &mut [f32]) {
    for (jj, o) in out.iter_mut().enumerate().skip(j) {
        *o = cols
            .iter()
            .zip(values)
            .map(|(&c, &v)| v * xt[c as usize * n + jj])
            .sum();
    }
}

/// [`sparse_row`] with AVX2 fused multiply-adds: 64 columns in eight registers per pass, so
/// that each non-zero issues eight independent FMAs.
///
/// # Safety
/// The CPU supports AVX2 and FMA; every `cols[k] < xt.len() / n`; `out.len() == n`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn sparse_row_avx2(cols: &[u32], values: &[f32], xt: &[f32], n: usize, out: &mut [f32]) {
    use std::arch::x86_64::*;
    debug_assert!(out.len() == n && cols.iter().all(|&c| (c as usize + 1) * n <= xt.len()));
    let (x, y) = (xt.as_ptr(), out.as_mut_ptr());
    let mut j = 0;
    while j + 64 <= n {
        let mut acc = [_mm256_setzero_ps(); 8];
        for (&c, &v) in cols.iter().zip(values) {
            let (w, src) = (_mm256_set1_ps(v), x.add(c as usize * n + j));
            for (k, a) in acc.iter_mut().enumerate() {
                *a = _mm256_fmadd_ps(w, _mm256_loadu_ps(src.add(8 * k)), *a);
            }
        }
        for (k, a) in acc.iter().enumerate() {
            _mm256_storeu_ps(y.add(j + 8 * k), *a);
        }
        j += 64;
    }
    while j + 8 <= n {
        let mut acc = _mm256_setzero_ps();
        for (&c, &v) in cols.iter().zip(values) {
            acc = _mm256_fmadd_ps(_mm256_set1_ps(v), _mm256_loadu_ps(x.add(c as usize * n + j)), acc);
        }
        _mm256_storeu_ps(y.add(j), acc);
        j += 8;
    }
    columns_from(j, cols, values, xt, n, out);
}

/// `[rows, cols]` row-major to `[cols, rows]`.
fn transpose(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = super::buffers::scratch(rows * cols);
    for (i, row) in x.chunks(cols).enumerate() {
        for (j, &v) in row.iter().enumerate() {
            t[j * rows + i] = v;
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// The sparse product equals the exact one, and the dense one, within 1e-5 of the terms'
    /// magnitude at every density (empty and full included) and batch size (both paths, one
    /// thread and several).
    #[test]
    fn sparse_rows_equal_the_dense_product() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for (rows, width) in [(300, 784), (10, 3)] {
            for density in [0.0, 0.05, 0.3, 0.7, 1.0] {
                let w: Vec<f32> = (0..rows * width)
                    .map(|_| {
                        let keep = rng.random::<f64>() < density;
                        if keep {
                            rng.random_range(-1.0..1.0)
                        } else {
                            0.0
                        }
                    })
                    .collect();
                let b: Vec<f32> = (0..rows).map(|_| rng.random_range(-1.0..1.0)).collect();
                let csr = Csr::from_dense(&w, rows, width);
                for n in [1, 3, 8, 64] {
                    let x: Vec<f32> = (0..n * width).map(|_| rng.random_range(-2.0..2.0)).collect();
                    // Exact (f64) results and each one's scale, sum |w x|: float sums in
                    // another order differ by rounding in proportion to it.
                    let exact: Vec<(f64, f64)> = (0..n * rows)
                        .map(|e| {
                            let (i, r) = (e / rows, e % rows);
                            let terms = (0..width).map(|j| w[r * width + j] as f64 * x[i * width + j] as f64);
                            let sum: f64 = terms.clone().sum::<f64>() + b[r] as f64;
                            (sum, terms.map(f64::abs).sum::<f64>() + b[r].abs() as f64)
                        })
                        .collect();
                    for relu in [Fused::None, Fused::Relu] {
                        let dense = super::super::matmul::linear(&x, n, width, &w, rows, Some(&b), relu);
                        let sparse = csr.linear(&x, n, Some(&b), relu);
                        assert_eq!(sparse.len(), dense.len());
                        for ((s, d), &(want, scale)) in sparse.iter().zip(&dense).zip(&exact) {
                            let want = if relu == Fused::Relu { want.max(0.0) } else { want };
                            let tol = 1e-5 * scale.max(1.0);
                            let what = format!("[{rows}, {width}] density {density} batch {n} {relu:?}");
                            assert!((*s as f64 - want).abs() <= tol, "{what}: sparse {s} vs {want}");
                            assert!(
                                (*s - *d).abs() as f64 <= 2.0 * tol,
                                "{what}: sparse {s} vs dense {d}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// The AVX2 kernel equals the portable one at every width it splits differently (64-,
    /// 8- and 1-column passes).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_avx2_row_equals_the_portable_row() {
        if !has_avx2() {
            return;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let width = 50;
        let cols: Vec<u32> = (0..width as u32).filter(|_| rng.random::<f64>() < 0.3).collect();
        let values: Vec<f32> = cols.iter().map(|_| rng.random_range(-1.0..1.0)).collect();
        for n in [1, 7, 8, 15, 63, 64, 65, 130] {
            let xt: Vec<f32> = (0..width * n).map(|_| rng.random_range(-2.0..2.0)).collect();
            let (mut fast, mut portable) = (vec![f32::NAN; n], vec![f32::NAN; n]);
            // SAFETY: AVX2 and FMA checked above; columns < width; both rows hold n values.
            unsafe { sparse_row_avx2(&cols, &values, &xt, n, &mut fast) };
            sparse_row(&cols, &values, &xt, n, &mut portable);
            for (a, b) in fast.iter().zip(&portable) {
                assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "n {n}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn density_counts_non_zeros() {
        assert_eq!(Csr::density(&[0.0, 1.0, 0.0, -2.0]), 0.5);
        assert_eq!(Csr::density(&[]), 1.0);
    }
}
