//! Distillation: every loss term against PyTorch on hand-made inputs
//! (`reference/distill_losses.py`), shape mismatches as clear errors, the teacher untouched,
//! regressors grafted and removed, mutual learning and ensembles on small generated data.

use pare::data::{Augment, Dataset};
use pare::distill::cache::CacheKey;
use pare::distill::dml::DmlHook;
use pare::distill::{add_regressor, ensemble_accuracy, DistillHook, Feature, FeatureKind, Objective};
use pare::exec::{infer, train_step, LossTerm};
use pare::ir::graph::ops::linear;
use pare::ir::{GraphBuilder, Model, Op, Reparams, Tensor};
use pare::train::{evaluate, fit, FitConfig, NoHooks, OptimizerConfig, Schedule};

mod common;
use common::{toy_data, toy_model};

fn config(epochs: usize, seed: u64) -> FitConfig {
    FitConfig {
        epochs,
        batch_size: 32,
        schedule: Schedule::constant(0.05),
        seed,
        eval_batch_size: 64,
        ..Default::default()
    }
}

fn teacher() -> Model {
    let mut t = toy_model(7);
    fit(&mut t, &toy_data(), None, &config(4, 1), &mut NoHooks).unwrap();
    t
}

struct Reference {
    shape: Vec<usize>,
    x: Vec<f32>,
    t_same: Vec<f32>,
    t_wide: Vec<f32>,
    values: serde_json::Value,
}

fn reference() -> Reference {
    let text = include_str!("reference/distill_losses.json");
    let v: serde_json::Value = serde_json::from_str(text).unwrap();
    let vec = |k: &str| -> Vec<f32> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect()
    };
    Reference {
        shape: v["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect(),
        x: vec("x"),
        t_same: vec("t_same"),
        t_wide: vec("t_wide"),
        values: v.clone(),
    }
}

/// input [3, 3, 3] -> identity "feat" (the tapped student activation is the input itself)
/// -> flatten -> linear.
fn probe() -> Model {
    let mut b = GraphBuilder::new(vec![3, 3, 3]);
    b.then("feat", Op::Identity);
    b.then("flatten", Op::Flatten);
    b.then("fc", linear(27, 2));
    Model::init(b.finish().unwrap(), 0).unwrap()
}

fn loss(term: LossTerm) -> Result<f32, String> {
    let r = reference();
    let x = Tensor::from_vec(r.shape.clone(), r.x.clone());
    train_step(&probe(), &x, &[term], &Reparams::new(), &[], 0)
        .map(|o| o.loss)
        .map_err(|e| e.to_string())
}

fn close(got: f32, key: &str) {
    let want = reference().values[key].as_f64().unwrap() as f32;
    assert!(
        (got - want).abs() <= 1e-5 + 1e-4 * want.abs(),
        "{key}: pare {got}, PyTorch {want}"
    );
}

#[test]
fn feature_losses_match_pytorch() {
    let r = reference();
    let wide = Tensor::from_vec(vec![4, 5, 3, 3], r.t_wide.clone());
    let tap = "feat".to_string();
    close(
        loss(LossTerm::FeatureMse {
            tap: tap.clone(),
            target: Tensor::from_vec(r.shape.clone(), r.t_same.clone()),
            weight: 1.0,
        })
        .unwrap(),
        "mse",
    );
    for (p, key) in [(2.0, "at_p2"), (1.0, "at_p1")] {
        let term = LossTerm::Attention {
            tap: tap.clone(),
            teacher: wide.clone(),
            p,
            weight: 1.0,
        };
        close(loss(term).unwrap(), key);
    }
    let rkd = |d: f32, a: f32| LossTerm::Relational {
        tap: tap.clone(),
        teacher: wide.clone(),
        distance_weight: d,
        angle_weight: a,
    };
    close(loss(rkd(1.0, 0.0)).unwrap(), "rkd_distance");
    close(loss(rkd(0.0, 1.0)).unwrap(), "rkd_angle");
    close(
        loss(LossTerm::Similarity {
            tap: tap.clone(),
            teacher: wide.clone(),
            weight: 1.0,
        })
        .unwrap(),
        "sp",
    );
}

