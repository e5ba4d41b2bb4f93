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
        }
    }
}
