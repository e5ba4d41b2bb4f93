//! The `matmul` op: the product of two activations, batched over the leading axes:
//! `[.., m, k] x [.., k, n] -> [.., m, n]` (attention scores and their weighted sums).

use super::rules::Rules;
use super::{AxisRule, Couple, Source};

/// The rules of `matmul`.
pub(super) struct MatMul;

impl Rules for MatMul {
    fn has_attributes(&self) -> bool {
        false
    }

    fn arity(&self) -> (usize, usize) {
        (2, 2)
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let (x, y) = (inputs[0], inputs[1]);
        let r = x.len();
        if r < 2 || y.len() != r || x[..r - 2] != y[..r - 2] || x[r - 1] != y[r - 2] {
            return Err(format!(
                "matmul expects [.., m, k] and [.., k, n] with equal leading axes, got {x:?} and {y:?}"
            ));
        }
        let mut out = x.to_vec();
        out[r - 1] = y[r - 1];
        Ok(out)
    }

    /// The leading axes and k go together; m and n carry on.
    fn axis_rule(&self, inputs: &[&[usize]], _out_rank: usize) -> AxisRule {
        let rank = inputs[0].len();
        let last = rank.saturating_sub(1);
        let mut r = AxisRule::same_axes(rank, &[]);
        r.outputs[last] = Source::Input { input: 1, axis: last };
        r.couples = (0..rank.saturating_sub(2))
            .map(|a| Couple::Positions { a: (0, a), b: (1, a) })
            .chain([Couple::Positions {
                a: (0, last),
                b: (1, rank.saturating_sub(2)),
            }])
            .collect();
        r
    }

    fn macs(&self, inputs: &[&[usize]], output: &[usize]) -> u64 {
        let k = inputs.first().and_then(|x| x.last()).copied().unwrap_or(0);
        (output.iter().product::<usize>() * k) as u64
    }
}
