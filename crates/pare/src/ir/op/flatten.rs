//! The `flatten` op: `[C, H, W] -> [C * H * W]`, channel-major as in PyTorch (any rank).

use super::rules::Rules;
use super::shape::elements;
use super::{AxisRule, Source};

/// The rules of `flatten`.
pub(super) struct Flatten;

impl Rules for Flatten {
    fn has_attributes(&self) -> bool {
        false
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let x = inputs[0];
        Ok(vec![
            elements(x).ok_or_else(|| format!("flatten of {x:?} overflows"))?
        ])
    }

    /// Every axis merged; positions follow the first axis that can lose them.
    fn axis_rule(&self, inputs: &[&[usize]], _out_rank: usize) -> AxisRule {
        AxisRule {
            outputs: vec![Source::Merged {
                input: 0,
                axes: (0..inputs[0].len()).collect(),
            }],
            ..AxisRule::opaque(0)
        }
    }
}
