//! ONNX import of files pare did not write and of bad ones: unsupported ops listed at once,
//! opsets, damaged files and sizes past the caps refused naming the node, tensor or input;
//! ONNX's Sign and 1-D convolutions and pools computing their definitions.

mod common;

use std::path::Path;

use common::zoo_for_export;
use pare::ir::graph::GraphBuilder;
use pare::ir::op::Op;
use pare::ir::op::Scale;
use pare::ir::{Model, Tensor};
use pare::onnx::proto::{self, ModelProto};
use pare::zoo::ZooModel;
use prost::Message;
use rand::{Rng, SeedableRng};

fn lenet_proto() -> ModelProto {
    let zm = ZooModel::parse("lenet5", None, 0.0).unwrap();
    pare::onnx::to_onnx(&zm.init(zm.build(&[1, 28, 28], 10).unwrap(), 0).unwrap()).unwrap()
}

fn import_err(p: &ModelProto) -> String {
    pare::onnx::from_onnx(p, Path::new("their.onnx"))
        .unwrap_err()
        .to_string()
}

#[test]
fn every_unsupported_op_is_listed_at_once() {
    let mut p = lenet_proto();
    let g = p.graph.as_mut().unwrap();
    g.node[1].op_type = "Celu".into();
    g.node[3].op_type = "NonMaxSuppression".into();
    g.node[4].domain = "com.microsoft".into();
    let e = import_err(&p);
    assert!(
        e.starts_with("their.onnx: ONNX: 3 node(s) of unsupported ops"),
        "{e}"
    );
    for part in ["op Celu", "op NonMaxSuppression", "of domain 'com.microsoft'"] {
        assert!(e.contains(part), "{part} missing from: {e}");
    }
}

/// Opsets 11 and 12: read when every op means what it means in opset 13 (LeNet-5: Conv,
/// MaxPool, Gemm, Relu, Flatten); a file with an op that changed (the ViT's Softmax, Squeeze)
/// is refused, listing each such node.
#[test]
fn opset_11_files_import_unless_an_op_changed_meaning() {
    let mut p = lenet_proto();
    p.opset_import[0].version = 11;
    let m = pare::onnx::from_onnx(&p, Path::new("old.onnx")).unwrap();
    let mut q = lenet_proto();
    let back = pare::onnx::from_onnx(&q, Path::new("new.onnx")).unwrap();
    assert_eq!(m.graph, back.graph);
    q = pare::onnx::to_onnx(&zoo_for_export(&ZooModel::Vit, 0)).unwrap();
    q.opset_import[0].version = 12;
    let e = import_err(&q);
    assert!(
        e.contains("opset 12: Softmax, Split, Squeeze, Unsqueeze changed meaning"),
        "{e}"
    );
    let softmaxes = q
        .graph
        .as_ref()
        .unwrap()
        .node
        .iter()
        .filter(|n| n.op_type == "Softmax")
        .count();
    assert!(
        softmaxes > 0 && e.matches("op Softmax").count() == softmaxes,
        "{e}"
    );
}

#[test]
fn bad_files_name_what_is_wrong() {
    let bytes = lenet_proto().encode_to_vec();
    let e = pare::onnx::decode(&bytes[..bytes.len() / 2], Path::new("cut.onnx"))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("cut.onnx: ONNX: not a valid ONNX protobuf"), "{e}");

    let mut p = lenet_proto();
    let init = &mut p.graph.as_mut().unwrap().initializer[0];
    let name = init.name.clone();
    init.raw_data.truncate(init.raw_data.len() - 8);
    let e = import_err(&p);
    assert!(
        e.contains(&format!("initializer '{name}'")) && e.contains("need"),
        "{e}"
    );

    let mut p = lenet_proto();
    p.opset_import[0].version = 9;
    assert!(import_err(&p).contains("opset 9: pare imports opset 11 and newer"));

    let mut p = lenet_proto();
    let input = &mut p.graph.as_mut().unwrap().input[0];
    let Some(proto::TypeValue::TensorType(t)) = input.r#type.as_mut().unwrap().value.as_mut() else {
        panic!()
    };
    t.shape.as_mut().unwrap().dim[2].value = Some(proto::DimValue::Param("H".into()));
    let e = import_err(&p);
    assert!(
        e.contains("input 'input': axis 2 is the symbolic size 'H'"),
        "{e}"
    );

    // An attribute pare cannot honour: the node is named (what reads it is not reported again).
    let mut p = lenet_proto();
    let g = p.graph.as_mut().unwrap();
    for n in g.node.iter_mut().filter(|n| n.op_type == "Conv") {
        let strides = n.attribute.iter_mut().find(|a| a.name == "strides").unwrap();
        strides.ints = vec![1, 2, 3];
    }
    let e = import_err(&p);
    assert!(
        e.contains("1 node(s) cannot be imported:\n  node 'conv1' (Conv): strides [1, 2, 3]"),
        "{e}"
    );
}

