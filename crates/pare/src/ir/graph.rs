//! The model graph: named nodes in topological order, each an [`Op`] applied to named inputs.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::op::{elements, Op};
use crate::error::{Error, Result};
use crate::ir::op::Embedding;

pub mod input;
pub mod ops;

pub use input::{DType, InputSpec, Normalize, MAX_INDEX};

/// The name by which nodes refer to the model's input.
pub const INPUT: &str = "input";

/// The largest per-sample rank a value may have (the engines add the batch axis).
pub const MAX_RANK: usize = 5;

/// The most elements a value may hold per sample, and a model's parameters in all: 2^28 (1 GiB
/// of f32). Larger graphs are refused when they are checked, before anything is allocated, so
/// no size computed from a checked graph overflows and no engine runs out of memory on one
/// sample (e.g. `mlp --hidden 1000000000` asks for 784 billion weights).
pub const MAX_ELEMENTS: usize = 1 << 28;

/// One node: a unique name, an op, and the names of the nodes (or [`INPUT`]) it reads.
///
/// Serialized flat (`{"name": .., "op": "linear", "in_features": .., "inputs": [..]}`). An
/// unknown key is refused: by the op's own `deny_unknown_fields` for ops with attributes, and
/// by [`Node`]'s deserializer for ops without (serde lets a unit variant of an internally
/// tagged enum ignore extra keys, so `{"op": "flatten", "start_dim": 2}` would pass silently).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Node {
    pub name: String,
    #[serde(flatten)]
    pub op: Op,
    pub inputs: Vec<String>,
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Node, D::Error> {
        use serde::de::Error as _;
        #[derive(Deserialize)]
        struct Raw {
            name: String,
            inputs: Vec<String>,
            #[serde(flatten)]
            op: serde_json::Map<String, serde_json::Value>,
        }
        let raw = Raw::deserialize(d)?;
        let extra = raw.op.keys().find(|k| *k != "op").cloned();
        let op: Op = serde_json::from_value(serde_json::Value::Object(raw.op)).map_err(D::Error::custom)?;
        if let Some(key) = extra.filter(|_| !op.rules().has_attributes()) {
            return Err(D::Error::custom(format!(
                "unknown field `{key}`: op `{}` has no attributes",
                op.kind()
            )));
        }
        Ok(Node {
            name: raw.name,
            op,
            inputs: raw.inputs,
        })
    }
}

impl Node {
    pub fn new(name: impl Into<String>, op: Op, inputs: &[&str]) -> Node {
        Node {
            name: name.into(),
            op,
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// A directed acyclic graph of nodes. `nodes` is kept in topological order: every input of a
/// node is [`INPUT`] or an earlier node. `validate` checks this and every shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Graph {
    pub input: InputSpec,
    pub nodes: Vec<Node>,
    /// Name of the node whose value is the model's output (the logits): what evaluation,
    /// latency and export use unless told to pick another output.
    pub output: String,
    /// Further named outputs (early-exit heads, hint layers): computed with the main one and
    /// trained with their own loss terms ([`crate::exec::LossTerm::At`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_outputs: Vec<String>,
    /// Cross-layer tying (ALBERT): each key is a node that computes with the parameters of the
    /// node it maps to, whose op declares the same parameters. A tied node declares none of its
    /// own, so the shared set is trained once (its gradient sums over the nodes that use it),
    /// stored once and counted once. The node mapped to is itself untied.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ties: BTreeMap<String, String>,
}

/// Per-sample shapes of every node's output, indexed like `Graph::nodes`.
#[derive(Clone, Debug, PartialEq)]
pub struct Shapes {
    pub input: Vec<usize>,
    pub nodes: Vec<Vec<usize>>,
}

impl Shapes {
    /// The shape of the value called `name`: [`INPUT`] or a node of `graph`.
    ///
    /// # Panics
    /// When `name` is neither (callers pass names from the validated graph these shapes came from).
    pub fn of<'a>(&'a self, graph: &Graph, name: &str) -> &'a [usize] {
        if name == INPUT {
            &self.input
        } else {
            &self.nodes[graph.index_of(name).expect("a node of the validated graph")]
        }
    }

    /// The shapes of node `i`'s inputs, in order.
    pub fn inputs_of<'a>(&'a self, graph: &Graph, i: usize) -> Vec<&'a [usize]> {
        graph.nodes[i].inputs.iter().map(|n| self.of(graph, n)).collect()
    }
}

