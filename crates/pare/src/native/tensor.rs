//! Kernels for values of any rank in PyTorch's row-major layout (`[N, ..per-sample shape]`):
//! token sequences, attention, reshapes and broadcasting arithmetic.
//!
//! Each kernel works on a flat buffer and its full shape. An axis is split into `outer x size x
//! inner` (the products of the axes before and after it), so one loop shape serves every rank.

use super::buffers;
use super::matmul::product;

/// `(outer, size, inner)` of `axis` in `shape`.
fn split(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    (
        shape[..axis].iter().product(),
        shape[axis],
        shape[axis + 1..].iter().product(),
    )
}

/// `(x - mean) / sqrt(var + eps) * gamma + beta` over the last axis (biased variance).
pub(super) fn layer_norm(x: &[f32], gamma: &[f32], beta: &[f32], eps: f32) -> Vec<f32> {
    let d = gamma.len();
    let mut y = buffers::scratch(x.len());
    for (row, out) in x.chunks(d).zip(y.chunks_mut(d)) {
        let mean = row.iter().sum::<f32>() / d as f32;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for j in 0..d {
            out[j] = (row[j] - mean) * inv * gamma[j] + beta[j];
        }
    }
    y
}

/// Softmax along `axis` (max subtracted first).
pub(super) fn softmax(x: &[f32], shape: &[usize], axis: usize) -> Vec<f32> {
    let (outer, size, inner) = split(shape, axis);
    let mut y = buffers::copy_of(x);
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| (o * size + j) * inner + i;
            let max = (0..size).map(|j| y[at(j)]).fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0;
            for j in 0..size {
                let e = (y[at(j)] - max).exp();
                y[at(j)] = e;
                sum += e;
            }
            for j in 0..size {
                y[at(j)] /= sum;
            }
        }
    }
    y
}

/// Row-major strides of `shape`.
fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Output axis `i` is input axis `perm[i]`; returns the permuted shape and data.
pub(super) fn transpose(x: &[f32], shape: &[usize], perm: &[usize]) -> (Vec<usize>, Vec<f32>) {
    let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let src = strides(shape);
    let step: Vec<usize> = perm.iter().map(|&p| src[p]).collect();
    let mut y = buffers::scratch(x.len());
    let rank = out_shape.len();
    let mut index = vec![0usize; rank];
    let mut from = 0usize;
    for v in y.iter_mut() {
        *v = x[from];
        // Advance the output index like an odometer, moving `from` by the source strides.
        for a in (0..rank).rev() {
            index[a] += 1;
            from += step[a];
            if index[a] < out_shape[a] {
                break;
            }
            from -= step[a] * out_shape[a];
            index[a] = 0;
        }
    }
    (out_shape, y)
}

/// Batched `[.., m, k] x [.., k, n]` with equal leading axes.
pub(super) fn matmul(a: &[f32], a_shape: &[usize], b: &[f32], b_shape: &[usize]) -> (Vec<usize>, Vec<f32>) {
    let r = a_shape.len();
    let (m, k, n) = (a_shape[r - 2], a_shape[r - 1], b_shape[r - 1]);
    let batches: usize = a_shape[..r - 2].iter().product();
    let mut y = buffers::scratch(batches * m * n);
    for i in 0..batches {
        product(
            &mut y[i * m * n..(i + 1) * m * n],
            &a[i * m * k..(i + 1) * m * k],
            (k, 1),
            &b[i * k * n..(i + 1) * k * n],
            (n, 1),
            m,
            n,
            k,
        );
    }
    let mut shape = a_shape.to_vec();
    shape[r - 1] = n;
    (shape, y)
}

/// NumPy-broadcast elementwise `f(a, b)`; `out` is the broadcast shape (both inputs have the
/// batch axis first and at most `out.len()` axes).
pub(super) fn broadcast(
    a: &[f32],
    a_shape: &[usize],
    b: &[f32],
    b_shape: &[usize],
    out: &[usize],
    f: impl Fn(f32, f32) -> f32,
) -> Vec<f32> {
    // Strides of each input over the output's axes: 0 where the input has size 1 or lacks it.
    let aligned = |shape: &[usize]| -> Vec<usize> {
        let s = strides(shape);
        let pad = out.len() - shape.len();
        (0..out.len())
            .map(|i| {
                if i < pad || shape[i - pad] == 1 {
                    0
                } else {
                    s[i - pad]
                }
            })
            .collect()
    };
    let (sa, sb) = (aligned(a_shape), aligned(b_shape));
    let total: usize = out.iter().product();
    let mut y = buffers::scratch(total);
    let mut index = vec![0usize; out.len()];
    let (mut ia, mut ib) = (0usize, 0usize);
    for v in y.iter_mut() {
        *v = f(a[ia], b[ib]);
        for d in (0..out.len()).rev() {
            index[d] += 1;
            ia += sa[d];
            ib += sb[d];
            if index[d] < out[d] {
                break;
            }
            ia -= sa[d] * out[d];
            ib -= sb[d] * out[d];
            index[d] = 0;
        }
    }
    y
}

