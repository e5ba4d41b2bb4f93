//! Exit heads: grafting a small classifier onto a chosen node (a tap) as an extra output of
//! the graph, and training the heads on a frozen backbone from its stored features.

use crate::data::{Batch, Dataset, InMemory};
use crate::error::{Error, Result};
use crate::exec::LossTerm;
use crate::ir::graph::ops::linear;
use crate::ir::op::{AvgPool2d, Slice};
use crate::ir::rewrite::{self, Readers};
use crate::ir::{GraphBuilder, Model, Node, Op, Tensor};
use crate::train::{fit, Chain, FitConfig, Hooks};

/// The classifier grafted at each tap: images are average-pooled to about 4x4 (Shallow-Deep
/// Networks' feature reduction, so that the head keeps where things are but costs little),
/// flattened, then one Linear layer, or two with a ReLU between when `hidden > 0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub hidden: usize,
}

/// One exit head in a model: the node it reads, the node whose output is its features (what a
/// frozen backbone's heads train on) and its output (an extra output of the graph).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exit {
    pub tap: String,
    pub features: String,
    pub output: String,
}

impl Exit {
    /// The exit heads of a model that [`attach`] made, from their names (`exits.{k}.fc`).
    pub fn of(model: &Model) -> Vec<Exit> {
        let g = &model.graph;
        let mut out = Vec::new();
        for k in 0.. {
            let output = format!("exits.{k}.fc");
            if !g.extra_outputs.contains(&output) {
                break;
            }
            // The head's first node reads the tap; its Linear layers follow its features.
            let first = g
                .nodes
                .iter()
                .find(|n| n.name.starts_with(&format!("exits.{k}.")));
            let tap = first.map(|n| n.inputs[0].clone()).unwrap_or_default();
            let fc1 = format!("exits.{k}.fc1");
            let lin = if g.node(&fc1).is_some() {
                fc1
            } else {
                output.clone()
            };
            let features = g.node(&lin).map(|n| n.inputs[0].clone()).unwrap_or_default();
            out.push(Exit {
                tap,
                features,
                output,
            });
        }
        out
    }
}

/// Grafts a head onto each of `taps` (nodes of `model`), numbered from the earliest tap in the
/// graph: nodes `exits.{k}.pool`, `.flatten`, `.fc1`, `.relu`, `.fc` (those the head needs),
/// right after the tap, with `exits.{k}.fc` an extra output. The backbone and its outputs are
/// unchanged; the heads' weights are drawn as PyTorch initializes a fresh Linear (seeded).
pub fn attach(model: &Model, taps: &[String], head: Head, seed: u64) -> Result<(Model, Vec<Exit>)> {
    let g = &model.graph;
    if taps.is_empty() {
        return Err(Error::Config("no exit taps given".into()));
    }
    if let Some(e) = Exit::of(model).first() {
        return Err(Error::graph(
            &e.output,
            "the model already has exit heads; attach them to the model without exits",
        ));
    }
    let [classes] = model.shapes().of(g, &g.output)[..] else {
        return Err(Error::graph(
            &g.output,
            "exit heads need a main output of one vector per sample",
        ));
    };
    let mut order: Vec<(usize, &String)> = Vec::with_capacity(taps.len());
    for t in taps {
        let i = g.index_of(t).ok_or_else(|| {
            Error::graph(
                t,
                "no such node to attach an exit to (see the layer names in arch.json)",
            )
        })?;
        if order.iter().any(|(j, _)| *j == i) {
            return Err(Error::graph(t, "named twice as an exit tap"));
        }
        if g.is_output(t) {
            return Err(Error::graph(
                t,
                "is an output of the graph; an exit goes before it",
            ));
        }
        order.push((i, t));
    }
    order.sort();
    let shapes = model.shapes();
    let mut graph = g.clone();
    let mut exits = Vec::new();
    for (k, (i, tap)) in order.into_iter().enumerate() {
        let p = format!("exits.{k}");
        let mut nodes: Vec<Node> = Vec::new();
        let mut last = tap.clone();
        let mut push = |name: String, op: Op, last: &mut String| {
            nodes.push(Node {
                name: name.clone(),
                op,
                inputs: vec![last.clone()],
            });
            *last = name;
        };
        let features = match shapes.nodes[i][..] {
            [c, h, w] => {
                let (kh, kw) = (h.div_ceil(4), w.div_ceil(4));
                let (oh, ow) = (h / kh, w / kw);
                if kh > 1 || kw > 1 {
                    let pool = Op::AvgPool2d(AvgPool2d {
                        kernel_size: [kh, kw],
                        stride: [kh, kw],
                        padding: [0, 0],
                        count_include_pad: true,
                        ceil_mode: false,
                    });
                    push(format!("{p}.pool"), pool, &mut last);
                }
                push(format!("{p}.flatten"), Op::Flatten, &mut last);
                if kh > 1 || kw > 1 {
                    c * oh * ow
                } else {
                    c * h * w
                }
            }
            [f] => f,
            ref s => {
                return Err(Error::graph(
                    tap,
                    format!("an exit reads images [C, H, W] or vectors [F]; this node gives {s:?}"),
                ))
            }
        };
        let feature_node = last.clone();
        let mut width = features;
        if head.hidden > 0 {
            push(format!("{p}.fc1"), linear(width, head.hidden), &mut last);
            push(format!("{p}.relu"), Op::Relu, &mut last);
            width = head.hidden;
        }
        push(format!("{p}.fc"), linear(width, classes), &mut last);
        let mut after = tap.clone();
        for n in nodes {
            let name = n.name.clone();
            graph.insert_after(&after, n, Readers::None)?;
            after = name;
        }
        graph.extra_outputs.push(last.clone());
        exits.push(Exit {
            tap: tap.clone(),
            features: feature_node,
            output: last,
        });
    }
    graph.shapes()?;
    let fresh = Model::init(graph.clone(), seed)?;
    let mut params = model.params.clone();
    for n in graph.nodes.iter().filter(|n| n.name.starts_with("exits.")) {
        for name in rewrite::params_of(&graph, &n.name) {
            params.insert(name.clone(), fresh.params[&name].clone());
        }
    }
    Ok((Model::new(graph, params)?, exits))
}

