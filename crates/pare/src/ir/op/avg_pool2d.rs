//! The `avg_pool2d` op.

use serde::{Deserialize, Serialize};

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
