//! The `embedding` op.

use serde::{Deserialize, Serialize};

/// A lookup table (PyTorch's `nn.Embedding`): each integer id of the input becomes row `id`
/// of `weight` `[num_embeddings, embedding_dim]`, so `[T]` ids give `[T, embedding_dim]`.
/// Reads the graph's input, which must then be of dtype `index`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Embedding {
    pub num_embeddings: usize,
    pub embedding_dim: usize,
}
