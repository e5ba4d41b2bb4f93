//! Learning-rate schedules: pure functions of the step, declared once (what), evaluated by the
//! fit loop at each step (when).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The shape of the learning rate over a run, after an optional linear warm-up.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LrSchedule {
    Constant,
    /// Multiply by `gamma` every `every_epochs` epochs (`torch.optim.lr_scheduler.StepLR`).
    Step {
        every_epochs: usize,
        gamma: f32,
    },
    /// Cosine decay from the base rate to `min_lr` over the steps after warm-up, evaluated per
    /// step (`CosineAnnealingLR` with `T_max` = the remaining steps).
    Cosine {
        min_lr: f32,
    },
}

/// A base rate, a schedule and a warm-up, evaluated per optimizer step.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    pub base_lr: f32,
    pub kind: LrSchedule,
    /// Linear warm-up from `base_lr / warmup_steps` to `base_lr` over this many steps.
    #[serde(default)]
    pub warmup_steps: usize,
}

impl Schedule {
    pub fn constant(base_lr: f32) -> Self {
        Schedule {
            base_lr,
            kind: LrSchedule::Constant,
            warmup_steps: 0,
        }
    }

    /// Cosine decay from `base_lr` to zero over the run, no warm-up (the fine-tuning default).
    pub fn cosine(base_lr: f32) -> Self {
        Schedule {
            base_lr,
            kind: LrSchedule::Cosine { min_lr: 0.0 },
            warmup_steps: 0,
        }
    }

    /// [`Schedule::cosine`] when `cosine`, else [`Schedule::constant`]: what the commands'
    /// `--cosine` flag chooses.
    pub fn cosine_if(cosine: bool, base_lr: f32) -> Self {
        if cosine {
            Schedule::cosine(base_lr)
        } else {
            Schedule::constant(base_lr)
        }
    }

    pub fn validate(&self) -> Result<()> {
        if !(self.base_lr > 0.0 && self.base_lr.is_finite()) {
            return Err(Error::Config(format!(
                "learning rate must be positive, got {}",
                self.base_lr
            )));
        }
        match self.kind {
            LrSchedule::Step { every_epochs: 0, .. } => Err(Error::Config(
                "step schedule: every_epochs must be at least 1".into(),
            )),
            LrSchedule::Step { gamma, .. } if gamma.is_nan() || gamma <= 0.0 => Err(Error::Config(format!(
                "step schedule: gamma must be positive, got {gamma}"
            ))),
            LrSchedule::Cosine { min_lr } if !(0.0..=self.base_lr).contains(&min_lr) => Err(Error::Config(
                format!("cosine schedule: min_lr must be in [0, base lr], got {min_lr}"),
            )),
            _ => Ok(()),
        }
    }

    /// The learning rate for global step `step` (0-based) of a run of `total_steps` steps with
    /// `steps_per_epoch` steps per epoch.
    pub fn lr(&self, step: usize, steps_per_epoch: usize, total_steps: usize) -> f32 {
        if step < self.warmup_steps {
            return self.base_lr * (step + 1) as f32 / self.warmup_steps as f32;
        }
        match self.kind {
            LrSchedule::Constant => self.base_lr,
            LrSchedule::Step { every_epochs, gamma } => {
                let epoch = step / steps_per_epoch.max(1);
                self.base_lr * gamma.powi((epoch / every_epochs.max(1)) as i32)
            }
            LrSchedule::Cosine { min_lr } => {
                let span = total_steps.saturating_sub(self.warmup_steps).max(1);
                let t = (step - self.warmup_steps).min(span) as f32 / span as f32;
                min_lr + (self.base_lr - min_lr) * 0.5 * (1.0 + (std::f32::consts::PI * t).cos())
            }
        }
    }
}
