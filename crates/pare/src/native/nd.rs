//! The parameter-free ops of token sequences and general tensors, on PyTorch's row-major
//! layout (the kernels are in `tensor.rs`).

use super::act::Act;
use super::{axis_of, buffers, tensor};
use crate::ir::op::{Mean, Pad, Reshape, Select, Slice, Softmax, Transpose};
use crate::ir::Op;

/// Runs `op` on `inputs`; an error is a sentence for the caller to attach to the node.
pub(super) fn run(op: &Op, inputs: &[&Act]) -> Result<Act, String> {
    let (shape, data) = inputs[0].pytorch();
    let at = |a: isize| axis_of(a, &shape).map_err(|e| e.to_string());
    let (shape, data) = match op {
        Op::Softmax(Softmax { axis }) => {
            let y = tensor::softmax(&data, &shape, at(*axis)?);
            (shape, y)
        }
        Op::Reshape(Reshape { shape: per }) => {
            let full: Vec<usize> = std::iter::once(shape[0]).chain(per.iter().copied()).collect();
            (full, buffers::copy_of(&data))
        }
        Op::Transpose(Transpose { perm }) => {
            let full: Vec<usize> = std::iter::once(0).chain(perm.iter().map(|p| p + 1)).collect();
            tensor::transpose(&data, &shape, &full)
        }
        Op::MatMul => {
            let (b_shape, b) = inputs[1].pytorch();
            tensor::matmul(&data, &shape, &b, &b_shape)
        }
        Op::Mul | Op::Sub | Op::Div => {
            let (b_shape, b) = inputs[1].pytorch();
            // Per-sample shapes broadcast from their last axis; the batch axis stays first.
            let rank = shape.len().max(b_shape.len());
            let lift = |s: &[usize]| -> Vec<usize> {
                let mut l = vec![s[0]];
                l.extend(std::iter::repeat_n(1, rank - s.len()));
                l.extend_from_slice(&s[1..]);
                l
            };
            let (sa, sb) = (lift(&shape), lift(&b_shape));
            let out: Vec<usize> = sa.iter().zip(&sb).map(|(x, y)| *x.max(y)).collect();
            let y = match op {
                Op::Mul => tensor::broadcast(&data, &sa, &b, &sb, &out, |x, y| x * y),
                Op::Sub => tensor::broadcast(&data, &sa, &b, &sb, &out, |x, y| x - y),
                _ => tensor::broadcast(&data, &sa, &b, &sb, &out, |x, y| x / y),
            };
            (out, y)
        }
        Op::Slice(Slice { axis, start, end }) => {
            let a = at(*axis)?;
            let y = tensor::slice(&data, &shape, a, *start, *end);
            let mut s = shape.clone();
            s[a] = end - start;
            (s, y)
        }
        Op::Select(Select { axis, index }) => {
            let a = at(*axis)?;
            let y = tensor::slice(&data, &shape, a, *index, index + 1);
            let mut s = shape.clone();
            s.remove(a);
            (s, y)
        }
        Op::Pad(Pad { pads, value }) => {
            let (mut s, mut y) = (shape.clone(), data.to_vec());
            for (a, &[before, after]) in pads.iter().enumerate() {
                if before + after > 0 {
                    y = tensor::pad(&y, &s, a + 1, [before, after], *value);
                    s[a + 1] += before + after;
                }
            }
            (s, y)
        }
        Op::Mean(Mean { axes, keepdim }) => {
            let mut dims = axes.iter().map(|a| at(*a)).collect::<Result<Vec<_>, _>>()?;
            dims.sort_unstable();
            let (mut s, mut y) = (shape.clone(), data.to_vec());
            for &d in &dims {
                y = tensor::mean(&y, &s, d);
                s[d] = 1;
            }
            if !keepdim {
                for &d in dims.iter().rev() {
                    s.remove(d);
                }
            }
            (s, y)
        }
        _ => return Err(format!("native inference has no kernel for {}", op.kind())),
    };
    Ok(Act::dense(shape, data))
}
