//! Uniform k-bit quantization of a model: post-training (weights baked, activation ranges
//! calibrated by an [`Observer`]) and quantization-aware training (fake quantizers at forward
//! time with a straight-through estimator, fine-tuned by the fit loop).
//!
//! Activations are simulated with [`Op::FakeQuant`] nodes inserted into the graph before every
//! Linear/Conv2d input (one node per producer, shared by its consumers): the model stays data
//! and saves, reloads and reports like any other. Weights are quantized per tensor or per
//! output channel from their min/max (the usual choice for weights).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::observer::{Observer, Samples};
use crate::data::Batch;
use crate::error::{Error, Result};
use crate::exec;
use crate::ir::op::{Conv2d, FakeQuant, Linear};
use crate::ir::{Model, Node, Op, Readers, Reparam, Reparams, Scheme, Tensor, WeightQuant, INPUT};

/// Bit widths per layer: a default for layer weights (Linear, Conv2d, attention) plus per-node
/// overrides.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerBits {
    pub default: u32,
    /// Overrides the default for Conv2d layers (Deep Compression uses 8 for conv, 5 for fc).
    #[serde(default)]
    pub conv: Option<u32>,
    #[serde(default)]
    pub per_layer: BTreeMap<String, u32>,
}

impl LayerBits {
    pub fn uniform(bits: u32) -> Self {
        LayerBits {
            default: bits,
            ..Default::default()
        }
    }

    /// The bits of every layer weight ([`Model::layer_weights`]) of `model`, keyed by parameter name; unknown
    /// layer names and widths outside `range` are errors.
    pub fn resolve(
        &self,
        model: &Model,
        range: std::ops::RangeInclusive<u32>,
    ) -> Result<BTreeMap<String, u32>> {
        let layers = model.layer_weights();
        for (name, b) in &self.per_layer {
            if !layers.iter().any(|(n, _)| n == name) {
                return Err(Error::Config(format!(
                    "bits for layer '{name}': the model has no Linear, Conv2d or attention node of that name"
                )));
            }
            check_bits(*b, &range, &format!("bits for layer '{name}'"))?;
        }
        check_bits(self.default, &range, "bits")?;
        if let Some(c) = self.conv {
            check_bits(c, &range, "conv bits")?;
        }
        Ok(layers
            .into_iter()
            .map(|(node, w)| {
                let is_conv = matches!(
                    model.graph.node(&node).map(|n| &n.op),
                    Some(Op::Conv2d(Conv2d { .. }))
                );
                let b = self
                    .per_layer
                    .get(&node)
                    .copied()
                    .unwrap_or(match (is_conv, self.conv) {
                        (true, Some(c)) => c,
                        _ => self.default,
                    });
                (w, b)
            })
            .collect())
    }
}

fn check_bits(b: u32, range: &std::ops::RangeInclusive<u32>, what: &str) -> Result<()> {
    if range.contains(&b) {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "{what} = {b}: must be in {}..={}",
            range.start(),
            range.end()
        )))
    }
}

/// How activations are quantized.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActQuant {
    pub bits: u32,
    /// Asymmetric (zero point) suits post-ReLU activations and is the default.
    #[serde(default)]
    pub symmetric: bool,
    pub observer: Observer,
    #[serde(default)]
    pub scope: ActScope,
}

/// Which activations get a fake quantizer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActScope {
    /// The inputs of Linear/Conv2d layers, read quantized by those layers only: what an
    /// integer GEMM needs, every other op stays in f32.
    #[default]
    Layers,
    /// Also both inputs of every Add, and every reader of a quantized value reads it
    /// quantized: a residual stream stays on the 8-bit grid, so an integer runtime
    /// (onnxruntime's QLinearConv and QLinearAdd from a QDQ export) runs a ResNet without
    /// leaving int8 between its layers, where `Layers` makes it convert at every block.
    Graph,
}

/// Fake quantizers for the layer weights of `model`, each after the mask of its zeros
/// if `keep_zeros` (a pruned model stays pruned while it is fine-tuned quantized).
pub fn weight_reparams(
    model: &Model,
    bits: &BTreeMap<String, u32>,
    per_channel: bool,
    symmetric: bool,
    keep_zeros: bool,
) -> Reparams {
    bits.iter()
        .map(|(w, &b)| {
            let mut v = Vec::new();
            let t = &model.params[w];
            if keep_zeros && t.data().contains(&0.0) {
                v.push(Reparam::Mask(zero_mask(t)));
            }
            v.push(Reparam::FakeQuant(WeightQuant {
                bits: b,
                per_channel,
                symmetric,
            }));
            (w.clone(), v)
        })
        .collect()
}

