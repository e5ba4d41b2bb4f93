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

mod buffers;
mod conv;
mod pool;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::ir::{Model, Op, Tensor, INPUT};

/// An activation in the engine's layout.
#[derive(Clone, Debug)]
enum Act {
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
}

impl Act {
    fn data(&self) -> &[f32] {
        match self {
            Act::Image { data, .. } | Act::Rows { data, .. } => data,
        }
    }

    fn into_data(self) -> Vec<f32> {
        match self {
            Act::Image { data, .. } | Act::Rows { data, .. } => data,
        }
    }

    fn data_mut(&mut self) -> &mut Vec<f32> {
        match self {
            Act::Image { data, .. } | Act::Rows { data, .. } => data,
        }
    }

    /// The same layout and shape with other values.
    fn with(&self, data: Vec<f32>) -> Act {
        match *self {
            Act::Image { c, n, h, w, .. } => Act::Image { c, n, h, w, data },
            Act::Rows { n, f, .. } => Act::Rows { n, f, data },
        }
    }
}

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
    let input = from_pytorch(x);
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
            slots[i + 1] = Some(run(model, &node.name, &node.op, &inputs, relu)?);
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
    Ok(to_pytorch(slots[out_slot].take().expect("output computed")))
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
            && g.output != g.nodes[p].name;
        if fusable {
            steps[p] = Step::WithRelu;
            steps[i] = Step::Alias;
        }
    }
    steps
}

fn param<'m>(model: &'m Model, node: &str, suffix: &str) -> Option<&'m [f32]> {
    model.params.get(&format!("{node}.{suffix}")).map(|t| t.data())
}

fn run(model: &Model, name: &str, op: &Op, inputs: &[&Act], relu: Fused) -> Result<Act> {
    let x = inputs[0];
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
            let Act::Rows { n, f, data } = x else {
                return Err(mismatch("feature vectors"));
            };
            if f != in_features {
                return Err(mismatch(&format!("{in_features} features, got {f}")));
            }
            let out = conv::linear(data, *n, *f, weight(), *out_features, bias(), relu);
            Act::Rows {
                n: *n,
                f: *out_features,
                data: out,
            }
        }
        Op::Conv2d { .. } => {
            let Act::Image { c, n, h, w, data } = x else {
                return Err(mismatch("images"));
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
            let Act::Image { c, n, h, w, data } = x else {
                return Err(mismatch("images"));
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
            rows => rows.with(buffers::copy_of(rows.data())),
        },
        Op::Add => {
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
        Op::Concat => match x {
            Act::Image { n, h, w, .. } => {
                let (mut c, mut data) = (0, Vec::new());
                for a in inputs {
                    let Act::Image { c: ci, data: d, .. } = a else {
                        return Err(mismatch("images on every input"));
                    };
                    c += ci;
                    data.extend_from_slice(d);
                }
                Act::Image {
                    c,
                    n: *n,
                    h: *h,
                    w: *w,
                    data,
                }
            }
            Act::Rows { n, .. } => {
                let f: usize = inputs
                    .iter()
                    .map(|a| match a {
                        Act::Rows { f, .. } => *f,
                        Act::Image { .. } => 0,
                    })
                    .sum();
                let mut data = Vec::with_capacity(n * f);
                for i in 0..*n {
                    for a in inputs {
                        let Act::Rows { f: fi, data: d, .. } = a else {
                            return Err(mismatch("vectors on every input"));
                        };
                        data.extend_from_slice(&d[i * fi..(i + 1) * fi]);
                    }
                }
                Act::Rows { n: *n, f, data }
            }
        },
        Op::Dropout { .. } | Op::Identity => x.with(buffers::copy_of(x.data())),
    })
}

fn map(x: &Act, f: impl Fn(f32) -> f32) -> Act {
    let mut y = x.with(buffers::copy_of(x.data()));
    y.data_mut().iter_mut().for_each(|v| *v = f(*v));
    y
}

/// `[N, C, H, W]` -> channel-major images; `[N, F]` -> rows.
fn from_pytorch(x: &Tensor) -> Act {
    let s = x.shape();
    match s.len() {
        4 => {
            let (n, c, h, w) = (s[0], s[1], s[2], s[3]);
            let per = h * w;
            let mut data = buffers::scratch(x.len());
            for i in 0..n {
                for ch in 0..c {
                    data[(ch * n + i) * per..(ch * n + i + 1) * per]
                        .copy_from_slice(&x.data()[(i * c + ch) * per..(i * c + ch + 1) * per]);
                }
            }
            Act::Image { c, n, h, w, data }
        }
        _ => Act::Rows {
            n: s[0],
            f: x.len() / s[0].max(1),
            data: x.data().to_vec(),
        },
    }
}

fn to_pytorch(a: Act) -> Tensor {
    match a {
        Act::Rows { n, f, data } => Tensor::from_vec(vec![n, f], data),
        Act::Image { c, n, h, w, data } => {
            let per = h * w;
            let mut out = vec![0f32; data.len()];
            for ch in 0..c {
                for i in 0..n {
                    out[(i * c + ch) * per..(i * c + ch + 1) * per]
                        .copy_from_slice(&data[(ch * n + i) * per..(ch * n + i + 1) * per]);
                }
            }
            Tensor::from_vec(vec![n, c, h, w], out)
        }
    }
}
