//! The lottery ticket experiment (Frankle & Carbin 2019): iterative magnitude pruning with
//! rewinding. Each round trains the masked network from the rewind point, then prunes a fixed
//! fraction of each layer's *remaining* weights (a smaller one for the output layer) by
//! magnitude. The control re-initializes the same masked architecture randomly (which is also
//! the "Rethinking the Value of Network Pruning" baseline for unstructured pruning: the sparse
//! architecture trained from scratch). Each round also evaluates its mask on the untrained
//! initial weights ("large final" supermask, Zhou et al. 2019).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::schedule::MaskHook;
use super::unstructured::{apply_masks, magnitude_masks, prunable_weights, Masks, WeightCriterion};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::ir::Model;
use crate::train::{accuracy, fit, Chain, FitConfig, Hooks};

/// How a lottery-ticket run is done.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LotteryConfig {
    /// Pruning rounds after the dense round 0.
    pub rounds: usize,
    /// Fraction of each layer's remaining weights pruned per round (0.2 in the paper).
    pub rate: f32,
    /// The output layer's rate (0.1 in the paper) and its node name.
    pub output_rate: f32,
    pub output_layer: String,
    /// Rewind to the weights after this many epochs of dense training (0: the initialization).
    pub rewind_epoch: usize,
    /// Also train a randomly re-initialized network with each round's mask.
    pub random_control: bool,
    /// Seed of the control's re-initialization (changed per round).
    pub control_seed: u64,
}

/// One round's results.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Round {
    pub round: usize,
    /// Fraction of prunable weights remaining.
    pub remaining: f64,
    pub ticket_accuracy: f32,
    pub random_accuracy: Option<f32>,
    /// The round's mask on the *untrained* initial weights, evaluated without any training:
    /// the "large final" supermask of Zhou et al. 2019.
    pub supermask_accuracy: Option<f32>,
}

/// The sparsity of each layer after `round` rounds.
fn criterion(cfg: &LotteryConfig, names: &[String], round: usize) -> WeightCriterion {
    let s = |rate: f32| 1.0 - (1.0 - rate).powi(round as i32);
    let per_layer: BTreeMap<String, f32> = names
        .iter()
        .map(|n| n.trim_end_matches(".weight").to_string())
        .map(|l| {
            let r = if l == cfg.output_layer {
                cfg.output_rate
            } else {
                cfg.rate
            };
            (l, s(r))
        })
        .collect();
    WeightCriterion::LayerSparsity {
        default: 0.0,
        per_layer,
    }
}

fn train_masked(
    start: &Model,
    masks: &Masks,
    train: &dyn Dataset,
    fit_cfg: &FitConfig,
    progress: &mut dyn Hooks,
) -> Result<Model> {
    let mut m = start.clone();
    apply_masks(&mut m, masks);
    let mut hook = MaskHook::new(WeightCriterion::Threshold(0.0), vec![], None, masks.clone())?;
    let r = fit(
        &mut m,
        train,
        None,
        fit_cfg,
        &mut Chain(vec![&mut hook, progress]),
    )?;
    if r.interrupted {
        return Err(Error::Config("interrupted".into()));
    }
    Ok(m)
}

/// Runs the experiment from the untrained model `init`; `on_round` sees each result as it
/// comes (for progress and incremental reports).
pub fn lottery(
    init: &Model,
    train: &dyn Dataset,
    test: &dyn Dataset,
    cfg: &LotteryConfig,
    fit_cfg: &FitConfig,
    progress: &mut dyn Hooks,
    on_round: &mut dyn FnMut(&Round),
) -> Result<Vec<Round>> {
    for (what, r) in [("rate", cfg.rate), ("output_rate", cfg.output_rate)] {
        if !(0.0..1.0).contains(&r) {
            return Err(Error::Config(format!(
                "lottery {what} must be in [0, 1), got {r}"
            )));
        }
    }
    let names = prunable_weights(init, &[])?;
    if !names.contains(&format!("{}.weight", cfg.output_layer)) {
        return Err(Error::Config(format!(
            "output layer '{}' has no prunable weight",
            cfg.output_layer
        )));
    }
    let rewind = if cfg.rewind_epoch > 0 {
        let mut m = init.clone();
        let c = FitConfig {
            epochs: cfg.rewind_epoch,
            ..fit_cfg.clone()
        };
        fit(&mut m, train, None, &c, progress)?;
        m
    } else {
        init.clone()
    };
    let total: usize = names.iter().map(|n| init.params[n].len()).sum();
    let mut masks: Masks = Masks::new();
    let mut trained = init.clone();
    let mut rounds = Vec::new();
    for round in 0..=cfg.rounds {
        if round > 0 {
            masks = magnitude_masks(&trained, &criterion(cfg, &names, round), &[])?;
        }
        let kept: usize = if masks.is_empty() {
            total
        } else {
            masks
                .values()
                .map(|m| m.data().iter().filter(|v| **v != 0.0).count())
                .sum()
        };
        trained = train_masked(&rewind, &masks, train, fit_cfg, progress)?;
        let ticket = accuracy(&trained, test)?;
        let random = if cfg.random_control && round > 0 {
            let fresh = Model::init(init.graph.clone(), cfg.control_seed + round as u64)?;
            let m = train_masked(&fresh, &masks, train, fit_cfg, progress)?;
            Some(accuracy(&m, test)?)
        } else {
            None
        };
        let supermask = if round > 0 {
            let mut m = init.clone();
            apply_masks(&mut m, &masks);
            Some(accuracy(&m, test)?)
        } else {
            None
        };
        let r = Round {
            round,
            remaining: kept as f64 / total as f64,
            ticket_accuracy: ticket,
            random_accuracy: random,
            supermask_accuracy: supermask,
        };
        on_round(&r);
        rounds.push(r);
    }
    Ok(rounds)
}
