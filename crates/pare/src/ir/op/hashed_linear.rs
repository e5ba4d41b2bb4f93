//! The `hashed_linear` op.

use serde::{Deserialize, Serialize};

use super::linear::{linear_macs, linear_shape};
use super::rules::Rules;
use super::{AxisRule, ParamKind, ParamSpec};
use crate::ir::graph::MAX_ELEMENTS;

/// HashedNets (Chen et al. 2015): a Linear whose virtual `[out, in]` weight reads a vector
/// of `buckets` shared values through a hash of its position, with a sign hash:
/// `W[i, j] = sign(i, j) * weight[bucket(i, j)]` (see [`hashed_index`]). Only the buckets
/// (and the bias) are parameters; `seed` picks the hash, so the layer is the same after
/// saving and loading.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HashedLinear {
    pub in_features: usize,
    pub out_features: usize,
    pub buckets: usize,
    pub seed: u64,
    pub bias: bool,
}

impl Rules for HashedLinear {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let (i, o, b) = (self.in_features, self.out_features, self.buckets);
        // Both engines build the virtual weight in full: it must fit as a parameter does,
        // and every bucket must be read.
        if b == 0 || i.checked_mul(o).is_none_or(|v| v > MAX_ELEMENTS || b > v) {
            return Err(format!(
                "hashed_linear needs 1 to in_features x out_features buckets and at most {MAX_ELEMENTS} virtual weights, got {i} x {o} with {b} buckets"
            ));
        }
        linear_shape(inputs[0], i, o)
    }

    /// Its weights are read through a hash of (row, column): removing a row or a column
    /// would move every later position to other buckets, so the features are fixed.
    fn axis_rule(&self, inputs: &[&[usize]], _out_rank: usize) -> AxisRule {
        let rank = inputs[0].len();
        AxisRule::same_axes(rank, &[rank.saturating_sub(1)])
    }

    /// The buckets index no channel: the layer is not sliced by structured pruning.
    fn params(&self) -> Vec<ParamSpec> {
        let mut v = vec![ParamSpec::new(
            "weight",
            vec![self.buckets],
            ParamKind::Weight,
            None,
            None,
        )];
        if self.bias {
            v.push(ParamSpec::new(
                "bias",
                vec![self.out_features],
                ParamKind::Bias,
                None,
                None,
            ));
        }
        v
    }

    fn macs(&self, _inputs: &[&[usize]], output: &[usize]) -> u64 {
        linear_macs(output, self.in_features, self.out_features)
    }
}
