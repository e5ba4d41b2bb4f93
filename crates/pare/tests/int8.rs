//! Integer kernels of the native engine: the u8 x i8 products on every CPU path against their
//! definition, the 7-bit grid detection, and quantized models (weights baked to 7 bits,
//! activations fake-quantized to 8) run on the integer kernels with the training engine's
//! results.

mod common;

use std::collections::BTreeMap;

use common::{argmax, max_diff, random, zoo};
use pare::exec::infer;
use pare::ir::graph::ops::conv;
use pare::ir::op::{Conv2d, FakeQuant, Linear};
use pare::ir::reparam::bake;
use pare::ir::{GraphBuilder, Model, Op, QParams, Reparams, Scheme, Tensor};
use pare::native::{int8_dot_reference, ActCodes, Int8Conv, Int8Matrix, Int8Path};
use pare::quant::{weight_reparams, ActScope};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// 8-bit activation codes of the range [-2, 3] (asymmetric, a zero point inside).
fn codes_8bit() -> (QParams, ActCodes) {
    let p = Scheme {
        bits: 8,
        symmetric: false,
    }
    .params(-2.0, 3.0);
    (p, ActCodes::new(p).unwrap())
}

#[test]
fn every_int8_path_equals_the_definition() {
    let (p, act) = codes_8bit();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let paths = Int8Path::available();
    // Codes every path takes (so that the paths can be compared bit for bit), then the whole
    // i8 range on the paths that take it (VNNI, portable).
    let common = paths.iter().map(|p| p.max_weight_code()).min().unwrap();
    for top in [common, 127] {
        let takers: Vec<Int8Path> = paths
            .iter()
            .copied()
            .filter(|p| p.max_weight_code() >= top)
            .collect();
        // Sizes off every multiple: rows vs the 8-row group and 16-row tile, width vs the
        // 4-byte step, samples vs the 4-row tile.
        for (rows, width, n) in [(1, 1, 1), (7, 5, 3), (17, 33, 5), (40, 300, 9), (64, 1024, 64)] {
            let q: Vec<i8> = (0..rows * width)
                .map(|_| rng.random_range(-top..=top) as i8)
                .collect();
            let scale: Vec<f32> = (0..rows).map(|_| rng.random_range(0.001..0.05)).collect();
            let bias: Vec<f32> = (0..rows).map(|_| rng.random_range(-1.0..1.0)).collect();
            let m = Int8Matrix::from_codes(&q, scale.clone(), rows, width);
            let x: Vec<f32> = (0..n * width).map(|_| rng.random_range(-2.5..3.5)).collect();
            let outs: Vec<(Int8Path, Vec<f32>)> = takers
                .iter()
                .map(|&path| (path, m.linear_path(path, act, &x, n, Some(&bias))))
                .collect();
            for s in 0..n {
                let u: Vec<u8> = x[s * width..(s + 1) * width]
                    .iter()
                    .map(|&v| (p.quantize(v) - p.qmin) as u8)
                    .collect();
                for r in 0..rows {
                    let qr = &q[r * width..(r + 1) * width];
                    let z = (p.zero_point - p.qmin) as i64;
                    let exact = int8_dot_reference(&u, qr) - z * qr.iter().map(|&v| v as i64).sum::<i64>();
                    let want = p.scale as f64 * scale[r] as f64 * exact as f64 + bias[r] as f64;
                    for (path, y) in &outs {
                        let got = y[s * rows + r] as f64;
                        assert!(
                            (got - want).abs() <= 1e-5 * want.abs().max(1.0),
                            "{path:?} codes to {top}, rows {rows} width {width} n {n} at ({s}, {r}): {got} vs {want}"
                        );
                    }
                }
            }
            // The integer sums are the same on every path, so the outputs are bit for bit.
            for (path, y) in &outs[1..] {
                assert_eq!(y, &outs[0].1, "{path:?} against {:?}", outs[0].0);
            }
        }
    }
}

