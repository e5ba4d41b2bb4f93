//! The `batch_norm` op.

use serde::{Deserialize, Serialize};

use super::rules::{keep, Rules};
use super::{AxisRule, Kept, ParamKind, ParamSpec};

/// Batch normalization over axis 0 of the per-sample shape (1-D on `[C]`, 2-D on `[C, H, W]`),
/// with PyTorch semantics: running variance updated with the unbiased batch variance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchNorm {
    pub num_features: usize,
    pub eps: f64,
    pub momentum: f64,
}

impl Rules for BatchNorm {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let (x, n) = (inputs[0], self.num_features);
        if x.first() != Some(&n) || !(x.len() == 1 || x.len() == 3) {
            return Err(format!("batch_norm expects [{n}] or [{n}, H, W], got {x:?}"));
        }
        Ok(x.to_vec())
    }

    fn axis_rule(&self, inputs: &[&[usize]], _out_rank: usize) -> AxisRule {
        AxisRule {
            weight_out: Some(0),
            ..AxisRule::same_axes(inputs[0].len(), &[])
        }
    }

    fn params(&self) -> Vec<ParamSpec> {
        let n = vec![self.num_features];
        let p = |suffix, kind| ParamSpec::new(suffix, n.clone(), kind, Some(0), None);
        vec![
            p("weight", ParamKind::Weight),
            p("bias", ParamKind::Bias),
            p("running_mean", ParamKind::Buffer),
            p("running_var", ParamKind::Buffer),
        ]
    }

    fn shrunk(&self, kept: &Kept) -> Self {
        let mut op = self.clone();
        keep(&mut op.num_features, kept.outputs);
        op
    }
}
