//! An integer Conv2d: the input quantized once into channels-last codes (`[n, h, w, c]`, so
//! that a kernel row's taps are one run of bytes), im2col on those codes per block of output
//! positions (padding written as the code of 0) packed eight positions to a register, one
//! product per block with the filters broadcast (so that eight consecutive positions of one
//! output channel come out together and are stored channel-major as they are), blocks spread
//! over the cores.

use std::cell::RefCell;

use rayon::prelude::*;

use super::gemm::{pack_group, padded, product_by_position, Int8Path, GROUP};
use super::{grid, ActCodes, Int8Matrix};
use crate::ir::Op;
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
    /// `None` when the filters are not on an integer grid the CPU's product takes (see
    /// [`Int8Matrix::from_dense`]).
    pub fn new(op: &Op, weight: &[f32], act: ActCodes) -> Option<Int8Conv> {
        let Op::Conv2d {
            in_channels: cin,
            out_channels: cout,
            kernel_size: [kh, kw],
            stride,
            padding,
            dilation,
            groups: 1,
            ..
        } = *op
        else {
            return None;
        };
        // Column (ky, kx, ci) of the codes is column (ci, ky, kx) of PyTorch's filters.
        let order: Vec<usize> = (0..kh * kw)
            .flat_map(|tap| (0..cin).map(move |ci| ci * kh * kw + tap))
            .collect();
        let k = order.len();
        let (q, s) = grid(&Int8Matrix::permuted(weight, cout, &order), cout, k)?;
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
        let mut codes = vec![0u8; plane * c];
        const SPAN: usize = 1024;
        codes.par_chunks_mut(SPAN * c).enumerate().for_each(|(b, dst)| {
            let (p0, len) = (b * SPAN, dst.len() / c);
            if c == 1 {
                return self.act.codes(&x[p0..p0 + len], dst);
            }
            let mut one = [0u8; SPAN];
            for ch in 0..c {
                self.act
                    .codes(&x[ch * plane + p0..ch * plane + p0 + len], &mut one[..len]);
                for (at, &v) in one[..len].iter().enumerate() {
                    dst[at * c + ch] = v;
                }
            }
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
        (y, oh, ow, cout)
    }
}
