//! The `embedding` op.

use serde::{Deserialize, Serialize};

use super::rules::Rules;
use super::{AxisRule, ParamKind, ParamSpec, Source};
use crate::ir::graph::{MAX_INDEX, MAX_RANK};

/// A lookup table (PyTorch's `nn.Embedding`): each integer id of the input becomes row `id`
/// of `weight` `[num_embeddings, embedding_dim]`, so `[T]` ids give `[T, embedding_dim]`.
/// Reads the graph's input, which must then be of dtype `index`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Embedding {
    pub num_embeddings: usize,
    pub embedding_dim: usize,
}

impl Rules for Embedding {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let (x, rows, width) = (inputs[0], self.num_embeddings, self.embedding_dim);
        if rows == 0 || width == 0 || rows > MAX_INDEX {
            return Err(format!(
                "embedding of {rows} x {width}: both must be positive, at most {MAX_INDEX} rows"
            ));
        }
        if x.len() >= MAX_RANK {
            return Err(format!(
                "embedding ids {x:?} have too many axes for a {width}-wide output"
            ));
        }
        Ok(x.iter().copied().chain([width]).collect())
    }

    /// Ids in, a row of the table per id: the tokens carry on, the features are the table's.
    fn axis_rule(&self, _inputs: &[&[usize]], _out_rank: usize) -> AxisRule {
        AxisRule {
            outputs: vec![Source::Input { input: 0, axis: 0 }, Source::Fixed],
            ..AxisRule::opaque(0)
        }
    }

    fn params(&self) -> Vec<ParamSpec> {
        let shape = vec![self.num_embeddings, self.embedding_dim];
        vec![ParamSpec::new("weight", shape, ParamKind::Weight, None, None)]
    }
}
