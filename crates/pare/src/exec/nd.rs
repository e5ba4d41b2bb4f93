//! The training engine's ops without parameters: activations, arithmetic, layout (reshape,
//! transpose, slice, concat, pad, shuffle), reductions and the activation fake quantizer, one
//! function per op on values of any rank. Axes in ops count per-sample axes; values here carry
//! the batch axis first.

use crate::ir::op::{
    AvgPool2d, ChannelShuffle, Clip, Concat, FakeQuant, MaxPool2d, Mean, Pad, Reshape, Scale, Select, Slice,
    Softmax, Transpose,
};
use burn::tensor::activation::{gelu, hard_swish, relu, relu6, sigmoid, silu, softmax, tanh};
use burn::tensor::module::{avg_pool2d, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, MaxPoolOptions, PadMode};
use burn::tensor::Tensor as BT;

use super::value::{arr, map_value, reshape, zip_values, Value};
use crate::ir::op::resolve_axis;
use crate::ir::Op;

/// Runs a parameter-free `op` on its inputs (at least one); `batch` is the batch size. Errors
/// are the reason only; the caller names the node.
pub(super) fn run(op: &Op, ins: Vec<Value>, batch: usize) -> Result<Value, String> {
    let first = ins[0].clone();
    let mismatch = |what: &str| format!("{} received a {what}", op.kind());
    let axis = |a: isize, v: &Value| resolve_axis(a, v.rank() - 1).map(|a| a + 1);
    Ok(match op {
        Op::Relu => map_value!(first, |x| relu(x)),
        Op::Relu6 => map_value!(first, |x| relu6(x)),
        Op::Gelu => map_value!(first, |x| gelu(x)),
        Op::Sigmoid => map_value!(first, |x| sigmoid(x)),
        Op::Tanh => map_value!(first, |x| tanh(x)),
        Op::HardSwish => map_value!(first, |x| hard_swish(x)),
        Op::Silu => map_value!(first, |x| silu(x)),
        Op::Sign => map_value!(first, |x| sign_ste(x)),
        Op::Abs => map_value!(first, |x| x.abs()),
        Op::Erf => map_value!(first, |x| x.erf()),
        Op::Clip(Clip { min, max }) => map_value!(first, |x| x.clamp(*min, *max)),
        Op::Scale(Scale { factor }) => map_value!(first, |x| x.mul_scalar(*factor as f32)),
        Op::Identity => first,
        Op::MaxPool2d(MaxPool2d { .. }) | Op::AvgPool2d(AvgPool2d { .. }) | Op::GlobalAvgPool => {
            let Value::V4(x) = first else {
                return Err(mismatch("tensor that is not [batch, C, H, W]"));
            };
            Value::V4(pool(op, x))
        }
        Op::Add => add(ins).ok_or_else(|| mismatch("mix of ranks"))?,
        Op::Mul | Op::Sub | Op::Div => arithmetic(op, first, ins[1].clone()),
        Op::MatMul => {
            zip_values!(first, ins[1].clone(), |a, b| a.matmul(b)).ok_or_else(|| mismatch("mix of ranks"))?
        }
        Op::Flatten => {
            let d = first.dims();
            reshape(first, &[d[0], d[1..].iter().product()])
        }
        Op::Reshape(Reshape { shape }) => {
            let mut full = vec![batch];
            full.extend_from_slice(shape);
            reshape(first, &full)
        }
        Op::Transpose(Transpose { perm }) => {
            let full: Vec<usize> = std::iter::once(0).chain(perm.iter().map(|p| p + 1)).collect();
            map_value!(first, |x| x.permute(arr(&full)))
        }
        Op::Concat(Concat { axis: a }) => {
            let dim = axis(*a, &first)?;
            cat(ins, dim).ok_or_else(|| mismatch("mix of ranks"))?
        }
        Op::Softmax(Softmax { axis: a }) => {
            let dim = axis(*a, &first)?;
            map_value!(first, |x| softmax(x, dim))
        }
        Op::Slice(Slice { axis: a, start, end }) => {
            let dim = axis(*a, &first)?;
            map_value!(first, |x| x.narrow(dim, *start, end - start))
        }
        Op::Select(Select { axis: a, index }) => select(first.clone(), axis(*a, &first)?, *index),
        Op::Mean(Mean { axes, keepdim }) => {
            let dims = axes
                .iter()
                .map(|a| axis(*a, &first))
                .collect::<Result<Vec<_>, _>>()?;
            mean(first, dims, *keepdim)
        }
        Op::Pad(Pad { pads, value }) => {
            let full: Vec<(usize, usize)> = std::iter::once((0, 0))
                .chain(pads.iter().map(|&[a, b]| (a, b)))
                .collect();
            map_value!(first, |x| x.pad(full.clone(), PadMode::Constant(*value)))
        }
        Op::ChannelShuffle(ChannelShuffle { groups }) => {
            let Value::V4(x) = first else {
                return Err(mismatch("tensor that is not [batch, C, H, W]"));
            };
            Value::V4(channel_shuffle(x, *groups))
        }
        Op::FakeQuant(FakeQuant { .. }) => fake_quant(op, first),
        other => return Err(format!("{} is not a parameter-free op", other.kind())),
    })
}

