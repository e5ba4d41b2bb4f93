//! Low-rank factorization of Linear layers by truncated SVD (Xue et al. 2013; Denton et al.
//! 2014): `W [out, in] ~ U_r S_r V_r^T`, so one Linear becomes two, `in -> r` without a bias and
//! `r -> out` with the original bias, and a layer costs `r (in + out)` weights instead of
//! `in * out`. The singular values are split evenly (`sqrt(S_r) V_r^T` and `U_r sqrt(S_r)`), so
//! the two factors have the same scale and train alike when fine-tuned.
//!
//! The second factor keeps the layer's name (and its bias's), so layer names in recipes and
//! pruning still find it; the first is `{name}_v`. A layer is left alone when the rank kept would
//! not make it smaller.

use std::collections::BTreeSet;

use nalgebra::DMatrix;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::ir::op::param_name;
use crate::ir::{Model, Node, Op, Tensor};

/// How many singular values a factorized layer keeps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rank {
    /// The fewest singular values whose squares sum to at least this fraction of the total
    /// (the fraction of `||W||_F^2` kept), in (0, 1].
    Energy(f64),
    /// At most this many (a layer of lower rank keeps all of its own).
    Fixed(usize),
}

/// What happened to one Linear layer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerRank {
    pub layer: String,
    /// `min(in, out)`.
    pub full_rank: usize,
    /// The rank the rule chose.
    pub rank: usize,
    /// Fraction of `||W||_F^2` kept by that rank.
    pub energy: f64,
    pub weights_before: usize,
    pub weights_after: usize,
    /// Whether the layer was replaced (false: the rank would not make it smaller).
    pub factorized: bool,
}

/// Factorizes the Linear layers named in `layers` (all of them when `None`) by `rank`.
///
/// # Errors
/// A name that is no Linear layer of the model, or an impossible rule (energy outside (0, 1],
/// rank 0).
pub fn factorize(model: &Model, layers: Option<&[String]>, rank: Rank) -> Result<(Model, Vec<LayerRank>)> {
    match rank {
        Rank::Energy(e) if !(e > 0.0 && e <= 1.0) => {
            return Err(Error::Config(format!(
                "energy {e} is impossible: the fraction kept must be in (0, 1]"
            )))
        }
        Rank::Fixed(0) => return Err(Error::Config("rank 0 would remove the layer".into())),
        _ => {}
    }
    let linears: Vec<&Node> = model
        .graph
        .nodes
        .iter()
        .filter(|n| matches!(n.op, Op::Linear { .. }))
        .collect();
    let chosen: BTreeSet<&str> = match layers {
        None => linears.iter().map(|n| n.name.as_str()).collect(),
        Some(names) => {
            for name in names {
                if !linears.iter().any(|n| &n.name == name) {
                    return Err(Error::Config(format!(
                        "no Linear layer named '{name}' (Linear layers: {})",
                        linears
                            .iter()
                            .map(|n| n.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
            }
            names.iter().map(String::as_str).collect()
        }
    };
    let mut graph = model.graph.clone();
    let mut params = model.params.clone();
    let mut report = Vec::new();
    for node in linears.into_iter().filter(|n| chosen.contains(n.name.as_str())) {
        let Op::Linear {
            in_features,
            out_features,
            bias,
        } = node.op
        else {
            unreachable!("filtered to Linear layers")
        };
        let weight = param_name(&node.name, "weight");
        let svd = Svd::of(&model.params[&weight], out_features, in_features);
        let r = svd.rank_for(rank);
        let (before, after) = (in_features * out_features, r * (in_features + out_features));
        let factorized = after < before;
        report.push(LayerRank {
            layer: node.name.clone(),
            full_rank: svd.values.len(),
            rank: r,
            energy: svd.energy(r),
            weights_before: before,
            weights_after: if factorized { after } else { before },
            factorized,
        });
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
                op: Op::Linear {
                    in_features,
                    out_features: r,
                    bias: false,
                },
                inputs: node.inputs.clone(),
            },
            Node {
                name: node.name.clone(),
                op: Op::Linear {
                    in_features: r,
                    out_features,
                    bias,
                },
                inputs: vec![first],
            },
        ];
        graph.replace(&node.name, nodes, &node.name)?;
    }
    Ok((Model::new(graph, params)?, report))
}

/// A weight's singular value decomposition, values in decreasing order.
struct Svd {
    /// `[out, k]` left singular vectors, column j for value j.
    u: DMatrix<f64>,
    /// `[k, in]` right singular vectors transposed, row j for value j.
    v_t: DMatrix<f64>,
    values: Vec<f64>,
    /// `kept[r]`: the fraction of the squared values the largest `r` hold (`kept[0] = 0`).
    kept: Vec<f64>,
    /// Position of value j (in decreasing order) in `u`'s columns and `v_t`'s rows.
    order: Vec<usize>,
}

impl Svd {
    fn of(w: &Tensor, rows: usize, cols: usize) -> Svd {
        let m = DMatrix::from_row_iterator(rows, cols, w.data().iter().map(|&x| x as f64));
        let svd = m.svd(true, true);
        let mut order: Vec<usize> = (0..svd.singular_values.len()).collect();
        order.sort_by(|&a, &b| svd.singular_values[b].total_cmp(&svd.singular_values[a]));
        let values: Vec<f64> = order.iter().map(|&i| svd.singular_values[i]).collect();
        let total: f64 = values.iter().map(|s| s * s).sum();
        let kept = std::iter::once(0.0)
            .chain(values.iter().scan(0.0, |acc, s| {
                *acc += s * s;
                Some(if total == 0.0 { 1.0 } else { *acc / total })
            }))
            .collect();
        Svd {
            values,
            kept,
            u: svd.u.expect("requested U"),
            v_t: svd.v_t.expect("requested V^T"),
            order,
        }
    }

    fn energy(&self, r: usize) -> f64 {
        self.kept[r]
    }

    fn rank_for(&self, rule: Rank) -> usize {
        let full = self.values.len();
        match rule {
            Rank::Fixed(r) => r.min(full),
            Rank::Energy(e) => (1..=full).find(|&r| self.kept[r] >= e - 1e-12).unwrap_or(full),
        }
    }

    /// `sqrt(S_r) V_r^T` as `[r, in]` and `U_r sqrt(S_r)` as `[out, r]`, row-major f32.
    fn factors(&self, r: usize) -> (Tensor, Tensor) {
        let (rows, cols) = (self.u.nrows(), self.v_t.ncols());
        let mut v = Vec::with_capacity(r * cols);
        for (j, &k) in self.order[..r].iter().enumerate() {
            let s = self.values[j].sqrt();
            v.extend((0..cols).map(|c| (s * self.v_t[(k, c)]) as f32));
        }
        let mut u = Vec::with_capacity(rows * r);
        for row in 0..rows {
            for (j, &k) in self.order[..r].iter().enumerate() {
                u.push((self.u[(row, k)] * self.values[j].sqrt()) as f32);
            }
        }
        (
            Tensor::from_vec(vec![r, cols], v),
            Tensor::from_vec(vec![rows, r], u),
        )
    }
}
