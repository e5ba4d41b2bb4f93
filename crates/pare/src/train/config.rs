//! What defines a training run and what it records per epoch: the types the fit loop and its
//! checkpoints share (a checkpoint stores the config it was made with and the history so far).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::optim::OptimizerConfig;
use super::schedule::Schedule;
use crate::data::Augment;
use crate::error::{Error, Result};

/// Everything that defines a training run. Serialized into reports and checkpoints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FitConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: OptimizerConfig,
    pub schedule: Schedule,
    pub seed: u64,
    #[serde(default)]
    pub augment: Augment,
    /// Batch size for validation passes (no gradients, so it can be larger).
    pub eval_batch_size: usize,
    /// Per-parameter multipliers of the learning rate (BinaryConnect's per-layer scaling);
    /// a parameter not listed steps at the schedule's rate.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub lr_scales: BTreeMap<String, f32>,
    /// Where to write the checkpoint after every epoch; `None` disables checkpoints.
    #[serde(skip)]
    pub checkpoint: Option<PathBuf>,
    /// Continue from `checkpoint` instead of starting over.
    #[serde(skip)]
    pub resume: bool,
}

/// One epoch of plain SGD (momentum 0.9, no weight decay) at a constant rate of 0.01, batches
/// of 128, seed 0, no augmentation, evaluation in batches of 1000, no checkpoint: a base for
/// `FitConfig { epochs, schedule, ..Default::default() }`.
impl Default for FitConfig {
    fn default() -> Self {
        FitConfig {
            epochs: 1,
            batch_size: 128,
            optimizer: OptimizerConfig::sgd(0.9, 0.0),
            schedule: Schedule::constant(0.01),
            seed: 0,
            augment: Augment::default(),
            eval_batch_size: 1000,
            lr_scales: BTreeMap::new(),
            checkpoint: None,
            resume: false,
        }
    }
}

impl FitConfig {
    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 {
            return Err(Error::Config("epochs must be at least 1".into()));
        }
        if self.batch_size == 0 || self.eval_batch_size == 0 {
            return Err(Error::Config("batch sizes must be at least 1".into()));
        }
        if self.resume && self.checkpoint.is_none() {
            return Err(Error::Config("resume needs a checkpoint path".into()));
        }
        if let Some((name, s)) = self.lr_scales.iter().find(|(_, s)| !(s.is_finite() && **s > 0.0)) {
            return Err(Error::Config(format!(
                "the learning-rate scale of '{name}' must be positive and finite (got {s})"
            )));
        }
        self.optimizer.validate()?;
        self.schedule.validate()
    }
}

/// What one epoch did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based.
    pub epoch: usize,
    /// Learning rate at the epoch's last step.
    pub lr: f32,
    pub train_loss: f32,
    pub train_accuracy: f32,
    pub val_loss: Option<f32>,
    pub val_accuracy: Option<f32>,
    /// Wall-clock seconds of the training steps (validation excluded).
    pub seconds: f64,
    pub images_per_sec: f64,
}

/// Running sums of the current epoch (saved in mid-epoch checkpoints).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct EpochSums {
    pub loss: f64,
    pub correct: usize,
    pub seen: usize,
    pub seconds: f64,
}
