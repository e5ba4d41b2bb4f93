//! Early exits: heads leave the backbone as it was; with every threshold at "never" the exit
//! model equals the original exactly; the native engine's early-exit run takes the decisions the
//! simulation on the training engine's logits takes, and its regrouped batches compute what the
//! full pass computes; heads train on a frozen backbone; exits survive save and load.

mod common;

use common::{toy_data, toy_model, zoo};
use pare::data::{Dataset, InMemory};
use pare::exits::{
    attach, choose, exit_costs, simulate, sweep, train_frozen, Exit, ExitLogits, Head, Policy, Rule,
    SelfDistill, Target,
};
use pare::ir::{Model, Reparams, Tensor};
use pare::native::{compile, compile_exits};
use pare::train::{FitConfig, NoHooks, OptimizerConfig, Schedule};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const TAPS: [&str; 3] = ["layer2.0.relu2", "layer1.0.relu2", "flatten"];

fn images(n: usize, seed: u64) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Tensor::from_vec(
        vec![n, 1, 28, 28],
        (0..n * 784).map(|_| rng.random_range(-1.0..2.0)).collect(),
    )
}

fn with_exits() -> (Model, Model, Vec<Exit>) {
    let base = zoo("resnet8");
    let taps: Vec<String> = TAPS.iter().map(|s| s.to_string()).collect();
    let (m, exits) = attach(&base, &taps, Head { hidden: 0 }, 7).unwrap();
    (base, m, exits)
}

fn names(exits: &[Exit]) -> Vec<String> {
    exits.iter().map(|e| e.output.clone()).collect()
}

#[test]
fn heads_are_grafted_in_graph_order_and_leave_the_backbone_alone() {
    let (base, m, exits) = with_exits();
    let taps: Vec<&str> = exits.iter().map(|e| e.tap.as_str()).collect();
    assert_eq!(taps, ["layer1.0.relu2", "layer2.0.relu2", "flatten"]);
    assert_eq!(names(&exits), ["exits.0.fc", "exits.1.fc", "exits.2.fc"]);
    assert_eq!(m.graph.extra_outputs, names(&exits));
    assert_eq!(Exit::of(&m), exits);
    // Images are pooled to about 4x4 before the head's Linear; a vector tap feeds it directly.
    let shapes = m.shapes();
    assert_eq!(shapes.of(&m.graph, "exits.0.pool"), [16, 4, 4]);
    assert_eq!(shapes.of(&m.graph, "exits.1.pool"), [32, 3, 3]);
    assert_eq!(exits[2].features, "flatten");
    for (k, v) in &base.params {
        assert_eq!(&m.params[k], v, "{k}");
    }
    let x = images(5, 1);
    let y0 = pare::exec::infer(&base, &x, &Reparams::new(), &[])
        .unwrap()
        .output;
    let y1 = pare::exec::infer(&m, &x, &Reparams::new(), &[]).unwrap().output;
    assert_eq!(y0, y1);

    let dir = tempfile::tempdir().unwrap();
    pare::ir::io::save(&m, dir.path()).unwrap();
    let back = pare::ir::io::load(dir.path()).unwrap();
    assert_eq!(back, m);
    assert_eq!(Exit::of(&back), exits);

    let bad = |taps: &[&str]| {
        let t: Vec<String> = taps.iter().map(|s| s.to_string()).collect();
        attach(&base, &t, Head { hidden: 0 }, 0).unwrap_err().to_string()
    };
    assert!(bad(&["layer9"]).contains("layer9"), "{}", bad(&["layer9"]));
    assert!(bad(&["flatten", "flatten"]).contains("twice"));
    assert!(bad(&["fc"]).contains("output"));
    assert!(bad(&[]).contains("no exit"));
    let again = attach(&m, &["conv1".to_string()], Head { hidden: 0 }, 0).unwrap_err();
    assert!(again.to_string().contains("already has exit heads"), "{again}");
}

