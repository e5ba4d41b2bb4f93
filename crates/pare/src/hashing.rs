//! HashedNets (Chen et al. 2015): Linear layers whose weights are drawn from a few shared
//! values through a hash of their position ([`Op::HashedLinear`]), so a layer of `in x out`
//! virtual weights stores `in x out / factor` numbers and is trained directly in that form.

use serde::{Deserialize, Serialize};

use crate::data::batch::mix;
use crate::error::{Error, Result};
use crate::ir::graph::check_layer_names;
use crate::ir::op::{hashed_index, param_name};
use crate::ir::op::{HashedLinear, Linear};
use crate::ir::{Model, Node, Op, Tensor};

/// Where a hashed layer's shared values start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Buckets {
    /// Drawn as PyTorch initializes a Linear of the same fan-in: for training from scratch,
    /// as the paper does.
    Fresh,
    /// The least-squares fit to the layer's present weights (each bucket the mean of its
    /// positions' signed weights): for hashing a trained model, then fine-tuning.
    Fit,
}

/// What became of one Linear layer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HashedLayer {
    pub layer: String,
    pub virtual_weights: usize,
    pub buckets: usize,
}

/// Replaces the Linear layers named in `layers` (all when `None`) by hashed ones with
/// `ceil(in * out / factor)` buckets each, every layer with its own hash (from `seed` and its
/// position in the graph). Biases are kept as they are (not hashed, as in the paper).
///
/// # Errors
/// A factor below 1, or a name that is no Linear layer.
pub fn hash_linears(
    model: &Model,
    factor: f64,
    layers: Option<&[String]>,
    init: Buckets,
    seed: u64,
) -> Result<(Model, Vec<HashedLayer>)> {
    if !(factor >= 1.0 && factor.is_finite()) {
        return Err(Error::Config(format!(
            "a hashing factor of {factor} is impossible: it divides the weights, so it must be 1 or more"
        )));
    }
    let linears: Vec<&str> = model
        .graph
        .nodes
        .iter()
        .filter(|n| matches!(n.op, Op::Linear(Linear { .. })) && !model.graph.is_tied(&n.name))
        .map(|n| n.name.as_str())
        .collect();
    if let Some(names) = layers {
        model.graph.check_untied(names, "hashed")?;
        check_layer_names(names, &linears, "Linear layer")?;
    }
    let chosen = |name: &str| linears.contains(&name) && layers.is_none_or(|l| l.iter().any(|n| n == name));
    let mut graph = model.graph.clone();
    let mut report = Vec::new();
    for (i, node) in model.graph.nodes.iter().enumerate() {
        let Op::Linear(Linear {
            in_features,
            out_features,
            bias,
        }) = node.op
        else {
            continue;
        };
        if !chosen(&node.name) {
            continue;
        }
        let virtual_weights = in_features * out_features;
        let buckets = ((virtual_weights as f64 / factor).ceil() as usize).max(1);
        let op = Op::HashedLinear(HashedLinear {
            in_features,
            out_features,
            buckets,
            seed: mix(seed, i as u64, 0x4A5),
            bias,
        });
        let hashed = Node {
            name: node.name.clone(),
            op,
            inputs: node.inputs.clone(),
        };
        graph.replace(&node.name, vec![hashed], &node.name)?;
        report.push(HashedLayer {
            layer: node.name.clone(),
            virtual_weights,
            buckets,
        });
    }
    // Only fresh buckets need a freshly drawn model.
    let fresh = match init {
        Buckets::Fresh => Some(Model::init(graph.clone(), seed)?),
        Buckets::Fit => None,
    };
    let mut params = model.params.clone();
    for r in &report {
        let weight = param_name(&r.layer, "weight");
        let t = match &fresh {
            Some(fresh) => fresh.params[&weight].clone(),
            None => {
                let Some(Op::HashedLinear(HashedLinear {
                    in_features,
                    out_features,
                    buckets,
                    seed,
                    ..
                })) = graph.node(&r.layer).map(|n| &n.op)
                else {
                    unreachable!("replaced above")
                };
                fitted_buckets(
                    &model.params[&weight],
                    *seed,
                    *out_features,
                    *in_features,
                    *buckets,
                )
            }
        };
        params.insert(weight, t);
    }
    Ok((Model::new(graph, params)?, report))
}

/// The buckets closest to `w` in least squares: each the mean of its positions' signed weights
/// (an empty bucket is 0).
fn fitted_buckets(w: &Tensor, seed: u64, out: usize, inp: usize, buckets: usize) -> Tensor {
    let (index, sign) = hashed_index(seed, out, inp, buckets);
    let (mut sum, mut count) = (vec![0.0f64; buckets], vec![0usize; buckets]);
    for ((&b, &s), &v) in index.iter().zip(&sign).zip(w.data()) {
        sum[b as usize] += (s * v) as f64;
        count[b as usize] += 1;
    }
    let data = sum
        .iter()
        .zip(&count)
        .map(|(&s, &c)| if c == 0 { 0.0 } else { (s / c as f64) as f32 })
        .collect();
    Tensor::from_vec(vec![buckets], data)
}
