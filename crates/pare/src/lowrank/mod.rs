//! Low-rank factorization: one layer becomes a few thinner ones.
//!
//! - Linear, by truncated SVD (Xue et al. 2013; Denton et al. 2014): `W [out, in] ~ U_r S_r
//!   V_r^T`, `in -> r` without a bias then `r -> out` with the original bias, `r (in + out)`
//!   weights instead of `in * out`. The singular values are split evenly (`sqrt(S_r) V_r^T` and
//!   `U_r sqrt(S_r)`), so the two factors have the same scale and train alike when fine-tuned.
//! - Conv2d, spatial SVD (Jaderberg et al. 2014, as AIMET does it): the `kh x kw` kernel becomes
//!   a `kh x 1` convolution to `r` channels then a `1 x kw` one (`conv.rs`).
//! - Conv2d, Tucker-2 (Kim et al. 2016): the two channel axes are compressed by HOSVD, giving a
//!   1x1 convolution `in -> r_in`, the `kh x kw` core `r_in -> r_out`, and a 1x1 `r_out -> out`.
//! - Conv2d, depthwise-separable (as MobileNet builds it): a depthwise `kh x kw` then a 1x1,
//!   from the rank-1 approximation of each input channel's slice, the 1x1 then refitted to the
//!   original layer's outputs on calibration data (`refit.rs`).
//!
//! Ranks come from a rule applied to every layer ([`Rank`]: energy kept or fixed) or from a MAC
//! budget spread over the layers by their measured sensitivity ([`factorize_for_macs`]).
//!
//! The last new layer keeps the layer's name (and its bias's), so layer names in recipes and
//! pruning still find it; the ones before are `{name}_v` (SVD, spatial), `{name}_in`,
//! `{name}_core` (Tucker-2) or `{name}_dw` (separable). A layer is left alone when the rank kept would not make it smaller.

mod budget;
mod conv;
mod refit;
mod svd;
pub mod vbmf;

pub use budget::{factorize_for_macs, BudgetReport, Trial};
pub use refit::{refit_pointwise, refit_separable};

use std::collections::BTreeSet;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::ir::graph::check_layer_names;
use crate::ir::op::param_name;
use crate::ir::op::{Conv2d, Linear};
use crate::ir::{Model, Node, Op};
use svd::Svd;

/// How many singular values a factorized layer keeps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rank {
    /// The fewest singular values whose squares sum to at least this fraction of the total
    /// (the fraction of `||W||_F^2` kept), in (0, 1]. Tucker-2 applies it to each channel axis.
    Energy(f64),
    /// At most this many (a layer of lower rank keeps all of its own).
    Fixed(usize),
    /// The components empirical variational Bayesian matrix factorization finds above its
    /// noise threshold ([`vbmf::vbmf`]; at least one). Tucker-2 applies it to the unfolding of
    /// each channel axis, as Kim et al. (2016) do.
    Vbmf,
}

/// How convolutions are factorized (Linear layers always by SVD).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConvMethod {
    /// `kh x kw -> kh x 1, 1 x kw` (ungrouped convolutions with both kernel sides above 1).
    Spatial,
    /// `1x1 -> kh x kw core -> 1x1` on the channel axes (ungrouped convolutions).
    Tucker2,
    /// Depthwise `kh x kw` then pointwise 1x1 (MobileNet's depthwise-separable convolution):
    /// each input channel's `[out, kh kw]` slice of the weight by its best rank-1
    /// approximation (the rank rule does not apply). [`refit_pointwise`] then fits the
    /// pointwise layer to the original layer's outputs on data.
    Separable,
}

impl ConvMethod {
    pub fn parse(s: &str) -> Result<ConvMethod> {
        match s {
            "spatial" => Ok(ConvMethod::Spatial),
            "tucker2" => Ok(ConvMethod::Tucker2),
            "separable" => Ok(ConvMethod::Separable),
            _ => Err(Error::Config(format!(
                "unknown convolution factorization '{s}' (expected spatial, tucker2 or separable)"
            ))),
        }
    }

    /// Whether the method applies to `op`.
    fn applies(self, op: &Op) -> bool {
        match (self, op) {
            (_, Op::Conv2d(Conv2d { groups, .. })) if *groups != 1 => false,
            (ConvMethod::Spatial, Op::Conv2d(Conv2d { kernel_size, .. })) => {
                kernel_size[0] > 1 && kernel_size[1] > 1
            }
            (ConvMethod::Separable, Op::Conv2d(Conv2d { kernel_size, .. })) => {
                kernel_size[0] * kernel_size[1] > 1
            }
            (ConvMethod::Tucker2, Op::Conv2d(Conv2d { .. })) => true,
            _ => false,
        }
    }
}

/// What happened to one layer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerRank {
    pub layer: String,
    /// `svd`, `spatial`, `tucker2` or `separable`.
    pub method: &'static str,
    /// The largest rank the factorization can have (`min(in, out)` for a Linear layer; for
    /// Tucker-2, of the output-channel axis).
    pub full_rank: usize,
    /// The rank the rule chose (Tucker-2: of the output-channel axis).
    pub rank: usize,
    /// Tucker-2: the rank of the input-channel axis.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_rank: Option<usize>,
    /// Fraction of `||W||_F^2` the factorized weight keeps.
    pub energy: f64,
    pub weights_before: usize,
    pub weights_after: usize,
    /// Whether the layer was replaced (false: the rank would not make it smaller).
    pub factorized: bool,
}

