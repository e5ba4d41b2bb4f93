//! One kernel per node, chosen and prepared when a model is compiled into a [`super::Plan`]:
//! parameters copied out of the model's name-keyed map, BatchNorm turned into a per-channel
//! affine map, the fused ReLU decided. Running a kernel is then a dispatch on this enum and
//! the arithmetic, nothing looked up by name.

use crate::ir::op::{
    Attention, AvgPool2d, BatchNorm, ChannelShuffle, Clip, Concat, Conv2d, Dropout, Embedding, FakeQuant,
    HashedLinear, LayerNorm, Linear, MaxPool2d, Parameter, Scale,
};
use std::borrow::Cow;

use rayon::prelude::*;

use super::act::Act;
use super::binary::BinaryConv;
use super::int8::Int8Conv;
use super::weights::{int8_input, runs_binary, ConvWeight, LinearWeight};
use super::{buffers, conv, matmul, pool, tensor, Fused};
use crate::error::{Error, Result};
use crate::ir::op::param_name;
use crate::ir::{Model, Op, QParams};

/// An elementwise function of one value.
#[derive(Clone, Copy, Debug)]
pub(super) enum Unary {
    Relu,
    Relu6,
    Gelu,
    Sigmoid,
    Tanh,
    HardSwish,
    Silu,
    Sign,
    Abs,
    Erf,
    Clip { min: f32, max: f32 },
    Scale(f32),
    FakeQuant(QParams),
}

impl Unary {
    fn apply(self, v: f32) -> f32 {
        match self {
            Unary::Relu => v.max(0.0),
            Unary::Relu6 => v.clamp(0.0, 6.0),
            Unary::Gelu => 0.5 * v * (1.0 + libm::erff(v / std::f32::consts::SQRT_2)),
            Unary::Sigmoid => 1.0 / (1.0 + (-v).exp()),
            Unary::Tanh => v.tanh(),
            Unary::HardSwish => v * (v + 3.0).clamp(0.0, 6.0) / 6.0,
            Unary::Silu => v / (1.0 + (-v).exp()),
            Unary::Sign => {
                if v >= 0.0 {
                    1.0
                } else {
                    -1.0
                }
            }
            Unary::Abs => v.abs(),
            Unary::Erf => libm::erff(v),
            Unary::Clip { min, max } => v.clamp(min, max),
            Unary::Scale(f) => v * f,
            Unary::FakeQuant(p) => p.fake(v),
        }
    }
}

/// What one node computes, with everything it needs from the model.
#[derive(Clone, Debug)]
pub(super) enum Kernel {
    /// `y = x W^T + b` on the last axis of any rank.
    Linear {
        in_features: usize,
        out_features: usize,
        weight: LinearWeight,
        bias: Option<Vec<f32>>,
        relu: Fused,
    },
    /// A Conv2d on channel-major images (`op` carries its geometry).
    Conv2d {
        op: Op,
        weight: ConvWeight,
        bias: Option<Vec<f32>>,
        relu: Fused,
    },
    /// `y = x * scale[c] + shift[c]` on the channel axis: an eval-mode BatchNorm.
    Affine {
        scale: Vec<f32>,
        shift: Vec<f32>,
    },
    Unary(Unary),
    /// A fake quantizer of 8 bits or fewer that runs (a reader is not an integer layer):
    /// through the SIMD activation codes, then back to the values they stand for.
    Quantize(super::int8::ActCodes),
    /// Max, average or global average pooling (`op` carries the window).
    Pool(Op),
    Flatten,
    Add {
        relu: Fused,
    },
    Concat {
        axis: isize,
    },
    ChannelShuffle {
        groups: usize,
    },
    /// A copy of the input: Dropout and Identity in eval mode. A compiled plan aliases them
    /// instead (no step runs); the kernel keeps every op runnable on its own.
    Copy,
    LayerNorm {
        weight: Vec<f32>,
        bias: Vec<f32>,
        eps: f32,
    },
    Attention {
        dim: usize,
        heads: usize,
        head_dim: usize,
        in_weight: Vec<f32>,
        in_bias: Vec<f32>,
        out_weight: Vec<f32>,
        out_bias: Vec<f32>,
    },
    /// Rows of `table` (`[rows, dim]`) picked by integer ids.
    Embedding {
        dim: usize,
        table: Vec<f32>,
    },
    /// A learned tensor repeated for every sample.
    Parameter {
        shape: Vec<usize>,
        value: Vec<f32>,
    },
    /// The parameter-free ops on PyTorch's layout (softmax, reshape, transpose, products of
    /// activations, broadcasting arithmetic, slicing, padding, means).
    Nd {
        op: Op,
        relu: Fused,
    },
}