/// Positions `start..end` of `axis`.
pub(super) fn slice(x: &[f32], shape: &[usize], axis: usize, start: usize, end: usize) -> Vec<f32> {
    let (outer, size, inner) = split(shape, axis);
    let mut y = Vec::with_capacity(outer * (end - start) * inner);
    for o in 0..outer {
        y.extend_from_slice(&x[(o * size + start) * inner..(o * size + end) * inner]);
    }
    y
}

/// Inputs one after the other along `axis` (shapes equal elsewhere).
pub(super) fn concat(parts: &[(&[usize], &[f32])], axis: usize) -> (Vec<usize>, Vec<f32>) {
    let mut shape = parts[0].0.to_vec();
    shape[axis] = parts.iter().map(|(s, _)| s[axis]).sum();
    let (outer, _, inner) = split(&shape, axis);
    let mut y = Vec::with_capacity(shape.iter().product());
    for o in 0..outer {
        for (s, d) in parts {
            let len = s[axis] * inner;
            y.extend_from_slice(&d[o * len..(o + 1) * len]);
        }
    }
    (shape, y)
}

/// `before` and `after` zeros around `axis`.
pub(super) fn pad(
    x: &[f32],
    shape: &[usize],
    axis: usize,
    [before, after]: [usize; 2],
    value: f32,
) -> Vec<f32> {
    let (outer, size, inner) = split(shape, axis);
    let mut y = vec![value; outer * (before + size + after) * inner];
    for o in 0..outer {
        let at = (o * (before + size + after) + before) * inner;
        y[at..at + size * inner].copy_from_slice(&x[o * size * inner..(o + 1) * size * inner]);
    }
    y
}

/// Mean over `axis`, kept with size 1.
pub(super) fn mean(x: &[f32], shape: &[usize], axis: usize) -> Vec<f32> {
    let (outer, size, inner) = split(shape, axis);
    let mut y = vec![0f32; outer * inner];
    for o in 0..outer {
        for j in 0..size {
            let row = &x[(o * size + j) * inner..(o * size + j + 1) * inner];
            y[o * inner..(o + 1) * inner]
                .iter_mut()
                .zip(row)
                .for_each(|(a, b)| *a += b);
        }
    }
    y.iter_mut().for_each(|v| *v /= size as f32);
    y
}

/// `nn.MultiheadAttention` self-attention on `n` sequences of `t` tokens of `dim` features.
#[allow(clippy::too_many_arguments)]
pub(super) fn attention(
    x: &[f32],
    n: usize,
    t: usize,
    dim: usize,
    heads: usize,
    hd: usize,
    w_in: &[f32],
    b_in: &[f32],
    w_out: &[f32],
    b_out: &[f32],
) -> Vec<f32> {
    let rows = n * t;
    let inner = heads * hd;
    let qkv = super::matmul::linear(x, rows, dim, w_in, 3 * inner, Some(b_in), super::Fused::None);
    let scale = 1.0 / (hd as f32).sqrt();
    let mut ctx = buffers::scratch(rows * inner);
    let mut scores = vec![0f32; t * t];
    let row = 3 * inner;
    for s in 0..n {
        let seq = &qkv[s * t * row..(s + 1) * t * row];
        for h in 0..heads {
            let (q, k, v) = (&seq[h * hd..], &seq[inner + h * hd..], &seq[2 * inner + h * hd..]);
            // scores[i, j] = q_i . k_j: q rows of stride 3*dim, k read transposed.
            product(&mut scores, q, (row, 1), k, (1, row), t, t, hd);
            for r in scores.chunks_mut(t) {
                let max = r.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v));
                let mut sum = 0.0;
                for e in r.iter_mut() {
                    *e = ((*e - max) * scale).exp();
                    sum += *e;
                }
                r.iter_mut().for_each(|e| *e /= sum);
            }
            // ctx[s, i, h*hd..] = scores x v, written with the row stride of `inner`.
            let mut head_out = vec![0f32; t * hd];
            product(&mut head_out, &scores, (t, 1), v, (row, 1), t, hd, t);
            for i in 0..t {
                let at = (s * t + i) * inner + h * hd;
                ctx[at..at + hd].copy_from_slice(&head_out[i * hd..(i + 1) * hd]);
            }
        }
    }
    let y = super::matmul::linear(&ctx, rows, inner, w_out, dim, Some(b_out), super::Fused::None);
    buffers::recycle(qkv);
    buffers::recycle(ctx);
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_swaps_axes_of_any_rank() {
        let x: Vec<f32> = (0..24).map(|v| v as f32).collect();
        let (s, y) = transpose(&x, &[2, 3, 4], &[2, 0, 1]);
        assert_eq!(s, vec![4, 2, 3]);
        // y[c, a, b] = x[a, b, c]
        assert_eq!(y[(3 * 2 + 1) * 3 + 2], x[(3 + 2) * 4 + 3]);
    }

    #[test]
    fn broadcast_aligns_at_the_last_axis() {
        let y = broadcast(
            &[1.0, 2.0, 3.0, 4.0],
            &[2, 2],
            &[10.0, 20.0],
            &[2],
            &[2, 2],
            |a, b| a + b,
        );
        assert_eq!(y, vec![11.0, 22.0, 13.0, 24.0]);
    }
}
