//! Binary networks: the sign's and the binarized weight's straight-through gradients against
//! their definitions, the BinaryConnect / BNN / XNOR rewrites, binary training on a toy set,
//! and the native engine on baked binary models.

mod common;

use common::{max_diff, random, toy_data, zoo};
use pare::binary::{binarize, Method};
use pare::exec::{infer, train_step, LossTerm};
use pare::ir::graph::ops::linear;
use pare::ir::op::{AvgPool2d, BatchNorm, Linear};
use pare::ir::reparam::bake;
use pare::ir::{GraphBuilder, Model, Op, Reparam, Reparams, Tensor};
use pare::train::{evaluate, fit, FitConfig, OptimizerConfig, ReparamHook, Schedule};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn ce(labels: &[u32]) -> [LossTerm; 1] {
    [LossTerm::CrossEntropy {
        labels: labels.to_vec(),
        weight: 1.0,
    }]
}

/// `d loss / d logits` of mean cross-entropy, per sample.
fn dlogits(logits: &Tensor, labels: &[u32]) -> Vec<Vec<f32>> {
    let k = logits.shape()[1];
    logits
        .data()
        .chunks(k)
        .zip(labels)
        .map(|(row, &y)| {
            let m = row.iter().copied().fold(f32::MIN, f32::max);
            let e: Vec<f32> = row.iter().map(|v| (v - m).exp()).collect();
            let s: f32 = e.iter().sum();
            let n = labels.len() as f32;
            e.iter()
                .enumerate()
                .map(|(j, v)| (v / s - if j as u32 == y { 1.0 } else { 0.0 }) / n)
                .collect()
        })
        .collect()
}

#[test]
fn the_sign_is_binary_forward_and_hardtanh_backward() {
    // x -> fc (4 -> 6) -> sign -> head (6 -> 3): fc's gradient is the head's back-propagated
    // gradient masked by |z| <= 1, where z is fc's output.
    let mut b = GraphBuilder::new(vec![4]);
    b.then("fc", linear(4, 6));
    b.then("sign", Op::Sign);
    b.then("head", linear(6, 3));
    let mut m = Model::init(b.finish().unwrap(), 1).unwrap();
    // Pre-activations on both sides of the [-1, 1] window.
    m.params.insert("fc.weight".into(), random(vec![6, 4], 2, 1.5));
    let x = random(vec![5, 4], 3, 1.0);
    let labels = [0, 1, 2, 0, 1];
    let taps = ["fc".to_string(), "sign".to_string()];
    let out = infer(&m, &x, &Reparams::new(), &taps).unwrap();
    let (z, s) = (&out.taps["fc"], &out.taps["sign"]);
    for (zi, si) in z.data().iter().zip(s.data()) {
        assert_eq!(*si, if *zi >= 0.0 { 1.0 } else { -1.0 });
    }
    let inside = z.data().iter().filter(|v| v.abs() <= 1.0).count();
    assert!(
        inside > 3 && inside < z.len() - 3,
        "the test needs both sides: {inside}"
    );
    let g = dlogits(&out.output, &labels);
    let v = m.params["head.weight"].data();
    let mut want = vec![0f32; 24];
    for (i, gi) in g.iter().enumerate() {
        for u in 0..6 {
            let zu = z.data()[i * 6 + u];
            if zu.abs() > 1.0 {
                continue;
            }
            let ds: f32 = (0..3).map(|c| gi[c] * v[c * 6 + u]).sum();
            for j in 0..4 {
                want[u * 4 + j] += ds * x.data()[i * 4 + j];
            }
        }
    }
    let got = train_step(&m, &x, &ce(&labels), &Reparams::new(), &[], 0).unwrap();
    let want = Tensor::from_vec(vec![6, 4], want);
    assert!(max_diff(&got.grads["fc.weight"], &want) < 1e-5);
}

