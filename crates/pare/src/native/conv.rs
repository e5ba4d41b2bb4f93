//! Convolution as matrix products ([`super::matmul`]): one im2col (or "tap rows") product per
//! block of samples, blocks over the cores, bias and ReLU applied in the output pass; depthwise
//! convolutions as row multiply-adds.

use rayon::prelude::*;

use super::matmul::{matmul, SharedOut};
use super::Fused;
use crate::ir::op::Conv2d;
use crate::ir::Op;

use std::cell::RefCell;

thread_local! {
    /// Each thread's im2col buffer: one block's columns (about 512 KiB), kept between calls so
    /// that no convolution pays for fresh pages.
    static COLS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn out_size(size: usize, k: usize, s: usize, p: usize, d: usize) -> usize {
    (size + 2 * p - (d * (k - 1) + 1)) / s + 1
}

/// A Conv2d on channel-major images `[c, n, h, w]`: returns the output and its `(h, w, c)`.
pub(super) fn conv2d(
    op: &Op,
    x: &[f32],
    [c, n, h, w]: [usize; 4],
    weight: &[f32],
    bias: Option<&[f32]>,
    relu: Fused,
) -> (Vec<f32>, usize, usize, usize) {
    let Op::Conv2d(Conv2d {
        in_channels,
        out_channels,
        kernel_size: [kh, kw],
        stride,
        padding,
        dilation,
        groups,
        ..
    }) = *op
    else {
        unreachable!("conv2d is called for Conv2d nodes");
    };
    debug_assert_eq!(c, in_channels);
    let (oh, ow) = (
        out_size(h, kh, stride[0], padding[0], dilation[0]),
        out_size(w, kw, stride[1], padding[1], dilation[1]),
    );
    let p = n * oh * ow;
    // Every element is written: by the products (they do not read `y`) or the depthwise loop.
    let mut y = super::buffers::scratch(out_channels * p);
    let geom = Geometry {
        n,
        h,
        w,
        oh,
        ow,
        kh,
        kw,
        stride,
        padding,
        dilation,
    };
    if groups == in_channels && groups == out_channels && groups > 1 {
        depthwise(x, weight, &geom, &mut y);
        epilogue(&mut y, p, bias, relu);
        return (y, oh, ow, out_channels);
    }
    let (cin, cout) = (in_channels / groups, out_channels / groups);
    let k = cin * kh * kw;
    let direct = kh == 1 && kw == 1 && stride == [1, 1] && padding == [0, 0];
    // Blocks of whole samples whose im2col columns fit in a core's L2 cache (~512 KiB), one
    // matrix product each, blocks spread over the cores.
    let plane = oh * ow;
    // Blocks hold whole units of `unit` samples, so that a block's output positions are a
    // multiple of 8 (one SIMD register): `gemm` then reads the columns in place instead of
    // copying them into its packed layout first (measured in paired runs on ResNet-20 pruned to
    // half its MACs, whose 7x7 stage had blocks of 6 samples = 294 positions: 0.3-4% faster).
    let unit = 8 / gcd(plane, 8);
    let units = n.div_ceil(unit);
    let per_block = (128 * 1024 / (k * plane * unit).max(1)).clamp(1, units);
    // As many blocks as that needs, rounded up to a multiple of the thread count and sized to
    // within one unit of each other: 11 blocks on 2 cores would leave one core idle for a
    // twelfth of the layer (measured: ResNet-20's last stage at 45 channels, 8% slower).
    let threads = rayon::current_num_threads().max(1);
    let blocks = match units.div_ceil(per_block) {
        1 => 1,
        b => (b.div_ceil(threads) * threads).min(units),
    };
    let first = |b: usize| (b * units / blocks * unit).min(n);
    // im2col reads the input as it is and writes the zero border itself: a padded copy of the
    // input was one more pass over every activation, a cost linear in the channel count that
    // pruning saves less of than MACs.
    let source: Option<&[f32]> = (!direct).then_some(x);
    let ph = h + 2 * padding[0];
    // One sample per block at stride 1 (the large early layers): "tap rows" instead of im2col.
    // The columns hold each (input channel, kernel column) over every padded input row, and
    // the kernel's rows become `kh` products that read those columns shifted by whole output
    // rows, accumulating into the output: a third of im2col's copying for a 3x3 kernel. im2col
    // was about a fifth of the engine's time on ResNet-20 (perf), and being linear in the
    // channel count it hid part of what pruning saves.
    let tap_rows = source.is_some() && stride == [1, 1] && kh > 1 && blocks == n;
    // The weights per kernel row, `[ky][cout][cin * kw]`, for those products.
    let by_row: Vec<f32> = if tap_rows {
        let mut v = Vec::with_capacity(weight.len());
        for g in 0..groups {
            for ky in 0..kh {
                for co in 0..cout {
                    for ci in 0..cin {
                        let at = (g * cout + co) * k + (ci * kh + ky) * kw;
                        v.extend_from_slice(&weight[at..at + kw]);
                    }
                }
            }
        }
        v
    } else {
        Vec::new()
    };
    let out = SharedOut::new(&mut y);
    for g in 0..groups {
        let wg = &weight[g * cout * k..(g + 1) * cout * k];
        (0..blocks).into_par_iter().for_each(|b| {
            let i0 = first(b);
            let (p0, len) = (i0 * plane, (first(b + 1) - i0) * plane);
            let offset = g * cout * p + p0;
            // This block writes columns p0 .. p0 + len of rows g * cout .. (g + 1) * cout of
            // `y`, which no other block of this loop writes; `y` outlives the loop and is not
            // read until it ends; `matmul` checks the span stays inside `y`.
            let dst = out.at(offset);
            // out^T [len, cout] = cols^T [len, k] x W^T [k, cout]: output positions are the
            // long side, so few output channels waste little of a kernel tile.
            match source {
                None => {
                    let xg = &x[g * cin * p..(g + 1) * cin * p];
                    matmul(
                        dst,
                        (1, p),
                        &xg[p0..],
                        (1, p),
                        wg,
                        (1, k),
                        len,
                        cout,
                        k,
                        blocks == 1,
                        false,
                    );
                }
                Some(xp) if tap_rows => {
                    // Sample i0 alone (`blocks == n`).
                    let kr = cin * kw;
                    let span = ph * ow;
                    let mut cols = COLS.take();
                    if cols.len() < kr * span {
                        cols.resize(kr * span, 0.0);
                    }
                    let xg = &xp[g * cin * n * h * w..(g + 1) * cin * n * h * w];
                    tap_row_cols(xg, cin, &geom, i0, &mut cols);
                    for ky in 0..kh {
                        let wk = &by_row[(g * kh + ky) * cout * kr..(g * kh + ky + 1) * cout * kr];
                        matmul(
                            dst,
                            (1, p),
                            &cols[ky * dilation[0] * ow..],
                            (1, span),
                            wk,
                            (1, kr),
                            len,
                            cout,
                            kr,
                            blocks == 1,
                            ky > 0,
                        );
                    }
                    COLS.set(cols);
                }
                Some(xp) => {
                    // Taken out of the thread-local, not borrowed: a thread that steals other work
                    // while it waits inside the product must not find it borrowed.
                    let mut cols = COLS.take();
                    if cols.len() < k * len {
                        cols.resize(k * len, 0.0);
                    }
                    let xg = &xp[g * cin * n * h * w..(g + 1) * cin * n * h * w];
                    im2col(xg, cin, &geom, i0, len / plane, &mut cols);
                    matmul(
                        dst,
                        (1, p),
                        &cols,
                        (1, len),
                        wg,
                        (1, k),
                        len,
                        cout,
                        k,
                        blocks == 1,
                        false,
                    );
                    COLS.set(cols);
                }
            }
            // Bias and fused ReLU while the block's output is still in cache.
            for ch in 0..cout {
                // SAFETY: as above, these `len` elements of row g * cout + ch belong to this
                // block alone.
                let row = unsafe { out.slice(offset + ch * p, len) };
                finish(row, bias.map_or(0.0, |b| b[g * cout + ch]), relu);
            }
        });
    }
    (y, oh, ow, out_channels)
}

/// Adds the bias to a run of one channel's outputs and applies the fused ReLU.
#[inline]
fn finish(row: &mut [f32], b: f32, relu: Fused) {
    if relu == Fused::Relu {
        row.iter_mut().for_each(|v| *v = (*v + b).max(0.0));
    } else if b != 0.0 {
        row.iter_mut().for_each(|v| *v += b);
    }
}

/// Adds the bias to each channel row of `[c, p]` and applies the fused ReLU.
fn epilogue(y: &mut [f32], p: usize, bias: Option<&[f32]>, relu: Fused) {
    y.par_chunks_mut(p)
        .enumerate()
        .for_each(|(ch, row)| finish(row, bias.map_or(0.0, |b| b[ch]), relu));
}

struct Geometry {
    n: usize,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    kh: usize,
    kw: usize,
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
}

/// Which output columns kernel column `kx` (or rows, kernel row `ky`) meets inside the image
/// along one axis: `ox` in `lo .. hi` reads input `x0 + (ox - lo) * stride`; the rest reads
/// padding. `size` is the input's extent, `out` the output's.
fn inside(size: usize, out: usize, k: usize, stride: usize, pad: usize, dil: usize) -> (usize, usize, usize) {
    let off = k * dil;
    let lo = if off >= pad {
        0
    } else {
        (pad - off).div_ceil(stride)
    }
    .min(out);
    let hi = if size + pad <= off {
        0
    } else {
        ((size - 1 + pad - off) / stride + 1).min(out)
    }
    .max(lo);
    (lo, hi, (lo * stride + off).saturating_sub(pad))
}

/// Writes one output line of `out.len()` taps: zeros outside `lo .. hi`, inside it the input
/// `src` from `x0` every `step` floats.
#[inline(always)]
fn line(out: &mut [f32], src: &[f32], (lo, hi, x0): (usize, usize, usize), step: usize) {
    let (left, rest) = out.split_at_mut(lo);
    let (mid, right) = rest.split_at_mut(hi - lo);
    zero_few(left);
    zero_few(right);
    if mid.is_empty() {
        // The whole line meets padding (`x0` may then lie past the row).
    } else if step == 1 {
        copy_short(mid, &src[x0..x0 + mid.len()]);
    } else {
        debug_assert!(
            x0 + (mid.len() - 1) * step < src.len(),
            "strided line inside the row"
        );
        for (o, v) in mid.iter_mut().zip(src[x0..].iter().step_by(step)) {
            *o = *v;
        }
    }
}

/// Zeroes the one or two floats a line's padding usually is without a call to `memset`, whose
/// fixed cost is many times theirs.
#[inline(always)]
fn zero_few(s: &mut [f32]) {
    match s {
        [] => {}
        [a] => *a = 0.0,
        [a, b] => (*a, *b) = (0.0, 0.0),
        _ => s.fill(0.0),
    }
}

/// `cols[(ci, ky, kx), (i, oy, ox)]` for samples `i0 .. i0 + count` of the input `[cin, n, h, w]`:
/// the pixel that kernel tap meets at that output position, zero where it meets padding.
fn im2col(x: &[f32], cin: usize, g: &Geometry, i0: usize, count: usize, cols: &mut [f32]) {
    let taps = g.kh * g.kw;
    let len = count * g.oh * g.ow;
    let [sy, sx] = g.stride;
    let same = g.stride == [1, 1] && (g.oh, g.ow) == (g.h, g.w);
    for (row, dst) in cols[..cin * taps * len].chunks_mut(len).enumerate() {
        let (ci, ky, kx) = (row / taps, (row % taps) / g.kw, row % g.kw);
        if same {
            // Output and input planes have one shape, so this tap's columns for the whole
            // block are the block's input moved by one offset, with the rows and columns that
            // meet padding cleared: one long copy instead of a short one per line (at 7x7 the
            // per-line calls cost more than the copying).
            let dy = (ky * g.dilation[0]) as isize - g.padding[0] as isize;
            let dx = (kx * g.dilation[1]) as isize - g.padding[1] as isize;
            shifted(dst, x, (ci * g.n + i0) * g.h * g.w, dy * g.w as isize + dx);
            clear_border(dst, g.h, g.w, dy, dx);
            continue;
        }
        let (ylo, yhi, y0) = inside(g.h, g.oh, ky, sy, g.padding[0], g.dilation[0]);
        let xs = inside(g.w, g.ow, kx, sx, g.padding[1], g.dilation[1]);
        for (s, sample) in dst.chunks_exact_mut(g.oh * g.ow).enumerate() {
            let plane = &x[(ci * g.n + i0 + s) * g.h * g.w..][..g.h * g.w];
            let (top, rest) = sample.split_at_mut(ylo * g.ow);
            let (mid, bottom) = rest.split_at_mut((yhi - ylo) * g.ow);
            top.fill(0.0);
            bottom.fill(0.0);
            // Rows advance by additions: a division per line costs as much as its copy.
            let mut y = y0;
            for out in mid.chunks_exact_mut(g.ow) {
                line(out, &plane[y * g.w..(y + 1) * g.w], xs, sx);
                y += sy;
            }
        }
    }
}

/// `cols[(ci, kx), (y, ox)]` for sample `i` of the input `[cin, n, h, w]` at stride 1: the pixel
/// kernel column `kx` meets at output column `ox` on row `y` of the zero-padded input, for every
/// padded row (zero on the padding). Kernel row `ky` then reads these columns from row
/// `ky * dilation` on.
fn tap_row_cols(x: &[f32], cin: usize, g: &Geometry, i: usize, cols: &mut [f32]) {
    let (top, ph) = (g.padding[0], g.h + 2 * g.padding[0]);
    let span = ph * g.ow;
    for (row, dst) in cols[..cin * g.kw * span].chunks_mut(span).enumerate() {
        let (ci, kx) = (row / g.kw, row % g.kw);
        let base = (ci * g.n + i) * g.h * g.w;
        let (above, rest) = dst.split_at_mut(top * g.ow);
        let (rows, below) = rest.split_at_mut(g.h * g.ow);
        above.fill(0.0);
        below.fill(0.0);
        if g.ow == g.w {
            // As in `im2col`: the plane moved by the column offset, edge columns cleared.
            let dx = (kx * g.dilation[1]) as isize - g.padding[1] as isize;
            shifted(rows, x, base, dx);
            clear_border(rows, g.h, g.w, 0, dx);
            continue;
        }
        let xs = inside(g.w, g.ow, kx, 1, g.padding[1], g.dilation[1]);
        let plane = &x[base..][..g.h * g.w];
        for (src, out) in plane.chunks_exact(g.w).zip(rows.chunks_exact_mut(g.ow)) {
            line(out, src, xs, 1);
        }
    }
}

/// `out[j] = x[base + j + shift]` where that index lies inside `x`, zero elsewhere.
fn shifted(out: &mut [f32], x: &[f32], base: usize, shift: isize) {
    let start = base as isize + shift;
    let lo = (-start).clamp(0, out.len() as isize) as usize;
    let hi = (x.len() as isize - start).clamp(lo as isize, out.len() as isize) as usize;
    out[..lo].fill(0.0);
    out[hi..].fill(0.0);
    let from = (start + lo as isize) as usize;
    out[lo..hi].copy_from_slice(&x[from..from + (hi - lo)]);
}

/// Zeroes, in each `[h, w]` plane of `out`, the positions whose input moved by `dy` rows and `dx`
/// columns lies outside the plane: what `shifted` read from a neighbouring row or plane.
fn clear_border(out: &mut [f32], h: usize, w: usize, dy: isize, dx: isize) {
    let rows = dy.unsigned_abs().min(h);
    let cols = dx.unsigned_abs().min(w);
    for plane in out.chunks_exact_mut(h * w) {
        if dy < 0 {
            plane[..rows * w].fill(0.0);
        } else if dy > 0 {
            plane[(h - rows) * w..].fill(0.0);
        }
        // Column by column, strided: a `fill` per row would be a `memset` call per element.
        let first = if dx < 0 { 0 } else { w - cols };
        for c in first..first + cols {
            plane[c..].iter_mut().step_by(w).for_each(|v| *v = 0.0);
        }
    }
}

/// A copy of a few dozen floats: eight at a time, without a call to `memcpy`, whose fixed cost
/// dominates lines this short.
#[inline(always)]
fn copy_short(dst: &mut [f32], src: &[f32]) {
    let mut d = dst.chunks_exact_mut(8);
    let mut s = src.chunks_exact(8);
    for (a, b) in (&mut d).zip(&mut s) {
        let b: &[f32; 8] = b.try_into().expect("chunks of 8");
        let a: &mut [f32; 8] = a.try_into().expect("chunks of 8");
        *a = *b;
    }
    for (a, b) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *a = *b;
    }
}

