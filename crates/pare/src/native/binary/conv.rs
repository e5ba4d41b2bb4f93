//! The binary convolution: one patch of sign bits per output position against every filter.

use rayon::prelude::*;

use super::{mismatches, BinaryMatrix, PopcountPath};
use crate::ir::op::Conv2d;
use crate::native::Fused;

/// A binary convolution (XNOR-Net, BNN): `alpha_r * sign(w_r)` filters over the signs of the
/// input, one patch of `c_in * kh * kw` sign bits per output position (in the weight's
/// `[c, ky, kx]` order), compared with every filter by XNOR and popcount. Zero padding, which
/// the float convolution adds after the sign, is neither +1 nor -1: a position whose window
/// leaves the image counts only its bits inside, by a mask.
#[derive(Clone, Debug)]
pub(in crate::native) struct BinaryConv {
    filters: BinaryMatrix,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
}

impl BinaryConv {
    /// The binary form of an ungrouped, undilated Conv2d's weight, or `None`.
    pub(in crate::native) fn new(op: &crate::ir::Op, weight: &crate::ir::Tensor) -> Option<BinaryConv> {
        let crate::ir::Op::Conv2d(Conv2d {
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation: [1, 1],
            groups: 1,
            ..
        }) = *op
        else {
            return None;
        };
        let filters = BinaryMatrix::from_tensor(
            weight,
            out_channels,
            in_channels * kernel_size[0] * kernel_size[1],
        )?;
        Some(BinaryConv {
            filters,
            kernel: kernel_size,
            stride,
            padding,
        })
    }

    /// The convolution of channel-major images `x` (`[c, n, h, w]`): channel-major output,
    /// its height, width and channel count.
    pub(in crate::native) fn run(
        &self,
        x: &[f32],
        [c, n, h, w]: [usize; 4],
        bias: Option<&[f32]>,
        relu: Fused,
    ) -> (Vec<f32>, usize, usize, usize) {
        self.run_on(PopcountPath::best(), x, [c, n, h, w], bias, relu)
    }

    pub(in crate::native) fn run_on(
        &self,
        path: PopcountPath,
        x: &[f32],
        [c, n, h, w]: [usize; 4],
        bias: Option<&[f32]>,
        relu: Fused,
    ) -> (Vec<f32>, usize, usize, usize) {
        let [kh, kw] = self.kernel;
        let [sy, sx] = self.stride;
        let [py, px] = self.padding;
        let oh = (h + 2 * py).saturating_sub(kh) / sy + 1;
        let ow = (w + 2 * px).saturating_sub(kw) / sx + 1;
        let m = &self.filters;
        let (rows, words, width) = (m.rows, m.words, m.width);
        let positions = oh * ow;
        // Rows of the padded image as sign and inside bits, when one fits a word: a patch is
        // then `c * kh` shifted fields instead of `c * kh * kw` tests.
        let padded_w = w + 2 * px;
        let rows_fit = padded_w <= 64;
        let field = if kw >= 64 { u64::MAX } else { (1u64 << kw) - 1 };
        // Per sample and output position: counts[r] for every filter r.
        let per_sample = |i: usize| -> Vec<f32> {
            let mut patch = vec![0u64; words];
            let mut mask = vec![0u64; words];
            let mut counts = vec![0u32; rows];
            let mut out = vec![0f32; rows * positions];
            let padded_h = h + 2 * py;
            let (mut row_bits, mut row_mask) = (Vec::new(), Vec::new());
            if rows_fit {
                row_bits = vec![0u64; c * padded_h];
                row_mask = vec![0u64; c * padded_h];
                for ch in 0..c {
                    let plane = &x[(ch * n + i) * h * w..(ch * n + i + 1) * h * w];
                    for y in 0..h {
                        let (mut b, mut k) = (0u64, 0u64);
                        for (xx, v) in plane[y * w..(y + 1) * w].iter().enumerate() {
                            k |= 1 << (xx + px);
                            b |= ((*v >= 0.0) as u64) << (xx + px);
                        }
                        row_bits[ch * padded_h + y + py] = b;
                        row_mask[ch * padded_h + y + py] = k;
                    }
                }
            }
            for oy in 0..oh {
                for ox in 0..ow {
                    patch.iter_mut().for_each(|v| *v = 0);
                    mask.iter_mut().for_each(|v| *v = 0);
                    if rows_fit {
                        let mut bit = 0;
                        for ch in 0..c {
                            for ky in 0..kh {
                                let at = ch * padded_h + oy * sy + ky;
                                let shift = ox * sx;
                                let (b, k) =
                                    ((row_bits[at] >> shift) & field, (row_mask[at] >> shift) & field);
                                let (word, off) = (bit / 64, bit % 64);
                                patch[word] |= b << off;
                                mask[word] |= k << off;
                                if off + kw > 64 {
                                    patch[word + 1] |= b >> (64 - off);
                                    mask[word + 1] |= k >> (64 - off);
                                }
                                bit += kw;
                            }
                        }
                    } else {
                        let mut bit = 0;
                        for ch in 0..c {
                            let plane = &x[(ch * n + i) * h * w..(ch * n + i + 1) * h * w];
                            for ky in 0..kh {
                                let iy = (oy * sy + ky) as isize - py as isize;
                                for kx in 0..kw {
                                    let ix = (ox * sx + kx) as isize - px as isize;
                                    if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                        mask[bit / 64] |= 1 << (bit % 64);
                                        if plane[iy as usize * w + ix as usize] >= 0.0 {
                                            patch[bit / 64] |= 1 << (bit % 64);
                                        }
                                    }
                                    bit += 1;
                                }
                            }
                        }
                    }
                    let valid: usize = mask.iter().map(|k| k.count_ones() as usize).sum();
                    if valid == width {
                        mismatches(path, &patch, 1, &m.bits, words, &mut counts);
                    } else {
                        for (r, cnt) in counts.iter_mut().enumerate() {
                            let wr = &m.bits[r * words..(r + 1) * words];
                            *cnt = patch
                                .iter()
                                .zip(wr)
                                .zip(&mask)
                                .map(|((a, b), k)| ((a ^ b) & k).count_ones())
                                .sum();
                        }
                    }
                    let p = oy * ow + ox;
                    for (r, cnt) in counts.iter().enumerate() {
                        out[r * positions + p] = m.output(r, valid, *cnt, bias, relu);
                    }
                }
            }
            out
        };
        let per: Vec<Vec<f32>> = if n > 1 {
            (0..n).into_par_iter().map(per_sample).collect()
        } else {
            (0..n).map(per_sample).collect()
        };
        // [N][C_out][P] -> channel-major [C_out][N][P].
        let mut y = crate::native::buffers::scratch(rows * n * positions);
        for (i, s) in per.iter().enumerate() {
            for r in 0..rows {
                y[(r * n + i) * positions..(r * n + i + 1) * positions]
                    .copy_from_slice(&s[r * positions..(r + 1) * positions]);
            }
        }
        (y, oh, ow, rows)
    }
}
