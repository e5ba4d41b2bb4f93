//! The `slice` op.

use serde::{Deserialize, Serialize};

/// Positions `start..end` of `axis`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slice {
    pub axis: isize,
    pub start: usize,
    pub end: usize,
}