impl Kernel {
    /// The kernel for node `i` of `model`, with a ReLU fused into it when `relu` says so.
    pub(super) fn new(model: &Model, i: usize, relu: Fused) -> Kernel {
        let node = &model.graph.nodes[i];
        let owner = model.graph.param_owner(i);
        let p = |suffix: &str| -> Vec<f32> { model.params[&param_name(owner, suffix)].data().to_vec() };
        // The weight as the model holds it (codes and bits are packed without an f32 copy).
        let weight = || &model.params[&param_name(owner, "weight")];
        let maybe = |suffix: &str| {
            model
                .params
                .get(&param_name(owner, suffix))
                .map(|t| t.data().to_vec())
        };
        let unary = Kernel::Unary;
        match node.op {
            Op::Linear(Linear {
                in_features,
                out_features,
                ..
            }) => Kernel::Linear {
                in_features,
                out_features,
                weight: LinearWeight::new(
                    weight(),
                    out_features,
                    in_features,
                    node.inputs.len() == 1
                        && model
                            .graph
                            .node(&node.inputs[0])
                            .is_some_and(|n| n.op == Op::Sign),
                    int8_input(model, i),
                ),
                bias: maybe("bias"),
                relu,
            },
            // The virtual weight is built once here; the layer then runs as a dense Linear.
            Op::HashedLinear(HashedLinear {
                in_features,
                out_features,
                seed,
                ..
            }) => {
                let table = p("weight");
                Kernel::Linear {
                    in_features,
                    out_features,
                    weight: LinearWeight::Dense(crate::ir::op::hashed_weight(
                        seed,
                        out_features,
                        in_features,
                        &table,
                    )),
                    bias: maybe("bias"),
                    relu,
                }
            }
            Op::Conv2d(Conv2d { .. }) => {
                let binary = runs_binary(model, i)
                    .then(|| BinaryConv::new(&node.op, weight()))
                    .flatten();
                let int8 = || Int8Conv::new(&node.op, weight(), int8_input(model, i)?);
                Kernel::Conv2d {
                    op: node.op.clone(),
                    weight: match binary {
                        Some(b) => ConvWeight::Binary(b),
                        None => int8().map_or_else(|| ConvWeight::Dense(p("weight")), ConvWeight::Int8),
                    },
                    bias: maybe("bias"),
                    relu,
                }
            }
            Op::BatchNorm(BatchNorm { eps, .. }) => {
                let (g, b, mean, var) = (p("weight"), p("bias"), p("running_mean"), p("running_var"));
                let scale: Vec<f32> = (0..g.len())
                    .map(|c| g[c] / (var[c] + eps as f32).sqrt())
                    .collect();
                let shift = (0..g.len()).map(|c| b[c] - mean[c] * scale[c]).collect();
                Kernel::Affine { scale, shift }
            }
            Op::Relu => unary(Unary::Relu),
            Op::Relu6 => unary(Unary::Relu6),
            Op::Gelu => unary(Unary::Gelu),
            Op::Sigmoid => unary(Unary::Sigmoid),
            Op::Tanh => unary(Unary::Tanh),
            Op::HardSwish => unary(Unary::HardSwish),
            Op::Silu => unary(Unary::Silu),
            Op::Sign => unary(Unary::Sign),
            Op::Abs => unary(Unary::Abs),
            Op::Erf => unary(Unary::Erf),
            Op::Clip(Clip { min, max }) => unary(Unary::Clip { min, max }),
            Op::Scale(Scale { factor }) => unary(Unary::Scale(factor as f32)),
            Op::FakeQuant(FakeQuant { .. }) => {
                let p = node.op.act_qparams().expect("a fake_quant op has qparams");
                super::int8::ActCodes::new(p).map_or(unary(Unary::FakeQuant(p)), Kernel::Quantize)
            }
            Op::MaxPool2d(MaxPool2d { .. }) | Op::AvgPool2d(AvgPool2d { .. }) | Op::GlobalAvgPool => {
                Kernel::Pool(node.op.clone())
            }
            Op::Flatten => Kernel::Flatten,
            Op::Add => Kernel::Add { relu },
            Op::Concat(Concat { axis }) => Kernel::Concat { axis },
            Op::ChannelShuffle(ChannelShuffle { groups }) => Kernel::ChannelShuffle { groups },
            Op::Dropout(Dropout { .. }) | Op::Identity => Kernel::Copy,
            Op::LayerNorm(LayerNorm { eps, .. }) => Kernel::LayerNorm {
                weight: p("weight"),
                bias: p("bias"),
                eps: eps as f32,
            },
            Op::Attention(Attention { dim, heads, .. }) => Kernel::Attention {
                dim,
                heads,
                head_dim: node.op.head_dim(),
                in_weight: p("in_proj_weight"),
                in_bias: p("in_proj_bias"),
                out_weight: p("out_proj.weight"),
                out_bias: p("out_proj.bias"),
            },
            Op::Embedding(Embedding { embedding_dim, .. }) => Kernel::Embedding {
                dim: embedding_dim,
                table: p("weight"),
            },
            Op::Parameter(Parameter { ref shape }) => Kernel::Parameter {
                shape: shape.clone(),
                value: p(""),
            },
            _ => Kernel::Nd {
                op: node.op.clone(),
                relu,
            },
        }
    }

