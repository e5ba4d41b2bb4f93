//! How each op maps the positions of its inputs' axes to its output's axes: the local rules that
//! structured pruning's dependency analysis (`prune::deps`) closes over.
//!
//! Every axis of every value is tracked, not only a channel axis: a position of an axis is
//! removable when every op on its way can lose it. A Linear makes new positions on its last
//! axis and reads its input's last axis through its weight; elementwise ops, BatchNorm and
//! transposes carry positions through; broadcasting arithmetic, residual sums, concatenation and
//! the shared axes of a matrix product couple positions of several inputs; a reshape that splits
//! `[D]` into `[heads, head_dim]` turns each run of `head_dim` positions into one position of
//! the heads axis, and merging them back repeats it. Positions an op mixes (normalization,
//! softmax, reductions, slicing, mixing reshapes) are fixed. So a multi-head attention written
//! out as projections, reshapes, transposes and matrix products has its heads pruned like the
//! fused op's.

use super::shape::resolve_axis;
use super::Op;
use crate::ir::op::{
    Attention, AvgPool2d, BatchNorm, ChannelShuffle, Clip, Concat, Conv2d, Dropout, Embedding, FakeQuant,
    HashedLinear, LayerNorm, Linear, MaxPool2d, Mean, Pad, Parameter, Reshape, Scale, Select, Slice, Softmax,
    Transpose,
};

/// Where the positions of one output axis come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Position `p` is position `p` of `axis` of input `input`.
    Input { input: usize, axis: usize },
    /// The inputs' `axis`, one input's positions after another's (concatenation).
    Stacked { axis: usize },
    /// New positions made by the op's weights, each removable by slicing them (a Linear's
    /// neurons, a convolution's filters).
    Made,
    /// New positions that cannot be removed (a convolution's spatial axes, a normalized or
    /// reduced axis, a reshape that mixes axes).
    Fixed,
    /// `axes` of input `input` flattened in row-major order (a flatten, a reshape merging
    /// heads back into features). Positions follow the first of these axes that can lose
    /// positions; the others are fixed.
    Merged { input: usize, axes: Vec<usize> },
    /// Part `part` of the axes `sizes` (row-major) that `axis` of input `input` is split into
    /// (a reshape of features into heads). One part of such a run carries the input's
    /// positions, each of its positions being every input position with that coordinate,
    /// which go together; the other parts are fixed. The analysis picks the outermost part
    /// that stays removable: the heads of `[heads, head_dim]`, and of `[3, heads, head_dim]`
    /// when one projection holds the queries, keys and values.
    Split {
        input: usize,
        axis: usize,
        sizes: Vec<usize>,
        part: usize,
    },
    /// `axis` of input `input` seen as `[groups, n / groups]` and transposed (ShuffleNet's
    /// channel shuffle): output position `j * groups + i` is input position `i * (n / groups) + j`,
    /// and slot `j` of every input group goes together so that the groups stay equal.
    Shuffled {
        input: usize,
        axis: usize,
        groups: usize,
    },
}

/// Positions that go together: removing one removes the others.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Couple {
    /// Position `p` of axis `a.1` of input `a.0` with position `p` of axis `b.1` of input
    /// `b.0` (a residual sum, broadcasting arithmetic, the shared axis of a matrix product).
    Positions { a: (usize, usize), b: (usize, usize) },
    /// The same slot of each of `groups` equal runs of `axis` of input `input` (the input side
    /// of a grouped convolution, whose groups must stay equal).
    InputSlots {
        input: usize,
        axis: usize,
        groups: usize,
    },
    /// The same slot of each of `groups` equal runs of output axis `axis` (the filters of a
    /// grouped convolution).
    OutputSlots { axis: usize, groups: usize },
}

