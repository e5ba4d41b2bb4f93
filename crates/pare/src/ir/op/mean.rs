//! The `mean` op.

use serde::{Deserialize, Serialize};

/// Mean over `axes`, kept as size 1 with `keepdim`, removed otherwise.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mean {
    pub axes: Vec<isize>,
    #[serde(default)]
    pub keepdim: bool,
}