#[test]
fn weights_on_an_integer_grid_are_found() {
    let w = random(vec![6, 50], 3, 0.3);
    let quantized = |bits: u32, per_channel: bool| {
        let mut m = Model::init(
            {
                let mut b = GraphBuilder::new(vec![50]);
                b.then("fc", pare::ir::graph::ops::linear(50, 6));
                b.finish().unwrap()
            },
            0,
        )
        .unwrap();
        m.params.insert("fc.weight".into(), w.clone());
        let bits = BTreeMap::from([("fc.weight".to_string(), bits)]);
        bake(&m, &weight_reparams(&m, &bits, per_channel, true, false)).params["fc.weight"].clone()
    };
    for (bits, per_channel) in [(7, true), (7, false), (4, true), (2, false), (6, true)] {
        let q = quantized(bits, per_channel);
        assert!(
            Int8Matrix::from_dense(q.data(), 6, 50).is_some(),
            "{bits} bits, per channel {per_channel}"
        );
    }
    // 8-bit codes reach 127: what VNNI sums exactly, beyond what AVX2's product takes without
    // saturating.
    assert_eq!(
        Int8Matrix::from_dense(quantized(8, true).data(), 6, 50).is_some(),
        Int8Path::best().max_weight_code() >= 127
    );
    assert!(Int8Matrix::from_dense(w.data(), 6, 50).is_none());
    assert!(
        Int8Matrix::from_dense(&[0.0; 8], 2, 4).is_some(),
        "zero rows are on every grid"
    );
}

/// `model` with 7-bit per-channel weights and 8-bit activations (inputs of Linear/Conv2d)
/// calibrated on `batches` random inputs of `shape`.
fn quantized(model: &Model, shape: &[usize], batches: usize) -> Model {
    common::quantized(model, 7, shape, batches, ActScope::Layers)
}

/// Graph scope on ResNet-20: both inputs of every residual Add are quantizers, a quantized
/// value is read only through its quantizer, the integer engine keeps the training engine's
/// predictions, and the QDQ export writes every convolution with int8 weights between
/// quantizers (the pattern onnxruntime runs as QLinearConv and QLinearAdd) and imports back
/// to the same predictions.
#[test]
fn graph_scope_keeps_the_residual_stream_quantized() {
    let m = common::quantized(&zoo("resnet20"), 7, &[1, 28, 28], 2, ActScope::Graph);
    let g = &m.graph;
    let is_quantizer = |n: &str| {
        g.node(n)
            .is_some_and(|n| matches!(n.op, Op::FakeQuant(FakeQuant { .. })))
    };
    let adds: Vec<_> = g.nodes.iter().filter(|n| n.op == Op::Add).collect();
    assert_eq!(adds.len(), 9);
    for add in adds {
        assert!(
            add.inputs.iter().all(|i| is_quantizer(i)),
            "{}: {:?}",
            add.name,
            add.inputs
        );
    }
    for q in g
        .nodes
        .iter()
        .filter(|n| matches!(n.op, Op::FakeQuant(FakeQuant { .. })))
    {
        let src = &q.inputs[0];
        let readers: Vec<&str> = g
            .consumers(src)
            .iter()
            .map(|&c| g.nodes[c].name.as_str())
            .collect();
        assert_eq!(readers, [q.name.as_str()], "{src} is read unquantized");
    }
    let x = random(vec![6, 1, 28, 28], 9, 1.5);
    let e = infer(&m, &x, &Reparams::new(), &[]).unwrap().output;
    let n = pare::native::compile(&m).unwrap().run(&x).unwrap();
    assert_eq!(argmax(&e), argmax(&n));

    let proto = pare::onnx::to_onnx_with(
        &m,
        pare::onnx::Options {
            int8: pare::onnx::Int8Form::Qdq,
        },
    )
    .unwrap();
    let pg = proto.graph.as_ref().unwrap();
    let convs = g
        .nodes
        .iter()
        .filter(|n| matches!(n.op, Op::Conv2d(Conv2d { .. })));
    for c in convs {
        let name = format!("{}.weight_quantized", c.name);
        assert!(
            pg.initializer.iter().any(|t| t.name == name),
            "{} keeps f32 weights",
            c.name
        );
    }
    let producer = |t: &str| {
        pg.node
            .iter()
            .find(|n| n.output.iter().any(|o| o == t))
            .map(|n| n.op_type.as_str())
    };
    for add in pg
        .node
        .iter()
        .filter(|n| n.op_type == "Add" && !n.name.contains('/'))
    {
        assert!(
            add.input.iter().all(|i| producer(i) == Some("DequantizeLinear")),
            "{}: {:?}",
            add.name,
            add.input
        );
    }
    let back = pare::onnx::from_onnx(&proto, std::path::Path::new("r20.onnx")).unwrap();
    assert_eq!(argmax(&pare::native::infer(&back, &x).unwrap()), argmax(&n));
}

