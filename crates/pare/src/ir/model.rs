//! A model: a validated graph plus its named parameters.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::graph::{Graph, Shapes};
use super::op::{Op, ParamKind, ParamSpec};
use super::tensor::Tensor;
use crate::error::{Error, Result};
use crate::ir::op::{Attention, BatchNorm, Conv2d, Embedding, HashedLinear, LayerNorm, Linear, Parameter};

/// Named parameters, keyed `{node}.{suffix}` like a PyTorch `state_dict`.
pub type Params = BTreeMap<String, Tensor>;

/// A parameter of the model with the node that owns it.
#[derive(Clone, Debug)]
pub struct ParamRef {
    /// Full name, `{node}.{suffix}`.
    pub name: String,
    /// Index of the owning node in `Graph::nodes`.
    pub node: usize,
    pub spec: ParamSpec,
}

/// A graph and its parameters. Invariant (checked by [`Model::new`]): `params` holds exactly
/// the parameters the graph's ops declare, with the declared shapes.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    pub graph: Graph,
    pub params: Params,
}

/// Every parameter the graph declares, in node order (a tied node declares none: it uses
/// those of the node it is tied to).
pub fn param_refs(graph: &Graph) -> Vec<ParamRef> {
    graph
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| !graph.ties.contains_key(&n.name))
        .flat_map(|(i, n)| {
            n.op.params().into_iter().map(move |spec| ParamRef {
                name: super::op::param_name(&n.name, spec.suffix),
                node: i,
                spec,
            })
        })
        .collect()
}

