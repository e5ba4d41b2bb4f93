//! Reparameterizations: the weight a layer uses is computed at forward time from the stored
//! one, so masks and fake quantization never copy or rewrite the model.
//!
//! `exec` applies these on the tensor engine (with gradients); [`Reparam::apply`] is the
//! reference the engine's version is tested against and what exports use to bake weights.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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
    /// Uniform symmetric fake quantization with a straight-through estimator in backward.
    FakeQuant(FakeQuant),
}

/// Symmetric uniform quantization to `bits` bits: `q = clamp(round_half_even(w / s), -m, m) * s`
/// with `m = 2^(bits-1) - 1` and `s = max|w| / m`, per tensor or per output channel (axis 0).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FakeQuant {
    pub bits: u32,
    pub per_channel: bool,
}

impl FakeQuant {
    /// Largest integer level, `2^(bits-1) - 1`.
    pub fn max_level(&self) -> f32 {
        ((1u64 << (self.bits.clamp(2, 16) - 1)) - 1) as f32
    }

    /// Scales for `w`: one per tensor, or one per slice along axis 0. A zero range gives scale 1
    /// (every value is then zero and stays zero).
    pub fn scales(&self, w: &Tensor) -> Vec<f32> {
        let rows = if self.per_channel {
            w.shape().first().copied().unwrap_or(1).max(1)
        } else {
            1
        };
        let chunk = (w.len() / rows).max(1);
        w.data()
            .chunks(chunk)
            .map(|c| {
                let max = c.iter().fold(0f32, |m, v| m.max(v.abs()));
                if max > 0.0 {
                    max / self.max_level()
                } else {
                    1.0
                }
            })
            .collect()
    }
}

impl Reparam {
    /// The effective value of `w` under this transformation, computed on the CPU.
    pub fn apply(&self, w: &Tensor) -> Tensor {
        match self {
            Reparam::Mask(mask) => {
                let data = w.data().iter().zip(mask.data()).map(|(a, m)| a * m).collect();
                Tensor::from_vec(w.shape().to_vec(), data)
            }
            Reparam::FakeQuant(fq) => {
                let scales = fq.scales(w);
                let chunk = (w.len() / scales.len()).max(1);
                let m = fq.max_level();
                let mut out = w.clone();
                for (c, s) in out.data_mut().chunks_mut(chunk).zip(&scales) {
                    for v in c {
                        *v = (*v / s).round_ties_even().clamp(-m, m) * s;
                    }
                }
                out
            }
        }
    }
}
