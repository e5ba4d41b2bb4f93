//! The fit loop on small generated data: exact resume, reproducibility, NaN detection, masks,
//! BatchNorm running statistics, and optimizers against PyTorch reference values.

use std::collections::BTreeMap;
use std::path::Path;

use pare::data::{Augment, Dataset, InMemory};
use pare::exec::{train_step, LossTerm};
use pare::ir::graph::ops::{bn, linear};
use pare::ir::op::Dropout;
use pare::ir::{GraphBuilder, Model, Op, Params, Reparam, Reparams, Tensor};
use pare::train::{
    fit, FitConfig, Hooks, LrSchedule, NoHooks, Optimizer, OptimizerConfig, OutputLosses, Schedule, StepInfo,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

mod common;
use common::{toy_data, toy_model};

fn config(epochs: usize, checkpoint: Option<&Path>, resume: bool) -> FitConfig {
    FitConfig {
        epochs,
        batch_size: 32,
        optimizer: OptimizerConfig::sgd(0.9, 1e-4),
        schedule: Schedule {
            base_lr: 0.05,
            kind: LrSchedule::Cosine { min_lr: 0.0 },
            warmup_steps: 3,
        },
        seed: 11,
        augment: Augment {
            crop_padding: 1,
            hflip: true,
            views: 0,
        },
        eval_batch_size: 64,
        lr_scales: Default::default(),
        checkpoint: checkpoint.map(Path::to_path_buf),
        resume,
    }
}

/// Stops the run once `global_step` has been reached.
struct StopAt(usize, bool);
impl Hooks for StopAt {
    fn after_step(&mut self, _m: &mut Model, info: &StepInfo) -> pare::Result<()> {
        self.1 = info.global_step + 1 >= self.0;
        Ok(())
    }
    fn should_stop(&mut self) -> bool {
        self.1
    }
}

#[test]
fn training_learns_the_toy_task() {
    let data = toy_data();
    let mut m = toy_model(1);
    let r = fit(&mut m, &data, Some(&data), &config(4, None, false), &mut NoHooks).unwrap();
    let last = r.history.last().unwrap();
    assert!(last.val_accuracy.unwrap() > 0.9, "{last:?}");
    assert!(r.history[0].train_loss > last.train_loss);
}

#[test]
fn same_seed_same_weights() {
    let data = toy_data();
    let (mut a, mut b) = (toy_model(1), toy_model(1));
    fit(&mut a, &data, None, &config(2, None, false), &mut NoHooks).unwrap();
    fit(&mut b, &data, None, &config(2, None, false), &mut NoHooks).unwrap();
    assert_eq!(a.params, b.params);
}

#[test]
fn resume_mid_epoch_and_at_epoch_end_gives_the_uninterrupted_weights() {
    let data = toy_data();
    let dir = tempfile::tempdir().unwrap();
    let mut full = toy_model(1);
    let full_report = fit(
        &mut full,
        &data,
        Some(&data),
        &config(3, None, false),
        &mut NoHooks,
    )
    .unwrap();
    // 240 / 32 = 8 steps per epoch: stop at step 5 of epoch 1, then at the end of epoch 2.
    for stop in [5, 16] {
        let ck = dir.path().join(format!("ck{stop}.safetensors"));
        let mut part = toy_model(1);
        let r = fit(
            &mut part,
            &data,
            Some(&data),
            &config(3, Some(&ck), false),
            &mut StopAt(stop, false),
        )
        .unwrap();
        assert!(r.interrupted);
        let mut resumed = toy_model(99); // the checkpoint, not this init, must supply the weights
        let r = fit(
            &mut resumed,
            &data,
            Some(&data),
            &config(3, Some(&ck), true),
            &mut NoHooks,
        )
        .unwrap();
        assert!(!r.interrupted);
        for (name, t) in &full.params {
            let d = t.max_abs_diff(&resumed.params[name]);
            assert!(d <= 1e-6, "stop at {stop}: {name} differs by {d}");
        }
        assert_eq!(r.history.len(), 3);
        let (a, b) = (&r.history[2], &full_report.history[2]);
        assert!((a.train_loss - b.train_loss).abs() < 1e-5 && a.val_accuracy == b.val_accuracy);
    }
}

#[test]
fn resume_refuses_a_different_run() {
    let data = toy_data();
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck.safetensors");
    fit(
        &mut toy_model(1),
        &data,
        None,
        &config(1, Some(&ck), false),
        &mut NoHooks,
    )
    .unwrap();
    let mut cfg = config(2, Some(&ck), true);
    cfg.seed = 12;
    let e = fit(&mut toy_model(1), &data, None, &cfg, &mut NoHooks)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("ck.safetensors") && e.contains("different seed"),
        "{e}"
    );
    let missing = dir.path().join("none.safetensors");
    let e = fit(
        &mut toy_model(1),
        &data,
        None,
        &config(2, Some(&missing), true),
        &mut NoHooks,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("no checkpoint to resume from"), "{e}");
}

