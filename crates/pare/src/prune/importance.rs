//! Channel importance criteria behind one trait. Each scores every prunable channel (producer
//! node, output channel); a higher score means more important, so the lowest go first.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::deps::DepGraph;
use crate::data::Batch;
use crate::error::{Error, Result};
use crate::exec::{self, LossTerm};
use crate::ir::op::BatchNorm;
use crate::ir::op::{channel_axis, param_name};
use crate::ir::{Model, Op, Params, Reparams};

/// Scores of prunable channels, keyed by (producer node index, output channel).
pub type Scores = BTreeMap<(usize, usize), f32>;

/// An importance criterion. An open extension point: a new criterion is a new implementation.
pub trait Importance {
    /// Short name for reports.
    fn name(&self) -> &str;
    /// A score for every channel of every prunable group.
    fn scores(&self, model: &Model, deps: &DepGraph) -> Result<Scores>;
}

/// The criteria pare ships, by name: what a recipe or the command line chooses from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Criterion {
    L1,
    L2,
    Fpgm,
    /// BatchNorm gamma (Network Slimming).
    Bn,
    Apoz,
    Taylor,
    Random,
}

impl Criterion {
    pub const ALL: [Criterion; 7] = [
        Criterion::L1,
        Criterion::L2,
        Criterion::Fpgm,
        Criterion::Bn,
        Criterion::Apoz,
        Criterion::Taylor,
        Criterion::Random,
    ];

    /// The name recipes and the command line use.
    pub fn name(self) -> &'static str {
        match self {
            Criterion::L1 => "l1",
            Criterion::L2 => "l2",
            Criterion::Fpgm => "fpgm",
            Criterion::Bn => "bn",
            Criterion::Apoz => "apoz",
            Criterion::Taylor => "taylor",
            Criterion::Random => "random",
        }
    }

    /// Whether the criterion scores channels from calibration batches (activations or
    /// gradients) rather than from the weights alone.
    pub fn needs_data(self) -> bool {
        matches!(self, Criterion::Apoz | Criterion::Taylor)
    }

    /// The criterion as an [`Importance`]; `calib` feeds the data-driven ones, `seed` the
    /// random control.
    pub fn importance(self, seed: u64, calib: Vec<Batch>) -> Box<dyn Importance> {
        match self {
            Criterion::L1 => Box::new(Norm { p: 1 }),
            Criterion::L2 => Box::new(Norm { p: 2 }),
            Criterion::Fpgm => Box::new(Fpgm),
            Criterion::Bn => Box::new(BnGamma),
            Criterion::Apoz => Box::new(Apoz { batches: calib }),
            Criterion::Taylor => Box::new(Taylor { batches: calib }),
            Criterion::Random => Box::new(Random { seed }),
        }
    }
}

impl std::str::FromStr for Criterion {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Criterion, String> {
        Criterion::ALL.into_iter().find(|c| c.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Criterion::ALL.iter().map(|c| c.name()).collect();
            format!("unknown criterion '{s}'; one of {}", names.join(", "))
        })
    }
}

/// The producers of prunable channels, with the channel count of each.
fn producers(deps: &DepGraph) -> BTreeMap<usize, usize> {
    let mut p = BTreeMap::new();
    for g in &deps.groups {
        for &(node, ch) in &g.members {
            let e = p.entry(node).or_insert(0);
            *e = (*e).max(ch + 1);
        }
    }
    p
}

/// Node `node`'s prunable units as vectors of `tensors` (the weights, or their gradients): the
/// rows of `weight` along its output axis, or for an attention op each head's query, key and
/// value rows of `in_proj_weight` followed by its columns of `out_proj.weight`.
fn rows_of(model: &Model, tensors: &Params, node: usize) -> Vec<Vec<f32>> {
    let n = &model.graph.nodes[node];
    let t = |suffix: &str| &tensors[&param_name(&n.name, suffix)];
    if n.op.internal_channels() > 0 {
        let (w_in, w_out) = (t("in_proj_weight"), t("out_proj.weight"));
        return (0..n.op.internal_channels())
            .map(|h| {
                let (rows, cols) = n.op.head_slices(&[h]);
                let mut v = w_in.select(0, &rows).into_data();
                v.extend(w_out.select(1, &cols).into_data());
                v
            })
            .collect();
    }
    let w = t("weight");
    let rows = w.shape()[0];
    w.data()
        .chunks(w.len() / rows.max(1))
        .map(<[f32]>::to_vec)
        .collect()
}