#[test]
fn mismatched_shapes_are_clear_errors() {
    let r = reference();
    // A hint target with other channels needs a regressor.
    let e = loss(LossTerm::FeatureMse {
        tap: "feat".into(),
        target: Tensor::from_vec(vec![4, 5, 3, 3], r.t_wide.clone()),
        weight: 1.0,
    })
    .unwrap_err();
    assert!(e.contains("regressor") && e.contains("feat"), "{e}");
    // Attention maps need equal spatial sizes.
    let e = loss(LossTerm::Attention {
        tap: "feat".into(),
        teacher: Tensor::zeros(vec![4, 3, 2, 2]),
        p: 2.0,
        weight: 1.0,
    })
    .unwrap_err();
    assert!(e.contains("spatial"), "{e}");
    // A tap that names no node.
    let e = loss(LossTerm::Similarity {
        tap: "nope".into(),
        teacher: Tensor::zeros(vec![4, 3]),
        weight: 1.0,
    })
    .unwrap_err();
    assert!(e.contains("nope"), "{e}");
}

#[test]
fn kd_and_feature_terms_train_the_student_and_leave_the_teacher_alone() {
    let t = teacher();
    let frozen = t.params.clone();
    for objective in [
        Objective::kd(4.0, 0.9),
        Objective {
            features: vec![Feature {
                student: "conv".into(),
                teacher: "conv".into(),
                kind: FeatureKind::Attention { p: 2.0 },
                weight: 100.0,
            }],
            ..Objective::kd(4.0, 0.5)
        },
        Objective {
            features: vec![Feature {
                student: "flatten".into(),
                teacher: "flatten".into(),
                kind: FeatureKind::Similarity,
                weight: 100.0,
            }],
            ..Objective::kd(1.0, 0.0)
        },
    ] {
        let mut s = toy_model(3);
        let mut hook = DistillHook::new(t.clone(), &s, objective).unwrap();
        fit(&mut s, &toy_data(), None, &config(3, 2), &mut hook).unwrap();
        assert_eq!(hook.teacher().params, frozen, "the teacher must get no update");
        let acc = evaluate(&s, &toy_data(), 64, &Reparams::new()).unwrap().accuracy;
        assert!(acc > 0.6, "distilled student accuracy {acc}");
    }
    // Unknown layers are named.
    let bad = Objective {
        features: vec![Feature {
            student: "conv".into(),
            teacher: "conv9".into(),
            kind: FeatureKind::Hint,
            weight: 1.0,
        }],
        ..Objective::kd(1.0, 0.0)
    };
    let e = DistillHook::new(t.clone(), &toy_model(3), bad)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("conv9"), "{e}");
}

#[test]
fn a_fitnets_regressor_is_a_side_node_that_can_be_removed() {
    let t = teacher();
    let s = toy_model(3);
    // The student's conv (4 channels, 8x8) regresses onto the teacher's conv.
    let (with, name) = add_regressor(&s, "relu", &t, "conv", 0).unwrap();
    assert_eq!(name, "relu_regressor");
    let x = Tensor::from_vec(vec![2, 1, 8, 8], (0..128).map(|i| (i % 7) as f32 / 7.0).collect());
    let a = infer(&s, &x, &Reparams::new(), &[]).unwrap().output;
    let b = infer(&with, &x, &Reparams::new(), &[]).unwrap().output;
    assert_eq!(a.data(), b.data(), "a side node does not change the output");
    let back = pare::ir::rewrite::remove_side(&with, &name).unwrap();
    assert_eq!(back.graph, s.graph);
    assert_eq!(back.params.len(), s.params.len());
    // Spatial sizes that differ cannot be regressed by a 1x1 convolution.
    let e = add_regressor(&s, "pool", &t, "conv", 0)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("spatial"), "{e}");
    assert!(
        pare::ir::rewrite::remove_side(&s, "conv").is_err(),
        "a node on the path cannot be removed"
    );
}

#[test]
fn mutual_learning_trains_every_peer_and_the_ensemble_evaluates() {
    let mut p0 = toy_model(1);
    let others = vec![toy_model(2)];
    let before = evaluate(&others[0], &toy_data(), 64, &Reparams::new())
        .unwrap()
        .loss;
    let mut hook = DmlHook::new(&p0, others, OptimizerConfig::sgd(0.9, 0.0), 0);
    fit(&mut p0, &toy_data(), None, &config(3, 4), &mut hook).unwrap();
    let after = evaluate(&hook.peers[0], &toy_data(), 64, &Reparams::new())
        .unwrap()
        .loss;
    assert!(after < before * 0.8, "peer 1 should learn: {before} -> {after}");
    let acc = ensemble_accuracy(&[&p0, &hook.peers[0]], &toy_data(), 64).unwrap();
    assert!(acc > 0.6, "ensemble accuracy {acc}");
}

#[test]
fn cached_teacher_logits_give_the_same_student() {
    let t = teacher();
    let run = |cache: bool| {
        let mut s = toy_model(3);
        let mut hook = DistillHook::new(t.clone(), &s, Objective::kd(2.0, 0.7)).unwrap();
        hook.use_cache = cache;
        fit(&mut s, &toy_data(), None, &config(3, 2), &mut hook).unwrap();
        s
    };
    assert_eq!(run(true).params, run(false).params);
}

