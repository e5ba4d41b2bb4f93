//! Exported ONNX files run in another ONNX runtime, tract (a dev-dependency): every zoo model,
//! a per-channel input normalization, a structured-pruned ResNet-20 with BatchNorm folded, a
//! QDQ int8 ResNet-20, and integer-op exports give pare's outputs. bench/onnx_zoo.sh and bench/onnx_qdq.sh run the same kinds of file in onnxruntime.

mod common;

use common::{argmax, perturb_batch_norms, zoo_for_export};
use pare::ir::{Model, Tensor};
use pare::quant::ActScope;
use pare::zoo::catalog;
use rand::{Rng, SeedableRng};
use tract_onnx::prelude::{tvec, DatumExt, Framework, InferenceModelExt, IntoRunnable, IntoTValue};

fn random_batch(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let len = shape.iter().product();
    Tensor::from_vec(
        shape.to_vec(),
        (0..len).map(|_| rng.random_range(0.0..1.0)).collect(),
    )
}

/// `bytes` (an ONNX file) run by tract on `x`: every graph output, in order.
fn run_in_tract(bytes: &[u8], x: &Tensor, what: &str) -> Vec<Tensor> {
    let plan = tract_onnx::onnx()
        .model_for_read(&mut &bytes[..])
        .and_then(|m| m.with_input_fact(0, f32::fact(x.shape()).into()))
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .unwrap_or_else(|e| panic!("{what}: tract refuses the file: {e:?}"));
    let input = tract_onnx::prelude::Tensor::from_shape(x.shape(), x.data()).unwrap();
    let outputs = plan
        .run(tvec!(input.into_tvalue()))
        .unwrap_or_else(|e| panic!("{what}: tract fails to run it: {e:?}"));
    outputs
        .iter()
        .map(|o| {
            let a = o.to_plain_array_view::<f32>().unwrap();
            Tensor::from_vec(a.shape().to_vec(), a.iter().copied().collect())
        })
        .collect()
}

/// `x` as pare's engines take it: normalized as `model`'s input says (the file does it itself).
fn normalized(model: &Model, x: &Tensor) -> Tensor {
    let mut y = x.clone();
    model
        .graph
        .input
        .normalize
        .apply(&model.graph.input.shape, y.data_mut());
    y
}

/// tract's outputs on the raw `x` against pare's native engine, within `tol` of each output's
/// largest value.
fn assert_tract_agrees(model: &Model, bytes: &[u8], x: &Tensor, tol: f32, what: &str) {
    let ours = pare::native::compile(model)
        .unwrap()
        .run_all(&normalized(model, x))
        .unwrap();
    let theirs = run_in_tract(bytes, x, what);
    assert_eq!(ours.len(), theirs.len(), "{what}: outputs");
    for (k, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        assert_eq!(a.shape(), b.shape(), "{what}: output {k}");
        let scale = a.data().iter().fold(1f32, |m, v| m.max(v.abs()));
        let d = a.max_abs_diff(b);
        assert!(
            d <= tol * scale,
            "{what}: output {k} differs by {d} (scale {scale})"
        );
    }
}

#[test]
fn every_exported_zoo_model_gives_pares_outputs_in_tract() {
    for zm in catalog() {
        let model = zoo_for_export(&zm, 3);
        let bytes = pare::onnx::encode(&model).unwrap();
        let x = random_batch(&[3, 1, 28, 28], 1);
        assert_tract_agrees(&model, &bytes, &x, 1e-5, &zm.label());
    }
}

/// An RGB model with torchvision's per-channel input normalization: the file normalizes its
/// raw input itself, channel by channel, as pare does.
#[test]
fn a_per_channel_normalization_gives_pares_outputs_in_tract() {
    let model = common::rgb_model_imagenet_normalized();
    let bytes = pare::onnx::encode(&model).unwrap();
    assert_tract_agrees(
        &model,
        &bytes,
        &random_batch(&[2, 3, 8, 8], 4),
        1e-5,
        "per-channel",
    );
}

/// Structured pruning, BatchNorm folded: the physically smaller file runs in tract.
#[test]
fn a_pruned_resnet_with_batch_norm_folded_gives_pares_outputs_in_tract() {
    use pare::prune::importance::Norm;
    use pare::prune::{Amount, Scope, Selection};
    let mut m = common::zoo("resnet20");
    perturb_batch_norms(&mut m);
    let sel = Selection {
        scope: Scope::PerLayer,
        amount: Amount::Ratio(0.5),
        per_layer: Default::default(),
        exclude: vec![],
        round_to: 8,
    };
    let (pruned, _) = pare::prune::structured(&m, &Norm { p: 1 }, &sel).unwrap();
    let folded = pare::fuse::fold_batch_norm(&pruned).unwrap();
    assert!(folded.num_params() < m.num_params() / 2);
    let bytes = pare::onnx::encode(&folded).unwrap();
    let x = random_batch(&[4, 1, 28, 28], 2);
    assert_tract_agrees(&pruned, &bytes, &x, 1e-5, "pruned resnet20");
}