/// A checkpoint changed after pare wrote it is refused, not trained on: one flipped bit in the
/// weights (the last data byte) or a step moved past the epoch's end in its metadata.
#[test]
fn resume_refuses_a_damaged_checkpoint() {
    let data = toy_data();
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck.safetensors");
    fit(
        &mut toy_model(1),
        &data,
        None,
        &config(1, Some(&ck), false),
        &mut NoHooks,
    )
    .unwrap();
    let good = std::fs::read(&ck).unwrap();
    let resume = |bytes: &[u8]| {
        std::fs::write(&ck, bytes).unwrap();
        fit(
            &mut toy_model(1),
            &data,
            None,
            &config(2, Some(&ck), true),
            &mut NoHooks,
        )
        .unwrap_err()
        .to_string()
    };
    let mut flipped = good.clone();
    *flipped.last_mut().unwrap() ^= 0x01;
    let e = resume(&flipped);
    assert!(
        e.contains("ck.safetensors") && e.contains("checksum mismatch"),
        "{e}"
    );
    // The metadata says where the run is; a step past the epoch (8 steps of 32 here) is
    // caught by the checksum too, since it covers the metadata.
    let key = b"\\\"step\\\":0";
    let at = good
        .windows(key.len())
        .position(|w| w == key)
        .expect("the metadata holds the step");
    let mut moved = good.clone();
    moved[at + key.len() - 1] = b'9';
    let e = resume(&moved);
    assert!(e.contains("checksum mismatch"), "{e}");
}

#[test]
fn diverging_loss_stops_with_a_clear_error() {
    let data = toy_data();
    let mut cfg = config(3, None, false);
    cfg.schedule = Schedule::constant(1e9);
    let e = fit(&mut toy_model(1), &data, None, &cfg, &mut NoHooks)
        .unwrap_err()
        .to_string();
    assert!(e.contains("diverged") && e.contains("epoch 1"), "{e}");
}

#[test]
fn bad_config_is_rejected_before_training() {
    let data = toy_data();
    let mut cfg = config(1, None, false);
    cfg.batch_size = 0;
    assert!(fit(&mut toy_model(1), &data, None, &cfg, &mut NoHooks)
        .unwrap_err()
        .to_string()
        .contains("batch sizes"));
    let mut cfg = config(1, None, false);
    cfg.optimizer = OptimizerConfig::sgd(1.5, 0.0);
    assert!(fit(&mut toy_model(1), &data, None, &cfg, &mut NoHooks)
        .unwrap_err()
        .to_string()
        .contains("momentum"));
}

