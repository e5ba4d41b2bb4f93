//! The `linear` op.

use serde::{Deserialize, Serialize};

/// `y = x W^T + b`, weight stored `[out, in]` as in PyTorch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Linear {
    pub in_features: usize,
    pub out_features: usize,
    pub bias: bool,
}
