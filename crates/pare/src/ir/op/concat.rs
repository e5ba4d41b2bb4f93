//! The `concat` op.

use serde::{Deserialize, Serialize};

use super::rules::Rules;
use super::shape::resolve_axis;
use super::{AxisRule, Couple, Source};

use super::is_zero;

/// Concatenation of two or more inputs along `axis` of the per-sample shape (0, the channel
/// axis of images, by default; negative counts from the end).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Concat {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub axis: isize,
}

impl Rules for Concat {
    fn arity(&self) -> (usize, usize) {
        (2, usize::MAX)
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let x = inputs[0];
        let a = resolve_axis(self.axis, x.len())?;
        let mut out = x.to_vec();
        for s in &inputs[1..] {
            if s.len() != x.len() || s[..a] != x[..a] || s[a + 1..] != x[a + 1..] {
                return Err(format!(
                    "concat expects shapes equal but for axis {a}, got {x:?} and {s:?}"
                ));
            }
            out[a] = out[a]
                .checked_add(s[a])
                .ok_or_else(|| format!("concat of {x:?} and {s:?} overflows"))?;
        }
        Ok(out)
    }

    /// The inputs' positions follow each other on the axis; every other axis goes together.
    fn axis_rule(&self, inputs: &[&[usize]], out_rank: usize) -> AxisRule {
        let rank = inputs[0].len();
        let Ok(a) = resolve_axis(self.axis, rank) else {
            return AxisRule::opaque(out_rank);
        };
        let mut r = AxisRule::same_axes(rank, &[]);
        r.outputs[a] = Source::Stacked { axis: a };
        for i in 1..inputs.len() {
            r.couples.extend(
                (0..rank)
                    .filter(|&x| x != a)
                    .map(|x| Couple::Positions { a: (0, x), b: (i, x) }),
            );
        }
        r
    }
}