/// Sizes a file declares (an input of 2^80 elements per sample, a reshape to 2^90) are refused
/// against pare's element cap before any product of them is taken.
#[test]
fn shapes_past_the_element_cap_are_refused() {
    let mut p = lenet_proto();
    let input = &mut p.graph.as_mut().unwrap().input[0];
    let Some(proto::TypeValue::TensorType(t)) = input.r#type.as_mut().unwrap().value.as_mut() else {
        panic!()
    };
    for d in &mut t.shape.as_mut().unwrap().dim[2..] {
        d.value = Some(proto::DimValue::Value(1 << 40));
    }
    let e = import_err(&p);
    assert!(
        e.contains("input 'input'") && e.contains("holds more than"),
        "{e}"
    );

    let mut p = pare::onnx::to_onnx(&zoo_for_export(&ZooModel::Vit, 1)).unwrap();
    let g = p.graph.as_mut().unwrap();
    let target = g.node.iter().find(|n| n.op_type == "Reshape").unwrap().input[1].clone();
    let t = g.initializer.iter_mut().find(|t| t.name == target).unwrap();
    let huge: [i64; 4] = [-1, 1 << 30, 1 << 30, 1 << 30];
    t.dims = vec![4];
    t.raw_data = huge.iter().flat_map(|v| v.to_le_bytes()).collect();
    let e = import_err(&p);
    assert!(e.contains("holds more than"), "{e}");

    // Window sizes and pads past any value's size.
    for (attr, v) in [
        ("kernel_shape", vec![1i64 << 40, 2]),
        ("pads", vec![0, 0, 1 << 62, 0]),
    ] {
        let mut p = lenet_proto();
        let g = p.graph.as_mut().unwrap();
        let pool = g.node.iter_mut().find(|n| n.op_type == "MaxPool").unwrap();
        match pool.attribute.iter_mut().find(|a| a.name == attr) {
            Some(a) => a.ints = v.clone(),
            None => pool.attribute.push(proto::AttributeProto {
                name: attr.into(),
                r#type: proto::attribute_type::INTS,
                ints: v.clone(),
                ..Default::default()
            }),
        }
        let e = import_err(&p);
        assert!(e.contains(attr) && e.contains("at most"), "{attr}: {e}");
    }
}

/// A node with fewer inputs than its op reads is refused naming a node, never a panic, for every
/// node of an exported ViT and of a normalized LeNet-5 (every op kind pare writes but the QDQ
/// pair), with one input and with none (a Concat of one input is a valid file).
#[test]
fn a_node_missing_inputs_is_refused() {
    for model in [
        zoo_for_export(&ZooModel::Vit, 1),
        zoo_for_export(&ZooModel::parse("lenet5", None, 0.0).unwrap(), 1),
    ] {
        let full = pare::onnx::to_onnx(&model).unwrap();
        let nodes = full.graph.as_ref().unwrap().node.len();
        for i in 0..nodes {
            for keep in [0, 1] {
                let mut p = full.clone();
                let node = &mut p.graph.as_mut().unwrap().node[i];
                if node.input.len() <= keep {
                    continue;
                }
                node.input.truncate(keep);
                let name = node.name.clone();
                if let Err(e) = pare::onnx::from_onnx(&p, Path::new("their.onnx")) {
                    let e = e.to_string();
                    assert!(e.contains("node '"), "{name} with {keep} inputs: {e}");
                }
            }
        }
    }
}

