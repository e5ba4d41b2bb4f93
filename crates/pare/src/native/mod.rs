//! pare's own CPU inference engine for f32 models: the deployable forward pass that latency
//! reports time.
//!
//! Why not the training engine: burn's flex backend runs a convolution as a generic im2col with
//! per-call overheads that do not shrink with the channel count, so a model with half its
//! channels removed ran only 1.39x faster for 1.90x fewer MACs. Here every convolution of a batch
//! is one matrix product with the spatial positions of all samples as the long side
//! (`[N*H*W, K] x [K, C_out]`, `gemm` crate, both cores), activations live channel-major
//! (`[C, N, H, W]`, so a channel concat is a plain append and a 1x1 convolution needs no copy),
//! and a ReLU that only follows a Conv2d/Linear/Add is fused into it. Cost then scales with the
//! MACs, which is what structured pruning promises. Later int8 and bit-packed kernels plug in
//! beside the f32 ones here.
//!
//! Semantics are eval mode: BatchNorm uses running statistics, Dropout is the identity, FakeQuant
//! rounds like [`crate::ir::QParams::fake`]. `tests/native.rs` checks every zoo model against
//! [`crate::exec::infer`].

mod act;
mod buffers;
mod conv;
mod pool;
mod tensor;

use std::borrow::Cow;

use act::Act;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::ir::{Model, Op, Tensor, INPUT};

/// A ReLU applied inside the producing op's output loop.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Fused {
    None,
    Relu,
}

/// Eval-mode forward pass of `model` on a batch `x` (`[N, ...input shape]`, normalized): the
/// logits `[N, classes]` (or the output node's value in PyTorch layout).
///
/// Reparameterizations are not applied: bake masks and quantizers into the weights first (a
/// saved or decoded model already has them baked). Fold BatchNorm ([`crate::fuse`]) for speed.
pub fn infer(model: &Model, x: &Tensor) -> Result<Tensor> {
    infer_timed(model, x, &mut |_, _| {})
}

/// [`infer`], calling `on_node(i, time)` after node `i` of the graph ran (nodes that alias their
/// input, such as a ReLU fused into the layer before it, do not run and are not reported): the
/// per-layer profile of `pare bench latency --layers`.
pub fn infer_timed(
    model: &Model,
    x: &Tensor,
    on_node: &mut dyn FnMut(usize, std::time::Duration),
) -> Result<Tensor> {
    let g = &model.graph;
    let shape = x.shape();
    if shape.len() != g.input.shape.len() + 1 || shape[1..] != g.input.shape[..] {
        return Err(Error::Config(format!(
            "native inference: input {:?} does not match the model's per-sample shape {:?}",
            shape, g.input.shape
        )));
    }
    let input = Act::from_pytorch(x.shape(), x.data());
    let fused = fusions(model);
    // Slot 0 is the input, slot i + 1 node i; a node that aliases its input (a fused ReLU,
    // Dropout, Identity) reads and is read through its source's slot.
    let count = g.nodes.len() + 1;
    let mut slot_of: Vec<usize> = Vec::with_capacity(count);
    slot_of.push(0);
    let lookup = |slot_of: &[usize], name: &str| -> usize {
        if name == INPUT {
            0
        } else {
            slot_of[g.index_of(name).expect("validated graph") + 1]
        }
    };
    for (i, node) in g.nodes.iter().enumerate() {
        let own = if fused[i] == Step::Alias {
            lookup(&slot_of, &node.inputs[0])
        } else {
            i + 1
        };
        slot_of.push(own);
    }
    // A slot's buffer is recycled after the last node that reads it.
    let mut last_use = vec![0usize; count];
    for (i, node) in g.nodes.iter().enumerate() {
        for inp in &node.inputs {
            last_use[lookup(&slot_of, inp)] = i + 1;
        }
    }
    let out_slot = lookup(&slot_of, &g.output);
    last_use[out_slot] = usize::MAX;
    let mut slots: Vec<Option<Act>> = vec![None; count];
    slots[0] = Some(input);
    for (i, node) in g.nodes.iter().enumerate() {
        if fused[i] != Step::Alias {
            let inputs: Vec<&Act> = node
                .inputs
                .iter()
                .map(|n| slots[lookup(&slot_of, n)].as_ref().expect("topological order"))
                .collect();
            let relu = if fused[i] == Step::WithRelu {
                Fused::Relu
            } else {
                Fused::None
            };
            let start = std::time::Instant::now();
            slots[i + 1] = Some(run(model, &node.name, &node.op, &inputs, relu, shape[0])?);
            on_node(i, start.elapsed());
        }
        for inp in &node.inputs {
            let k = lookup(&slot_of, inp);
            if last_use[k] == i + 1 {
                if let Some(a) = slots[k].take() {
                    buffers::recycle(a.into_data());
                }
            }
        }
    }
    Ok(slots[out_slot].take().expect("output computed").into_tensor())
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Step {
    Run,
    WithRelu,
    /// Produces its input unchanged (a fused ReLU, Dropout, Identity).
    Alias,
}

/// Which nodes run, which run with a fused ReLU, and which alias their input.
fn fusions(model: &Model) -> Vec<Step> {
    let g = &model.graph;
    let mut steps: Vec<Step> = g
        .nodes
        .iter()
        .map(|n| match n.op {
            Op::Dropout { .. } | Op::Identity => Step::Alias,
            _ => Step::Run,
        })
        .collect();
    for (i, node) in g.nodes.iter().enumerate() {
        if node.op != Op::Relu {
            continue;
        }
        let Some(p) = g.index_of(&node.inputs[0]) else {
            continue;
        };
        let fusable = matches!(g.nodes[p].op, Op::Conv2d { .. } | Op::Linear { .. } | Op::Add)
            && steps[p] == Step::Run
            && g.consumers(&g.nodes[p].name).len() == 1
            && !g.is_output(&g.nodes[p].name);
        if fusable {
            steps[p] = Step::WithRelu;
            steps[i] = Step::Alias;
        }
    }
    steps
}

fn param<'m>(model: &'m Model, node: &str, suffix: &str) -> Option<&'m [f32]> {
    model
        .params
        .get(&crate::ir::op::param_name(node, suffix))
        .map(|t| t.data())
}

