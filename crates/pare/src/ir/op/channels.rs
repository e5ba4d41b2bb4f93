//! How each op maps the channel axis from its inputs to its output: the local rules that
//! structured pruning's dependency analysis (`prune::deps`) closes over.

use super::shape::resolve_axis;
use super::Op;

/// How an op's channel axis ([`channel_axis`]) relates to its inputs' channels.
///
/// Structured pruning closes over these rules to find which parameter slices must be removed
/// together; see `ARCHITECTURE.md`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelRule {
    /// The op consumes its input channels through a weight and creates new output channels
    /// (Linear, dense or grouped-but-not-depthwise Conv2d). A boundary between groups.
    Transform,
    /// Output channel `c` is channel `c` of every input (elementwise ops, BN, pools, depthwise
    /// conv, Add). All inputs' channels are coupled with the output's.
    Passthrough,
    /// Output channels are the inputs' channels one after the other.
    Concat,
    /// Input channel `c` of `[C, H, W]` becomes output features `c*H*W .. (c+1)*H*W`.
    Flatten,
    /// Grouped convolution that is not depthwise: new output channels like `Transform`, and
    /// the groups must stay equal in size, so a channel goes together with the channel at the
    /// same position (slot) of every other group: on the output (one filter slot of each group)
    /// and on the input (one input slot of each group).
    Grouped { groups: usize },
    /// ShuffleNet's channel shuffle: output channel `j * groups + i` is input channel
    /// `i * (C / groups) + j`, a permutation that stays one for fewer channels when slot `j` is
    /// removed from every input group together.
    Shuffle { groups: usize },
    /// The op mixes or moves positions of its inputs' axes (normalization over features,
    /// products of activations, reshapes, broadcasting): every channel it reads or makes is
    /// fixed.
    Opaque,
}

/// The channel axis of a per-sample value of rank `rank`, the axis structured pruning removes
/// slices of: the features of a vector `[F]`, of each token of a sequence `[tokens, F]`, and the
/// channels of an image `[C, H, W]`. Other ranks have none (their values are left whole).
pub fn channel_axis(rank: usize) -> Option<usize> {
    match rank {
        1 | 3 => Some(0),
        2 => Some(1),
        _ => None,
    }
}

