//! Unstructured pruning: magnitude masks and their targets, one-shot / linear / AGP
//! schedules, the mask hook through training, the slimming penalty, learned supermasks.

use std::collections::BTreeMap;

use pare::ir::{Model, Tensor};
use pare::prune::schedule::{MaskHook, PruneSchedule, Ramp};
use pare::prune::unstructured::{magnitude_masks, WeightCriterion};
use pare::zoo::ZooModel;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

mod common;
use common::zoo;

#[test]
fn layer_sparsity_masks_hit_their_targets() {
    let m = zoo("lenet300");
    let c = WeightCriterion::LayerSparsity {
        default: 0.0,
        per_layer: BTreeMap::from([("fc1".into(), 0.92), ("fc2".into(), 0.91), ("fc3".into(), 0.74)]),
    };
    let masks = magnitude_masks(&m, &c, &[]).unwrap();
    for (l, s) in [("fc1", 0.92), ("fc2", 0.91), ("fc3", 0.74)] {
        let mk = &masks[&format!("{l}.weight")];
        let got = mk.data().iter().filter(|v| **v == 0.0).count() as f64 / mk.len() as f64;
        assert!((got - s).abs() < 1e-3, "{l}: {got}");
        // The kept weights are the largest.
        let w = &m.params[&format!("{l}.weight")];
        let max_pruned = w
            .data()
            .iter()
            .zip(mk.data())
            .filter(|(_, k)| **k == 0.0)
            .map(|(v, _)| v.abs())
            .fold(0.0, f32::max);
        let min_kept = w
            .data()
            .iter()
            .zip(mk.data())
            .filter(|(_, k)| **k == 1.0)
            .map(|(v, _)| v.abs())
            .fold(f32::MAX, f32::min);
        assert!(max_pruned <= min_kept);
    }
    let g = magnitude_masks(&m, &WeightCriterion::GlobalSparsity(0.5), &[]).unwrap();
    assert!((pare::prune::unstructured::mask_sparsity(&g) - 0.5).abs() < 1e-3);
    let q = magnitude_masks(&m, &WeightCriterion::StdQuality(1.0), &[]).unwrap();
    let s = pare::prune::unstructured::mask_sparsity(&q);
    // For a uniform distribution, |w| < std holds for 1/sqrt(3) of the weights.
    assert!((s - 0.577).abs() < 0.01, "{s}");
}

#[test]
fn agp_and_linear_ramps() {
    let s = PruneSchedule {
        ramp: Ramp::Agp,
        start: 10,
        end: 110,
        every: 10,
    };
    assert_eq!(s.fraction(5), 0.0);
    assert_eq!(s.fraction(10), 0.0);
    assert!((s.fraction(60) - 0.875).abs() < 1e-6);
    assert_eq!(s.fraction(200), 1.0);
    assert!(s.updates_at(20) && !s.updates_at(25) && s.updates_at(110) && !s.updates_at(120));
    let l = PruneSchedule {
        ramp: Ramp::Linear,
        ..s
    };
    assert!((l.fraction(60) - 0.5).abs() < 1e-6);
    let o = PruneSchedule {
        ramp: Ramp::OneShot,
        ..s
    };
    assert_eq!(o.fraction(10), 1.0);
}

#[test]
fn mask_hook_prunes_on_schedule_and_masks_stay_zero_through_training() {
    use pare::data::InMemory;
    use pare::train::{fit, FitConfig, OptimizerConfig, Schedule};
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let px: Vec<f32> = (0..128 * 784).map(|_| rng.random_range(0.0..1.0)).collect();
    let labels: Vec<u32> = (0..128).map(|i| i % 10).collect();
    let data = InMemory::new(vec![1, 28, 28], 10, px, labels).unwrap();
    let mut m = zoo("lenet300");
    let target = WeightCriterion::LayerSparsity {
        default: 0.8,
        per_layer: BTreeMap::new(),
    };
    let sched = PruneSchedule {
        ramp: Ramp::Agp,
        start: 0,
        end: 8,
        every: 2,
    };
    let mut hook = MaskHook::new(target, vec![], Some(sched), BTreeMap::new()).unwrap();
    let cfg = FitConfig {
        epochs: 4,
        batch_size: 32,
        optimizer: OptimizerConfig::sgd(0.9, 5e-4),
        schedule: Schedule::constant(0.05),
        eval_batch_size: 64,
        ..Default::default()
    };
    fit(&mut m, &data, None, &cfg, &mut hook).unwrap();
    for l in ["fc1", "fc2", "fc3"] {
        let w = &m.params[&format!("{l}.weight")];
        let mask = &hook.masks()[&format!("{l}.weight")];
        assert!(
            w.data()
                .iter()
                .zip(mask.data())
                .all(|(v, k)| *k == 1.0 || *v == 0.0),
            "{l}: a masked weight revived"
        );
        assert!(
            (w.sparsity() - 0.8).abs() < 0.01,
            "{l}: sparsity {}",
            w.sparsity()
        );
    }
}

