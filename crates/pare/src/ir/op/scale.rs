//! The `scale` op.

use serde::{Deserialize, Serialize};

use super::rules::Rules;
use super::AxisRule;

/// `x * factor` (e.g. attention's `1 / sqrt(head_dim)`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scale {
    pub factor: f64,
}

impl Rules for Scale {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        if !self.factor.is_finite() {
            return Err(format!("scale factor={} must be finite", self.factor));
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