#[test]
fn binarized_weights_pass_the_gradient_straight_through() {
    let mut b = GraphBuilder::new(vec![5]);
    b.then("fc", linear(5, 4));
    b.then("head", linear(4, 3));
    let mut m = Model::init(b.finish().unwrap(), 1).unwrap();
    m.params.insert("fc.weight".into(), random(vec![4, 5], 7, 1.4));
    let x = random(vec![6, 5], 8, 1.0);
    let labels = [0, 1, 2, 2, 1, 0];
    let w = m.params["fc.weight"].clone();
    for scaled in [false, true] {
        let reparams: Reparams = [(
            "fc.weight".to_string(),
            vec![Reparam::Binarize {
                scaled,
                stochastic: false,
            }],
        )]
        .into();
        let baked = bake(&m, &reparams);
        // Forward: alpha_r * sign(w), alpha the row's mean |w| when scaled.
        for (r, row) in baked.params["fc.weight"].data().chunks(5).enumerate() {
            let src = &w.data()[r * 5..r * 5 + 5];
            let alpha = if scaled {
                src.iter().map(|v| v.abs()).sum::<f32>() / 5.0
            } else {
                1.0
            };
            for (b, s) in row.iter().zip(src) {
                assert_eq!(*b, if *s >= 0.0 { alpha } else { -alpha });
            }
        }
        // Backward: the gradient at the binary weight, through the sign's window and alpha.
        let gb = train_step(&baked, &x, &ce(&labels), &Reparams::new(), &[], 0)
            .unwrap()
            .grads["fc.weight"]
            .clone();
        let got = train_step(&m, &x, &ce(&labels), &reparams, &[], 0).unwrap().grads["fc.weight"].clone();
        let mut want = vec![0f32; 20];
        for r in 0..4 {
            let src = &w.data()[r * 5..r * 5 + 5];
            let g = &gb.data()[r * 5..r * 5 + 5];
            let alpha = if scaled {
                src.iter().map(|v| v.abs()).sum::<f32>() / 5.0
            } else {
                1.0
            };
            let sign = |v: f32| if v >= 0.0 { 1.0 } else { -1.0 };
            // d alpha / d w_i = sign(w_i) / n; d (sign(w_j)) / d w_j = 1 on [-1, 1].
            let through_alpha: f32 = g.iter().zip(src).map(|(gj, &sj)| gj * sign(sj)).sum::<f32>() / 5.0;
            for i in 0..5 {
                let ste = if src[i].abs() <= 1.0 { g[i] * alpha } else { 0.0 };
                want[r * 5 + i] = ste + if scaled { through_alpha * sign(src[i]) } else { 0.0 };
            }
        }
        let want = Tensor::from_vec(vec![4, 5], want);
        assert!(
            max_diff(&got, &want) < 1e-5,
            "scaled {scaled}: {:?} vs {:?}",
            got.data(),
            want.data()
        );
    }
}

