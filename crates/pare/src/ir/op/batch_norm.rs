//! The `batch_norm` op.

use serde::{Deserialize, Serialize};

/// Batch normalization over axis 0 of the per-sample shape (1-D on `[C]`, 2-D on `[C, H, W]`),
/// with PyTorch semantics: running variance updated with the unbiased batch variance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchNorm {
    pub num_features: usize,
    pub eps: f64,
    pub momentum: f64,
}