impl Op {
    /// How the channel axis (see [`channel_axis`]) maps from the inputs, of these per-sample
    /// shapes, to the output.
    pub fn channel_rule(&self, inputs: &[&[usize]]) -> ChannelRule {
        let rank = inputs.first().map_or(0, |x| x.len());
        let Some(ca) = channel_axis(rank) else {
            return ChannelRule::Opaque;
        };
        if inputs.iter().any(|x| channel_axis(x.len()).is_none()) {
            return ChannelRule::Opaque;
        }
        // Whether an axis attribute names the channel axis (None: out of range).
        let is_channel = |a: isize| resolve_axis(a, rank).ok().map(|a| a == ca);
        match self {
            // A Linear consumes the last axis: channels for vectors and token sequences.
            Op::Linear { .. } if rank <= 2 => ChannelRule::Transform,
            Op::Linear { .. } => ChannelRule::Opaque,
            Op::Conv2d { groups, .. } if *groups == 1 => ChannelRule::Transform,
            Op::Conv2d { .. } if self.is_depthwise() => ChannelRule::Passthrough,
            Op::Conv2d { groups, .. } => ChannelRule::Grouped { groups: *groups },
            Op::ChannelShuffle { groups } if rank == 3 => ChannelRule::Shuffle { groups: *groups },
            Op::Concat { axis } => match is_channel(*axis) {
                Some(true) => ChannelRule::Concat,
                Some(false) => ChannelRule::Passthrough,
                None => ChannelRule::Opaque,
            },
            Op::Flatten if rank == 3 => ChannelRule::Flatten,
            Op::Flatten if rank == 1 => ChannelRule::Passthrough,
            // Ops along another axis than the channels keep each channel apart.
            // Padding other axes than the channels adds positions, not channels.
            Op::Pad { pads } => match pads.get(ca) {
                Some([0, 0]) => ChannelRule::Passthrough,
                _ => ChannelRule::Opaque,
            },
            Op::Softmax { axis } | Op::Slice { axis, .. } => match is_channel(*axis) {
                Some(false) => ChannelRule::Passthrough,
                _ => ChannelRule::Opaque,
            },
            // A token of a sequence: its features are the output's channels. (Selecting a row
            // of an image would leave [C, W], whose channel axis is another.)
            Op::Select { axis, .. } if rank == 2 && is_channel(*axis) == Some(false) => {
                ChannelRule::Passthrough
            }
            Op::Select { .. } => ChannelRule::Opaque,
            Op::Mean { axes, keepdim } => {
                let reduces_channels = axes.iter().any(|a| is_channel(*a) != Some(false));
                // Without keepdim, a [T, D] token mean is [D]: the channels stay the last axis.
                if reduces_channels || (rank == 3 && !keepdim && axes.len() != 2) {
                    ChannelRule::Opaque
                } else {
                    ChannelRule::Passthrough
                }
            }
            Op::Flatten
            | Op::LayerNorm { .. }
            | Op::MatMul
            | Op::Reshape { .. }
            | Op::Transpose { .. }
            | Op::Mul
            | Op::Sub
            | Op::Div
            | Op::Parameter { .. }
            | Op::Embedding { .. }
            | Op::ChannelShuffle { .. }
            | Op::Attention { .. }
            // Its weights are read through a hash of (row, column): removing a row or a column
            // would move every later position to other buckets.
            | Op::HashedLinear { .. } => ChannelRule::Opaque,
            // Elementwise, per-channel or spatial: channel `c` in, channel `c` out. Listed
            // rather than defaulted, so that a new op must state its rule.
            Op::BatchNorm { .. }
            | Op::Relu
            | Op::Relu6
            | Op::Gelu
            | Op::Sigmoid
            | Op::Tanh
            | Op::HardSwish
            | Op::Silu
            | Op::Sign
            | Op::Abs
            | Op::Clip { .. }
            | Op::Scale { .. }
            | Op::MaxPool2d { .. }
            | Op::AvgPool2d { .. }
            | Op::GlobalAvgPool
            | Op::Add
            | Op::Dropout { .. }
            | Op::Identity
            | Op::FakeQuant { .. } => ChannelRule::Passthrough,
        }
    }
}

/// How many channels (or heads) of a node structured pruning keeps: the sizes its op
/// attributes take after the removal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kept {
    /// Channels kept of the input's channel axis (`None`: not tracked, unchanged).
    pub inputs: Option<usize>,
    /// Channels kept of the output's channel axis (`None`: unchanged).
    pub outputs: Option<usize>,
    /// Internal elements kept, attention heads (`None`: unchanged).
    pub internal: Option<usize>,
}

impl Op {
    /// The op once slices of its channel axes (or its heads) are removed, as `kept` says:
    /// weighted ops and normalizations shrink their sizes, a depthwise conv its groups with
    /// its channels, attention its head count (the head size stays). Ops without channel
    /// sizes are returned unchanged.
    pub fn shrunk(&self, kept: Kept) -> Op {
        let mut op = self.clone();
        let set = |field: &mut usize, kept: Option<usize>| *field = kept.unwrap_or(*field);
        let depthwise = self.is_depthwise();
        let head_dim = self.head_dim();
        match &mut op {
            Op::Linear {
                in_features,
                out_features,
                ..
            } => {
                set(in_features, kept.inputs);
                set(out_features, kept.outputs);
            }
            Op::Conv2d {
                in_channels,
                out_channels,
                groups,
                ..
            } => {
                set(in_channels, kept.inputs);
                set(out_channels, kept.outputs);
                if depthwise {
                    *groups = *out_channels;
                }
            }
            Op::BatchNorm { num_features, .. } => set(num_features, kept.outputs),
            Op::Attention {
                heads, head_dim: hd, ..
            } if kept.internal.is_some_and(|k| k != *heads) => {
                set(heads, kept.internal);
                *hd = Some(head_dim);
            }
            _ => {}
        }
        op
    }
}
