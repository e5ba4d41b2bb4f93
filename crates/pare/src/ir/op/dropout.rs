//! The `dropout` op.

use serde::{Deserialize, Serialize};

use super::rules::Rules;
use super::AxisRule;

/// Inverted dropout; the identity in eval mode.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dropout {
    pub p: f64,
}

impl Rules for Dropout {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        if !(0.0..1.0).contains(&self.p) {
            return Err(format!("dropout p must be in [0, 1), got {}", self.p));
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
