//! Quantization and weight sharing: fake quantizers on the engine against their CPU reference,
//! activation calibration, the clipped straight-through estimator, and centroid fine-tuning
//! (distinct values per layer, pruned weights, the summed centroid gradient).

use std::collections::BTreeMap;

use pare::data::{make_batch, Batch, Dataset};
use pare::exec::{infer, train_step, LossTerm};
use pare::ir::op::{Dropout, FakeQuant};
use pare::ir::{Model, Op, Reparam, Reparams, Tensor, WeightQuant};
use pare::quant::{
    bake, calibrate_activations, strip_act_quant, weight_reparams, ActQuant, ActScope, CentroidInit,
    LayerBits, Observer, Reduce, Sharing, SharingHook,
};
use pare::train::{fit, FitConfig, OptimizerConfig, Schedule};

mod common;
use common::{toy_data, toy_model};

fn batches(set: &dyn Dataset, model: &Model, n: usize) -> Vec<Batch> {
    (0..n)
        .map(|i| {
            let idx: Vec<usize> = (i * 40..(i + 1) * 40).collect();
            make_batch(set, &idx, &model.graph.input.normalize, None)
        })
        .collect()
}

fn config(epochs: usize, lr: f32) -> FitConfig {
    FitConfig {
        epochs,
        batch_size: 32,
        optimizer: OptimizerConfig::sgd(0.9, 1e-3),
        schedule: Schedule::constant(lr),
        seed: 3,
        eval_batch_size: 64,
        ..Default::default()
    }
}

fn trained() -> Model {
    let mut m = toy_model(2);
    fit(
        &mut m,
        &toy_data(),
        None,
        &config(3, 0.05),
        &mut pare::train::NoHooks,
    )
    .unwrap();
    m
}

#[test]
fn asymmetric_per_channel_weights_match_the_cpu_reference() {
    let m = trained();
    let q = WeightQuant {
        bits: 3,
        per_channel: true,
        symmetric: false,
    };
    let reparams = Reparams::from([("fc.weight".to_string(), vec![Reparam::FakeQuant(q)])]);
    let x = batches(&toy_data(), &m, 1).remove(0).x;
    let engine = infer(&m, &x, &reparams, &[]).unwrap().output;
    let cpu = infer(&bake(&m, &reparams), &x, &Reparams::new(), &[])
        .unwrap()
        .output;
    assert_eq!(
        engine.data(),
        cpu.data(),
        "engine fake quant must equal the baked weights exactly"
    );
    // 3 bits: at most 8 distinct values per output channel.
    for row in bake(&m, &reparams).params["fc.weight"].data().chunks(64) {
        let mut v: Vec<u32> = row.iter().map(|x| x.to_bits()).collect();
        v.sort_unstable();
        v.dedup();
        assert!(v.len() <= 8);
    }
}

#[test]
fn activation_quantizers_are_inserted_calibrated_and_removable() {
    let m = trained();
    let data = toy_data();
    let calib = batches(&data, &m, 3);
    let act = ActQuant {
        bits: 4,
        symmetric: false,
        observer: Observer::MinMax,
        scope: ActScope::Layers,
    };
    let q = calibrate_activations(&m, &Reparams::new(), &calib, act).unwrap();
    let names: Vec<&str> = q
        .graph
        .nodes
        .iter()
        .filter(|n| matches!(n.op, Op::FakeQuant(FakeQuant { .. })))
        .map(|n| n.name.as_str())
        .collect();
    // The input feeds conv; the dropout output feeds fc.
    assert_eq!(names, ["input_q", "drop_q"]);
    let x = &calib[0].x;
    // The quantized input has at most 16 levels.
    let tapped = infer(&q, x, &Reparams::new(), &["input_q".into()]).unwrap();
    let mut levels: Vec<u32> = tapped.taps["input_q"]
        .data()
        .iter()
        .map(|v| v.to_bits())
        .collect();
    levels.sort_unstable();
    levels.dedup();
    assert!(levels.len() <= 16, "{} levels", levels.len());
    // Min/max calibration on the same data: every value is within half a step.
    let Op::FakeQuant(FakeQuant { scale, .. }) = q.graph.node("input_q").unwrap().op else {
        unreachable!()
    };
    let max_err = tapped.taps["input_q"].max_abs_diff(x);
    assert!(max_err <= scale * 0.5 + 1e-6, "{max_err} vs step {scale}");
    // Re-calibrating replaces the quantizers; stripping them gives the float model back.
    let again = calibrate_activations(&q, &Reparams::new(), &calib, act).unwrap();
    assert_eq!(again.graph.nodes.len(), q.graph.nodes.len());
    let plain = strip_act_quant(&q).unwrap();
    assert_eq!(plain.graph, m.graph);
    // The quantized graph saves and reloads like any other.
    let dir = tempfile::tempdir().unwrap();
    pare::ir::io::save(&q, dir.path()).unwrap();
    assert_eq!(pare::ir::io::load(dir.path()).unwrap().graph, q.graph);
}

