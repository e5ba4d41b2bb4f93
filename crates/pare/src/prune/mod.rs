//! Pruning: unstructured magnitude masks with schedules, and structured pruning that physically
//! removes channels and attention heads through residual, concat, depthwise, reshape and
//! matrix-product dependencies.
//!
//! - [`unstructured`]: masks by rank, threshold or std-scaled threshold (Han et al. 2015).
//! - [`schedule`]: one-shot / linear / AGP ramps (Zhu & Gupta 2017) and the mask hook.
//! - [`deps`]: the dependency graph, built from each op's axis mapping.
//! - [`importance`]: L1/L2 (Li et al. 2017), FPGM (He et al. 2019), BN gamma (Liu et al. 2017),
//!   APoZ (Hu et al. 2016), Taylor (Molchanov et al. 2019), random.
//! - [`select`]: per-layer or global ranking, thresholds, exclusions.
//! - [`structured`](mod@structured): removal and the replayable [`structured::Surgery`] log.

pub mod deps;
pub mod importance;
pub mod lottery;
pub mod schedule;
pub mod select;
pub mod sensitivity;
pub mod slimming;
pub mod structured;
pub mod supermask;
pub mod unstructured;

use crate::data::{calibration_batches, Dataset};
use crate::error::Result;
use crate::ir::Model;
pub use deps::DepGraph;
pub use importance::{Criterion, Importance};
pub use select::{Amount, Scope, Selection};
pub use structured::Surgery;

/// Structured pruning in one call: analyse, score, select, remove.
pub fn structured(
    model: &Model,
    importance: &dyn Importance,
    selection: &Selection,
) -> Result<(Model, Surgery)> {
    let deps = DepGraph::build(model)?;
    let scores = importance.scores(model, &deps)?;
    let groups = select::select(model, &deps, &scores, selection)?;
    structured::remove_groups(model, &deps, &groups)
}

/// Structured pruning spread over several steps (Li et al. 2017's prune-retrain iterations):
/// each step removes the same fraction of what is left, so `steps` of them remove the
/// selection's ratios in total.
pub struct Steps<'a> {
    pub criterion: Criterion,
    /// The whole removal; its ratios are split per step.
    pub selection: Selection,
    pub steps: usize,
    pub seed: u64,
    /// Training data to draw calibration batches from, for criteria that need data
    /// (APoZ, Taylor): `batches` batches of `batch_size`, drawn anew each step.
    pub calib: Option<(&'a dyn Dataset, usize, usize)>,
}

impl Steps<'_> {
    /// Prunes `model` step by step; after each removal `after_step(step, &mut model, &surgery
    /// of the step)` may fine-tune (or re-initialize) it. Returns the final model and one
    /// surgery log of everything removed, in `model`'s channel numbering.
    pub fn run(
        &self,
        model: &Model,
        mut after_step: impl FnMut(usize, &mut Model, &Surgery) -> Result<()>,
    ) -> Result<(Model, Surgery)> {
        let steps = self.steps.max(1);
        let per_step = |r: f32| 1.0 - (1.0 - r).powf(1.0 / steps as f32);
        let selection = Selection {
            amount: match self.selection.amount {
                Amount::Ratio(r) => Amount::Ratio(per_step(r)),
                threshold => threshold,
            },
            per_layer: self
                .selection
                .per_layer
                .iter()
                .map(|(k, v)| (k.clone(), per_step(*v)))
                .collect(),
            ..self.selection.clone()
        };
        select::check_round_to(selection.round_to, &DepGraph::build(model)?)?;
        let (mut current, mut total) = (model.clone(), Surgery::default());
        for step in 0..steps {
            let step_seed = self.seed.wrapping_add(step as u64);
            let calib = match self.calib {
                Some((data, batches, batch_size)) if self.criterion.needs_data() => calibration_batches(
                    data,
                    &current.graph.input.normalize,
                    batches.max(1),
                    batch_size,
                    step_seed,
                ),
                _ => Vec::new(),
            };
            let importance = self.criterion.importance(step_seed, calib);
            let (mut pruned, surgery) = structured(&current, importance.as_ref(), &selection)?;
            total = total.then(model, &surgery)?;
            after_step(step, &mut pruned, &surgery)?;
            current = pruned;
        }
        Ok((current, total))
    }
}
