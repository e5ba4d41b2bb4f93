//! Weight sharing (trained quantization, Deep Compression section 3): each layer's non-zero
//! weights are clustered into `2^bits` shared values; the model then stores only a codebook and
//! an index per weight. Fine-tuning trains the shared values: the gradient of a centroid is
//! the sum of the gradients of the weights in its cluster, the assignments stay fixed and
//! pruned weights stay zero.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::kmeans::{kmeans, CentroidInit};
use crate::error::{Error, Result};
use crate::ir::{Model, Params};
use crate::train::{Hooks, StepInfo};

/// How a centroid's gradient combines its members' gradients.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reduce {
    /// The paper's rule: the sum (a large cluster moves faster; use a smaller learning rate).
    #[default]
    Sum,
    /// The mean: every centroid moves at the rate of a single weight.
    Mean,
}

/// One layer's codebook and assignment.
#[derive(Clone, Debug, PartialEq)]
pub struct SharedLayer {
    pub centroids: Vec<f32>,
    /// Centroid index per weight; `None` for a pruned (zero) weight.
    pub assignment: Vec<Option<u32>>,
}

impl SharedLayer {
    /// Members per centroid.
    pub fn counts(&self) -> Vec<usize> {
        let mut c = vec![0; self.centroids.len()];
        for a in self.assignment.iter().flatten() {
            c[*a as usize] += 1;
        }
        c
    }

    fn write(&self, w: &mut [f32]) {
        for (v, a) in w.iter_mut().zip(&self.assignment) {
            *v = a.map_or(0.0, |a| self.centroids[a as usize]);
        }
    }
}

/// Shared weights of a model, keyed by parameter name.
#[derive(Clone, Debug, Default)]
pub struct Sharing {
    pub layers: BTreeMap<String, SharedLayer>,
}

impl Sharing {
    /// Clusters the non-zero weights of each named parameter into `2^bits` centroids and
    /// writes the shared values into `model`.
    pub fn cluster(
        model: &mut Model,
        bits: &BTreeMap<String, u32>,
        init: CentroidInit,
        seed: u64,
    ) -> Result<Self> {
        let mut layers = BTreeMap::new();
        for (name, &b) in bits {
            if !crate::ir::quant::SHARE_BITS.contains(&b) {
                return Err(Error::Config(format!(
                    "weight sharing of '{name}': bits = {b} must be in {:?}",
                    crate::ir::quant::SHARE_BITS
                )));
            }
            let w = model
                .params
                .get_mut(name)
                .ok_or_else(|| Error::Config(format!("weight sharing: no parameter '{name}'")))?;
            let kept: Vec<f32> = w.data().iter().copied().filter(|v| *v != 0.0).collect();
            let c = kmeans(&kept, 1 << b, init, seed, 100);
            let mut it = c.assignment.iter();
            let assignment = w
                .data()
                .iter()
                .map(|v| if *v == 0.0 { None } else { it.next().copied() })
                .collect();
            let layer = SharedLayer {
                centroids: c.centroids,
                assignment,
            };
            layer.write(w.data_mut());
            layers.insert(name.clone(), layer);
        }
        Ok(Sharing { layers })
    }

    /// Recovers the sharing of weights that already hold shared values (a saved clustered
    /// model): the distinct non-zero values are the centroids.
    pub fn from_values<'a>(model: &Model, names: impl IntoIterator<Item = &'a String>) -> Result<Self> {
        let mut layers = BTreeMap::new();
        for name in names {
            let w = model
                .params
                .get(name)
                .ok_or_else(|| Error::Config(format!("weight sharing: no parameter '{name}'")))?;
            let mut centroids: Vec<f32> = w.data().iter().copied().filter(|v| *v != 0.0).collect();
            centroids.sort_unstable_by(f32::total_cmp);
            centroids.dedup();
            let assignment = w
                .data()
                .iter()
                .map(|v| {
                    (*v != 0.0)
                        .then(|| centroids.binary_search_by(|c| c.total_cmp(v)).expect("present") as u32)
                })
                .collect();
            layers.insert(
                name.clone(),
                SharedLayer {
                    centroids,
                    assignment,
                },
            );
        }
        Ok(Sharing { layers })
    }

    /// Distinct non-zero values per layer (at most `2^bits`; a centroid that fine-tuning moved
    /// exactly onto another or onto zero makes it fewer).
    pub fn distinct_values(model: &Model, name: &str) -> usize {
        let mut v: Vec<u32> = model.params[name]
            .data()
            .iter()
            .filter(|x| **x != 0.0)
            .map(|x| x.to_bits())
            .collect();
        v.sort_unstable();
        v.dedup();
        v.len()
    }
}

/// Fine-tunes the centroids inside the ordinary fit loop: before the optimizer step every
/// weight's gradient is replaced by its cluster's combined gradient (pruned weights get zero),
/// so all members receive the same update and stay equal; after the step the centroids are
/// read back from the weights and written again, which keeps them bit-identical.
pub struct SharingHook {
    pub sharing: Sharing,
    pub reduce: Reduce,
}

impl Hooks for SharingHook {
    fn on_gradients(&mut self, _model: &Model, grads: &mut Params) {
        for (name, layer) in &self.sharing.layers {
            let Some(g) = grads.get_mut(name) else { continue };
            let mut sum = vec![0f64; layer.centroids.len()];
            for (gv, a) in g.data().iter().zip(&layer.assignment) {
                if let Some(a) = a {
                    sum[*a as usize] += *gv as f64;
                }
            }
            if self.reduce == Reduce::Mean {
                for (s, n) in sum.iter_mut().zip(layer.counts()) {
                    *s /= n.max(1) as f64;
                }
            }
            for (gv, a) in g.data_mut().iter_mut().zip(&layer.assignment) {
                *gv = a.map_or(0.0, |a| sum[a as usize] as f32);
            }
        }
    }

    fn after_step(&mut self, model: &mut Model, _info: &StepInfo) -> Result<()> {
        for (name, layer) in &mut self.sharing.layers {
            let Some(w) = model.params.get_mut(name) else {
                continue;
            };
            // Members received identical updates; take each centroid from its first member.
            let mut seen = vec![false; layer.centroids.len()];
            for (v, a) in w.data().iter().zip(&layer.assignment) {
                if let Some(a) = a {
                    if !seen[*a as usize] {
                        seen[*a as usize] = true;
                        layer.centroids[*a as usize] = *v;
                    }
                }
            }
            layer.write(w.data_mut());
        }
        Ok(())
    }
}
