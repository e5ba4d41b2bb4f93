//! Runs a [`Recipe`]: stage after stage on one model, evaluating after each, then encodes the
//! result into the compressed file, decodes it again and evaluates the decoded model, so the
//! reported accuracy is the accuracy of the file.
//!
//! The state that flows between stages is data: the model (zeros are pruned weights; weights
//! with few distinct values are shared ones; `FakeQuant` nodes are quantized activations), the
//! forward-time weight quantizers or binarizations, and the set of clustered weights. Each finished stage is
//! saved under the work directory, and a resumed run starts after the last one saved.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

mod binarize;
mod distill;
mod stages;
use stages::{prune, structured, train, train_keeping};

use super::recipe::{
    BinarizeStage, ClusterStage, DistillMethod, ExitsStage, OptimizerName, PruneStage, QuantizeStage, Recipe,
    Stage, StructuredStage, Training,
};
use crate::codec::{self, Encoding, FileBytes, Plan};
use crate::data::{calibration_batches, Augment, Dataset};
use crate::distill::{DistillHook, Objective};
use crate::error::{Error, Result};
use crate::ir::op::HashedLinear;
use crate::ir::quant::{BITS, SHARE_BITS};
use crate::ir::{io, Model, Op, ParamKind, Reparam, Reparams};
use crate::prune::schedule::{MaskHook, PruneSchedule};
use crate::prune::unstructured::{masks_from_zeros, WeightCriterion};
use crate::prune::{Amount, Scope, Selection};
use crate::quant::{calibrate_activations, weight_reparams, ActQuant, LayerBits, Sharing, SharingHook};
use crate::train::{evaluate, fit, Chain, FitConfig, Hooks, OptimizerConfig, Schedule};

/// The data a pipeline trains, validates and tests on.
pub struct Data<'a> {
    pub train: &'a dyn Dataset,
    pub val: Option<&'a dyn Dataset>,
    pub test: &'a dyn Dataset,
}

/// What the caller sees of a run (the CLI prints and draws progress bars).
pub trait Events {
    fn stage_started(&mut self, _index: usize, _total: usize, _name: &str) {}
    /// Hooks added to a training run of `epochs` epochs (progress display, Ctrl-C).
    fn training_hooks(&mut self, epochs: usize) -> Box<dyn Hooks>;
    fn stage_finished(&mut self, _report: &StageReport) {}
}

/// One stage's outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageReport {
    /// 1-based; 0 is the starting model.
    pub index: usize,
    pub name: String,
    /// Test accuracy of the model as it computes after the stage (quantizers active).
    pub accuracy: f32,
    /// Test accuracy right after the stage's transformation, before its training (PTQ,
    /// clustering without fine-tuning); `None` for stages that only train.
    pub accuracy_before_training: Option<f32>,
    /// Non-zero layer weights (`Model::layer_weights`), and the starting model's total: weights a structured
    /// stage removed count as pruned.
    pub nonzero_weights: usize,
    pub weights: usize,
    pub seconds: f64,
    /// What the stage did, in words (sparsities, bits, codebook sizes).
    pub detail: String,
}

/// Everything a run produced.
pub struct Outcome {
    pub stages: Vec<StageReport>,
    /// The decoded model: exactly what the file holds.
    pub model: Model,
    pub bytes: Vec<u8>,
    pub file: FileBytes,
    /// Test accuracy of the decoded model.
    pub file_accuracy: f32,
    /// Bytes of every parameter of the starting model as f32.
    pub original_bytes: usize,
}

impl Outcome {
    pub fn ratio(&self) -> f64 {
        self.original_bytes as f64 / self.bytes.len().max(1) as f64
    }
}

struct State {
    model: Model,
    /// The model the pipeline started from (the default distillation teacher).
    original: Model,
    reparams: Reparams,
    sharing: Option<Sharing>,
}

