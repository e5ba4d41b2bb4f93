//! The `hashed_linear` op.

use serde::{Deserialize, Serialize};

/// HashedNets (Chen et al. 2015): a Linear whose virtual `[out, in]` weight reads a vector
/// of `buckets` shared values through a hash of its position, with a sign hash:
/// `W[i, j] = sign(i, j) * weight[bucket(i, j)]` (see [`hashed_index`]). Only the buckets
/// (and the bias) are parameters; `seed` picks the hash, so the layer is the same after
/// saving and loading.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HashedLinear {
    pub in_features: usize,
    pub out_features: usize,
    pub buckets: usize,
    pub seed: u64,
    pub bias: bool,
}