/// QDQ export of a ResNet-20 quantized in graph scope (every conv between 8-bit quantizers,
/// residual Adds too): tract runs the int8 file and gives pare's int8 engine's outputs up to
/// one step of a quantizer's rounding, and its predictions.
#[test]
fn a_qdq_resnet_gives_pares_int8_outputs_in_tract() {
    let q = common::quantized(&common::zoo("resnet20"), 8, &[1, 28, 28], 2, ActScope::Graph);
    let proto = pare::onnx::to_onnx_with(
        &q,
        pare::onnx::Options {
            int8: pare::onnx::Int8Form::Qdq,
        },
    )
    .unwrap();
    let weights_int8 = proto
        .graph
        .as_ref()
        .unwrap()
        .initializer
        .iter()
        .filter(|t| t.name.ends_with(".weight_quantized"))
        .count();
    assert_eq!(weights_int8, 21, "every convolution with int8 weights");
    let bytes = prost::Message::encode_to_vec(&proto);
    let x = random_batch(&[6, 1, 28, 28], 3);
    assert_tract_agrees(&q, &bytes, &x, 2e-2, "qdq resnet20");
    let ours = pare::native::infer(&q, &normalized(&q, &x)).unwrap();
    assert_eq!(argmax(&run_in_tract(&bytes, &x, "qdq")[0]), argmax(&ours));
}

/// Integer-op export (ConvInteger / MatMulInteger on uint8 codes, the int32 sums scaled back
/// to f32): tract gives pare's int8 engine's outputs up to a quantizer's rounding step, and its
/// predictions, with asymmetric and symmetric input quantizers, on convolutions and Linear
/// layers (on any rank: the ViT's MLPs).
#[test]
fn integer_op_exports_give_pares_int8_outputs_in_tract() {
    use pare::quant::{ActQuant, Observer};
    for (name, symmetric, convs, matmuls) in [
        ("resnet20", false, 21, 0),
        ("lenet300", true, 0, 2),
        ("vit", false, 0, 4),
    ] {
        let act = ActQuant {
            bits: 8,
            symmetric,
            observer: Observer::MinMax,
            scope: ActScope::Graph,
        };
        let q = common::quantized_with(&common::zoo(name), 8, &[1, 28, 28], 2, act);
        let options = pare::onnx::Options {
            int8: pare::onnx::Int8Form::IntegerOps,
        };
        let proto = pare::onnx::to_onnx_with(&q, options).unwrap();
        let count = |op: &str| {
            proto
                .graph
                .as_ref()
                .unwrap()
                .node
                .iter()
                .filter(|n| n.op_type == op)
                .count()
        };
        assert_eq!(
            (count("ConvInteger"), count("MatMulInteger")),
            (convs, matmuls),
            "{name}"
        );
        let bytes = prost::Message::encode_to_vec(&proto);
        let x = random_batch(&[6, 1, 28, 28], 3);
        assert_tract_agrees(&q, &bytes, &x, 2e-2, name);
        let ours = pare::native::infer(&q, &normalized(&q, &x)).unwrap();
        assert_eq!(
            argmax(&run_in_tract(&bytes, &x, name)[0]),
            argmax(&ours),
            "{name}"
        );
    }
}

/// Pools in floor and ceil mode (partial last windows on both axes), with and without the
/// padding in the average's divisor: tract reads the ONNX attributes pare writes and computes
/// the same windows. A ceil-mode window that would start in the padding, which ONNX runtimes
/// keep and pare drops, is refused at export.
#[test]
fn ceil_mode_pools_give_pares_outputs_in_tract() {
    use pare::ir::graph::ops::{avg_pool2d, max_pool2d};
    use pare::ir::graph::GraphBuilder;
    for ceil_mode in [false, true] {
        for count_include_pad in [false, true] {
            let mut b = GraphBuilder::new(vec![3, 11, 8]);
            // [3, 11, 8] -> max -> [3, 6, 5] (floor: [3, 6, 4]) -> avg -> [3, 4, 3] (floor: [3, 3, 3])
            b.then("max", max_pool2d(3, 2, 1, ceil_mode));
            b.then("avg", avg_pool2d(3, 2, 1, count_include_pad, ceil_mode));
            let m = Model::init(b.finish().unwrap(), 1).unwrap();
            let what = format!("ceil {ceil_mode}, count_include_pad {count_include_pad}");
            let bytes = pare::onnx::encode(&m).unwrap();
            assert_tract_agrees(&m, &bytes, &random_batch(&[2, 3, 11, 8], 5), 1e-6, &what);
            let back = pare::onnx::from_onnx(
                &pare::onnx::decode(&bytes, std::path::Path::new("p.onnx")).unwrap(),
                std::path::Path::new("p.onnx"),
            )
            .unwrap();
            assert_eq!(back.graph.nodes[0].op, m.graph.nodes[0].op, "{what}");
            assert_eq!(back.graph.nodes[1].op, m.graph.nodes[1].op, "{what}");
        }
    }
    let mut b = GraphBuilder::new(vec![3, 5, 6]);
    b.then("pool", max_pool2d(2, 2, 1, true));
    let m = Model::init(b.finish().unwrap(), 1).unwrap();
    let e = pare::onnx::encode(&m).unwrap_err().to_string();
    assert!(
        e.contains("pool") && e.contains("would start in the padding"),
        "{e}"
    );
}