/// An op's axis mapping for given input shapes: one [`Source`] per output axis, the couplings
/// between input positions, and the axes its parameters index. An input axis that no source,
/// coupling or weight reads is fixed: the op needs every one of its positions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AxisRule {
    pub outputs: Vec<Source>,
    pub couples: Vec<Couple>,
    /// The axis of input 0 that the op's weights read and its attributes count
    /// (`ParamSpec::in_axis` follows it): positions removed there are sliced out.
    pub weight_in: Option<usize>,
    /// The output axis that the op's parameters index (`ParamSpec::out_axis` follows it).
    pub weight_out: Option<usize>,
}

impl AxisRule {
    /// Every output axis fixed and every input position needed: an op that mixes everything.
    pub fn opaque(out_rank: usize) -> AxisRule {
        AxisRule {
            outputs: vec![Source::Fixed; out_rank],
            couples: Vec::new(),
            weight_in: None,
            weight_out: None,
        }
    }

    /// Output axis `i` is input 0's axis `i`, for every axis but those in `fixed`.
    fn same_axes(rank: usize, fixed: &[usize]) -> AxisRule {
        AxisRule {
            outputs: (0..rank)
                .map(|axis| {
                    if fixed.contains(&axis) {
                        Source::Fixed
                    } else {
                        Source::Input { input: 0, axis }
                    }
                })
                .collect(),
            couples: Vec::new(),
            weight_in: None,
            weight_out: None,
        }
    }

    /// Whether some source, coupling or weight reads `axis` of input `input`; the others are
    /// fixed.
    pub fn reads(&self, input: usize, axis: usize) -> bool {
        let from_source = self.outputs.iter().any(|s| match s {
            Source::Input { input: i, axis: a }
            | Source::Split {
                input: i, axis: a, ..
            }
            | Source::Shuffled {
                input: i, axis: a, ..
            } => (*i, *a) == (input, axis),
            Source::Stacked { axis: a } => *a == axis,
            Source::Merged { input: i, axes } => *i == input && axes.contains(&axis),
            Source::Made | Source::Fixed => false,
        });
        let coupled = self.couples.iter().any(|c| match c {
            Couple::Positions { a, b } => *a == (input, axis) || *b == (input, axis),
            Couple::InputSlots {
                input: i, axis: a, ..
            } => (*i, *a) == (input, axis),
            Couple::OutputSlots { .. } => false,
        });
        from_source || coupled || (input == 0 && self.weight_in == Some(axis))
    }
}

/// The channel axis of a per-sample value of rank `rank`, by convention: the features of a
/// vector `[F]`, of each token of a sequence `[tokens, F]`, and the channels of an image
/// `[C, H, W]`. Ops without weights report their channels there (activation statistics,
/// BatchNorm); other ranks have none.
pub fn channel_axis(rank: usize) -> Option<usize> {
    match rank {
        1 | 3 => Some(0),
        2 => Some(1),
        _ => None,
    }
}

/// How `from` reshapes into `to`: runs of input axes and of output axes with equal element
/// counts, in order (`None` when the counts differ, which shape inference already refuses).
fn reshape_runs(from: &[usize], to: &[usize]) -> Option<Vec<(Vec<usize>, Vec<usize>)>> {
    let mut runs = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < from.len() || j < to.len() {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let (mut pa, mut pb) = (1usize, 1usize);
        // At least one axis from each side, then from the side whose count is behind.
        loop {
            let take_from = i < from.len() && (a.is_empty() || (pa < pb && !b.is_empty()));
            let take_to = j < to.len() && (b.is_empty() || (pb < pa && !a.is_empty()));
            if take_from {
                pa *= from[i];
                a.push(i);
                i += 1;
            } else if take_to {
                pb *= to[j];
                b.push(j);
                j += 1;
            } else {
                break;
            }
        }
        if pa != pb {
            return None;
        }
        // Size-1 axes that only one side has left join this run.
        while i < from.len() && from[i] == 1 && to.get(j) != Some(&1) {
            a.push(i);
            i += 1;
        }
        while j < to.len() && to[j] == 1 && from.get(i) != Some(&1) {
            b.push(j);
            j += 1;
        }
        runs.push((a, b));
    }
    Some(runs)
}

