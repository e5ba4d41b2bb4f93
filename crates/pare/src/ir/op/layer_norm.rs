//! The `layer_norm` op.

use serde::{Deserialize, Serialize};

/// Layer normalization over the last axis (PyTorch's `nn.LayerNorm(dim)`): weight and bias
/// `[dim]`, biased variance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerNorm {
    pub dim: usize,
    pub eps: f64,
}
