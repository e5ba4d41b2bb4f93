//! Iterative pruning during training: a sparsity schedule (one-shot, linear, or the cubic AGP
//! schedule of Zhu & Gupta 2017) over a window of steps, and the fit-loop hook that updates
//! the masks on schedule, applies them at forward time and re-applies them after every
//! optimizer step (momentum and weight decay would otherwise revive pruned weights).

use serde::{Deserialize, Serialize};

use super::unstructured::{apply_masks, magnitude_masks, Masks, WeightCriterion};
use crate::error::{Error, Result};
use crate::ir::{Model, Reparam, Reparams};
use crate::train::{Hooks, StepInfo};

/// How the sparsity grows from 0 to its target over the window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ramp {
    /// All at once at the start of the window.
    OneShot,
    Linear,
    /// Automated gradual pruning: `s_t = s_f * (1 - (1 - p)^3)` with `p` the window fraction,
    /// pruning fast while the network is redundant and slowly near the target.
    Agp,
}

/// When masks are recomputed: a ramp over steps `[start, end]`, every `every` steps.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneSchedule {
    pub ramp: Ramp,
    pub start: usize,
    pub end: usize,
    pub every: usize,
}

impl PruneSchedule {
    /// A ramp from the first step over `epochs` epochs of `steps_per_epoch` steps, masks
    /// updated every `every` steps (one-shot: the full sparsity at once).
    pub fn over_epochs(ramp: Ramp, epochs: usize, steps_per_epoch: usize, every: usize) -> Self {
        PruneSchedule {
            ramp,
            start: 0,
            end: if ramp == Ramp::OneShot {
                0
            } else {
                epochs * steps_per_epoch
            },
            every,
        }
    }

    /// Fraction of the target sparsity reached at `step`: a pure function of the step.
    pub fn fraction(&self, step: usize) -> f32 {
        if step < self.start {
            return 0.0;
        }
        if self.ramp == Ramp::OneShot || step >= self.end || self.end <= self.start {
            return 1.0;
        }
        let p = (step - self.start) as f32 / (self.end - self.start) as f32;
        match self.ramp {
            Ramp::Linear => p,
            Ramp::Agp => 1.0 - (1.0 - p).powi(3),
            Ramp::OneShot => 1.0,
        }
    }

    /// True at the steps where masks are recomputed.
    pub fn updates_at(&self, step: usize) -> bool {
        step >= self.start
            && step <= self.end
            && ((step - self.start).is_multiple_of(self.every.max(1)) || step == self.end)
    }
}

/// Scales a sparsity criterion by `f` (thresholds cannot be ramped).
fn scaled(c: &WeightCriterion, f: f32) -> Result<WeightCriterion> {
    Ok(match c {
        WeightCriterion::LayerSparsity { default, per_layer } => WeightCriterion::LayerSparsity {
            default: default * f,
            per_layer: per_layer.iter().map(|(k, v)| (k.clone(), v * f)).collect(),
        },
        WeightCriterion::GlobalSparsity(s) => WeightCriterion::GlobalSparsity(s * f),
        other if f >= 1.0 => other.clone(),
        _ => {
            return Err(Error::Config(
                "threshold criteria prune one-shot; use a sparsity to ramp".into(),
            ))
        }
    })
}

/// Fit-loop hook for magnitude pruning with masks.
pub struct MaskHook {
    pub criterion: WeightCriterion,
    pub exclude: Vec<String>,
    pub schedule: Option<PruneSchedule>,
    masks: Masks,
    reparams: Reparams,
}

impl MaskHook {
    /// Starts from `initial` masks (empty for a dense model); with a schedule, masks follow it,
    /// without one they stay as given.
    pub fn new(
        criterion: WeightCriterion,
        exclude: Vec<String>,
        schedule: Option<PruneSchedule>,
        initial: Masks,
    ) -> Result<Self> {
        if let Some(s) = &schedule {
            scaled(&criterion, s.fraction(s.start))?;
        }
        let mut h = MaskHook {
            criterion,
            exclude,
            schedule,
            masks: Masks::new(),
            reparams: Reparams::new(),
        };
        h.set_masks(initial);
        Ok(h)
    }

    fn set_masks(&mut self, masks: Masks) {
        self.reparams = masks
            .iter()
            .map(|(k, m)| (k.clone(), vec![Reparam::Mask(m.clone())]))
            .collect();
        self.masks = masks;
    }

    pub fn masks(&self) -> &Masks {
        &self.masks
    }

    /// Recomputes masks for the schedule's step `step` and applies them (also usable before
    /// training, e.g. with a one-shot schedule at step 0).
    pub fn update(&mut self, model: &mut Model, step: usize) -> Result<()> {
        let Some(s) = self.schedule else { return Ok(()) };
        let c = scaled(&self.criterion, s.fraction(step))?;
        let masks = magnitude_masks(model, &c, &self.exclude)?;
        apply_masks(model, &masks);
        self.set_masks(masks);
        Ok(())
    }
}

impl Hooks for MaskHook {
    fn reparams(&self) -> Option<&Reparams> {
        Some(&self.reparams)
    }

    fn after_step(&mut self, model: &mut Model, info: &StepInfo) -> Result<()> {
        apply_masks(model, &self.masks);
        if self.schedule.is_some_and(|s| s.updates_at(info.global_step + 1)) {
            self.update(model, info.global_step + 1)?;
        }
        Ok(())
    }
}
