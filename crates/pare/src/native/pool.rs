//! Max, average and global average pooling on channel-major images, planes in parallel when
//! the work is large enough.

use rayon::prelude::*;

use crate::ir::op::pool_out;
use crate::ir::op::{AvgPool2d, MaxPool2d};
use crate::ir::Op;

/// The window reads from which a pool runs its planes on several threads.
const PARALLEL_READS: usize = 1 << 16;

/// Pools every `[h, w]` plane of `[c, n, h, w]`; returns the output and its `(h, w)`.
pub(super) fn pool(op: &Op, x: &[f32], [c, n, h, w]: [usize; 4]) -> (Vec<f32>, usize, usize) {
    let (k, s, p, ceil, mode) = match *op {
        Op::MaxPool2d(MaxPool2d {
            kernel_size,
            stride,
            padding,
            ceil_mode,
        }) => (kernel_size, stride, padding, ceil_mode, Mode::Max),
        Op::AvgPool2d(AvgPool2d {
            kernel_size,
            stride,
            padding,
            count_include_pad,
            ceil_mode,
        }) => (
            kernel_size,
            stride,
            padding,
            ceil_mode,
            Mode::Avg { count_include_pad },
        ),
        Op::GlobalAvgPool => (
            [h, w],
            [1, 1],
            [0, 0],
            false,
            Mode::Avg {
                count_include_pad: true,
            },
        ),
        _ => unreachable!("pool is called for pooling nodes"),
    };
    // The graph's shapes were checked: the window fits.
    let out = |a: usize, n: usize| pool_out(n, k[a], s[a], p[a], ceil).expect("a checked pool");
    let (oh, ow) = (out(0, h), out(1, w));
    let mut y = super::buffers::scratch(c * n * oh * ow);
    let plane = |(plane, out): (usize, &mut [f32])| {
        let src = &x[plane * h * w..(plane + 1) * h * w];
        for oy in 0..oh {
            // Window rows/cols clipped to the image (a ceil-mode window also to its end); the
            // padding is never read.
            let y0 = (oy * s[0]) as isize - p[0] as isize;
            let (ya, yb) = (y0.max(0) as usize, ((y0 + k[0] as isize) as usize).min(h));
            for ox in 0..ow {
                let x0 = (ox * s[1]) as isize - p[1] as isize;
                let (xa, xb) = (x0.max(0) as usize, ((x0 + k[1] as isize) as usize).min(w));
                let rows = (ya..yb).map(|yy| &src[yy * w + xa..yy * w + xb]);
                out[oy * ow + ox] = match mode {
                    Mode::Max => rows.fold(f32::NEG_INFINITY, |m, r| r.iter().fold(m, |m, &v| m.max(v))),
                    Mode::Avg { count_include_pad } => {
                        let count = if count_include_pad {
                            // PyTorch counts the padded window, clipped to the padded image.
                            let ye = ((y0 + k[0] as isize) as usize).min(h + p[0]);
                            let xe = ((x0 + k[1] as isize) as usize).min(w + p[1]);
                            ((ye as isize - y0) * (xe as isize - x0)) as f32
                        } else {
                            ((yb - ya) * (xb - xa)) as f32
                        };
                        // -0.0 starts the sum, as `Iterator::sum` does.
                        rows.fold(-0.0f32, |a, r| r.iter().fold(a, |a, &v| a + v)) / count
                    }
                };
            }
        }
    };
    // Planes go to the threads when there is enough to share: below about 64k window reads
    // (LeNet-5's pools at batch 1) handing out the work costs more than it saves.
    if c * n * oh * ow * k[0] * k[1] < PARALLEL_READS {
        y.chunks_mut(oh * ow).enumerate().for_each(plane);
    } else {
        y.par_chunks_mut(oh * ow).enumerate().for_each(plane);
    }
    (y, oh, ow)
}

#[derive(Clone, Copy)]
enum Mode {
    Max,
    Avg { count_include_pad: bool },
}
