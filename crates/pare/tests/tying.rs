//! Cross-layer tying: tied blocks store one parameter set (in memory, in the count and in the
//! file), compute what the untied network with copied weights computes in both engines, get the
//! sum of the copies' gradients, train, and are refused by the methods that reshape one layer.

mod common;

use common::{max_diff, toy_data, zoo};
use pare::exec::{train_step, LossTerm};
use pare::ir::graph::ops::{bn, conv, linear};
use pare::ir::{io, GraphBuilder, Model, Op, Reparams, Tensor};
use pare::train::{fit, FitConfig, NoHooks, OptimizerConfig, Schedule};
use pare::tying::{tie_blocks, untie, TieInit};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn images(n: usize, side: usize) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    Tensor::from_vec(
        vec![n, 1, side, side],
        (0..n * side * side)
            .map(|_| rng.random_range(-1.0..2.0))
            .collect(),
    )
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn vit_blocks() -> Vec<String> {
    names(&["blocks.0", "blocks.1", "blocks.2", "blocks.3"])
}

#[test]
fn tied_vit_blocks_are_stored_once_and_run_alike_in_both_engines() {
    let m = zoo("vit");
    let block: usize = m
        .params
        .iter()
        .filter(|(k, _)| k.starts_with("blocks.1."))
        .map(|(_, t)| t.len())
        .sum();
    let (t, report) = tie_blocks(&m, &vit_blocks(), TieInit::First, true).unwrap();
    assert_eq!(t.num_params(), m.num_params() - 3 * block);
    assert_eq!(report.params_after, t.num_params());
    assert_eq!(report.ties["blocks.3.att"], "blocks.0.att");
    assert_eq!(report.ties.len(), 3 * 5, "n1, att, n2, fc1, fc2 of three blocks");
    assert!(t.params.keys().all(|k| !k.starts_with("blocks.2.")));

    // The untied network whose blocks all carry block 0's weights computes the same.
    let mut copied = m.clone();
    for (k, v) in &m.params {
        if let Some(rest) = k.strip_prefix("blocks.0.") {
            for b in 1..4 {
                copied.params.insert(format!("blocks.{b}.{rest}"), v.clone());
            }
        }
    }
    assert_eq!(untie(&t), copied);
    let x = images(3, 28);
    let native = pare::native::infer(&t, &x).unwrap();
    let engine = pare::exec::infer(&t, &x, &Reparams::new(), &[]).unwrap().output;
    let reference = pare::native::infer(&copied, &x).unwrap();
    assert!(max_diff(&native, &engine) < 1e-4);
    assert!(max_diff(&native, &reference) < 1e-6);

    // Saved once: the file shrinks by the three blocks' f32 values, and loads back equal.
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    io::save(&m, a.path()).unwrap();
    io::save(&t, b.path()).unwrap();
    let size = |d: &std::path::Path| std::fs::metadata(d.join("weights.safetensors")).unwrap().len();
    let saved = size(a.path()) - size(b.path());
    assert!(saved >= 4 * 3 * block as u64, "{saved} bytes saved");
    let back = io::load(b.path()).unwrap();
    assert_eq!(back, t);
    assert_eq!(pare::native::infer(&back, &x).unwrap(), native);
}

#[test]
fn mean_init_averages_the_blocks() {
    let m = zoo("vit");
    let (t, _) = tie_blocks(&m, &vit_blocks(), TieInit::Mean, true).unwrap();
    let w = |b: usize| m.params[&format!("blocks.{b}.fc1.weight")].data().to_vec();
    let got = t.params["blocks.0.fc1.weight"].data();
    for (k, g) in got.iter().enumerate().step_by(97) {
        let want = (0..4).map(|b| w(b)[k]).sum::<f32>() / 4.0;
        assert!((g - want).abs() < 1e-6);
    }
}

