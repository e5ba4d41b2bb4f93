//! A pare model as an ONNX graph (opset 17) that any ONNX runtime runs.
//!
//! Every pare node becomes one ONNX node, or a short fixed chain of standard ones where ONNX has
//! no single op for it (multi-head attention, GELU, ReLU6, channel shuffle, pare's sign). The
//! value a pare node computes keeps the node's name, parameters keep their PyTorch names and
//! layouts as initializers, and helper values are named `{node}/...`, so an exported file reads
//! like the model directory it came from and imports back to the same names.
//!
//! The batch axis is the symbolic first dimension `N`: shapes written as constants keep it with
//! a `0` (ONNX Reshape's "copy this dimension"), and learned tensors that join a batch (a class
//! token) are expanded to the batch size computed from the input's shape. The input
//! normalization that belongs to a pare model is the graph's first two nodes, so the file takes
//! the same raw inputs `pare eval` does.

mod blocks;
mod emit;
mod integer;
mod qdq;

use std::collections::HashMap;

use super::proto::{
    attribute_type, data_type, AttributeProto, DimValue, Dimension, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, TensorProto, TensorShapeProto, TensorTypeProto, TypeProto, TypeValue, ValueInfoProto,
};
use crate::error::{Error, Result};
use crate::ir::graph::{DType, Normalize, INPUT};
use crate::ir::op::Parameter;
use crate::ir::op::{param_name, resolve_axis, Op};
use crate::ir::{Model, Tensor};

/// The opset the exported files declare: LayerNormalization needs 17.
pub const OPSET: i64 = 17;

/// The ONNX IR version written (the one that goes with opset 17).
const IR_VERSION: i64 = 8;

/// The symbolic batch dimension of inputs and outputs.
const BATCH: &str = "N";

/// How a model is written.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// How the layers pare runs in int8 are written.
    pub int8: Int8Form,
}

/// The ONNX form of the layers pare runs in int8 (an 8-bit fake quantizer before, weights on
/// an integer grid, the next fake quantizer after).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Int8Form {
    /// f32 weights, as every other layer.
    #[default]
    F32,
    /// int8 weights and a DequantizeLinear (see [`qdq`]): runtimes that fuse the pattern run
    /// their integer kernels.
    Qdq,
    /// ConvInteger / MatMulInteger on the layer's uint8 input codes and weight codes, the
    /// int32 sums scaled back to f32 (see [`integer`]): integer products without relying on a
    /// runtime's fusion.
    IntegerOps,
}

/// The model as an ONNX `ModelProto` with f32 weights, every graph output (the main one first)
/// an output of the file.
pub fn to_onnx(model: &Model) -> Result<ModelProto> {
    to_onnx_with(model, Options::default())
}