fn labels(plan: &pare::native::Plan, m: &Model) -> BTreeMap<String, String> {
    plan.kernels()
        .into_iter()
        .map(|(i, k)| (m.graph.nodes[i].name.clone(), k))
        .collect()
}

#[test]
fn quantized_zoo_models_run_integer_kernels_like_the_training_engine() {
    for name in ["lenet300", "lenet5", "resnet20"] {
        let m = quantized(&zoo(name), &[1, 28, 28], 2);
        let plan = pare::native::compile(&m).unwrap();
        let kernels = labels(&plan, &m);
        let integer = |n: &str| kernels.get(n).is_some_and(|k| k.contains("int8"));
        for node in &m.graph.nodes {
            match node.op {
                Op::Linear(Linear { .. }) => assert!(integer(&node.name), "{name}: {kernels:?}"),
                // Filters shorter than 64 (a 1-channel stem, 1x1 shortcuts of 16 and 32
                // channels) run in f32, where they are faster.
                Op::Conv2d(Conv2d {
                    in_channels,
                    kernel_size: [kh, kw],
                    ..
                }) => assert_eq!(
                    integer(&node.name),
                    in_channels * kh * kw >= 64,
                    "{name}: {kernels:?}"
                ),
                // A quantizer is the integer layers' input packing: it runs only for a
                // reader that is not one.
                Op::FakeQuant(FakeQuant { .. }) => {
                    let float_reader = m
                        .graph
                        .consumers(&node.name)
                        .iter()
                        .any(|&c| !integer(&m.graph.nodes[c].name));
                    assert_eq!(
                        kernels.contains_key(&node.name),
                        float_reader,
                        "{name}: {kernels:?}"
                    );
                }
                _ => {}
            }
        }
        let x = random(vec![5, 1, 28, 28], 9, 1.5);
        let e = infer(&m, &x, &Reparams::new(), &[]).unwrap().output;
        let n = plan.run(&x).unwrap();
        let scale = e.data().iter().fold(1.0f32, |a, v| a.max(v.abs()));
        // Exact integer sums; the engines differ by f32 rounding, which may move a value
        // across a rounding boundary of the next quantizer (one step of one code).
        assert!(
            max_diff(&e, &n) < 2e-2 * scale,
            "{name}: {} (scale {scale})",
            max_diff(&e, &n)
        );
        assert_eq!(argmax(&e), argmax(&n), "{name}");
    }
}

#[test]
fn the_pare_file_keeps_seven_bit_codes_that_run_as_integers() {
    use pare::codec::file::{decode, encode, Encoding, Plan};
    let m = quantized(&zoo("lenet5"), &[1, 28, 28], 1);
    let plan: Plan = m
        .layer_weights()
        .into_iter()
        .map(|(_, w)| {
            (
                w,
                Encoding::Uniform {
                    bits: 7,
                    per_channel: true,
                    symmetric: true,
                    huffman: false,
                },
            )
        })
        .collect();
    let (bytes, _) = encode(&m, &plan).unwrap();
    let back = decode(&bytes).unwrap();
    // The weights stay codes: the plan packs them without an f32 copy.
    for (_, w) in back.layer_weights() {
        assert_eq!(back.params[&w].store().dtype(), "int7", "{w}");
    }
    let compiled = pare::native::compile(&back).unwrap();
    let kernels = labels(&compiled, &back);
    assert!(
        kernels["fc1"].contains("int8") && kernels["conv2"].contains("int8"),
        "{kernels:?}"
    );
    for w in ["fc1.weight", "conv2.weight"] {
        assert!(!back.params[w].holds_f32_copy(), "{w} was expanded to f32");
    }
    // The same values in f32 (the plan then finds their grid) compute the same outputs.
    let mut dense = back.clone();
    for t in dense.params.values_mut() {
        t.data_mut();
    }
    assert!(dense.params.values().all(|t| t.store().dtype() == "f32"));
    let x = random(vec![4, 1, 28, 28], 3, 1.5);
    let (a, b) = (
        compiled.run(&x).unwrap(),
        pare::native::infer(&dense, &x).unwrap(),
    );
    let scale = a.data().iter().fold(1.0f32, |m, v| m.max(v.abs()));
    assert!(max_diff(&a, &b) < 1e-4 * scale, "{}", max_diff(&a, &b));
}

