//! The elementwise ops without attributes: `relu`, `relu6`, `gelu`, `sigmoid`, `tanh`,
//! `hard_swish`, `silu`, `sign`, `abs`, `erf`, `identity`. They share every rule (the shape and
//! every position carry through); each engine gives each its own kernel.

use super::rules::Rules;
use super::AxisRule;

/// The rules of the attribute-free elementwise ops.
pub(super) struct Elementwise;

impl Rules for Elementwise {
    fn has_attributes(&self) -> bool {
        false
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        Ok(inputs[0].to_vec())
    }

    fn axis_rule(&self, inputs: &[&[usize]], _out_rank: usize) -> AxisRule {
        AxisRule::same_axes(inputs[0].len(), &[])
    }

    fn is_elementwise(&self) -> bool {
        true
    }
}
