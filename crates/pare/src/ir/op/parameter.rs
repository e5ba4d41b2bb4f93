//! The `parameter` op.

use serde::{Deserialize, Serialize};

use super::rules::Rules;
use super::{AxisRule, ParamKind, ParamSpec};

/// A learned tensor of per-sample shape `shape`, the same for every sample (a class token,
/// a position embedding). Its parameter `weight` is stored `[1, ..shape]`, as a PyTorch
/// `nn.Parameter` broadcast over the batch is. Takes no input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Parameter {
    pub shape: Vec<usize>,
}

impl Rules for Parameter {
    fn arity(&self) -> (usize, usize) {
        (0, 0)
    }

    fn output_shape(&self, _inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let shape = &self.shape;
        if shape.is_empty() || shape.contains(&0) {
            return Err(format!(
                "parameter shape {shape:?} must be non-empty and positive"
            ));
        }
        Ok(shape.clone())
    }

    fn axis_rule(&self, _inputs: &[&[usize]], _out_rank: usize) -> AxisRule {
        AxisRule::opaque(self.shape.len())
    }

    fn params(&self) -> Vec<ParamSpec> {
        let mut stored = vec![1];
        stored.extend_from_slice(&self.shape);
        vec![ParamSpec::new("", stored, ParamKind::Weight, None, None)]
    }
}
