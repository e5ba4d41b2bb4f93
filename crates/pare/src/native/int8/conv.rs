//! An integer Conv2d: the input quantized once into channels-last codes (`[n, h, w, c]`, so
//! that a kernel row's taps are one run of bytes), im2col on those codes per block of output
//! positions (padding written as the code of 0) packed eight positions to a register, one
//! product per block with the filters broadcast (so that eight consecutive positions of one
//! output channel come out together and are stored channel-major as they are), blocks spread
//! over the cores.

use std::cell::RefCell;

use rayon::prelude::*;

use super::gemm::{pack_group, padded, product_by_position, Int8Path, GROUP};
use super::{grid, held_codes, ActCodes, Int8Matrix};
use crate::ir::op::Conv2d;
use crate::ir::{Op, Tensor};
use crate::native::matmul::SharedOut;
use crate::native::Fused;

/// `dst = src` for the short runs of im2col: a loop the compiler unrolls instead of a call to
/// `memcpy` for a run of a few bytes (a 1-channel convolution copies three bytes at a time).
fn copy_small(dst: &mut [u8], src: &[u8]) {
    if dst.len() <= 32 {
        dst.iter_mut().zip(src).for_each(|(d, s)| *d = *s);
    } else {
        dst.copy_from_slice(src);
    }
}

/// Bytes of im2col rows per block: a block's activations stay in a core's L2 cache while every
/// filter passes over them.
const BLOCK_BYTES: usize = 96 * 1024;

