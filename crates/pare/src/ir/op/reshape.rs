//! The `reshape` op.

use serde::{Deserialize, Serialize};

/// The same elements in row-major order under another per-sample shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reshape {
    pub shape: Vec<usize>,
}