/// Four epochs over two fixed crop-and-flip views: epochs 2 and 3 revisit epochs 0 and 1.
fn two_views_four_epochs() -> FitConfig {
    let mut cfg = config(4, 2);
    cfg.augment = Augment {
        crop_padding: 1,
        hflip: true,
        views: 2,
    };
    cfg
}

#[test]
fn cached_teacher_logits_over_fixed_augmented_views_give_the_same_student() {
    // Four epochs over two fixed crop views: epochs 2 and 3 read the teacher from the cache.
    let t = teacher();
    let cfg = two_views_four_epochs();
    let run = |cache: bool| {
        let mut s = toy_model(3);
        let mut hook = DistillHook::new(t.clone(), &s, Objective::kd(2.0, 0.7)).unwrap();
        hook.use_cache = cache;
        fit(&mut s, &toy_data(), None, &cfg, &mut hook).unwrap();
        s
    };
    assert_eq!(run(true).params, run(false).params);
}

#[test]
fn teacher_logits_saved_to_a_file_replace_the_teacher_in_a_later_run() {
    let t = teacher();
    let cfg = two_views_four_epochs();
    let mut key = CacheKey::for_teacher(&t);
    key.set("seed", 2).set("views", 2);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logits.safetensors");
    let mut first = toy_model(3);
    let mut hook = DistillHook::new(t.clone(), &first, Objective::kd(2.0, 0.7)).unwrap();
    fit(&mut first, &toy_data(), None, &cfg, &mut hook).unwrap();
    hook.save_logits(&path, &key).unwrap();
    let n = toy_data().len();
    assert_eq!(hook.cached_logits(), 2 * n, "every (view, sample) once");

    // A run whose hook holds a different teacher but loads the file: it never calls that
    // teacher, so it trains the same student bit for bit.
    let mut other = t.clone();
    other
        .params
        .values_mut()
        .for_each(|p| p.data_mut().iter_mut().for_each(|v| *v = -*v));
    let mut second = toy_model(3);
    let mut hook = DistillHook::new(other, &second, Objective::kd(2.0, 0.7)).unwrap();
    assert_eq!(hook.load_logits(&path, &key).unwrap(), 2 * n);
    fit(&mut second, &toy_data(), None, &cfg, &mut hook).unwrap();
    assert_eq!(first.params, second.params);

    // Another seed (or teacher, split, augmentation) is refused, naming the field.
    let mut wrong = key.clone();
    wrong.set("seed", 3);
    let e = hook.load_logits(&path, &wrong).unwrap_err().to_string();
    assert!(e.contains("seed is 2 there, 3 here"), "{e}");
    let e = hook
        .load_logits(&path, &CacheKey::for_teacher(&toy_model(9)))
        .unwrap_err()
        .to_string();
    assert!(e.contains("teacher"), "{e}");

    // A flipped bit in the saved logits is refused, not taught from.
    let mut bytes = std::fs::read(&path).unwrap();
    *bytes.last_mut().unwrap() ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let e = hook.load_logits(&path, &key).unwrap_err().to_string();
    assert!(
        e.contains("logits.safetensors") && e.contains("checksum mismatch"),
        "{e}"
    );
}

#[test]
fn feature_losses_have_finite_gradients_on_identical_and_zero_rows() {
    // input [4] -> linear "emb" (3) -> relu -> linear: two identical samples and a zero sample
    // give zero distances and zero rows, where a naive sqrt/normalize produces NaN.
    let mut b = GraphBuilder::new(vec![4]);
    b.then("emb", linear(4, 3));
    b.then("relu", Op::Relu);
    b.then("fc", linear(3, 2));
    let m = Model::init(b.finish().unwrap(), 0).unwrap();
    let x = Tensor::from_vec(
        vec![3, 4],
        vec![1.0, 2.0, 3.0, 4.0, 1.0, 2.0, 3.0, 4.0, 0.0, 0.0, 0.0, 0.0],
    );
    let teacher = Tensor::from_vec(vec![3, 2], vec![0.5, 0.1, 0.5, 0.1, 0.0, 0.0]);
    for term in [
        LossTerm::Relational {
            tap: "emb".into(),
            teacher: teacher.clone(),
            distance_weight: 25.0,
            angle_weight: 50.0,
        },
        LossTerm::Similarity {
            tap: "relu".into(),
            teacher: teacher.clone(),
            weight: 3000.0,
        },
    ] {
        let out = train_step(&m, &x, std::slice::from_ref(&term), &Reparams::new(), &[], 0).unwrap();
        assert!(out.loss.is_finite(), "{term:?}");
        for (k, g) in &out.grads {
            assert!(
                g.data().iter().all(|v| v.is_finite()),
                "{k} has a non-finite gradient under {term:?}"
            );
        }
    }
}

