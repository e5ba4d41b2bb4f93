//! The `softmax` op.

use serde::{Deserialize, Serialize};

use super::rules::Rules;
use super::shape::resolve_axis;
use super::AxisRule;

/// Softmax along `axis` (negative counts from the end).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Softmax {
    pub axis: isize,
}

impl Rules for Softmax {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        resolve_axis(self.axis, inputs[0].len())?;
        Ok(inputs[0].to_vec())
    }

    /// Every position of the normalized axis counts.
    fn axis_rule(&self, inputs: &[&[usize]], _out_rank: usize) -> AxisRule {
        let rank = inputs[0].len();
        let fixed: Vec<usize> = resolve_axis(self.axis, rank).into_iter().collect();
        AxisRule::same_axes(rank, &fixed)
    }
}
