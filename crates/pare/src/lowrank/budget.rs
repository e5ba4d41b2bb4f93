//! Ranks chosen for a MAC budget by per-layer sensitivity, as AIMET's greedy compression-ratio
//! selection does: each layer is factorized alone at a grid of ranks and the model evaluated;
//! then one accuracy floor is searched such that every layer takes its cheapest rank whose
//! accuracy stays at or above the floor and the MACs saved, added over the layers, meet the
//! budget. Sensitive layers thus keep high ranks and robust ones give up most.

use serde::Serialize;

use super::{factorize_with, ConvMethod, LayerRank, Rank};
use crate::error::{Error, Result};
use crate::ir::Model;

/// The fractions of a layer's full rank tried.
const GRID: [f64; 9] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9];

/// One layer factorized alone at one rank.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Trial {
    pub layer: String,
    pub rank: usize,
    /// MACs per sample the factorization saves.
    pub macs_saved: u64,
    /// The model's accuracy with only this layer factorized.
    pub accuracy: f64,
}

/// What the budget search found.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BudgetReport {
    pub base_accuracy: f64,
    pub base_macs: u64,
    pub target_macs: u64,
    /// The accuracy floor every chosen rank meets on its own.
    pub floor: f64,
    pub trials: Vec<Trial>,
}

/// Factorizes the layers (see [`factorize_with`]) at ranks chosen so that the model keeps at
/// most `fraction` of its MACs, losing as little of `eval`'s accuracy as the per-layer trials
/// predict. `eval` is called once for the model and once per layer and grid rank.
///
/// # Errors
/// A fraction outside (0, 1), a name that is no such layer, or a budget that even the lowest
/// tried ranks cannot meet (the error gives the smallest reachable fraction).
pub fn factorize_for_macs(
    model: &Model,
    layers: Option<&[String]>,
    conv: Option<ConvMethod>,
    fraction: f64,
    eval: &mut dyn FnMut(&Model) -> Result<f64>,
) -> Result<(Model, Vec<LayerRank>, BudgetReport)> {
    if !(fraction > 0.0 && fraction < 1.0) {
        return Err(Error::Config(format!(
            "a MAC budget of {fraction} is impossible: the fraction kept must be in (0, 1)"
        )));
    }
    // The full ranks (and the names checked) with nothing changed.
    let (_, full) = factorize_with(model, layers, Rank::Fixed(usize::MAX), conv)?;
    let base_macs = model.macs();
    let target = (fraction * base_macs as f64) as u64;
    let base_accuracy = eval(model)?;
    let mut trials = Vec::new();
    for row in &full {
        let mut ranks: Vec<usize> = GRID
            .iter()
            .map(|f| ((f * row.full_rank as f64).round() as usize).max(1))
            .collect();
        ranks.dedup();
        // The ranks a factorization really took: a rule may cap them, and the separable
        // conversion has only one, so several grid points can give the same model.
        let mut tried = Vec::new();
        for r in ranks {
            let one = [row.layer.clone()];
            let (m, rep) = factorize_with(model, Some(&one), Rank::Fixed(r), conv)?;
            let took = (rep[0].rank, rep[0].input_rank);
            if !rep[0].factorized || m.macs() >= base_macs || tried.contains(&took) {
                continue;
            }
            tried.push(took);
            trials.push(Trial {
                layer: row.layer.clone(),
                rank: r,
                macs_saved: base_macs - m.macs(),
                accuracy: eval(&m)?,
            });
        }
    }
    // For a floor, each layer's cheapest trial at or above it.
    let pick = |floor: f64| -> Vec<&Trial> {
        full.iter()
            .filter_map(|row| {
                trials
                    .iter()
                    .filter(|t| t.layer == row.layer && t.accuracy >= floor)
                    .max_by_key(|t| t.macs_saved)
            })
            .collect()
    };
    let saved = |p: &[&Trial]| p.iter().map(|t| t.macs_saved).sum::<u64>();
    let need = base_macs.saturating_sub(target);
    let lowest = trials.iter().map(|t| t.accuracy).fold(f64::INFINITY, f64::min);
    if trials.is_empty() || saved(&pick(lowest)) < need {
        let best = if trials.is_empty() {
            0
        } else {
            saved(&pick(lowest))
        };
        return Err(Error::Config(format!(
            "a MAC budget of {fraction} is out of reach: the lowest tried ranks keep {:.3} of the MACs",
            1.0 - best as f64 / base_macs as f64
        )));
    }
    // The highest floor that still meets the budget: the candidates are the trials' accuracies.
    let mut floors: Vec<f64> = trials.iter().map(|t| t.accuracy).collect();
    floors.sort_by(|a, b| b.total_cmp(a));
    let floor = floors
        .into_iter()
        .find(|&f| saved(&pick(f)) >= need)
        .expect("the lowest floor meets the budget");
    let chosen: Vec<(String, usize)> = pick(floor).iter().map(|t| (t.layer.clone(), t.rank)).collect();
    let mut out = model.clone();
    let mut rows = Vec::new();
    for row in &full {
        match chosen.iter().find(|(l, _)| *l == row.layer) {
            Some((layer, r)) => {
                let (m, mut rep) =
                    factorize_with(&out, Some(std::slice::from_ref(layer)), Rank::Fixed(*r), conv)?;
                out = m;
                rows.append(&mut rep);
            }
            None => rows.push(LayerRank {
                factorized: false,
                weights_after: row.weights_before,
                ..row.clone()
            }),
        }
    }
    let report = BudgetReport {
        base_accuracy,
        base_macs,
        target_macs: target,
        floor,
        trials,
    };
    Ok((out, rows, report))
}
