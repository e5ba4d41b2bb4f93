//! The engine's activation layouts and the conversions between them and PyTorch's layout.
//!
//! Images live channel-major (`[C, N, H, W]`: a channel concat is an append and a 1x1
//! convolution needs no copy); vectors are rows; every other rank stays in PyTorch's row-major
//! layout. A kernel that wants another layout than its input has converts through
//! [`Act::pytorch`] or [`Act::image`].

use std::borrow::Cow;

use super::buffers;
use crate::ir::Tensor;

/// An activation in the engine's layout.
#[derive(Clone, Debug)]
pub(super) enum Act {
    /// Images, channel-major: `data[((c * n + i) * h + y) * w + x]`.
    Image {
        c: usize,
        n: usize,
        h: usize,
        w: usize,
        data: Vec<f32>,
    },
    /// Feature vectors, sample-major: `data[i * f + j]`.
    Rows { n: usize, f: usize, data: Vec<f32> },
    /// Any other rank, PyTorch's row-major layout: `shape` is `[N, ..per-sample shape]`.
    Nd { shape: Vec<usize>, data: Vec<f32> },
}

/// Swaps the two outer axes of `[a, b, plane]` blocks: `[N, C, HW]` <-> `[C, N, HW]`.
fn swap_outer(data: &[f32], a: usize, b: usize, plane: usize) -> Vec<f32> {
    let mut out = buffers::scratch(data.len());
    for i in 0..a {
        for j in 0..b {
            out[(j * a + i) * plane..(j * a + i + 1) * plane]
                .copy_from_slice(&data[(i * b + j) * plane..(i * b + j + 1) * plane]);
        }
    }
    out
}

impl Act {
    pub(super) fn data(&self) -> &[f32] {
        match self {
            Act::Image { data, .. } | Act::Rows { data, .. } | Act::Nd { data, .. } => data,
        }
    }

    pub(super) fn into_data(self) -> Vec<f32> {
        match self {
            Act::Image { data, .. } | Act::Rows { data, .. } | Act::Nd { data, .. } => data,
        }
    }

    pub(super) fn data_mut(&mut self) -> &mut Vec<f32> {
        match self {
            Act::Image { data, .. } | Act::Rows { data, .. } | Act::Nd { data, .. } => data,
        }
    }

    /// The same layout and shape with other values.
    pub(super) fn with(&self, data: Vec<f32>) -> Act {
        match *self {
            Act::Image { c, n, h, w, .. } => Act::Image { c, n, h, w, data },
            Act::Rows { n, f, .. } => Act::Rows { n, f, data },
            Act::Nd { ref shape, .. } => Act::Nd {
                shape: shape.clone(),
                data,
            },
        }
    }

    /// A value given in PyTorch's layout: rows at rank 2, `Nd` otherwise.
    pub(super) fn dense(shape: Vec<usize>, data: Vec<f32>) -> Act {
        match *shape {
            [n, f] => Act::Rows { n, f, data },
            _ => Act::Nd { shape, data },
        }
    }

    /// A batch in PyTorch's layout as the engine keeps it: images channel-major.
    pub(super) fn from_pytorch(shape: &[usize], data: &[f32]) -> Act {
        match *shape {
            [n, c, h, w] => Act::Image {
                c,
                n,
                h,
                w,
                data: swap_outer(data, n, c, h * w),
            },
            _ => Act::dense(shape.to_vec(), data.to_vec()),
        }
    }

    /// [`Act::from_pytorch`] taking the batch over: no copy unless images must be reordered
    /// (several samples of several channels).
    pub(super) fn from_pytorch_owned(shape: Vec<usize>, data: Vec<f32>) -> Act {
        match *shape {
            [n, c, h, w] if n == 1 || c == 1 => Act::Image { c, n, h, w, data },
            [_, _, _, _] => Act::from_pytorch(&shape, &data),
            _ => Act::dense(shape, data),
        }
    }

    /// The full shape `[N, ..]` in PyTorch's axis order.
    pub(super) fn pytorch_shape(&self) -> Vec<usize> {
        match self {
            Act::Rows { n, f, .. } => vec![*n, *f],
            Act::Nd { shape, .. } => shape.clone(),
            Act::Image { c, n, h, w, .. } => vec![*n, *c, *h, *w],
        }
    }

    /// The full shape `[N, ..]` and the data in PyTorch's row-major layout (images are
    /// reordered from channel-major, a copy; the other layouts are borrowed).
    pub(super) fn pytorch(&self) -> (Vec<usize>, Cow<'_, [f32]>) {
        match self {
            Act::Rows { n, f, data } => (vec![*n, *f], Cow::Borrowed(data)),
            Act::Nd { shape, data } => (shape.clone(), Cow::Borrowed(data)),
            Act::Image { c, n, h, w, data } => {
                (vec![*n, *c, *h, *w], Cow::Owned(swap_outer(data, *c, *n, h * w)))
            }
        }
    }

    /// Images in the engine's channel-major layout (a rank-4 `Nd` is reordered).
    pub(super) fn image(&self) -> Option<Cow<'_, Act>> {
        match self {
            Act::Image { .. } => Some(Cow::Borrowed(self)),
            Act::Nd { shape, data } if shape.len() == 4 => Some(Cow::Owned(Act::from_pytorch(shape, data))),
            _ => None,
        }
    }

    /// The samples `keep` (indices into the batch, ascending) in the same layout: the batch
    /// that goes on after an early exit let the others leave.
    pub(super) fn select(&self, keep: &[usize]) -> Act {
        let m = keep.len();
        let rows = |data: &[f32], per: usize| {
            let mut out = buffers::scratch(m * per);
            for (r, &i) in keep.iter().enumerate() {
                out[r * per..(r + 1) * per].copy_from_slice(&data[i * per..(i + 1) * per]);
            }
            out
        };
        match self {
            Act::Rows { f, data, .. } => Act::Rows {
                n: m,
                f: *f,
                data: rows(data, *f),
            },
            Act::Nd { shape, data } => {
                let per: usize = shape[1..].iter().product();
                let mut shape = shape.clone();
                shape[0] = m;
                Act::Nd {
                    shape,
                    data: rows(data, per),
                }
            }
            Act::Image { c, n, h, w, data } => {
                let plane = h * w;
                let mut out = buffers::scratch(c * m * plane);
                for ch in 0..*c {
                    for (r, &i) in keep.iter().enumerate() {
                        let src = (ch * n + i) * plane;
                        let dst = (ch * m + r) * plane;
                        out[dst..dst + plane].copy_from_slice(&data[src..src + plane]);
                    }
                }
                Act::Image {
                    c: *c,
                    n: m,
                    h: *h,
                    w: *w,
                    data: out,
                }
            }
        }
    }

    /// The value as a pare tensor in PyTorch's layout.
    pub(super) fn into_tensor(self) -> Tensor {
        match self {
            Act::Rows { n, f, data } => Tensor::from_vec(vec![n, f], data),
            Act::Nd { shape, data } => Tensor::from_vec(shape, data),
            image => {
                let (shape, data) = image.pytorch();
                Tensor::from_vec(shape, data.into_owned())
            }
        }
    }
}
