//! Integer Linear and Conv2d layers: 8-bit activations (u8 codes) times 8-bit weights (i8
//! codes), summed exactly in i32 ([`gemm`]), then one multiply per output back to f32.
//!
//! A compiled plan runs a layer this way when its input is the output of an 8-bit (or
//! narrower) [`crate::ir::Op::FakeQuant`] node and every weight row lies on a symmetric grid
//! `scale_r * q` with `|q|` within what the CPU's product sums exactly: 127 with AVX-512 VNNI
//! (`pare quantize --bits 8` bakes that, per channel or per tensor), 64 with AVX2 alone (`--bits
//! 7`; see [`gemm`] on `vpmaddubsw`'s saturation). The layer then computes what the f32 engine
//! computes on the fake-quantized values, `y_r = s_x * s_r * sum_k (u_k - z) q_rk + b_r` with
//! `u` the activation codes and `z` their zero point, but the sum runs on integers: `sum_k u_k
//! q_rk - z * sum_k q_rk`, the second term computed once per row when the layer is compiled.

mod conv;
mod gemm;

use rayon::prelude::*;

pub use conv::Int8Conv;
pub use gemm::{dot_reference as int8_dot_reference, Int8Path, MAX_WEIGHT_CODE};
use gemm::{Packed, MR};

use super::Fused;
use crate::ir::tensor::Store;
use crate::ir::{QParams, Tensor};

/// Multiply-adds below which a product runs on one thread (a wake-up of the other core costs
/// about as much as 2^21 of them).
const PARALLEL_ABOVE: usize = 1 << 22;

/// How a layer's f32 input becomes codes: the fake quantizer it reads, its levels shifted to
/// start at 0 so that they fit a `u8`.
#[derive(Clone, Copy, Debug)]
pub struct ActCodes {
    params: QParams,
}

impl ActCodes {
    /// The codes of `params`, or `None` when its levels do not fit in 8 bits.
    pub fn new(params: QParams) -> Option<ActCodes> {
        (params.qmax - params.qmin <= 255 && params.scale > 0.0 && params.scale.is_finite())
            .then_some(ActCodes { params })
    }

    /// The codes of `src` into `dst`: `quantize(x) - qmin`, rounded as [`QParams::fake`]
    /// rounds (a division, ties to even), sixteen at a time with AVX-512 and eight with AVX2:
    /// a scalar quantization was most of the time of a layer with few outputs.
    ///
    /// The SIMD paths multiply by the reciprocal of the scale, which is within 2^-22
    /// (relative) of the quotient: it rounds to the same integer unless the product lies that
    /// close to a half-integer, and for the values of a vector where any one does, they divide.
    fn codes(&self, src: &[f32], dst: &mut [u8]) {
        #[cfg(target_arch = "x86_64")]
        match Int8Path::best() {
            // SAFETY: the CPU has AVX-512 F (the 512-bit VNNI path needs it).
            Int8Path::Vnni512 => return unsafe { self.codes_avx512(src, dst) },
            // SAFETY: the CPU has AVX2 (`best`; every CPU with AVX-512 VL has it).
            Int8Path::Vnni | Int8Path::Avx2 => return unsafe { self.codes_avx2(src, dst) },
            Int8Path::Portable => {}
        }
        self.codes_portable(src, dst)
    }

    /// The quantizer the codes are of.
    pub fn params(&self) -> QParams {
        self.params
    }

    /// `QParams::fake` of every value of `src` into `dst`, through the codes: a fake quantizer
    /// that runs for a reader that is not an integer layer.
    pub(in crate::native) fn fake(&self, src: &[f32], dst: &mut [f32]) {
        let p = self.params;
        let mut codes = [0u8; 4096];
        for (s, d) in src.chunks(codes.len()).zip(dst.chunks_mut(codes.len())) {
            let codes = &mut codes[..s.len()];
            self.codes(s, codes);
            for (v, &c) in d.iter_mut().zip(codes.iter()) {
                *v = p.dequantize(c as i32 + p.qmin);
            }
        }
    }