/// Non-zero and total stored layer weights: those of Linear, Conv2d and attention layers, and
/// the shared values of hashed layers (which are all a hashed layer stores).
fn weights(model: &Model) -> (usize, usize) {
    let hashed = model
        .param_refs()
        .into_iter()
        .filter(|r| r.spec.kind == ParamKind::Weight)
        .filter(|r| {
            matches!(
                model.graph.nodes[r.node].op,
                Op::HashedLinear(HashedLinear { .. })
            )
        })
        .map(|r| r.name);
    let names = model.layer_weights().into_iter().map(|(_, w)| w).chain(hashed);
    names.fold((0, 0), |(nz, n), w| {
        let t = &model.params[&w];
        (nz + t.data().iter().filter(|v| **v != 0.0).count(), n + t.len())
    })
}

fn layer_bits(bits: u32, conv: Option<u32>, layers: &BTreeMap<String, super::recipe::Bits>) -> LayerBits {
    LayerBits {
        default: bits,
        conv,
        per_layer: layers.iter().map(|(k, v)| (k.clone(), v.0)).collect(),
    }
}

fn cluster_bits(c: &ClusterStage) -> LayerBits {
    layer_bits(c.bits.0, c.conv_bits.map(|b| b.0), &c.layers)
}

fn quant_bits(q: &QuantizeStage) -> LayerBits {
    layer_bits(q.bits.0, q.conv_bits.map(|b| b.0), &q.layers)
}

