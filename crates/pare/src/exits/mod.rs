//! Early exits (BranchyNet, Teerapittayanon et al. 2016; Shallow-Deep Networks, Kaya et al.
//! 2019; PABEE, Zhou et al. 2020): classifier heads grafted onto a backbone's intermediate
//! values as extra graph outputs, trained jointly with the backbone or on its frozen features,
//! and a rule that lets a sample leave at the first exit sure enough of it.
//!
//! The pieces are data and functions, as elsewhere: [`attach`] is a `Model -> Model` rewrite
//! (the backbone and its main output unchanged), [`train_frozen`] fits the heads, a [`Policy`]
//! (rule and threshold) decides, [`curve`] simulates policies on stored logits to draw the
//! accuracy-MACs curve and choose a threshold on the validation split, and
//! [`crate::native::ExitPlan`] runs the model so that the samples that left are no longer
//! computed. [`timed_run`] measures that against the model without exits.

pub mod curve;
mod heads;
mod rule;

pub use curve::{choose, exit_costs, simulate, sweep, ExitLogits, Outcome, Target};
pub use heads::{attach, train_frozen, Exit, Head, SelfDistill};
pub use rule::{Decider, Policy, Rule};

use std::time::Instant;

use crate::data::{sequential, Dataset};
use crate::error::Result;
use crate::ir::{Model, Normalize, Tensor};
use crate::native::{ExitPlan, Plan};
use crate::train::loss_and_correct;

/// Runs `model` once over `set` on the native engine (eval mode, batches of 500), handing
/// `f` every graph output of each batch (main output first, as [`crate::ir::Graph::outputs`]
/// orders them) and its labels: how exit logits and frozen-backbone features are gathered.
pub(crate) fn each_batch(
    model: &Model,
    set: &dyn Dataset,
    f: &mut dyn FnMut(&[Tensor], &[u32]),
) -> Result<()> {
    let plan = crate::native::compile(model)?;
    for b in sequential(set, 500, &model.graph.input.normalize) {
        f(&plan.run_all(&b.x)?, &b.labels);
    }
    Ok(())
}

/// One timed pass over a data set, with and without exits.
#[derive(Clone, Debug, PartialEq)]
pub struct TimedRun {
    /// Seconds the model without exits spent in its forward passes.
    pub base_seconds: f64,
    /// Seconds the early-exit model spent (its heads and decisions included).
    pub exit_seconds: f64,
    pub base_accuracy: f64,
    pub exit_accuracy: f64,
    /// How many samples left at each exit (the main output last).
    pub left_at: Vec<usize>,
}

/// Runs `set` through `base` (the model without exits) and `exits` under `policy`, in batches
/// of `batch` (1: every sample alone, the case early exits serve best), alternating the two
/// engines batch by batch so that both see the same machine state. Only the forward passes are
/// timed, not the batches' preparation.
pub fn timed_run(
    base: &Plan,
    exits: &ExitPlan,
    policy: Policy,
    set: &dyn Dataset,
    norm: &Normalize,
    batch: usize,
) -> Result<TimedRun> {
    let mut r = TimedRun {
        base_seconds: 0.0,
        exit_seconds: 0.0,
        base_accuracy: 0.0,
        exit_accuracy: 0.0,
        left_at: vec![0; exits.exits() + 1],
    };
    let (mut base_right, mut exit_right, mut seen) = (0usize, 0usize, 0usize);
    for b in sequential(set, batch, norm) {
        let t = Instant::now();
        let y = base.run(&b.x)?;
        r.base_seconds += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut d = policy.decider(b.labels.len());
        let e = exits.run(&b.x, &mut |k, i, l| d.exits_here(k, i, l))?;
        r.exit_seconds += t.elapsed().as_secs_f64();
        base_right += loss_and_correct(&y, &b.labels).1;
        exit_right += loss_and_correct(&e.logits, &b.labels).1;
        e.exit.iter().for_each(|&k| r.left_at[k] += 1);
        seen += b.labels.len();
    }
    r.base_accuracy = base_right as f64 / seen.max(1) as f64;
    r.exit_accuracy = exit_right as f64 / seen.max(1) as f64;
    Ok(r)
}
