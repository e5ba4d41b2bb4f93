//! Deep Mutual Learning (Zhang et al. 2018): peers trained together from scratch, each with
//! cross-entropy plus KL to the average prediction of the others, in the paper's order: peer 0
//! steps on the others' predictions, then each other peer steps on the predictions of the
//! peers as they are after their update (Algorithm 1).
//!
//! Peer 0 is trained by the ordinary fit loop (progress, checkpoints, divergence checks); this
//! hook owns the other peers with their optimizers and steps them after each of peer 0's steps
//! on the same batch. Peers' predictions used as targets are computed in train mode (batch
//! statistics, dropout), as each peer sees them in its own step: eval-mode predictions of a
//! BatchNorm network that is still moving fast lag behind its weights (measured: ResNet-8 peers
//! at 0.75 with eval-mode targets where the network alone reaches 0.86).

use super::{softmax, teacher_input};
use crate::data::Batch;
use crate::error::{Error, Result};
use crate::exec::{infer_train_mode, train_step, LossTerm};
use crate::ir::{Model, Normalize, Reparams, Tensor};
use crate::train::{update_running_stats, Hooks, Optimizer, OptimizerConfig, StepInfo};

pub struct DmlHook {
    pub peers: Vec<Model>,
    /// Normalization of peer 0, which the fit loop's batches carry.
    norm: Normalize,
    optimizers: Vec<Optimizer>,
    batch: Option<Batch>,
    seed: u64,
}

impl DmlHook {
    /// `peers` are the models trained beside peer 0, each with its own optimizer of `config`.
    pub fn new(peer0: &Model, peers: Vec<Model>, config: OptimizerConfig, seed: u64) -> Self {
        DmlHook {
            norm: peer0.graph.input.normalize.clone(),
            optimizers: peers.iter().map(|_| Optimizer::new(config)).collect(),
            peers,
            batch: None,
            seed,
        }
    }
}

/// Mean train-mode softmax of `models` on `x` (normalized with `norm`).
fn mean_prediction(models: &[&Model], norm: &Normalize, x: &Tensor, seed: u64) -> Result<Tensor> {
    let mut acc: Option<Tensor> = None;
    for (k, m) in models.iter().enumerate() {
        let s = crate::data::batch::mix(seed, k as u64, 0xD4);
        let p = softmax(&infer_train_mode(m, &teacher_input(norm, m, x), s)?, 1.0);
        acc = Some(match acc {
            None => p,
            Some(mut a) => {
                a.data_mut().iter_mut().zip(p.data()).for_each(|(a, v)| *a += v);
                a
            }
        });
    }
    let mut a = acc.ok_or_else(|| Error::Config("mutual learning needs at least two peers".into()))?;
    let n = models.len() as f32;
    a.data_mut().iter_mut().for_each(|v| *v /= n);
    Ok(a)
}

impl Hooks for DmlHook {
    fn loss_terms(&mut self, batch: &Batch, terms: &mut Vec<LossTerm>) -> Result<()> {
        let peers: Vec<&Model> = self.peers.iter().collect();
        // Dropout of the target pass: seeded by the batch's first sample, a pure function of
        // the position in the run like every other random choice.
        let seed = crate::data::batch::mix(self.seed, batch.indices.first().map_or(0, |&i| i as u64), 0xD5);
        let target = mean_prediction(&peers, &self.norm, &batch.x, seed)?;
        terms.push(LossTerm::SoftTargets {
            target,
            temperature: 1.0,
            weight: 1.0,
        });
        self.batch = Some(batch.clone());
        Ok(())
    }

    fn after_step(&mut self, model: &mut Model, info: &StepInfo) -> Result<()> {
        let Some(batch) = self.batch.take() else {
            return Ok(());
        };
        for k in 0..self.peers.len() {
            let others: Vec<&Model> = std::iter::once(&*model)
                .chain(
                    self.peers
                        .iter()
                        .enumerate()
                        .filter(|(j, _)| *j != k)
                        .map(|(_, p)| p),
                )
                .collect();
            let target = mean_prediction(
                &others,
                &self.norm,
                &batch.x,
                crate::data::batch::mix(self.seed, info.global_step as u64, 0xD6 + k as u64),
            )?;
            let terms = [
                LossTerm::CrossEntropy {
                    labels: batch.labels.clone(),
                    weight: 1.0,
                },
                LossTerm::SoftTargets {
                    target,
                    temperature: 1.0,
                    weight: 1.0,
                },
            ];
            let seed = crate::data::batch::mix(self.seed, info.global_step as u64, 0xD3 + k as u64);
            let x = teacher_input(&self.norm, &self.peers[k], &batch.x);
            let out = train_step(&self.peers[k], &x, &terms, &Reparams::new(), &[], seed)?;
            if !out.loss.is_finite() {
                return Err(Error::NonFinite {
                    epoch: info.epoch + 1,
                    step: info.step + 1,
                    value: out.loss,
                });
            }
            self.optimizers[k].step(&mut self.peers[k].params, &out.grads, info.lr);
            update_running_stats(&mut self.peers[k], &out.batch_stats);
        }
        Ok(())
    }
}
