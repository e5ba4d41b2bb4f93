//! The `pad` op.

use serde::{Deserialize, Serialize};

use super::rules::Rules;
use super::AxisRule;

use super::is_zero_f32;

/// Constant padding: `pads[i] = [before, after]` for each per-sample axis `i` (every axis
/// listed), new positions set to `value` (0 unless given; a finite number, so the lowest
/// f32 stands for the -inf a max pool pads with).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pad {
    pub pads: Vec<[usize; 2]>,
    #[serde(default, skip_serializing_if = "is_zero_f32")]
    pub value: f32,
}

impl Rules for Pad {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let (x, pads, value) = (inputs[0], &self.pads, self.value);
        if !value.is_finite() {
            return Err(format!("pad value {value} must be a finite number"));
        }
        if pads.len() != x.len() {
            return Err(format!(
                "pad needs one [before, after] pair per axis of {x:?}, got {}",
                pads.len()
            ));
        }
        x.iter()
            .zip(pads)
            .map(|(&d, &[a, b])| {
                d.checked_add(a)
                    .and_then(|v| v.checked_add(b))
                    .ok_or_else(|| format!("pad {pads:?} overflows the shape {x:?}"))
            })
            .collect()
    }

    /// Every position of a padded axis counts (the pads sit at its ends).
    fn axis_rule(&self, inputs: &[&[usize]], _out_rank: usize) -> AxisRule {
        let rank = inputs[0].len();
        let padded: Vec<usize> = (0..rank)
            .filter(|&a| self.pads.get(a).is_some_and(|p| *p != [0, 0]))
            .collect();
        AxisRule::same_axes(rank, &padded)
    }
}
