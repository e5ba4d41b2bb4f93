//! The `channel_shuffle` op.

use serde::{Deserialize, Serialize};

/// ShuffleNet's channel shuffle on `[C, H, W]`: the channels seen as `[groups, C / groups]`
/// and transposed, so the next grouped convolution mixes every group (Zhang et al. 2018).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelShuffle {
    pub groups: usize,
}
