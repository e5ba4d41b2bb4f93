//! The `layer_norm` op.

use serde::{Deserialize, Serialize};

use super::rules::Rules;
use super::{AxisRule, ParamKind, ParamSpec};

/// Layer normalization over the last axis (PyTorch's `nn.LayerNorm(dim)`): weight and bias
/// `[dim]`, biased variance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerNorm {
    pub dim: usize,
    pub eps: f64,
}

impl Rules for LayerNorm {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let (x, dim, eps) = (inputs[0], self.dim, self.eps);
        if x.last() != Some(&dim) {
            return Err(format!("layer_norm expects a last axis of {dim}, got {x:?}"));
        }
        if !(eps > 0.0 && eps.is_finite()) {
            return Err(format!("layer_norm eps={eps} must be positive and finite"));
        }
        Ok(x.to_vec())
    }

    /// The normalized axis mixes its positions.
    fn axis_rule(&self, inputs: &[&[usize]], _out_rank: usize) -> AxisRule {
        let rank = inputs[0].len();
        AxisRule::same_axes(rank, &[rank.saturating_sub(1)])
    }

    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::new("weight", vec![self.dim], ParamKind::Weight, None, None),
            ParamSpec::new("bias", vec![self.dim], ParamKind::Bias, None, None),
        ]
    }
}
