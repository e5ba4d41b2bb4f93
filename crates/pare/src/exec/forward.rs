//! Runs an `ir::Graph` on the engine: one match over `Op`, the only place ops become engine calls.

use std::collections::{BTreeMap, HashMap};

use burn::tensor::activation::{gelu, hard_swish, relu, relu6, sigmoid, tanh};
use burn::tensor::module::{avg_pool2d, batch_norm, batch_norm_train, conv2d, linear, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, ConvOptions, MaxPoolOptions};
use burn::tensor::{Device, Tensor as BT};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::value::{map_value, upload, Value};
use crate::error::{Error, Result};
use crate::ir::{Model, Op, Reparam, Reparams, INPUT};

/// Train mode uses batch statistics and dropout; eval mode running statistics and no dropout.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Mode {
    Eval,
    /// `seed` drives dropout masks, so a step is reproducible (and resumable).
    Train {
        seed: u64,
    },
}

/// Batch statistics a BatchNorm node saw in train mode: mean, biased variance, element count.
pub(crate) struct BnBatch {
    pub node: String,
    pub mean: BT<1>,
    pub var: BT<1>,
    pub count: usize,
}

pub(crate) struct RunOut {
    pub output: Value,
    pub taps: Vec<(String, Value)>,
    pub bn: Vec<BnBatch>,
}

/// Uploads every parameter as a flat rank-1 tensor. On an autodiff device with `track`, the
/// returned leaves require gradients; the effective values have the reparameterizations applied
/// on top of the leaves, so gradients flow through masks (zero) and fake quantizers (STE).
pub(crate) fn upload_params(
    model: &Model,
    reparams: &Reparams,
    dev: &Device,
    track: bool,
) -> (BTreeMap<String, BT<1>>, HashMap<String, BT<1>>) {
    let trainable: std::collections::HashSet<String> = model.trainable().into_iter().collect();
    let mut leaves = BTreeMap::new();
    let mut effective = HashMap::new();
    for (name, t) in &model.params {
        let mut leaf = upload(t.data().to_vec(), [t.len()], dev);
        if track && trainable.contains(name) {
            leaf = leaf.require_grad();
            leaves.insert(name.clone(), leaf.clone());
        }
        let mut eff = leaf;
        // The CPU value each reparam sees (scales and top-k masks are computed from it);
        // computed only for a reparam that another one follows, so plain training and a
        // single reparam copy nothing here.
        let rs = reparams.get(name).map(Vec::as_slice).unwrap_or(&[]);
        let mut cpu = std::borrow::Cow::Borrowed(t);
        for (i, r) in rs.iter().enumerate() {
            eff = apply_reparam(eff, &cpu, r, dev);
            if i + 1 < rs.len() {
                cpu = std::borrow::Cow::Owned(r.apply(&cpu));
            }
        }
        effective.insert(name.clone(), eff);
    }
    (leaves, effective)
}

/// The engine version of [`Reparam::apply`]; `cpu` is the stored value the scales come from.
fn apply_reparam(w: BT<1>, cpu: &crate::ir::Tensor, r: &Reparam, dev: &Device) -> BT<1> {
    match r {
        Reparam::Mask(mask) => w * upload(mask.data().to_vec(), [mask.len()], dev),
        Reparam::FakeQuant(q) => {
            let qp = q.params(cpu.shape(), cpu.data());
            let rows = qp.len();
            let n = cpu.len();
            let w2 = w.clone().reshape([rows, n / rows]);
            let col =
                |f: &dyn Fn(&crate::ir::QParams) -> f32| upload(qp.iter().map(f).collect(), [rows, 1], dev);
            let (s, z) = (col(&|p| p.scale), col(&|p| p.zero_point as f32));
            let (qmin, qmax) = (qp[0].qmin as f32, qp[0].qmax as f32);
            let q = ((w2.clone() / s.clone()).round() + z.clone()).clamp(qmin, qmax);
            let deq = (q - z) * s;
            // Straight-through estimator: forward the quantized value, backward the identity.
            let ste = w2.clone() + (deq - w2).detach();
            ste.reshape([n])
        }
        Reparam::Supermask { init, keep } => supermask(w, cpu, init, *keep, dev),
    }
}

fn supermask(w: BT<1>, cpu: &crate::ir::Tensor, init: &crate::ir::Tensor, keep: f32, dev: &Device) -> BT<1> {
    let n = cpu.len();
    let mask = upload(crate::ir::reparam::top_k_mask(cpu, keep).into_data(), [n], dev);
    let init = upload(init.data().to_vec(), [n], dev);
    // Forward init * mask; backward d/d score = init (straight through the top-k).
    init * (w.clone() + (mask - w).detach())
}

