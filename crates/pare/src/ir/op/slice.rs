//! The `slice` op.

use serde::{Deserialize, Serialize};

use super::rules::Rules;
use super::shape::resolve_axis;
use super::AxisRule;

/// Positions `start..end` of `axis`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slice {
    pub axis: isize,
    pub start: usize,
    pub end: usize,
}

impl Rules for Slice {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let (x, start, end) = (inputs[0], self.start, self.end);
        let a = resolve_axis(self.axis, x.len())?;
        if start >= end || end > x[a] {
            return Err(format!(
                "slice {start}..{end} is empty or outside axis {a} of {x:?}"
            ));
        }
        let mut out = x.to_vec();
        out[a] = end - start;
        Ok(out)
    }

    /// Every position of the sliced axis counts (removing one would move the window).
    fn axis_rule(&self, inputs: &[&[usize]], _out_rank: usize) -> AxisRule {
        let rank = inputs[0].len();
        let fixed: Vec<usize> = resolve_axis(self.axis, rank).into_iter().collect();
        AxisRule::same_axes(rank, &fixed)
    }
}