/// Masks the first half of `fc.weight` at forward time and re-zeroes it after every step, as
/// pruning does.
struct HalfMask(Reparams, Tensor);
impl Hooks for HalfMask {
    fn reparams(&self) -> Option<&Reparams> {
        Some(&self.0)
    }
    fn after_step(&mut self, m: &mut Model, _: &StepInfo) -> pare::Result<()> {
        let w = m.params.get_mut("fc.weight").unwrap();
        w.data_mut()
            .iter_mut()
            .zip(self.1.data())
            .for_each(|(v, k)| *v *= k);
        Ok(())
    }
}

#[test]
fn masked_weights_stay_zero_through_training_with_momentum_and_decay() {
    let data = toy_data();
    let mut m = toy_model(1);
    let n = m.params["fc.weight"].len();
    let mask = Tensor::from_vec(
        vec![3, 64],
        (0..n).map(|i| if i < n / 2 { 0.0 } else { 1.0 }).collect(),
    );
    let before = m.params["fc.weight"].clone();
    let mut hook = HalfMask(
        BTreeMap::from([("fc.weight".to_string(), vec![Reparam::Mask(mask.clone())])]),
        mask,
    );
    fit(&mut m, &data, None, &config(2, None, false), &mut hook).unwrap();
    let w = &m.params["fc.weight"];
    assert!(w.data()[..n / 2].iter().all(|v| *v == 0.0));
    assert!(w.data()[n / 2..]
        .iter()
        .zip(&before.data()[n / 2..])
        .all(|(a, b)| a != b));
}

#[test]
fn masked_positions_get_zero_gradient() {
    let m = toy_model(1);
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let x = Tensor::from_vec(
        vec![4, 1, 8, 8],
        (0..256).map(|_| rng.random_range(-1.0..1.0)).collect(),
    );
    let mask = Tensor::from_vec(vec![3, 64], (0..192).map(|i| (i % 2) as f32).collect());
    let reparams = BTreeMap::from([("fc.weight".to_string(), vec![Reparam::Mask(mask)])]);
    let terms = [LossTerm::CrossEntropy {
        labels: vec![0, 1, 2, 0],
        weight: 1.0,
    }];
    let out = train_step(&m, &x, &terms, &reparams, &[], 0).unwrap();
    let g = out.grads["fc.weight"].data();
    assert!(g.iter().step_by(2).all(|v| *v == 0.0));
    assert!(g.iter().skip(1).step_by(2).any(|v| *v != 0.0));
}

#[test]
fn batch_norm_running_stats_follow_pytorch() {
    // One BN over [4] features; one SGD step with lr ~0 so only the statistics move.
    let mut b = GraphBuilder::new(vec![2, 1, 1]);
    b.then("bn", bn(2));
    b.then("flatten", Op::Flatten);
    b.then("fc", linear(2, 2));
    let mut m = Model::init(b.finish().unwrap(), 0).unwrap();
    let xs = [1.0f32, 2.0, 3.0, 6.0, -1.0, 0.0, 5.0, 4.0]; // 4 samples x 2 channels
    let data = InMemory::new(vec![2, 1, 1], 2, xs.to_vec(), vec![0, 1, 0, 1]).unwrap();
    let mut cfg = config(1, None, false);
    cfg.batch_size = 4;
    cfg.augment = Augment::default();
    cfg.schedule = Schedule::constant(1e-12);
    fit(&mut m, &data, None, &cfg, &mut NoHooks).unwrap();
    // channel 0 sees 1, 3, -1, 5: mean 2, unbiased var 20/3; channel 1 sees 2, 6, 0, 4: mean 3, var 20/3.
    let rm = m.params["bn.running_mean"].data();
    let rv = m.params["bn.running_var"].data();
    assert!((rm[0] - 0.2).abs() < 1e-6 && (rm[1] - 0.3).abs() < 1e-6, "{rm:?}");
    let want = 0.9 + 0.1 * 20.0 / 3.0;
    assert!(
        (rv[0] - want).abs() < 1e-5 && (rv[1] - want).abs() < 1e-5,
        "{rv:?}"
    );
}