/// Self-distillation of the exits from the model's final head (Phuong & Lampert 2019; Li et al.
/// 2019, "Improved techniques for training adaptive deep networks"): each head's loss is
/// `(1 - alpha) * CE(labels) + alpha * T^2 * CE(softmax(final / T), softmax(head / T))`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SelfDistill {
    pub temperature: f32,
    pub alpha: f32,
}

impl SelfDistill {
    pub fn new(temperature: f32, alpha: f32) -> Result<SelfDistill> {
        if !(temperature > 0.0 && temperature.is_finite() && (0.0..=1.0).contains(&alpha)) {
            return Err(Error::Config(format!(
                "self-distillation needs a positive temperature and alpha in [0, 1], got T = {temperature}, alpha = {alpha}"
            )));
        }
        Ok(SelfDistill { temperature, alpha })
    }
}

/// Trains the heads of `exits` on a frozen backbone (Shallow-Deep Networks' setting): each
/// head's input features are computed once for the whole of `train` with the native engine (eval
/// mode, so the backbone and its BatchNorm statistics stay as they are), then every head is
/// fitted on them, each with its own loss, in one run of `cfg`: the cross-entropy with the
/// labels, or with `distill` also the final head's softened predictions (computed in the same
/// pass). The backbone's parameters and the main output are untouched.
pub fn train_frozen(
    model: &mut Model,
    exits: &[Exit],
    train: &dyn Dataset,
    cfg: &FitConfig,
    distill: Option<SelfDistill>,
    hooks: &mut dyn Hooks,
) -> Result<()> {
    let (features, widths, finals) = stored_features(model, exits, train)?;
    // One model holds every head, reading its slice of the stored features; heads share no
    // parameter, so training them together is training each on its own.
    let mut b = GraphBuilder::new(vec![widths.iter().sum::<usize>()]);
    let mut start = 0;
    for (e, &w) in exits.iter().zip(&widths) {
        let s = b.add(
            format!("{}.features", e.output),
            Op::Slice(Slice {
                axis: 0,
                start,
                end: start + w,
            }),
            &[crate::ir::INPUT],
        );
        start += w;
        let mut last = s;
        for n in head_nodes(model, e) {
            last = b.add(n.name.clone(), n.op.clone(), &[&last]);
        }
        if e.output != exits.last().expect("exits are given").output {
            b.extra_output(&e.output);
        }
    }
    let graph = b.finish()?;
    let mut params = crate::ir::Params::new();
    for n in &graph.nodes {
        for name in rewrite::params_of(&graph, &n.name) {
            params.insert(name.clone(), model.params[&name].clone());
        }
    }
    let mut heads = Model::new(graph, params)?;
    let mut losses = HeadLosses {
        extra: heads.graph.extra_outputs.clone(),
        distill: distill.map(|d| (d, softmax_rows(&finals, d.temperature))),
    };
    let r = fit(
        &mut heads,
        &features,
        None,
        cfg,
        &mut Chain(vec![&mut losses, hooks]),
    )?;
    if r.interrupted {
        return Err(Error::Interrupted);
    }
    for (name, t) in heads.params {
        model.params.insert(name, t);
    }
    Ok(())
}

