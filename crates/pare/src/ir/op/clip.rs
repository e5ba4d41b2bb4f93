//! The `clip` op.

use serde::{Deserialize, Serialize};

use super::rules::Rules;
use super::AxisRule;

/// `min(max(x, min), max)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Clip {
    pub min: f32,
    pub max: f32,
}

impl Rules for Clip {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let (min, max) = (self.min, self.max);
        if !(min.is_finite() && max.is_finite() && min <= max) {
            return Err(format!("clip needs finite min <= max, got {min}..{max}"));
        }
        Ok(inputs[0].to_vec())
    }

    fn axis_rule(&self, inputs: &[&[usize]], _out_rank: usize) -> AxisRule {
        AxisRule::same_axes(inputs[0].len(), &[])
    }

    fn is_elementwise(&self) -> bool {
        true
    }
}
