//! Pruning: dependency groups on residual, concat and depthwise graphs; removal equivalence on
//! every zoo model; surgery replay; importance criteria; masks, schedules and clear errors.
//! Transformers (heads, MLP neurons) are in `prune_attention.rs`, grouped convolutions and
//! channel shuffles in `prune_groups.rs`.

use std::collections::{BTreeMap, BTreeSet};

use pare::exec::infer;
use pare::ir::graph::ops::{bn, conv, linear};
use pare::ir::op::{BatchNorm, Concat, Conv2d, Linear, MaxPool2d};
use pare::ir::{GraphBuilder, Model, Op, Reparams, Tensor};
use pare::prune::importance::{BnGamma, Fpgm, Norm, Random};
use pare::prune::structured::{remove_groups, replay, zero_groups};
use pare::prune::unstructured::{magnitude_masks, WeightCriterion};
use pare::prune::{Amount, Criterion, DepGraph, Importance, Scope, Selection};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

mod common;
use common::{families, zoo};

/// Random BN statistics so that eval-mode BN is not the identity.
fn perturb_bn(m: &mut Model) {
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    for (name, t) in m.params.iter_mut() {
        let (lo, hi) = if name.ends_with("running_var") {
            (0.5, 1.5)
        } else {
            (-0.5, 0.5)
        };
        if name.contains("running") || name.starts_with("bn") || name.contains(".bn") || name.contains("_bn")
        {
            t.data_mut()
                .iter_mut()
                .for_each(|v| *v += rng.random_range(lo..hi));
        }
    }
}

fn input(n: usize) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    Tensor::from_vec(
        vec![n, 1, 28, 28],
        (0..n * 784).map(|_| rng.random_range(-1.0..1.0)).collect(),
    )
}

#[test]
fn residual_adds_couple_the_branches() {
    let f = families(&zoo("resnet8"));
    assert!(f.contains(&"conv1+layer1.0.conv2".to_string()), "{f:?}");
    assert!(
        f.contains(&"layer2.0.conv2+layer2.0.shortcut.0".to_string()),
        "{f:?}"
    );
    assert!(f.contains(&"layer1.0.conv1".to_string()), "{f:?}");
    assert!(
        !f.iter().any(|n| n.contains("fc")),
        "the logits are never pruned: {f:?}"
    );
}

#[test]
fn depthwise_convs_pass_channels_through() {
    let m = zoo("mobilenet");
    let f = families(&m);
    // A depthwise conv creates no channels: each family is one pointwise conv (or the stem).
    assert!(
        f.contains(&"blocks.0.pw".to_string()) && f.contains(&"conv1".to_string()),
        "{f:?}"
    );
    assert!(!f.iter().any(|n| n.contains(".dw")), "{f:?}");
    let d = DepGraph::build(&m).unwrap();
    let fam = d.family_of(&m, "blocks.1.pw").unwrap();
    let (pruned, _) = remove_groups(&m, &d, &d.families[fam].groups[..5].iter().copied().collect()).unwrap();
    let dw = pruned.graph.node("blocks.2.dw").unwrap();
    assert!(
        matches!(
            dw.op,
            Op::Conv2d(Conv2d {
                in_channels: 123,
                out_channels: 123,
                groups: 123,
                ..
            })
        ),
        "{:?}",
        dw.op
    );
}

fn concat_model() -> Model {
    let mut b = GraphBuilder::new(vec![1, 28, 28]);
    let a = b.add("a", conv(1, 3, 3, 1, 1, true), &["input"]);
    let c = b.add("b", conv(1, 2, 1, 1, 0, true), &["input"]);
    b.add("cat", Op::Concat(Concat { axis: 0 }), &[&a, &c]);
    b.then("relu", Op::Relu);
    b.then(
        "pool",
        Op::MaxPool2d(MaxPool2d {
            kernel_size: [2, 2],
            stride: [2, 2],
            padding: [0, 0],
            ceil_mode: false,
        }),
    );
    b.then("flatten", Op::Flatten);
    b.then("fc1", linear(5 * 14 * 14, 7));
    b.then("bn1", bn(7));
    b.then("fc2", linear(7, 10));
    Model::init(b.finish().unwrap(), 2).unwrap()
}

#[test]
fn concat_keeps_its_inputs_separate_and_slices_the_consumer_at_offsets() {
    let m = concat_model();
    let d = DepGraph::build(&m).unwrap();
    assert_eq!(families(&m), vec!["a", "b", "fc1"]);
    let fa = &d.families[d.family_of(&m, "a").unwrap()];
    let fb = &d.families[d.family_of(&m, "b").unwrap()];
    let remove: BTreeSet<usize> = [fa.groups[1], fb.groups[0]].into();
    let (p, s) = remove_groups(&m, &d, &remove).unwrap();
    assert_eq!(
        s.removed,
        BTreeMap::from([("a".into(), vec![1]), ("b".into(), vec![0])])
    );
    // fc1 keeps the columns of concat channels 0, 2 and 4 (a0, a2, b1), 196 features each.
    let w = &p.params["fc1.weight"];
    assert_eq!(w.shape(), &[7, 3 * 196]);
    let old = &m.params["fc1.weight"];
    assert_eq!(w.data()[196], old.data()[2 * 196]);
    assert_eq!(w.data()[2 * 196], old.data()[4 * 196]);
}