#[test]
fn optimizers_match_pytorch() {
    let text = include_str!("reference/optim_reference.json");
    let reference: BTreeMap<String, Vec<f32>> = serde_json::from_str(text).unwrap();
    let sgd = |momentum, dampening, nesterov, weight_decay| OptimizerConfig::Sgd {
        momentum,
        dampening,
        nesterov,
        weight_decay,
    };
    let adam = |weight_decay| OptimizerConfig::Adam {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay,
    };
    let cases = [
        ("sgd", sgd(0.0, 0.0, false, 0.0)),
        ("sgd_momentum_wd", sgd(0.9, 0.0, false, 0.01)),
        ("sgd_nesterov", sgd(0.9, 0.0, true, 0.0)),
        ("sgd_dampening", sgd(0.9, 0.5, false, 0.0)),
        ("adam", adam(0.0)),
        ("adam_wd", adam(0.01)),
        (
            "adamw",
            OptimizerConfig::AdamW {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.01,
            },
        ),
    ];
    for (name, cfg) in cases {
        let mut params = Params::from([("p".to_string(), Tensor::from_vec(vec![3], vec![1.0, -2.0, 3.0]))]);
        let mut opt = Optimizer::new(cfg);
        for t in 1..=5 {
            let sign = if t % 2 == 0 { 1.0 } else { -1.0 };
            let g = Tensor::from_vec(vec![3], vec![0.1 * t as f32, -0.2, 0.3 * sign]);
            opt.step(&mut params, &Params::from([("p".to_string(), g)]), 0.1);
        }
        let got = params["p"].data();
        for (a, b) in got.iter().zip(&reference[name]) {
            assert!(
                (a - b).abs() < 1e-5,
                "{name}: pare {got:?}, torch {:?}",
                reference[name]
            );
        }
    }
}

#[test]
fn schedules_are_pure_functions_of_the_step() {
    let cos = Schedule {
        base_lr: 0.1,
        kind: LrSchedule::Cosine { min_lr: 0.0 },
        warmup_steps: 10,
    };
    assert!((cos.lr(0, 10, 110) - 0.01).abs() < 1e-7);
    assert!((cos.lr(9, 10, 110) - 0.1).abs() < 1e-7);
    assert!((cos.lr(10, 10, 110) - 0.1).abs() < 1e-7);
    assert!((cos.lr(60, 10, 110) - 0.05).abs() < 1e-6);
    assert!(cos.lr(110, 10, 110).abs() < 1e-7);
    let step = Schedule {
        base_lr: 0.1,
        kind: LrSchedule::Step {
            every_epochs: 2,
            gamma: 0.1,
        },
        warmup_steps: 0,
    };
    assert!((step.lr(19, 10, 100) - 0.1).abs() < 1e-7);
    assert!((step.lr(20, 10, 100) - 0.01).abs() < 1e-7);
    assert!(Schedule::constant(-1.0).validate().is_err());
}

#[test]
fn fake_quant_reparam_matches_its_cpu_reference_and_passes_gradients() {
    let m = toy_model(1);
    let fq = pare::ir::WeightQuant {
        bits: 4,
        per_channel: true,
        symmetric: true,
    };
    let reparams = BTreeMap::from([("fc.weight".to_string(), vec![Reparam::FakeQuant(fq)])]);
    let mut baked = m.clone();
    let q = Reparam::FakeQuant(fq).apply(&m.params["fc.weight"]);
    // 4 bits per channel: at most 15 distinct values per row.
    for row in q.data().chunks(64) {
        let mut v: Vec<i64> = row.iter().map(|x| (x * 1e6) as i64).collect();
        v.sort_unstable();
        v.dedup();
        assert!(v.len() <= 15);
    }
    baked.params.insert("fc.weight".into(), q);
    let x = Tensor::from_vec(
        vec![2, 1, 8, 8],
        (0..128).map(|i| (i as f32 * 0.37).sin()).collect(),
    );
    let a = pare::exec::infer(&m, &x, &reparams, &[]).unwrap().output;
    let b = pare::exec::infer(&baked, &x, &Reparams::new(), &[])
        .unwrap()
        .output;
    assert!(a.max_abs_diff(&b) < 1e-5);
    let terms = [LossTerm::CrossEntropy {
        labels: vec![0, 1],
        weight: 1.0,
    }];
    let g = train_step(&m, &x, &terms, &reparams, &[], 0).unwrap().grads;
    assert!(
        g["fc.weight"].data().iter().any(|v| *v != 0.0),
        "STE passes gradients"
    );
}