impl Model {
    /// Pairs a graph with parameters, checking names and shapes exactly.
    pub fn new(graph: Graph, params: Params) -> Result<Model> {
        graph.shapes()?;
        let refs = param_refs(&graph);
        for r in &refs {
            match params.get(&r.name) {
                None => {
                    return Err(Error::graph(
                        &graph.nodes[r.node].name,
                        format!("parameter '{}' is missing", r.name),
                    ))
                }
                Some(t) if t.shape() != r.spec.shape.as_slice() => {
                    return Err(Error::graph(
                        &graph.nodes[r.node].name,
                        format!(
                            "parameter '{}' has shape {:?}, expected {:?}",
                            r.name,
                            t.shape(),
                            r.spec.shape
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
        if params.len() != refs.len() {
            let extra = params
                .keys()
                .find(|k| !refs.iter().any(|r| &r.name == *k))
                .cloned()
                .unwrap_or_default();
            return Err(Error::graph(&extra, "parameter belongs to no node of the graph"));
        }
        Ok(Model { graph, params })
    }

    /// Builds a model with PyTorch's default initialization from a seeded generator.
    ///
    /// Linear and Conv2d: weight ~ kaiming_uniform(a = sqrt(5)), i.e. U(-1/sqrt(fan_in),
    /// 1/sqrt(fan_in)), bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)); BatchNorm and LayerNorm:
    /// weight 1, bias 0, running mean 0, running var 1; attention as `nn.MultiheadAttention`
    /// (xavier-uniform input projection, zero biases); a bare parameter ~ N(0, 0.02), an
    /// embedding table ~ N(0, 1). Parameters are drawn in node order from one ChaCha8
    /// stream, so the same seed gives the same model on every machine.
    pub fn init(graph: Graph, seed: u64) -> Result<Model> {
        graph.shapes()?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut params = Params::new();
        for r in param_refs(&graph) {
            let op = &graph.nodes[r.node].op;
            let n: usize = r.spec.shape.iter().product();
            let t = match (op, r.spec.suffix) {
                (
                    Op::BatchNorm(BatchNorm { .. }) | Op::LayerNorm(LayerNorm { .. }),
                    "weight" | "running_var",
                ) => Tensor::ones(r.spec.shape),
                (Op::BatchNorm(BatchNorm { .. }) | Op::LayerNorm(LayerNorm { .. }), _) => {
                    Tensor::zeros(r.spec.shape)
                }
                (Op::Attention(Attention { .. }), "in_proj_bias" | "out_proj.bias") => {
                    Tensor::zeros(r.spec.shape)
                }
                (Op::Attention(Attention { dim, .. }), "in_proj_weight") => {
                    // PyTorch: xavier_uniform over the [3 * inner, dim] matrix.
                    let bound = (6.0 / (dim + 3 * op.attention_inner()) as f32).sqrt();
                    let data = (0..n).map(|_| rng.random_range(-bound..bound)).collect();
                    Tensor::from_vec(r.spec.shape, data)
                }
                // N(0, 0.02), the usual init of class tokens and position embeddings; N(0, 1)
                // for embedding tables, as PyTorch's nn.Embedding.
                (Op::Parameter(Parameter { .. }), _) => {
                    Tensor::from_vec(r.spec.shape, normal(&mut rng, n, 0.02))
                }
                (Op::Embedding(Embedding { .. }), _) => {
                    Tensor::from_vec(r.spec.shape, normal(&mut rng, n, 1.0))
                }
                _ => {
                    let bound = 1.0 / (fan_in(op) as f32).sqrt();
                    let data = (0..n).map(|_| rng.random_range(-bound..bound)).collect();
                    Tensor::from_vec(r.spec.shape, data)
                }
            };
            params.insert(r.name, t);
        }
        Model::new(graph, params)
    }

    /// Every parameter with its owning node, in node order.
    pub fn param_refs(&self) -> Vec<ParamRef> {
        param_refs(&self.graph)
    }

    /// Names of the parameters the optimizer trains (weights and biases, not buffers).
    pub fn trainable(&self) -> Vec<String> {
        self.param_refs()
            .into_iter()
            .filter(|r| r.spec.kind != ParamKind::Buffer)
            .map(|r| r.name)
            .collect()
    }

    /// The weight matrices of Linear, Conv2d and attention nodes (an attention node has two:
    /// its input and output projections, rows = output units) as `(node, parameter)` names, in
    /// node order: what weight pruning, quantization and sharing act on (norm scales, biases and
    /// learned tokens are left in f32).
    pub fn layer_weights(&self) -> Vec<(String, String)> {
        self.param_refs()
            .into_iter()
            .filter(|r| r.spec.kind == ParamKind::Weight)
            .filter(|r| {
                matches!(
                    self.graph.nodes[r.node].op,
                    Op::Linear(Linear { .. }) | Op::Conv2d(Conv2d { .. }) | Op::Attention(Attention { .. })
                )
            })
            .map(|r| (self.graph.nodes[r.node].name.clone(), r.name))
            .collect()
    }

    /// Per-sample shapes of every node (the graph was validated on construction).
    pub fn shapes(&self) -> Shapes {
        self.graph
            .shapes()
            .expect("a Model's graph is validated on construction")
    }

    /// Trained parameters, counted as PyTorch's `sum(p.numel() for p in model.parameters())`
    /// (which also counts a shared parameter once).
    pub fn num_params(&self) -> usize {
        self.graph
            .nodes
            .iter()
            .filter(|n| !self.graph.ties.contains_key(&n.name))
            .map(|n| n.op.num_params())
            .sum()
    }

    /// Multiply-accumulates for one sample.
    pub fn macs(&self) -> u64 {
        let shapes = self.shapes();
        self.graph
            .nodes
            .iter()
            .enumerate()
            .map(|(i, _)| self.node_macs(&shapes, i))
            .sum()
    }

    /// Multiply-accumulates of node `i` for one sample, given the model's shapes.
    pub fn node_macs(&self, shapes: &Shapes, i: usize) -> u64 {
        self.graph.nodes[i]
            .op
            .macs(&shapes.inputs_of(&self.graph, i), &shapes.nodes[i])
    }
}

/// `n` draws of N(0, std^2) (Box-Muller on the model's stream).
pub(crate) fn normal(rng: &mut ChaCha8Rng, n: usize, std: f32) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let u1: f32 = 1.0 - rng.random::<f32>();
            let u2: f32 = rng.random();
            std * (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
        })
        .collect()
}

/// Inputs seen by each output unit of a weighted op (PyTorch's `fan_in`).
fn fan_in(op: &Op) -> usize {
    match *op {
        Op::Linear(Linear { in_features, .. }) | Op::HashedLinear(HashedLinear { in_features, .. }) => {
            in_features
        }
        Op::Attention(Attention { dim, .. }) => dim,
        Op::Conv2d(Conv2d {
            in_channels,
            kernel_size,
            groups,
            ..
        }) => in_channels / groups.max(1) * kernel_size[0] * kernel_size[1],
        _ => 1,
    }
}