#[test]
fn never_exiting_equals_the_original_model_exactly() {
    let (base, m, exits) = with_exits();
    let x = images(7, 2);
    let want = compile(&base).unwrap().run(&x).unwrap();
    let plan = compile_exits(&m, &names(&exits)).unwrap();
    for rule in Rule::ALL {
        let mut d = Policy::never(rule).decider(7);
        let run = plan.run(&x, &mut |k, i, l| d.exits_here(k, i, l)).unwrap();
        assert_eq!(run.logits, want, "{rule:?}");
        assert_eq!(run.exit, vec![3; 7]);
    }
    // So does the simulation on stored logits, at the main output's full cost.
    let set = InMemory::new(
        vec![1, 28, 28],
        10,
        images(20, 3).data().to_vec(),
        (0..20).map(|i| i % 10).collect(),
    )
    .unwrap();
    let logits = ExitLogits::collect(&m, &names(&exits), &set).unwrap();
    let costs = exit_costs(&m, &names(&exits)).unwrap();
    assert_eq!(*costs.last().unwrap(), m.macs());
    assert!(costs.windows(2).all(|w| w[0] < w[1]), "{costs:?}");
    let full = simulate(Policy::never(Rule::Confidence), &logits, &costs);
    assert_eq!(full.accuracy, logits.accuracies()[3]);
    assert_eq!(full.macs, m.macs() as f64);
    assert_eq!(full.left_at, vec![0, 0, 0, 20]);
}

/// A threshold inside the widest gap between the samples' confidences near their median, so
/// rounding differences between the engines cannot flip a decision.
fn gap_threshold(mut conf: Vec<f32>) -> f32 {
    conf.sort_by(f32::total_cmp);
    let mid = conf.len() / 2;
    let lo = mid.saturating_sub(conf.len() / 4);
    let hi = (mid + conf.len() / 4).min(conf.len() - 1);
    let k = (lo..hi)
        .max_by(|&a, &b| (conf[a + 1] - conf[a]).total_cmp(&(conf[b + 1] - conf[b])))
        .unwrap();
    assert!(conf[k + 1] - conf[k] > 1e-5, "no gap to put a threshold in");
    (conf[k] + conf[k + 1]) / 2.0
}

#[test]
fn the_native_early_exit_run_decides_as_the_training_engine_simulation() {
    let (_, m, exits) = with_exits();
    let n = 64;
    let x = images(n, 4);
    let outs = names(&exits);
    // The training engine's logits of every exit, then the main output.
    let r = pare::exec::infer(&m, &x, &Reparams::new(), &outs).unwrap();
    let mut stored: Vec<Vec<f32>> = outs.iter().map(|o| r.taps[o].data().to_vec()).collect();
    stored.push(r.output.data().to_vec());
    let logits = ExitLogits {
        outputs: stored,
        classes: 10,
        labels: vec![0; n],
    };
    let costs = exit_costs(&m, &outs).unwrap();
    let softmax_max = |l: &[f32]| {
        let mx = l.iter().fold(f32::MIN, |a, &b| a.max(b));
        let s: f32 = l.iter().map(|v| (v - mx).exp()).sum();
        1.0 / s
    };
    let conf: Vec<f32> = logits.outputs[..3]
        .iter()
        .flat_map(|o| o.chunks(10).map(softmax_max))
        .collect();
    let plan = compile_exits(&m, &outs).unwrap();
    let full = compile(&m).unwrap().run_all(&x).unwrap();
    for policy in [
        Policy::new(Rule::Confidence, gap_threshold(conf)).unwrap(),
        Policy::new(Rule::Patience, 1.0).unwrap(),
    ] {
        let sim = simulate(policy, &logits, &costs);
        let mut d = policy.decider(n);
        let run = plan.run(&x, &mut |k, i, l| d.exits_here(k, i, l)).unwrap();
        let mut left_at = vec![0; 4];
        for &e in &run.exit {
            left_at[e] += 1;
        }
        assert_eq!(left_at, sim.left_at, "{policy:?}");
        let early: usize = left_at[..3].iter().sum();
        assert!(
            early > 0 && left_at[0] < n,
            "{policy:?}: {left_at:?} exercises no regrouping"
        );
        // Each sample's logits are those of its exit in the full pass (graph outputs: main
        // first, then the exits).
        for i in 0..n {
            let k = run.exit[i];
            let src = if k == 3 { &full[0] } else { &full[k + 1] };
            let want = &src.data()[i * 10..(i + 1) * 10];
            let got = &run.logits.data()[i * 10..(i + 1) * 10];
            let diff = want
                .iter()
                .zip(got)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(diff < 1e-4, "sample {i} at exit {k}: {diff}");
        }
    }
}