#[test]
fn stochastic_binarization_draws_hard_sigmoid_signs_and_passes_the_gradient_straight_through() {
    // One bias-free layer read by the identity batch: row j of the logits is column j of the
    // drawn binary weight, so every draw is visible.
    let mut b = GraphBuilder::new(vec![6]);
    b.then(
        "fc",
        Op::Linear(Linear {
            in_features: 6,
            out_features: 4,
            bias: false,
        }),
    );
    let mut m = Model::init(b.finish().unwrap(), 1).unwrap();
    // Some weights outside [-1, 1], where the draw is certain and the gradient zero.
    let w = random(vec![4, 6], 9, 1.3);
    m.params.insert("fc.weight".into(), w.clone());
    let eye = Tensor::from_vec(
        vec![6, 6],
        (0..36).map(|i| if i % 7 == 0 { 1.0 } else { 0.0 }).collect(),
    );
    let labels = [0, 1, 2, 3, 0, 1];
    let reparams: Reparams = [(
        "fc.weight".to_string(),
        vec![Reparam::Binarize {
            scaled: false,
            stochastic: true,
        }],
    )]
    .into();
    let drawn = |seed: u64| {
        let out = train_step(&m, &eye, &ce(&labels), &reparams, &[], seed).unwrap();
        // The drawn weight [out, in] from the logits [in, out].
        let wb: Vec<f32> = (0..24).map(|k| out.output.data()[(k % 6) * 4 + k / 6]).collect();
        (wb, out)
    };
    let p = |v: f32| ((v + 1.0) / 2.0).clamp(0.0, 1.0);
    let runs = 2000;
    let mut plus = [0usize; 24];
    for seed in 0..runs {
        let (wb, out) = drawn(seed);
        let g = dlogits(&out.output, &labels);
        for k in 0..24 {
            assert!(wb[k] == 1.0 || wb[k] == -1.0, "a binary weight: {}", wb[k]);
            plus[k] += (wb[k] == 1.0) as usize;
            // Straight through: d loss / d w = d loss / d wb inside [-1, 1], 0 outside.
            let want = if w.data()[k].abs() <= 1.0 {
                g[k % 6][k / 6]
            } else {
                0.0
            };
            assert!((out.grads["fc.weight"].data()[k] - want).abs() < 1e-6);
        }
    }
    for (k, &count) in plus.iter().enumerate() {
        let freq = count as f32 / runs as f32;
        // Binomial standard error at most 0.0112: 5 of them.
        assert!(
            (freq - p(w.data()[k])).abs() < 0.056,
            "w {}: +1 drawn {freq} of the time",
            w.data()[k]
        );
    }
    assert!(w.data().iter().any(|v| v.abs() > 1.0) && w.data().iter().any(|v| v.abs() < 0.5));
    // A step's draw is its seed's; other steps draw others.
    assert_eq!(drawn(7).0, drawn(7).0);
    assert_ne!(drawn(7).0, drawn(8).0);
    // Outside training: the deterministic sign, the deployed network.
    let eval = infer(&m, &eye, &reparams, &[]).unwrap().output;
    let det: Reparams = [(
        "fc.weight".to_string(),
        vec![Reparam::Binarize {
            scaled: false,
            stochastic: false,
        }],
    )]
    .into();
    assert_eq!(eval, infer(&m, &eye, &det, &[]).unwrap().output);
    assert_eq!(bake(&m, &reparams), bake(&m, &det));
}

#[test]
fn stochastic_weights_start_spread_like_the_papers_initialization_with_the_same_signs() {
    let m = zoo("lenet300");
    let det = binarize(&m, Method::BinaryConnect).unwrap();
    let st = binarize(&m, Method::BinaryConnect)
        .unwrap()
        .with_stochastic_weights();
    assert!(st
        .reparams
        .values()
        .flatten()
        .all(|r| matches!(r, Reparam::Binarize { stochastic: true, .. })));
    for w in ["fc1.weight", "fc2.weight", "fc3.weight"] {
        let (a, b) = (&det.model.params[w], &st.model.params[w]);
        assert!(
            a.data()
                .iter()
                .zip(b.data())
                .all(|(x, y)| (*x >= 0.0) == (*y >= 0.0)),
            "{w}"
        );
        let rms = (b.data().iter().map(|v| v * v).sum::<f32>() / b.len() as f32).sqrt();
        // A fresh layer's uniform initialization becomes Uniform(-1, 1), nearly unclipped.
        assert!((rms - 1.0 / 3f32.sqrt()).abs() < 0.01, "{w}: {rms}");
        assert!(b.data().iter().all(|v| v.abs() <= 1.0));
    }
    assert_eq!(bake(&det.model, &det.reparams), bake(&st.model, &st.reparams));
    // Biases and BatchNorms are left as they were.
    assert_eq!(det.model.params["fc1.bias"], st.model.params["fc1.bias"]);
}