impl Graph {
    /// Index of a node by name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Checks names, order, arity and shapes; returns every node's output shape.
    pub fn shapes(&self) -> Result<Shapes> {
        if self.input.shape.is_empty()
            || self.input.shape.len() > MAX_RANK
            || self.input.shape.contains(&0)
            || elements(&self.input.shape).is_none_or(|n| n > MAX_ELEMENTS)
        {
            return Err(Error::graph(
                INPUT,
                format!(
                    "input shape {:?} must have 1 to {MAX_RANK} axes, all positive, at most {MAX_ELEMENTS} elements",
                    self.input.shape
                ),
            ));
        }
        self.input
            .normalize
            .check(&self.input.shape)
            .map_err(|e| Error::graph(INPUT, e))?;
        if self.input.dtype == DType::Index && !self.input.normalize.is_identity() {
            return Err(Error::graph(
                INPUT,
                "integer ids cannot be normalized (drop normalize)",
            ));
        }
        let mut index: HashMap<&str, usize> = HashMap::new();
        let mut shapes: Vec<Vec<usize>> = Vec::with_capacity(self.nodes.len());
        let mut params = 0usize;
        for (i, node) in self.nodes.iter().enumerate() {
            if node.name.is_empty() || node.name == INPUT {
                return Err(Error::graph(&node.name, "a node may not be named '' or 'input'"));
            }
            if index.insert(&node.name, i).is_some() {
                return Err(Error::graph(&node.name, "duplicate node name"));
            }
            let mut ins: Vec<&[usize]> = Vec::with_capacity(node.inputs.len());
            for inp in &node.inputs {
                if inp == INPUT {
                    ins.push(&self.input.shape);
                } else if let Some(&j) = index.get(inp.as_str()) {
                    if j == i {
                        return Err(Error::graph(&node.name, "a node cannot read itself"));
                    }
                    ins.push(&shapes[j]);
                } else {
                    return Err(Error::graph(
                        &node.name,
                        format!("input '{inp}' is not 'input' or an earlier node"),
                    ));
                }
            }
            self.check_dtypes(node)?;
            let out = node
                .op
                .output_shape(&ins)
                .map_err(|reason| Error::graph(&node.name, reason))?;
            if out.is_empty() || out.len() > MAX_RANK || out.contains(&0) {
                return Err(Error::graph(
                    &node.name,
                    format!("output shape {out:?} must have 1 to {MAX_RANK} axes, all positive"),
                ));
            }
            for spec in node
                .op
                .params()
                .into_iter()
                .filter(|_| !self.ties.contains_key(&node.name))
            {
                let total = elements(&spec.shape).and_then(|n| params.checked_add(n));
                params = total.filter(|&n| n <= MAX_ELEMENTS).ok_or_else(|| {
                    Error::graph(
                        &node.name,
                        format!(
                            "parameter '{}' {:?} takes the model to {} parameters, {}; pare allows {MAX_ELEMENTS} (1 GiB)",
                            super::op::param_name(&node.name, spec.suffix),
                            spec.shape,
                            total.map_or("more than usize::MAX".to_string(), |n| n.to_string()),
                            f32_memory(total),
                        ),
                    )
                })?;
            }
            let n = elements(&out);
            if n.is_none_or(|n| n > MAX_ELEMENTS) {
                return Err(Error::graph(
                    &node.name,
                    format!(
                        "output shape {out:?} holds {} per sample; pare allows {MAX_ELEMENTS} elements (1 GiB)",
                        f32_memory(n)
                    ),
                ));
            }
            shapes.push(out);
        }
        for (k, out) in self.outputs().into_iter().enumerate() {
            if !index.contains_key(out) {
                return Err(Error::graph(out, "the graph's output names no node"));
            }
            if self.outputs()[..k].contains(&out) {
                return Err(Error::graph(out, "the node is named as an output twice"));
            }
        }
        self.check_ties(&index)?;
        Ok(Shapes {
            input: self.input.shape.clone(),
            nodes: shapes,
        })
    }

