//! The stages that train: fine-tuning that keeps the model's encoding (shared centroids,
//! quantizers, pruned zeros), weight pruning on a schedule, structured pruning in steps, and
//! early-exit heads on the frozen backbone.

use std::collections::BTreeMap;

use super::*;

pub(super) fn fit_config(t: &Training, seed: u64) -> FitConfig {
    FitConfig {
        epochs: t.epochs,
        batch_size: t.batch_size,
        optimizer: match t.optimizer {
            OptimizerName::Sgd => OptimizerConfig::sgd(t.momentum, t.weight_decay),
            OptimizerName::Adam => OptimizerConfig::adam(t.weight_decay),
        },
        schedule: Schedule::cosine_if(t.cosine, t.lr.0),
        seed,
        augment: Augment {
            crop_padding: if t.augment { 2 } else { 0 },
            hflip: false,
            views: t.views,
        },
        ..Default::default()
    }
}

pub(super) fn train(
    model: &mut Model,
    t: &Training,
    seed: u64,
    data: &Data,
    hook: &mut dyn Hooks,
    events: &mut dyn Events,
) -> Result<()> {
    fit_with(model, &fit_config(t, seed), data, hook, events)
}

/// Trains under `cfg` beside the caller's progress hooks; `epochs = 0` is the stage's
/// transformation without fine-tuning (one-shot pruning, PTQ).
pub(super) fn fit_with(
    model: &mut Model,
    cfg: &FitConfig,
    data: &Data,
    hook: &mut dyn Hooks,
    events: &mut dyn Events,
) -> Result<()> {
    if cfg.epochs == 0 {
        return Ok(());
    }
    let mut progress = events.training_hooks(cfg.epochs);
    let r = fit(
        model,
        data.train,
        data.val,
        cfg,
        &mut Chain(vec![hook, progress.as_mut()]),
    )?;
    if r.interrupted {
        return Err(Error::Interrupted);
    }
    Ok(())
}

/// A hook that keeps pruned weights at zero (masks from the current zeros).
pub(super) fn keep_zeros(model: &Model) -> Result<MaskHook> {
    MaskHook::new(
        WeightCriterion::LayerSparsity {
            default: 0.0,
            per_layer: BTreeMap::new(),
        },
        Vec::new(),
        None,
        masks_from_zeros(model, &[])?,
    )
}

/// Trains with whatever keeps the model's encoding intact: shared centroids, quantizers, or
/// pruned zeros.
pub(super) fn train_keeping(
    state: &mut State,
    t: &Training,
    seed: u64,
    data: &Data,
    events: &mut dyn Events,
    extra: Option<&mut dyn Hooks>,
) -> Result<()> {
    let both = |keep: &mut dyn Hooks, state: &mut State, events: &mut dyn Events| match extra {
        Some(e) => train(&mut state.model, t, seed, data, &mut Chain(vec![keep, e]), events),
        None => train(&mut state.model, t, seed, data, keep, events),
    };
    if let Some(sharing) = state.sharing.take() {
        let mut hook = SharingHook {
            sharing,
            reduce: Default::default(),
        };
        let r = both(&mut hook, state, events);
        state.sharing = Some(hook.sharing);
        r
    } else if !state.reparams.is_empty() {
        let mut hook = crate::train::ReparamHook::new(state.reparams.clone());
        both(&mut hook, state, events)
    } else {
        let mut hook = keep_zeros(&state.model)?;
        both(&mut hook, state, events)
    }
}

pub(super) fn prune(
    p: &PruneStage,
    state: &mut State,
    seed: u64,
    data: &Data,
    events: &mut dyn Events,
) -> Result<(Option<f32>, String)> {
    let criterion = WeightCriterion::LayerSparsity {
        default: p.default.0,
        per_layer: p.layers.iter().map(|(k, v)| (k.clone(), v.0)).collect(),
    };
    let spe = data.train.len().div_ceil(p.train.batch_size);
    let sched = PruneSchedule::over_epochs(p.ramp, p.prune_epochs, spe, p.every);
    let mut hook = MaskHook::new(criterion, Vec::new(), Some(sched), BTreeMap::new())?;
    hook.update(&mut state.model, 0)?;
    train(&mut state.model, &p.train, seed, data, &mut hook, events)?;
    let detail = state
        .model
        .layer_weights()
        .iter()
        .map(|(n, w)| {
            let t = &state.model.params[w];
            format!("{n} {:.1}% kept", 100.0 * (1.0 - t.sparsity()))
        })
        .collect::<Vec<_>>()
        .join(", ");
    Ok((
        None,
        format!("{:?} ramp over {} epochs; {detail}", p.ramp, p.prune_epochs).to_lowercase(),
    ))
}