#[test]
fn glorot_scaling_multiplies_each_binary_layers_step() {
    let bc = binarize(&zoo("lenet300"), Method::BinaryConnect).unwrap();
    let scales = bc.glorot_lr_scales();
    // 1 / sqrt(1.5 / (fan_in + fan_out)): fc1 784 -> 300, fc3 100 -> 10.
    assert!((scales["fc1.weight"] - (1084.0f32 / 1.5).sqrt()).abs() < 1e-3);
    assert!((scales["fc3.weight"] - (110.0f32 / 1.5).sqrt()).abs() < 1e-3);
    assert_eq!(scales.len(), 3, "weights only: {scales:?}");
    // Convolutions count kernel positions: lenet5's conv2 is 20 -> 50 channels, 5x5.
    let x = binarize(&zoo("lenet5"), Method::Xnor).unwrap();
    assert!((x.glorot_lr_scales()["conv2.weight"] - ((20.0f32 + 50.0) * 25.0 / 1.5).sqrt()).abs() < 1e-3);
    // One SGD step: a scaled parameter moves `scale` times as far as at the base rate.
    let mut params = pare::ir::Params::new();
    params.insert("a".into(), Tensor::from_vec(vec![2], vec![0.5, -0.5]));
    params.insert("b".into(), Tensor::from_vec(vec![2], vec![0.5, -0.5]));
    let grads = params.clone();
    let mut opt = pare::train::Optimizer::new(OptimizerConfig::sgd(0.0, 0.0))
        .with_lr_scales([("a".to_string(), 4.0)].into());
    opt.step(&mut params, &grads, 0.1);
    assert_eq!(params["a"].data(), &[0.3, -0.3]);
    assert_eq!(params["b"].data(), &[0.45, -0.45]);
    // A rate scale that is not positive is refused.
    let cfg = FitConfig {
        lr_scales: [("fc1.weight".to_string(), 0.0)].into(),
        ..Default::default()
    };
    let e = cfg.validate().unwrap_err().to_string();
    assert!(e.contains("fc1.weight") && e.contains("positive"), "{e}");
}

#[test]
fn the_rewrites_place_batchnorms_signs_and_scales() {
    let m = zoo("lenet300");
    let bc = binarize(&m, Method::BinaryConnect).unwrap();
    assert_eq!(bc.binary_layers, ["fc1", "fc2", "fc3"]);
    assert!(bc.binary_inputs.is_empty());
    for l in ["fc1", "fc2", "fc3"] {
        assert!(matches!(
            bc.model.graph.node(&format!("{l}_bn")).unwrap().op,
            Op::BatchNorm(BatchNorm { .. })
        ));
    }
    assert!(bc.model.graph.node("relu1").is_some());
    assert_eq!(bc.model.params["fc2.weight"], m.params["fc2.weight"]);
    assert_eq!(bc.float.graph, bc.model.graph);

    let bnn = binarize(&m, Method::Bnn).unwrap();
    assert_eq!(bnn.binary_layers, ["fc1", "fc2"]);
    assert_eq!(bnn.binary_inputs, ["fc2", "fc3"]);
    let g = &bnn.model.graph;
    assert!(g.node("relu1").is_none() && g.node("fc3_bn").is_none());
    assert_eq!(g.node("fc2_sign").unwrap().inputs, ["fc1_bn"]);
    assert_eq!(g.node("fc2").unwrap().inputs, ["fc2_sign"]);
    // The float counterpart keeps its ReLUs and has no sign.
    assert!(bnn.float.graph.node("relu1").is_some());
    assert!(!bnn.float.graph.nodes.iter().any(|n| n.op == Op::Sign));

    let x = binarize(&zoo("lenet5"), Method::Xnor).unwrap();
    assert_eq!(x.binary_layers, ["conv2", "fc1"]);
    let g = &x.model.graph;
    // conv2: K is the window average of the channel mean of |x|, multiplied into its output.
    assert!(matches!(
        g.node("conv2_k").unwrap().op,
        Op::AvgPool2d(AvgPool2d { .. })
    ));
    assert_eq!(g.node("conv2_scaled").unwrap().inputs, ["conv2", "conv2_k"]);
    assert_eq!(g.node("conv2_bn").unwrap().inputs, ["conv2_scaled"]);
    assert_eq!(g.node("fc1_scaled").unwrap().inputs, ["fc1", "fc1_k_mean"]);
    assert_eq!(
        x.reparams["conv2.weight"],
        vec![Reparam::Binarize {
            scaled: true,
            stochastic: false
        }]
    );

    let e = binarize(&zoo("resnet20"), Method::Bnn).unwrap_err().to_string();
    assert!(e.contains("chains"), "{e}");
    assert!(binarize(&zoo("resnet20"), Method::BinaryConnect).is_ok());
}

