//! Pruning: unstructured magnitude masks with schedules, and structured pruning that physically
//! removes channels through residual, concat and depthwise dependencies.
//!
//! - [`unstructured`]: masks by rank, threshold or std-scaled threshold (Han et al. 2015).
//! - [`schedule`]: one-shot / linear / AGP ramps (Zhu & Gupta 2017) and the mask hook.
//! - [`deps`]: the dependency graph, built from each op's channel rule.
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