#[test]
fn int8_convolutions_equal_the_float_convolution_of_the_codes() {
    let (p, act) = codes_8bit();
    // Padding (written as the code of 0), strides, dilation, one input channel, widths off
    // the 4-byte step, 1x1 filters.
    for (c_in, c_out, k, stride, pad, dil, hw) in [
        (1, 3, 3, 1, 0, 1, 7),
        (3, 5, 3, 1, 1, 1, 9),
        (20, 8, 5, 1, 2, 1, 12),
        (8, 17, 3, 2, 1, 1, 10),
        (16, 4, 1, 1, 0, 1, 5),
        (8, 6, 3, 1, 2, 2, 11),
        (64, 3, 1, 2, 0, 1, 6),
    ] {
        let mut op = conv(c_in, c_out, k, stride, pad, true);
        if let Op::Conv2d(Conv2d { ref mut dilation, .. }) = op {
            *dilation = [dil, dil];
        }
        let mut b = GraphBuilder::new(vec![c_in, hw, hw]);
        b.then(
            "q",
            Op::FakeQuant(FakeQuant {
                bits: 8,
                symmetric: false,
                scale: p.scale,
                zero_point: p.zero_point,
            }),
        );
        b.then("conv", op.clone());
        let m = Model::init(b.finish().unwrap(), 1).unwrap();
        // 8-bit filters where the CPU sums them exactly (VNNI), else 7-bit.
        let wide = Int8Path::best().max_weight_code() >= 127;
        let bits = BTreeMap::from([("conv.weight".to_string(), if wide { 8 } else { 7 })]);
        let m = bake(&m, &weight_reparams(&m, &bits, true, true, false));
        let plan = pare::native::compile(&m).unwrap();
        // The plan takes the integer kernel for filters of 64 or more (the others are
        // faster in f32); the kernel itself is checked on every geometry below.
        let deep = c_in * k * k >= 64;
        assert_eq!(labels(&plan, &m)["conv"].starts_with("conv2d int8"), deep);
        let direct = Int8Conv::new(&op, &m.params["conv.weight"], act).unwrap();
        for n in [1, 3] {
            let x = random(vec![n, c_in, hw, hw], 4, 2.5);
            let e = infer(&m, &x, &Reparams::new(), &[]).unwrap().output;
            let got = plan.run(&x).unwrap();
            let scale = e.data().iter().fold(1.0f32, |a, v| a.max(v.abs()));
            let what = format!("{c_in} {c_out} {k} s{stride} p{pad} d{dil} n {n}");
            assert!(
                max_diff(&e, &got) < 1e-5 * scale,
                "{what}: {}",
                max_diff(&e, &got)
            );
            // Every path, bit for bit.
            let channel_major: Vec<f32> = {
                let (h, w) = (hw, hw);
                let mut v = vec![0.0; x.data().len()];
                for s in 0..n {
                    for c in 0..c_in {
                        for i in 0..h * w {
                            v[(c * n + s) * h * w + i] = x.data()[(s * c_in + c) * h * w + i];
                        }
                    }
                }
                v
            };
            let outs: Vec<Vec<f32>> = Int8Path::available()
                .into_iter()
                .filter(|p| !wide || p.max_weight_code() >= 127)
                .map(|path| direct.run_path(path, &channel_major, [c_in, n, hw, hw], None))
                .collect();
            assert!(outs.windows(2).all(|w| w[0] == w[1]), "{what}");
            // The kernel's channel-major output against the engine's.
            let (oh, ow) = (e.shape()[2], e.shape()[3]);
            let mut direct_pt = vec![0.0; outs[0].len()];
            for s in 0..n {
                for c in 0..c_out {
                    for i in 0..oh * ow {
                        direct_pt[(s * c_out + c) * oh * ow + i] = outs[0][(c * n + s) * oh * ow + i];
                    }
                }
            }
            let direct_pt = Tensor::from_vec(e.shape().to_vec(), direct_pt);
            let bias = &m.params["conv.bias"];
            // The engine adds the bias; `run_path` was given none.
            let with_bias: Vec<f32> = direct_pt
                .data()
                .iter()
                .enumerate()
                .map(|(j, v)| v + bias.data()[(j / (oh * ow)) % c_out])
                .collect();
            let with_bias = Tensor::from_vec(e.shape().to_vec(), with_bias);
            assert!(
                max_diff(&e, &with_bias) < 1e-5 * scale,
                "{what}: kernel {}",
                max_diff(&e, &with_bias)
            );
        }
    }
}
