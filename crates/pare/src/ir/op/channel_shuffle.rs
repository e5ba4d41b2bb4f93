//! The `channel_shuffle` op.

use serde::{Deserialize, Serialize};

use super::rules::Rules;
use super::{AxisRule, Source};

/// ShuffleNet's channel shuffle on `[C, H, W]`: the channels seen as `[groups, C / groups]`
/// and transposed, so the next grouped convolution mixes every group (Zhang et al. 2018).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelShuffle {
    pub groups: usize,
}

impl Rules for ChannelShuffle {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let (x, groups) = (inputs[0], self.groups);
        match *x {
            [c, _, _] if groups > 0 && c % groups == 0 => Ok(x.to_vec()),
            _ => Err(format!(
                "channel_shuffle with {groups} groups needs a [C, H, W] input with C a multiple of them, got {x:?}"
            )),
        }
    }

    fn axis_rule(&self, inputs: &[&[usize]], _out_rank: usize) -> AxisRule {
        let mut r = AxisRule::same_axes(inputs[0].len(), &[]);
        r.outputs[0] = Source::Shuffled {
            input: 0,
            axis: 0,
            groups: self.groups,
        };
        r
    }
}
