//! The `global_avg_pool` op: the mean over H and W, `[C, H, W] -> [C, 1, 1]` (PyTorch's
//! `AdaptiveAvgPool2d(1)`).

use super::rules::Rules;
use super::shape::image;
use super::AxisRule;

/// The rules of `global_avg_pool`.
pub(super) struct GlobalAvgPool;

impl Rules for GlobalAvgPool {
    fn has_attributes(&self) -> bool {
        false
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let (c, _, _) = image("global_avg_pool", inputs[0])?;
        Ok(vec![c, 1, 1])
    }

    fn axis_rule(&self, _inputs: &[&[usize]], _out_rank: usize) -> AxisRule {
        AxisRule::same_axes(3, &[1, 2])
    }
}
