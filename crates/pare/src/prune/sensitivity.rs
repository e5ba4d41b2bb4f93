//! Sensitivity analysis: prune each layer alone at a range of ratios and measure accuracy, the
//! per-layer picture that tells how hard each layer may be pruned (Han et al. 2015, Li et al.
//! 2017).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::deps::DepGraph;
use super::importance::Importance;
use super::select::group_scores;
use super::structured::remove_groups;
use super::unstructured::{apply_masks, magnitude_masks, prunable_weights, WeightCriterion};
use crate::error::{Error, Result};
use crate::ir::Model;

/// Accuracy of the model with one layer pruned at one ratio.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub layer: String,
    pub ratio: f32,
    pub accuracy: f32,
    pub params: usize,
    pub macs: u64,
}

fn check(ratios: &[f32]) -> Result<()> {
    match ratios.iter().find(|r| !(0.0..1.0).contains(*r)) {
        Some(r) => Err(Error::Config(format!("sensitivity ratio {r} must be in [0, 1)"))),
        None => Ok(()),
    }
}

/// Structured: removes the lowest-scoring fraction of one layer's channel groups at a time.
pub fn structured(
    model: &Model,
    importance: &dyn Importance,
    ratios: &[f32],
    eval: &mut dyn FnMut(&Model) -> Result<f32>,
) -> Result<Vec<Point>> {
    check(ratios)?;
    let deps = DepGraph::build(model)?;
    let gs = group_scores(&deps, &importance.scores(model, &deps)?);
    let mut out = Vec::new();
    for (f, fam) in deps.families.iter().enumerate() {
        let mut ranked = fam.groups.clone();
        ranked.sort_by(|a, b| gs[*a].total_cmp(&gs[*b]).then(a.cmp(b)));
        for &r in ratios {
            let k = ((r * ranked.len() as f32).floor() as usize).min(ranked.len() - 1);
            let groups: BTreeSet<usize> = ranked[..k].iter().copied().collect();
            let (m, _) = remove_groups(model, &deps, &groups)?;
            out.push(Point {
                layer: deps.family_name(model, f),
                ratio: r,
                accuracy: eval(&m)?,
                params: m.num_params(),
                macs: m.macs(),
            });
        }
    }
    Ok(out)
}

/// Unstructured: masks the smallest-magnitude fraction of one layer's weights at a time.
pub fn unstructured(
    model: &Model,
    ratios: &[f32],
    eval: &mut dyn FnMut(&Model) -> Result<f32>,
) -> Result<Vec<Point>> {
    check(ratios)?;
    let mut out = Vec::new();
    for name in prunable_weights(model, &[])? {
        let layer = name.trim_end_matches(".weight").to_string();
        for &r in ratios {
            let c = WeightCriterion::LayerSparsity {
                default: 0.0,
                per_layer: [(layer.clone(), r)].into(),
            };
            let mut m = model.clone();
            apply_masks(&mut m, &magnitude_masks(model, &c, &[])?);
            let nonzero = m
                .params
                .values()
                .map(|t| t.data().iter().filter(|v| **v != 0.0).count())
                .sum();
            out.push(Point {
                layer: layer.clone(),
                ratio: r,
                accuracy: eval(&m)?,
                params: nonzero,
                macs: m.macs(),
            });
        }
    }
    Ok(out)
}
