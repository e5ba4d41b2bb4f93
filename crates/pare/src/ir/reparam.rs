//! Reparameterizations: the weight a layer uses is computed at forward time from the stored
//! one, so masks and fake quantization never copy or rewrite the model.
//!
//! `exec` applies these on the tensor engine (with gradients); [`Reparam::apply`] is the
//! reference the engine's version is tested against and what exports use to bake weights.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::quant::WeightQuant;
use super::tensor::Tensor;

/// Forward-time transformations per parameter name, applied in order.
pub type Reparams = BTreeMap<String, Vec<Reparam>>;

/// One transformation of a stored parameter into its effective value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reparam {
    /// `w * mask` with a 0/1 mask of the parameter's shape. The gradient at masked positions
    /// is exactly zero; the optimizer step must still re-zero them (momentum, weight decay).
    Mask(Tensor),
    /// Uniform fake quantization (see [`super::quant`] for the definitions) with a
    /// straight-through estimator in backward; scales come from the stored weights' range.
    FakeQuant(WeightQuant),
    /// A learned supermask (edge-popup, Ramanujan et al. 2020): the stored parameter is a
    /// score per weight, the effective weight is `init * top_k(scores)` with the `keep`
    /// fraction of highest scores set to 1. Backward is straight-through: `d w / d score = init`.
    Supermask { init: Tensor, keep: f32 },
}

impl Reparam {
    /// The effective value of `w` under this transformation, computed on the CPU.
    pub fn apply(&self, w: &Tensor) -> Tensor {
        match self {
            Reparam::Mask(mask) => {
                let data = w.data().iter().zip(mask.data()).map(|(a, m)| a * m).collect();
                Tensor::from_vec(w.shape().to_vec(), data)
            }
            Reparam::FakeQuant(q) => Tensor::from_vec(w.shape().to_vec(), q.fake(w.shape(), w.data())),
            Reparam::Supermask { init, keep } => {
                let mask = top_k_mask(w, *keep);
                let data = init.data().iter().zip(mask.data()).map(|(a, m)| a * m).collect();
                Tensor::from_vec(w.shape().to_vec(), data)
            }
        }
    }
}

/// 1 at the `keep` fraction of the largest values of `scores` (at least one), 0 elsewhere;
/// ties go to the lower index, so the mask is deterministic.
pub fn top_k_mask(scores: &Tensor, keep: f32) -> Tensor {
    let n = scores.len();
    let k = ((keep.clamp(0.0, 1.0) * n as f32).round() as usize).clamp(1.min(n), n);
    let mut idx: Vec<usize> = (0..n).collect();
    let d = scores.data();
    idx.sort_by(|&a, &b| d[b].total_cmp(&d[a]).then(a.cmp(&b)));
    let mut m = vec![0f32; n];
    idx[..k].iter().for_each(|&i| m[i] = 1.0);
    Tensor::from_vec(scores.shape().to_vec(), m)
}
