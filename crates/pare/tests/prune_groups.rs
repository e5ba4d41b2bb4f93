//! Structured pruning of grouped convolutions and channel shuffles (ShuffleNet): the groups
//! stay equal, the shuffle's columns go whole, and where the columns cross the groups of the
//! convolution after the shuffle, each grouped filter keeps its own group's input slots.

use std::collections::{BTreeMap, BTreeSet};

use pare::exec::infer;
use pare::ir::graph::ops::{bn, conv, conv_grouped, depthwise, linear};
use pare::ir::op::{ChannelShuffle, Conv2d};
use pare::ir::{GraphBuilder, Model, Op, Reparams, Tensor};
use pare::prune::importance::Norm;
use pare::prune::structured::{remove_groups, replay, zero_groups};
use pare::prune::{Amount, DepGraph, Scope, Selection};

mod common;
use common::{assert_native_close, families, perturb_batch_norms, random};

/// A ShuffleNet-style stack: a stem of `stem` channels, grouped 1x1 convs of `groups` groups
/// (`mid` channels between them, `out` after), a channel shuffle and a depthwise conv between.
fn shuffle_model(stem: usize, mid: usize, out: usize, groups: usize) -> Model {
    let mut b = GraphBuilder::new(vec![1, 28, 28]);
    b.then("stem", conv(1, stem, 3, 2, 1, false));
    b.then("stem_bn", bn(stem));
    b.then("stem_relu", Op::Relu);
    b.then("g1", conv_grouped(stem, mid, 1, 0, 1, groups, false));
    b.then("g1_bn", bn(mid));
    b.then("g1_relu", Op::Relu);
    b.then("shuffle", Op::ChannelShuffle(ChannelShuffle { groups }));
    b.then("dw", depthwise(mid, 3, 1, 1));
    b.then("dw_bn", bn(mid));
    b.then("g2", conv_grouped(mid, out, 1, 0, 1, groups, false));
    b.then("g2_bn", bn(out));
    b.then("g2_relu", Op::Relu);
    b.then("pool", Op::GlobalAvgPool);
    b.then("flatten", Op::Flatten);
    b.then("fc", linear(out, 10));
    let mut m = Model::init(b.finish().unwrap(), 6).unwrap();
    perturb_batch_norms(&mut m);
    m
}

fn input() -> Tensor {
    random(vec![2, 1, 28, 28], 1, 1.0)
}

/// Zeroes `remove` in a copy of `m`, removes it, and checks that both give the same outputs
/// (and the native engine the training engine's); returns the pruned model.
fn removed_equals_zeroed(m: &Model, d: &DepGraph, remove: &BTreeSet<usize>) -> Model {
    let mut z = m.clone();
    zero_groups(&mut z, d, remove);
    let (p, surgery) = remove_groups(&z, d, remove).unwrap();
    let x = input();
    let (a, b) = (
        infer(&z, &x, &Reparams::new(), &[]).unwrap().output,
        infer(&p, &x, &Reparams::new(), &[]).unwrap().output,
    );
    assert!(a.max_abs_diff(&b) < 1e-4, "{}", a.max_abs_diff(&b));
    assert_native_close(&p, &x, "pruned");
    assert_eq!(replay(m, &surgery).unwrap().graph, p.graph);
    p
}

fn conv_of(m: &Model, name: &str) -> (usize, usize, usize) {
    match m.graph.node(name).unwrap().op {
        Op::Conv2d(Conv2d {
            in_channels,
            out_channels,
            groups,
            ..
        }) => (in_channels, out_channels, groups),
        _ => unreachable!(),
    }
}

/// Half of every layer's groups.
fn half() -> Selection {
    Selection {
        scope: Scope::PerLayer,
        amount: Amount::Ratio(0.5),
        per_layer: BTreeMap::new(),
        exclude: vec![],
        round_to: 1,
    }
}

/// The group holding producer `node`'s channel `c`.
fn group_with(d: &DepGraph, node: usize, c: usize) -> usize {
    (0..d.groups.len())
        .find(|&g| d.groups[g].members.contains(&(node, c)))
        .unwrap()
}