/// Checks everything that depends on the model before any stage runs ([`run`] starts with
/// it; a caller can run it earlier, before loading data).
pub fn preflight(recipe: &Recipe, model: &Model) -> Result<()> {
    let (mut encoded, mut pruned, mut exits) = (None, None, None);
    for (i, s) in recipe.stages.iter().enumerate() {
        let at = |m: String| Error::Config(format!("stage {} ({}): {m}", i + 1, s.name()));
        // Heads read the backbone's layers as they are: what reshapes or replaces layers, or
        // trains fresh models, comes before them.
        let reshapes = matches!(
            s,
            Stage::Structured(_)
                | Stage::Factorize(_)
                | Stage::Tie(_)
                | Stage::Hash(_)
                | Stage::Exits(_)
                | Stage::Binarize(_)
        ) || matches!(s, Stage::Distill(d) if d.method != DistillMethod::Kd);
        if let (true, Some(e)) = (reshapes, &exits) {
            return Err(at(format!("it must come before the exits stage ({e})")));
        }
        match s {
            Stage::Prune(p) => {
                if let Some(prev) = encoded {
                    return Err(at(format!("pruning must come before the {prev} stage")));
                }
                pruned = Some("prune");
                for name in p.layers.keys() {
                    if !model.layer_weights().iter().any(|(n, _)| n == name) {
                        return Err(at(format!("no Linear, Conv2d or attention layer named '{name}'")));
                    }
                }
            }
            Stage::Structured(p) => {
                if let Some(prev) = encoded {
                    return Err(at(format!(
                        "structured pruning changes the architecture; it must come before the {prev} stage"
                    )));
                }
                let deps = crate::prune::DepGraph::build(model)?;
                crate::prune::select::check_prunable(&deps).map_err(|e| at(e.to_string()))?;
                crate::prune::select::check_round_to(p.round_to, &deps).map_err(|e| at(e.to_string()))?;
                for name in p.layers.keys().chain(&p.exclude) {
                    crate::prune::select::family_by_name(model, &deps, name)
                        .map_err(|e| at(e.to_string()))?;
                }
            }
            Stage::Cluster(c) => {
                if let Some(prev) = encoded.replace("cluster") {
                    return Err(at(format!("weights are already encoded by the {prev} stage")));
                }
                cluster_bits(c)
                    .resolve(model, SHARE_BITS)
                    .map_err(|e| at(e.to_string()))?;
            }
            Stage::Quantize(q) => {
                if let Some(prev) = encoded.replace("quantize") {
                    return Err(at(format!("weights are already encoded by the {prev} stage")));
                }
                quant_bits(q)
                    .resolve(model, BITS)
                    .map_err(|e| at(e.to_string()))?;
            }
            Stage::Train(_) => {}
            Stage::Binarize(b) => {
                if let Some(prev) = encoded.replace("binarize").or(pruned) {
                    return Err(at(format!(
                        "binarization replaces every weight by its sign (pruned zeros and codes included); it cannot follow the {prev} stage"
                    )));
                }
                crate::binary::binarize(model, b.method).map_err(|e| at(e.to_string()))?;
            }
            Stage::Factorize(f) => {
                if let Some(prev) = encoded.or(pruned) {
                    return Err(at(format!(
                        "factorization replaces the weights (their zeros and codes with them); it must come before the {prev} stage"
                    )));
                }
                let layers = (!f.layers.is_empty()).then_some(f.layers.as_slice());
                crate::lowrank::factorize_with(model, layers, f.rank_rule(), f.conv)
                    .map_err(|e| at(e.to_string()))?;
            }
            Stage::Tie(t) => {
                if let Some(prev) = encoded.or(pruned) {
                    return Err(at(format!(
                        "tying replaces the blocks' weights by shared ones (their zeros and codes with them); it must come before the {prev} stage"
                    )));
                }
                crate::tying::tie_blocks(model, &t.blocks, t.init, t.norms).map_err(|e| at(e.to_string()))?;
            }
            Stage::Hash(h) => {
                if let Some(prev) = encoded.or(pruned) {
                    return Err(at(format!(
                        "hashing replaces the layers' weights by shared values (their zeros and codes with them); it must come before the {prev} stage"
                    )));
                }
                hash(model, h, 0).map_err(|e| at(e.to_string()))?;
            }
            Stage::Exits(e) => {
                // Heads are fitted on the backbone's features from the native engine, which
                // runs weights as stored: no fake quantizers, no binarization.
                if let Some(prev) = encoded.filter(|e| matches!(*e, "quantize" | "binarize")) {
                    return Err(at(format!(
                        "the heads learn from the stored weights; it must come before the {prev} stage"
                    )));
                }
                crate::exits::attach(model, &e.at, crate::exits::Head { hidden: e.hidden }, 0)
                    .map_err(|err| at(err.to_string()))?;
                exits = Some(format!("stage {}", i + 1));
            }
            Stage::Distill(d) if d.method != DistillMethod::Kd => {
                // The staged methods train models other than the current one (a regressor, an
                // assistant, fresh generations): only pruned zeros of the student are kept.
                if let Some(prev) = encoded.or(pruned) {
                    return Err(at(format!(
                        "method {} trains fresh models and keeps no encoding; it must come before the {prev} stage",
                        d.method.name()
                    )));
                }
                match &d.method {
                    DistillMethod::Fitnet { guided, .. } if model.graph.node(guided).is_none() => {
                        return Err(at(format!("fitnet: the model has no layer '{guided}' to guide")));
                    }
                    DistillMethod::Takd { assistant } => {
                        crate::zoo::ZooModel::parse_spec(assistant)
                            .map_err(|e| at(format!("takd assistant: {e}")))?;
                    }
                    DistillMethod::BornAgain { generations: 0 } | DistillMethod::Refinery { rounds: 0 } => {
                        return Err(at("needs at least one generation (round)".into()));
                    }
                    _ => {}
                }
                // Born-Again generations learn from the current model, not a teacher.
                if !matches!(d.method, DistillMethod::BornAgain { .. }) {
                    check_teacher(recipe, d).map_err(at)?;
                }
            }
            Stage::Distill(d) => check_teacher(recipe, d).map_err(at)?,
        }
    }
    Ok(())
}

/// Makes `model` (a rewrite of the current one) the current model and trains it.
fn replace_and_train(
    state: &mut State,
    model: Model,
    t: &super::recipe::Training,
    seed: u64,
    data: &Data,
    events: &mut dyn Events,
) -> Result<()> {
    state.model = model;
    train(
        &mut state.model,
        t,
        seed,
        data,
        &mut crate::train::NoHooks,
        events,
    )
}

/// The model with `h`'s layers hashed (`seed` picks the hashes); an error when there is no
/// Linear layer to hash.
fn hash(
    model: &Model,
    h: &super::recipe::HashStage,
    seed: u64,
) -> Result<(Model, Vec<crate::hashing::HashedLayer>)> {
    let layers = (!h.layers.is_empty()).then_some(h.layers.as_slice());
    let (m, report) = crate::hashing::hash_linears(model, h.factor.0, layers, h.init, seed)?;
    if report.is_empty() {
        return Err(Error::Config("the model has no Linear layer to hash".into()));
    }
    Ok((m, report))
}