/// 1 where `t` is non-zero, 0 where it is zero.
pub fn zero_mask(t: &Tensor) -> Tensor {
    Tensor::from_vec(
        t.shape().to_vec(),
        t.data()
            .iter()
            .map(|v| if *v == 0.0 { 0.0 } else { 1.0 })
            .collect(),
    )
}

/// The producers whose values feed a Linear/Conv2d (and, in `Graph` scope, an Add): the
/// activations to quantize.
fn quantized_sources(model: &Model, scope: ActScope) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in &model.graph.nodes {
        let reads = match n.op {
            Op::Linear(Linear { .. }) | Op::Conv2d(Conv2d { .. }) => true,
            Op::Add => scope == ActScope::Graph,
            _ => false,
        };
        if reads {
            for i in &n.inputs {
                if !out.contains(i) {
                    out.push(i.clone());
                }
            }
        }
    }
    out
}

/// Removes every [`Op::FakeQuant`] node, reconnecting its consumers to its input.
pub fn strip_act_quant(model: &Model) -> Result<Model> {
    let mut graph = model.graph.clone();
    let quantizers: Vec<String> = graph
        .nodes
        .iter()
        .filter(|n| matches!(n.op, Op::FakeQuant(FakeQuant { .. })))
        .map(|n| n.name.clone())
        .collect();
    for q in quantizers {
        graph.bypass(&q)?;
    }
    Model::new(graph, model.params.clone())
}

/// Calibrates activation ranges on `batches` (with `reparams` active, e.g. quantized weights)
/// and returns the model with a [`Op::FakeQuant`] node before every Linear/Conv2d input (and
/// Add input in [`ActScope::Graph`]).
/// Existing fake-quant nodes are replaced.
pub fn calibrate_activations(
    model: &Model,
    reparams: &Reparams,
    batches: &[Batch],
    act: ActQuant,
) -> Result<Model> {
    if batches.is_empty() {
        return Err(Error::Config(
            "activation calibration needs at least one batch".into(),
        ));
    }
    check_bits(act.bits, &crate::ir::quant::BITS, "activation bits")?;
    let model = strip_act_quant(model)?;
    let sources = quantized_sources(&model, act.scope);
    let taps: Vec<String> = sources.iter().filter(|s| *s != INPUT).cloned().collect();
    let mut samples: BTreeMap<String, Samples> = BTreeMap::new();
    for b in batches {
        let out = exec::infer(&model, &b.x, reparams, &taps)?;
        if sources.iter().any(|s| s == INPUT) {
            samples.entry(INPUT.into()).or_default().add(b.x.data());
        }
        for (k, v) in &out.taps {
            samples.entry(k.clone()).or_default().add(v.data());
        }
    }
    let scheme = Scheme {
        bits: act.bits,
        symmetric: act.symmetric,
    };
    let mut graph = model.graph.clone();
    let qname = |s: &str| format!("{s}_q");
    let node_for = |src: &str| -> Node {
        let (lo, hi) = samples[src].range(act.observer, scheme);
        let p = scheme.params(lo, hi);
        Node {
            name: qname(src),
            op: Op::FakeQuant(FakeQuant {
                bits: act.bits,
                symmetric: act.symmetric,
                scale: p.scale,
                zero_point: p.zero_point,
            }),
            inputs: vec![src.to_string()],
        }
    };
    // Each quantizer sits right after its source; only the weighted layers read it, or in
    // `Graph` scope every node (the graph's outputs keep the f32 value).
    let weighted = |n: &Node| matches!(n.op, Op::Linear(Linear { .. }) | Op::Conv2d(Conv2d { .. }));
    let every = |_: &Node| true;
    let readers: &dyn Fn(&Node) -> bool = match act.scope {
        ActScope::Layers => &weighted,
        ActScope::Graph => &every,
    };
    for src in &sources {
        graph.insert_after(src, node_for(src), Readers::Matching(readers))?;
    }
    Model::new(graph, model.params.clone())
}