/// Two identical conv + BN blocks and a head; tied, the shared weight's gradient is the sum of
/// the untied copies' gradients (autodiff through one leaf used twice).
fn twin_blocks() -> Model {
    let mut b = GraphBuilder::new(vec![1, 8, 8]);
    b.then("stem", conv(1, 4, 3, 1, 1, false));
    for k in 0..2 {
        b.then(format!("b{k}.conv"), conv(4, 4, 3, 1, 1, false));
        b.then(format!("b{k}.bn"), bn(4));
        b.then(format!("b{k}.relu"), Op::Relu);
    }
    b.then("pool", Op::GlobalAvgPool);
    b.then("flatten", Op::Flatten);
    b.then("fc", linear(4, 3));
    Model::init(b.finish().unwrap(), 2).unwrap()
}

#[test]
fn a_shared_weight_gets_the_sum_of_its_copies_gradients() {
    let m = twin_blocks();
    let (t, _) = tie_blocks(&m, &names(&["b0", "b1"]), TieInit::First, false).unwrap();
    assert_eq!(t.graph.ties.len(), 1, "the BatchNorms stay apart");
    let u = untie(&t);
    let x = images(6, 8);
    let ce = [LossTerm::CrossEntropy {
        labels: vec![0, 1, 2, 0, 1, 2],
        weight: 1.0,
    }];
    let gt = train_step(&t, &x, &ce, &Reparams::new(), &[], 0).unwrap();
    let gu = train_step(&u, &x, &ce, &Reparams::new(), &[], 0).unwrap();
    assert!((gt.loss - gu.loss).abs() < 1e-5);
    assert!(!gt.grads.contains_key("b1.conv.weight"));
    let mut sum = gu.grads["b0.conv.weight"].clone();
    sum.data_mut()
        .iter_mut()
        .zip(gu.grads["b1.conv.weight"].data())
        .for_each(|(s, g)| *s += g);
    assert!(max_diff(&gt.grads["b0.conv.weight"], &sum) < 1e-5);
    assert_eq!(gt.grads["b1.bn.weight"], gu.grads["b1.bn.weight"]);
}

#[test]
fn a_tied_network_trains_and_its_tied_layers_stay_unfolded() {
    let data = toy_data();
    let (mut t, _) = tie_blocks(&twin_blocks(), &names(&["b0", "b1"]), TieInit::First, false).unwrap();
    let cfg = FitConfig {
        epochs: 10,
        batch_size: 16,
        optimizer: OptimizerConfig::sgd(0.9, 0.0),
        schedule: Schedule::constant(0.05),
        ..Default::default()
    };
    fit(&mut t, &data, None, &cfg, &mut NoHooks).unwrap();
    let acc = pare::native::accuracy(&t, &data).unwrap();
    assert!(acc > 0.9, "{acc}");
    // Folding b0.bn into the shared conv would change b1's function too: both stay.
    let folded = pare::fuse::fold_batch_norm(&t).unwrap();
    assert!(folded.graph.node("b0.bn").is_some() && folded.graph.node("b1.bn").is_some());
    let x = images(4, 8);
    let diff = max_diff(
        &pare::native::infer(&folded, &x).unwrap(),
        &pare::native::infer(&t, &x).unwrap(),
    );
    assert!(diff < 1e-5);
}

/// A BatchNorm tied across blocks takes both blocks' batch statistics in turn, as one PyTorch
/// module called twice does.
#[test]
fn a_shared_batch_norm_takes_each_blocks_statistics_in_turn() {
    let m = twin_blocks();
    let (mut t, _) = tie_blocks(&m, &names(&["b0", "b1"]), TieInit::First, true).unwrap();
    let u = untie(&t);
    let x = images(6, 8);
    let ce = [LossTerm::CrossEntropy {
        labels: vec![0, 1, 2, 0, 1, 2],
        weight: 1.0,
    }];
    let st = train_step(&t, &x, &ce, &Reparams::new(), &[], 0).unwrap();
    let su = train_step(&u, &x, &ce, &Reparams::new(), &[], 0).unwrap();
    assert!(st.batch_stats.iter().all(|s| s.node == "b0.bn"));
    pare::train::update_running_stats(&mut t, &st.batch_stats);
    let momentum = 0.1f32;
    let (s0, s1) = (&su.batch_stats[0].mean, &su.batch_stats[1].mean);
    let got = t.params["b0.bn.running_mean"].data();
    for (c, g) in got.iter().enumerate().take(4) {
        let want = (1.0 - momentum) * (momentum * s0.data()[c]) + momentum * s1.data()[c];
        assert!((g - want).abs() < 1e-5, "channel {c}: {g} vs {want}");
    }
}