    /// [`ActCodes::codes`] sixteen at a time, narrowed to bytes by one `vpmovusdb`.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn codes_avx512(&self, src: &[f32], dst: &mut [u8]) {
        use std::arch::x86_64::*;
        let p = self.params;
        let n = src.len().min(dst.len());
        let (s, z) = (_mm512_set1_ps(p.scale), _mm512_set1_ps(p.zero_point as f32));
        let (lo, hi) = (_mm512_set1_ps(p.qmin as f32), _mm512_set1_ps(p.qmax as f32));
        let recip = 1.0 / p.scale;
        // Without a finite reciprocal (a subnormal scale), every vector divides.
        let r = _mm512_set1_ps(if recip.is_finite() { recip } else { f32::NAN });
        let (half, tol) = (_mm512_set1_ps(0.5), _mm512_set1_ps(1.0 / (1 << 20) as f32));
        const FLOOR: i32 = _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC;
        const NEAREST: i32 = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
        let mut i = 0;
        while i + 16 <= n {
            // SAFETY: i + 16 <= the length of both slices.
            let x = _mm512_loadu_ps(src.as_ptr().add(i));
            let y = _mm512_mul_ps(x, r);
            // As in `codes_avx2`: near a tie, or NaN, divides.
            let frac = _mm512_sub_ps(y, _mm512_roundscale_ps::<FLOOR>(y));
            let off = _mm512_abs_ps(_mm512_sub_ps(frac, half));
            let near = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(off, _mm512_mul_ps(_mm512_abs_ps(y), tol));
            let bad = near | _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(y, y);
            let y = if bad != 0 { _mm512_div_ps(x, s) } else { y };
            let q = _mm512_roundscale_ps::<NEAREST>(y);
            let q = _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_UNORD_Q>(q, q), q, _mm512_setzero_ps());
            let v = _mm512_sub_ps(_mm512_min_ps(_mm512_max_ps(_mm512_add_ps(q, z), lo), hi), lo);
            let b = _mm512_cvtusepi32_epi8(_mm512_cvtps_epi32(v));
            _mm_storeu_si128(dst.as_mut_ptr().add(i) as *mut __m128i, b);
            i += 16;
        }
        self.codes_avx2(&src[i..n], &mut dst[i..n])
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn codes_avx2(&self, src: &[f32], dst: &mut [u8]) {
        use std::arch::x86_64::*;
        let p = self.params;
        let n = src.len().min(dst.len());
        let (s, z) = (_mm256_set1_ps(p.scale), _mm256_set1_ps(p.zero_point as f32));
        let (lo, hi) = (_mm256_set1_ps(p.qmin as f32), _mm256_set1_ps(p.qmax as f32));
        let zero = _mm256_setzero_ps();
        let recip = 1.0 / p.scale;
        // Without a finite reciprocal (a subnormal scale), every vector divides.
        let r = _mm256_set1_ps(if recip.is_finite() { recip } else { f32::NAN });
        let (half, tol, abs) = (
            _mm256_set1_ps(0.5),
            _mm256_set1_ps(1.0 / (1 << 20) as f32),
            _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff)),
        );
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= the length of both slices.
            let x = _mm256_loadu_ps(src.as_ptr().add(i));
            let y = _mm256_mul_ps(x, r);
            // |frac(y) - 1/2| <= 2^-20 |y|: near a tie (exact for |y| < 2^20; beyond, always
            // true). NaN (a NaN input, or no reciprocal) compares false, hence the `ord` test.
            let frac = _mm256_sub_ps(y, _mm256_floor_ps(y));
            let off = _mm256_and_ps(_mm256_sub_ps(frac, half), abs);
            let near = _mm256_cmp_ps(off, _mm256_mul_ps(_mm256_and_ps(y, abs), tol), _CMP_LE_OQ);
            let bad = _mm256_or_ps(near, _mm256_cmp_ps(y, y, _CMP_UNORD_Q));
            let y = if _mm256_movemask_ps(bad) != 0 {
                _mm256_div_ps(x, s)
            } else {
                y
            };
            let q = _mm256_round_ps(y, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            let q = _mm256_blendv_ps(q, zero, _mm256_cmp_ps(q, q, _CMP_UNORD_Q));
            let v = _mm256_sub_ps(_mm256_min_ps(_mm256_max_ps(_mm256_add_ps(q, z), lo), hi), lo);
            let w = _mm256_cvtps_epi32(v);
            // Eight values in 0..=255 to eight bytes: 32 -> 16 -> 8 bits per lane, each
            // 128-bit half keeping its four in its low word.
            let b = _mm256_packus_epi16(_mm256_packus_epi32(w, w), _mm256_packus_epi32(w, w));
            let low = _mm_cvtsi128_si32(_mm256_castsi256_si128(b)) as u32 as u64;
            let high = _mm_cvtsi128_si32(_mm256_extracti128_si256(b, 1)) as u32 as u64;
            (dst.as_mut_ptr().add(i) as *mut u64).write_unaligned(low | high << 32);
            i += 8;
        }
        self.codes_portable(&src[i..n], &mut dst[i..n])
    }

    /// In f32 throughout: `round(x / s) + z` is an integer below 2^24 wherever it is not
    /// clamped anyway, so the sum and the clamp are exact; NaN gets the zero point, as
    /// [`QParams::quantize`] gives it.
    fn codes_portable(&self, src: &[f32], dst: &mut [u8]) {
        let p = self.params;
        let (z, lo, hi) = (p.zero_point as f32, p.qmin as f32, p.qmax as f32);
        for (d, &x) in dst.iter_mut().zip(src) {
            let q = (x / p.scale).round_ties_even();
            let q = if q.is_nan() { 0.0 } else { q };
            *d = ((q + z).clamp(lo, hi) - lo) as u8;
        }
    }

    /// The code of the value 0 (padding, and the offset subtracted from every sum).
    fn zero(&self) -> i32 {
        self.params.zero_point - self.params.qmin
    }
}

