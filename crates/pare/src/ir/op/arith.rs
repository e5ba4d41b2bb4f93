//! Arithmetic between activations: `add` (a residual sum of inputs of equal shape) and `mul`,
//! `sub`, `div` (two inputs, NumPy broadcasting).

use super::rules::Rules;
use super::shape::broadcast;
use super::{AxisRule, Couple, Source};

/// `add`: the sum of two or more inputs of equal shape.
pub(super) struct Sum;

/// `mul`, `sub` or `div` (the name, for errors): two inputs broadcast against each other.
pub(super) struct Broadcast(pub &'static str);

impl Rules for Sum {
    fn has_attributes(&self) -> bool {
        false
    }

    fn arity(&self) -> (usize, usize) {
        (2, usize::MAX)
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let x = inputs[0];
        if let Some(bad) = inputs.iter().find(|s| **s != x) {
            return Err(format!("add expects equal input shapes, got {x:?} and {bad:?}"));
        }
        Ok(x.to_vec())
    }

    fn axis_rule(&self, inputs: &[&[usize]], _out_rank: usize) -> AxisRule {
        broadcast_rule(inputs)
    }
}

impl Rules for Broadcast {
    fn has_attributes(&self) -> bool {
        false
    }

    fn arity(&self) -> (usize, usize) {
        (2, 2)
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        broadcast(inputs[0], inputs[1]).map_err(|e| format!("{}: {e}", self.0))
    }

    fn axis_rule(&self, inputs: &[&[usize]], _out_rank: usize) -> AxisRule {
        broadcast_rule(inputs)
    }
}

/// Broadcasting arithmetic: output axis `j` aligns input axes from the right; inputs whose
/// aligned axis has the output's size are coupled there, and the first of them is the source.
fn broadcast_rule(inputs: &[&[usize]]) -> AxisRule {
    let rank = inputs.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut outputs = Vec::with_capacity(rank);
    let mut couples = Vec::new();
    for j in 0..rank {
        let aligned: Vec<(usize, usize)> = inputs
            .iter()
            .enumerate()
            .filter_map(|(i, s)| (j + s.len()).checked_sub(rank).map(|a| (i, a)))
            .collect();
        let size = aligned.iter().map(|&(i, a)| inputs[i][a]).max().unwrap_or(1);
        let full: Vec<(usize, usize)> = aligned
            .into_iter()
            .filter(|&(i, a)| inputs[i][a] == size)
            .collect();
        match full.first() {
            Some(&(input, axis)) => {
                outputs.push(Source::Input { input, axis });
                couples.extend(
                    full[1..]
                        .iter()
                        .map(|&b| Couple::Positions { a: (input, axis), b }),
                );
            }
            None => outputs.push(Source::Fixed),
        }
    }
    AxisRule {
        outputs,
        couples,
        weight_in: None,
        weight_out: None,
    }
}
