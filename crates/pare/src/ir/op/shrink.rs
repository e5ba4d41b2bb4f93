//! How an op's attributes shrink when structured pruning removes positions of its axes.

use super::Op;
use crate::ir::op::{Attention, BatchNorm, Conv2d, Linear, Reshape};

/// How many channels (or heads) of a node structured pruning keeps: the sizes its op
/// attributes take after the removal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kept {
    /// Channels kept of the input's channel axis (`None`: not tracked, unchanged).
    pub inputs: Option<usize>,
    /// Channels kept of the output's channel axis (`None`: unchanged).
    pub outputs: Option<usize>,
    /// Internal elements kept, attention heads (`None`: unchanged).
    pub internal: Option<usize>,
    /// The output's per-sample shape once positions of its axes are removed (`None`:
    /// unchanged): what a reshape's target becomes.
    pub shape: Option<Vec<usize>>,
}

impl Op {
    /// The op once slices of its axes (or its heads) are removed, as `kept` says: weighted
    /// ops and normalizations shrink their sizes, a depthwise conv its groups with its
    /// channels, attention its head count (the head size stays), a reshape its target shape.
    /// Ops without sizes are returned unchanged.
    pub fn shrunk(&self, kept: &Kept) -> Op {
        let mut op = self.clone();
        let set = |field: &mut usize, kept: Option<usize>| *field = kept.unwrap_or(*field);
        let depthwise = self.is_depthwise();
        let head_dim = self.head_dim();
        match &mut op {
            Op::Linear(Linear {
                in_features,
                out_features,
                ..
            }) => {
                set(in_features, kept.inputs);
                set(out_features, kept.outputs);
            }
            Op::Conv2d(Conv2d {
                in_channels,
                out_channels,
                groups,
                ..
            }) => {
                set(in_channels, kept.inputs);
                set(out_channels, kept.outputs);
                if depthwise {
                    *groups = *out_channels;
                }
            }
            Op::BatchNorm(BatchNorm { num_features, .. }) => set(num_features, kept.outputs),
            Op::Reshape(Reshape { shape }) => {
                if let Some(s) = &kept.shape {
                    shape.clone_from(s);
                }
            }
            Op::Attention(Attention {
                heads, head_dim: hd, ..
            }) if kept.internal.is_some_and(|k| k != *heads) => {
                set(heads, kept.internal);
                *hd = Some(head_dim);
            }
            _ => {}
        }
        op
    }
}
