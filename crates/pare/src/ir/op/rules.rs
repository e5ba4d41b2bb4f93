//! The rules every op states about itself, in its own file (`ir/op/<op>.rs`): output shape,
//! parameters, MACs, axis mapping, and the op once structured pruning removed positions of its
//! axes. [`super::Op`] dispatches to them; nothing outside `ir::op` repeats an op's arithmetic.

use super::{AxisRule, Kept, ParamSpec};

/// One op's local rules. Shapes are per sample (no batch axis).
///
/// `output_shape` and `axis_rule` have no default, so that a new op must state them; the
/// others default to "no parameters, no MACs, nothing to shrink, not elementwise".
pub trait Rules {
    /// How many inputs the op reads: `(min, max)`.
    fn arity(&self) -> (usize, usize) {
        (1, 1)
    }

    /// The output shape for these input shapes (their count already checked against
    /// [`Rules::arity`]); the error says what was expected.
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String>;

    /// How the positions of every axis map from the inputs to the output (see [`AxisRule`]).
    /// `inputs` have passed shape inference; `out_rank` is the output's rank.
    fn axis_rule(&self, inputs: &[&[usize]], out_rank: usize) -> AxisRule;

    /// The parameters the op owns, in PyTorch `state_dict` order.
    fn params(&self) -> Vec<ParamSpec> {
        Vec::new()
    }

    /// Multiply-accumulates per sample: counted for products of weights or activations only
    /// (BN folds into the preceding conv at inference; activations and pools are not MACs).
    fn macs(&self, _inputs: &[&[usize]], _output: &[usize]) -> u64 {
        0
    }

    /// False for the ops written in `arch.json` as their name alone (`{"op": "relu"}`).
    fn has_attributes(&self) -> bool {
        true
    }

    /// True when the op is applied to each element on its own.
    fn is_elementwise(&self) -> bool {
        false
    }

    /// The op once positions of its axes (or its heads) are removed, as `kept` says. Ops
    /// whose attributes count no positions are unchanged.
    fn shrunk(&self, _kept: &Kept) -> Self
    where
        Self: Sized + Clone,
    {
        self.clone()
    }
}

/// Sets `field` to the kept count, if one is given.
pub(super) fn keep(field: &mut usize, kept: Option<usize>) {
    *field = kept.unwrap_or(*field);
}