/// The sources of a reshape's output axes, run by run: an axis kept as it is, an axis split
/// into several, several axes merged into one; any other regrouping mixes positions and is
/// fixed. Size-1 axes are fixed.
fn reshape_rule(from: &[usize], to: &[usize]) -> AxisRule {
    let Some(runs) = reshape_runs(from, to) else {
        return AxisRule::opaque(to.len());
    };
    let mut outputs = vec![Source::Fixed; to.len()];
    for (a, b) in runs {
        let real_in: Vec<usize> = a.iter().copied().filter(|&x| from[x] > 1).collect();
        let real_out: Vec<usize> = b.iter().copied().filter(|&y| to[y] > 1).collect();
        match (real_in.as_slice(), real_out.as_slice()) {
            ([x], [y]) => outputs[*y] = Source::Input { input: 0, axis: *x },
            ([x], [_, _, ..]) => {
                let sizes: Vec<usize> = real_out.iter().map(|&y| to[y]).collect();
                for (part, &y) in real_out.iter().enumerate() {
                    outputs[y] = Source::Split {
                        input: 0,
                        axis: *x,
                        sizes: sizes.clone(),
                        part,
                    };
                }
            }
            ([_, _, ..], [y]) => {
                outputs[*y] = Source::Merged {
                    input: 0,
                    axes: real_in.clone(),
                }
            }
            _ => {}
        }
    }
    AxisRule {
        outputs,
        couples: Vec::new(),
        weight_in: None,
        weight_out: None,
    }
}

/// Broadcasting arithmetic: output axis `j` aligns input axes from the right; inputs whose
/// aligned axis has the output's size are coupled there, and the first of them is the source.
fn broadcast_rule(inputs: &[&[usize]]) -> AxisRule {
    let rank = inputs.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut outputs = Vec::with_capacity(rank);
    let mut couples = Vec::new();
    for j in 0..rank {
        let aligned: Vec<(usize, usize)> = inputs
            .iter()
            .enumerate()
            .filter_map(|(i, s)| (j + s.len()).checked_sub(rank).map(|a| (i, a)))
            .collect();
        let size = aligned.iter().map(|&(i, a)| inputs[i][a]).max().unwrap_or(1);
        let full: Vec<(usize, usize)> = aligned
            .into_iter()
            .filter(|&(i, a)| inputs[i][a] == size)
            .collect();
        match full.first() {
            Some(&(input, axis)) => {
                outputs.push(Source::Input { input, axis });
                couples.extend(
                    full[1..]
                        .iter()
                        .map(|&b| Couple::Positions { a: (input, axis), b }),
                );
            }
            None => outputs.push(Source::Fixed),
        }
    }
    AxisRule {
        outputs,
        couples,
        weight_in: None,
        weight_out: None,
    }
}

