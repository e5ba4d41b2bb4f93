//! Choosing which channel groups to remove: by rank (a ratio per layer or a global ranking of
//! normalized scores) or by threshold, never emptying a layer, honouring exclusions.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::deps::DepGraph;
use super::importance::Scores;
use crate::error::{Error, Result};
use crate::ir::Model;

/// Where the ranking happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Each layer (family of coupled producers) loses the same fraction of its channels.
    PerLayer,
    /// One ranking over all layers; scores are normalized per producer by their mean first.
    Global,
}

/// How much to remove.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Amount {
    /// Remove this fraction of channels, in [0, 1).
    Ratio(f32),
    /// Remove channels whose normalized score (score / mean score of its layer) is below this.
    Threshold(f32),
}

/// What structured pruning removes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selection {
    pub scope: Scope,
    pub amount: Amount,
    /// Ratios for particular layers (named by any producer node of the layer), overriding
    /// `amount` for them (per-layer scope only).
    #[serde(default)]
    pub per_layer: BTreeMap<String, f32>,
    /// Layers (any producer node name) that keep all their channels.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Per-layer scope: round each layer's kept channel count to a multiple of this (1: off);
    /// a layer of this many channels or fewer keeps them all. Dense kernels run full SIMD lanes and cache tiles on multiples of 8, so a pruned layer
    /// of 24 channels can be faster than one of 23.
    #[serde(default = "one")]
    pub round_to: usize,
}

fn one() -> usize {
    1
}

/// Checks a `round_to` against the model: no larger than the largest prunable layer's channel
/// count (beyond it, every layer would silently keep all its channels).
pub fn check_round_to(round_to: usize, deps: &DepGraph) -> Result<()> {
    let largest = deps.families.iter().map(|f| f.groups.len()).max().unwrap_or(0);
    if round_to > largest.max(1) {
        return Err(Error::Config(format!(
            "round_to {round_to} exceeds every prunable layer's channel count (the largest has {largest})"
        )));
    }
    Ok(())
}

/// `n - k` kept channels rounded to the nearest multiple of `m` (at least `m`, at most `n`).
/// A layer of `m` channels or fewer keeps them all: no smaller count is a multiple of `m`, and
/// a kernel that pads channels to `m` lanes runs it no faster with fewer.
fn rounded_removal(n: usize, k: usize, m: usize) -> usize {
    if m <= 1 {
        return k;
    }
    if n <= m {
        return 0;
    }
    let keep = n - k;
    let keep = (((keep as f64 / m as f64).round() as usize) * m).clamp(m, n);
    n - keep
}

fn check_ratio(r: f32, what: &str) -> Result<()> {
    if (0.0..1.0).contains(&r) {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "{what}: ratio {r} is impossible; it must be in [0, 1) (a layer keeps at least one channel)"
        )))
    }
}

/// The family (coupled channel groups) that the layer `name` produces: a clear error for a name
/// the model does not have or a layer whose channels cannot be removed (the output layer).
pub fn family_by_name(model: &Model, deps: &DepGraph, name: &str) -> Result<usize> {
    if model.graph.index_of(name).is_none() {
        return Err(Error::Config(format!("unknown layer '{name}'")));
    }
    deps.family_of(model, name).ok_or_else(|| {
        Error::Config(format!(
            "layer '{name}' has no prunable channels (its outputs are the model's output or fixed)"
        ))
    })
}

/// Per group: the mean over its members of score / (mean score of the member's producer).
pub fn group_scores(deps: &DepGraph, scores: &Scores) -> Vec<f32> {
    let mut sums: BTreeMap<usize, (f64, usize)> = BTreeMap::new();
    for (&(node, _), &v) in scores {
        let e = sums.entry(node).or_insert((0.0, 0));
        e.0 += v as f64;
        e.1 += 1;
    }
    let mean: BTreeMap<usize, f32> = sums
        .into_iter()
        .map(|(k, (s, n))| (k, (s / n.max(1) as f64) as f32))
        .collect();
    deps.groups
        .iter()
        .map(|g| {
            let vals: Vec<f32> = g
                .members
                .iter()
                .filter_map(|m| {
                    scores.get(m).map(|v| {
                        let mu = mean[&m.0];
                        if mu > 0.0 {
                            v / mu
                        } else {
                            *v
                        }
                    })
                })
                .collect();
            if vals.is_empty() {
                f32::INFINITY
            } else {
                vals.iter().sum::<f32>() / vals.len() as f32
            }
        })
        .collect()
}