/// ONNX's Sign (0 at 0, as at -0) imports as `(sign(x) - sign(-x)) / 2` of pare's sign (+1 at
/// 0); pare's sign, written as `Where(x >= 0, 1, -1)`, reads back as itself; other comparisons
/// and choices are refused, naming the node.
#[test]
fn onnx_sign_is_zero_at_zero_and_pares_sign_reads_back() {
    let mut b = GraphBuilder::new(vec![5]);
    b.then("id", Op::Scale(Scale { factor: 1.0 }));
    b.then("sign", Op::Sign);
    let model = Model::init(b.finish().unwrap(), 0).unwrap();
    let x = Tensor::from_vec(vec![1, 5], vec![-2.0, -0.0, 0.0, 3.0, 0.5]);
    let back = pare::onnx::from_onnx(&pare::onnx::to_onnx(&model).unwrap(), Path::new("m.onnx")).unwrap();
    assert_eq!(
        pare::native::infer(&back, &x).unwrap().data(),
        [-1.0, 1.0, 1.0, 1.0, 1.0]
    );

    // The GreaterOrEqual and Where replaced by ONNX's Sign.
    let mut p = pare::onnx::to_onnx(&model).unwrap();
    let g = p.graph.as_mut().unwrap();
    let ge = g.node.iter().position(|n| n.op_type == "GreaterOrEqual").unwrap();
    let (from, to) = (g.node[ge].input[0].clone(), g.node[ge + 1].output[0].clone());
    g.node.truncate(ge);
    g.node.push(proto::NodeProto {
        op_type: "Sign".into(),
        name: "onnx_sign".into(),
        input: vec![from],
        output: vec![to],
        ..Default::default()
    });
    let m = pare::onnx::from_onnx(&p, Path::new("sign.onnx")).unwrap();
    let want = [-1.0, 0.0, 0.0, 1.0, 1.0];
    assert_eq!(pare::native::infer(&m, &x).unwrap().data(), want);
    let e = pare::exec::infer(&m, &x, &pare::ir::Reparams::new(), &[]).unwrap();
    assert_eq!(e.output.data(), want);

    let mut p = pare::onnx::to_onnx(&model).unwrap();
    let g = p.graph.as_mut().unwrap();
    let zero = g
        .initializer
        .iter_mut()
        .find(|t| t.name.contains("zero"))
        .unwrap();
    zero.raw_data = 1.0f32.to_le_bytes().to_vec();
    zero.float_data.clear();
    let e = import_err(&p);
    assert!(
        e.contains("GreaterOrEqual") && e.contains("bound other than 0"),
        "{e}"
    );
}

