//! Runs an `ir::Graph` on the engine: the ops with parameters or a train/eval mode here, the
//! others in `nd.rs`; the only places ops become engine calls.

use crate::ir::op::{
    Attention, BatchNorm, Conv2d, Dropout, Embedding, HashedLinear, LayerNorm, Linear, Parameter,
};
use std::collections::{BTreeMap, HashMap};

use burn::tensor::activation::softmax;
use burn::tensor::module::{batch_norm, batch_norm_train, conv2d, embedding, layer_norm, linear};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor as BT};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::value::{map_value, reshape, upload, zip_values, Value};
use crate::error::{Error, Result};
use crate::ir::op::param_name;
use crate::ir::{Model, Node, Op, Reparam, Reparams, INPUT};

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
/// `step_seed` is a training step's seed: stochastic binarization draws its signs from it
/// (without it, outside training, it takes the deterministic sign).
pub(crate) fn upload_params(
    model: &Model,
    reparams: &Reparams,
    dev: &Device,
    track: bool,
    step_seed: Option<u64>,
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
        let draw = step_seed.map(|s| s ^ name_hash(name));
        for (i, r) in rs.iter().enumerate() {
            eff = apply_reparam(eff, &cpu, r, draw, dev);
            if i + 1 < rs.len() {
                cpu = std::borrow::Cow::Owned(r.apply(&cpu));
            }
        }
        effective.insert(name.clone(), eff);
    }
    (leaves, effective)
}

/// FNV-1a of a parameter's name: each parameter draws its own stochastic signs in a step.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// The engine version of [`Reparam::apply`]; `cpu` is the stored value the scales come from,
/// `draw` the seed of a training step's stochastic signs.
fn apply_reparam(w: BT<1>, cpu: &crate::ir::Tensor, r: &Reparam, draw: Option<u64>, dev: &Device) -> BT<1> {
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
        Reparam::Binarize { scaled, stochastic } => {
            let n = cpu.len();
            let rows = cpu.shape().first().copied().unwrap_or(1).max(1);
            let w2 = w.reshape([rows, n / rows]);
            let sign = match draw.filter(|_| *stochastic) {
                Some(seed) => {
                    // Forward exactly the drawn signs (the added difference is zero);
                    // backward the deterministic sign's straight-through estimator (1 inside
                    // [-1, 1]).
                    let signs = upload(crate::ir::reparam::stochastic_signs(cpu, seed), [n], dev);
                    let clipped = w2.clone().clamp(-1.0, 1.0);
                    signs.reshape([rows, n / rows]) + (clipped.clone() - clipped.detach())
                }
                None => super::nd::sign_ste(w2.clone()),
            };
            let b = if *scaled {
                sign * w2.abs().mean_dim(1)
            } else {
                sign
            };
            b.reshape([n])
        }
    }
}

fn supermask(w: BT<1>, cpu: &crate::ir::Tensor, init: &crate::ir::Tensor, keep: f32, dev: &Device) -> BT<1> {
    let n = cpu.len();
    let mask = upload(crate::ir::reparam::top_k_mask(cpu, keep).into_data(), [n], dev);
    let init = upload(init.data().to_vec(), [n], dev);
    // Forward init * mask; backward d/d score = init (straight through the top-k).
    init * (w.clone() + (mask - w).detach())
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
    let mut cx = Cx {
        params,
        mode,
        dev,
        batch: dims[0],
        bn: Vec::new(),
    };
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
        values[i] = Some(cx.node(i, node, g.param_owner(i), ins)?);
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
    Ok(RunOut {
        output,
        taps,
        bn: cx.bn,
    })
}

/// What every node's forward pass needs besides its inputs.
struct Cx<'a> {
    params: &'a HashMap<String, BT<1>>,
    mode: Mode,
    dev: &'a Device,
    batch: usize,
    bn: Vec<BnBatch>,
}

