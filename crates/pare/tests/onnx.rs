//! ONNX export and import: every zoo model and every op pare exports comes back from an ONNX
//! file computing the same outputs (files pare did not write, and bad files: `onnx_import.rs`).

mod common;

use pare::ir::op::{
    ChannelShuffle, Clip, Embedding, FakeQuant, LayerNorm, Linear, Mean, Pad, Reshape, Scale, Select, Slice,
    Softmax, Transpose,
};
use std::path::Path;

use common::{perturb_batch_norms, zoo_for_export};
use pare::ir::graph::ops::{avg_pool2d, max_pool2d};
use pare::ir::graph::{DType, GraphBuilder};
use pare::ir::op::Op;
use pare::ir::{Model, Tensor};
use pare::onnx::proto::{self, ModelProto};
use pare::zoo::{catalog, ZooModel};
use prost::Message;
use rand::{Rng, SeedableRng};

fn random_batch(shape: &[usize], n: usize, seed: u64) -> Tensor {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut full = vec![n];
    full.extend(shape);
    let len = full.iter().product();
    Tensor::from_vec(full, (0..len).map(|_| rng.random_range(0.0..1.0)).collect())
}

/// Export, encode, decode, import; the imported model's outputs beside the original's.
fn round_trip(model: &Model) -> Model {
    let bytes = pare::onnx::encode(model).unwrap();
    let proto = pare::onnx::decode(&bytes, Path::new("m.onnx")).unwrap();
    pare::onnx::from_onnx(&proto, Path::new("m.onnx")).unwrap()
}

fn assert_same_outputs(a: &Model, b: &Model, x: &Tensor, what: &str) {
    let ya = pare::native::compile(a).unwrap().run_all(x).unwrap();
    let yb = pare::native::compile(b).unwrap().run_all(x).unwrap();
    assert_eq!(ya.len(), yb.len(), "{what}: outputs");
    for (k, (ta, tb)) in ya.iter().zip(&yb).enumerate() {
        let na = a.graph.outputs()[k];
        assert_eq!(ta.shape(), tb.shape(), "{what}: {na}");
        let scale = ta.data().iter().fold(1f32, |m, v| m.max(v.abs()));
        let d = ta.max_abs_diff(tb);
        assert!(
            d <= 1e-5 * scale,
            "{what}: output {na} differs by {d} (scale {scale})"
        );
    }
}

#[test]
fn every_zoo_model_round_trips() {
    for zm in catalog() {
        let shape = [1, 28, 28];
        let model = zoo_for_export(&zm, 3);
        let back = round_trip(&model);
        assert_eq!(back.graph.input, model.graph.input, "{}", zm.label());
        assert_eq!(back.num_params(), model.num_params(), "{}", zm.label());
        if zm != ZooModel::Vit {
            // Same layers under the same names (ViT's attention comes back as standard ops).
            for (name, t) in &model.params {
                assert_eq!(back.params.get(name), Some(t), "{}: {name}", zm.label());
            }
        }
        assert_same_outputs(&model, &back, &random_batch(&shape, 3, 1), &zm.label());
    }
}