/// Runs one node on `n` samples.
fn run(model: &Model, name: &str, op: &Op, inputs: &[&Act], relu: Fused, n: usize) -> Result<Act> {
    let Some(&x) = inputs.first() else {
        return tensor_op(model, name, op, inputs, relu, n);
    };
    let weight = || param(model, name, "weight").expect("validated model has its weights");
    let bias = || param(model, name, "bias");
    let mismatch = |want: &str| Error::Graph {
        node: name.to_string(),
        reason: format!("native inference: expects {want}"),
    };
    Ok(match op {
        Op::Linear {
            in_features,
            out_features,
            ..
        } => {
            // On the last axis: rows, token sequences, or an image's rows.
            let (mut shape, data) = x.pytorch();
            let rows = data.len() / in_features;
            let out = conv::linear(&data, rows, *in_features, weight(), *out_features, bias(), relu);
            *shape.last_mut().expect("rank >= 1") = *out_features;
            Act::dense(shape, out)
        }
        Op::Conv2d { .. } => {
            let img = x.image().ok_or_else(|| mismatch("images"))?;
            let Act::Image { c, n, h, w, data } = img.as_ref() else {
                unreachable!("image() gives images")
            };
            let (out, oh, ow, oc) = conv::conv2d(op, data, [*c, *n, *h, *w], weight(), bias(), relu);
            Act::Image {
                c: oc,
                n: *n,
                h: oh,
                w: ow,
                data: out,
            }
        }
        Op::BatchNorm { eps, .. } => {
            let (g, b) = (weight(), bias().expect("BatchNorm has a bias"));
            let mean = param(model, name, "running_mean").expect("BatchNorm buffers");
            let var = param(model, name, "running_var").expect("BatchNorm buffers");
            let scale: Vec<f32> = (0..g.len())
                .map(|c| g[c] / (var[c] + *eps as f32).sqrt())
                .collect();
            let shift: Vec<f32> = (0..g.len()).map(|c| b[c] - mean[c] * scale[c]).collect();
            let mut y = x.with(buffers::copy_of(x.data()));
            match &mut y {
                Act::Image { c, data, .. } => {
                    let plane = data.len() / *c;
                    for (ch, chunk) in data.chunks_mut(plane).enumerate() {
                        chunk.iter_mut().for_each(|v| *v = *v * scale[ch] + shift[ch]);
                    }
                }
                Act::Rows { f, data, .. } => {
                    for row in data.chunks_mut(*f) {
                        row.iter_mut()
                            .enumerate()
                            .for_each(|(j, v)| *v = *v * scale[j] + shift[j]);
                    }
                }
                Act::Nd { .. } => return Err(mismatch("[N, C] or [N, C, H, W] values")),
            }
            y
        }
        Op::Relu => map(x, |v| v.max(0.0)),
        Op::Relu6 => map(x, |v| v.clamp(0.0, 6.0)),
        Op::Gelu => map(x, |v| 0.5 * v * (1.0 + libm::erff(v / std::f32::consts::SQRT_2))),
        Op::Sigmoid => map(x, |v| 1.0 / (1.0 + (-v).exp())),
        Op::Tanh => map(x, f32::tanh),
        Op::HardSwish => map(x, |v| v * (v + 3.0).clamp(0.0, 6.0) / 6.0),
        Op::FakeQuant { .. } => {
            let p = op.act_qparams().expect("a fake_quant op has qparams");
            map(x, |v| p.fake(v))
        }
        Op::MaxPool2d { .. } | Op::AvgPool2d { .. } | Op::GlobalAvgPool => {
            let img = x.image().ok_or_else(|| mismatch("images"))?;
            let Act::Image { c, n, h, w, data } = img.as_ref() else {
                unreachable!("image() gives images")
            };
            let (out, oh, ow) = pool::pool(op, data, [*c, *n, *h, *w]);
            Act::Image {
                c: *c,
                n: *n,
                h: oh,
                w: ow,
                data: out,
            }
        }
        Op::Flatten => match x {
            Act::Image { c, n, h, w, data } => {
                let (n, per) = (*n, h * w);
                let mut out = buffers::scratch(data.len());
                for ch in 0..*c {
                    for i in 0..n {
                        let src = &data[(ch * n + i) * per..(ch * n + i + 1) * per];
                        out[i * c * per + ch * per..i * c * per + (ch + 1) * per].copy_from_slice(src);
                    }
                }
                Act::Rows {
                    n,
                    f: c * per,
                    data: out,
                }
            }
            Act::Rows { .. } => x.with(buffers::copy_of(x.data())),
            Act::Nd { shape, data } => Act::Rows {
                n: shape[0],
                f: data.len() / shape[0].max(1),
                data: buffers::copy_of(data),
            },
        },
        Op::Add => {
            // Inputs in different layouts (an image and a row-major value) meet in PyTorch's.
            let inputs: Vec<Cow<Act>> = if same_layout(inputs) {
                inputs.iter().map(|a| Cow::Borrowed(*a)).collect()
            } else {
                inputs
                    .iter()
                    .map(|a| {
                        let (shape, data) = a.pytorch();
                        Cow::Owned(Act::dense(shape, data.into_owned()))
                    })
                    .collect()
            };
            let x = inputs[0].as_ref();
            // One parallel pass per chunk (sum and fused ReLU while in cache): a residual
            // add is pure memory traffic, linear in the channel count.
            const CHUNK: usize = 16 * 1024;
            let mut y = buffers::scratch(x.data().len());
            y.par_chunks_mut(CHUNK).enumerate().for_each(|(j, out)| {
                let at = j * CHUNK;
                out.copy_from_slice(&x.data()[at..at + out.len()]);
                for other in &inputs[1..] {
                    out.iter_mut().zip(&other.data()[at..]).for_each(|(a, b)| *a += b);
                }
                if relu == Fused::Relu {
                    out.iter_mut().for_each(|v| *v = v.max(0.0));
                }
            });
            x.with(y)
        }
        Op::Concat { axis } => {
            let full = x.pytorch_shape();
            let along = axis_of(*axis, &full)?;
            if along == 1 && inputs.iter().all(|a| matches!(a, Act::Image { .. })) {
                // Channel-major images: a channel concat is one append per input.
                let Act::Image { n, h, w, .. } = *x else {
                    unreachable!("checked")
                };
                let c = inputs.iter().map(|a| a.pytorch_shape()[1]).sum();
                let mut data = Vec::with_capacity(n * c * h * w);
                inputs.iter().for_each(|a| data.extend_from_slice(a.data()));
                Act::Image { c, n, h, w, data }
            } else {
                let dense: Vec<(Vec<usize>, Cow<[f32]>)> = inputs.iter().map(|a| a.pytorch()).collect();
                let parts: Vec<(&[usize], &[f32])> =
                    dense.iter().map(|(s, d)| (s.as_slice(), d.as_ref())).collect();
                let (shape, data) = tensor::concat(&parts, along);
                Act::dense(shape, data)
            }
        }
        Op::Dropout { .. } | Op::Identity => x.with(buffers::copy_of(x.data())),
        Op::Silu => map(x, |v| v / (1.0 + (-v).exp())),
        Op::ChannelShuffle { groups } => {
            let img = x.image().ok_or_else(|| mismatch("images"))?;
            let Act::Image { c, n, h, w, data } = img.as_ref() else {
                unreachable!("image() gives images")
            };
            // Output channel j * groups + i is input channel i * (c / groups) + j; a channel
            // is one contiguous plane of the channel-major layout.
            let (g, plane) = (*groups, n * h * w);
            let per = c / g;
            let mut out = buffers::scratch(data.len());
            for i in 0..g {
                for j in 0..per {
                    let (to, from) = (j * g + i, i * per + j);
                    out[to * plane..(to + 1) * plane]
                        .copy_from_slice(&data[from * plane..(from + 1) * plane]);
                }
            }
            Act::Image {
                c: *c,
                n: *n,
                h: *h,
                w: *w,
                data: out,
            }
        }
        Op::Clip { min, max } => map(x, |v| v.clamp(*min, *max)),
        Op::Scale { factor } => {
            let f = *factor as f32;
            map(x, |v| v * f)
        }
        _ => return tensor_op(model, name, op, inputs, relu, n),
    })
}