#[test]
fn activation_fake_quant_has_a_clipped_straight_through_gradient() {
    // input -> fake_quant(range [-1, 1]) -> linear: d loss / d w equals the gradient with the
    // clipped input, i.e. values outside the range contribute as if saturated.
    let mut b = pare::ir::GraphBuilder::new(vec![2]);
    b.then(
        "q",
        Op::FakeQuant(FakeQuant {
            bits: 8,
            symmetric: true,
            scale: 1.0 / 127.0,
            zero_point: 0,
        }),
    );
    b.then("fc", pare::ir::graph::ops::linear(2, 2));
    let m = Model::init(b.finish().unwrap(), 1).unwrap();
    let x = Tensor::from_vec(vec![1, 2], vec![0.5, 3.0]);
    let terms = [LossTerm::CrossEntropy {
        labels: vec![0],
        weight: 1.0,
    }];
    let out = train_step(&m, &x, &terms, &Reparams::new(), &[], 0).unwrap();
    let g = &out.grads["fc.weight"];
    // The weight gradient is (p - y) x^T with the *quantized* input: 3.0 saturates to 1.0.
    let ratio = g.data()[1] / g.data()[0];
    let expected = 1.0 / (0.5f32 / (1.0 / 127.0)).round_ties_even() / (1.0 / 127.0);
    assert!(
        (ratio - expected).abs() < 1e-3,
        "ratio {ratio}, expected {expected}"
    );
}

#[test]
fn qat_keeps_pruned_weights_zero_and_trains() {
    let mut m = trained();
    let w = m.params.get_mut("fc.weight").unwrap();
    w.data_mut().iter_mut().step_by(2).for_each(|v| *v = 0.0);
    let bits = LayerBits::uniform(4).resolve(&m, 2..=16).unwrap();
    let reparams = weight_reparams(&m, &bits, true, true, true);
    let before = pare::train::evaluate(&m, &toy_data(), 64, &reparams)
        .unwrap()
        .loss;
    let mut hook = pare::train::ReparamHook::new(reparams.clone());
    fit(&mut m, &toy_data(), None, &config(2, 0.02), &mut hook).unwrap();
    assert!(m.params["fc.weight"].data().iter().step_by(2).all(|v| *v == 0.0));
    let after = pare::train::evaluate(&m, &toy_data(), 64, &reparams)
        .unwrap()
        .loss;
    assert!(
        after < before,
        "QAT should lower the quantized model's loss: {before} -> {after}"
    );
    assert!(LayerBits::uniform(1).resolve(&m, 2..=16).is_err());
    let bad = LayerBits {
        default: 4,
        conv: None,
        per_layer: BTreeMap::from([("nope".to_string(), 4)]),
    };
    assert!(bad.resolve(&m, 2..=16).unwrap_err().to_string().contains("nope"));
}

#[test]
fn centroid_fine_tuning_keeps_codebooks_and_zeros() {
    let mut m = trained();
    let w = m.params.get_mut("fc.weight").unwrap();
    w.data_mut().iter_mut().step_by(3).for_each(|v| *v = 0.0);
    let bits = BTreeMap::from([("fc.weight".to_string(), 3u32), ("conv.weight".to_string(), 2)]);
    let sharing = Sharing::cluster(&mut m, &bits, CentroidInit::Linear, 0).unwrap();
    assert!(Sharing::distinct_values(&m, "fc.weight") <= 8);
    let before: Vec<f32> = sharing.layers["fc.weight"].centroids.clone();
    let mut hook = SharingHook {
        sharing,
        reduce: Reduce::Sum,
    };
    // Momentum and weight decay are on: members must still move together.
    fit(&mut m, &toy_data(), None, &config(2, 0.005), &mut hook).unwrap();
    assert!(Sharing::distinct_values(&m, "fc.weight") <= 8);
    assert!(Sharing::distinct_values(&m, "conv.weight") <= 4);
    assert!(m.params["fc.weight"].data().iter().step_by(3).all(|v| *v == 0.0));
    assert_ne!(
        hook.sharing.layers["fc.weight"].centroids, before,
        "centroids should train"
    );
    // Recovering the sharing from the values gives the same codebook.
    let again = Sharing::from_values(&m, ["fc.weight".to_string()].iter()).unwrap();
    let mut trained: Vec<f32> = hook.sharing.layers["fc.weight"].centroids.clone();
    trained.sort_by(f32::total_cmp);
    trained.dedup();
    assert_eq!(again.layers["fc.weight"].centroids, trained);
}

