//! Joint training of a graph's extra outputs (early exits, auxiliary heads): each gets its own
//! cross-entropy with the batch's labels, weighted, beside the main output's (BranchyNet's
//! joint objective, Teerapittayanon et al. 2016).

use super::fit::Hooks;
use crate::data::Batch;
use crate::error::{Error, Result};
use crate::exec::LossTerm;
use crate::ir::Model;

/// A hook that adds `weight * cross_entropy(output, labels)` for each `(output, weight)`.
#[derive(Clone, Debug, PartialEq)]
pub struct OutputLosses {
    weights: Vec<(String, f32)>,
}

impl OutputLosses {
    /// Checks that every name is an extra output of `model` and every weight finite and positive.
    pub fn new(model: &Model, weights: Vec<(String, f32)>) -> Result<OutputLosses> {
        for (name, w) in &weights {
            if !model.graph.extra_outputs.contains(name) {
                return Err(Error::graph(
                    name,
                    format!(
                        "is not an extra output of the graph (extra outputs: {})",
                        model.graph.extra_outputs.join(", ")
                    ),
                ));
            }
            if !(w.is_finite() && *w > 0.0) {
                return Err(Error::Config(format!(
                    "the loss weight of output '{name}' must be positive and finite, got {w}"
                )));
            }
        }
        Ok(OutputLosses { weights })
    }
}

impl Hooks for OutputLosses {
    fn loss_terms(&mut self, batch: &Batch, terms: &mut Vec<LossTerm>) -> Result<()> {
        terms.extend(self.weights.iter().map(|(output, weight)| LossTerm::At {
            output: output.clone(),
            term: Box::new(LossTerm::CrossEntropy {
                labels: batch.labels.clone(),
                weight: *weight,
            }),
        }));
        Ok(())
    }
}