/// A `[rows, width]` weight as integer codes with one scale per row, packed for [`gemm`].
#[derive(Clone, Debug)]
pub struct Int8Matrix {
    width: usize,
    packed: Packed,
    scale: Vec<f32>,
    /// `sum_k q_rk` per row: the zero-point correction.
    sums: Vec<i32>,
    /// The largest `|q|`: which paths may run the matrix.
    top: i32,
}

impl Int8Matrix {
    /// The integer form of a row-major `[rows, width]` f32 weight, or `None` unless every row
    /// is `scale_r * q` with integer `|q|` within [`Int8Path::max_weight_code`] of the CPU's
    /// path. The grid is found from the
    /// largest magnitude of the row or of the tensor (per-channel or per-tensor quantization)
    /// divided by the top code of a symmetric 2- to 8-bit quantizer.
    pub fn from_dense(w: &[f32], rows: usize, width: usize) -> Option<Int8Matrix> {
        let (codes, scale) = grid(w, rows, width)?;
        Some(Int8Matrix::from_codes(&codes, scale, rows, width))
    }

    /// Whether [`Int8Matrix::from_dense`] would accept `w` (without packing it).
    pub(in crate::native) fn is_on_grid(w: &[f32], rows: usize, width: usize) -> bool {
        grid(w, rows, width).is_some()
    }

    /// The integer form of a `[rows, width]` weight tensor: its codes as they are held
    /// ([`Store::Int`] within the CPU's code range; no f32 copy is made), else found from its
    /// f32 values ([`Int8Matrix::from_dense`]).
    pub fn from_tensor(t: &Tensor, rows: usize, width: usize) -> Option<Int8Matrix> {
        match held_codes(t, rows, width) {
            Some((q, scale)) => Some(Int8Matrix::from_codes(q, scale, rows, width)),
            None => Int8Matrix::from_dense(t.data(), rows, width),
        }
    }

    /// Whether [`Int8Matrix::from_tensor`] would accept `t`.
    pub(in crate::native) fn is_int_tensor(t: &Tensor, rows: usize, width: usize) -> bool {
        held_codes(t, rows, width).is_some() || Int8Matrix::is_on_grid(t.data(), rows, width)
    }

    /// The matrix of codes `q` `[rows, width]` (each within `MAX_WEIGHT_CODE`) and row scales.
    pub fn from_codes(q: &[i8], scale: Vec<f32>, rows: usize, width: usize) -> Int8Matrix {
        let sums = q
            .chunks(width)
            .map(|r| r.iter().map(|&v| v as i32).sum())
            .collect();
        let top = q.iter().map(|&v| (v as i32).abs()).max().unwrap_or(0);
        // 4-bit weights two to a byte where a kernel reads them so (half the memory).
        let packed = if top <= 7 && Int8Path::packs_nibbles() {
            Packed::nibbles(q, rows, width)
        } else {
            Packed::new(q, rows, width)
        };
        Int8Matrix {
            width,
            packed,
            scale,
            sums,
            top,
        }
    }

    /// Whether the codes are held two to a byte (4-bit weights on a SIMD path).
    pub fn is_int4(&self) -> bool {
        self.packed.nibbles
    }