#[test]
fn peer_targets_use_batch_statistics_like_the_peers_own_step() {
    // Deep mutual learning's targets: a peer's train-mode prediction (batch statistics), the
    // one its own step sees, not the eval-mode one (running statistics still near init).
    let m = toy_model(4);
    let x = pare::data::make_batch(
        &toy_data(),
        &(0..16).collect::<Vec<_>>(),
        &m.graph.input.normalize,
        None,
    )
    .x;
    let ce = LossTerm::CrossEntropy {
        labels: vec![0; 16],
        weight: 1.0,
    };
    let step = train_step(&m, &x, &[ce], &Reparams::new(), &[], 3).unwrap();
    let train_mode = pare::exec::infer_train_mode(&m, &x, 3).unwrap();
    let eval_mode = infer(&m, &x, &Reparams::new(), &[]).unwrap().output;
    let gap = |a: &Tensor, b: &Tensor| {
        a.data()
            .iter()
            .zip(b.data())
            .fold(0f32, |g, (p, q)| g.max((p - q).abs()))
    };
    assert!(
        gap(&train_mode, &step.output) < 1e-5,
        "train mode = the step's forward pass"
    );
    assert!(
        gap(&train_mode, &eval_mode) > 1e-3,
        "eval mode differs on a fresh BN model"
    );
}

/// Training runs on the toy data, recording what each run was asked for.
struct ToyRuns {
    runs: Vec<(usize, u64, bool)>,
}

impl pare::distill::staged::Train for ToyRuns {
    fn train(
        &mut self,
        model: &mut Model,
        epochs: usize,
        seed: u64,
        hook: Option<&mut dyn pare::train::Hooks>,
    ) -> pare::Result<()> {
        self.runs.push((epochs, seed, hook.is_some()));
        match hook {
            Some(h) => fit(model, &toy_data(), None, &config(epochs, seed), h)?,
            None => fit(model, &toy_data(), None, &config(epochs, seed), &mut NoHooks)?,
        };
        Ok(())
    }
}

/// The schedules of runs: FitNets (hint stage through a regressor that is gone afterwards,
/// then KD), TAKD (teacher -> assistant -> student) and generations (each taught by the one
/// before), each run with the teacher's terms and the seeds and epochs asked for; every
/// student learns the toy task.
#[test]
fn staged_methods_run_their_schedules() {
    use pare::distill::staged::{fitnets, generations, takd, Hint};
    let t = teacher();
    let acc = |m: &Model| evaluate(m, &toy_data(), 64, &Reparams::new()).unwrap().accuracy;
    let kd = Objective::kd(2.0, 0.7);

    let mut runs = ToyRuns { runs: Vec::new() };
    let hint = Hint {
        guided: "relu".into(),
        hint: "relu".into(),
        epochs: 2,
        weight: 1.0,
    };
    let s = fitnets(&mut runs, &toy_model(3), &t, &hint, kd.clone(), 3, 9).unwrap();
    assert_eq!(s.graph, toy_model(3).graph, "the regressor is removed");
    assert_eq!(runs.runs, vec![(2, 9, true), (3, 9, true)]);
    assert!(acc(&s) > 0.9, "FitNets student {}", acc(&s));

    let mut runs = ToyRuns { runs: Vec::new() };
    let (assistant, s) = takd(&mut runs, &t, toy_model(4), toy_model(5), kd.clone(), 3, 2).unwrap();
    assert_eq!(runs.runs, vec![(3, 2, true), (3, 2, true)]);
    assert!(acc(&assistant) > 0.9 && acc(&s) > 0.9);

    let mut runs = ToyRuns { runs: Vec::new() };
    let mut seen = Vec::new();
    let gens = generations(
        &mut runs,
        &t,
        &mut |g| Ok(toy_model(10 + g as u64)),
        3,
        Objective::refinery(),
        2,
        1,
        &mut |g, m| {
            seen.push((g, acc(m)));
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(gens.len(), 3);
    assert_eq!(runs.runs, vec![(2, 2, true), (2, 3, true), (2, 4, true)]);
    assert_eq!(seen.iter().map(|s| s.0).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert!(seen.iter().all(|(_, a)| *a > 0.9), "{seen:?}");
    assert_ne!(gens[0].params, gens[1].params);
}