#[test]
fn a_centroid_moves_by_the_summed_gradient_of_its_cluster() {
    let mut m = trained();
    // No dropout, so that the reference gradient and the fit step see the same network.
    for n in &mut m.graph.nodes {
        if let Op::Dropout(Dropout { p }) = &mut n.op {
            *p = 0.0;
        }
    }
    let bits = BTreeMap::from([("fc.weight".to_string(), 2u32)]);
    let sharing = Sharing::cluster(&mut m, &bits, CentroidInit::Density, 0).unwrap();
    let layer = sharing.layers["fc.weight"].clone();
    let data = toy_data();
    let batch = batches(&data, &m, 1).remove(0);
    let terms = [LossTerm::CrossEntropy {
        labels: batch.labels.clone(),
        weight: 1.0,
    }];
    let g = train_step(&m, &batch.x, &terms, &Reparams::new(), &[], 0)
        .unwrap()
        .grads;
    let mut expected = layer.centroids.clone();
    for (gv, a) in g["fc.weight"].data().iter().zip(&layer.assignment) {
        expected[a.unwrap() as usize] -= 0.01 * gv;
    }
    // One plain SGD step (no momentum, no decay) on that batch.
    let cfg = FitConfig {
        epochs: 1,
        batch_size: 40,
        optimizer: OptimizerConfig::sgd(0.0, 0.0),
        schedule: Schedule::constant(0.01),
        ..config(1, 0.01)
    };
    let one = pare::data::InMemory::new(
        vec![1, 8, 8],
        3,
        (0..40).flat_map(|i| data.image(i).to_vec()).collect(),
        (0..40).map(|i| data.label(i)).collect(),
    )
    .unwrap();
    let mut hook = SharingHook {
        sharing,
        reduce: Reduce::Sum,
    };
    fit(&mut m, &one, None, &cfg, &mut hook).unwrap();
    for (c, e) in hook.sharing.layers["fc.weight"].centroids.iter().zip(&expected) {
        assert!((c - e).abs() < 1e-4, "{c} vs {e}");
    }
}

/// A transformer's attention projections are layer weights like any Linear's: quantized,
/// pruned and shared, each row (an output unit) with its own per-channel scale.
#[test]
fn attention_projections_are_layer_weights() {
    let vit = Model::init(pare::zoo::ZooModel::Vit.build(&[1, 28, 28], 10).unwrap(), 0).unwrap();
    let weights: Vec<String> = vit.layer_weights().into_iter().map(|(_, w)| w).collect();
    for w in [
        "blocks.0.att.in_proj_weight",
        "blocks.0.att.out_proj.weight",
        "blocks.3.fc2.weight",
    ] {
        assert!(weights.iter().any(|x| x == w), "{w} missing from {weights:?}");
    }
    assert!(!weights
        .iter()
        .any(|w| w.contains("norm") || w.ends_with("bias") || w == "cls"));
    let bits = LayerBits {
        default: 4,
        conv: None,
        per_layer: BTreeMap::new(),
    }
    .resolve(&vit, pare::ir::quant::BITS)
    .unwrap();
    let baked = bake(&vit, &weight_reparams(&vit, &bits, true, true, true));
    let w = &baked.params["blocks.0.att.in_proj_weight"];
    for row in w.data().chunks(w.shape()[1]) {
        let mut distinct: Vec<f32> = row.to_vec();
        distinct.sort_by(f32::total_cmp);
        distinct.dedup();
        assert!(
            distinct.len() <= 16,
            "a 4-bit row has at most 16 values, got {}",
            distinct.len()
        );
    }
    assert_ne!(
        baked.params["blocks.0.att.out_proj.weight"],
        vit.params["blocks.0.att.out_proj.weight"]
    );
}