#[test]
fn data_set_trait_objects_work_for_subsets() {
    let data: std::sync::Arc<dyn Dataset> = std::sync::Arc::new(toy_data());
    let (t, v) = pare::data::split(data.clone(), 40, 3).unwrap();
    assert_eq!((t.len(), v.len()), (200, 40));
    let (t2, _) = pare::data::split(data, 40, 3).unwrap();
    assert_eq!(
        (0..200).map(|i| t.label(i)).collect::<Vec<_>>(),
        (0..200).map(|i| t2.label(i)).collect::<Vec<_>>()
    );
}

#[test]
fn soft_target_loss_is_t_squared_scaled_cross_entropy() {
    let m = toy_model(1);
    let x = Tensor::from_vec(
        vec![2, 1, 8, 8],
        (0..128).map(|i| (i as f32 * 0.11).cos()).collect(),
    );
    let mut without_dropout = m.clone();
    without_dropout.graph.nodes.iter_mut().for_each(|n| {
        if matches!(n.op, Op::Dropout(Dropout { .. })) {
            n.op = Op::Identity;
        }
    });
    let target = Tensor::from_vec(vec![2, 3], vec![0.2, 0.5, 0.3, 0.6, 0.1, 0.3]);
    for t in [1.0f32, 4.0] {
        let terms = [LossTerm::SoftTargets {
            target: target.clone(),
            temperature: t,
            weight: 0.5,
        }];
        let got = train_step(&without_dropout, &x, &terms, &Reparams::new(), &[], 0)
            .unwrap()
            .loss;
        // Reference on the CPU from the train-mode logits: 0.5 * t^2 * mean_i -sum_c p log_softmax(z/t).
        let z = train_step(
            &without_dropout,
            &x,
            &[LossTerm::CrossEntropy {
                labels: vec![0, 0],
                weight: 1.0,
            }],
            &Reparams::new(),
            &[],
            0,
        )
        .unwrap()
        .output;
        let mut want = 0.0;
        for (row, p) in z.data().chunks(3).zip(target.data().chunks(3)) {
            let s: Vec<f32> = row.iter().map(|v| v / t).collect();
            let max = s.iter().copied().fold(f32::MIN, f32::max);
            let lse = max + s.iter().map(|v| (v - max).exp()).sum::<f32>().ln();
            want += -p.iter().zip(&s).map(|(pi, si)| pi * (si - lse)).sum::<f32>();
        }
        let want = 0.5 * t * t * want / 2.0;
        assert!((got - want).abs() < 1e-5, "T={t}: {got} vs {want}");
    }
}

/// The toy task with an early exit after the pool: the graph's second named output.
fn two_output_model(seed: u64) -> Model {
    let mut b = GraphBuilder::new(vec![1, 8, 8]);
    b.then("conv", pare::ir::graph::ops::conv(1, 4, 3, 1, 1, true));
    b.then("relu", Op::Relu);
    b.then("pool", pare::ir::graph::ops::max_pool(2, 2));
    let f = b.then("flatten", Op::Flatten);
    b.add("exit", linear(64, 3), &[&f]);
    b.add("fc1", linear(64, 16), &[&f]);
    b.then("relu2", Op::Relu);
    b.then("fc", linear(16, 3));
    b.extra_output("exit");
    Model::init(b.finish().unwrap(), seed).unwrap()
}

