//! Network Slimming's sparsity penalty (Liu et al. 2017): `lambda * sum |gamma|` over every
//! BatchNorm scale, added to the training loss through its subgradient `lambda * sign(gamma)`,
//! so that unimportant channels' scales shrink towards zero before BN-gamma pruning.

use crate::ir::op::BatchNorm;
use crate::ir::{Model, Op, Params};
use crate::train::Hooks;

/// Fit-loop hook adding the L1 subgradient on BatchNorm weights.
pub struct SlimmingPenalty {
    pub lambda: f32,
}

impl Hooks for SlimmingPenalty {
    fn on_gradients(&mut self, model: &Model, grads: &mut Params) {
        for node in &model.graph.nodes {
            if !matches!(node.op, Op::BatchNorm(BatchNorm { .. })) {
                continue;
            }
            let name = format!("{}.weight", node.name);
            let (Some(g), Some(w)) = (grads.get_mut(&name), model.params.get(&name)) else {
                continue;
            };
            for (gi, wi) in g.data_mut().iter_mut().zip(w.data()) {
                *gi += self.lambda * wi.signum() * f32::from(*wi != 0.0);
            }
        }
    }
}