thread_local! {
    /// Each thread's im2col block packed for the product, and one group's rows before packing,
    /// kept between calls.
    static PACKED: RefCell<(Vec<u8>, Vec<u8>)> = const { RefCell::new((Vec::new(), Vec::new())) };
    /// The calling thread's channels-last codes of a whole input, and each thread's channel
    /// planes of one block, kept between calls: fresh, they were mapped and zeroed by the
    /// kernel at every call (a tenth of a quantized ResNet-20's time in page faults).
    static CODES: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static PLANES: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A Conv2d with integer filters (ungrouped), reading a fake-quantized input.
#[derive(Clone, Debug)]
pub struct Int8Conv {
    cin: usize,
    cout: usize,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
    /// Filter codes `[cout, kp]`, taps outer and channels inner, zero past `kh * kw * cin`.
    codes: Vec<i8>,
    /// Per filter: `s_x * s_r` (the output's scale), `z * sum_k q_rk` (the zero point's share
    /// of the sum).
    scale: Vec<f32>,
    offset: Vec<i32>,
    /// The largest `|q|`: which paths may run the filters.
    top: i32,
    act: ActCodes,
}

impl Int8Conv {
    /// The integer form of `op` (an ungrouped Conv2d) with `weight` `[cout, cin, kh, kw]`, or
    /// `None` when the filters are neither held as codes the CPU's product takes nor on such an
    /// integer grid (see [`Int8Matrix::from_tensor`]).
    pub fn new(op: &Op, weight: &Tensor, act: ActCodes) -> Option<Int8Conv> {
        let Op::Conv2d(Conv2d {
            in_channels: cin,
            out_channels: cout,
            kernel_size: [kh, kw],
            stride,
            padding,
            dilation,
            groups: 1,
            ..
        }) = *op
        else {
            return None;
        };
        // Column (ky, kx, ci) of the codes is column (ci, ky, kx) of PyTorch's filters.
        let order: Vec<usize> = (0..kh * kw)
            .flat_map(|tap| (0..cin).map(move |ci| ci * kh * kw + tap))
            .collect();
        let k = order.len();
        let (q, s) = match held_codes(weight, cout, k) {
            Some((q, s)) => (Int8Matrix::permuted(q, cout, &order), s),
            None => grid(&Int8Matrix::permuted(weight.data(), cout, &order), cout, k)?,
        };
        let kp = padded(k);
        let mut codes = vec![0i8; cout * kp];
        for (dst, src) in codes.chunks_mut(kp).zip(q.chunks(k)) {
            dst[..k].copy_from_slice(src);
        }
        let offset = q
            .chunks(k)
            .map(|r| act.zero() * r.iter().map(|&v| v as i32).sum::<i32>())
            .collect();
        Some(Int8Conv {
            cin,
            cout,
            kernel: [kh, kw],
            stride,
            padding,
            dilation,
            codes,
            scale: s.iter().map(|s| s * act.params.scale).collect(),
            offset,
            top: q.iter().map(|&v| (v as i32).abs()).max().unwrap_or(0),
            act,
        })
    }

    /// The convolution of channel-major images `[c, n, h, w]`: the output `[cout, n, oh, ow]`
    /// and its `(oh, ow, cout)`.
    pub(in crate::native) fn run(
        &self,
        x: &[f32],
        dims: [usize; 4],
        bias: Option<&[f32]>,
        relu: Fused,
    ) -> (Vec<f32>, usize, usize, usize) {
        self.run_on(Int8Path::best(), x, dims, bias, relu)
    }

    /// The im2col row of output position `i` (sample, row, column of `oh x ow`) into `row`:
    /// for each kernel row, the `kw` taps of `c` channels are one run of bytes of the
    /// channels-last codes when they fall inside the image (stride and dilation aside).
    fn patch(
        &self,
        codes: &[u8],
        [_, h, w, c]: [usize; 4],
        (i, oh, ow): (usize, usize, usize),
        zero: u8,
        row: &mut [u8],
    ) {
        let [kh, kw] = self.kernel;
        let (s, oy, ox) = (i / (oh * ow), (i / ow) % oh, i % ow);
        let x0 = (ox * self.stride[1]) as isize - self.padding[1] as isize;
        let run = self.dilation[1] == 1 && x0 >= 0 && x0 as usize + kw <= w;
        for ky in 0..kh {
            let iy = (oy * self.stride[0] + ky * self.dilation[0]) as isize - self.padding[0] as isize;
            let dst = &mut row[ky * kw * c..(ky + 1) * kw * c];
            if iy < 0 || iy as usize >= h {
                dst.fill(zero);
            } else if run {
                let at = ((s * h + iy as usize) * w + x0 as usize) * c;
                copy_small(dst, &codes[at..at + kw * c]);
            } else {
                for (kx, tap) in dst.chunks_mut(c).enumerate() {
                    let ix = x0 + (kx * self.dilation[1]) as isize;
                    if ix < 0 || ix as usize >= w {
                        tap.fill(zero);
                    } else {
                        let at = ((s * h + iy as usize) * w + ix as usize) * c;
                        copy_small(tap, &codes[at..at + c]);
                    }
                }
            }
        }
    }

    /// [`Int8Conv::run`] on one product path (for tests).
    pub fn run_path(&self, path: Int8Path, x: &[f32], dims: [usize; 4], bias: Option<&[f32]>) -> Vec<f32> {
        self.run_on(path, x, dims, bias, Fused::None).0
    }

    fn run_on(
        &self,
        path: Int8Path,
        x: &[f32],
        [c, n, h, w]: [usize; 4],
        bias: Option<&[f32]>,
        relu: Fused,
    ) -> (Vec<f32>, usize, usize, usize) {
        debug_assert_eq!(c, self.cin);
        assert!(
            self.top <= path.max_weight_code(),
            "int8: codes up to {} on the {path:?} path",
            self.top
        );
        let [kh, kw] = self.kernel;
        let out = |size: usize, a: usize| {
            (size + 2 * self.padding[a] - (self.dilation[a] * (self.kernel[a] - 1) + 1)) / self.stride[a] + 1
        };
        let (oh, ow) = (out(h, 0), out(w, 1));
        let cout = self.cout;
        let kp = padded(kh * kw * c);
        // Channels-last codes, blocks of positions over the cores: each block quantizes its
        // stretch of every channel plane and interleaves it while it is in the cache.
        let plane = n * h * w;
        // Every byte is written below: the buffer's old contents never show.
        let mut codes = CODES.take();
        codes.resize(plane * c, 0);
        const SPAN: usize = 1024;
        codes.par_chunks_mut(SPAN * c).enumerate().for_each(|(b, dst)| {
            let (p0, len) = (b * SPAN, dst.len() / c);
            if c == 1 {
                return self.act.codes(&x[p0..p0 + len], dst);
            }
            let mut planes = PLANES.take();
            planes.resize(c * SPAN, 0);
            for (ch, one) in planes.chunks_exact_mut(SPAN).enumerate() {
                self.act
                    .codes(&x[ch * plane + p0..ch * plane + p0 + len], &mut one[..len]);
            }
            interleave(&planes, SPAN, c, len, dst);
            PLANES.set(planes);
        });
        let p = n * oh * ow;
        // Blocks of whole groups of positions.
        let mut per = (BLOCK_BYTES / kp).max(GROUP) / GROUP * GROUP;
        let threads = rayon::current_num_threads().max(1);
        if p * cout * kp > super::PARALLEL_ABOVE && p.div_ceil(per) < threads {
            // At least one block per core when there is work for several.
            per = p.div_ceil(threads).div_ceil(GROUP) * GROUP;
        }
        let zero = self.act.zero() as u8;
        let mut y = crate::native::buffers::scratch(cout * p);
        let out = SharedOut::new(&mut y);
        (0..p.div_ceil(per)).into_par_iter().for_each(|b| {
            let (i0, len) = (b * per, per.min(p - b * per));
            let whole = len.div_ceil(GROUP) * GROUP * kp;
            let (mut packed, mut rows) = PACKED.take();
            packed.resize(whole, 0);
            rows.resize(GROUP * kp, 0);
            for (g, dst) in packed[..whole].chunks_exact_mut(GROUP * kp).enumerate() {
                for (jj, row) in rows.chunks_exact_mut(kp).enumerate() {
                    let j = g * GROUP + jj;
                    if j < len {
                        self.patch(&codes, [n, h, w, c], (i0 + j, oh, ow), zero, row);
                    }
                }
                pack_group(&rows, dst);
            }
            product_by_position(path, &self.codes, cout, kp, &packed, len, |r, j0, sums| {
                // SAFETY: this block alone writes output positions i0 .. i0 + len (of every
                // channel); `y` outlives the loop and is not read until it ends.
                let dst = unsafe { out.slice(r * p + i0 + j0, sums.len()) };
                let (scale, offset, b) = (self.scale[r], self.offset[r], bias.map_or(0.0, |b| b[r]));
                for (d, &s) in dst.iter_mut().zip(sums) {
                    *d = (s - offset) as f32 * scale + b;
                }
                if relu == Fused::Relu {
                    dst.iter_mut().for_each(|v| *v = v.max(0.0));
                }
            });
            PACKED.set((packed, rows));
        });
        CODES.set(codes);
        (y, oh, ow, cout)
    }
}

/// Channel-major codes (`c` planes of `span` bytes, the first `len` of each used) into
/// channels-last `dst` (`len` rows of `c` bytes): a byte transpose, by 16 x 16 blocks of SIMD
/// unpacks where the channels come in sixteens (a byte at a time it was most of the time of a
/// 16-channel convolution's input).
fn interleave(planes: &[u8], span: usize, c: usize, len: usize, dst: &mut [u8]) {
    assert!(planes.len() >= c * span && len <= span && dst.len() >= len * c);
    let simd = cfg!(target_arch = "x86_64") && c.is_multiple_of(16);
    let done = if simd { len / 16 * 16 } else { 0 };
    #[cfg(target_arch = "x86_64")]
    if simd {
        for ch0 in (0..c).step_by(16) {
            for at0 in (0..done).step_by(16) {
                // SAFETY: rows ch0 + i < c of `planes` hold bytes at0 .. at0 + 16 <= len <=
                // span; rows at0 + j < len of `dst` hold bytes ch0 .. ch0 + 16 <= c (asserted
                // above). SSE2 is part of x86_64.
                unsafe {
                    transpose16(
                        planes.as_ptr().add(ch0 * span + at0),
                        span,
                        dst.as_mut_ptr().add(at0 * c + ch0),
                        c,
                    )
                };
            }
        }
    }
    for at in done..len {
        for ch in 0..c {
            dst[at * c + ch] = planes[ch * span + at];
        }
    }
}

/// Transposes 16 rows of 16 bytes (`src`, rows `src_stride` apart) into 16 rows of 16 bytes
/// (`dst`, `dst_stride` apart): four rounds of interleaving the bytes of row `i` with row
/// `i + 8`.
///
/// # Safety
/// Both ranges hold 16 rows of 16 bytes at their strides.
#[cfg(target_arch = "x86_64")]
unsafe fn transpose16(src: *const u8, src_stride: usize, dst: *mut u8, dst_stride: usize) {
    use std::arch::x86_64::*;
    let mut r = [_mm_setzero_si128(); 16];
    for (i, ri) in r.iter_mut().enumerate() {
        *ri = _mm_loadu_si128(src.add(i * src_stride) as *const __m128i);
    }
    for _ in 0..4 {
        let mut t = [_mm_setzero_si128(); 16];
        for i in 0..8 {
            t[2 * i] = _mm_unpacklo_epi8(r[i], r[i + 8]);
            t[2 * i + 1] = _mm_unpackhi_epi8(r[i], r[i + 8]);
        }
        r = t;
    }
    for (j, rj) in r.iter().enumerate() {
        _mm_storeu_si128(dst.add(j * dst_stride) as *mut __m128i, *rj);
    }
}

#[cfg(test)]
mod tests {
    use super::interleave;

    /// The SIMD transpose equals the definition for channel counts that are and are not
    /// multiples of 16, and lengths that are not.
    #[test]
    fn interleaving_equals_the_byte_transpose() {
        for &(c, len) in &[(16, 1024), (32, 37), (64, 16), (48, 5), (3, 40), (16, 0)] {
            let span = 1024;
            let planes: Vec<u8> = (0..c * span).map(|i| (i * 31 % 251) as u8).collect();
            let mut got = vec![0u8; len * c];
            interleave(&planes, span, c, len, &mut got);
            for at in 0..len {
                for ch in 0..c {
                    assert_eq!(
                        got[at * c + ch],
                        planes[ch * span + at],
                        "c {c} len {len} at {at} ch {ch}"
                    );
                }
            }
        }
    }
}