/// The model as an ONNX `ModelProto`, written as `options` say.
pub fn to_onnx_with(model: &Model, options: Options) -> Result<ModelProto> {
    let graph = &model.graph;
    let shapes = graph.shapes()?;
    let mut w = Writer::default();
    let folded = if options.int8 != Int8Form::F32 {
        let (layers, folded) = qdq::plan(model);
        w.qdq = layers;
        w.integer_ops = options.int8 == Int8Form::IntegerOps;
        folded
    } else {
        Default::default()
    };
    let input_type = match graph.input.dtype {
        DType::F32 => data_type::FLOAT,
        DType::Index => data_type::INT64,
    };
    let mut names: HashMap<String, String> = HashMap::new();
    let input = if !graph.input.normalize.is_identity() {
        let Normalize { mean, std } = &graph.input.normalize;
        // One value, or one per channel shaped [C, 1, 1] to broadcast over [N, C, H, W].
        let shape = if mean.len() > 1 {
            vec![mean.len(), 1, 1]
        } else {
            vec![]
        };
        let m = w.init(f32_tensor("input/mean", &shape, mean));
        let s = w.init(f32_tensor("input/std", &shape, std));
        w.node("Sub", "input/sub", &[INPUT, &m], "input/centered", vec![]);
        w.node(
            "Div",
            "input/div",
            &["input/centered", &s],
            "input/normalized",
            vec![],
        );
        "input/normalized".to_string()
    } else {
        INPUT.to_string()
    };
    w.input = input.clone();
    names.insert(INPUT.to_string(), input);
    for (i, node) in graph.nodes.iter().enumerate() {
        if folded.contains(&i) {
            // A BatchNorm folded into the quantized layer before it.
            let producer = names[&node.inputs[0]].clone();
            names.insert(node.name.clone(), producer);
            continue;
        }
        let owner = graph.param_owner(i).to_string();
        let ins: Vec<String> = node.inputs.iter().map(|n| names[n].clone()).collect();
        let in_shapes = shapes.inputs_of(graph, i);
        let out_shape = &shapes.nodes[i];
        let ctx = Ctx {
            model,
            name: &node.name,
            owner: &owner,
            ins: &ins,
            in_shapes: &in_shapes,
            out_shape,
        };
        w.emit(&ctx, &node.op)?;
        // A parameter's initializer holds the node's own name (PyTorch's), so its batch-sized
        // copy is another value.
        let value = match node.op {
            Op::Parameter(Parameter { .. }) => format!("{}/expanded", node.name),
            _ => node.name.clone(),
        };
        names.insert(node.name.clone(), value);
    }
    let value_info = |name: &str, shape: &[usize], elem: i32| ValueInfoProto {
        name: name.to_string(),
        r#type: Some(tensor_type(elem, shape)),
        doc_string: String::new(),
    };
    let outputs = graph
        .outputs()
        .iter()
        .map(|o| value_info(&names[*o], shapes.of(graph, o), data_type::FLOAT))
        .collect();
    let onnx_graph = GraphProto {
        node: w.nodes,
        name: "pare".into(),
        initializer: w.inits,
        doc_string: String::new(),
        input: vec![value_info(INPUT, &graph.input.shape, input_type)],
        output: outputs,
        value_info: vec![],
    };
    Ok(ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        producer_name: "pare".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        domain: String::new(),
        model_version: 1,
        doc_string: String::new(),
        graph: Some(onnx_graph),
    })
}

/// A tensor type `[N, ..per_sample]`.
fn tensor_type(elem: i32, per_sample: &[usize]) -> TypeProto {
    let mut dim = vec![Dimension {
        value: Some(DimValue::Param(BATCH.into())),
    }];
    dim.extend(per_sample.iter().map(|&d| Dimension {
        value: Some(DimValue::Value(d as i64)),
    }));
    TypeProto {
        value: Some(TypeValue::TensorType(TensorTypeProto {
            elem_type: elem,
            shape: Some(TensorShapeProto { dim }),
        })),
    }
}

/// What one pare node's export sees.
struct Ctx<'a> {
    model: &'a Model,
    name: &'a str,
    /// The node whose parameters it computes with (itself unless tied).
    owner: &'a str,
    /// ONNX value names of its inputs.
    ins: &'a [String],
    in_shapes: &'a [&'a [usize]],
    out_shape: &'a [usize],
}

impl Ctx<'_> {
    fn param(&self, suffix: &str) -> &Tensor {
        &self.model.params[&param_name(self.owner, suffix)]
    }

    fn param_name(&self, suffix: &str) -> String {
        param_name(self.owner, suffix)
    }

    /// An input's rank with the batch axis.
    fn rank(&self, i: usize) -> usize {
        self.in_shapes[i].len() + 1
    }

    /// A per-sample axis (negative counts from the end) as an axis of the batched tensor.
    fn axis(&self, axis: isize, rank: usize) -> Result<i64> {
        let a = resolve_axis(axis, rank).map_err(|e| Error::graph(self.name, e))?;
        Ok(a as i64 + 1)
    }
}

#[derive(Default)]
struct Writer {
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    /// Initializers already written (a tied node's parameters are written once).
    written: std::collections::HashSet<String>,
    /// The batch-size vector `[N]` computed from the input's shape, once.
    batch: Option<String>,
    /// The value nodes read as the model's input (after the normalization).
    input: String,
    /// Layers written with quantized weights (by node name).
    qdq: HashMap<String, qdq::QLayer>,
    /// Whether those layers are written as integer ops rather than in QDQ form.
    integer_ops: bool,
    /// Values already quantized to uint8 codes for integer ops, by the value's name.
    requantized: HashMap<String, String>,
    /// Each fake quantizer's f32 input (after its clip), by the quantizer's value.
    quantized_from: HashMap<String, String>,
}

