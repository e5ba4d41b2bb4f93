//! Reparameterizations: the weight a layer uses is computed at forward time from the stored
//! one, so masks and fake quantization never copy or rewrite the model.
//!
//! `exec` applies these on the tensor engine (with gradients); [`Reparam::apply`] is the
//! reference the engine's version is tested against and what exports use to bake weights.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::model::Model;
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
    /// Binary weights (BinaryConnect, Courbariaux et al. 2015; BNN): `sign(w)`, `+1` at zero;
    /// with `scaled`, XNOR-Net's `alpha * sign(w)` where `alpha` is the mean `|w|` of each
    /// output channel (row of axis 0). Backward is the straight-through estimator of the sign
    /// (gradient 1 inside `[-1, 1]`, 0 outside), plus the gradient through `alpha` when scaled;
    /// the fit loop keeps the stored weights clipped to `[-1, 1]` (see `train::ReparamHook`).
    ///
    /// With `stochastic`, BinaryConnect's stochastic binarization: in a training step each
    /// weight is `+1` with probability `hard_sigmoid(w) = clip((w + 1) / 2, 0, 1)` and `-1`
    /// otherwise, drawn afresh every step (so the binary weight is `w` in expectation). Outside
    /// training (evaluation, [`Reparam::apply`], baking) it is the deterministic sign, the most
    /// likely draw: the binary network a deployment runs.
    Binarize {
        scaled: bool,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        stochastic: bool,
    },
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
            Reparam::Binarize { scaled, .. } => binarize(w, *scaled),
        }
    }
}

impl Reparam {
    /// Puts a stored weight back in the set this transformation requires after an optimizer
    /// step: pruned positions re-zeroed (momentum and weight decay move them), binarized weights
    /// clipped to `[-1, 1]` (BinaryConnect: beyond it the sign never changes and the gradient
    /// through the sign is zero).
    pub fn constrain(&self, w: &mut Tensor) {
        match self {
            Reparam::Mask(m) => w.data_mut().iter_mut().zip(m.data()).for_each(|(v, k)| *v *= k),
            Reparam::Binarize { .. } => w.data_mut().iter_mut().for_each(|v| *v = v.clamp(-1.0, 1.0)),
            Reparam::FakeQuant(_) | Reparam::Supermask { .. } => {}
        }
    }
}

/// The model with every reparameterization applied to the stored weights (what a deployed
/// model holds).
pub fn bake(model: &Model, reparams: &Reparams) -> Model {
    let mut out = model.clone();
    for (name, rs) in reparams {
        if let Some(p) = out.params.get_mut(name) {
            for r in rs {
                *p = r.apply(p);
            }
        }
    }
    out
}

/// `sign(w)` (`+1` at zero), times each output channel's mean `|w|` when `scaled`.
pub fn binarize(w: &Tensor, scaled: bool) -> Tensor {
    let rows = w.shape().first().copied().unwrap_or(1).max(1);
    let per = w.len() / rows;
    let mut data = Vec::with_capacity(w.len());
    for row in w.data().chunks(per.max(1)) {
        let alpha = if scaled {
            row.iter().map(|v| v.abs()).sum::<f32>() / per.max(1) as f32
        } else {
            1.0
        };
        data.extend(row.iter().map(|&v| if v >= 0.0 { alpha } else { -alpha }));
    }
    Tensor::from_vec(w.shape().to_vec(), data)
}

/// BinaryConnect's stochastic signs of `w` for one training step: `+1` with probability
/// `clip((w + 1) / 2, 0, 1)`, `-1` otherwise, from a generator seeded by `seed` (the step's seed
/// mixed with the parameter's name by the caller), so a step is reproducible and resumable.
pub fn stochastic_signs(w: &Tensor, seed: u64) -> Vec<f32> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    w.data()
        .iter()
        .map(|&v| {
            let p = ((v + 1.0) / 2.0).clamp(0.0, 1.0);
            if rng.random::<f32>() < p {
                1.0
            } else {
                -1.0
            }
        })
        .collect()
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