#[test]
fn slimming_adds_the_l1_subgradient_to_bn_scales_only() {
    use pare::prune::slimming::SlimmingPenalty;
    use pare::train::Hooks;
    let mut m = zoo("vgg");
    m.params.get_mut("bn1.weight").unwrap().data_mut()[0] = -0.5;
    let mut grads: pare::ir::Params = m
        .trainable()
        .into_iter()
        .map(|n| (n.clone(), Tensor::zeros(m.params[&n].shape().to_vec())))
        .collect();
    SlimmingPenalty { lambda: 1e-3 }.on_gradients(&m, &mut grads);
    assert_eq!(grads["bn1.weight"].data()[0], -1e-3);
    assert_eq!(grads["bn1.weight"].data()[1], 1e-3);
    assert!(grads["bn1.bias"].data().iter().all(|v| *v == 0.0));
    assert!(grads["conv1.weight"].data().iter().all(|v| *v == 0.0));
}

#[test]
fn a_learned_supermask_trains_only_scores_and_selects_a_subnetwork_of_the_init() {
    use pare::data::InMemory;
    use pare::prune::supermask::scores;
    use pare::train::{evaluate, fit, FitConfig, Schedule};
    // Two classes separated by the sign of the mean pixel of an 8x8 image, seen by an MLP.
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let (mut px, mut labels) = (Vec::new(), Vec::new());
    for i in 0..256u32 {
        let c = i % 2;
        for _ in 0..64 {
            px.push(rng.random_range(0.0..0.6) + if c == 1 { 0.4 } else { 0.0 });
        }
        labels.push(c);
    }
    let data = InMemory::new(vec![1, 8, 8], 2, px, labels).unwrap();
    let graph = ZooModel::parse("mlp", Some(&[64]), 0.0)
        .unwrap()
        .build(&[1, 8, 8], 2)
        .unwrap();
    let init = Model::init(graph, 1).unwrap();
    let (mut scored, mut hook) = scores(&init, 0.5, 9).unwrap();
    let cfg = FitConfig {
        epochs: 8,
        batch_size: 32,
        schedule: Schedule::constant(0.1),
        eval_batch_size: 256,
        ..Default::default()
    };
    let reparams = pare::ir::Reparams::new();
    let before = evaluate(&hook.bake(&scored), &data, 256, &reparams).unwrap().loss;
    fit(&mut scored, &data, None, &cfg, &mut hook).unwrap();
    let net = hook.bake(&scored);
    let after = evaluate(&net, &data, 256, &reparams).unwrap();
    assert!(
        after.loss < before,
        "learning the mask lowers the loss: {before} -> {}",
        after.loss
    );
    for (_, w) in init.layer_weights() {
        let (got, orig) = (net.params[&w].data(), init.params[&w].data());
        // Half of each layer, every kept value exactly its initial value.
        let kept = got.iter().filter(|v| **v != 0.0).count();
        assert!(
            (kept as f32 / got.len() as f32 - 0.5).abs() < 0.01,
            "{w}: {kept} of {}",
            got.len()
        );
        assert!(got.iter().zip(orig).all(|(g, o)| *g == 0.0 || g == o));
    }
    // Biases are frozen at their initial values.
    for (k, v) in &init.params {
        if k.ends_with(".bias") {
            assert_eq!(&net.params[k], v, "{k} moved");
        }
    }
    assert!(scores(&init, 0.0, 1).is_err());
}