/// L1 or L2 norm of each filter (Li et al. 2017, "Pruning Filters for Efficient ConvNets").
pub struct Norm {
    pub p: u32,
}

impl Importance for Norm {
    fn name(&self) -> &str {
        if self.p == 1 {
            "l1"
        } else {
            "l2"
        }
    }
    fn scores(&self, model: &Model, deps: &DepGraph) -> Result<Scores> {
        let mut s = Scores::new();
        for node in producers(deps).into_keys() {
            for (c, f) in rows_of(model, &model.params, node).iter().enumerate() {
                let v = if self.p == 1 {
                    f.iter().map(|x| x.abs()).sum()
                } else {
                    f.iter().map(|x| x * x).sum::<f32>().sqrt()
                };
                s.insert((node, c), v);
            }
        }
        Ok(s)
    }
}

/// Filter pruning via geometric median (He et al. 2019): a filter close to the others (small
/// summed distance, near the layer's geometric median) is redundant.
pub struct Fpgm;

impl Importance for Fpgm {
    fn name(&self) -> &str {
        "fpgm"
    }
    fn scores(&self, model: &Model, deps: &DepGraph) -> Result<Scores> {
        let mut s = Scores::new();
        for node in producers(deps).into_keys() {
            let f = rows_of(model, &model.params, node);
            for (i, a) in f.iter().enumerate() {
                let d: f32 = f
                    .iter()
                    .map(|b| {
                        a.iter()
                            .zip(b)
                            .map(|(x, y)| (x - y) * (x - y))
                            .sum::<f32>()
                            .sqrt()
                    })
                    .sum();
                s.insert((node, i), d);
            }
        }
        Ok(s)
    }
}

/// |gamma| of the BatchNorm that normalizes each channel (Network Slimming, Liu et al. 2017).
pub struct BnGamma;

impl Importance for BnGamma {
    fn name(&self) -> &str {
        "bn"
    }
    fn scores(&self, model: &Model, deps: &DepGraph) -> Result<Scores> {
        let mut s = Scores::new();
        for (i, node) in model.graph.nodes.iter().enumerate() {
            if !matches!(node.op, Op::BatchNorm(BatchNorm { .. })) {
                continue;
            }
            let gamma = &model.params[&format!("{}.weight", node.name)];
            for (p, &e) in deps.out_elems[i].iter().enumerate() {
                if let Some(owner) = deps.producer[e] {
                    s.entry(owner).or_insert(gamma.data()[p].abs());
                }
            }
        }
        require_all(
            model,
            deps,
            &s,
            "the bn criterion needs a BatchNorm after every pruned layer",
        )?;
        Ok(s)
    }
}

/// 1 - APoZ, the average percentage of zeros after a ReLU over calibration batches
/// (Network Trimming, Hu et al. 2016): channels that are mostly zero matter least.
pub struct Apoz {
    pub batches: Vec<Batch>,
}

