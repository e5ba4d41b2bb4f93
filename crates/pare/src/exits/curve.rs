//! What exits buy: every exit's logits over a data set, the MACs a sample costs when it leaves
//! at each exit, the accuracy and average MACs a policy gives (simulated on stored logits with
//! the same decisions the engine takes), threshold sweeps, and the choice of a threshold on
//! the validation split for a target accuracy or a MAC budget.

use serde::Serialize;

use super::rule::{Policy, Rule};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::ir::tensor::argmax;
use crate::ir::Model;

/// Every exit's logits and the main output's over one data set.
#[derive(Clone, Debug)]
pub struct ExitLogits {
    /// `[exit][sample * classes + class]`, the exits in order, the main output last.
    pub outputs: Vec<Vec<f32>>,
    pub classes: usize,
    pub labels: Vec<u32>,
}

impl ExitLogits {
    /// Runs `model` once over `set` with the native engine, keeping the outputs `exits` (then
    /// the main output).
    pub fn collect(model: &Model, exits: &[String], set: &dyn Dataset) -> Result<ExitLogits> {
        let g = &model.graph;
        let names = g.outputs();
        let pos: Vec<usize> = exits
            .iter()
            .map(|e| {
                names
                    .iter()
                    .position(|n| n == e)
                    .ok_or_else(|| Error::graph(e, "is not an output of the graph"))
            })
            .chain([Ok(0)])
            .collect::<Result<_>>()?;
        let mut outputs = vec![Vec::new(); pos.len()];
        let mut labels = Vec::with_capacity(set.len());
        let mut classes = 0;
        super::each_batch(model, set, &mut |outs, batch_labels| {
            for (o, &p) in outputs.iter_mut().zip(&pos) {
                classes = outs[p].shape()[1..].iter().product();
                o.extend_from_slice(outs[p].data());
            }
            labels.extend_from_slice(batch_labels);
        })?;
        Ok(ExitLogits {
            outputs,
            classes,
            labels,
        })
    }

    fn row(&self, k: usize, i: usize) -> &[f32] {
        &self.outputs[k][i * self.classes..(i + 1) * self.classes]
    }

    /// Accuracy of each exit alone (the main output last).
    pub fn accuracies(&self) -> Vec<f64> {
        (0..self.outputs.len())
            .map(|k| {
                let right = (0..self.labels.len())
                    .filter(|&i| argmax(self.row(k, i)) == self.labels[i] as usize)
                    .count();
                right as f64 / self.labels.len().max(1) as f64
            })
            .collect()
    }
}

/// The MACs per sample of leaving at each exit (then of running to the main output): the
/// nodes of every stage up to it, earlier exits' heads included, as the engine runs them.
pub fn exit_costs(model: &Model, exits: &[String]) -> Result<Vec<u64>> {
    let g = &model.graph;
    let names: Vec<&str> = exits
        .iter()
        .map(String::as_str)
        .chain([g.output.as_str()])
        .collect();
    let shapes = model.shapes();
    let mut total = 0;
    let mut costs = Vec::new();
    for stage in g.stages(&names)? {
        total += stage.iter().map(|&i| model.node_macs(&shapes, i)).sum::<u64>();
        costs.push(total);
    }
    Ok(costs)
}

/// What a policy gives on a data set.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Outcome {
    pub policy: Policy,
    pub accuracy: f64,
    /// Average MACs per sample.
    pub macs: f64,
    /// How many samples left at each exit (the main output last).
    pub left_at: Vec<usize>,
}

/// Applies `policy` to stored logits: each sample leaves at the first exit the policy lets it,
/// else takes the main output.
pub fn simulate(policy: Policy, logits: &ExitLogits, costs: &[u64]) -> Outcome {
    let n = logits.labels.len();
    let last = logits.outputs.len() - 1;
    let mut d = policy.decider(n);
    let (mut right, mut macs) = (0usize, 0u64);
    let mut left_at = vec![0; last + 1];
    for i in 0..n {
        let k = (0..last)
            .find(|&k| d.exits_here(k, i, logits.row(k, i)))
            .unwrap_or(last);
        left_at[k] += 1;
        macs += costs[k];
        right += usize::from(argmax(logits.row(k, i)) == logits.labels[i] as usize);
    }
    Outcome {
        policy,
        accuracy: right as f64 / n.max(1) as f64,
        macs: macs as f64 / n.max(1) as f64,
        left_at,
    }
}

/// The outcome of every threshold of `rule`'s sweep, then of never exiting.
pub fn sweep(rule: Rule, logits: &ExitLogits, costs: &[u64]) -> Vec<Outcome> {
    rule.sweep(logits.outputs.len() - 1)
        .into_iter()
        .chain([rule.never()])
        .map(|t| simulate(Policy { rule, threshold: t }, logits, costs))
        .collect()
}

/// What the threshold is chosen for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Target {
    /// The cheapest threshold with at least this accuracy.
    Accuracy(f64),
    /// The cheapest threshold losing at most this many points (percent) of the main output's
    /// accuracy.
    Drop(f64),
    /// The most accurate threshold spending at most this fraction of the main output's MACs
    /// on average.
    Budget(f64),
}

/// Chooses `rule`'s threshold on (validation) logits for `target`. Never exiting is among the
/// candidates, so an accuracy target the main output meets is always met; a budget that no
/// threshold meets is an error naming the cheapest one.
pub fn choose(rule: Rule, target: Target, logits: &ExitLogits, costs: &[u64]) -> Result<Outcome> {
    let points = sweep(rule, logits, costs);
    let full = points.last().expect("never is swept").clone();
    let by_macs = |a: &&Outcome, b: &&Outcome| a.macs.total_cmp(&b.macs);
    let need = match target {
        Target::Accuracy(a) => Some(a),
        Target::Drop(pts) => Some(full.accuracy - pts / 100.0),
        Target::Budget(_) => None,
    };
    if let Some(need) = need {
        return Ok(points
            .iter()
            .filter(|p| p.accuracy >= need - 1e-12)
            .min_by(by_macs)
            .unwrap_or(&full)
            .clone());
    }
    let Target::Budget(b) = target else { unreachable!() };
    let cap = b * *costs.last().expect("costs include the main output") as f64;
    points
        .iter()
        .filter(|p| p.macs <= cap)
        .max_by(|a, b| a.accuracy.total_cmp(&b.accuracy).then(b.macs.total_cmp(&a.macs)))
        .cloned()
        .ok_or_else(|| {
            let cheapest = points.iter().min_by(by_macs).expect("points are swept");
            Error::Config(format!(
                "no {} threshold keeps the average under {:.0}% of the MACs; the cheapest ({}) spends {:.1}%",
                rule.name(),
                b * 100.0,
                cheapest.policy.threshold,
                100.0 * cheapest.macs / *costs.last().expect("costs") as f64
            ))
        })
}
