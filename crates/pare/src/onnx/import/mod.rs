//! An ONNX graph as a pare model.
//!
//! Nodes are read in file order (ONNX keeps them topological). Every value is a runtime value
//! (a pare node's output, with its per-sample shape: the first ONNX axis is the batch), or a
//! constant, folded here: initializers, `Constant` nodes, and shape arithmetic whose one unknown
//! is the batch size ([`consts`](super::consts)). Weights read by a Conv, Gemm, MatMul,
//! BatchNormalization or LayerNormalization become that layer's named parameters (named after
//! the initializer when it is PyTorch's `{module}.weight`, so a file from `torch.onnx` or from
//! `pare export` keeps its layer names); other constants that meet a runtime value become
//! `parameter` nodes.
//!
//! Nothing is imported partly: every node that cannot be imported is listed in one error, with
//! its op type and what about it pare does not support.

mod arith;
mod fold;
mod layers;
mod layout;
mod ops;

use std::collections::{HashMap, HashSet};
use std::path::Path;

use super::consts::{self, Const};
use super::proto::{data_type, DimValue, ModelProto, NodeProto, TypeValue};
use crate::error::{Error, Result};
use crate::ir::graph::{DType, InputSpec, Normalize, INPUT};
use crate::ir::model::Params;
use crate::ir::op::Parameter;
use crate::ir::op::{param_name, Op};
use crate::ir::{Graph, Model, Node, Tensor};

/// Ops whose meaning changed in opset 13: Softmax stopped flattening to 2-D at its axis, and
/// Split, Squeeze and Unsqueeze take their sizes or axes as inputs. Every other op pare imports
/// means the same in opsets 11 and 12, so such a file is read unless it holds one of these.
const CHANGED_AT_13: &[&str] = &["Softmax", "Split", "Squeeze", "Unsqueeze"];

/// The most inputs an imported op of fixed arity reads (Slice: data, starts, ends, axes, steps).
const MAX_INPUTS: usize = 5;

/// The imported ops that read as many inputs as they are given.
const VARIADIC: &[&str] = &["Concat", "Sum"];

/// The op types [`from_onnx`] imports (default domain, opset 11 and newer; see
/// [`CHANGED_AT_13`]).
pub const SUPPORTED: &[&str] = &[
    "Abs",
    "Add",
    "AveragePool",
    "BatchNormalization",
    "Cast",
    "Clip",
    "Concat",
    "Constant",
    "Conv",
    "DequantizeLinear",
    "Div",
    "Dropout",
    "Erf",
    "Expand",
    "Flatten",
    "Gather",
    "Gelu",
    "Gemm",
    "GreaterOrEqual",
    "GlobalAveragePool",
    "HardSigmoid",
    "HardSwish",
    "Identity",
    "LayerNormalization",
    "LeakyRelu",
    "MatMul",
    "MaxPool",
    "Mul",
    "Pad",
    "PRelu",
    "QuantizeLinear",
    "ReduceMean",
    "Relu",
    "Reshape",
    "Shape",
    "Sigmoid",
    "Sign",
    "Slice",
    "Softmax",
    "Split",
    "Squeeze",
    "Sub",
    "Sum",
    "Tanh",
    "Transpose",
    "Unsqueeze",
    "Where",
];

/// What an ONNX value is during import.
#[derive(Clone, Debug)]
pub(crate) enum Val {
    /// Computed at run time by pare node `name` (or the model's input), per-sample `shape`.
    Dyn {
        name: String,
        shape: Vec<usize>,
    },
    Const(Const),
    /// A step of exact GELU written out (`x / sqrt 2`, `erf`, `+ 1`, `x *`), which becomes one
    /// `gelu` node at its last step (`* 0.5`): `x` and how many steps were seen.
    Gelu {
        x: String,
        shape: Vec<usize>,
        step: u8,
    },
    /// Codes of a per-tensor QuantizeLinear of `x`, which becomes one `fake_quant` node at the
    /// DequantizeLinear that reads them with the same scale and zero point.
    Quantized {
        x: String,
        scale: f32,
        zero_point: i32,
        signed: bool,
    },
    /// `x >= 0`: the condition of a `Where(x >= 0, 1, -1)`, which becomes one `sign` node.
    AtLeastZero {
        x: String,
    },
    /// Output of a node that could not be imported (already reported).
    Failed,
}