/// Refuses a model without a channel structured pruning could remove, which would otherwise
/// "prune" to the same model.
pub fn check_prunable(deps: &DepGraph) -> Result<()> {
    if deps.families.is_empty() {
        return Err(Error::Config(
            "the model has no channels structured pruning can remove: every layer's outputs are \
             fixed (by the model's output, or by ops whose channels cannot shrink, such as hashed layers)"
                .into(),
        ));
    }
    Ok(())
}

/// Picks the groups to remove.
pub fn select(model: &Model, deps: &DepGraph, scores: &Scores, sel: &Selection) -> Result<BTreeSet<usize>> {
    if let Amount::Ratio(r) = sel.amount {
        check_ratio(r, "prune")?;
    }
    let mut excluded = BTreeSet::new();
    for name in &sel.exclude {
        excluded.insert(family_by_name(model, deps, name)?);
    }
    let mut ratio_of: BTreeMap<usize, f32> = BTreeMap::new();
    for (name, &r) in &sel.per_layer {
        check_ratio(r, name)?;
        if sel.scope == Scope::Global {
            return Err(Error::Config("per-layer ratios need the per-layer scope".into()));
        }
        ratio_of.insert(family_by_name(model, deps, name)?, r);
    }
    let gs = group_scores(deps, scores);
    let by_score = |groups: &[usize]| {
        let mut v = groups.to_vec();
        v.sort_by(|a, b| gs[*a].total_cmp(&gs[*b]).then(a.cmp(b)));
        v
    };
    let mut chosen = BTreeSet::new();
    let active: Vec<usize> = (0..deps.families.len())
        .filter(|f| !excluded.contains(f))
        .collect();
    check_prunable(deps)?;
    if active.is_empty() {
        return Err(Error::Config(
            "every layer structured pruning could shrink is excluded".into(),
        ));
    }
    match (sel.scope, sel.amount) {
        (Scope::PerLayer, amount) => {
            for &f in &active {
                let groups = &deps.families[f].groups;
                let ranked = by_score(groups);
                let k = match (ratio_of.get(&f).copied(), amount) {
                    (Some(r), _) | (None, Amount::Ratio(r)) => (r * groups.len() as f32).floor() as usize,
                    (None, Amount::Threshold(t)) => ranked.iter().take_while(|&&g| gs[g] < t).count(),
                };
                let k = rounded_removal(groups.len(), k.min(groups.len() - 1), sel.round_to);
                chosen.extend(ranked.into_iter().take(k.min(groups.len() - 1)));
            }
        }
        (Scope::Global, amount) => {
            let all: Vec<usize> = active
                .iter()
                .flat_map(|&f| deps.families[f].groups.clone())
                .collect();
            let ranked = by_score(&all);
            let k = match amount {
                Amount::Ratio(r) => (r * all.len() as f32).floor() as usize,
                Amount::Threshold(t) => ranked.iter().take_while(|&&g| gs[g] < t).count(),
            };
            let family_of_group: BTreeMap<usize, usize> = active
                .iter()
                .flat_map(|&f| deps.families[f].groups.iter().map(move |&g| (g, f)))
                .collect();
            let mut left: BTreeMap<usize, usize> = active
                .iter()
                .map(|&f| (f, deps.families[f].groups.len()))
                .collect();
            for g in ranked.into_iter().take(k) {
                let f = family_of_group[&g];
                if left[&f] > 1 {
                    *left.get_mut(&f).expect("active family") -= 1;
                    chosen.insert(g);
                }
            }
        }
    }
    Ok(chosen)
}