    /// The same weight with its columns reordered: column `j` of the result is column
    /// `order[j]` of `w` (a convolution's filters from `[ci][ky][kx]` to `[ky][kx][ci]`).
    fn permuted<T: Copy>(w: &[T], rows: usize, order: &[usize]) -> Vec<T> {
        let width = order.len();
        let mut out = Vec::with_capacity(w.len());
        for row in w.chunks(width).take(rows) {
            out.extend(order.iter().map(|&j| row[j]));
        }
        out
    }

    fn rows(&self) -> usize {
        self.packed.rows
    }

    /// `y = x W^T + b` on `n` rows of `width` values, the input quantized by `act`, the ReLU
    /// fused when `relu` says so.
    pub(super) fn linear(
        &self,
        act: ActCodes,
        x: &[f32],
        n: usize,
        bias: Option<&[f32]>,
        relu: Fused,
    ) -> Vec<f32> {
        self.linear_on(Int8Path::best(), act, x, n, bias, relu)
    }

    /// [`Int8Matrix::linear`] on one path (for tests and benchmarks).
    pub fn linear_path(
        &self,
        path: Int8Path,
        act: ActCodes,
        x: &[f32],
        n: usize,
        bias: Option<&[f32]>,
    ) -> Vec<f32> {
        self.linear_on(path, act, x, n, bias, Fused::None)
    }

    fn linear_on(
        &self,
        path: Int8Path,
        act: ActCodes,
        x: &[f32],
        n: usize,
        bias: Option<&[f32]>,
        relu: Fused,
    ) -> Vec<f32> {
        debug_assert_eq!(x.len(), n * self.width);
        assert!(
            self.top <= path.max_weight_code(),
            "int8: codes up to {} on the {path:?} path",
            self.top
        );
        let (width, kp, rows) = (self.width, self.packed.kp, self.rows());
        let mut a = vec![0u8; n * kp];
        let mut y = super::buffers::scratch(n * rows);
        let epilogue = self.epilogue(act, bias, relu);
        // Codes of the samples `x`, then their products into `y`.
        let run = |a: &mut [u8], x: &[f32], y: &mut [f32]| {
            for (dst, src) in a.chunks_mut(kp).zip(x.chunks(width)) {
                act.codes(src, dst);
            }
            gemm::product(path, a, a.len() / kp, &self.packed, |i, r0, sums| {
                epilogue(r0, sums, &mut y[i * rows + r0..i * rows + r0 + sums.len()])
            });
        };
        let threads = rayon::current_num_threads().max(1);
        if n * rows * width > PARALLEL_ABOVE && n > MR && threads > 1 {
            let per = n.div_ceil(threads).div_ceil(MR) * MR;
            a.par_chunks_mut(per * kp)
                .zip(x.par_chunks(per * width))
                .zip(y.par_chunks_mut(per * rows))
                .for_each(|((a, x), y)| run(a, x, y));
        } else {
            run(&mut a, x, &mut y);
        }
        y
    }

    /// Outputs `r0 ..` of the integer sums `sums` into `dst`: `s_x * s_r * (s - z * sum_k
    /// q_rk) + b_r`, ReLU fused; per row, a scale and an offset (computed once per call), so
    /// that the loop over a tile's sums vectorizes.
    fn epilogue<'a>(
        &'a self,
        act: ActCodes,
        bias: Option<&'a [f32]>,
        relu: Fused,
    ) -> impl Fn(usize, &[i32], &mut [f32]) + Sync + 'a {
        let z = act.zero();
        let scale: Vec<f32> = self.scale.iter().map(|s| act.params.scale * s).collect();
        let offset: Vec<i32> = self.sums.iter().map(|s| z * s).collect();
        let bias: Vec<f32> = bias.map_or_else(|| vec![0.0; self.rows()], <[f32]>::to_vec);
        move |r0: usize, sums: &[i32], dst: &mut [f32]| {
            let n = sums.len();
            let (scale, offset, bias) = (&scale[r0..r0 + n], &offset[r0..r0 + n], &bias[r0..r0 + n]);
            for j in 0..n {
                dst[j] = (sums[j] - offset[j]) as f32 * scale[j] + bias[j];
            }
            if relu == Fused::Relu {
                dst.iter_mut().for_each(|v| *v = v.max(0.0));
            }
        }
    }
}