fn ce(labels: &[u32]) -> LossTerm {
    LossTerm::CrossEntropy {
        labels: labels.to_vec(),
        weight: 1.0,
    }
}

#[test]
fn a_two_output_graph_trains_with_two_losses_saves_and_reloads() {
    let data = toy_data();
    let init = two_output_model(1);
    // The exit's loss is its own cross-entropy: the two-term loss is the sum of both outputs'.
    let x = Tensor::from_vec(vec![6, 1, 8, 8], (0..384).map(|i| (i % 7) as f32 / 7.0).collect());
    let labels = [0, 1, 2, 0, 1, 2];
    let at_exit = LossTerm::At {
        output: "exit".into(),
        term: Box::new(ce(&labels)),
    };
    let both = train_step(&init, &x, &[ce(&labels), at_exit], &Reparams::new(), &[], 0).unwrap();
    let main = train_step(&init, &x, &[ce(&labels)], &Reparams::new(), &[], 0).unwrap();
    let exit_first = Model::new(init.graph.select_output("exit").unwrap(), init.params.clone()).unwrap();
    let exit = train_step(&exit_first, &x, &[ce(&labels)], &Reparams::new(), &[], 0).unwrap();
    assert!(
        (both.loss - main.loss - exit.loss).abs() < 1e-5,
        "{} vs {} + {}",
        both.loss,
        main.loss,
        exit.loss
    );
    assert!(main.grads["exit.weight"].data().iter().all(|g| *g == 0.0));
    assert!(both.grads["exit.weight"].max_abs_diff(&exit.grads["exit.weight"]) < 1e-6);

    // Trained jointly, both outputs learn the task; trained on the main loss alone (without
    // weight decay, which would shrink every weight), the exit head keeps its initial weights.
    let mut m = init.clone();
    let mut hook = OutputLosses::new(&m, vec![("exit".into(), 0.5)]).unwrap();
    fit(&mut m, &data, None, &config(4, None, false), &mut hook).unwrap();
    for out in ["fc", "exit"] {
        let picked = Model::new(m.graph.select_output(out).unwrap(), m.params.clone()).unwrap();
        let acc = pare::train::evaluate(&picked, &data, 64, &Reparams::new())
            .unwrap()
            .accuracy;
        assert!(acc > 0.9, "{out}: accuracy {acc}");
    }
    let mut alone = init.clone();
    let no_decay = FitConfig {
        optimizer: OptimizerConfig::sgd(0.9, 0.0),
        ..config(1, None, false)
    };
    fit(&mut alone, &data, None, &no_decay, &mut NoHooks).unwrap();
    assert_ne!(alone.params["fc.weight"], init.params["fc.weight"]);
    assert_eq!(alone.params["exit.weight"], init.params["exit.weight"]);

    // Saved and reloaded with its outputs.
    let dir = tempfile::tempdir().unwrap();
    pare::ir::io::save(&m, dir.path()).unwrap();
    let back = pare::ir::io::load(dir.path()).unwrap();
    assert_eq!(back.graph.outputs(), vec!["fc", "exit"]);
    assert_eq!(back, m);

    // Names that are not outputs are refused.
    assert!(OutputLosses::new(&m, vec![("fc1".into(), 1.0)]).is_err());
    assert!(OutputLosses::new(&m, vec![("exit".into(), f32::NAN)]).is_err());
    assert!(m.graph.select_output("relu2").is_err());
    let not_output = LossTerm::At {
        output: "fc1".into(),
        term: Box::new(ce(&labels)),
    };
    let e = train_step(&m, &x, &[not_output], &Reparams::new(), &[], 0).unwrap_err();
    assert!(e.to_string().contains("not an output"), "{e}");
}