#[test]
fn binary_networks_learn_and_keep_their_weights_clipped() {
    let data = toy_data();
    let mut b = GraphBuilder::new(vec![1, 8, 8]);
    b.then("flatten", Op::Flatten);
    b.then("fc1", linear(64, 32));
    b.then("relu1", Op::Relu);
    b.then("fc2", linear(32, 32));
    b.then("relu2", Op::Relu);
    b.then("fc3", linear(32, 3));
    let m = Model::init(b.finish().unwrap(), 2).unwrap();
    for method in [Method::BinaryConnect, Method::Bnn, Method::Xnor] {
        let mut bin = binarize(&m, method).unwrap();
        let cfg = FitConfig {
            epochs: 6,
            batch_size: 16,
            optimizer: OptimizerConfig::adam(0.0),
            schedule: Schedule::constant(0.01),
            seed: 1,
            ..Default::default()
        };
        let mut hook = ReparamHook::new(bin.reparams.clone());
        fit(&mut bin.model, &data, None, &cfg, &mut hook).unwrap();
        for l in &bin.binary_layers {
            let w = &bin.model.params[&format!("{l}.weight")];
            assert!(w.data().iter().all(|v| v.abs() <= 1.0), "{method:?} {l}");
        }
        let acc = evaluate(&bin.model, &data, 64, &bin.reparams).unwrap().accuracy;
        assert!(acc > 0.9, "{method:?}: {acc}");
        // Baked, the network computes the same in both engines, with binary weights.
        let baked = bake(&bin.model, &bin.reparams);
        let x = random(vec![7, 1, 8, 8], 5, 1.0);
        let e = infer(&baked, &x, &Reparams::new(), &[]).unwrap().output;
        let n = pare::native::infer(&baked, &x).unwrap();
        assert!(max_diff(&e, &n) < 1e-3, "{method:?}: {}", max_diff(&e, &n));
        let r = infer(&bin.model, &x, &bin.reparams, &[]).unwrap().output;
        assert!(max_diff(&e, &r) < 1e-4);
    }
}

/// `alpha_r * sum_j sign(x_j) sign(w_rj) + b_r` in f64, the definition.
fn binary_linear_reference(w: &[f32], rows: usize, width: usize, x: &[f32], bias: &[f32]) -> Vec<f32> {
    let s = |v: f32| if v >= 0.0 { 1.0 } else { -1.0 };
    let n = x.len() / width;
    let mut y = Vec::with_capacity(n * rows);
    for i in 0..n {
        for r in 0..rows {
            let row = &w[r * width..(r + 1) * width];
            let dot: f64 = (0..width).map(|j| s(x[i * width + j]) * s(row[j])).sum();
            y.push((row[0].abs() as f64 * dot) as f32 + bias[r]);
        }
    }
    y
}