impl Importance for Apoz {
    fn name(&self) -> &str {
        "apoz"
    }
    fn scores(&self, model: &Model, deps: &DepGraph) -> Result<Scores> {
        let relus: Vec<usize> = (0..model.graph.nodes.len())
            .filter(|&i| matches!(model.graph.nodes[i].op, Op::Relu | Op::Relu6))
            .collect();
        need_batches(&self.batches, "apoz")?;
        let taps: Vec<String> = relus.iter().map(|&i| model.graph.nodes[i].name.clone()).collect();
        let mut zeros: BTreeMap<(usize, usize), (f64, f64)> = BTreeMap::new();
        for b in &self.batches {
            let out = exec::infer(model, &b.x, &Reparams::new(), &taps)?;
            for (&i, name) in relus.iter().zip(&taps) {
                let t = &out.taps[name];
                // The tap is [batch, ..per-sample]; its channels are the channel axis of the
                // per-sample shape, with `outer` positions before and `per` after it.
                let Some(ca) = channel_axis(t.shape().len() - 1).map(|a| a + 1) else {
                    continue;
                };
                let outer: usize = t.shape()[..ca].iter().product();
                let chans = t.shape()[ca];
                let per = t.len() / (outer * chans).max(1);
                for (p, &e) in deps.out_elems[i].iter().enumerate() {
                    let Some(owner) = deps.producer[e] else { continue };
                    let mut z = 0usize;
                    for o in 0..outer {
                        let start = (o * chans + p) * per;
                        z += t.data()[start..start + per].iter().filter(|v| **v == 0.0).count();
                    }
                    let acc = zeros.entry(owner).or_insert((0.0, 0.0));
                    acc.0 += z as f64;
                    acc.1 += (outer * per) as f64;
                }
            }
        }
        let s: Scores = zeros
            .into_iter()
            .map(|(k, (z, n))| (k, (1.0 - z / n.max(1.0)) as f32))
            .collect();
        require_all(
            model,
            deps,
            &s,
            "the apoz criterion needs a ReLU after every pruned layer",
        )?;
        Ok(s)
    }
}

/// First-order Taylor expansion (Molchanov et al. 2019): |sum over a filter of w * dL/dw|,
/// averaged over calibration batches — the loss change if the filter were removed.
pub struct Taylor {
    pub batches: Vec<Batch>,
}

impl Importance for Taylor {
    fn name(&self) -> &str {
        "taylor"
    }
    fn scores(&self, model: &Model, deps: &DepGraph) -> Result<Scores> {
        need_batches(&self.batches, "taylor")?;
        let mut s = Scores::new();
        for (bi, b) in self.batches.iter().enumerate() {
            let terms = [LossTerm::CrossEntropy {
                labels: b.labels.clone(),
                weight: 1.0,
            }];
            let step = exec::train_step(model, &b.x, &terms, &Reparams::new(), &[], bi as u64)?;
            for node in producers(deps).into_keys() {
                let (w, g) = (
                    rows_of(model, &model.params, node),
                    rows_of(model, &step.grads, node),
                );
                for (c, (w, g)) in w.iter().zip(&g).enumerate() {
                    let v: f32 = w.iter().zip(g).map(|(a, b)| a * b).sum();
                    *s.entry((node, c)).or_insert(0.0) += v.abs() / self.batches.len() as f32;
                }
            }
        }
        Ok(s)
    }
}

/// Uniform random scores: the control every criterion should beat.
pub struct Random {
    pub seed: u64,
}

impl Importance for Random {
    fn name(&self) -> &str {
        "random"
    }
    fn scores(&self, _model: &Model, deps: &DepGraph) -> Result<Scores> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let mut s = Scores::new();
        for (node, n) in producers(deps) {
            for c in 0..n {
                s.insert((node, c), rng.random::<f32>());
            }
        }
        Ok(s)
    }
}

/// The data-driven criteria score nothing without data: an empty calibration set is the
/// caller's mistake (`--calib-batches 0`), not a model without ReLUs or with zero gradients.
fn need_batches(batches: &[Batch], criterion: &str) -> Result<()> {
    if batches.is_empty() {
        return Err(Error::Config(format!(
            "the {criterion} criterion needs at least one calibration batch"
        )));
    }
    Ok(())
}

fn require_all(model: &Model, deps: &DepGraph, s: &Scores, why: &str) -> Result<()> {
    for g in &deps.groups {
        if g.members.iter().all(|m| !s.contains_key(m)) {
            let (node, _) = g.members[0];
            return Err(Error::Config(format!(
                "{why}; layer '{}' has none",
                model.graph.nodes[node].name
            )));
        }
    }
    Ok(())
}