fn param<const D: usize>(p: &HashMap<String, BT<1>>, name: &str, shape: [usize; D]) -> BT<D> {
    p[name].clone().reshape(shape)
}

/// Runs the graph on `x` (already normalized, `[batch, ..input shape]`).
pub(crate) fn run(
    model: &Model,
    x: Value,
    params: &HashMap<String, BT<1>>,
    mode: Mode,
    taps: &[String],
    dev: &Device,
) -> Result<RunOut> {
    let g = &model.graph;
    let expect: Vec<usize> = g.input.shape.clone();
    let dims = x.dims();
    if dims[1..] != expect[..] {
        return Err(Error::graph(
            INPUT,
            format!(
                "input batch has per-sample shape {:?}, the model expects {expect:?}",
                &dims[1..]
            ),
        ));
    }
    for t in taps {
        if g.index_of(t).is_none() {
            return Err(Error::graph(t, "tap names no node of the graph"));
        }
    }
    let mut values: Vec<Option<Value>> = vec![None; g.nodes.len()];
    let index: HashMap<&str, usize> = g
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.as_str(), i))
        .collect();
    let mut bn = Vec::new();
    for (i, node) in g.nodes.iter().enumerate() {
        let ins: Vec<Value> = node
            .inputs
            .iter()
            .map(|n| {
                if n == INPUT {
                    x.clone()
                } else {
                    values[index[n.as_str()]]
                        .clone()
                        .expect("topological order is validated")
                }
            })
            .collect();
        let name = &node.name;
        let w = |suffix: &str| format!("{name}.{suffix}");
        let mismatch = |what: &str| Error::graph(name, format!("{} received a {what}", node.op.kind()));
        let first = ins[0].clone();
        let out = match &node.op {
            Op::Linear {
                in_features,
                out_features,
                bias,
            } => {
                let Value::V2(x) = first else {
                    return Err(mismatch("rank-4 tensor; flatten first"));
                };
                let wt = param(params, &w("weight"), [*out_features, *in_features]);
                let b = bias.then(|| param(params, &w("bias"), [*out_features]));
                Value::V2(linear(x, wt.transpose(), b))
            }
            Op::Conv2d {
                in_channels,
                out_channels,
                kernel_size,
                stride,
                padding,
                dilation,
                groups,
                bias,
            } => {
                let Value::V4(x) = first else {
                    return Err(mismatch("rank-2 tensor"));
                };
                let wt = param(
                    params,
                    &w("weight"),
                    [
                        *out_channels,
                        in_channels / groups,
                        kernel_size[0],
                        kernel_size[1],
                    ],
                );
                let b = bias.then(|| param(params, &w("bias"), [*out_channels]));
                Value::V4(conv2d(
                    x,
                    wt,
                    b,
                    ConvOptions::new(*stride, *padding, *dilation, *groups),
                ))
            }
            Op::BatchNorm {
                num_features, eps, ..
            } => {
                let c = *num_features;
                let gamma = param(params, &w("weight"), [c]);
                let beta = param(params, &w("bias"), [c]);
                match mode {
                    Mode::Train { .. } => {
                        let count = first.dims().iter().product::<usize>() / c;
                        let (out, mean, var) = match first {
                            Value::V2(x) => {
                                let o = batch_norm_train(x, gamma, beta, *eps);
                                (Value::V2(o.output), o.mean, o.variance)
                            }
                            Value::V4(x) => {
                                let o = batch_norm_train(x, gamma, beta, *eps);
                                (Value::V4(o.output), o.mean, o.variance)
                            }
                        };
                        bn.push(BnBatch {
                            node: name.clone(),
                            mean,
                            var,
                            count,
                        });
                        out
                    }
                    Mode::Eval => {
                        let rm = param(params, &w("running_mean"), [c]);
                        let rv = param(params, &w("running_var"), [c]);
                        map_value!(first, |x| batch_norm(
                            x,
                            gamma.clone(),
                            beta.clone(),
                            rm.clone(),
                            rv.clone(),
                            *eps
                        ))
                    }
                }
            }
            Op::Relu => map_value!(first, |x| relu(x)),
            Op::Relu6 => map_value!(first, |x| relu6(x)),
            Op::Gelu => map_value!(first, |x| gelu(x)),
            Op::Sigmoid => map_value!(first, |x| sigmoid(x)),
            Op::Tanh => map_value!(first, |x| tanh(x)),
            Op::HardSwish => map_value!(first, |x| hard_swish(x)),
            Op::MaxPool2d {
                kernel_size,
                stride,
                padding,
            } => {
                let Value::V4(x) = first else {
                    return Err(mismatch("rank-2 tensor"));
                };
                let o = MaxPoolOptions::new(*kernel_size)
                    .with_stride(*stride)
                    .with_padding(*padding);
                Value::V4(max_pool2d(x, o))
            }
            Op::AvgPool2d {
                kernel_size,
                stride,
                padding,
                count_include_pad,
            } => {
                let Value::V4(x) = first else {
                    return Err(mismatch("rank-2 tensor"));
                };
                let o = AvgPoolOptions::new(*kernel_size)
                    .with_stride(*stride)
                    .with_padding(*padding)
                    .with_count_include_pad(*count_include_pad);
                Value::V4(avg_pool2d(x, o))
            }
            Op::GlobalAvgPool => {
                let Value::V4(x) = first else {
                    return Err(mismatch("rank-2 tensor"));
                };
                Value::V4(x.mean_dim(3).mean_dim(2))
            }
            Op::Flatten => match first {
                Value::V2(x) => Value::V2(x),
                Value::V4(x) => {
                    let [b, c, h, wd] = x.dims();
                    Value::V2(x.reshape([b, c * h * wd]))
                }
            },
            Op::Add => {
                let mut acc = first;
                for v in &ins[1..] {
                    acc = match (acc, v.clone()) {
                        (Value::V2(a), Value::V2(b)) => Value::V2(a + b),
                        (Value::V4(a), Value::V4(b)) => Value::V4(a + b),
                        _ => return Err(mismatch("mix of ranks")),
                    };
                }
                acc
            }
            Op::Concat => match first {
                Value::V2(_) => {
                    let parts = ins
                        .iter()
                        .map(|v| match v {
                            Value::V2(t) => Ok(t.clone()),
                            _ => Err(mismatch("mix of ranks")),
                        })
                        .collect::<Result<Vec<_>>>()?;
                    Value::V2(BT::cat(parts, 1))
                }
                Value::V4(_) => {
                    let parts = ins
                        .iter()
                        .map(|v| match v {
                            Value::V4(t) => Ok(t.clone()),
                            _ => Err(mismatch("mix of ranks")),
                        })
                        .collect::<Result<Vec<_>>>()?;
                    Value::V4(BT::cat(parts, 1))
                }
            },
            Op::Dropout { p } => match mode {
                Mode::Train { seed } if *p > 0.0 => {
                    let dims = first.dims();
                    let n: usize = dims.iter().product();
                    let keep = 1.0 - *p as f32;
                    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ ((i as u64 + 1) * 0x9E37_79B9_7F4A_7C15));
                    let mask: Vec<f32> = (0..n)
                        .map(|_| {
                            if rng.random::<f32>() < keep {
                                1.0 / keep
                            } else {
                                0.0
                            }
                        })
                        .collect();
                    match first {
                        Value::V2(x) => Value::V2(x * upload(mask, [dims[0], dims[1]], dev)),
                        Value::V4(x) => {
                            Value::V4(x * upload(mask, [dims[0], dims[1], dims[2], dims[3]], dev))
                        }
                    }
                }
                _ => first,
            },
            Op::Identity => first,
            Op::FakeQuant { .. } => {
                let p = node.op.act_qparams().expect("a fake_quant op has qparams");
                let (lo, hi) = p.range();
                let (s, z) = (p.scale, p.zero_point as f32);
                map_value!(first, |x| {
                    // Clipped STE: clamp carries the gradient inside [lo, hi] and blocks it
                    // outside; the rounding is detached.
                    let xc = x.clamp(lo, hi);
                    let q = ((xc.clone() / s).round() + z).clamp(p.qmin as f32, p.qmax as f32);
                    let deq = (q - z) * s;
                    xc.clone() + (deq - xc).detach()
                })
            }
        };
        values[i] = Some(out);
    }
    let output = values[index[g.output.as_str()]]
        .clone()
        .expect("output node was computed");
    let taps = taps
        .iter()
        .map(|t| {
            (
                t.clone(),
                values[index[t.as_str()]]
                    .clone()
                    .expect("every node was computed"),
            )
        })
        .collect();
    Ok(RunOut { output, taps, bn })
}
