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
mod qdq;

use std::collections::HashMap;

use super::proto::{
    attribute_type, data_type, AttributeProto, DimValue, Dimension, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, TensorProto, TensorShapeProto, TensorTypeProto, TypeProto, TypeValue, ValueInfoProto,
};
use crate::error::{Error, Result};
use crate::ir::graph::{DType, Normalize, INPUT};
use crate::ir::op::{ceil_window_dropped, hashed_weight, param_name, resolve_axis, Op};
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
    /// The layers pare runs in int8 get int8 weights and a DequantizeLinear (QDQ form, see
    /// [`qdq`]); otherwise every weight is f32.
    pub qdq: bool,
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
    let folded = if options.qdq {
        let (layers, folded) = qdq::plan(model);
        w.qdq = layers;
        folded
    } else {
        Default::default()
    };
    let input_type = match graph.input.dtype {
        DType::F32 => data_type::FLOAT,
        DType::Index => data_type::INT64,
    };
    let mut names: HashMap<String, String> = HashMap::new();
    let input = if graph.input.normalize != Normalize::default() {
        let Normalize { mean, std } = graph.input.normalize;
        let m = w.scalar("input/mean", mean);
        let s = w.scalar("input/std", std);
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
            Op::Parameter { .. } => format!("{}/expanded", node.name),
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

    fn emit(&mut self, ctx: &Ctx, op: &Op) -> Result<()> {
        let (name, x) = (ctx.name, ctx.ins.first().map(String::as_str).unwrap_or(""));
        let sub = |s: &str| format!("{name}/{s}");
        match op {
            Op::Linear { bias, .. } => {
                let (w, b) = self.weight_and_bias(ctx, *bias);
                self.linear(ctx, &w, b.as_deref());
            }
            Op::HashedLinear {
                in_features,
                out_features,
                seed,
                bias,
                ..
            } => {
                // ONNX has no hashed layer: the virtual weight is written out dense.
                let dense = hashed_weight(*seed, *out_features, *in_features, ctx.param("weight").data());
                let w = self.init(f32_tensor(
                    &ctx.param_name("weight"),
                    &[*out_features, *in_features],
                    &dense,
                ));
                let b = bias.then(|| self.param(ctx, "bias"));
                self.linear(ctx, &w, b.as_deref());
            }
            Op::Conv2d {
                kernel_size,
                stride,
                padding,
                dilation,
                groups,
                bias,
                ..
            } => {
                let (w, b) = self.weight_and_bias(ctx, *bias);
                let mut ins = vec![x.to_string(), w];
                ins.extend(b);
                let ins: Vec<&str> = ins.iter().map(String::as_str).collect();
                let attrs = vec![
                    attr_ints("kernel_shape", &usizes(kernel_size)),
                    attr_ints("strides", &usizes(stride)),
                    attr_ints("pads", &usizes(&[padding[0], padding[1], padding[0], padding[1]])),
                    attr_ints("dilations", &usizes(dilation)),
                    attr_int("group", *groups as i64),
                ];
                self.node("Conv", name, &ins, name, attrs);
            }
            Op::BatchNorm { eps, momentum, .. } => {
                let ps: Vec<String> = ["weight", "bias", "running_mean", "running_var"]
                    .iter()
                    .map(|s| self.param(ctx, s))
                    .collect();
                let attrs = vec![
                    attr_float("epsilon", *eps as f32),
                    attr_float("momentum", 1.0 - *momentum as f32),
                ];
                self.node(
                    "BatchNormalization",
                    name,
                    &[x, &ps[0], &ps[1], &ps[2], &ps[3]],
                    name,
                    attrs,
                );
            }
            Op::LayerNorm { eps, .. } => {
                let (w, b) = (self.param(ctx, "weight"), self.param(ctx, "bias"));
                let attrs = vec![attr_int("axis", -1), attr_float("epsilon", *eps as f32)];
                self.node("LayerNormalization", name, &[x, &w, &b], name, attrs);
            }
            Op::Relu => self.node("Relu", name, &[x], name, vec![]),
            Op::Sigmoid => self.node("Sigmoid", name, &[x], name, vec![]),
            Op::Tanh => self.node("Tanh", name, &[x], name, vec![]),
            Op::HardSwish => self.node("HardSwish", name, &[x], name, vec![]),
            Op::Abs => self.node("Abs", name, &[x], name, vec![]),
            Op::Dropout { .. } | Op::Identity => self.node("Identity", name, &[x], name, vec![]),
            Op::Relu6 => self.clip(name, x, 0.0, 6.0),
            Op::Clip { min, max } => self.clip(name, x, *min, *max),
            Op::Gelu => {
                // 0.5 x (1 + erf(x / sqrt 2)): PyTorch's exact GELU as its exporter writes it.
                let (r2, one, half) = (
                    self.scalar(&sub("sqrt2"), std::f32::consts::SQRT_2),
                    self.scalar(&sub("one"), 1.0),
                    self.scalar(&sub("half"), 0.5),
                );
                let (d, e, a, m) = (sub("div"), sub("erf"), sub("add"), sub("mul"));
                self.node("Div", &d, &[x, &r2], &d, vec![]);
                self.node("Erf", &e, &[&d], &e, vec![]);
                self.node("Add", &a, &[&e, &one], &a, vec![]);
                self.node("Mul", &m, &[x, &a], &m, vec![]);
                self.node("Mul", name, &[&m, &half], name, vec![]);
            }
            Op::Silu => {
                let s = sub("sigmoid");
                self.node("Sigmoid", &s, &[x], &s, vec![]);
                self.node("Mul", name, &[x, &s], name, vec![]);
            }
            Op::Sign => {
                // pare's sign is +1 at 0 (BNN's), ONNX's Sign 0 there.
                let (zero, pos, neg) = (
                    self.scalar(&sub("zero"), 0.0),
                    self.scalar(&sub("pos"), 1.0),
                    self.scalar(&sub("neg"), -1.0),
                );
                let ge = sub("ge");
                self.node("GreaterOrEqual", &ge, &[x, &zero], &ge, vec![]);
                self.node("Where", name, &[&ge, &pos, &neg], name, vec![]);
            }
            Op::Scale { factor } => {
                let f = self.scalar(&sub("factor"), *factor as f32);
                self.node("Mul", name, &[x, &f], name, vec![]);
            }
            Op::MaxPool2d {
                kernel_size,
                stride,
                padding,
                ceil_mode,
            } => {
                portable_ceil(ctx, *ceil_mode, kernel_size, stride, padding)?;
                let attrs = vec![
                    attr_ints("kernel_shape", &usizes(kernel_size)),
                    attr_ints("strides", &usizes(stride)),
                    attr_ints("pads", &usizes(&[padding[0], padding[1], padding[0], padding[1]])),
                    attr_int("ceil_mode", *ceil_mode as i64),
                ];
                self.node("MaxPool", name, &[x], name, attrs);
            }
            Op::AvgPool2d {
                kernel_size,
                stride,
                padding,
                count_include_pad,
                ceil_mode,
            } => {
                portable_ceil(ctx, *ceil_mode, kernel_size, stride, padding)?;
                let attrs = vec![
                    attr_ints("kernel_shape", &usizes(kernel_size)),
                    attr_ints("strides", &usizes(stride)),
                    attr_ints("pads", &usizes(&[padding[0], padding[1], padding[0], padding[1]])),
                    attr_int("count_include_pad", *count_include_pad as i64),
                    attr_int("ceil_mode", *ceil_mode as i64),
                ];
                self.node("AveragePool", name, &[x], name, attrs);
            }
            Op::GlobalAvgPool => self.node("GlobalAveragePool", name, &[x], name, vec![]),
            Op::Flatten => self.node("Flatten", name, &[x], name, vec![attr_int("axis", 1)]),
            Op::Add => {
                let ins: Vec<&str> = ctx.ins.iter().map(String::as_str).collect();
                let op = if ins.len() == 2 { "Add" } else { "Sum" };
                self.node(op, name, &ins, name, vec![]);
            }
            Op::Mul => self.broadcasting(ctx, "Mul"),
            Op::Sub => self.broadcasting(ctx, "Sub"),
            Op::Div => self.broadcasting(ctx, "Div"),
            Op::MatMul => self.node("MatMul", name, &[x, &ctx.ins[1]], name, vec![]),
            Op::Concat { axis } => {
                let a = ctx.axis(*axis, ctx.out_shape.len())?;
                let ins: Vec<&str> = ctx.ins.iter().map(String::as_str).collect();
                self.node("Concat", name, &ins, name, vec![attr_int("axis", a)]);
            }
            Op::Softmax { axis } => {
                let a = ctx.axis(*axis, ctx.out_shape.len())?;
                self.node("Softmax", name, &[x], name, vec![attr_int("axis", a)]);
            }
            Op::Reshape { shape } => self.reshape(name, x, shape, name),
            Op::Transpose { perm } => self.transpose(name, x, perm, name),
            Op::Slice { axis, start, end } => {
                let a = ctx.axis(*axis, ctx.in_shapes[0].len())?;
                let (s, e, ax) = (
                    self.ints(&sub("starts"), &[*start as i64]),
                    self.ints(&sub("ends"), &[*end as i64]),
                    self.ints(&sub("axes"), &[a]),
                );
                self.node("Slice", name, &[x, &s, &e, &ax], name, vec![]);
            }
            Op::Select { axis, index } => {
                let a = ctx.axis(*axis, ctx.in_shapes[0].len())?;
                let i = self.init(i64_tensor(&sub("index"), &[], &[*index as i64]));
                self.node("Gather", name, &[x, &i], name, vec![attr_int("axis", a)]);
            }
            Op::Mean { axes, keepdim } => {
                let rank = ctx.in_shapes[0].len();
                let axes = axes
                    .iter()
                    .map(|&a| ctx.axis(a, rank))
                    .collect::<Result<Vec<_>>>()?;
                let attrs = vec![attr_ints("axes", &axes), attr_int("keepdims", *keepdim as i64)];
                self.node("ReduceMean", name, &[x], name, attrs);
            }
            Op::Pad { pads } => {
                let mut p = vec![0i64];
                p.extend(pads.iter().map(|q| q[0] as i64));
                p.push(0);
                p.extend(pads.iter().map(|q| q[1] as i64));
                let p = self.ints(&sub("pads"), &p);
                self.node("Pad", name, &[x, &p], name, vec![]);
            }
            Op::ChannelShuffle { groups } => {
                let [c, h, w] = ctx.in_shapes[0] else {
                    return Err(Error::graph(name, "channel_shuffle reads [C, H, W]"));
                };
                let (g, s, t) = (sub("groups"), sub("shuffle"), sub("shuffle_shape"));
                self.reshape(&g, x, &[*groups, c / groups, *h, *w], &g);
                self.transpose(&s, &g, &[1, 0, 2, 3], &s);
                self.reshape(&t, &s, &[*c, *h, *w], name);
            }
            Op::Parameter { shape } => {
                // Stored [1, ..shape]; expanded to the batch so it joins batched values anywhere.
                let p = self.param(ctx, "");
                let batch = self.batch();
                let rest = self.ints(&sub("shape"), &usizes(shape));
                let full = sub("expand_shape");
                self.node(
                    "Concat",
                    &full,
                    &[&batch, &rest],
                    &full,
                    vec![attr_int("axis", 0)],
                );
                let out = sub("expanded");
                self.node("Expand", name, &[&p, &full], &out, vec![]);
            }
            Op::Embedding { .. } => {
                let w = self.param(ctx, "weight");
                self.node("Gather", name, &[&w, x], name, vec![attr_int("axis", 0)]);
            }
            Op::Attention { dim, heads, .. } => self.attention(ctx, *dim, *heads, op.head_dim()),
            Op::FakeQuant { .. } => self.fake_quant(ctx, op)?,
        }
        Ok(())
    }

    fn clip(&mut self, name: &str, x: &str, min: f32, max: f32) {
        let lo = self.scalar(&format!("{name}/min"), min);
        let hi = self.scalar(&format!("{name}/max"), max);
        self.node("Clip", name, &[x, &lo, &hi], name, vec![]);
    }
}

/// A ceil-mode pool whose last window would start in the right padding has no portable ONNX
/// form: onnxruntime sizes its output one window larger than pare, PyTorch and tract do.
fn portable_ceil(ctx: &Ctx, ceil: bool, k: &[usize; 2], s: &[usize; 2], p: &[usize; 2]) -> Result<()> {
    let hw = &ctx.in_shapes[0][1..];
    if ceil && (0..2).any(|a| ceil_window_dropped(hw[a], k[a], s[a], p[a])) {
        return Err(Error::graph(
            ctx.name,
            format!(
                "ceil_mode on input {hw:?} (kernel {k:?}, stride {s:?}, padding {p:?}): the last window would start in the padding, which ONNX runtimes count and pare drops"
            ),
        ));
    }
    Ok(())
}