/// Removes channels in `p.steps` steps, each taking the same fraction of what is left, and
/// fine-tunes after each; reports the accuracy right after the last removal.
pub(super) fn structured(
    p: &StructuredStage,
    state: &mut State,
    seed: u64,
    data: &Data,
    events: &mut dyn Events,
) -> Result<(Option<f32>, String)> {
    let steps = crate::prune::Steps {
        criterion: p.criterion,
        selection: Selection {
            scope: if p.global { Scope::Global } else { Scope::PerLayer },
            amount: match p.threshold {
                Some(t) => Amount::Threshold(t.0),
                None => Amount::Ratio(p.ratio.0),
            },
            per_layer: p.layers.iter().map(|(k, v)| (k.clone(), v.0)).collect(),
            exclude: p.exclude.clone(),
            round_to: p.round_to,
        },
        steps: p.steps,
        seed,
        calib: Some((data.train, p.calib_batches, 128)),
    };
    let start = state.model.clone();
    let (macs, params) = (start.macs(), start.num_params());
    let mut before = None;
    let (pruned, surgery) = steps.run(&start, |step, model, _| {
        // The stage's training keeps whatever encoding the state holds; it runs on the state.
        std::mem::swap(&mut state.model, model);
        if step + 1 == p.steps {
            before = Some(accuracy(&state.model, &state.reparams, data)?);
        }
        if p.train.epochs > 0 {
            train_keeping(
                state,
                &p.train,
                seed.wrapping_add(step as u64),
                data,
                events,
                None,
            )?;
        }
        std::mem::swap(&mut state.model, model);
        Ok(())
    })?;
    state.model = pruned;
    let t = |n: u64| crate::report::thousands(n);
    Ok((
        before,
        format!(
            "{}: {} channels removed in {} step(s); parameters {} -> {}, MACs {} -> {} (/{:.2})",
            p.criterion.name(),
            surgery.count(),
            p.steps,
            t(params as u64),
            t(state.model.num_params() as u64),
            t(macs),
            t(state.model.macs()),
            macs as f64 / state.model.macs().max(1) as f64
        ),
    ))
}

/// An exits stage: heads grafted at `e.at`, fitted on the frozen backbone (optionally
/// distilled from its final head), then the rule's threshold chosen on the validation split.
/// The stage's report gives the policy and what it does on the test set; the model keeps its
/// main output, so the pipeline's accuracy columns are the backbone's.
pub(super) fn exits(
    e: &ExitsStage,
    state: &mut State,
    seed: u64,
    data: &Data,
    events: &mut dyn Events,
) -> Result<(Option<f32>, String)> {
    use crate::exits::{attach, choose, exit_costs, simulate, train_frozen, ExitLogits, Head, SelfDistill};
    let val = data.val.ok_or_else(|| {
        Error::Config("an exits stage chooses its threshold on held-out images: set `val`".into())
    })?;
    let (mut model, exits) = attach(&state.model, &e.at, Head { hidden: e.hidden }, seed)?;
    let distill = e.distill.map(|t| SelfDistill::new(t.0, 0.5)).transpose()?;
    if e.train.epochs > 0 {
        let mut progress = events.training_hooks(e.train.epochs);
        train_frozen(
            &mut model,
            &exits,
            data.train,
            &fit_config(&e.train, seed),
            distill,
            progress.as_mut(),
        )?;
    }
    let names: Vec<String> = exits.iter().map(|x| x.output.clone()).collect();
    let costs = exit_costs(&model, &names)?;
    let chosen = choose(
        e.rule,
        e.target(),
        &ExitLogits::collect(&model, &names, val)?,
        &costs,
    )?;
    let test = simulate(
        chosen.policy,
        &ExitLogits::collect(&model, &names, data.test)?,
        &costs,
    );
    let full = *costs.last().expect("costs end with the main output") as f64;
    state.model = model;
    Ok((
        None,
        format!(
            "exits at {}: {} threshold {} chosen on the validation split; test accuracy {:.4}, {:.1}% of the MACs saved, left at each exit {:?}",
            e.at.join(", "),
            e.rule.name(),
            match chosen.policy.threshold {
                t if t.is_finite() => format!("{t:.4}"),
                _ => "\"never\"".into(),
            },
            test.accuracy,
            100.0 * (1.0 - test.macs / full),
            test.left_at
        ),
    ))
}
