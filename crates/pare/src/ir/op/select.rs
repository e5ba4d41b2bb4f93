//! The `select` op.

use serde::{Deserialize, Serialize};

/// Position `index` of `axis`, the axis removed (e.g. a ViT's class token).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Select {
    pub axis: isize,
    pub index: usize,
}