impl Cx<'_> {
    fn param<const D: usize>(&self, name: &str, shape: [usize; D]) -> BT<D> {
        self.params[name].clone().reshape(shape)
    }

    /// One node's forward pass: the ops with parameters or a mode here, the others in
    /// [`super::nd`]. Parameters are those of `owner`: the node itself, or the node it is tied
    /// to.
    fn node(&mut self, i: usize, node: &Node, owner: &str, ins: Vec<Value>) -> Result<Value> {
        let name = node.name.as_str();
        let w = |suffix: &str| param_name(owner, suffix);
        let mismatch = |what: &str| Error::graph(name, format!("{} received a {what}", node.op.kind()));
        let Some(first) = ins.first().cloned() else {
            return self.source(owner, &node.op);
        };
        Ok(match &node.op {
            Op::Linear(Linear {
                in_features,
                out_features,
                bias,
            }) => {
                let wt = self.param(&w("weight"), [*out_features, *in_features]);
                let b = bias.then(|| self.param(&w("bias"), [*out_features]));
                map_value!(first, |x| linear(x, wt.clone().transpose(), b.clone()))
            }
            Op::HashedLinear(HashedLinear {
                in_features,
                out_features,
                buckets,
                seed,
                bias,
            }) => {
                // The virtual weight gathered from the buckets: the gradient of a bucket is
                // the signed sum of its positions' gradients.
                let (index, sign) = crate::ir::op::hashed_index(*seed, *out_features, *in_features, *buckets);
                let n = index.len();
                let index = upload(index.into_iter().map(|b| b as f32).collect(), [n], self.dev).int();
                let sign = upload(sign, [n], self.dev);
                let table = self.param(&w("weight"), [*buckets]);
                let wt = (table.select(0, index) * sign).reshape([*out_features, *in_features]);
                let b = bias.then(|| self.param(&w("bias"), [*out_features]));
                map_value!(first, |x| linear(x, wt.clone().transpose(), b.clone()))
            }
            Op::Conv2d(Conv2d { .. }) => {
                let Value::V4(x) = first else {
                    return Err(mismatch("tensor that is not [batch, C, H, W]"));
                };
                Value::V4(self.conv2d(owner, &node.op, x))
            }
            Op::BatchNorm(BatchNorm { .. }) => self.batch_norm(name, owner, &node.op, first)?,
            Op::LayerNorm(LayerNorm { dim, eps }) => {
                let gamma = self.param(&w("weight"), [*dim]);
                let beta = self.param(&w("bias"), [*dim]);
                map_value!(first, |x| layer_norm(x, gamma.clone(), Some(beta.clone()), *eps))
            }
            op @ Op::Attention(Attention { dim, heads, .. }) => {
                let Value::V3(x) = first else {
                    return Err(mismatch("tensor that is not [batch, tokens, dim]"));
                };
                Value::V3(self.attention(owner, x, *dim, *heads, op.head_dim()))
            }
            Op::Embedding(Embedding {
                num_embeddings,
                embedding_dim,
            }) => self.embedding(owner, first, *num_embeddings, *embedding_dim),
            Op::Dropout(Dropout { p }) => self.dropout(i, first, *p),
            Op::Parameter(Parameter { .. }) => unreachable!("a parameter node has no inputs"),
            op => super::nd::run(op, ins, self.batch).map_err(|reason| Error::graph(name, reason))?,
        })
    }

    /// Ids of any per-sample shape, looked up as one row of ids (checked against the table by
    /// `Graph::check_batch` before the run).
    fn embedding(&self, name: &str, ids: Value, rows: usize, dim: usize) -> Value {
        let dims = ids.dims();
        let total: usize = dims.iter().product();
        let Value::V2(ids) = reshape(ids, &[1, total]) else {
            unreachable!("reshaped to rank 2")
        };
        let table = self.param(&param_name(name, "weight"), [rows, dim]);
        let found = Value::V3(embedding(table, ids.int()));
        let mut out = dims;
        out.push(dim);
        reshape(found, &out)
    }

    /// Inverted dropout in train mode, with a mask drawn from the step's seed and the node's
    /// position (so a step is reproducible); the identity in eval mode.
    fn dropout(&self, i: usize, x: Value, p: f64) -> Value {
        let Mode::Train { seed } = self.mode else {
            return x;
        };
        if p <= 0.0 {
            return x;
        }
        let dims = x.dims();
        let n: usize = dims.iter().product();
        let keep = 1.0 - p as f32;
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
        let mask = reshape(Value::V1(upload(mask, [n], self.dev)), &dims);
        zip_values!(x, mask, |x, m| x * m).expect("mask has the value's rank")
    }

    /// A node without inputs: a learned tensor repeated over the batch.
    fn source(&self, name: &str, op: &Op) -> Result<Value> {
        let Op::Parameter(Parameter { shape }) = op else {
            return Err(Error::graph(name, format!("{} needs an input", op.kind())));
        };
        let mut stored = vec![1];
        stored.extend_from_slice(shape);
        let t = reshape(Value::V1(self.params[name].clone()), &stored);
        let batch = self.batch;
        Ok(map_value!(t, |x| x.repeat_dim(0, batch)))
    }

    fn conv2d(&self, name: &str, op: &Op, x: BT<4>) -> BT<4> {
        let Op::Conv2d(Conv2d {
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            groups,
            bias,
        }) = *op
        else {
            unreachable!("called for conv2d nodes")
        };
        let wt = self.param(
            &param_name(name, "weight"),
            [out_channels, in_channels / groups, kernel_size[0], kernel_size[1]],
        );
        let b = bias.then(|| self.param(&param_name(name, "bias"), [out_channels]));
        conv2d(x, wt, b, ConvOptions::new(stride, padding, dilation, groups))
    }

    /// Batch norm of node `name` with the parameters and running statistics of `owner` (tied
    /// nodes each push their batch's statistics, as one module called twice does in PyTorch).
    fn batch_norm(&mut self, name: &str, owner: &str, op: &Op, x: Value) -> Result<Value> {
        let Op::BatchNorm(BatchNorm {
            num_features: c, eps, ..
        }) = *op
        else {
            unreachable!("called for batch_norm nodes")
        };
        let gamma = self.param(&param_name(owner, "weight"), [c]);
        let beta = self.param(&param_name(owner, "bias"), [c]);
        Ok(match self.mode {
            Mode::Train { .. } => {
                let count = x.dims().iter().product::<usize>() / c;
                let (out, mean, var) = match x {
                    Value::V2(x) => {
                        let o = batch_norm_train(x, gamma, beta, eps);
                        (Value::V2(o.output), o.mean, o.variance)
                    }
                    Value::V4(x) => {
                        let o = batch_norm_train(x, gamma, beta, eps);
                        (Value::V4(o.output), o.mean, o.variance)
                    }
                    _ => {
                        return Err(Error::graph(
                            name,
                            "batch_norm received a tensor that is not [batch, C] or [batch, C, H, W]",
                        ))
                    }
                };
                self.bn.push(BnBatch {
                    node: owner.to_string(),
                    mean,
                    var,
                    count,
                });
                out
            }
            Mode::Eval => {
                let rm = self.param(&param_name(owner, "running_mean"), [c]);
                let rv = self.param(&param_name(owner, "running_var"), [c]);
                map_value!(x, |x| batch_norm(
                    x,
                    gamma.clone(),
                    beta.clone(),
                    rm.clone(),
                    rv.clone(),
                    eps
                ))
            }
        })
    }

    /// `nn.MultiheadAttention` self-attention on `[batch, tokens, dim]`.
    fn attention(&self, name: &str, x: BT<3>, dim: usize, heads: usize, hd: usize) -> BT<3> {
        let [b, t, _] = x.dims();
        let inner = heads * hd;
        let w_in = self.param(&param_name(name, "in_proj_weight"), [3 * inner, dim]);
        let b_in = self.param(&param_name(name, "in_proj_bias"), [3 * inner]);
        let w_out = self.param(&param_name(name, "out_proj.weight"), [dim, inner]);
        let b_out = self.param(&param_name(name, "out_proj.bias"), [dim]);
        let qkv = linear(x, w_in.transpose(), Some(b_in));
        // [b, t, inner] -> [b, heads, t, hd]
        let split = |k: usize| {
            qkv.clone()
                .narrow(2, k * inner, inner)
                .reshape([b, t, heads, hd])
                .swap_dims(1, 2)
        };
        let (q, k, v) = (split(0), split(1), split(2));
        let scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(1.0 / (hd as f32).sqrt());
        let ctx = softmax(scores, 3)
            .matmul(v)
            .swap_dims(1, 2)
            .reshape([b, t, inner]);
        linear(ctx, w_out.transpose(), Some(b_out))
    }
}