#[test]
fn tied_layers_keep_their_channels_and_reject_one_layer_rewrites() {
    let m = zoo("resnet20");
    let blocks = names(&["layer1.0", "layer1.1", "layer1.2"]);
    let (t, _) = tie_blocks(&m, &blocks, TieInit::First, false).unwrap();
    let deps = pare::prune::deps::DepGraph::build(&t).unwrap();
    for name in ["layer1.0.conv1", "layer1.1.conv1", "layer1.2.conv2"] {
        assert!(
            deps.family_of(&t, name).is_none(),
            "{name} is tied: structured pruning leaves its channels"
        );
    }
    assert!(deps.family_of(&t, "layer2.0.conv1").is_some());
    let e = pare::lowrank::factorize_with(
        &t,
        Some(&names(&["layer1.1.conv1"])),
        pare::lowrank::Rank::Energy(0.9),
        Some(pare::lowrank::ConvMethod::Tucker2),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("'layer1.1.conv1' shares its parameters"), "{e}");
    // Unnamed, the tied layers are simply not candidates.
    let (f, rows) = pare::lowrank::factorize_with(&t, None, pare::lowrank::Rank::Energy(0.5), None).unwrap();
    assert!(rows.iter().all(|r| !r.layer.starts_with("layer1.")));
    assert_eq!(f.graph.ties, t.graph.ties);
}

#[test]
fn bad_ties_are_refused_with_the_node_named() {
    let m = zoo("resnet20");
    let err = |blocks: &[&str]| {
        tie_blocks(&m, &names(blocks), TieInit::First, true)
            .unwrap_err()
            .to_string()
    };
    assert!(err(&["layer1.0"]).contains("at least two blocks"));
    assert!(err(&["layer1.0", "layer9.0"]).contains("'layer9.0.': no such block"));
    assert!(err(&["layer1.0", "layer1.0"]).contains("named twice"));
    // layer2.0 reads 16 channels and writes 32, and has a shortcut conv: not layer1.0's twin.
    let e = err(&["layer1.0", "layer2.0"]);
    assert!(e.contains("layer2.0."), "{e}");
    let (t, _) = tie_blocks(&m, &names(&["layer1.0", "layer1.1"]), TieInit::First, true).unwrap();
    let e = tie_blocks(&t, &names(&["layer1.1", "layer1.2"]), TieInit::First, true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("tied already"), "{e}");

    // A saved graph whose ties are broken does not load.
    let dir = tempfile::tempdir().unwrap();
    io::save(&t, dir.path()).unwrap();
    let arch = dir.path().join("arch.json");
    let text = std::fs::read_to_string(&arch).unwrap();
    for (from, to, want) in [
        (
            "\"layer1.0.conv1\"",
            "\"layer3.0.conv1\"",
            "do not declare the same parameters",
        ),
        ("\"layer1.0.conv1\"", "\"nowhere\"", "'nowhere', which is no node"),
        ("\"layer1.0.conv1\"", "\"layer1.1.conv1\"", "must be another node"),
    ] {
        let ties_at = text.find("\"ties\"").unwrap();
        let (head, tail) = text.split_at(ties_at);
        let bad = format!("{head}{}", tail.replacen(from, to, 1));
        std::fs::write(&arch, bad).unwrap();
        let e = io::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains(want), "{from} -> {to}: {e}");
    }
}