/// Every op kind pare exports, in one graph with two outputs.
#[test]
fn every_exported_op_round_trips() {
    let mut b = GraphBuilder::new(vec![3, 8, 8]);
    b.then(
        "pad",
        Op::Pad(Pad {
            pads: vec![[0, 0], [1, 0], [0, 1]],
            value: -0.5,
        }),
    );
    b.then("conv", pare::ir::graph::ops::conv(3, 8, 3, 1, 1, true));
    b.then("bn", pare::ir::graph::ops::bn(8));
    let a = b.then("hs", Op::HardSwish);
    let s = b.add("sig", Op::Sigmoid, &[&a]);
    let m = b.add(
        "gap",
        Op::Mean(Mean {
            axes: vec![1, 2],
            keepdim: true,
        }),
        &[&s],
    );
    let se = b.add("se", Op::Mul, &[&a, &m]);
    let t = b.add("tanh", Op::Tanh, &[&se]);
    let r6 = b.add("r6", Op::Relu6, &[&se]);
    let sum = b.add("sum", Op::Add, &[&t, &r6, &se]);
    b.then("avg", avg_pool2d(3, 2, 1, false, false));
    b.then("max", max_pool2d(2, 1, 1, false));
    b.then("shuffle", Op::ChannelShuffle(ChannelShuffle { groups: 2 }));
    b.then(
        "slice",
        Op::Slice(Slice {
            axis: 0,
            start: 1,
            end: 7,
        }),
    );
    b.then("silu", Op::Silu);
    b.then("clip", Op::Clip(Clip { min: -0.5, max: 2.0 }));
    b.then("flat", Op::Flatten);
    b.then(
        "fc",
        Op::Linear(Linear {
            in_features: 6 * 6 * 6,
            out_features: 24,
            bias: true,
        }),
    );
    b.then("gelu", Op::Gelu);
    b.then("rows", Op::Reshape(Reshape { shape: vec![4, 6] }));
    b.then("t", Op::Transpose(Transpose { perm: vec![1, 0] }));
    b.then("ln", Op::LayerNorm(LayerNorm { dim: 4, eps: 1e-5 }));
    let sm = b.then("sm", Op::Softmax(Softmax { axis: -1 }));
    let row = b.add("row", Op::Select(Select { axis: 0, index: 2 }), &[&sm]);
    let d = b.add("div", Op::Div, &[&sm, &row]);
    let sc = b.add("scale", Op::Scale(Scale { factor: 0.5 }), &[&d]);
    let er = b.add("erf", Op::Erf, &[&sc]);
    let ab = b.add("abs", Op::Abs, &[&er]);
    // Written as Where(x >= 0, 1, -1), read back as pare's sign (+1 at 0).
    let sg = b.add("sign", Op::Sign, &[&sc]);
    let signed = b.add("signed", Op::Mul, &[&ab, &sg]);
    let sb = b.add("sub", Op::Sub, &[&signed, &row]);
    let sbt = b.add("sbt", Op::Transpose(Transpose { perm: vec![1, 0] }), &[&sb]);
    let mm = b.add("mm", Op::MatMul, &[&sb, &sbt]);
    let _ = b.add("unused_by_main", Op::Identity, &[&sum]);
    b.add("flat2", Op::Flatten, &[&mm]);
    b.then(
        "fq",
        Op::FakeQuant(FakeQuant {
            bits: 8,
            symmetric: false,
            scale: 0.05,
            zero_point: 12,
        }),
    );
    b.then(
        "head",
        Op::Linear(Linear {
            in_features: 36,
            out_features: 3,
            bias: false,
        }),
    );
    b.extra_output("gap");
    let g = b.finish().unwrap();
    let mut model = Model::init(g, 5).unwrap();
    perturb_batch_norms(&mut model);
    let back = round_trip(&model);
    assert_eq!(back.graph.outputs(), model.graph.outputs());
    assert_same_outputs(&model, &back, &random_batch(&[3, 8, 8], 4, 2), "all ops");
}

/// A per-channel input normalization (torchvision's ImageNet statistics on an RGB input) is
/// written as Sub and Div by `[3, 1, 1]` constants and read back as the model's own; a file
/// that normalizes by `[1, 3, 1, 1]` constants, or by one shared mean and then per-channel
/// deviations, gives the same.
#[test]
fn per_channel_normalization_round_trips() {
    let model = common::rgb_model_imagenet_normalized();
    let back = round_trip(&model);
    assert_eq!(back.graph.input.normalize, model.graph.input.normalize);
    assert_eq!(back.graph.nodes.len(), model.graph.nodes.len());
    assert_same_outputs(&model, &back, &random_batch(&[3, 8, 8], 2, 3), "per-channel");

    // The same statistics written by hand as [1, 3, 1, 1] constants, or as a shared mean.
    let bytes = pare::onnx::encode(&model).unwrap();
    for (mean_shape, mean) in [
        (vec![1i64, 3, 1, 1], vec![0.485f32, 0.456, 0.406]),
        (vec![], vec![0.45]),
    ] {
        let mut p = ModelProto::decode(&bytes[..]).unwrap();
        let g = p.graph.as_mut().unwrap();
        for t in &mut g.initializer {
            let (shape, values) = match t.name.as_str() {
                "input/mean" => (mean_shape.clone(), mean.clone()),
                "input/std" => (vec![1, 3, 1, 1], vec![0.229, 0.224, 0.225]),
                _ => continue,
            };
            *t = proto::TensorProto {
                dims: shape,
                data_type: proto::data_type::FLOAT,
                name: t.name.clone(),
                raw_data: values.iter().flat_map(|v: &f32| v.to_le_bytes()).collect(),
                ..Default::default()
            };
        }
        let m = pare::onnx::from_onnx(&p, Path::new("m.onnx")).unwrap();
        let n = &m.graph.input.normalize;
        assert_eq!(n.std, [0.229, 0.224, 0.225]);
        assert_eq!(n.mean, if mean.len() == 1 { vec![0.45; 3] } else { mean });
        assert_eq!(m.graph.nodes.len(), model.graph.nodes.len());
    }
}

