//! The `mean` op.

use serde::{Deserialize, Serialize};

use super::rules::Rules;
use super::shape::resolve_axis;
use super::{AxisRule, Source};

/// Mean over `axes`, kept as size 1 with `keepdim`, removed otherwise.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mean {
    pub axes: Vec<isize>,
    #[serde(default)]
    pub keepdim: bool,
}

impl Rules for Mean {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let (x, axes, keepdim) = (inputs[0], &self.axes, self.keepdim);
        let mut drop = vec![false; x.len()];
        for &a in axes {
            let a = resolve_axis(a, x.len())?;
            if std::mem::replace(&mut drop[a], true) {
                return Err(format!("mean names axis {a} twice"));
            }
        }
        if axes.is_empty() || (!keepdim && drop.iter().all(|d| *d)) {
            return Err(format!(
                "mean over {axes:?} of {x:?} must name an axis and keep at least one"
            ));
        }
        Ok(x.iter()
            .zip(&drop)
            .filter_map(|(&d, &gone)| match (gone, keepdim) {
                (false, _) => Some(d),
                (true, true) => Some(1),
                (true, false) => None,
            })
            .collect())
    }

    /// The reduced axes are fixed (or gone); the others carry on.
    fn axis_rule(&self, inputs: &[&[usize]], _out_rank: usize) -> AxisRule {
        let rank = inputs[0].len();
        let reduced: Vec<usize> = self
            .axes
            .iter()
            .filter_map(|&a| resolve_axis(a, rank).ok())
            .collect();
        let mut r = AxisRule::same_axes(rank, &reduced);
        if !self.keepdim {
            r.outputs = (0..rank)
                .filter(|x| !reduced.contains(x))
                .map(|axis| Source::Input { input: 0, axis })
                .collect();
        }
        r
    }
}
