//! Unstructured (weight) magnitude pruning: 0/1 masks over the weights of Linear and Conv2d
//! layers, chosen by rank (a sparsity per layer, or one global ranking), by a handcrafted
//! threshold, or by a threshold generated from each layer's spread (Deep Compression: quality
//! parameter times the layer's weight standard deviation).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ir::op::{Attention, Conv2d, Linear};
use crate::ir::{Model, Op, Tensor};

/// Masks per weight name (`{node}.weight`): 1 keeps a weight, 0 prunes it.
pub type Masks = BTreeMap<String, Tensor>;

/// How weights are chosen.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum WeightCriterion {
    /// Remove the given fraction of each layer's weights, smallest |w| first. Layers missing
    /// from `per_layer` use `default`.
    LayerSparsity {
        default: f32,
        per_layer: BTreeMap<String, f32>,
    },
    /// Remove the given fraction of all prunable weights, ranked together by |w|.
    GlobalSparsity(f32),
    /// Remove every weight with |w| below this value.
    Threshold(f32),
    /// Remove weights with |w| below `quality * std(layer weights)` (Han et al. 2015).
    StdQuality(f32),
}

/// The weights magnitude pruning considers: [`Model::layer_weights`], unless excluded.
pub fn prunable_weights(model: &Model, exclude: &[String]) -> Result<Vec<String>> {
    for e in exclude {
        match model.graph.node(e) {
            None => return Err(Error::Config(format!("unknown layer '{e}'"))),
            Some(n)
                if !matches!(
                    n.op,
                    Op::Linear(Linear { .. }) | Op::Conv2d(Conv2d { .. }) | Op::Attention(Attention { .. })
                ) =>
            {
                return Err(Error::Config(format!(
                    "layer '{e}' is a {}, which has no prunable weights",
                    n.op.kind()
                )))
            }
            _ => {}
        }
    }
    Ok(model
        .layer_weights()
        .into_iter()
        .filter(|(node, _)| !exclude.contains(node))
        .map(|(_, w)| w)
        .collect())
}

/// Mask keeping all but the `k` smallest-magnitude entries (ties broken by position).
fn keep_largest(w: &Tensor, k: usize) -> Tensor {
    let mut idx: Vec<usize> = (0..w.len()).collect();
    idx.sort_by(|&a, &b| w.data()[a].abs().total_cmp(&w.data()[b].abs()).then(a.cmp(&b)));
    let mut m = Tensor::ones(w.shape().to_vec());
    for &i in idx.iter().take(k) {
        m.data_mut()[i] = 0.0;
    }
    m
}

fn check_sparsity(s: f32, what: &str) -> Result<()> {
    if (0.0..1.0).contains(&s) {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "{what}: sparsity {s} is impossible; it must be in [0, 1)"
        )))
    }
}

/// Computes magnitude masks for the prunable weights (see [`prunable_weights`]).
pub fn magnitude_masks(model: &Model, criterion: &WeightCriterion, exclude: &[String]) -> Result<Masks> {
    let names = prunable_weights(model, exclude)?;
    let mut masks = Masks::new();
    match criterion {
        WeightCriterion::LayerSparsity { default, per_layer } => {
            check_sparsity(*default, "default")?;
            for (layer, s) in per_layer {
                check_sparsity(*s, layer)?;
                if !names.contains(&format!("{layer}.weight")) {
                    return Err(Error::Config(format!(
                        "unknown or excluded layer '{layer}' in per-layer sparsity"
                    )));
                }
            }
            for name in names {
                let layer = name.trim_end_matches(".weight");
                let s = per_layer.get(layer).copied().unwrap_or(*default);
                let w = &model.params[&name];
                masks.insert(
                    name,
                    keep_largest(w, (s as f64 * w.len() as f64).round() as usize),
                );
            }
        }
        WeightCriterion::GlobalSparsity(s) => {
            check_sparsity(*s, "global")?;
            let mut all: Vec<f32> = names
                .iter()
                .flat_map(|n| model.params[n].data().iter().map(|v| v.abs()))
                .collect();
            let k = (*s as f64 * all.len() as f64).round() as usize;
            if k == 0 {
                return magnitude_masks(model, &WeightCriterion::Threshold(0.0), exclude);
            }
            all.sort_by(f32::total_cmp);
            // Weights at or below the k-th smallest magnitude go; ties at the cut are rare with
            // real weights and would prune slightly more.
            let cut = all[k - 1];
            for name in names {
                let w = &model.params[&name];
                let data = w
                    .data()
                    .iter()
                    .map(|v| if v.abs() <= cut { 0.0 } else { 1.0 })
                    .collect();
                masks.insert(name, Tensor::from_vec(w.shape().to_vec(), data));
            }
        }
        WeightCriterion::Threshold(t) | WeightCriterion::StdQuality(t) => {
            if t.is_nan() || *t < 0.0 {
                return Err(Error::Config(format!("threshold must be non-negative, got {t}")));
            }
            for name in names {
                let w = &model.params[&name];
                let cut = match criterion {
                    WeightCriterion::StdQuality(q) => q * std(w.data()),
                    _ => *t,
                };
                let data = w
                    .data()
                    .iter()
                    .map(|v| if v.abs() < cut { 0.0 } else { 1.0 })
                    .collect();
                masks.insert(name, Tensor::from_vec(w.shape().to_vec(), data));
            }
        }
    }
    Ok(masks)
}

fn std(v: &[f32]) -> f32 {
    let n = v.len().max(1) as f64;
    let mean = v.iter().map(|x| *x as f64).sum::<f64>() / n;
    (v.iter().map(|x| (*x as f64 - mean).powi(2)).sum::<f64>() / n).sqrt() as f32
}

/// Masks that keep exactly the non-zero weights (how a pruned model's masks are recovered
/// from its saved weights).
pub fn masks_from_zeros(model: &Model, exclude: &[String]) -> Result<Masks> {
    Ok(prunable_weights(model, exclude)?
        .into_iter()
        .map(|n| {
            let w = &model.params[&n];
            let m = w
                .data()
                .iter()
                .map(|v| if *v == 0.0 { 0.0 } else { 1.0 })
                .collect();
            (n.clone(), Tensor::from_vec(w.shape().to_vec(), m))
        })
        .collect())
}

/// Multiplies each masked weight by its mask in place.
pub fn apply_masks(model: &mut Model, masks: &Masks) {
    for (name, m) in masks {
        if let Some(w) = model.params.get_mut(name) {
            w.data_mut().iter_mut().zip(m.data()).for_each(|(v, k)| *v *= k);
        }
    }
}

/// Fraction of zeros over the masks.
pub fn mask_sparsity(masks: &Masks) -> f64 {
    let (z, n) = masks.values().fold((0usize, 0usize), |(z, n), m| {
        (z + m.data().iter().filter(|v| **v == 0.0).count(), n + m.len())
    });
    z as f64 / n.max(1) as f64
}