    /// What runs, for reports: the op, and for a Linear layer the product's form.
    pub(super) fn label(&self) -> String {
        match self {
            Kernel::Linear { weight, .. } => match weight {
                LinearWeight::Dense(_) => "linear f32".into(),
                LinearWeight::Sparse(_) => "linear sparse".into(),
                LinearWeight::Binary(_) => {
                    format!("linear binary ({:?})", super::binary::PopcountPath::best()).to_lowercase()
                }
                LinearWeight::Int8(m, ..) => {
                    let kind = if m.is_int4() { "int4" } else { "int8" };
                    format!("linear {kind} ({:?})", super::int8::Int8Path::best()).to_lowercase()
                }
            },
            Kernel::Conv2d { weight, .. } => match weight {
                ConvWeight::Dense(_) => "conv2d f32".into(),
                ConvWeight::Binary(_) => {
                    format!("conv2d binary ({:?})", super::binary::PopcountPath::best()).to_lowercase()
                }
                ConvWeight::Int8(_) => {
                    format!("conv2d int8 ({:?})", super::int8::Int8Path::best()).to_lowercase()
                }
            },
            Kernel::Affine { .. } => "affine".into(),
            Kernel::Unary(u) => format!("{u:?}").to_lowercase(),
            Kernel::Quantize(act) => format!("fakequant({:?})", act.params()).to_lowercase(),
            Kernel::Pool(op) | Kernel::Nd { op, .. } => op.kind().into(),
            Kernel::Flatten => "flatten".into(),
            Kernel::Add { .. } => "add".into(),
            Kernel::Concat { .. } => "concat".into(),
            Kernel::ChannelShuffle { .. } => "channel_shuffle".into(),
            Kernel::Copy => "copy".into(),
            Kernel::LayerNorm { .. } => "layer_norm".into(),
            Kernel::Attention { .. } => "attention".into(),
            Kernel::Embedding { .. } => "embedding".into(),
            Kernel::Parameter { .. } => "parameter".into(),
        }
    }

