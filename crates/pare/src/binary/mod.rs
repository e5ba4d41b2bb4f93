//! Binary networks: BinaryConnect (Courbariaux et al. 2015), Binarized Neural Networks (Hubara
//! et al. 2016) and XNOR-Net (Rastegari et al. 2016) as a rewrite of a float model's graph
//! plus forward-time weight binarization ([`Reparam::Binarize`]).
//!
//! - **BinaryConnect**: every Linear/Conv2d weight is `sign(w)`; activations stay real; a
//!   BatchNorm follows every layer (added where the model has none).
//! - **BNN**: weights of every layer but the last are `sign(w)`; every layer but the first reads
//!   `sign(BatchNorm(..))` of its input ([`Op::Sign`], straight-through estimator cancelled
//!   outside `[-1, 1]`), which replaces the ReLUs. The first layer's input (the image) and the
//!   last layer's weights stay real, as in the paper.
//! - **XNOR-Net**: the first and the last layer stay real. The others compute
//!   `(sign(x) * alpha sign(W)) * K`: `alpha` the mean `|W|` of each output channel, `K` the mean
//!   `|x|` over the input channels averaged over each output position's receptive field (the
//!   paper's `A * k`), built from [`Op::Abs`], [`Op::Mean`] and [`Op::AvgPool2d`] so that the
//!   model stays plain data. The block order is BatchNorm -> sign -> layer -> pooling.
//!
//! The stored weights stay real and are kept in `[-1, 1]` during training (see
//! [`crate::train::ReparamHook`]); [`crate::ir::reparam::bake`] gives the deployed binary
//! weights. BNN and XNOR rewrite chains only (every node reads one value, read by one node):
//! the sign must sit on the one path into each layer.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ir::op::{AvgPool2d, BatchNorm, Conv2d, HashedLinear, Linear, Mean};
use crate::ir::{Graph, Model, Node, Op, Readers, Reparam, Reparams};

/// Which binary network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    #[serde(rename = "binaryconnect", alias = "bc")]
    BinaryConnect,
    Bnn,
    Xnor,
}

