//! The hook that trains a model under forward-time reparameterizations: it hands them to the
//! fit loop and, after every optimizer step, puts the stored weights back in the set each one
//! requires (pruned weights re-zeroed, binarized weights clipped to `[-1, 1]`).

use super::fit::{Hooks, StepInfo};
use crate::error::Result;
use crate::ir::{Model, Reparams};

/// Quantization-aware, masked or binary training: the reparameterizations apply at forward
/// time (straight-through in backward) and [`crate::ir::Reparam::constrain`] after each step.
pub struct ReparamHook {
    reparams: Reparams,
}

impl ReparamHook {
    pub fn new(reparams: Reparams) -> Self {
        ReparamHook { reparams }
    }
}

impl Hooks for ReparamHook {
    fn reparams(&self) -> Option<&Reparams> {
        Some(&self.reparams)
    }

    fn after_step(&mut self, model: &mut Model, _info: &StepInfo) -> Result<()> {
        for (name, rs) in &self.reparams {
            if let Some(w) = model.params.get_mut(name) {
                rs.iter().for_each(|r| r.constrain(w));
            }
        }
        Ok(())
    }
}
