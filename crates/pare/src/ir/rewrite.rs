//! Graph rewrites: the edits compression methods make to a model's graph, each keeping the
//! graph's invariants (topological order, unique names, outputs naming nodes) and the model's
//! (exactly the parameters its ops declare). A rewrite that fails leaves its graph unchanged.
//!
//! BN folding bypasses the folded BatchNorm, activation calibration inserts quantizers after
//! the values that feed weighted layers, FitNets adds its regressor as a side branch and
//! removes it after the hint stage: all through these functions, so no pass edits
//! `Graph::nodes` by hand.

use super::graph::{Graph, Node, INPUT};
use super::model::{Model, Params};
use super::op::param_name;
use crate::error::{Error, Result};

/// Which readers of a value a rewrite moves to the new node.
#[derive(Clone, Copy)]
pub enum Readers<'a> {
    /// Every node reading it, and the graph outputs naming it.
    All,
    /// The nodes for which the predicate holds (outputs stay).
    Matching(&'a dyn Fn(&Node) -> bool),
    /// None: the new node is a side branch that nothing reads yet.
    None,
}

impl Graph {
    /// Makes the chosen readers of `from` read `to` instead. Returns how many inputs (and
    /// outputs) changed.
    pub fn redirect(&mut self, from: &str, to: &str, readers: Readers) -> usize {
        let mut changed = 0;
        for n in &mut self.nodes {
            if n.name == to {
                continue;
            }
            let moves = match readers {
                Readers::All => true,
                Readers::Matching(f) => f(n),
                Readers::None => false,
            };
            if !moves {
                continue;
            }
            for i in n.inputs.iter_mut().filter(|i| *i == from) {
                *i = to.to_string();
                changed += 1;
            }
        }
        if matches!(readers, Readers::All) {
            for out in std::iter::once(&mut self.output).chain(self.extra_outputs.iter_mut()) {
                if out == from {
                    *out = to.to_string();
                    changed += 1;
                }
            }
        }
        changed
    }

    /// Inserts `node` right after `after` (a node, or [`INPUT`] for the front of the graph),
    /// then moves `readers` of `after` to it. The node must read only values defined before it.
    pub fn insert_after(&mut self, after: &str, node: Node, readers: Readers) -> Result<()> {
        let at = if after == INPUT {
            0
        } else {
            self.index_of(after)
                .ok_or_else(|| Error::graph(after, "no such node to insert after"))?
                + 1
        };
        self.check_new_name(&node.name)?;
        let mut g = self.clone();
        let name = node.name.clone();
        g.nodes.insert(at, node);
        g.redirect(after, &name, readers);
        g.shapes()?;
        *self = g;
        Ok(())
    }

    /// Removes node `name`, which has one input; its readers (and outputs naming it) read that
    /// input instead.
    pub fn bypass(&mut self, name: &str) -> Result<()> {
        let i = self
            .index_of(name)
            .ok_or_else(|| Error::graph(name, "no such node to bypass"))?;
        let [input] = self.nodes[i].inputs.as_slice() else {
            return Err(Error::graph(name, "only a node with one input can be bypassed"));
        };
        let input = input.clone();
        if input == INPUT && self.is_output(name) {
            return Err(Error::graph(name, "bypassing it would make the input an output"));
        }
        let mut g = self.clone();
        g.nodes.remove(i);
        g.redirect(name, &input, Readers::All);
        g.shapes()?;
        *self = g;
        Ok(())
    }

    /// Removes node `name`, which no node reads and no output names (a side branch's end).
    pub fn remove_side(&mut self, name: &str) -> Result<()> {
        let i = self
            .index_of(name)
            .ok_or_else(|| Error::graph(name, "no such node to remove"))?;
        if !self.consumers(name).is_empty() || self.is_output(name) {
            return Err(Error::graph(
                name,
                "other nodes read it; only a side node can be removed",
            ));
        }
        self.nodes.remove(i);
        Ok(())
    }

    /// Replaces node `name` by `nodes`, in their order, where it stood: they may read any value
    /// defined before it and each other. Readers of `name` (and outputs naming it) then read
    /// `output`, one of the new nodes (which may keep the name `name`).
    pub fn replace(&mut self, name: &str, nodes: Vec<Node>, output: &str) -> Result<()> {
        let mut g = self.clone();
        let i = g
            .index_of(name)
            .ok_or_else(|| Error::graph(name, "no such node to replace"))?;
        if !nodes.iter().any(|n| n.name == output) {
            return Err(Error::graph(
                output,
                "the replacement's output is none of its nodes",
            ));
        }
        g.nodes.remove(i);
        for (k, n) in nodes.iter().enumerate() {
            if nodes[..k].iter().any(|m| m.name == n.name) {
                return Err(Error::graph(&n.name, "the replacement names two nodes alike"));
            }
            g.check_new_name(&n.name)?;
        }
        let new: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
        g.nodes.splice(i..i, nodes);
        if output != name {
            g.redirect(
                name,
                output,
                Readers::Matching(&|n: &Node| !new.contains(&n.name)),
            );
            for out in std::iter::once(&mut g.output).chain(g.extra_outputs.iter_mut()) {
                if out == name {
                    *out = output.to_string();
                }
            }
        }
        g.shapes()?;
        *self = g;
        Ok(())
    }

    fn check_new_name(&self, name: &str) -> Result<()> {
        if name == INPUT || self.index_of(name).is_some() {
            return Err(Error::graph(name, "a node of that name already exists"));
        }
        Ok(())
    }
}

/// The names of the parameters node `name` of `graph` owns.
pub fn params_of(graph: &Graph, name: &str) -> Vec<String> {
    graph
        .node(name)
        .map(|n| {
            n.op.params()
                .into_iter()
                .map(|s| param_name(name, s.suffix))
                .collect()
        })
        .unwrap_or_default()
}

/// The model without node `name` (see [`Graph::bypass`]) and its parameters.
pub fn bypass(model: &Model, name: &str) -> Result<Model> {
    let mut graph = model.graph.clone();
    graph.bypass(name)?;
    Model::new(graph, without(&model.params, &params_of(&model.graph, name)))
}

/// The model without side node `name` (see [`Graph::remove_side`]) and its parameters.
pub fn remove_side(model: &Model, name: &str) -> Result<Model> {
    let mut graph = model.graph.clone();
    graph.remove_side(name)?;
    Model::new(graph, without(&model.params, &params_of(&model.graph, name)))
}

/// The model with `node` inserted after `after` (see [`Graph::insert_after`]), holding the
/// parameters `params` (exactly those its op declares).
pub fn insert_after(
    model: &Model,
    after: &str,
    node: Node,
    params: Params,
    readers: Readers,
) -> Result<Model> {
    let mut graph = model.graph.clone();
    graph.insert_after(after, node, readers)?;
    let mut all = model.params.clone();
    all.extend(params);
    Model::new(graph, all)
}

fn without(params: &Params, names: &[String]) -> Params {
    params
        .iter()
        .filter(|(k, _)| !names.contains(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}
