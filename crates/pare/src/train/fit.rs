//! The fit loop: seeded batches, forward/backward on the engine, optimizer step, hooks,
//! validation, atomic checkpoints every epoch (and on interruption), exact resume.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::checkpoint::{self, Checkpoint};
use super::config::EpochSums;
pub use super::config::{EpochRecord, FitConfig};
use super::optim::Optimizer;
use crate::data::batch::mix;
use crate::data::{epoch_order, make_batch, sequential, Batch, Dataset};
use crate::error::{Error, Result};
use crate::exec::{self, LossTerm, StepOutput};
use crate::ir::op::BatchNorm;
use crate::ir::{Model, Params, Reparams};

/// Progress after one optimizer step.
#[derive(Clone, Debug)]
pub struct StepInfo {
    /// 0-based epoch and step within it.
    pub epoch: usize,
    pub step: usize,
    pub steps_per_epoch: usize,
    pub global_step: usize,
    pub lr: f32,
    /// Running means over the epoch so far.
    pub loss: f32,
    pub accuracy: f32,
    pub images_per_sec: f64,
}

/// Extension points of the fit loop. Every method has a default that does nothing, so a hook
/// implements only what it needs (masks re-applied after each step, a teacher's soft targets,
/// a sparsity penalty on gradients, a progress bar, Ctrl-C).
pub trait Hooks {
    /// Forward-time reparameterizations (pruning masks, fake quantizers) for this step.
    fn reparams(&self) -> Option<&Reparams> {
        None
    }
    /// Adds loss terms for this batch (e.g. distillation targets); cross-entropy is already in.
    fn loss_terms(&mut self, _batch: &Batch, _terms: &mut Vec<LossTerm>) -> Result<()> {
        Ok(())
    }
    /// Adjusts gradients before the optimizer step (e.g. an L1 penalty's subgradient).
    fn on_gradients(&mut self, _model: &Model, _grads: &mut Params) {}
    /// Runs after each optimizer step (e.g. re-zero pruned weights).
    fn after_step(&mut self, _model: &mut Model, _info: &StepInfo) -> Result<()> {
        Ok(())
    }
    /// Runs after each epoch's validation.
    fn after_epoch(&mut self, _model: &mut Model, _record: &EpochRecord) -> Result<()> {
        Ok(())
    }
    /// Polled after every step; `true` saves a checkpoint and stops the run.
    fn should_stop(&mut self) -> bool {
        false
    }
}

/// Hooks that do nothing.
pub struct NoHooks;
impl Hooks for NoHooks {}

/// Several hooks run in order (e.g. a pruning mask, a slimming penalty and a progress bar).
/// The first hook that has reparameterizations provides them; any hook can stop the run.
pub struct Chain<'a>(pub Vec<&'a mut dyn Hooks>);

impl Hooks for Chain<'_> {
    fn reparams(&self) -> Option<&Reparams> {
        self.0.iter().find_map(|h| h.reparams())
    }
    fn loss_terms(&mut self, batch: &Batch, terms: &mut Vec<LossTerm>) -> Result<()> {
        self.0.iter_mut().try_for_each(|h| h.loss_terms(batch, terms))
    }
    fn on_gradients(&mut self, model: &Model, grads: &mut Params) {
        self.0.iter_mut().for_each(|h| h.on_gradients(model, grads));
    }
    fn after_step(&mut self, model: &mut Model, info: &StepInfo) -> Result<()> {
        self.0.iter_mut().try_for_each(|h| h.after_step(model, info))
    }
    fn after_epoch(&mut self, model: &mut Model, record: &EpochRecord) -> Result<()> {
        self.0.iter_mut().try_for_each(|h| h.after_epoch(model, record))
    }
    fn should_stop(&mut self) -> bool {
        self.0.iter_mut().any(|h| h.should_stop())
    }
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FitReport {
    pub history: Vec<EpochRecord>,
    /// True when `Hooks::should_stop` ended the run early (a checkpoint was saved).
    pub interrupted: bool,
}

/// Loss and accuracy over a whole set in eval mode.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub loss: f32,
    pub accuracy: f32,
    pub samples: usize,
}