/// Zeroes a random ~30% of every family's groups, removes them, and checks the outputs agree.
fn check_equivalence(mut m: Model, what: &str) {
    perturb_bn(&mut m);
    let d = DepGraph::build(&m).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut remove = BTreeSet::new();
    for f in &d.families {
        let mut g = f.groups.clone();
        g.shuffle(&mut rng);
        remove.extend(g.into_iter().take(f.groups.len() * 3 / 10));
    }
    assert!(!remove.is_empty(), "{what}");
    zero_groups(&mut m, &d, &remove);
    let (p, _) = remove_groups(&m, &d, &remove).unwrap();
    assert!(p.num_params() < m.num_params() && p.macs() < m.macs(), "{what}");
    let x = input(3);
    let a = infer(&m, &x, &Reparams::new(), &[]).unwrap().output;
    let b = infer(&p, &x, &Reparams::new(), &[]).unwrap().output;
    let diff = a.max_abs_diff(&b);
    assert!(diff < 1e-4, "{what}: outputs differ by {diff}");
}

#[test]
fn removing_zeroed_channels_keeps_outputs_on_every_zoo_model() {
    for zm in pare::zoo::catalog() {
        check_equivalence(
            Model::init(zm.build(&[1, 28, 28], 10).unwrap(), 5).unwrap(),
            &zm.label(),
        );
    }
    check_equivalence(concat_model(), "concat");
}

#[test]
fn pruning_nothing_is_the_identity() {
    let m = zoo("resnet8");
    let sel = Selection {
        scope: Scope::PerLayer,
        amount: Amount::Ratio(0.0),
        per_layer: BTreeMap::new(),
        exclude: vec![],
        round_to: 1,
    };
    let (p, s) = pare::prune::structured(&m, &Norm { p: 1 }, &sel).unwrap();
    assert!(s.is_empty());
    assert_eq!(p, m);
}

#[test]
fn surgery_log_replays_onto_the_base_model() {
    let m = zoo("resnet8");
    let sel = Selection {
        scope: Scope::Global,
        amount: Amount::Ratio(0.4),
        per_layer: BTreeMap::new(),
        exclude: vec![],
        round_to: 1,
    };
    let (p, s) = pare::prune::structured(&m, &Fpgm, &sel).unwrap();
    assert!(s.count() > 0);
    assert_eq!(replay(&m, &s).unwrap(), p);
    let json = serde_json::to_string(&s).unwrap();
    assert_eq!(serde_json::from_str::<pare::prune::Surgery>(&json).unwrap(), s);
    // A log for another model is refused with a clear error.
    let e = replay(&zoo("lenet5"), &s).unwrap_err().to_string();
    assert!(e.contains("lacks"), "{e}");
}

#[test]
fn per_layer_ratio_and_exclusion() {
    let m = zoo("vgg");
    let sel = Selection {
        scope: Scope::PerLayer,
        amount: Amount::Ratio(0.5),
        per_layer: BTreeMap::from([("conv6".into(), 0.25)]),
        exclude: vec!["conv1".into()],
        round_to: 1,
    };
    let (p, s) = pare::prune::structured(&m, &Norm { p: 2 }, &sel).unwrap();
    assert!(!s.removed.contains_key("conv1"));
    assert_eq!(s.removed["conv2"].len(), 16);
    assert_eq!(s.removed["conv6"].len(), 32);
    assert_eq!(s.removed["fc1"].len(), 128);
    assert!(matches!(
        p.graph.node("fc1").unwrap().op,
        Op::Linear(Linear {
            in_features: 864,
            out_features: 128,
            ..
        })
    ));
}