#[test]
fn heads_train_on_a_frozen_backbone() {
    let data = toy_data();
    let base = toy_model(3);
    let (mut m, exits) = attach(&base, &["relu".to_string()], Head { hidden: 8 }, 1).unwrap();
    let before = m.clone();
    let cfg = FitConfig {
        epochs: 6,
        batch_size: 16,
        optimizer: OptimizerConfig::sgd(0.9, 0.0),
        schedule: Schedule::constant(0.05),
        ..Default::default()
    };
    train_frozen(&mut m, &exits, &data, &cfg, None, &mut NoHooks).unwrap();
    for (k, v) in &base.params {
        assert_eq!(&m.params[k], v, "the backbone's {k} changed");
    }
    assert_ne!(m.params["exits.0.fc.weight"], before.params["exits.0.fc.weight"]);
    let outs = names(&exits);
    let before_acc = ExitLogits::collect(&before, &outs, &data).unwrap().accuracies()[0];
    let after = ExitLogits::collect(&m, &outs, &data).unwrap();
    assert!(
        after.accuracies()[0] > 0.9,
        "{before_acc} -> {:?}",
        after.accuracies()
    );

    // Thresholds are chosen on these logits: an accuracy the main output meets is met.
    let costs = exit_costs(&m, &outs).unwrap();
    let main = after.accuracies()[1];
    let pick = choose(Rule::Confidence, Target::Accuracy(main.min(0.9)), &after, &costs).unwrap();
    assert!(pick.accuracy >= main.min(0.9));
    let points = sweep(Rule::Entropy, &after, &costs);
    assert!(points.iter().all(|p| p.macs <= m.macs() as f64));
    let none = choose(Rule::Confidence, Target::Budget(0.01), &after, &costs).unwrap_err();
    assert!(none.to_string().contains("cheapest"), "{none}");
    assert_eq!(data.len(), after.labels.len());
}

/// Self-distilled heads learn the final head's predictions: with alpha = 1 and labels that are
/// pure noise, a head trained on the frozen backbone agrees with the final head far more often
/// than one trained on those labels alone.
#[test]
fn self_distilled_heads_learn_the_final_heads_predictions() {
    let data = toy_data();
    let mut base = toy_model(3);
    let cfg = FitConfig {
        epochs: 8,
        batch_size: 16,
        optimizer: OptimizerConfig::sgd(0.9, 0.0),
        schedule: Schedule::constant(0.05),
        ..Default::default()
    };
    pare::train::fit(&mut base, &data, None, &cfg, &mut NoHooks).unwrap();
    let n = data.len();
    let pixels: Vec<f32> = (0..n).flat_map(|i| data.image(i).to_vec()).collect();
    let images = pare::ir::Tensor::from_vec(vec![n, 1, 8, 8], pixels);
    let noisy = InMemory::new(
        vec![1, 8, 8],
        3,
        images.data().to_vec(),
        (0..n as u32).map(|i| (i * 7 + i / 5) % 3).collect(),
    )
    .unwrap();
    let finals = pare::native::infer(&base, &images).unwrap();
    let agreement = |distill: Option<SelfDistill>| {
        let (mut m, exits) = attach(&base, &["relu".to_string()], Head { hidden: 0 }, 1).unwrap();
        train_frozen(&mut m, &exits, &noisy, &cfg, distill, &mut NoHooks).unwrap();
        let graph = m.graph.select_output(&exits[0].output).unwrap();
        let head =
            pare::native::infer(&pare::ir::Model::new(graph, m.params.clone()).unwrap(), &images).unwrap();
        let (a, b) = (head.argmax_rows(), finals.argmax_rows());
        a.iter().zip(&b).filter(|(x, y)| x == y).count() as f64 / n as f64
    };
    let distilled = agreement(Some(SelfDistill::new(2.0, 1.0).unwrap()));
    let alone = agreement(None);
    assert!(
        distilled > 0.9 && distilled > alone + 0.3,
        "distilled {distilled}, labels alone {alone}"
    );
    assert!(SelfDistill::new(0.0, 0.5).is_err() && SelfDistill::new(2.0, 1.5).is_err());
}