impl Op {
    /// How the positions of every axis map from the inputs, of these per-sample shapes, to the
    /// output (see [`AxisRule`]). Shapes have passed shape inference.
    pub fn axis_rule(&self, inputs: &[&[usize]]) -> AxisRule {
        let shape = inputs.first().copied().unwrap_or(&[]);
        let rank = shape.len();
        let out_rank = self.output_shape(inputs).map_or(rank, |s: Vec<usize>| s.len());
        let axis = |a: isize| resolve_axis(a, rank).ok();
        let last = rank.saturating_sub(1);
        match self {
            // New features on the last axis from the input's last axis, every other axis kept.
            Op::Linear(Linear { .. }) => {
                let mut r = AxisRule::same_axes(rank, &[last]);
                r.outputs[last] = Source::Made;
                r.weight_in = Some(last);
                r.weight_out = Some(last);
                r
            }
            Op::Conv2d(Conv2d { groups, .. }) => {
                // A depthwise conv carries its channels through; its sizes still count them.
                let mut r = AxisRule::same_axes(3, &[1, 2]);
                r.weight_out = Some(0);
                r.weight_in = Some(0);
                if self.is_depthwise() {
                    return r;
                }
                r.outputs[0] = Source::Made;
                if *groups > 1 {
                    // Equal groups: a slot goes from every group at once, on both sides.
                    r.couples = vec![
                        Couple::OutputSlots {
                            axis: 0,
                            groups: *groups,
                        },
                        Couple::InputSlots {
                            input: 0,
                            axis: 0,
                            groups: *groups,
                        },
                    ];
                }
                r
            }
            Op::BatchNorm(BatchNorm { .. }) => AxisRule {
                weight_out: Some(0),
                ..AxisRule::same_axes(rank, &[])
            },
            Op::ChannelShuffle(ChannelShuffle { groups }) => {
                let mut r = AxisRule::same_axes(rank, &[]);
                r.outputs[0] = Source::Shuffled {
                    input: 0,
                    axis: 0,
                    groups: *groups,
                };
                r
            }
            // Pools make new spatial positions from windows of the old ones.
            Op::MaxPool2d(MaxPool2d { .. }) | Op::AvgPool2d(AvgPool2d { .. }) | Op::GlobalAvgPool => {
                AxisRule::same_axes(3, &[1, 2])
            }
            Op::Flatten => AxisRule {
                outputs: vec![Source::Merged {
                    input: 0,
                    axes: (0..rank).collect(),
                }],
                couples: Vec::new(),
                weight_in: None,
                weight_out: None,
            },
            Op::Reshape(Reshape { shape: to }) => reshape_rule(shape, to),
            Op::Transpose(Transpose { perm }) => AxisRule {
                outputs: perm
                    .iter()
                    .map(|&axis| Source::Input { input: 0, axis })
                    .collect(),
                couples: Vec::new(),
                weight_in: None,
                weight_out: None,
            },
            Op::Add | Op::Mul | Op::Sub | Op::Div => broadcast_rule(inputs),
            // [.., m, k] x [.., k, n]: the leading axes and k go together, m and n carry on.
            Op::MatMul => {
                let mut r = AxisRule::same_axes(rank, &[]);
                r.outputs[last] = Source::Input { input: 1, axis: last };
                r.couples = (0..rank.saturating_sub(2))
                    .map(|a| Couple::Positions { a: (0, a), b: (1, a) })
                    .chain([Couple::Positions {
                        a: (0, last),
                        b: (1, rank.saturating_sub(2)),
                    }])
                    .collect();
                r
            }
            Op::Concat(Concat { axis: a }) => match axis(*a) {
                Some(a) => {
                    let mut r = AxisRule::same_axes(rank, &[]);
                    r.outputs[a] = Source::Stacked { axis: a };
                    for i in 1..inputs.len() {
                        r.couples.extend(
                            (0..rank)
                                .filter(|&x| x != a)
                                .map(|x| Couple::Positions { a: (0, x), b: (i, x) }),
                        );
                    }
                    r
                }
                None => AxisRule::opaque(out_rank),
            },
            // Every position of a normalized, sliced or padded axis counts.
            Op::Softmax(Softmax { axis: a }) | Op::Slice(Slice { axis: a, .. }) => {
                AxisRule::same_axes(rank, &axis(*a).into_iter().collect::<Vec<_>>())
            }
            Op::LayerNorm(LayerNorm { .. }) => AxisRule::same_axes(rank, &[last]),
            Op::Pad(Pad { pads, .. }) => {
                let padded: Vec<usize> = (0..rank)
                    .filter(|&a| pads.get(a).is_some_and(|p| *p != [0, 0]))
                    .collect();
                AxisRule::same_axes(rank, &padded)
            }
            Op::Select(Select { axis: a, .. }) => match axis(*a) {
                Some(a) => AxisRule {
                    outputs: (0..rank)
                        .filter(|&x| x != a)
                        .map(|axis| Source::Input { input: 0, axis })
                        .collect(),
                    couples: Vec::new(),
                    weight_in: None,
                    weight_out: None,
                },
                None => AxisRule::opaque(out_rank),
            },
            Op::Mean(Mean { axes, keepdim }) => {
                let reduced: Vec<usize> = axes.iter().filter_map(|&a| axis(a)).collect();
                let mut r = AxisRule::same_axes(rank, &reduced);
                if !keepdim {
                    r.outputs = (0..rank)
                        .filter(|x| !reduced.contains(x))
                        .map(|axis| Source::Input { input: 0, axis })
                        .collect();
                }
                r
            }
            // Ids in, a row of the table per id: the tokens carry on, the features are the
            // table's.
            Op::Embedding(Embedding { .. }) => AxisRule {
                outputs: vec![Source::Input { input: 0, axis: 0 }, Source::Fixed],
                couples: Vec::new(),
                weight_in: None,
                weight_out: None,
            },
            // Tokens carry on; the features are mixed (the heads are the op's own channels).
            Op::Attention(Attention { .. }) => AxisRule::same_axes(rank, &[last]),
            // Its weights are read through a hash of (row, column): removing a row or a column
            // would move every later position to other buckets.
            Op::HashedLinear(HashedLinear { .. }) => AxisRule::same_axes(rank, &[last]),
            Op::Parameter(Parameter { shape }) => AxisRule::opaque(shape.len()),
            // Elementwise: every position in is the same position out. Listed rather than
            // defaulted, so that a new op must state its rule.
            Op::Relu
            | Op::Relu6
            | Op::Gelu
            | Op::Sigmoid
            | Op::Tanh
            | Op::HardSwish
            | Op::Silu
            | Op::Sign
            | Op::Abs
            | Op::Erf
            | Op::Clip(Clip { .. })
            | Op::Scale(Scale { .. })
            | Op::Dropout(Dropout { .. })
            | Op::Identity
            | Op::FakeQuant(FakeQuant { .. }) => AxisRule::same_axes(rank, &[]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reshape_runs_pair_equal_products() {
        let runs = |a: &[usize], b: &[usize]| reshape_runs(a, b).unwrap();
        assert_eq!(
            runs(&[5, 8], &[5, 2, 4]),
            vec![(vec![0], vec![0]), (vec![1], vec![1, 2])]
        );
        assert_eq!(runs(&[2, 5, 4], &[5, 8]).len(), 1);
        assert_eq!(
            runs(&[5, 2, 4], &[5, 8]),
            vec![(vec![0], vec![0]), (vec![1, 2], vec![1])]
        );
        assert_eq!(runs(&[8, 1], &[8]), vec![(vec![0, 1], vec![0])]);
        assert_eq!(runs(&[1, 8], &[8]), vec![(vec![0, 1], vec![0])]);
        assert_eq!(runs(&[6, 4], &[4, 6]), vec![(vec![0, 1], vec![0, 1])]);
        assert!(reshape_runs(&[6], &[4]).is_none());
    }

    #[test]
    fn reshapes_split_merge_or_fix() {
        let src = |from: &[usize], to: &[usize]| reshape_rule(from, to).outputs;
        let part = |part| Source::Split {
            input: 0,
            axis: 1,
            sizes: vec![2, 4],
            part,
        };
        assert_eq!(
            src(&[5, 8], &[5, 2, 4]),
            vec![Source::Input { input: 0, axis: 0 }, part(0), part(1)]
        );
        assert_eq!(src(&[5, 8], &[5, 1, 2, 4])[1], Source::Fixed);
        assert_eq!(
            src(&[5, 2, 4], &[5, 8])[1],
            Source::Merged {
                input: 0,
                axes: vec![1, 2]
            }
        );
        assert_eq!(src(&[6, 4], &[4, 6]), vec![Source::Fixed, Source::Fixed]);
    }
}
