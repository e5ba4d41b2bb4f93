//! Cross-layer parameter tying (ALBERT, Lan et al. 2020): identical blocks of a network compute
//! with one parameter set. [`tie_blocks`] is the `Model -> Model` rewrite; the sharing itself is
//! `Graph::ties`, which every engine, the optimizer, the file format and the parameter count
//! honour (a shared set is trained once, stored once, counted once); [`untie`] undoes it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ir::op::param_name;
use crate::ir::op::{BatchNorm, LayerNorm};
use crate::ir::{Model, Op, Tensor};

/// Where the shared parameters start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TieInit {
    /// The first block's parameters: for training from scratch, as ALBERT does.
    First,
    /// The element-wise mean of every block's parameters: for tying a trained model, then
    /// fine-tuning (the point closest to all blocks in least squares).
    Mean,
}

impl TieInit {
    pub fn parse(s: &str) -> Result<TieInit> {
        match s {
            "first" => Ok(TieInit::First),
            "mean" => Ok(TieInit::Mean),
            other => Err(Error::Config(format!(
                "unknown tie init '{other}' (expected first or mean)"
            ))),
        }
    }
}

/// What [`tie_blocks`] did.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TieReport {
    /// The block whose nodes keep the parameters.
    pub owner: String,
    /// Node -> the node of the first block it now shares parameters with.
    pub ties: BTreeMap<String, String>,
    pub params_before: usize,
    pub params_after: usize,
}

/// Ties the blocks named by `blocks` (node-name prefixes such as `blocks.0`, `blocks.1`, ..):
/// every node `{blocks[k]}.{rest}` with parameters, for k >= 1, computes with those of
/// `{blocks[0]}.{rest}`, which must be the same op. With `norms` false, BatchNorm and LayerNorm
/// layers keep their own parameters (their statistics differ from depth to depth); ALBERT ties
/// them too.
///
/// # Errors
/// Fewer than two blocks, a block with no node, nodes with parameters that have no counterpart
/// of the same op in the first block (or the reverse), or a node already tied.
pub fn tie_blocks(
    model: &Model,
    blocks: &[String],
    init: TieInit,
    norms: bool,
) -> Result<(Model, TieReport)> {
    if blocks.len() < 2 {
        return Err(Error::Config(format!(
            "tying needs at least two blocks, got {}",
            blocks.len()
        )));
    }
    let graph = &model.graph;
    // The nodes with parameters of each block, by the name they have inside the block.
    let members = |prefix: &str| -> BTreeMap<String, usize> {
        graph
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| {
                let rest = n.name.strip_prefix(prefix)?.strip_prefix('.')?;
                let norm = matches!(
                    n.op,
                    Op::BatchNorm(BatchNorm { .. }) | Op::LayerNorm(LayerNorm { .. })
                );
                (!n.op.params().is_empty() && (norms || !norm)).then(|| (rest.to_string(), i))
            })
            .collect()
    };
    let mut seen = std::collections::BTreeSet::new();
    for b in blocks {
        if !seen.insert(b.as_str()) {
            return Err(Error::Config(format!("block '{b}' is named twice")));
        }
        if !graph.nodes.iter().any(|n| n.name.starts_with(&format!("{b}."))) {
            return Err(Error::Config(format!(
                "no node's name starts with '{b}.': no such block"
            )));
        }
    }
    let first = members(&blocks[0]);
    if first.is_empty() {
        return Err(Error::Config(format!(
            "block '{}' has no layer with parameters to share",
            blocks[0]
        )));
    }
    let mut ties = graph.ties.clone();
    let mut report = BTreeMap::new();
    let mut sets: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for b in &blocks[1..] {
        let other = members(b);
        for (rest, &j) in &other {
            let node = &graph.nodes[j];
            let Some(&i) = first.get(rest) else {
                return Err(Error::graph(
                    &node.name,
                    format!(
                        "has no counterpart '{}.{rest}' in block '{}'",
                        blocks[0], blocks[0]
                    ),
                ));
            };
            let owner = &graph.nodes[i];
            if owner.op != node.op {
                return Err(Error::graph(
                    &node.name,
                    format!(
                        "is a {} unlike '{}' in the first block: identical blocks share parameters",
                        describe(&node.op),
                        owner.name
                    ),
                ));
            }
            for name in [&node.name, &owner.name] {
                if graph.is_tied(name) {
                    return Err(Error::graph(name, "is tied already"));
                }
            }
            ties.insert(node.name.clone(), owner.name.clone());
            report.insert(node.name.clone(), owner.name.clone());
            sets.entry(owner.name.clone())
                .or_default()
                .push(node.name.clone());
        }
        if let Some(rest) = first.keys().find(|r| !other.contains_key(*r)) {
            return Err(Error::Config(format!(
                "block '{b}' has no '{b}.{rest}' to match '{}.{rest}'",
                blocks[0]
            )));
        }
    }
    let mut params = model.params.clone();
    for (owner, tied) in &sets {
        let i = graph.index_of(owner).expect("a node of the graph");
        for spec in graph.nodes[i].op.params() {
            let name = param_name(owner, spec.suffix);
            let copies: Vec<Tensor> = tied
                .iter()
                .map(|t| {
                    params
                        .remove(&param_name(t, spec.suffix))
                        .expect("declared by the op")
                })
                .collect();
            if init == TieInit::Mean {
                let sum = params.get_mut(&name).expect("declared by the op");
                for c in &copies {
                    sum.data_mut().iter_mut().zip(c.data()).for_each(|(s, v)| *s += v);
                }
                let n = (copies.len() + 1) as f32;
                sum.data_mut().iter_mut().for_each(|s| *s /= n);
            }
        }
    }
    let mut g = graph.clone();
    g.ties = ties;
    let tied = Model::new(g, params)?;
    let report = TieReport {
        owner: blocks[0].clone(),
        ties: report,
        params_before: model.num_params(),
        params_after: tied.num_params(),
    };
    Ok((tied, report))
}

/// An op in words for errors: its kind and parameter shapes.
fn describe(op: &Op) -> String {
    let shapes: Vec<String> = op.params().iter().map(|p| format!("{:?}", p.shape)).collect();
    format!("{} with parameters {}", op.kind(), shapes.join(", "))
}

/// The same function with every tie undone: each tied node gets its own copy of the shared
/// parameters. For a method or a format that needs every layer's weights apart (structured
/// pruning of the blocks, an export without sharing).
pub fn untie(model: &Model) -> Model {
    let mut params = model.params.clone();
    for (node, owner) in &model.graph.ties {
        let i = model.graph.index_of(owner).expect("ties name nodes of the graph");
        for spec in model.graph.nodes[i].op.params() {
            let shared = model.params[&param_name(owner, spec.suffix)].clone();
            params.insert(param_name(node, spec.suffix), shared);
        }
    }
    let mut graph = model.graph.clone();
    graph.ties.clear();
    Model::new(graph, params).expect("a tied node declares the parameters of its owner")
}