impl Method {
    pub fn parse(s: &str) -> Result<Method> {
        match s {
            "binaryconnect" | "bc" => Ok(Method::BinaryConnect),
            "bnn" => Ok(Method::Bnn),
            "xnor" => Ok(Method::Xnor),
            other => Err(Error::Config(format!(
                "binary method '{other}': expected binaryconnect, bnn or xnor"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Method::BinaryConnect => "binaryconnect",
            Method::Bnn => "bnn",
            Method::Xnor => "xnor",
        }
    }
}

/// A binary network and its float counterpart.
#[derive(Clone, Debug)]
pub struct Binarized {
    /// The rewritten graph with its parameters (the source model's where names match, fresh
    /// BatchNorms as the identity).
    pub model: Model,
    /// `Binarize` on every binarized layer's weight.
    pub reparams: Reparams,
    /// The same network in float: the BatchNorms added, activations and weights real. Trained
    /// with the same budget, it is what the binary network's accuracy is compared with.
    pub float: Model,
    /// Layers whose weights are binary, in graph order.
    pub binary_layers: Vec<String>,
    /// Layers that read binary activations, in graph order.
    pub binary_inputs: Vec<String>,
}

impl Binarized {
    /// The same network with BinaryConnect's stochastic binarization of its binary weights
    /// (see [`Reparam::Binarize`]): signs drawn every training step, the deterministic sign
    /// outside training.
    ///
    /// A stored weight's magnitude is now the confidence of its sign (`+1` with probability
    /// `(w + 1) / 2`), so each binary layer's weights are rescaled to the spread of the paper's
    /// `Uniform(-1, 1)` initialization (root mean square `1 / sqrt(3)`, clipped to
    /// `[-1, 1]`). A usual initialization (`|w| < 0.1`) would otherwise draw nearly fair coins
    /// for every weight until training had moved them. The signs, and so the deterministic
    /// network, are unchanged.
    pub fn with_stochastic_weights(mut self) -> Self {
        set_stochastic(&mut self.reparams);
        for name in self.reparams.keys() {
            if let Some(w) = self.model.params.get_mut(name) {
                let n = w.len().max(1) as f64;
                let var = w.data().iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() / n;
                if var > 0.0 {
                    let k = ((1.0 / 3.0) / var).sqrt() as f32;
                    w.data_mut()
                        .iter_mut()
                        .for_each(|v| *v = (*v * k).clamp(-1.0, 1.0));
                }
            }
        }
        self
    }

    /// BinaryConnect's per-layer learning-rate scaling (the official code's `W_LR_scale =
    /// "Glorot"`): each binary weight's step is multiplied by `1 / sqrt(1.5 / (fan_in +
    /// fan_out))`, the inverse of Glorot's uniform bound for the layer, so that the step moves
    /// the real weights in `[-1, 1]` by a similar fraction in every layer whatever its size.
    /// Fans count kernel positions, as Lasagne does for convolutions. Other parameters keep the
    /// base rate.
    pub fn glorot_lr_scales(&self) -> BTreeMap<String, f32> {
        self.binary_layers
            .iter()
            .filter_map(|l| {
                let node = self.model.graph.node(l)?;
                let (fan_in, fan_out) = match node.op {
                    Op::Linear(Linear {
                        in_features,
                        out_features,
                        ..
                    }) => (in_features, out_features),
                    Op::Conv2d(Conv2d {
                        in_channels,
                        out_channels,
                        kernel_size: [kh, kw],
                        groups,
                        ..
                    }) => (in_channels / groups.max(1) * kh * kw, out_channels * kh * kw),
                    _ => return None,
                };
                let scale = ((fan_in + fan_out) as f64 / 1.5).sqrt() as f32;
                Some((crate::ir::op::param_name(l, "weight"), scale))
            })
            .collect()
    }
}

/// Rewrites `model` into `method`'s binary network (see the module documentation).
pub fn binarize(model: &Model, method: Method) -> Result<Binarized> {
    let layers: Vec<String> = model
        .graph
        .nodes
        .iter()
        .filter(|n| is_layer(&n.op))
        .map(|n| n.name.clone())
        .collect();
    if let Some(n) = model
        .graph
        .nodes
        .iter()
        .find(|n| matches!(n.op, Op::HashedLinear(HashedLinear { .. })))
    {
        return Err(Error::graph(&n.name, "a hashed layer cannot be binarized"));
    }
    let Some(last) = layers.last().cloned() else {
        return Err(Error::Config(
            "binarization needs a model with Linear or Conv2d layers".into(),
        ));
    };
    let signs = method != Method::BinaryConnect;
    if signs {
        check_chain(&model.graph, method)?;
        if layers.len() < 2 {
            return Err(Error::Config(format!(
                "{} keeps the first and last layer's inputs or weights real: the model needs at least two layers",
                method.name()
            )));
        }
    }
    let mut graph = model.graph.clone();
    // BatchNorm after every layer (BinaryConnect) or every layer but the last.
    for l in &layers {
        if method != Method::BinaryConnect && *l == last {
            continue;
        }
        let consumers = graph.consumers(l);
        let has_bn =
            consumers.len() == 1 && matches!(graph.nodes[consumers[0]].op, Op::BatchNorm(BatchNorm { .. }));
        if !has_bn {
            let c = out_channels(&graph.node(l).expect("listed").op);
            let bn = Node::new(format!("{l}_bn"), crate::ir::graph::ops::bn(c), &[l]);
            graph.insert_after(l, bn, Readers::All)?;
        }
    }
    let float_graph = graph.clone();
    let (binary_layers, binary_inputs) = roles(&layers, method);
    // A ReLU on the path into a binarized input would leave the sign only +1 and 0 to see.
    let relus: Vec<String> = graph
        .nodes
        .iter()
        .filter(|n| matches!(n.op, Op::Relu | Op::Relu6))
        .filter(|n| next_layer(&graph, &n.name).is_some_and(|l| binary_inputs.contains(&l)))
        .map(|n| n.name.clone())
        .collect();
    for r in relus {
        graph.bypass(&r)?;
    }
    for l in &binary_inputs {
        insert_sign(&mut graph, l, method == Method::Xnor)?;
    }
    let reparams = weight_reparams(&binary_layers, method);
    Ok(Binarized {
        model: with_params(graph, model)?,
        float: with_params(float_graph, model)?,
        reparams,
        binary_layers,
        binary_inputs,
    })
}

/// Which of the layers (in graph order) have binary weights, and which read binary inputs.
fn roles(layers: &[String], method: Method) -> (Vec<String>, Vec<String>) {
    let n = layers.len();
    match method {
        Method::BinaryConnect => (layers.to_vec(), Vec::new()),
        // BNN binarizes the input of every layer but the first.
        Method::Bnn => (layers[..n - 1].to_vec(), layers[1..].to_vec()),
        // XNOR-Net keeps the first and the last layer real, inputs included.
        Method::Xnor => (layers[1..n - 1].to_vec(), layers[1..n - 1].to_vec()),
    }
}

fn weight_reparams(binary_layers: &[String], method: Method) -> Reparams {
    binary_layers
        .iter()
        .map(|l| {
            let r = Reparam::Binarize {
                scaled: method == Method::Xnor,
                stochastic: false,
            };
            (crate::ir::op::param_name(l, "weight"), vec![r])
        })
        .collect()
}

/// Makes every binarization in `reparams` stochastic.
fn set_stochastic(reparams: &mut Reparams) {
    for r in reparams.values_mut().flatten() {
        if let Reparam::Binarize { stochastic, .. } = r {
            *stochastic = true;
        }
    }
}

/// The weight binarization of a graph that [`binarize`] rewrote for `method` (the same
/// [`Binarized::reparams`], stochastic when `stochastic`): what a saved binary network needs
/// to train on under its binary weights, found from its layers.
pub fn reparams_of(graph: &Graph, method: Method, stochastic: bool) -> Result<Reparams> {
    let layers: Vec<String> = graph
        .nodes
        .iter()
        .filter(|n| is_layer(&n.op))
        .map(|n| n.name.clone())
        .collect();
    let least = if method == Method::BinaryConnect { 1 } else { 2 };
    if layers.len() < least {
        return Err(Error::Config(format!(
            "{} needs at least {least} Linear or Conv2d layer(s), the graph has {}",
            method.name(),
            layers.len()
        )));
    }
    let mut reparams = weight_reparams(&roles(&layers, method).0, method);
    if stochastic {
        set_stochastic(&mut reparams);
    }
    Ok(reparams)
}

fn is_layer(op: &Op) -> bool {
    matches!(op, Op::Linear(Linear { .. }) | Op::Conv2d(Conv2d { .. }))
}

fn out_channels(op: &Op) -> usize {
    match *op {
        Op::Linear(Linear { out_features, .. }) => out_features,
        Op::Conv2d(Conv2d { out_channels, .. }) => out_channels,
        _ => unreachable!("only layers"),
    }
}

/// The first layer downstream of node `name` on a chain.
fn next_layer(graph: &Graph, name: &str) -> Option<String> {
    let mut at = name.to_string();
    loop {
        let &c = graph.consumers(&at).first()?;
        let n = &graph.nodes[c];
        if is_layer(&n.op) {
            return Some(n.name.clone());
        }
        at = n.name.clone();
    }
}

/// BNN and XNOR put a sign on the one path into each layer: every node must read one value,
/// and every value be read once.
fn check_chain(graph: &Graph, method: Method) -> Result<()> {
    for n in &graph.nodes {
        if n.inputs.len() > 1 || graph.consumers(&n.name).len() > 1 {
            return Err(Error::graph(
                &n.name,
                format!(
                    "{} rewrites chains of layers (every node reading one value, read once); this node joins or splits paths (binaryconnect binarizes any graph)",
                    method.name()
                ),
            ));
        }
    }
    Ok(())
}

/// Makes `layer` read `sign(x)` of its input `x`; with `scaled`, multiplies its output by
/// XNOR-Net's `K` computed from `x`.
fn insert_sign(graph: &mut Graph, layer: &str, scaled: bool) -> Result<()> {
    let node = graph.node(layer).expect("a layer of the graph").clone();
    let x = node.inputs[0].clone();
    let only = |n: &Node| n.name == layer;
    let sign = format!("{layer}_sign");
    graph.insert_after(&x, Node::new(&sign, Op::Sign, &[&x]), Readers::Matching(&only))?;
    if !scaled {
        return Ok(());
    }
    // K: mean |x| over the input channels (axis 0 of the per-sample value), then for a
    // convolution the average over each output position's window.
    let abs = format!("{layer}_abs");
    let mean = format!("{layer}_k_mean");
    graph.insert_after(&sign, Node::new(&abs, Op::Abs, &[&x]), Readers::None)?;
    graph.insert_after(
        &abs,
        Node::new(
            &mean,
            Op::Mean(Mean {
                axes: vec![0],
                keepdim: true,
            }),
            &[&abs],
        ),
        Readers::None,
    )?;
    let k = match node.op {
        Op::Conv2d(Conv2d {
            kernel_size,
            stride,
            padding,
            dilation,
            groups,
            ..
        }) => {
            if dilation != [1, 1] || groups != 1 {
                return Err(Error::graph(
                    layer,
                    "XNOR's input scale K needs an ungrouped, undilated convolution",
                ));
            }
            let k = format!("{layer}_k");
            let pool = Op::AvgPool2d(AvgPool2d {
                kernel_size,
                stride,
                padding,
                count_include_pad: true,
                ceil_mode: false,
            });
            graph.insert_after(&mean, Node::new(&k, pool, &[&mean]), Readers::None)?;
            k
        }
        _ => mean,
    };
    let scaled_name = format!("{layer}_scaled");
    graph.insert_after(
        layer,
        Node::new(&scaled_name, Op::Mul, &[layer, &k]),
        Readers::All,
    )?;
    Ok(())
}

/// `graph` with `source`'s parameters where the names match, and the identity (ones, zeros)
/// for the BatchNorms the rewrite added.
fn with_params(graph: Graph, source: &Model) -> Result<Model> {
    let mut params = Model::init(graph.clone(), 0)?.params;
    for (name, t) in params.iter_mut() {
        if let Some(s) = source.params.get(name) {
            *t = s.clone();
        }
    }
    Model::new(graph, params)
}