/// The teacher of a distill stage exists (a model directory, or the starting model when that
/// was trained).
fn check_teacher(recipe: &Recipe, d: &super::recipe::DistillStage) -> std::result::Result<(), String> {
    match &d.teacher {
        Some(dir) if !dir.join(io::ARCH_FILE).is_file() => {
            Err(format!("teacher '{}' is not a model directory", dir.display()))
        }
        None if recipe.model.zoo.is_some() => Err(
            "without `teacher` it distills from the starting model, which for a zoo model is untrained; \
             name a teacher directory or start from `[model] dir`"
                .into(),
        ),
        _ => Ok(()),
    }
}

/// Replays the effect a finished stage has on the state besides the model (on resume).
fn restore(stage: &Stage, state: &mut State) -> Result<()> {
    match stage {
        Stage::Cluster(c) => {
            let bits = cluster_bits(c).resolve(&state.model, SHARE_BITS)?;
            state.sharing = Some(Sharing::from_values(&state.model, bits.keys())?);
        }
        Stage::Quantize(q) => set_uniform(q, state)?,
        Stage::Binarize(b) => {
            state.reparams = crate::binary::reparams_of(&state.model.graph, b.method, b.stochastic)?
        }
        _ => {}
    }
    Ok(())
}

fn set_uniform(q: &QuantizeStage, state: &mut State) -> Result<()> {
    let bits = quant_bits(q).resolve(&state.model, BITS)?;
    state.reparams = weight_reparams(&state.model, &bits, q.per_channel, q.symmetric, true);
    Ok(())
}

fn accuracy(model: &Model, reparams: &Reparams, data: &Data) -> Result<f32> {
    Ok(evaluate(model, data.test, 1000, reparams)?.accuracy)
}

