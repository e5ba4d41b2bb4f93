//! The `transpose` op.

use serde::{Deserialize, Serialize};

use super::rules::Rules;
use super::{AxisRule, Source};

/// Permutation of the per-sample axes: output axis `i` is input axis `perm[i]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transpose {
    pub perm: Vec<usize>,
}

impl Rules for Transpose {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let (x, perm) = (inputs[0], &self.perm);
        let mut seen = vec![false; x.len()];
        let valid = perm.len() == x.len()
            && perm
                .iter()
                .all(|&p| p < x.len() && !std::mem::replace(&mut seen[p], true));
        if !valid {
            return Err(format!(
                "transpose perm {perm:?} is not a permutation of the {} axes of {x:?}",
                x.len()
            ));
        }
        Ok(perm.iter().map(|&p| x[p]).collect())
    }

    fn axis_rule(&self, _inputs: &[&[usize]], _out_rank: usize) -> AxisRule {
        AxisRule {
            outputs: self
                .perm
                .iter()
                .map(|&axis| Source::Input { input: 0, axis })
                .collect(),
            ..AxisRule::opaque(0)
        }
    }
}
