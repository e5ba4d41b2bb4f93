//! The `concat` op.

use serde::{Deserialize, Serialize};

use super::is_zero;

/// Concatenation of two or more inputs along `axis` of the per-sample shape (0, the channel
/// axis of images, by default; negative counts from the end).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Concat {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub axis: isize,
}
