//! The `scale` op.

use serde::{Deserialize, Serialize};

/// `x * factor` (e.g. attention's `1 / sqrt(head_dim)`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scale {
    pub factor: f64,
}