#[test]
fn index_inputs_and_embeddings_round_trip() {
    let mut b = GraphBuilder::new(vec![5]);
    b.input_dtype(DType::Index);
    b.then(
        "emb",
        Op::Embedding(Embedding {
            num_embeddings: 11,
            embedding_dim: 6,
        }),
    );
    b.then(
        "mean",
        Op::Mean(Mean {
            axes: vec![0],
            keepdim: false,
        }),
    );
    b.then(
        "fc",
        Op::Linear(Linear {
            in_features: 6,
            out_features: 2,
            bias: true,
        }),
    );
    let model = Model::init(b.finish().unwrap(), 1).unwrap();
    let back = round_trip(&model);
    let x = Tensor::from_vec(vec![2, 5], vec![0., 3., 10., 4., 4., 1., 2., 9., 7., 5.]);
    assert_same_outputs(&model, &back, &x, "embedding");
}

/// QDQ export: a layer between two 8-bit fake quantizers, weights on a per-channel grid, with a
/// BatchNorm and ReLU after it, gets int8 weights (the BatchNorm folded into the scales); the
/// file imports back to the same function (the bias rounded to int32 codes).
#[test]
fn qdq_export_writes_int8_weights() {
    let mut b = GraphBuilder::new(vec![2, 6, 6]);
    b.then(
        "q0",
        Op::FakeQuant(FakeQuant {
            bits: 8,
            symmetric: false,
            scale: 1.0 / 255.0,
            zero_point: 0,
        }),
    );
    b.then("conv", pare::ir::graph::ops::conv(2, 4, 3, 1, 1, true));
    b.then("bn", pare::ir::graph::ops::bn(4));
    b.then("relu", Op::Relu);
    b.then(
        "q1",
        Op::FakeQuant(FakeQuant {
            bits: 8,
            symmetric: false,
            scale: 0.02,
            zero_point: 0,
        }),
    );
    b.then("flat", Op::Flatten);
    b.then(
        "fc",
        Op::Linear(Linear {
            in_features: 144,
            out_features: 3,
            bias: true,
        }),
    );
    let mut model = Model::init(b.finish().unwrap(), 4).unwrap();
    perturb_batch_norms(&mut model);
    // Per-channel 8-bit weights: each row scale * integer codes up to 127.
    let w = model.params.get_mut("conv.weight").unwrap();
    for (r, row) in w.data_mut().chunks_mut(18).enumerate() {
        let s = 0.01 * (r + 1) as f32;
        for (k, v) in row.iter_mut().enumerate() {
            *v = s * ((k as i32 * 37 + r as i32 * 11) % 255 - 127) as f32;
        }
        row[0] = 127.0 * s;
    }
    let proto = pare::onnx::to_onnx_with(
        &model,
        pare::onnx::Options {
            int8: pare::onnx::Int8Form::Qdq,
        },
    )
    .unwrap();
    let g = proto.graph.as_ref().unwrap();
    let codes = g
        .initializer
        .iter()
        .find(|t| t.name == "conv.weight_quantized")
        .expect("int8 codes");
    assert_eq!(
        (codes.data_type, codes.raw_data.len()),
        (proto::data_type::INT8, 72)
    );
    assert!(
        g.node.iter().all(|n| n.op_type != "BatchNormalization"),
        "the BatchNorm is folded"
    );
    // fc's output is no quantizer's input: it stays f32.
    assert!(g
        .initializer
        .iter()
        .any(|t| t.name == "fc.weight" && t.data_type == proto::data_type::FLOAT));
    let back = pare::onnx::from_onnx(&proto, Path::new("q.onnx")).unwrap();
    let x = random_batch(&[2, 6, 6], 5, 3);
    let (ya, yb) = (
        pare::native::infer(&model, &x).unwrap(),
        pare::native::infer(&back, &x).unwrap(),
    );
    assert!(ya.max_abs_diff(&yb) < 1e-3, "{}", ya.max_abs_diff(&yb));
}