    /// Each tie joins two distinct nodes, the second untied, whose ops declare the same
    /// parameters.
    fn check_ties(&self, index: &HashMap<&str, usize>) -> Result<()> {
        for (node, owner) in &self.ties {
            let Some(&i) = index.get(node.as_str()) else {
                return Err(Error::graph(
                    node,
                    "is tied to another node but is no node of the graph",
                ));
            };
            let Some(&j) = index.get(owner.as_str()) else {
                return Err(Error::graph(
                    node,
                    format!("is tied to '{owner}', which is no node of the graph"),
                ));
            };
            if i == j || self.ties.contains_key(owner) {
                return Err(Error::graph(
                    node,
                    format!("is tied to '{owner}', which must be another node with parameters of its own (not itself tied)"),
                ));
            }
            let (a, b) = (&self.nodes[i].op, &self.nodes[j].op);
            if a.params().is_empty() || a.params() != b.params() {
                return Err(Error::graph(
                    node,
                    format!(
                        "is tied to '{owner}', but a {} and a {} do not declare the same parameters",
                        a.kind(),
                        b.kind()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Refuses any of `names` that takes part in a tie: a method that reshapes one layer (it
    /// would be `done`: "factorized", "hashed") cannot change weights other nodes also use.
    pub fn check_untied(&self, names: &[String], done: &str) -> Result<()> {
        match names.iter().find(|n| self.is_tied(n)) {
            Some(n) => Err(Error::Config(format!(
                "'{n}' shares its parameters with other layers (cross-layer tying), so it cannot be {done} alone"
            ))),
            None => Ok(()),
        }
    }

    /// The node whose parameters node `i` computes with: its own, unless it is tied.
    pub fn param_owner(&self, i: usize) -> &str {
        let name = &self.nodes[i].name;
        self.ties.get(name).unwrap_or(name)
    }

    /// True when `name` takes part in a tie, as the node tied or the one it is tied to: its
    /// parameters are not its alone, so methods that reshape one layer leave it alone.
    pub fn is_tied(&self, name: &str) -> bool {
        self.ties.contains_key(name) || self.ties.values().any(|o| o == name)
    }

    /// Index inputs are read by embeddings only, and embeddings read only them: no op
    /// outputs ids, so an embedding reads the graph's input.
    fn check_dtypes(&self, node: &Node) -> Result<()> {
        let index_input = self.input.dtype == DType::Index;
        let embedding = matches!(node.op, Op::Embedding(Embedding { .. }));
        for inp in &node.inputs {
            let reads_ids = inp == INPUT && index_input;
            if reads_ids != embedding {
                let reason = if embedding {
                    "an embedding reads integer ids: the graph's input, declared with dtype \"index\""
                        .to_string()
                } else {
                    format!(
                        "{} cannot read integer ids (only an embedding can)",
                        node.op.kind()
                    )
                };
                return Err(Error::graph(&node.name, reason));
            }
        }
        Ok(())
    }

    /// Checks a batch against the input (see [`InputSpec::check_batch`]).
    pub fn check_batch(&self, x: &super::Tensor) -> Result<()> {
        self.input.check_batch(x, self.id_rows())
    }

    /// The number of ids every embedding has a row for (the smallest table).
    pub fn id_rows(&self) -> usize {
        self.nodes
            .iter()
            .filter_map(|n| match n.op {
                Op::Embedding(Embedding { num_embeddings, .. }) => Some(num_embeddings),
                _ => None,
            })
            .min()
            .unwrap_or(MAX_INDEX)
    }

    /// Every named output, the main one first.
    pub fn outputs(&self) -> Vec<&str> {
        std::iter::once(self.output.as_str())
            .chain(self.extra_outputs.iter().map(String::as_str))
            .collect()
    }

    /// True when `name` is one of the graph's outputs.
    pub fn is_output(&self, name: &str) -> bool {
        self.output == name || self.extra_outputs.iter().any(|o| o == name)
    }

    /// The same graph with `name`, one of its outputs, as the main output (the previous main
    /// output becomes an extra one): how evaluation and export pick an output.
    pub fn select_output(&self, name: &str) -> Result<Graph> {
        if !self.is_output(name) {
            return Err(Error::graph(
                name,
                format!(
                    "is not an output of the graph (outputs: {})",
                    self.outputs().join(", ")
                ),
            ));
        }
        let mut g = self.clone();
        g.extra_outputs = self
            .outputs()
            .into_iter()
            .filter(|o| *o != name)
            .map(str::to_string)
            .collect();
        g.output = name.to_string();
        Ok(g)
    }

    /// For each of `outputs` in the order given, the indices (in graph order) of the nodes it
    /// needs that no earlier one of them needed: running the stages one after the other computes
    /// the first output as early as possible, then the second, and so on (how an early-exit model
    /// runs). Nodes no output needs are in no stage.
    pub fn stages(&self, outputs: &[&str]) -> Result<Vec<Vec<usize>>> {
        let mut done = vec![false; self.nodes.len()];
        let mut stages = Vec::with_capacity(outputs.len());
        for &out in outputs {
            let start = self
                .index_of(out)
                .ok_or_else(|| Error::graph(out, "no such node"))?;
            let mut need = vec![false; self.nodes.len()];
            need[start] = true;
            // Inputs come before their readers, so one backward sweep marks every ancestor.
            for i in (0..=start).rev() {
                if !need[i] || done[i] {
                    continue;
                }
                for inp in &self.nodes[i].inputs {
                    if let Some(j) = self.index_of(inp) {
                        need[j] = true;
                    }
                }
            }
            let stage: Vec<usize> = (0..self.nodes.len()).filter(|&i| need[i] && !done[i]).collect();
            for &i in &stage {
                done[i] = true;
            }
            stages.push(stage);
        }
        Ok(stages)
    }

    /// Names of the nodes that read `name`'s output, in graph order.
    pub fn consumers(&self, name: &str) -> Vec<usize> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.inputs.iter().any(|i| i == name))
            .map(|(i, _)| i)
            .collect()
    }
}

/// Checks that each of `names` is one of `eligible`, the layers a method acts on: the error
/// names the first that is not and lists the eligible ones, called `kind` ("Linear layer").
pub fn check_layer_names(names: &[String], eligible: &[&str], kind: &str) -> Result<()> {
    match names.iter().find(|n| !eligible.contains(&n.as_str())) {
        Some(bad) => Err(Error::Config(format!(
            "no {kind} named '{bad}' (such layers: {})",
            eligible.join(", ")
        ))),
        None => Ok(()),
    }
}

/// The memory `n` f32 values take, in words ("3.2 TB of f32"); `None` is past usize.
fn f32_memory(n: Option<usize>) -> String {
    match n {
        Some(n) => {
            let bytes = n as f64 * 4.0;
            let (v, unit) = [(1e12, "TB"), (1e9, "GB"), (1e6, "MB")]
                .into_iter()
                .find(|(s, _)| bytes >= *s)
                .map_or((bytes, "B"), |(s, u)| (bytes / s, u));
            format!("{v:.1} {unit} of f32")
        }
        None => "more memory than can be addressed".into(),
    }
}

/// Builds graphs node by node; each `add` returns the new node's name so layers chain.
pub struct GraphBuilder {
    input: InputSpec,
    nodes: Vec<Node>,
    extra_outputs: Vec<String>,
}

impl GraphBuilder {
    pub fn new(shape: impl Into<Vec<usize>>) -> Self {
        GraphBuilder {
            input: InputSpec {
                shape: shape.into(),
                dtype: DType::F32,
                normalize: Normalize::default(),
            },
            nodes: Vec::new(),
            extra_outputs: Vec::new(),
        }
    }

    /// Declares what the input's elements are (real values by default, or integer ids).
    pub fn input_dtype(&mut self, dtype: DType) {
        self.input.dtype = dtype;
    }

    /// Declares `name` an extra output of the graph (the last node added stays the main one).
    pub fn extra_output(&mut self, name: &str) {
        self.extra_outputs.push(name.to_string());
    }

    /// Adds a node reading `inputs`; returns its name.
    pub fn add(&mut self, name: impl Into<String>, op: Op, inputs: &[&str]) -> String {
        let name = name.into();
        self.nodes.push(Node {
            name: name.clone(),
            op,
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
        });
        name
    }

    /// Adds a node reading the previous node (or the input for the first node).
    pub fn then(&mut self, name: impl Into<String>, op: Op) -> String {
        let prev = self
            .nodes
            .last()
            .map(|n| n.name.clone())
            .unwrap_or_else(|| INPUT.to_string());
        self.add(name, op, &[&prev])
    }

    /// The per-sample shape of the last node added (checks the graph so far).
    pub fn last_shape(&self) -> Result<Vec<usize>> {
        let g = Graph {
            input: self.input.clone(),
            nodes: self.nodes.clone(),
            output: self.last().to_string(),
            extra_outputs: Vec::new(),
            ties: BTreeMap::new(),
        };
        let shapes = g.shapes()?;
        Ok(shapes.nodes.last().cloned().unwrap_or(shapes.input))
    }

    /// The name of the last node added.
    pub fn last(&self) -> &str {
        self.nodes.last().map(|n| n.name.as_str()).unwrap_or(INPUT)
    }

    /// Finishes the graph with the last node as output and checks it.
    pub fn finish(self) -> Result<Graph> {
        let output = self.last().to_string();
        let g = Graph {
            input: self.input,
            nodes: self.nodes,
            output,
            extra_outputs: self.extra_outputs,
            ties: BTreeMap::new(),
        };
        g.shapes()?;
        Ok(g)
    }
}