/// The model in `proto` (read from `path`, named in errors) as a pare model.
pub fn from_onnx(proto: &ModelProto, path: &Path) -> Result<Model> {
    let fail = |reason: String| Error::Onnx {
        path: path.to_path_buf(),
        reason,
    };
    let opset = proto
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .ok_or_else(|| fail("the file imports no version of the default ONNX operator set".into()))?;
    if opset < 11 {
        return Err(fail(format!(
            "opset {opset}: pare imports opset 11 and newer (export again with opset_version=13 or newer)"
        )));
    }
    let graph = proto
        .graph
        .as_ref()
        .ok_or_else(|| fail("the file holds no graph".into()))?;
    if opset < 13 {
        let changed: Vec<String> = graph
            .node
            .iter()
            .filter(|n| CHANGED_AT_13.contains(&n.op_type.as_str()))
            .map(|n| format!("node '{}': op {}", display_name(n), n.op_type))
            .collect();
        if !changed.is_empty() {
            return Err(fail(format!(
                "opset {opset}: {} changed meaning in opset 13 and pare reads the new one (export again with opset_version=13 or newer):\n  {}",
                CHANGED_AT_13.join(", "),
                changed.join("\n  ")
            )));
        }
    }
    let unsupported: Vec<String> = graph
        .node
        .iter()
        .filter(|n| {
            !(n.domain.is_empty() || n.domain == "ai.onnx") || !SUPPORTED.contains(&n.op_type.as_str())
        })
        .map(|n| {
            let domain = if n.domain.is_empty() {
                String::new()
            } else {
                format!(" of domain '{}'", n.domain)
            };
            format!("node '{}': op {}{domain}", display_name(n), n.op_type)
        })
        .collect();
    if !unsupported.is_empty() {
        return Err(fail(format!(
            "{} node(s) of unsupported ops:\n  {}\n(pare imports {})",
            unsupported.len(),
            unsupported.join("\n  "),
            SUPPORTED.join(", ")
        )));
    }
    let mut imp = Importer::new();
    for t in &graph.initializer {
        let inline;
        let t = if t.data_location == 1 {
            inline = external(t, path).map_err(|e| fail(format!("initializer '{}': {e}", t.name)))?;
            &inline
        } else {
            t
        };
        let c = consts::from_proto(t).map_err(|e| fail(format!("initializer '{}': {e}", t.name)))?;
        imp.vals.insert(t.name.clone(), Val::Const(c));
        imp.elem_types.insert(t.name.clone(), t.data_type);
    }
    let inputs: Vec<_> = graph
        .input
        .iter()
        .filter(|i| !imp.vals.contains_key(&i.name))
        .collect();
    let [input] = inputs.as_slice() else {
        return Err(fail(format!(
            "the graph has {} inputs ({}); pare imports models with one input",
            inputs.len(),
            inputs
                .iter()
                .map(|i| i.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    };
    let (shape, dtype) = input_spec(input).map_err(|e| fail(format!("input '{}': {e}", input.name)))?;
    imp.input_name = input.name.clone();
    imp.dtype = dtype;
    imp.vals.insert(
        input.name.clone(),
        Val::Dyn {
            name: INPUT.into(),
            shape: shape.clone(),
        },
    );
    for n in &graph.node {
        for i in &n.input {
            *imp.uses.entry(i.clone()).or_default() += 1;
        }
    }
    for n in &graph.node {
        imp.node(n);
    }
    let mut outputs = vec![];
    for o in &graph.output {
        match imp.vals.get(&o.name) {
            Some(Val::Dyn { name, .. }) if name != INPUT => {
                let name = name.clone();
                if outputs.contains(&name) {
                    let alias = imp.fresh(&o.name);
                    imp.nodes.push(Node::new(alias.clone(), Op::Identity, &[&name]));
                    outputs.push(alias);
                } else {
                    outputs.push(name);
                }
            }
            Some(Val::Failed) => {}
            Some(_) | None => imp.errors.push(format!(
                "graph output '{}' is not computed from the input by any node pare imports",
                o.name
            )),
        }
    }
    if !imp.errors.is_empty() {
        return Err(fail(format!(
            "{} node(s) cannot be imported:\n  {}",
            imp.errors.len(),
            imp.errors.join("\n  ")
        )));
    }
    let Some(main) = outputs.first().cloned() else {
        return Err(fail("the graph has no output".into()));
    };
    let (nodes, params) = live(imp.nodes, imp.params, &outputs);
    let g = Graph {
        input: InputSpec {
            shape,
            dtype,
            normalize: imp.normalize,
        },
        nodes,
        output: main,
        extra_outputs: outputs[1..].to_vec(),
        ties: Default::default(),
    };
    Model::new(g, params).map_err(|e| fail(format!("the imported graph is invalid: {e}")))
}

/// A tensor whose data is in a file beside the model (ONNX's external data, as exporters write
/// models over 2 GB or by default) with that data read in.
fn external(t: &super::proto::TensorProto, model: &Path) -> Result<super::proto::TensorProto, String> {
    let entry = |k: &str| {
        t.external_data
            .iter()
            .find(|e| e.key == k)
            .map(|e| e.value.as_str())
    };
    let location = entry("location").ok_or("its data is external but names no location")?;
    let rel = Path::new(location);
    if rel.is_absolute()
        || rel
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(format!(
            "external data location '{location}' is not a file beside the model"
        ));
    }
    let file = model.parent().unwrap_or(Path::new(".")).join(rel);
    let number = |k: &str| -> Result<Option<u64>, String> {
        entry(k)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| format!("external data {k} '{v}' is not a number"))
            })
            .transpose()
    };
    let (offset, length) = (number("offset")?.unwrap_or(0), number("length")?);
    let limit = 8 * crate::ir::graph::MAX_ELEMENTS as u64;
    let size = std::fs::metadata(&file)
        .map_err(|e| format!("{}: {e}", file.display()))?
        .len();
    let length = length.unwrap_or(size.saturating_sub(offset));
    if offset.checked_add(length).is_none_or(|end| end > size) || length > limit {
        return Err(format!(
            "external data at offset {offset}, {length} bytes, lies outside {} ({size} bytes)",
            file.display()
        ));
    }
    use std::io::{Read, Seek};
    let mut f = std::fs::File::open(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    let mut raw = vec![0u8; length as usize];
    f.seek(std::io::SeekFrom::Start(offset))
        .and_then(|_| f.read_exact(&mut raw))
        .map_err(|e| format!("{}: {e}", file.display()))?;
    Ok(super::proto::TensorProto {
        raw_data: raw,
        data_location: 0,
        external_data: vec![],
        ..t.clone()
    })
}

/// A node's name for messages: its own, else its first output's.
fn display_name(n: &NodeProto) -> &str {
    if n.name.is_empty() {
        n.output.first().map(String::as_str).unwrap_or("")
    } else {
        &n.name
    }
}

/// The per-sample shape and dtype of the graph's input `[batch, ..]`.
fn input_spec(input: &super::proto::ValueInfoProto) -> Result<(Vec<usize>, DType), String> {
    let Some(TypeValue::TensorType(t)) = input.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        return Err("is not a tensor".into());
    };
    let dtype = match t.elem_type {
        data_type::FLOAT => DType::F32,
        data_type::INT64 | data_type::INT32 => DType::Index,
        other => {
            return Err(format!(
                "has element type {}; pare reads FLOAT (or INT64 ids)",
                data_type::name(other)
            ))
        }
    };
    let dims = &t.shape.as_ref().ok_or("has no shape")?.dim;
    if dims.len() < 2 {
        return Err(format!(
            "has {} axes; pare needs a batch axis and at least one more",
            dims.len()
        ));
    }
    let shape = dims[1..]
        .iter()
        .enumerate()
        .map(|(k, d)| match &d.value {
            Some(DimValue::Value(v)) if *v > 0 => Ok(*v as usize),
            Some(DimValue::Param(p)) => Err(format!(
                "axis {} is the symbolic size '{p}'; pare needs fixed sizes after the batch axis",
                k + 1
            )),
            _ => Err(format!("axis {} has no fixed size", k + 1)),
        })
        .collect::<Result<Vec<usize>, String>>()?;
    layout::bounded(&shape)?;
    Ok((shape, dtype))
}

