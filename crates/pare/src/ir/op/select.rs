//! The `select` op.

use serde::{Deserialize, Serialize};

use super::rules::Rules;
use super::shape::resolve_axis;
use super::{AxisRule, Source};

/// Position `index` of `axis`, the axis removed (e.g. a ViT's class token).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Select {
    pub axis: isize,
    pub index: usize,
}

impl Rules for Select {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let (x, index) = (inputs[0], self.index);
        let a = resolve_axis(self.axis, x.len())?;
        if x.len() < 2 || index >= x[a] {
            return Err(format!(
                "select of position {index} of axis {a} needs a rank-2 or larger input with that position, got {x:?}"
            ));
        }
        let mut out = x.to_vec();
        out.remove(a);
        Ok(out)
    }

    /// The selected axis is gone; every other axis carries on.
    fn axis_rule(&self, inputs: &[&[usize]], out_rank: usize) -> AxisRule {
        let rank = inputs[0].len();
        let Ok(a) = resolve_axis(self.axis, rank) else {
            return AxisRule::opaque(out_rank);
        };
        AxisRule {
            outputs: (0..rank)
                .filter(|&x| x != a)
                .map(|axis| Source::Input { input: 0, axis })
                .collect(),
            ..AxisRule::opaque(0)
        }
    }
}