/// The sum of any number of values of one rank; `None` for mixed ranks.
fn add(ins: Vec<Value>) -> Option<Value> {
    let mut it = ins.into_iter();
    let mut acc = it.next()?;
    for v in it {
        acc = zip_values!(acc, v, |a, b| a + b)?;
    }
    Some(acc)
}

/// Elementwise `a op b` with NumPy broadcasting (shapes aligned at their last axis).
fn arithmetic(op: &Op, a: Value, b: Value) -> Value {
    let rank = a.rank().max(b.rank());
    let (a, b) = (lift(a, rank), lift(b, rank));
    let out = match op {
        Op::Mul => zip_values!(a, b, |x, y| x * y),
        Op::Sub => zip_values!(a, b, |x, y| x - y),
        _ => zip_values!(a, b, |x, y| x / y),
    };
    out.expect("lifted to one rank")
}

/// Gives `v` rank `rank` by inserting size-1 axes after the batch axis (NumPy broadcasting
/// aligns shapes at their last axis).
fn lift(v: Value, rank: usize) -> Value {
    let d = v.dims();
    if d.len() >= rank {
        return v;
    }
    let mut shape = vec![d[0]];
    shape.extend(std::iter::repeat_n(1, rank - d.len()));
    shape.extend_from_slice(&d[1..]);
    reshape(v, &shape)
}

/// Concatenates values of one rank along `dim`; `None` for mixed ranks.
fn cat(values: Vec<Value>, dim: usize) -> Option<Value> {
    macro_rules! cat_rank {
        ($variant:ident) => {{
            let parts: Option<Vec<_>> = values
                .into_iter()
                .map(|v| match v {
                    Value::$variant(t) => Some(t),
                    _ => None,
                })
                .collect();
            parts.map(|p| Value::$variant(BT::cat(p, dim)))
        }};
    }
    match values.first()? {
        Value::V1(_) => cat_rank!(V1),
        Value::V2(_) => cat_rank!(V2),
        Value::V3(_) => cat_rank!(V3),
        Value::V4(_) => cat_rank!(V4),
        Value::V5(_) => cat_rank!(V5),
        Value::V6(_) => cat_rank!(V6),
    }
}

/// Index `index` of axis `dim`, the axis dropped.
fn select(v: Value, dim: usize, index: usize) -> Value {
    let mut shape = v.dims();
    shape.remove(dim);
    let one = map_value!(v, |x| x.narrow(dim, index, 1));
    reshape(one, &shape)
}

/// The mean over `dims` (axes of the full value), kept as size 1 or dropped.
fn mean(v: Value, mut dims: Vec<usize>, keepdim: bool) -> Value {
    dims.sort_unstable();
    let mut kept = v.dims();
    let mut v = v;
    for &d in &dims {
        v = map_value!(v, |x| x.mean_dim(d));
    }
    if keepdim {
        return v;
    }
    for &d in dims.iter().rev() {
        kept.remove(d);
    }
    reshape(v, &kept)
}

/// ShuffleNet's channel shuffle: `[g, C/g]` channel blocks transposed to `[C/g, g]`.
fn channel_shuffle(x: BT<4>, groups: usize) -> BT<4> {
    let [b, c, h, w] = x.dims();
    x.reshape([b, groups, c / groups, h * w])
        .swap_dims(1, 2)
        .reshape([b, c, h, w])
}

/// The activation fake quantizer with a clipped straight-through estimator: clamp carries the
/// gradient inside the range and blocks it outside; the rounding is detached.
/// `+1` where `x >= 0`, `-1` elsewhere; the gradient is hardtanh's (1 inside `[-1, 1]`, 0
/// outside), the clipped straight-through estimator of BNN.
pub(crate) fn sign_ste<const D: usize>(x: BT<D>) -> BT<D> {
    let clipped = x.clone().clamp(-1.0, 1.0);
    let sign = x.greater_equal_elem(0.0).float().mul_scalar(2.0).sub_scalar(1.0);
    clipped.clone() + (sign - clipped).detach()
}

fn fake_quant(op: &Op, v: Value) -> Value {
    let p = op.act_qparams().expect("a fake_quant op has qparams");
    let (lo, hi) = p.range();
    let (s, z) = (p.scale, p.zero_point as f32);
    map_value!(v, |x| {
        let xc = x.clamp(lo, hi);
        let q = ((xc.clone() / s).round() + z).clamp(p.qmin as f32, p.qmax as f32);
        let deq = (q - z) * s;
        xc.clone() + (deq - xc).detach()
    })
}

fn pool(op: &Op, x: BT<4>) -> BT<4> {
    match *op {
        Op::MaxPool2d(MaxPool2d {
            kernel_size,
            stride,
            padding,
            ceil_mode,
        }) => max_pool2d(
            x,
            MaxPoolOptions::new(kernel_size)
                .with_stride(stride)
                .with_padding(padding)
                .with_ceil_mode(ceil_mode),
        ),
        Op::AvgPool2d(AvgPool2d {
            kernel_size,
            stride,
            padding,
            count_include_pad,
            ceil_mode,
        }) => avg_pool2d(
            x,
            AvgPoolOptions::new(kernel_size)
                .with_stride(stride)
                .with_padding(padding)
                .with_count_include_pad(count_include_pad)
                .with_ceil_mode(ceil_mode),
        ),
        _ => x.mean_dim(3).mean_dim(2),
    }
}
