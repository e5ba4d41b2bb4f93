//! The `attention` op.

use serde::{Deserialize, Serialize};

/// Multi-head self-attention over a `[tokens, dim]` sequence, PyTorch's
/// `nn.MultiheadAttention(dim, heads, batch_first=True)` called as `att(x, x, x)`: one input
/// projection `in_proj_weight` `[3 * dim, dim]` (query, key, value rows in that order) with
/// `in_proj_bias`, scaled dot-product softmax per head of `dim / heads` features, and the
/// output projection `out_proj.weight` `[dim, dim]` with `out_proj.bias`.
///
/// `head_dim` is `dim / heads` unless given: a model whose heads were pruned keeps fewer
/// heads of the same size, so its inner width `heads * head_dim` is below `dim` and the
/// projections are `[3 * inner, dim]` and `[dim, inner]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attention {
    pub dim: usize,
    pub heads: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<usize>,
}