pub(crate) fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::INT,
        i: Some(v),
        ..Default::default()
    }
}

pub(crate) fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::INTS,
        ints: v.to_vec(),
        ..Default::default()
    }
}

pub(crate) fn attr_float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::FLOAT,
        f: Some(v),
        ..Default::default()
    }
}

/// An f32 tensor as a `TensorProto` (little-endian raw data, as exporters write it).
pub(crate) fn f32_tensor(name: &str, shape: &[usize], data: &[f32]) -> TensorProto {
    TensorProto {
        dims: shape.iter().map(|&d| d as i64).collect(),
        data_type: data_type::FLOAT,
        name: name.into(),
        raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

pub(crate) fn i64_tensor(name: &str, shape: &[usize], data: &[i64]) -> TensorProto {
    TensorProto {
        dims: shape.iter().map(|&d| d as i64).collect(),
        data_type: data_type::INT64,
        name: name.into(),
        raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

fn usizes(v: &[usize]) -> Vec<i64> {
    v.iter().map(|&d| d as i64).collect()
}

impl Writer {
    fn node(&mut self, op: &str, name: &str, inputs: &[&str], output: &str, attribute: Vec<AttributeProto>) {
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            name: name.into(),
            op_type: op.into(),
            attribute,
            ..Default::default()
        });
    }

    fn init(&mut self, t: TensorProto) -> String {
        let name = t.name.clone();
        if self.written.insert(name.clone()) {
            self.inits.push(t);
        }
        name
    }

    fn scalar(&mut self, name: &str, v: f32) -> String {
        self.init(f32_tensor(name, &[], &[v]))
    }

    fn ints(&mut self, name: &str, v: &[i64]) -> String {
        self.init(i64_tensor(name, &[v.len()], v))
    }

    /// A parameter as an initializer under its PyTorch name.
    fn param(&mut self, ctx: &Ctx, suffix: &str) -> String {
        let t = ctx.param(suffix);
        self.init(f32_tensor(&ctx.param_name(suffix), t.shape(), t.data()))
    }

    /// The values a Linear or Conv2d reads as weight and bias: its parameters, or their
    /// dequantized int8 / int32 codes where the layer is written in QDQ form.
    fn weight_and_bias(&mut self, ctx: &Ctx, bias: bool) -> (String, Option<String>) {
        let Some(q) = self.qdq.remove(ctx.name) else {
            return (self.param(ctx, "weight"), bias.then(|| self.param(ctx, "bias")));
        };
        let shape = ctx.param("weight").shape().to_vec();
        let rows = q.scales.len();
        let w = ctx.param_name("weight");
        let codes = TensorProto {
            dims: shape.iter().map(|&d| d as i64).collect(),
            data_type: data_type::INT8,
            name: format!("{w}_quantized"),
            raw_data: q.codes.iter().map(|&c| c as u8).collect(),
            ..Default::default()
        };
        let zero = TensorProto {
            dims: vec![rows as i64],
            data_type: data_type::INT8,
            name: format!("{w}_zero_point"),
            raw_data: vec![0; rows],
            ..Default::default()
        };
        let (c, z) = (self.init(codes), self.init(zero));
        let s = self.init(f32_tensor(&format!("{w}_scale"), &[rows], &q.scales));
        self.node(
            "DequantizeLinear",
            &format!("{w}/dequantize"),
            &[&c, &s, &z],
            &w,
            vec![attr_int("axis", 0)],
        );
        let b = q.bias.map(|bias| {
            let b = ctx.param_name("bias");
            let scales: Vec<f32> = q.scales.iter().map(|s| s * q.input_scale).collect();
            let codes: Vec<i32> = bias
                .iter()
                .zip(&scales)
                .map(|(v, s)| (v / s).round() as i32)
                .collect();
            let codes = TensorProto {
                dims: vec![rows as i64],
                data_type: data_type::INT32,
                name: format!("{b}_quantized"),
                raw_data: codes.iter().flat_map(|c| c.to_le_bytes()).collect(),
                ..Default::default()
            };
            let zero = TensorProto {
                dims: vec![rows as i64],
                data_type: data_type::INT32,
                name: format!("{b}_zero_point"),
                raw_data: vec![0; 4 * rows],
                ..Default::default()
            };
            let (c, z) = (self.init(codes), self.init(zero));
            let s = self.init(f32_tensor(&format!("{b}_scale"), &[rows], &scales));
            self.node(
                "DequantizeLinear",
                &format!("{b}/dequantize"),
                &[&c, &s, &z],
                &b,
                vec![attr_int("axis", 0)],
            );
            b
        });
        (w, b)
    }

    /// `[N]`: the batch size, from the input's shape.
    fn batch(&mut self) -> String {
        if let Some(b) = &self.batch {
            return b.clone();
        }
        let (start, end) = (self.ints("batch/start", &[0]), self.ints("batch/end", &[1]));
        let input = self.input.clone();
        self.node("Shape", "batch/shape", &[&input], "batch/shape", vec![]);
        self.node(
            "Slice",
            "batch/slice",
            &["batch/shape", &start, &end],
            "batch",
            vec![],
        );
        self.batch = Some("batch".into());
        "batch".into()
    }

    /// `x W^T + b` for `x` of any rank: Gemm on rows, MatMul with the transposed weight (a
    /// constant Transpose, folded by runtimes) and Add elsewhere.
    fn linear(&mut self, ctx: &Ctx, w: &str, b: Option<&str>) {
        let x = ctx.ins[0].as_str();
        if ctx.rank(0) == 2 {
            let mut ins = vec![x, w];
            ins.extend(b);
            self.node("Gemm", ctx.name, &ins, ctx.name, vec![attr_int("transB", 1)]);
            return;
        }
        let wt = format!("{}/weight_t", ctx.name);
        self.node("Transpose", &wt, &[w], &wt, vec![attr_ints("perm", &[1, 0])]);
        match b {
            None => self.node("MatMul", ctx.name, &[x, &wt], ctx.name, vec![]),
            Some(b) => {
                let mm = format!("{}/matmul", ctx.name);
                self.node("MatMul", &mm, &[x, &wt], &mm, vec![]);
                self.node("Add", ctx.name, &[&mm, b], ctx.name, vec![]);
            }
        }
    }

    /// A broadcasting binary op; the input of lower rank gets size-1 axes after the batch, so
    /// ONNX's right-aligned broadcasting pairs the same axes pare's per-sample one does.
    fn broadcasting(&mut self, ctx: &Ctx, op: &str) {
        let (ra, rb) = (ctx.rank(0), ctx.rank(1));
        let mut ins = [ctx.ins[0].clone(), ctx.ins[1].clone()];
        if ra != rb {
            let (low, gap) = if ra < rb { (0, rb - ra) } else { (1, ra - rb) };
            let axes_name = format!("{}/axes{low}", ctx.name);
            let axes = self.ints(&axes_name, &(1..=gap as i64).collect::<Vec<_>>());
            let out = format!("{}/unsqueeze{low}", ctx.name);
            self.node("Unsqueeze", &out, &[&ins[low], &axes], &out, vec![]);
            ins[low] = out;
        }
        self.node(op, ctx.name, &[&ins[0], &ins[1]], ctx.name, vec![]);
    }

    fn reshape(&mut self, name: &str, x: &str, per_sample: &[usize], out: &str) {
        let mut shape = vec![0i64];
        shape.extend(usizes(per_sample));
        let s = self.ints(&format!("{name}/shape"), &shape);
        self.node("Reshape", name, &[x, &s], out, vec![]);
    }

    fn transpose(&mut self, name: &str, x: &str, per_sample_perm: &[usize], out: &str) {
        let mut perm = vec![0i64];
        perm.extend(per_sample_perm.iter().map(|&p| p as i64 + 1));
        self.node("Transpose", name, &[x], out, vec![attr_ints("perm", &perm)]);
    }

    fn clip(&mut self, name: &str, x: &str, min: f32, max: f32) {
        let lo = self.scalar(&format!("{name}/min"), min);
        let hi = self.scalar(&format!("{name}/max"), max);
        self.node("Clip", name, &[x, &lo, &hi], name, vec![]);
    }
}