    /// Runs the kernel on `inputs` of `n` samples; `name` is the node's, for errors.
    pub(super) fn run(&self, name: &str, inputs: &[&Act], n: usize) -> Result<Act> {
        let mismatch = |want: &str| Error::graph(name, format!("native inference: expects {want}"));
        if let Kernel::Parameter { shape, value } = self {
            return Ok(repeat(shape, value, n));
        }
        let x = *inputs.first().ok_or_else(|| mismatch("an input"))?;
        let image = || x.image().ok_or_else(|| mismatch("images"));
        Ok(match self {
            Kernel::Linear {
                in_features,
                out_features,
                weight,
                bias,
                relu,
            } => linear(x, *in_features, *out_features, |d, rows| match weight {
                LinearWeight::Dense(w) => {
                    matmul::linear(d, rows, *in_features, w, *out_features, bias.as_deref(), *relu)
                }
                LinearWeight::Sparse(w) => w.linear(d, rows, bias.as_deref(), *relu),
                LinearWeight::Binary(w) => w.linear(d, rows, bias.as_deref(), *relu),
                LinearWeight::Int8(w, act) => w.linear(*act, d, rows, bias.as_deref(), *relu),
            }),
            Kernel::Conv2d {
                op,
                weight,
                bias,
                relu,
            } => conv2d(image()?.as_ref(), op, weight, bias.as_deref(), *relu),
            Kernel::Affine { scale, shift } => {
                affine(x, scale, shift).ok_or_else(|| mismatch("[N, C] or [N, C, H, W] values"))?
            }
            Kernel::Quantize(act) => {
                let mut y = x.with(buffers::scratch(x.data().len()));
                act.fake(x.data(), y.data_mut());
                y
            }
            Kernel::Unary(f) => {
                let mut y = x.with(buffers::copy_of(x.data()));
                y.data_mut().iter_mut().for_each(|v| *v = f.apply(*v));
                y
            }
            Kernel::Pool(op) => pool(image()?.as_ref(), op),
            Kernel::Flatten => flatten(x),
            Kernel::Add { relu } => add(inputs, *relu),
            Kernel::Concat { axis } => concat(inputs, *axis)?,
            Kernel::ChannelShuffle { groups } => channel_shuffle(image()?.as_ref(), *groups),
            Kernel::Copy => x.with(buffers::copy_of(x.data())),
            Kernel::LayerNorm { weight, bias, eps } => {
                let (shape, data) = x.pytorch();
                Act::dense(shape, tensor::layer_norm(&data, weight, bias, *eps))
            }
            Kernel::Attention {
                dim,
                heads,
                head_dim,
                in_weight,
                in_bias,
                out_weight,
                out_bias,
            } => {
                let (shape, data) = x.pytorch();
                let &[n, t, _] = shape.as_slice() else {
                    return Err(mismatch("[N, tokens, dim] for attention"));
                };
                let y = tensor::attention(
                    &data, n, t, *dim, *heads, *head_dim, in_weight, in_bias, out_weight, out_bias,
                );
                Act::dense(shape, y)
            }
            Kernel::Embedding { dim, table } => embedding(x, *dim, table),
            Kernel::Nd { op, relu } => {
                let mut y = super::nd::run(op, inputs).map_err(|e| Error::graph(name, e))?;
                if *relu == Fused::Relu {
                    y.data_mut().iter_mut().for_each(|v| *v = v.max(0.0));
                }
                y
            }
            Kernel::Parameter { .. } => unreachable!("handled above"),
        })
    }
}

/// A learned tensor repeated for `n` samples.
fn repeat(shape: &[usize], value: &[f32], n: usize) -> Act {
    let mut y = Vec::with_capacity(n * value.len());
    for _ in 0..n {
        y.extend_from_slice(value);
    }
    Act::dense(std::iter::once(n).chain(shape.iter().copied()).collect(), y)
}

/// A Linear on the last axis (rows, token sequences, or an image's rows): `product` maps the
/// input's `rows` rows of `inputs` features to as many of `outputs`.
fn linear(x: &Act, inputs: usize, outputs: usize, product: impl FnOnce(&[f32], usize) -> Vec<f32>) -> Act {
    let (mut shape, data) = x.pytorch();
    let rows = data.len() / inputs;
    let out = product(&data, rows);
    *shape.last_mut().expect("rank >= 1") = outputs;
    Act::dense(shape, out)
}

