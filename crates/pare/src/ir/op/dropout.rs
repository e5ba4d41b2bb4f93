//! The `dropout` op.

use serde::{Deserialize, Serialize};

/// Inverted dropout; the identity in eval mode.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dropout {
    pub p: f64,
}
