//! The `parameter` op.

use serde::{Deserialize, Serialize};

/// A learned tensor of per-sample shape `shape`, the same for every sample (a class token,
/// a position embedding). Its parameter `weight` is stored `[1, ..shape]`, as a PyTorch
/// `nn.Parameter` broadcast over the batch is. Takes no input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Parameter {
    pub shape: Vec<usize>,
}