/// The heads model's losses: its main output (the last exit) gets `fit`'s cross-entropy, each
/// extra output its own; with self-distillation every one is mixed with the soft-target term
/// against the final head's stored predictions (rows indexed by the batch's sample positions).
struct HeadLosses {
    extra: Vec<String>,
    distill: Option<(SelfDistill, Vec<Vec<f32>>)>,
}

impl Hooks for HeadLosses {
    fn loss_terms(&mut self, batch: &Batch, terms: &mut Vec<LossTerm>) -> Result<()> {
        let ce = |weight: f32| LossTerm::CrossEntropy {
            labels: batch.labels.clone(),
            weight,
        };
        let Some((d, probs)) = &self.distill else {
            terms.extend(self.extra.iter().map(|o| LossTerm::At {
                output: o.clone(),
                term: Box::new(ce(1.0)),
            }));
            return Ok(());
        };
        for t in terms.iter_mut() {
            if let LossTerm::CrossEntropy { weight, .. } = t {
                *weight = 1.0 - d.alpha;
            }
        }
        let classes = probs.first().map_or(0, Vec::len);
        let rows: Vec<f32> = batch
            .indices
            .iter()
            .flat_map(|&i| probs[i].iter().copied())
            .collect();
        let soft = LossTerm::SoftTargets {
            target: Tensor::from_vec(vec![batch.indices.len(), classes], rows),
            temperature: d.temperature,
            weight: d.alpha,
        };
        for o in &self.extra {
            for term in [ce(1.0 - d.alpha), soft.clone()] {
                terms.push(LossTerm::At {
                    output: o.clone(),
                    term: Box::new(term),
                });
            }
        }
        terms.push(soft);
        Ok(())
    }
}

/// `softmax(row / t)` of every row.
fn softmax_rows(rows: &[Vec<f32>], t: f32) -> Vec<Vec<f32>> {
    rows.iter()
        .map(|r| {
            let max = r.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v / t));
            let e: Vec<f32> = r.iter().map(|&v| (v / t - max).exp()).collect();
            let sum: f32 = e.iter().sum();
            e.into_iter().map(|v| v / sum).collect()
        })
        .collect()
}

/// The nodes of an exit head after its features (its Linear layers and the ReLU between).
fn head_nodes<'a>(model: &'a Model, e: &Exit) -> Vec<&'a Node> {
    let g = &model.graph;
    let from = g.index_of(&e.features).expect("an exit's features are a node") + 1;
    let to = g.index_of(&e.output).expect("an exit's output is a node");
    g.nodes[from..=to].iter().collect()
}

/// Every sample's features for each exit, side by side (`[N, sum of widths]`), the widths, and
/// every sample's final logits.
fn stored_features(
    model: &Model,
    exits: &[Exit],
    set: &dyn Dataset,
) -> Result<(InMemory, Vec<usize>, Vec<Vec<f32>>)> {
    let mut graph = model.graph.clone();
    graph.extra_outputs = exits.iter().map(|e| e.features.clone()).collect();
    graph.output = model.graph.output.clone();
    let probe = Model::new(graph, model.params.clone())?;
    let shapes = probe.shapes();
    let widths: Vec<usize> = exits
        .iter()
        .map(|e| shapes.of(&probe.graph, &e.features).iter().product())
        .collect();
    let total: usize = widths.iter().sum();
    let mut data = Vec::with_capacity(set.len() * total);
    let mut labels = Vec::with_capacity(set.len());
    let mut finals = Vec::with_capacity(set.len());
    super::each_batch(&probe, set, &mut |outs, batch_labels| {
        let classes = outs[0].shape()[1];
        for i in 0..batch_labels.len() {
            for (k, w) in widths.iter().enumerate() {
                data.extend_from_slice(&outs[k + 1].data()[i * w..(i + 1) * w]);
            }
            finals.push(outs[0].data()[i * classes..(i + 1) * classes].to_vec());
        }
        labels.extend_from_slice(batch_labels);
    })?;
    Ok((
        InMemory::new(vec![total], set.num_classes(), data, labels)?,
        widths,
        finals,
    ))
}