impl LayerRank {
    /// A report row for `layer` with `weights` = (before, after): the layer counts as
    /// factorized only when the factors hold fewer weights.
    fn new(
        layer: &str,
        method: &'static str,
        full_rank: usize,
        rank: usize,
        energy: f64,
        weights: (usize, usize),
    ) -> LayerRank {
        let (before, after) = weights;
        let factorized = after < before;
        LayerRank {
            layer: layer.to_string(),
            method,
            full_rank,
            rank,
            input_rank: None,
            energy,
            weights_before: before,
            weights_after: if factorized { after } else { before },
            factorized,
        }
    }
}

/// `kept / total`, 1 for a zero weight (nothing to lose).
fn kept_fraction(kept: f64, total: f64) -> f64 {
    if total == 0.0 {
        1.0
    } else {
        kept / total
    }
}

/// Factorizes the Linear layers named in `layers` (all of them when `None`) by `rank`.
///
/// # Errors
/// A name that is no Linear layer of the model, or an impossible rule (energy outside (0, 1],
/// rank 0).
pub fn factorize(model: &Model, layers: Option<&[String]>, rank: Rank) -> Result<(Model, Vec<LayerRank>)> {
    factorize_with(model, layers, rank, None)
}

/// Factorizes the layers named in `layers` by `rank`: Linear layers by SVD and, with `conv`,
/// the convolutions that method applies to. Without `layers`, every such layer.
///
/// # Errors
/// A name that is no such layer of the model, or an impossible rule (energy outside (0, 1],
/// rank 0).
pub fn factorize_with(
    model: &Model,
    layers: Option<&[String]>,
    rank: Rank,
    conv: Option<ConvMethod>,
) -> Result<(Model, Vec<LayerRank>)> {
    match rank {
        Rank::Energy(e) if !(e > 0.0 && e <= 1.0) => {
            return Err(Error::Config(format!(
                "energy {e} is impossible: the fraction kept must be in (0, 1]"
            )))
        }
        Rank::Fixed(0) => return Err(Error::Config("rank 0 would remove the layer".into())),
        _ => {}
    }
    let eligible: Vec<&Node> = model
        .graph
        .nodes
        .iter()
        .filter(|n| matches!(n.op, Op::Linear(Linear { .. })) || conv.is_some_and(|c| c.applies(&n.op)))
        .filter(|n| !model.graph.is_tied(&n.name))
        .collect();
    let kinds = match conv {
        None => "Linear layer",
        Some(ConvMethod::Spatial) => "Linear layer or ungrouped convolution with a kernel above 1x1",
        Some(ConvMethod::Tucker2) => "Linear layer or ungrouped convolution",
        Some(ConvMethod::Separable) => "Linear layer or ungrouped convolution with a kernel above 1x1",
    };
    let chosen: BTreeSet<&str> = match layers {
        // Unnamed, a stem convolution reading 1-3 image channels stays whole under the
        // separable conversion (its filters would all be one filter, scaled), as MobileNet
        // keeps its first layer a full convolution.
        None => eligible
            .iter()
            .filter(|n| {
                !(conv == Some(ConvMethod::Separable)
                    && matches!(n.op, Op::Conv2d(Conv2d { in_channels, .. }) if in_channels <= 3))
            })
            .map(|n| n.name.as_str())
            .collect(),
        Some(names) => {
            let names_of: Vec<&str> = eligible.iter().map(|n| n.name.as_str()).collect();
            model.graph.check_untied(names, "factorized")?;
            check_layer_names(names, &names_of, kinds)?;
            names.iter().map(String::as_str).collect()
        }
    };
    let mut graph = model.graph.clone();
    let mut params = model.params.clone();
    let mut report = Vec::new();
    for node in eligible.into_iter().filter(|n| chosen.contains(n.name.as_str())) {
        let Op::Linear(Linear {
            in_features,
            out_features,
            bias,
        }) = node.op
        else {
            let method = conv.expect("convolutions are chosen only with a method");
            let (row, nodes, new_params) = conv::factorize(model, node, rank, method);
            let factorized = row.factorized;
            report.push(row);
            if factorized {
                params.remove(&param_name(&node.name, "weight"));
                params.extend(new_params);
                graph.replace(&node.name, nodes, &node.name)?;
            }
            continue;
        };
        let weight = param_name(&node.name, "weight");
        let svd = Svd::of(&model.params[&weight], out_features, in_features);
        let r = svd.rank_for(rank);
        let row = LayerRank::new(
            &node.name,
            "svd",
            svd.values.len(),
            r,
            svd.energy(r),
            (in_features * out_features, r * (in_features + out_features)),
        );
        let factorized = row.factorized;
        report.push(row);
        if !factorized {
            continue;
        }
        let first = format!("{}_v", node.name);
        let (v, u) = svd.factors(r);
        params.insert(param_name(&first, "weight"), v);
        params.insert(weight, u);
        let nodes = vec![
            Node {
                name: first.clone(),
                op: Op::Linear(Linear {
                    in_features,
                    out_features: r,
                    bias: false,
                }),
                inputs: node.inputs.clone(),
            },
            Node {
                name: node.name.clone(),
                op: Op::Linear(Linear {
                    in_features: r,
                    out_features,
                    bias,
                }),
                inputs: vec![first],
            },
        ];
        graph.replace(&node.name, nodes, &node.name)?;
    }
    Ok((Model::new(graph, params)?, report))
}