/// Depthwise convolution (one filter per channel), channels in parallel. Each output row is
/// the sum of `kh * kw` shifted input rows scaled by one tap: the columns a tap meets inside
/// the image are found once per kernel column ([`inside`]), so the inner loop is a branch-free
/// multiply-add over a row (contiguous at stride 1, which the compiler vectorizes). Per-pixel
/// bounds checks on every tap made MobileNet-style nets slower than their MACs.
fn depthwise(x: &[f32], weight: &[f32], g: &Geometry, y: &mut [f32]) {
    let (plane, oplane) = (g.h * g.w, g.oh * g.ow);
    let taps = g.kh * g.kw;
    let (sx, sy) = (g.stride[1], g.stride[0]);
    let cols: Vec<(usize, usize, usize)> = (0..g.kw)
        .map(|kx| inside(g.w, g.ow, kx, sx, g.padding[1], g.dilation[1]))
        .collect();
    let rows: Vec<(usize, usize, usize)> = (0..g.kh)
        .map(|ky| inside(g.h, g.oh, ky, sy, g.padding[0], g.dilation[0]))
        .collect();
    y.par_chunks_mut(g.n * oplane).enumerate().for_each(|(ch, out)| {
        let wk = &weight[ch * taps..(ch + 1) * taps];
        for i in 0..g.n {
            let src = &x[(ch * g.n + i) * plane..(ch * g.n + i + 1) * plane];
            let dst = &mut out[i * oplane..(i + 1) * oplane];
            dst.fill(0.0);
            for (ky, &(y_lo, y_hi, y0)) in rows.iter().enumerate() {
                for oy in y_lo..y_hi {
                    let srow = &src[(y0 + (oy - y_lo) * sy) * g.w..][..g.w];
                    let orow = &mut dst[oy * g.ow..(oy + 1) * g.ow];
                    for (kx, &(lo, hi, x0)) in cols.iter().enumerate() {
                        let wv = wk[ky * g.kw + kx];
                        let o = &mut orow[lo..hi];
                        if sx == 1 {
                            for (o, v) in o.iter_mut().zip(&srow[x0..x0 + (hi - lo)]) {
                                *o += wv * v;
                            }
                        } else {
                            for (o, v) in o.iter_mut().zip(srow[x0..].iter().step_by(sx)) {
                                *o += wv * v;
                            }
                        }
                    }
                }
            }
        }
    });
}
