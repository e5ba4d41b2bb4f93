//! The `softmax` op.

use serde::{Deserialize, Serialize};

/// Softmax along `axis` (negative counts from the end).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Softmax {
    pub axis: isize,
}