#[test]
fn every_popcount_path_equals_the_definition() {
    use pare::native::{dot_reference, BinaryMatrix, PopcountPath};
    let paths = PopcountPath::available();
    assert!(paths.contains(&PopcountPath::Portable));
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    // Widths around the word (64), the AVX2 block (256 bits) and the AVX-512 step (512 bits,
    // with masked tails), rows around the 8-row tile, odd and even, batch 1
    // (rows split between threads) and larger batches.
    for &(rows, width, n) in &[
        (1, 1, 1),
        (3, 63, 2),
        (5, 64, 1),
        (7, 65, 3),
        (4, 255, 2),
        (9, 256, 5),
        (6, 257, 1),
        (33, 1000, 4),
        (300, 784, 1),
        (130, 1100, 9),
        // One sample over enough rows to split them between the threads, at a row that is
        // not a multiple of the thread count.
        (203, 1500, 1),
    ] {
        let alpha: Vec<f32> = (0..rows).map(|_| rng.random_range(0.01..2.0)).collect();
        let w: Vec<f32> = (0..rows * width)
            .map(|k| {
                if rng.random_bool(0.5) {
                    alpha[k / width]
                } else {
                    -alpha[k / width]
                }
            })
            .collect();
        // Inputs of any value: the kernel reads their signs as the sign op does (zero and
        // -0.0 count as +1, NaN as -1).
        let x: Vec<f32> = (0..n * width)
            .map(|k| match k % 23 {
                0 => 0.0,
                1 => -0.0,
                2 => f32::NAN,
                _ => rng.random_range(-3.0..3.0),
            })
            .collect();
        let bias: Vec<f32> = (0..rows).map(|_| rng.random_range(-1.0..1.0)).collect();
        let want = binary_linear_reference(&w, rows, width, &x, &bias);
        let m = BinaryMatrix::from_dense(&w, rows, width).unwrap();
        for &p in &paths {
            let got = m.linear_path(p, &x, n, Some(&bias));
            let worst = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
                .fold(0.0, f32::max);
            assert!(worst < 1e-5, "{p:?} rows {rows} width {width} n {n}: {worst}");
        }
    }
    // A row with two magnitudes is not binary.
    assert!(BinaryMatrix::from_dense(&[1.0, -0.5], 1, 2).is_none());
    assert_eq!(dot_reference(&[0b1011, u64::MAX], &[0b0001, 0]), 2 + 64);
}

#[test]
fn a_binary_layer_on_a_sign_runs_the_popcount_kernel() {
    let m = binarize(&zoo("lenet300"), Method::Bnn).unwrap();
    let baked = bake(&m.model, &m.reparams);
    let plan = pare::native::compile(&baked).unwrap();
    let kernels: std::collections::HashMap<String, String> = plan
        .kernels()
        .into_iter()
        .map(|(i, k)| (baked.graph.nodes[i].name.clone(), k))
        .collect();
    assert!(kernels["fc2"].starts_with("linear binary"), "{kernels:?}");
    // fc1 reads the image, fc3 has real weights.
    assert_eq!(kernels["fc1"], "linear f32");
    assert_eq!(kernels["fc3"], "linear f32");
    let x = random(vec![3, 1, 28, 28], 2, 1.0);
    let e = infer(&baked, &x, &Reparams::new(), &[]).unwrap().output;
    assert!(max_diff(&e, &plan.run(&x).unwrap()) < 1e-3);
}

