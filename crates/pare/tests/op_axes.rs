//! Each op's axis mapping: where every output axis's positions come from, which input
//! positions go together, the axes the weights read and make, and the unread (fixed) axes.

use pare::ir::graph::ops::{bn, conv, conv_grouped, depthwise, linear, max_pool};
use pare::ir::op::{
    Attention, ChannelShuffle, Concat, HashedLinear, LayerNorm, Mean, Pad, Parameter, Reshape, Select,
    Softmax, Transpose,
};
use pare::ir::op::{Couple, Source};
use pare::ir::{AxisRule, Op};

/// An axis rule's sources in short: `i.a` is axis `a` of input `i`, `new` positions the op's
/// weights make, `-` fixed ones, `cat a` a concatenation, `i.a*b` merged axes, `i.a:k` part `k`
/// of a split, `shuf g` a channel shuffle.
fn sources(r: &AxisRule) -> String {
    r.outputs
        .iter()
        .map(|s| match s {
            Source::Input { input, axis } => format!("{input}.{axis}"),
            Source::Stacked { axis } => format!("cat{axis}"),
            Source::Made => "new".into(),
            Source::Fixed => "-".into(),
            Source::Merged { input, axes } => format!(
                "{input}.{}",
                axes.iter().map(|a| a.to_string()).collect::<Vec<_>>().join("*")
            ),
            Source::Split {
                input, axis, part, ..
            } => format!("{input}.{axis}:{part}"),
            Source::Shuffled { groups, .. } => format!("shuf{groups}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn axis_rules() {
    let img: &[usize] = &[8, 6, 6];
    let seq: &[usize] = &[5, 8];
    let mean = |axes: Vec<isize>, keepdim| Op::Mean(Mean { axes, keepdim });
    let pad = |pads: Vec<[usize; 2]>| Op::Pad(Pad { pads, value: 0.0 });
    let hashed = Op::HashedLinear(HashedLinear {
        in_features: 8,
        out_features: 4,
        buckets: 4,
        seed: 0,
        bias: true,
    });
    let att = Op::Attention(Attention {
        dim: 8,
        heads: 2,
        head_dim: None,
    });
    let rules: Vec<(Op, Vec<&[usize]>, &str)> = vec![
        (conv(3, 8, 3, 1, 1, true), vec![&[3, 6, 6]], "new - -"),
        (depthwise(8, 3, 1, 1), vec![img], "0.0 - -"),
        (conv_grouped(8, 8, 3, 1, 1, 2, false), vec![img], "new - -"),
        (
            Op::ChannelShuffle(ChannelShuffle { groups: 4 }),
            vec![img],
            "shuf4 0.1 0.2",
        ),
        (bn(8), vec![img], "0.0 0.1 0.2"),
        (max_pool(2, 2), vec![img], "0.0 - -"),
        (Op::GlobalAvgPool, vec![img], "0.0 - -"),
        (Op::Add, vec![img, img], "0.0 0.1 0.2"),
        (Op::Mul, vec![img, &[8, 1, 1]], "0.0 0.1 0.2"),
        (Op::Mul, vec![&[6], img], "1.0 1.1 0.0"),
        (Op::Concat(Concat { axis: 0 }), vec![img, img], "cat0 0.1 0.2"),
        (Op::Concat(Concat { axis: -2 }), vec![img, img], "0.0 cat1 0.2"),
        (Op::Concat(Concat { axis: 0 }), vec![seq, seq], "cat0 0.1"),
        (Op::Flatten, vec![img], "0.0*1*2"),
        (Op::Flatten, vec![seq], "0.0*1"),
        (linear(8, 4), vec![&[8]], "new"),
        (linear(8, 4), vec![seq], "0.0 new"),
        (linear(6, 4), vec![img], "0.0 0.1 new"),
        (hashed, vec![&[8]], "-"),
        (Op::Gelu, vec![seq], "0.0 0.1"),
        (Op::Relu, vec![&[2, 8, 6, 6]], "0.0 0.1 0.2 0.3"),
        (Op::Select(Select { axis: 0, index: 0 }), vec![seq], "0.1"),
        (Op::Select(Select { axis: 1, index: 0 }), vec![img], "0.0 0.2"),
        (Op::Softmax(Softmax { axis: -1 }), vec![seq], "0.0 -"),
        (Op::Softmax(Softmax { axis: 0 }), vec![seq], "- 0.1"),
        (Op::LayerNorm(LayerNorm { dim: 8, eps: 1e-5 }), vec![seq], "0.0 -"),
        (att, vec![seq], "0.0 -"),
        (mean(vec![1, 2], false), vec![img], "0.0"),
        (mean(vec![1], false), vec![img], "0.0 0.2"),
        (mean(vec![0], true), vec![seq], "- 0.1"),
        (
            Op::Reshape(Reshape { shape: vec![5, 2, 4] }),
            vec![seq],
            "0.0 0.1:0 0.1:1",
        ),
        (
            Op::Reshape(Reshape { shape: vec![1, 5, 8] }),
            vec![seq],
            "- 0.0 0.1",
        ),
        (
            Op::Reshape(Reshape {
                shape: vec![5, 3, 1, 2, 4],
            }),
            vec![&[5, 24]],
            "0.0 0.1:0 - 0.1:1 0.1:2",
        ),
        (
            Op::Reshape(Reshape { shape: vec![5, 8] }),
            vec![&[5, 2, 4]],
            "0.0 0.1*2",
        ),
        (Op::Reshape(Reshape { shape: vec![8, 5] }), vec![seq], "- -"),
        (
            Op::Transpose(Transpose { perm: vec![1, 0, 2] }),
            vec![&[5, 2, 4]],
            "0.1 0.0 0.2",
        ),
        (Op::MatMul, vec![&[2, 5, 4], &[2, 4, 3]], "0.0 0.1 1.2"),
        (pad(vec![[0, 0], [1, 1], [1, 1]]), vec![img], "0.0 - -"),
        (pad(vec![[1, 0], [0, 0], [0, 0]]), vec![img], "- 0.1 0.2"),
        (Op::Parameter(Parameter { shape: vec![5, 8] }), vec![], "- -"),
    ];
    for (op, inputs, want) in rules {
        let rule = op.axis_rule(&inputs);
        assert_eq!(sources(&rule), want, "{op:?} on {inputs:?}");
        // An axis no source, coupling or weight reads is fixed by the analysis.
        let unread: Vec<(usize, usize)> = (0..inputs.len())
            .flat_map(|i| (0..inputs[i].len()).map(move |a| (i, a)))
            .filter(|&(i, a)| !rule.reads(i, a))
            .collect();
        match op {
            Op::Softmax(Softmax { axis: -1 })
            | Op::LayerNorm(LayerNorm { .. })
            | Op::Attention(Attention { .. }) => {
                assert_eq!(unread, [(0, 1)], "{op:?}")
            }
            Op::Select(Select { axis: 1, .. }) => assert_eq!(unread, [(0, 1)]),
            Op::Mul if inputs[1] == [8, 1, 1] => assert_eq!(unread, [(1, 1), (1, 2)]),
            _ => {}
        }
    }
    // What goes together: a residual's positions, a product's shared axes, the slots of a
    // grouped convolution.
    let positions = |a, b| Couple::Positions { a, b };
    assert_eq!(
        Op::MatMul.axis_rule(&[&[2, 5, 4], &[2, 4, 3]]).couples,
        [positions((0, 0), (1, 0)), positions((0, 2), (1, 1))]
    );
    assert_eq!(
        Op::Add.axis_rule(&[seq, seq]).couples,
        [positions((0, 0), (1, 0)), positions((0, 1), (1, 1))]
    );
    let grouped = conv_grouped(8, 8, 3, 1, 1, 2, false).axis_rule(&[img]);
    assert_eq!(
        grouped.couples,
        [
            Couple::OutputGroups { axis: 0, groups: 2 },
            Couple::InputGroups {
                input: 0,
                axis: 0,
                groups: 2
            }
        ]
    );
    assert_eq!((grouped.weight_in, grouped.weight_out), (Some(0), Some(0)));
    let l = linear(8, 4).axis_rule(&[seq]);
    assert_eq!((l.weight_in, l.weight_out), (Some(1), Some(1)));
    // The parameter axes structured pruning slices.
    let p = conv(3, 8, 3, 1, 1, true).params();
    assert_eq!((p[0].out_axis, p[0].in_axis), (Some(0), Some(1)));
    assert_eq!(depthwise(8, 3, 1, 1).params()[0].in_axis, None);
}

#[test]
fn elementwise_ops_carry_every_axis() {
    for op in [Op::Silu, Op::Sign, Op::Abs, Op::Erf, Op::Relu6, Op::Identity] {
        assert_eq!(sources(&op.axis_rule(&[&[5, 4]])), "0.0 0.1", "{op:?}");
    }
}
