//! The `max_pool2d` op.

use serde::{Deserialize, Serialize};

use super::rules::Rules;
use super::shape::pool_shape;
use super::AxisRule;

/// Max pooling. Padding must be at most half the kernel. Floor mode (PyTorch's default), or
/// `ceil_mode`: a last, partial window where floor mode leaves input uncovered, if it
/// starts inside the input or its left padding (PyTorch's and ONNX's rule).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaxPool2d {
    pub kernel_size: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ceil_mode: bool,
}

impl Rules for MaxPool2d {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        pool_shape(
            "max_pool2d",
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