#[test]
fn the_pare_file_keeps_one_bit_per_binary_weight() {
    use pare::codec::file::{decode, encode, Encoding, Plan};
    let m = binarize(&zoo("lenet300"), Method::Xnor).unwrap();
    let baked = bake(&m.model, &m.reparams);
    let plan: Plan = m
        .binary_layers
        .iter()
        .map(|l| (format!("{l}.weight"), Encoding::Binary))
        .collect();
    let (bytes, sizes) = encode(&baked, &plan).unwrap();
    let fc2 = sizes.tensors.iter().find(|t| t.name == "fc2.weight").unwrap();
    // 300 x 100 signs in 3,750 bytes, 100 magnitudes in 400.
    assert_eq!((fc2.values, fc2.codebook), (3750, 400));
    let back = decode(&bytes).unwrap();
    assert_eq!(back.params, baked.params);
    // The signs stay bits: the popcount kernel packs them without an f32 copy, and computes
    // what the f32 values compute.
    for l in &m.binary_layers {
        assert_eq!(back.params[&format!("{l}.weight")].store().dtype(), "1-bit");
    }
    let fresh = decode(&bytes).unwrap();
    let compiled = pare::native::compile(&fresh).unwrap();
    assert!(!fresh.params["fc2.weight"].holds_f32_copy());
    let x = random(vec![3, 1, 28, 28], 4, 1.0);
    let want = pare::native::infer(&baked, &x).unwrap();
    assert!(max_diff(&compiled.run(&x).unwrap(), &want) < 1e-4);
    // A weight with two magnitudes in a row is refused, naming it.
    let e = encode(
        &zoo("lenet300"),
        &[("fc1.weight".to_string(), Encoding::Binary)].into(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("fc1.weight") && e.contains("one magnitude per row"),
        "{e}"
    );
}

#[test]
fn binary_cnns_run_alike_in_both_engines() {
    // Every method on LeNet-5 (XNOR: K's window average and product, a BatchNorm on the
    // product's output) with BatchNorm statistics of a real scale, baked and run natively.
    for method in [Method::BinaryConnect, Method::Bnn, Method::Xnor] {
        let mut m = binarize(&zoo("lenet5"), method).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for (name, t) in m.model.params.iter_mut() {
            if name.ends_with("running_var") {
                t.data_mut()
                    .iter_mut()
                    .for_each(|v| *v = rng.random_range(0.5..2.0));
            }
        }
        let baked = bake(&m.model, &m.reparams);
        let x = random(vec![4, 1, 28, 28], 6, 1.0);
        let e = infer(&baked, &x, &Reparams::new(), &[]).unwrap().output;
        let n = pare::native::infer(&baked, &x).unwrap();
        let scale = e.data().iter().fold(1.0f32, |a, v| a.max(v.abs()));
        assert!(
            max_diff(&e, &n) < 1e-3 * scale,
            "{method:?}: {} (scale {scale})",
            max_diff(&e, &n)
        );
    }
}

#[test]
fn binary_convolutions_equal_the_float_convolution_of_signs() {
    use pare::ir::graph::ops::conv;
    // Zero padding (counted by a mask), strides, odd sizes, widths across a word.
    for (c_in, c_out, k, stride, pad, hw) in [
        (1, 3, 3, 1, 0, 7),
        (3, 5, 3, 1, 1, 9),
        (20, 8, 5, 1, 0, 12),
        (7, 6, 3, 2, 1, 10),
        (16, 4, 1, 1, 0, 5),
        // Padded rows wider than a word: one bit at a time.
        (2, 3, 3, 1, 1, 70),
        (3, 2, 5, 2, 2, 63),
    ] {
        let mut b = GraphBuilder::new(vec![c_in, hw, hw]);
        b.then("sign", Op::Sign);
        b.then("conv", conv(c_in, c_out, k, stride, pad, true));
        let mut m = Model::init(b.finish().unwrap(), 1).unwrap();
        let reparams: Reparams = [(
            "conv.weight".to_string(),
            vec![Reparam::Binarize {
                scaled: true,
                stochastic: false,
            }],
        )]
        .into();
        m = bake(&m, &reparams);
        let plan = pare::native::compile(&m).unwrap();
        assert!(plan.kernels().iter().any(|(_, k)| k.starts_with("conv2d binary")));
        for n in [1, 3] {
            let x = random(vec![n, c_in, hw, hw], 4, 1.0);
            let e = infer(&m, &x, &Reparams::new(), &[]).unwrap().output;
            let got = plan.run(&x).unwrap();
            assert!(
                max_diff(&e, &got) < 1e-4,
                "{c_in} {c_out} {k} {stride} {pad} n {n}: {}",
                max_diff(&e, &got)
            );
        }
    }
}