/// True when every input has the first one's layout (all images, all rows, or all `Nd`).
fn same_layout(inputs: &[&Act]) -> bool {
    let kind = |a: &Act| std::mem::discriminant(a);
    inputs.iter().all(|a| kind(a) == kind(inputs[0]))
}

/// A per-sample axis of the op as an axis of the full `[N, ..]` shape.
fn axis_of(axis: isize, full: &[usize]) -> Result<usize> {
    crate::ir::op::resolve_axis(axis, full.len() - 1)
        .map(|a| a + 1)
        .map_err(Error::Config)
}

/// The ops of token sequences and general tensors, on PyTorch's layout (`tensor.rs`).
fn tensor_op(model: &Model, name: &str, op: &Op, inputs: &[&Act], relu: Fused, n: usize) -> Result<Act> {
    let param = |suffix: &str| param(model, name, suffix).expect("validated model has its parameters");
    let (shape, data) = match inputs.first() {
        Some(x) => x.pytorch(),
        None => (Vec::new(), Cow::Borrowed(&[][..])),
    };
    let at = |a: isize| axis_of(a, &shape).map_err(|e| Error::graph(name, e.to_string()));
    let (shape, data) = match op {
        Op::LayerNorm { eps, .. } => {
            let y = tensor::layer_norm(&data, param("weight"), param("bias"), *eps as f32);
            (shape, y)
        }
        Op::Softmax { axis } => {
            let y = tensor::softmax(&data, &shape, at(*axis)?);
            (shape, y)
        }
        Op::Reshape { shape: per } => {
            let full: Vec<usize> = std::iter::once(shape[0]).chain(per.iter().copied()).collect();
            (full, buffers::copy_of(&data))
        }
        Op::Transpose { perm } => {
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
        Op::Slice { axis, start, end } => {
            let a = at(*axis)?;
            let y = tensor::slice(&data, &shape, a, *start, *end);
            let mut s = shape.clone();
            s[a] = end - start;
            (s, y)
        }
        Op::Select { axis, index } => {
            let a = at(*axis)?;
            let y = tensor::slice(&data, &shape, a, *index, index + 1);
            let mut s = shape.clone();
            s.remove(a);
            (s, y)
        }
        Op::Pad { pads } => {
            let (mut s, mut y) = (shape.clone(), data.to_vec());
            for (a, &[before, after]) in pads.iter().enumerate() {
                if before + after > 0 {
                    y = tensor::pad(&y, &s, a + 1, before, after);
                    s[a + 1] += before + after;
                }
            }
            (s, y)
        }
        Op::Mean { axes, keepdim } => {
            let mut dims = axes.iter().map(|a| at(*a)).collect::<Result<Vec<_>>>()?;
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
        Op::Attention { dim, heads, .. } => {
            let &[n, t, _] = shape.as_slice() else {
                return Err(Error::graph(
                    name,
                    "native inference: attention expects [N, tokens, dim]",
                ));
            };
            let y = tensor::attention(
                &data,
                n,
                t,
                *dim,
                *heads,
                op.head_dim(),
                param("in_proj_weight"),
                param("in_proj_bias"),
                param("out_proj.weight"),
                param("out_proj.bias"),
            );
            (shape, y)
        }
        Op::Parameter { shape: per } => {
            let p = param("");
            let mut y = Vec::with_capacity(n * p.len());
            for _ in 0..n {
                y.extend_from_slice(p);
            }
            (std::iter::once(n).chain(per.iter().copied()).collect(), y)
        }
        _ => unreachable!("{} is handled by the layout-specific kernels", op.kind()),
    };
    let mut y = Act::dense(shape, data);
    if relu == Fused::Relu {
        y.data_mut().iter_mut().for_each(|v| *v = v.max(0.0));
    }
    Ok(y)
}

fn map(x: &Act, f: impl Fn(f32) -> f32) -> Act {
    let mut y = x.with(buffers::copy_of(x.data()));
    y.data_mut().iter_mut().for_each(|v| *v = f(*v));
    y
}