/// A 1-D convolution and 1-D pools (`[C, L]` per sample, as torch's Conv1d / MaxPool1d /
/// AvgPool1d export them) import as the 2-D ops over `[C, 1, L]` and compute the 1-D
/// definitions: asymmetric pads, strides, dilation and groups included.
#[test]
fn one_dimensional_convolutions_and_pools_import() {
    use proto::{
        attribute_type, data_type, AttributeProto, DimValue, Dimension, GraphProto, NodeProto,
        OperatorSetIdProto, TensorProto, TensorShapeProto, TensorTypeProto, TypeProto, TypeValue,
        ValueInfoProto,
    };
    let info = |name: &str, dims: &[i64]| ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(TypeValue::TensorType(TensorTypeProto {
                elem_type: data_type::FLOAT,
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| Dimension {
                            value: Some(DimValue::Value(d)),
                        })
                        .collect(),
                }),
            })),
        }),
        ..Default::default()
    };
    let ints = |name: &str, v: &[i64]| AttributeProto {
        name: name.into(),
        r#type: attribute_type::INTS,
        ints: v.to_vec(),
        ..Default::default()
    };
    let node = |op: &str, ins: &[&str], out: &str, attribute: Vec<AttributeProto>| NodeProto {
        op_type: op.into(),
        name: out.into(),
        input: ins.iter().map(|s| s.to_string()).collect(),
        output: vec![out.into()],
        attribute,
        ..Default::default()
    };
    let (c, l, o, k, groups) = (4usize, 11usize, 6usize, 3usize, 2usize);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let mut draw = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-1.0..1.0)).collect() };
    let (w, b) = (draw(o * (c / groups) * k), draw(o));
    let init = |name: &str, dims: &[usize], v: &[f32]| TensorProto {
        name: name.into(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: data_type::FLOAT,
        float_data: v.to_vec(),
        ..Default::default()
    };
    let graph = GraphProto {
        node: vec![
            node(
                "Conv",
                &["x", "w", "b"],
                "conv",
                vec![
                    ints("pads", &[2, 1]),
                    ints("strides", &[1]),
                    ints("dilations", &[2]),
                    AttributeProto {
                        name: "group".into(),
                        r#type: attribute_type::INT,
                        i: Some(groups as i64),
                        ..Default::default()
                    },
                ],
            ),
            node(
                "MaxPool",
                &["conv"],
                "max",
                vec![ints("kernel_shape", &[3]), ints("strides", &[2])],
            ),
            node(
                "AveragePool",
                &["max"],
                "y",
                vec![ints("kernel_shape", &[2]), ints("pads", &[1, 0])],
            ),
        ],
        initializer: vec![init("w", &[o, c / groups, k], &w), init("b", &[o], &b)],
        input: vec![info("x", &[1, c as i64, l as i64])],
        output: vec![info("y", &[1, o as i64, 4])],
        ..Default::default()
    };
    let p = proto::ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        graph: Some(graph),
        ..Default::default()
    };
    let m = pare::onnx::from_onnx(&p, Path::new("conv1d.onnx")).unwrap();
    let x = draw(2 * c * l);
    let xt = Tensor::from_vec(vec![2, c, l], x.clone());
    // The 1-D definitions: conv (pads 2 and 1, dilation 2, 2 groups) -> max (3, stride 2) ->
    // average (2, left pad 1, counted out of the divisor).
    let conv_len = l + 3 - 2 * (k - 1);
    let mut want = Vec::new();
    for s in 0..2 {
        for f in 0..o {
            let g = f / (o / groups);
            let conv: Vec<f32> = (0..conv_len)
                .map(|t| {
                    let mut acc = b[f];
                    for ci in 0..c / groups {
                        for j in 0..k {
                            let pos = (t + 2 * j) as isize - 2;
                            if (0..l as isize).contains(&pos) {
                                acc += w[(f * (c / groups) + ci) * k + j]
                                    * x[(s * c + g * (c / groups) + ci) * l + pos as usize];
                            }
                        }
                    }
                    acc
                })
                .collect();
            let max: Vec<f32> = (0..(conv_len - 3) / 2 + 1)
                .map(|t| conv[2 * t..2 * t + 3].iter().fold(f32::MIN, |a, &v| a.max(v)))
                .collect();
            want.extend((0..max.len()).map(|t| {
                if t == 0 {
                    max[0]
                } else {
                    (max[t - 1] + max[t]) / 2.0
                }
            }));
        }
    }
    let got = pare::native::infer(&m, &xt).unwrap();
    assert_eq!(got.shape(), [2, o, want.len() / (2 * o)]);
    let d = got
        .data()
        .iter()
        .zip(&want)
        .fold(0f32, |a, (g, w)| a.max((g - w).abs()));
    assert!(d < 1e-5, "{d}");
    let e = pare::exec::infer(&m, &xt, &pare::ir::Reparams::new(), &[])
        .unwrap()
        .output;
    assert!(e.max_abs_diff(&got) < 1e-5);
}