/// The nodes (and their parameters) that some output needs, in order.
fn live(nodes: Vec<Node>, mut params: Params, outputs: &[String]) -> (Vec<Node>, Params) {
    let mut needed: HashSet<String> = outputs.iter().cloned().collect();
    for n in nodes.iter().rev() {
        if needed.contains(&n.name) {
            needed.extend(n.inputs.iter().cloned());
        }
    }
    let (keep, drop): (Vec<Node>, Vec<Node>) = nodes.into_iter().partition(|n| needed.contains(&n.name));
    for n in &drop {
        for spec in n.op.params() {
            params.remove(&param_name(&n.name, spec.suffix));
        }
    }
    (keep, params)
}

pub(crate) struct Importer {
    input_name: String,
    dtype: DType,
    /// The element type of each initializer (a zero point's gives its codes' type).
    elem_types: HashMap<String, i32>,
    pub(crate) vals: HashMap<String, Val>,
    /// How many node inputs read each ONNX value.
    uses: HashMap<String, usize>,
    nodes: Vec<Node>,
    shapes: HashMap<String, Vec<usize>>,
    params: Params,
    names: HashSet<String>,
    errors: Vec<String>,
    normalize: Normalize,
    /// pare Linear nodes made from a MatMul, without bias yet (a following Add becomes it).
    biasless: HashSet<String>,
}