#[test]
fn impossible_requests_get_clear_errors() {
    let m = zoo("vgg");
    let mk = |amount, exclude: Vec<String>| Selection {
        scope: Scope::PerLayer,
        amount,
        per_layer: BTreeMap::new(),
        exclude,
        round_to: 1,
    };
    let e = pare::prune::structured(&m, &Norm { p: 1 }, &mk(Amount::Ratio(1.0), vec![]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("ratio 1") && e.contains("[0, 1)"), "{e}");
    let e = pare::prune::structured(&m, &Norm { p: 1 }, &mk(Amount::Ratio(0.5), vec!["conv9".into()]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown layer 'conv9'"), "{e}");
    let e = pare::prune::structured(&m, &Norm { p: 1 }, &mk(Amount::Ratio(0.5), vec!["fc2".into()]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("'fc2' has no prunable channels"), "{e}");
    let e = pare::prune::structured(&zoo("lenet5"), &BnGamma, &mk(Amount::Ratio(0.5), vec![]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("BatchNorm"), "{e}");
    for c in [Criterion::Apoz, Criterion::Taylor] {
        let imp = c.importance(0, Vec::new());
        let e = pare::prune::structured(&m, imp.as_ref(), &mk(Amount::Ratio(0.5), vec![]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!(
                "the {} criterion needs at least one calibration batch",
                c.name()
            )),
            "{e}"
        );
    }
    let d = DepGraph::build(&m).unwrap();
    let all: BTreeSet<usize> = d.families[0].groups.iter().copied().collect();
    let e = remove_groups(&m, &d, &all).unwrap_err().to_string();
    assert!(e.contains("every channel"), "{e}");
    let e = magnitude_masks(&m, &WeightCriterion::GlobalSparsity(1.0), &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("[0, 1)"), "{e}");
}

#[test]
fn norms_rank_a_zeroed_filter_last_and_fpgm_a_median_filter() {
    let mut m = zoo("lenet5");
    let w = m.params.get_mut("conv1.weight").unwrap();
    w.data_mut()[3 * 25..4 * 25].iter_mut().for_each(|v| *v = 0.0);
    let d = DepGraph::build(&m).unwrap();
    let conv1 = m.graph.index_of("conv1").unwrap();
    for crit in [&Norm { p: 1 } as &dyn Importance, &Norm { p: 2 }] {
        let s = crit.scores(&m, &d).unwrap();
        let min = (0..20)
            .min_by(|a, b| s[&(conv1, *a)].total_cmp(&s[&(conv1, *b)]))
            .unwrap();
        assert_eq!(min, 3, "{}", crit.name());
    }
    // Make filter 5 the mean of the others: the closest to the geometric median.
    let w = m.params.get_mut("conv1.weight").unwrap();
    let mean: Vec<f32> = (0..25)
        .map(|k| {
            (0..20)
                .filter(|&f| f != 5)
                .map(|f| w.data()[f * 25 + k])
                .sum::<f32>()
                / 19.0
        })
        .collect();
    w.data_mut()[5 * 25..6 * 25].copy_from_slice(&mean);
    let s = Fpgm.scores(&m, &d).unwrap();
    let min = (0..20)
        .min_by(|a, b| s[&(conv1, *a)].total_cmp(&s[&(conv1, *b)]))
        .unwrap();
    assert_eq!(min, 5);
    let r = Random { seed: 1 };
    assert_eq!(r.scores(&m, &d).unwrap(), r.scores(&m, &d).unwrap());
}

#[test]
fn kept_channels_round_to_a_multiple() {
    let m = zoo("resnet20");
    // ResNet-20 has stages of 16, 32 and 64 channels: with 16, the first stage keeps all its
    // channels (no smaller multiple of 16 exists) and the others keep 16 or 32 (of 32), 48 (of 64).
    for (round_to, ratio) in [(8, 0.3), (16, 0.3), (16, 0.9)] {
        let sel = Selection {
            scope: Scope::PerLayer,
            amount: Amount::Ratio(ratio),
            per_layer: BTreeMap::new(),
            exclude: vec![],
            round_to,
        };
        let (p, _) = pare::prune::structured(&m, &Norm { p: 1 }, &sel).unwrap();
        let mut widths = vec![];
        for n in &p.graph.nodes {
            if let Op::Conv2d(Conv2d { out_channels, .. }) = n.op {
                assert_eq!(out_channels % round_to, 0, "{}: {out_channels}", n.name);
                widths.push(out_channels);
            }
        }
        assert!(
            widths.contains(&16) && widths.len() == 21,
            "{round_to}: {widths:?}"
        );
        assert!(
            p.num_params() < m.num_params(),
            "{round_to} {ratio}: nothing removed"
        );
    }
}

#[test]
fn folding_batch_norm_keeps_outputs_on_every_zoo_model() {
    for zm in pare::zoo::catalog() {
        let mut m = Model::init(zm.build(&[1, 28, 28], 10).unwrap(), 5).unwrap();
        perturb_bn(&mut m);
        let f = pare::fuse::fold_batch_norm(&m).unwrap();
        assert!(
            !f.graph
                .nodes
                .iter()
                .any(|n| matches!(n.op, Op::BatchNorm(BatchNorm { .. }))),
            "{}",
            zm.label()
        );
        let x = input(2);
        let d = infer(&m, &x, &Reparams::new(), &[])
            .unwrap()
            .output
            .max_abs_diff(&infer(&f, &x, &Reparams::new(), &[]).unwrap().output);
        assert!(d < 1e-4, "{}: {d}", zm.label());
    }
}

/// Every criterion parses from the name it prints (recipes and the CLI share the names), and
/// an unknown name lists the known ones.
#[test]
fn criteria_parse_from_their_names() {
    for c in Criterion::ALL {
        assert_eq!(c.name().parse::<Criterion>(), Ok(c));
        let toml_name: Criterion = serde_json::from_str(&format!("\"{}\"", c.name())).unwrap();
        assert_eq!(toml_name, c);
    }
    let e = "l3".parse::<Criterion>().unwrap_err();
    assert!(
        e.contains("'l3'") && e.contains("fpgm") && e.contains("random"),
        "{e}"
    );
}