fn run_stage(
    index: usize,
    stage: &Stage,
    state: &mut State,
    seed: u64,
    data: &Data,
    events: &mut dyn Events,
) -> Result<(Option<f32>, String)> {
    let seed = seed.wrapping_add(index as u64);
    match stage {
        Stage::Train(t) => {
            let detail = format!("{} epochs, lr {}", t.train.epochs, t.train.lr.0);
            train_keeping(state, &t.train, seed, data, events, None)?;
            Ok((None, detail))
        }
        Stage::Distill(d) => distill::distill(d, state, seed, data, events),
        Stage::Factorize(f) => {
            let layers = (!f.layers.is_empty()).then_some(f.layers.as_slice());
            let (m, rows) = crate::lowrank::factorize_with(&state.model, layers, f.rank_rule(), f.conv)?;
            let (m, _) = crate::lowrank::refit_separable(&m, &state.model, &rows, data.train, f.calib, seed)?;
            replace_and_train(state, m, &f.train, seed, data, events)?;
            let detail = rows
                .iter()
                .filter(|r| r.factorized)
                .map(|r| format!("{} rank {}", r.layer, r.rank))
                .collect::<Vec<_>>()
                .join(", ");
            Ok((None, detail))
        }
        Stage::Tie(t) => {
            let (m, report) = crate::tying::tie_blocks(&state.model, &t.blocks, t.init, t.norms)?;
            replace_and_train(state, m, &t.train, seed, data, events)?;
            Ok((
                None,
                format!(
                    "{} layers tied to {}: {} -> {} parameters",
                    report.ties.len(),
                    report.owner,
                    report.params_before,
                    report.params_after
                ),
            ))
        }
        Stage::Hash(h) => {
            let (m, layers) = hash(&state.model, h, seed)?;
            let before = state.model.num_params();
            replace_and_train(state, m, &h.train, seed, data, events)?;
            let detail = layers
                .iter()
                .map(|l| format!("{} {} -> {}", l.layer, l.virtual_weights, l.buckets))
                .collect::<Vec<_>>()
                .join(", ");
            Ok((
                None,
                format!(
                    "hashed {detail}: {before} -> {} parameters",
                    state.model.num_params()
                ),
            ))
        }
        Stage::Exits(e) => stages::exits(e, state, seed, data, events),
        Stage::Binarize(b) => binarize::binarize(b, state, seed, data, events),
        Stage::Prune(p) => prune(p, state, seed, data, events),
        Stage::Structured(p) => structured(p, state, seed, data, events),
        Stage::Cluster(c) => {
            let bits = cluster_bits(c).resolve(&state.model, SHARE_BITS)?;
            let sharing = Sharing::cluster(&mut state.model, &bits, c.init, seed)?;
            let before = accuracy(&state.model, &state.reparams, data)?;
            let mut hook = SharingHook {
                sharing,
                reduce: c.reduce,
            };
            if let Some(t) = &c.train {
                train(&mut state.model, t, seed, data, &mut hook, events)?;
            }
            let detail = bits
                .iter()
                .map(|(w, b)| {
                    format!(
                        "{w} {b} bits ({} values)",
                        Sharing::distinct_values(&state.model, w)
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            state.sharing = Some(hook.sharing);
            Ok((
                Some(before),
                format!("{:?} init; {detail}", c.init).to_lowercase(),
            ))
        }
        Stage::Quantize(q) => {
            set_uniform(q, state)?;
            if let Some(a) = q.activations {
                let calib = calibration_batches(
                    data.train,
                    &state.model.graph.input.normalize,
                    q.calib_batches.max(1),
                    128,
                    seed,
                );
                let act = ActQuant {
                    bits: a.bits.0,
                    symmetric: a.symmetric,
                    observer: a.observer(),
                    scope: a.scope,
                };
                state.model = calibrate_activations(&state.model, &state.reparams, &calib, act)?;
            }
            let before = accuracy(&state.model, &state.reparams, data)?;
            if let Some(t) = &q.train {
                let mut hook = crate::train::ReparamHook::new(state.reparams.clone());
                train(&mut state.model, t, seed, data, &mut hook, events)?;
            }
            let acts = q.activations.map_or("float activations".to_string(), |a| {
                let scope = match a.scope {
                    crate::quant::ActScope::Layers => "",
                    crate::quant::ActScope::Graph => ", residual adds too",
                };
                format!("activations {} bits ({:?} observer{scope})", a.bits.0, a.observer).to_lowercase()
            });
            let detail = format!(
                "weights {} bits{} {}, {}; {}",
                q.bits.0,
                q.conv_bits.map_or(String::new(), |b| format!(" (conv {})", b.0)),
                if q.per_channel {
                    "per channel"
                } else {
                    "per tensor"
                },
                if q.symmetric { "symmetric" } else { "asymmetric" },
                acts
            );
            Ok((Some(before), detail))
        }
    }
}

/// Marks a saved stage: the recipe up to it (as JSON) and its report.
#[derive(Serialize, Deserialize)]
struct Done {
    recipe: String,
    report: StageReport,
}

fn stage_dir(work: &Path, i: usize, s: &Stage) -> std::path::PathBuf {
    work.join("stages").join(format!("{i}-{}", s.name()))
}

/// Runs `recipe` from `model`. With a work directory, every finished stage is saved there;
/// with `resume`, stages already saved (by a run of the same recipe) are skipped.
pub fn run(
    recipe: &Recipe,
    model: Model,
    data: &Data,
    events: &mut dyn Events,
    work: Option<&Path>,
    resume: bool,
) -> Result<Outcome> {
    preflight(recipe, &model)?;
    // A saved stage is reused only by a recipe that agrees on everything up to that stage.
    let prefix = |i: usize| {
        serde_json::to_string(&(&recipe.model, recipe.val, &recipe.stages[..i])).expect("a recipe serializes")
    };
    let original_bytes = model.params.values().map(|t| t.len() * 4).sum();
    let mut state = State {
        original: model.clone(),
        model,
        reparams: Reparams::new(),
        sharing: None,
    };
    let (nz, n) = weights(&state.model);
    let mut reports = vec![StageReport {
        index: 0,
        name: "start".into(),
        accuracy: accuracy(&state.model, &state.reparams, data)?,
        accuracy_before_training: None,
        nonzero_weights: nz,
        weights: n,
        seconds: 0.0,
        detail: String::new(),
    }];
    events.stage_finished(&reports[0]);
    let total = recipe.stages.len();
    for (i, stage) in recipe.stages.iter().enumerate() {
        let index = i + 1;
        // A finished stage of the same recipe: load it and replay its effect on the state.
        if let (Some(work), true) = (work, resume) {
            let dir = stage_dir(work, index, stage);
            let done = std::fs::read_to_string(dir.join("done.json")).ok();
            if let Some(d) = done.and_then(|t| serde_json::from_str::<Done>(&t).ok()) {
                if d.recipe == prefix(index) {
                    state.model = io::load(&dir)?;
                    restore(stage, &mut state)?;
                    events.stage_finished(&d.report);
                    reports.push(d.report);
                    continue;
                }
            }
        }
        events.stage_started(index, total, stage.name());
        let t0 = Instant::now();
        let (before, detail) = run_stage(index, stage, &mut state, recipe.model.seed, data, events)?;
        let (nz, _) = weights(&state.model);
        let report = StageReport {
            index,
            name: stage.name().into(),
            accuracy: accuracy(&state.model, &state.reparams, data)?,
            accuracy_before_training: before,
            nonzero_weights: nz,
            weights: n,
            seconds: t0.elapsed().as_secs_f64(),
            detail,
        };
        if let Some(work) = work {
            let dir = stage_dir(work, index, stage);
            io::save(&state.model, &dir)?;
            let done = Done {
                recipe: prefix(index),
                report: report.clone(),
            };
            io::write_atomic(
                &dir.join("done.json"),
                serde_json::to_string_pretty(&done)
                    .expect("serializes")
                    .as_bytes(),
            )?;
        }
        events.stage_finished(&report);
        reports.push(report);
    }
    let plan = encoding_plan(recipe, &state)?;
    // Binary weights are stored as their signs (and scales): the real values they are
    // computed from stay behind.
    let binary: Reparams = state
        .reparams
        .iter()
        .filter(|(_, rs)| rs.iter().any(|r| matches!(r, Reparam::Binarize { .. })))
        .map(|(k, rs)| (k.clone(), rs.clone()))
        .collect();
    let stored = crate::ir::reparam::bake(&state.model, &binary);
    let (bytes, file) = codec::encode(&stored, &plan)?;
    let decoded = codec::decode(&bytes).map_err(|reason| Error::Compressed {
        path: "<encoded in memory>".into(),
        reason,
    })?;
    let file_accuracy = accuracy(&decoded, &Reparams::new(), data)?;
    Ok(Outcome {
        stages: reports,
        model: decoded,
        bytes,
        file,
        file_accuracy,
        original_bytes,
    })
}

/// Per-parameter encodings of the final model: uniform codes for quantized weights (the
/// quantizers in `state.reparams` say how), the smallest codebook layout for shared ones, f32
/// for the rest.
fn encoding_plan(recipe: &Recipe, state: &State) -> Result<Plan> {
    let huffman = recipe.encode.huffman;
    let mut plan = Plan::new();
    for (w, rs) in &state.reparams {
        for r in rs {
            match r {
                Reparam::FakeQuant(q) => {
                    let e = Encoding::Uniform {
                        bits: q.bits,
                        per_channel: q.per_channel,
                        symmetric: q.symmetric,
                        huffman,
                    };
                    plan.insert(w.clone(), e);
                }
                Reparam::Binarize { .. } => {
                    plan.insert(w.clone(), Encoding::Binary);
                }
                _ => {}
            }
        }
    }
    if let Some(sharing) = &state.sharing {
        for w in sharing.layers.keys() {
            let t = &state.model.params[w];
            let e = match recipe.encode.gap_bits {
                Some(gap_bits) => Encoding::Sparse { gap_bits, huffman },
                None => codec::smallest_codebook_encoding(w, t, huffman)?.0,
            };
            plan.insert(w.clone(), e);
        }
    }
    Ok(plan)
}
