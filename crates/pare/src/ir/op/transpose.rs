//! The `transpose` op.

use serde::{Deserialize, Serialize};

/// Permutation of the per-sample axes: output axis `i` is input axis `perm[i]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transpose {
    pub perm: Vec<usize>,
}