impl Importer {
    fn new() -> Importer {
        Importer {
            input_name: String::new(),
            dtype: DType::F32,
            elem_types: HashMap::new(),
            vals: HashMap::new(),
            uses: HashMap::new(),
            nodes: vec![],
            shapes: HashMap::new(),
            params: Params::new(),
            names: HashSet::from([INPUT.to_string()]),
            errors: vec![],
            normalize: Normalize::default(),
            biasless: HashSet::new(),
        }
    }

    fn node(&mut self, n: &NodeProto) {
        let ins: Vec<Option<Val>> = n
            .input
            .iter()
            .map(|i| {
                if i.is_empty() {
                    None
                } else {
                    self.vals.get(i).cloned()
                }
            })
            .collect();
        let missing: Vec<&str> = n
            .input
            .iter()
            .zip(&ins)
            .filter(|(name, v)| !name.is_empty() && v.is_none())
            .map(|(name, _)| name.as_str())
            .collect();
        let result = if ins.iter().any(|v| matches!(v, Some(Val::Failed))) {
            Err(None)
        } else if !missing.is_empty() {
            Err(Some(format!(
                "reads {} before any node computes it",
                missing.join(", ")
            )))
        } else {
            // An op reads at most MAX_INPUTS inputs: a node with fewer has the others absent,
            // so a missing input is the op's error, never an index past the end.
            let mut ins = ins;
            if ins.len() < MAX_INPUTS && !VARIADIC.contains(&n.op_type.as_str()) {
                ins.resize(MAX_INPUTS, None);
            }
            ops::convert(self, n, &ins).map_err(Some)
        };
        match result {
            Ok(outs) => {
                for (name, v) in n.output.iter().zip(outs) {
                    if !name.is_empty() {
                        self.vals.insert(name.clone(), v);
                    }
                }
            }
            Err(reason) => {
                if let Some(r) = reason {
                    self.errors
                        .push(format!("node '{}' ({}): {r}", display_name(n), n.op_type));
                }
                for name in &n.output {
                    self.vals.insert(name.clone(), Val::Failed);
                }
            }
        }
    }

    /// A node name not yet used, from an ONNX name (`/layer1/conv/Conv` -> `layer1/conv/Conv`).
    pub(crate) fn fresh(&mut self, base: &str) -> String {
        let base = base.trim_start_matches('/');
        let base = if base.is_empty() { "node" } else { base };
        let mut name = base.to_string();
        let mut k = 1;
        while self.names.contains(&name) {
            k += 1;
            name = format!("{base}_{k}");
        }
        self.names.insert(name.clone());
        name
    }

    /// Adds a pare node reading runtime values, with its parameters; returns its output value.
    pub(crate) fn add(
        &mut self,
        name: String,
        op: Op,
        inputs: &[&str],
        params: Vec<(&str, Tensor)>,
    ) -> Result<Val, String> {
        let in_shapes: Vec<&[usize]> = inputs
            .iter()
            .map(|i| {
                if *i == INPUT {
                    self.input_shape()
                } else {
                    self.shapes[*i].as_slice()
                }
            })
            .collect();
        let shape = op.output_shape(&in_shapes)?;
        // Every value's size is bounded as soon as it exists, so no later arithmetic on
        // shapes overflows.
        layout::bounded(&shape)?;
        for (suffix, t) in params {
            self.params.insert(param_name(&name, suffix), t);
        }
        self.shapes.insert(name.clone(), shape.clone());
        self.nodes.push(Node::new(name.clone(), op, inputs));
        Ok(Val::Dyn { name, shape })
    }

    pub(crate) fn input_dtype(&self) -> DType {
        self.dtype
    }

    fn input_shape(&self) -> &[usize] {
        match self.vals.get(&self.input_name) {
            Some(Val::Dyn { shape, .. }) => shape,
            _ => &[],
        }
    }

    /// A constant joining runtime values: a `parameter` node holding it (per-sample `shape`).
    pub(crate) fn constant(
        &mut self,
        base: &str,
        shape: Vec<usize>,
        data: Vec<f32>,
    ) -> Result<String, String> {
        let name = self.fresh(base);
        let mut stored = vec![1];
        stored.extend(&shape);
        let t = Tensor::new(stored, data).ok_or("constant of the wrong size")?;
        self.add(
            name.clone(),
            Op::Parameter(Parameter { shape }),
            &[],
            vec![("", t)],
        )?;
        Ok(name)
    }

    /// The name for a layer reading weight initializer `weight`: PyTorch's module name when
    /// the initializer is `{module}.weight`, else the ONNX node's.
    pub(crate) fn layer_name(&mut self, n: &NodeProto, weight: Option<&str>) -> String {
        match weight.and_then(|w| w.strip_suffix(".weight")) {
            Some(module) if !module.is_empty() && !self.names.contains(module) => self.fresh(module),
            _ => self.fresh(display_name(n)),
        }
    }
}
