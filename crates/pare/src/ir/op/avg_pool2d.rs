//! The `avg_pool2d` op.

use serde::{Deserialize, Serialize};

use super::rules::Rules;
use super::shape::pool_shape;
use super::AxisRule;

/// Average pooling; overlapping windows (e.g. 3x3 stride 2) are allowed. A window's
/// divisor counts its padding with `count_include_pad`, never the part of a ceil-mode
/// window past the padded image (PyTorch's rule).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AvgPool2d {
    pub kernel_size: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub count_include_pad: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ceil_mode: bool,
}

impl Rules for AvgPool2d {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        pool_shape(
            "avg_pool2d",
            inputs[0],
            self.kernel_size,
            self.stride,
            self.padding,
            self.ceil_mode,
        )
    }

    /// New spatial positions from windows of the old ones.
    fn axis_rule(&self, _inputs: &[&[usize]], _out_rank: usize) -> AxisRule {
        AxisRule::same_axes(3, &[1, 2])
    }
}