/// Evaluates `model` on `set` (eval mode, the model's normalization).
pub fn evaluate(model: &Model, set: &dyn Dataset, batch_size: usize, reparams: &Reparams) -> Result<Metrics> {
    let norm = &model.graph.input.normalize;
    let (mut loss, mut correct, mut n) = (0f64, 0usize, 0usize);
    for batch in sequential(set, batch_size, norm) {
        let out = exec::infer(model, &batch.x, reparams, &[])?;
        let (l, c) = loss_and_correct(&out.output, &batch.labels);
        loss += l;
        correct += c;
        n += batch.labels.len();
    }
    Ok(Metrics {
        loss: (loss / n.max(1) as f64) as f32,
        accuracy: correct as f32 / n.max(1) as f32,
        samples: n,
    })
}

/// Test accuracy of `model` as it is (no reparameterizations), in batches of 1000: the figure
/// every command and report prints.
pub fn accuracy(model: &Model, set: &dyn Dataset) -> Result<f32> {
    Ok(evaluate(model, set, 1000, &Reparams::new())?.accuracy)
}

/// Summed cross-entropy and number of correct predictions of a `[B, classes]` logits tensor.
pub fn loss_and_correct(logits: &crate::ir::Tensor, labels: &[u32]) -> (f64, usize) {
    let classes = logits.shape()[1];
    let loss = logits
        .data()
        .chunks(classes)
        .zip(labels)
        .map(|(row, &y)| {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let lse = max as f64 + row.iter().map(|v| ((v - max) as f64).exp()).sum::<f64>().ln();
            lse - row[y as usize] as f64
        })
        .sum();
    let correct = logits
        .argmax_rows()
        .iter()
        .zip(labels)
        .filter(|(p, y)| **p == **y as usize)
        .count();
    (loss, correct)
}