fn conv2d(img: &Act, op: &Op, weight: &ConvWeight, bias: Option<&[f32]>, relu: Fused) -> Act {
    let Act::Image { c, n, h, w, data } = img else {
        unreachable!("image() gives images")
    };
    let dims = [*c, *n, *h, *w];
    let (out, oh, ow, oc) = match weight {
        ConvWeight::Binary(b) => b.run(data, dims, bias, relu),
        ConvWeight::Int8(q) => q.run(data, dims, bias, relu),
        ConvWeight::Dense(weight) => conv::conv2d(op, data, dims, weight, bias, relu),
    };
    Act::Image {
        c: oc,
        n: *n,
        h: oh,
        w: ow,
        data: out,
    }
}

/// `x * scale[c] + shift[c]` per channel (folded BatchNorm): channel-major images, rows, or
/// PyTorch's layout with the channels on axis 1; `None` when axis 1 is not the channels.
fn affine(x: &Act, scale: &[f32], shift: &[f32]) -> Option<Act> {
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
        // PyTorch's layout [N, C, ...] (e.g. the output of a broadcasting product).
        Act::Nd { shape, data } if shape.len() >= 2 && shape[1] == scale.len() => {
            let inner: usize = shape[2..].iter().product();
            for (k, chunk) in data.chunks_mut(inner.max(1)).enumerate() {
                let ch = k % scale.len();
                chunk.iter_mut().for_each(|v| *v = *v * scale[ch] + shift[ch]);
            }
        }
        Act::Nd { .. } => return None,
    }
    Some(y)
}

fn pool(img: &Act, op: &Op) -> Act {
    let Act::Image { c, n, h, w, data } = img else {
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

/// Rows of `table` picked by ids (checked against the table when the batch entered the plan).
fn embedding(ids: &Act, dim: usize, table: &[f32]) -> Act {
    let (mut shape, ids) = ids.pytorch();
    let mut y = buffers::scratch(ids.len() * dim);
    for (row, &id) in y.chunks_mut(dim).zip(ids.iter()) {
        let at = id as usize * dim;
        row.copy_from_slice(&table[at..at + dim]);
    }
    shape.push(dim);
    Act::dense(shape, y)
}

/// `[C, H, W] -> [C * H * W]`, channel-major as in PyTorch.
fn flatten(x: &Act) -> Act {
    match x {
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
    }
}

/// Elementwise sum of inputs of one shape, with the fused ReLU.
fn add(inputs: &[&Act], relu: Fused) -> Act {
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
    // One parallel pass per chunk (sum and fused ReLU while in cache): a residual add is pure
    // memory traffic, linear in the channel count.
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

fn concat(inputs: &[&Act], axis: isize) -> Result<Act> {
    let x = inputs[0];
    let full = x.pytorch_shape();
    let along = super::axis_of(axis, &full)?;
    Ok(
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
        },
    )
}

fn channel_shuffle(img: &Act, groups: usize) -> Act {
    let Act::Image { c, n, h, w, data } = img else {
        unreachable!("image() gives images")
    };
    // Output channel j * groups + i is input channel i * (c / groups) + j; a channel is one
    // contiguous plane of the channel-major layout.
    let plane = n * h * w;
    let per = c / groups;
    let mut out = buffers::scratch(data.len());
    for i in 0..groups {
        for j in 0..per {
            let (to, from) = (j * groups + i, i * per + j);
            out[to * plane..(to + 1) * plane].copy_from_slice(&data[from * plane..(from + 1) * plane]);
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

/// True when every input has the first one's layout (all images, all rows, or all `Nd`).
fn same_layout(inputs: &[&Act]) -> bool {
    let kind = |a: &Act| std::mem::discriminant(a);
    inputs.iter().all(|a| kind(a) == kind(inputs[0]))
}
