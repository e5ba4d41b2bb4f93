//! The axis mapping each op states (`Rules::axis_rule`, in the op's own file): how the positions
//! of its inputs' axes map to its output's axes, the local rules that structured pruning's
//! dependency analysis (`prune::deps`) closes over.
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
    /// channel shuffle): output position `j * groups + i` is input position `i * (n / groups) + j`.
    /// Slot `j` of every input group (a column of the transposed view) goes together: only
    /// whole columns can go for the smaller shuffle to keep the order of what is left.
    Shuffled {
        input: usize,
        axis: usize,
        groups: usize,
    },
}

/// Positions that go together (removing one removes the others), or runs of positions that
/// lose as many each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Couple {
    /// Position `p` of axis `a.1` of input `a.0` with position `p` of axis `b.1` of input
    /// `b.0` (a residual sum, broadcasting arithmetic, the shared axis of a matrix product).
    Positions { a: (usize, usize), b: (usize, usize) },
    /// `axis` of input `input` is `groups` equal runs that must stay equal: whatever goes,
    /// goes in the same number from every run (the input side of a grouped convolution, whose
    /// filters each read their own group's kept slots).
    InputGroups {
        input: usize,
        axis: usize,
        groups: usize,
    },
    /// Output axis `axis` is `groups` equal runs that must stay equal (the filters of a
    /// grouped convolution).
    OutputGroups { axis: usize, groups: usize },
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
    pub(super) fn same_axes(rank: usize, fixed: &[usize]) -> AxisRule {
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
            Couple::InputGroups {
                input: i, axis: a, ..
            } => (*i, *a) == (input, axis),
            Couple::OutputGroups { .. } => false,
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