/// Trains `model` in place. With `cfg.resume`, continues from `cfg.checkpoint`: the same
/// batches, dropout masks and optimizer state as an uninterrupted run.
pub fn fit(
    model: &mut Model,
    train: &dyn Dataset,
    val: Option<&dyn Dataset>,
    cfg: &FitConfig,
    hooks: &mut dyn Hooks,
) -> Result<FitReport> {
    cfg.validate()?;
    if let [_, h, w] = *train.sample_shape() {
        if cfg.augment.crop_padding > h.min(w) {
            return Err(Error::Config(format!(
                "crop padding {} exceeds the {h}x{w} images: a crop would hold no pixel of the image",
                cfg.augment.crop_padding
            )));
        }
    }
    if train.is_empty() {
        return Err(Error::Data("the training set is empty".into()));
    }
    let norm = model.graph.input.normalize.clone();
    let steps_per_epoch = train.len().div_ceil(cfg.batch_size);
    let total_steps = steps_per_epoch * cfg.epochs;
    let mut opt = Optimizer::new(cfg.optimizer).with_lr_scales(cfg.lr_scales.clone());
    let mut history = Vec::new();
    let (mut start_epoch, mut start_step, mut sums) = (0, 0, EpochSums::default());
    if cfg.resume {
        let path = cfg.checkpoint.as_ref().expect("validated");
        let ck = checkpoint::load(path, model, cfg)?;
        if ck.meta.step >= steps_per_epoch {
            return Err(Error::Checkpoint {
                path: path.clone(),
                reason: format!(
                    "it stopped at step {} of an epoch that has {steps_per_epoch} steps (another data set or batch size?)",
                    ck.meta.step
                ),
            });
        }
        model.params = ck.params;
        opt.load_state(&ck.optimizer, &model.params, ck.meta.optimizer_steps)?;
        history = ck.meta.history;
        start_epoch = ck.meta.epoch;
        start_step = ck.meta.step;
        sums = ck.meta.sums;
    }
    let empty = Reparams::new();
    for epoch in start_epoch..cfg.epochs {
        let order = epoch_order(train.len(), cfg.seed, epoch);
        let view = cfg.augment.view_of(epoch);
        let aug_seed = mix(cfg.seed, view.unwrap_or(epoch) as u64, 0xA6);
        let mut lr = cfg.schedule.base_lr;
        for step in start_step..steps_per_epoch {
            let global = epoch * steps_per_epoch + step;
            lr = cfg.schedule.lr(global, steps_per_epoch, total_steps);
            let idx = &order[step * cfg.batch_size..((step + 1) * cfg.batch_size).min(order.len())];
            let t0 = Instant::now();
            let batch = make_batch(train, idx, &norm, Some((&cfg.augment, aug_seed, view)));
            let mut terms = vec![LossTerm::CrossEntropy {
                labels: batch.labels.clone(),
                weight: 1.0,
            }];
            hooks.loss_terms(&batch, &mut terms)?;
            let reparams = hooks.reparams().unwrap_or(&empty);
            let StepOutput {
                loss,
                output,
                mut grads,
                batch_stats,
                ..
            } = exec::train_step(
                model,
                &batch.x,
                &terms,
                reparams,
                &[],
                mix(cfg.seed, global as u64, 0xD0),
            )?;
            if !loss.is_finite() {
                return Err(Error::NonFinite {
                    epoch: epoch + 1,
                    step: step + 1,
                    value: loss,
                });
            }
            hooks.on_gradients(model, &mut grads);
            opt.step(&mut model.params, &grads, lr);
            update_running_stats(model, &batch_stats);
            sums.seconds += t0.elapsed().as_secs_f64();
            let (_, correct) = loss_and_correct(&output, &batch.labels);
            sums.loss += loss as f64 * batch.labels.len() as f64;
            sums.correct += correct;
            sums.seen += batch.labels.len();
            let info = StepInfo {
                epoch,
                step,
                steps_per_epoch,
                global_step: global,
                lr,
                loss: (sums.loss / sums.seen as f64) as f32,
                accuracy: sums.correct as f32 / sums.seen as f32,
                images_per_sec: sums.seen as f64 / sums.seconds.max(1e-9),
            };
            hooks.after_step(model, &info)?;
            if hooks.should_stop() && step + 1 < steps_per_epoch {
                if let Some(path) = &cfg.checkpoint {
                    let ck = Checkpoint::new(model, &opt, cfg, &history, epoch, step + 1, sums);
                    checkpoint::save(path, &ck)?;
                }
                return Ok(FitReport {
                    history,
                    interrupted: true,
                });
            }
        }
        start_step = 0;
        let v = val
            .map(|v| evaluate(model, v, cfg.eval_batch_size, hooks.reparams().unwrap_or(&empty)))
            .transpose()?;
        let record = EpochRecord {
            epoch: epoch + 1,
            lr,
            train_loss: (sums.loss / sums.seen.max(1) as f64) as f32,
            train_accuracy: sums.correct as f32 / sums.seen.max(1) as f32,
            val_loss: v.map(|m| m.loss),
            val_accuracy: v.map(|m| m.accuracy),
            seconds: sums.seconds,
            images_per_sec: sums.seen as f64 / sums.seconds.max(1e-9),
        };
        sums = EpochSums::default();
        hooks.after_epoch(model, &record)?;
        history.push(record);
        if let Some(path) = &cfg.checkpoint {
            let ck = Checkpoint::new(model, &opt, cfg, &history, epoch + 1, 0, sums);
            checkpoint::save(path, &ck)?;
        }
        if hooks.should_stop() && epoch + 1 < cfg.epochs {
            return Ok(FitReport {
                history,
                interrupted: true,
            });
        }
    }
    Ok(FitReport {
        history,
        interrupted: false,
    })
}

/// PyTorch's running-statistics update: `r = (1 - momentum) * r + momentum * batch`, with the
/// unbiased batch variance.
pub fn update_running_stats(model: &mut Model, stats: &[exec::BatchStats]) {
    for s in stats {
        let m = match model.graph.node(&s.node).map(|n| &n.op) {
            Some(crate::ir::Op::BatchNorm(BatchNorm { momentum, .. })) => *momentum as f32,
            _ => unreachable!("batch statistics come from BatchNorm nodes"),
        };
        for (suffix, batch) in [("running_mean", &s.mean), ("running_var", &s.var_unbiased)] {
            let r = model
                .params
                .get_mut(&format!("{}.{suffix}", s.node))
                .expect("BatchNorm nodes own running statistics");
            for (r, b) in r.data_mut().iter_mut().zip(batch.data()) {
                *r = (1.0 - m) * *r + m * b;
            }
        }
    }
}
