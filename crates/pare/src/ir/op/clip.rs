//! The `clip` op.

use serde::{Deserialize, Serialize};

/// `min(max(x, min), max)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Clip {
    pub min: f32,
    pub max: f32,
}
