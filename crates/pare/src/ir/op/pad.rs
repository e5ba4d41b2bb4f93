//! The `pad` op.

use serde::{Deserialize, Serialize};

use super::is_zero_f32;

/// Constant padding: `pads[i] = [before, after]` for each per-sample axis `i` (every axis
/// listed), new positions set to `value` (0 unless given; a finite number, so the lowest
/// f32 stands for the -inf a max pool pads with).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pad {
    pub pads: Vec<[usize; 2]>,
    #[serde(default, skip_serializing_if = "is_zero_f32")]
    pub value: f32,
}