/// Models exported by `torch.onnx` (bench/torch_onnx_models.py at width 0.125: ResNet-18,
/// MobileNetV2 with depthwise convolutions and ReLU6, a net with squeeze-and-excitation blocks,
/// HardSigmoid and HardSwish; the last also from the dynamo exporter, with its weights in an
/// external data file): imported, they give onnxruntime's recorded outputs within 1e-4 in both
/// engines.
#[test]
fn torch_exported_models_give_onnxruntimes_outputs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/onnx");
    for name in ["resnet18", "mobilenetv2", "senet", "dynamo/senet"] {
        let model = pare::onnx::load(&root.join(format!("{name}.onnx"))).unwrap_or_else(|e| panic!("{e}"));
        let case = root.join(format!("{name}-test/test_data_set_0"));
        let read = |f: &str| {
            let p = case.join(f);
            pare::onnx::read_tensor(&std::fs::read(&p).unwrap(), &p).unwrap()
        };
        let (x, want) = (read("input_0.pb"), read("output_0.pb"));
        let native = pare::native::infer(&model, &x).unwrap();
        let train_engine = pare::exec::infer(&model, &x, &Default::default(), &[])
            .unwrap()
            .output;
        for (engine, got) in [("native", native), ("training", train_engine)] {
            let scale = want.data().iter().fold(1f32, |m, v| m.max(v.abs()));
            let d = got.max_abs_diff(&want);
            assert!(d <= 1e-4 * scale, "{name} ({engine} engine): {d}");
        }
    }
}

/// An imported ViT, whose attention is standard ops (one packed projection, a reshape into
/// `[tokens, 3, heads, head_dim]`, a transpose, three gathers, two products), has its heads
/// pruned like the zoo ViT's fused attention: each head's q, k and v rows of the projection go
/// together, and removing head 1 of every block from both gives the same outputs.
#[test]
fn an_imported_vits_heads_prune_like_the_zoo_vits() {
    use pare::prune::structured::remove_groups;
    use pare::prune::DepGraph;
    use std::collections::BTreeSet;
    let model = zoo_for_export(&ZooModel::Vit, 3);
    let back = round_trip(&model);
    let (d, db) = (DepGraph::build(&model).unwrap(), DepGraph::build(&back).unwrap());
    let mut heads = BTreeSet::new();
    let mut imported_heads = BTreeSet::new();
    for i in 0..4 {
        let fam = &d.families[d.family_of(&model, &format!("blocks.{i}.att")).unwrap()];
        let name = format!("blocks.{i}.att/in_proj_matmul");
        let imported = &db.families[db.family_of(&back, &name).unwrap()];
        assert_eq!(imported.producers.len(), 1, "{name}");
        assert_eq!(imported.groups.len(), 4, "{name}");
        heads.insert(fam.groups[1]);
        imported_heads.insert(imported.groups[1]);
    }
    let (pruned, _) = remove_groups(&model, &d, &heads).unwrap();
    let (pruned_back, s) = remove_groups(&back, &db, &imported_heads).unwrap();
    let rows: Vec<usize> = [16, 80, 144].iter().flat_map(|&r| r..r + 16).collect();
    assert_eq!(s.removed["blocks.0.att/in_proj_matmul"], rows);
    assert_eq!(
        pruned_back.params["blocks.0.att/in_proj_matmul.weight"].shape(),
        &[144, 64]
    );
    assert_eq!(pruned_back.num_params(), pruned.num_params());
    assert_same_outputs(&pruned, &pruned_back, &random_batch(&[1, 28, 28], 3, 2), "vit");
}