#[test]
fn grouped_convs_and_channel_shuffles_prune_by_slot() {
    let m = shuffle_model(8, 16, 24, 4);
    let d = DepGraph::build(&m).unwrap();
    // The stem's 8 channels form g1's 2 input slots (4 channels each) and g2's 24 filters its 6
    // filter slots. Between g1 and g2, with 4 groups of 4, the shuffle's column k (slot k of
    // every g1 group) lands whole in g2's group k: g2's groups stay equal only if every column
    // loses as much, and a column goes whole, so all 16 channels are one group that cannot go.
    let mut sizes: Vec<usize> = d.groups.iter().map(|g| g.members.len()).collect();
    sizes.sort_unstable();
    assert_eq!(sizes, [vec![4; 8], vec![16]].concat(), "{:?}", families(&m));
    // One input slot of g1 (stem channels 1, 3, 5, 7) zeroed, then removed: g1's weights lose
    // that slot in every group and the outputs agree.
    let stem = m.graph.index_of("stem").unwrap();
    let slot = BTreeSet::from([group_with(&d, stem, 1)]);
    assert_eq!(d.groups[*slot.first().unwrap()].members.len(), 4);
    let p = removed_equals_zeroed(&m, &d, &slot);
    assert_eq!(p.params["g1.weight"].shape(), &[16, 1, 1, 1]);

    let (p, _) = pare::prune::structured(&m, &Norm { p: 1 }, &half()).unwrap();
    assert_eq!(conv_of(&p, "stem"), (1, 4, 1));
    assert_eq!(conv_of(&p, "g1"), (4, 16, 4));
    assert_eq!(conv_of(&p, "dw"), (16, 16, 16));
    assert_eq!(conv_of(&p, "g2"), (16, 12, 4));
    assert_eq!(p.params["g1.weight"].shape(), &[16, 1, 1, 1]);
    assert_eq!(p.params["g2.weight"].shape(), &[12, 4, 1, 1]);
    assert_native_close(&p, &input(), "pruned by L1");
}

#[test]
fn crossed_slots_around_a_shuffle_go_in_equal_numbers_per_group() {
    // ShuffleNet's own case: 3 groups of 5 between g1 and g2 (the zoo's 15-channel
    // bottleneck). The shuffle keeps column j (g1's filters j, 5 + j, 10 + j) whole; after it,
    // column j is at positions 3j..3j+2, which cross g2's groups of 5: columns 0, 2 and 4 lie
    // in one group each, columns 1 and 3 in two. Joining one column from each group gives 9
    // filters that take 3 slots from every group, columns 1 and 3 together take 2 from each.
    let m = shuffle_model(6, 15, 12, 3);
    let d = DepGraph::build(&m).unwrap();
    let g1 = m.graph.index_of("g1").unwrap();
    let column = |j: usize| [j, 5 + j, 10 + j];
    let members = |g: usize| -> BTreeSet<usize> {
        d.groups[g]
            .members
            .iter()
            .filter(|&&(n, _)| n == g1)
            .map(|&(_, c)| c)
            .collect()
    };
    let (even, odd) = (group_with(&d, g1, 0), group_with(&d, g1, 1));
    assert_eq!(
        members(even),
        [0, 2, 4].into_iter().flat_map(column).collect::<BTreeSet<_>>()
    );
    assert_eq!(
        members(odd),
        [1, 3].into_iter().flat_map(column).collect::<BTreeSet<_>>()
    );
    assert_eq!(d.groups[even].members.len() + d.groups[odd].members.len(), 15);

    // Each removed alone: g2's filters keep different slots in each group (columns 1 and 3
    // leave slots 0-2, 1-3 and 2-4), and removal equals zeroing in both engines.
    let p = removed_equals_zeroed(&m, &d, &BTreeSet::from([odd]));
    assert_eq!(conv_of(&p, "g1"), (6, 9, 3));
    assert_eq!(conv_of(&p, "g2"), (9, 12, 3));
    assert_eq!(p.params["g2.weight"].shape(), &[12, 3, 1, 1]);
    let w = &m.params["g2.weight"];
    let kept = &p.params["g2.weight"];
    for (filter, slots) in [(0, [0, 1, 2]), (4, [1, 2, 3]), (8, [2, 3, 4])] {
        for (k, &s) in slots.iter().enumerate() {
            assert_eq!(
                kept.data()[filter * 3 + k],
                w.data()[filter * 5 + s],
                "filter {filter}"
            );
        }
    }
    let p = removed_equals_zeroed(&m, &d, &BTreeSet::from([even]));
    assert_eq!(conv_of(&p, "g2"), (6, 12, 3));

    // Per-layer L1 pruning of ShuffleNet's own graph now reaches its bottlenecks.
    let zoo = common::zoo("shufflenet");
    let (p, _) = pare::prune::structured(&zoo, &Norm { p: 1 }, &half()).unwrap();
    for unit in ["stage2.0", "stage3.1", "stage4.1"] {
        let (_, mid, _) = conv_of(&p, &format!("{unit}.gconv1"));
        let (_, full, _) = conv_of(&zoo, &format!("{unit}.gconv1"));
        assert!(mid < full && mid % 3 == 0, "{unit}: {mid} of {full}");
    }
    assert_native_close(&p, &input(), "pruned shufflenet");
}