/// The codes of a `[rows, width]` tensor held as integers ([`Store::Int`]) and a scale per row,
/// when this CPU's product takes them.
fn held_codes(t: &Tensor, rows: usize, width: usize) -> Option<(&[i8], Vec<f32>)> {
    let Store::Int { codes, scales, .. } = t.store() else {
        return None;
    };
    let limit = Int8Path::best().max_weight_code();
    let fits = rows > 0
        && width > 0
        && codes.len() == rows * width
        && (scales.len() == 1 || scales.len() == rows)
        && codes.iter().all(|&q| (q as i32).abs() <= limit);
    fits.then(|| {
        (
            codes.as_slice(),
            (0..rows).map(|r| scales[r % scales.len()]).collect(),
        )
    })
}

/// The codes (row-major) and row scales of a `[rows, width]` weight on an integer grid whose
/// codes this CPU's product takes.
fn grid(w: &[f32], rows: usize, width: usize) -> Option<(Vec<i8>, Vec<f32>)> {
    crate::ir::quant::weight_grid(w, rows, width, Int8Path::best().max_weight_code())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Scheme;

    /// The vector path rounds as the fake quantizer does: ties to even, saturation at both
    /// ends, infinities, signed zeros and NaN (the zero point), at lengths off the 8-lane step.
    type Codes = fn(&ActCodes, &[f32], &mut [u8]);

    /// Every quantization path this CPU runs.
    fn code_paths() -> Vec<(&'static str, Codes)> {
        let mut v: Vec<(&'static str, Codes)> = vec![("portable", |a, s, d| a.codes_portable(s, d))];
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has the feature.
                v.push(("avx2", |a, s, d| unsafe { a.codes_avx2(s, d) }));
            }
            if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has the features.
                v.push(("avx512", |a, s, d| unsafe { a.codes_avx512(s, d) }));
            }
        }
        v
    }

    #[test]
    fn codes_equal_the_quantizer_on_every_path() {
        for symmetric in [false, true] {
            let p = Scheme { bits: 8, symmetric }.params(-2.0, 3.0);
            let act = ActCodes::new(p).unwrap();
            let mut x: Vec<f32> = vec![0.0, -0.0, f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e30, -1e30];
            x.extend((-700..700).map(|k| k as f32 * p.scale * 0.5));
            x.extend((0..37).map(|k| (k as f32 * 0.37).sin() * 4.0));
            let want: Vec<u8> = x.iter().map(|&v| (p.quantize(v) - p.qmin) as u8).collect();
            // A running fake quantizer, through the codes.
            let mut fake = vec![0f32; x.len()];
            act.fake(&x, &mut fake);
            for (f, &v) in fake.iter().zip(&x) {
                assert_eq!(f.to_bits(), p.fake(v).to_bits(), "fake({v})");
            }
            for len in [x.len(), 7, 9, 17, 33] {
                for (name, codes) in code_paths() {
                    let mut got = vec![0u8; len];
                    codes(&act, &x[..len], &mut got);
                    assert_eq!(got, want[..len], "symmetric {symmetric}, {name}, {len} values");
                }
            }
        }
    }

    /// The reciprocal shortcut rounds like the division: random scales, values within a few
    /// ulps of every half-integer quotient, and values far out of range.
    #[test]
    fn codes_round_like_the_division_next_to_every_tie() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        for _ in 0..200 {
            let lo = -rng.random_range(0.001f32..50.0);
            let hi = rng.random_range(0.001f32..50.0);
            let p = Scheme {
                bits: rng.random_range(2..=8),
                symmetric: rng.random_bool(0.5),
            }
            .params(lo, hi);
            let act = ActCodes::new(p).unwrap();
            let mut x = Vec::new();
            for k in -300..300 {
                let t = (k as f32 + 0.5) * p.scale;
                let mut v = t;
                for _ in 0..4 {
                    v = v.next_down();
                }
                for _ in 0..9 {
                    x.push(v);
                    v = v.next_up();
                }
                x.push(rng.random_range(-1e6f32..1e6));
            }
            let want: Vec<u8> = x.iter().map(|&v| (p.quantize(v) - p.qmin) as u8).collect();
            for (name, codes) in code_paths() {
                let mut got = vec![0u8; x.len()];
                codes(&act, &x, &mut got);
                assert_eq!(got, want, "{name}, scale {}", p.scale);
            }
        }
    }
}
