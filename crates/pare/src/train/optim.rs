//! Optimizers with PyTorch's update rules, on pare tensors (plain slices, one fused pass per
//! parameter). Their state is pare tensors too, so checkpoints save it like weights.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ir::{Params, Tensor};

/// Which optimizer, with its hyper-parameters (the learning rate comes from the schedule).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum OptimizerConfig {
    /// `torch.optim.SGD`: `d = g + wd*p; b = m*b + (1-dampening)*d; d = nesterov ? d + m*b : b;
    /// p -= lr*d` (the first step sets `b = d`).
    Sgd {
        momentum: f32,
        dampening: f32,
        nesterov: bool,
        weight_decay: f32,
    },
    /// `torch.optim.Adam` with L2 weight decay added to the gradient.
    Adam {
        beta1: f32,
        beta2: f32,
        eps: f32,
        weight_decay: f32,
    },
    /// `torch.optim.AdamW`: decoupled weight decay `p *= 1 - lr*wd` before the Adam step.
    AdamW {
        beta1: f32,
        beta2: f32,
        eps: f32,
        weight_decay: f32,
    },
}

impl OptimizerConfig {
    /// SGD with momentum 0.9, PyTorch's dampening 0, no Nesterov.
    pub fn sgd(momentum: f32, weight_decay: f32) -> Self {
        OptimizerConfig::Sgd {
            momentum,
            dampening: 0.0,
            nesterov: false,
            weight_decay,
        }
    }

    /// Adam with PyTorch's defaults (0.9, 0.999, 1e-8).
    pub fn adam(weight_decay: f32) -> Self {
        OptimizerConfig::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
        }
    }

    /// Checks the hyper-parameters are in range.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        match *self {
            OptimizerConfig::Sgd {
                momentum,
                dampening,
                nesterov,
                weight_decay,
            } => {
                if !(0.0..1.0).contains(&momentum)
                    || !(0.0..=1.0).contains(&dampening)
                    || !(weight_decay >= 0.0 && weight_decay.is_finite())
                {
                    return bad(format!(
                        "sgd: momentum must be in [0, 1), dampening in [0, 1], weight decay >= 0 and finite (got {momentum}, {dampening}, {weight_decay})"
                    ));
                }
                if nesterov && (momentum == 0.0 || dampening != 0.0) {
                    return bad("sgd: Nesterov momentum needs momentum > 0 and dampening 0".into());
                }
            }
            OptimizerConfig::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
            }
            | OptimizerConfig::AdamW {
                beta1,
                beta2,
                eps,
                weight_decay,
            } => {
                if !(0.0..1.0).contains(&beta1)
                    || !(0.0..1.0).contains(&beta2)
                    || !(eps > 0.0 && eps.is_finite())
                    || !(weight_decay >= 0.0 && weight_decay.is_finite())
                {
                    return bad(format!(
                        "adam: betas must be in [0, 1), eps > 0, weight decay >= 0 (all finite) (got {beta1}, {beta2}, {eps}, {weight_decay})"
                    ));
                }
            }
        }
        Ok(())
    }

    fn slots(&self) -> &'static [&'static str] {
        match self {
            OptimizerConfig::Sgd { momentum, .. } if *momentum > 0.0 => &["momentum_buffer"],
            OptimizerConfig::Sgd { .. } => &[],
            _ => &["exp_avg", "exp_avg_sq"],
        }
    }
}

/// An optimizer and its per-parameter state.
#[derive(Clone, Debug)]
pub struct Optimizer {
    pub config: OptimizerConfig,
    /// Per parameter, one tensor per slot (see `OptimizerConfig::slots`).
    state: BTreeMap<String, Vec<Tensor>>,
    /// Number of steps taken (Adam's bias correction).
    pub steps: u64,
    /// Per-parameter multipliers of the step's learning rate (1 for the others).
    lr_scales: BTreeMap<String, f32>,
}

impl Optimizer {
    pub fn new(config: OptimizerConfig) -> Self {
        Optimizer {
            config,
            state: BTreeMap::new(),
            steps: 0,
            lr_scales: BTreeMap::new(),
        }
    }

    /// The optimizer stepping each parameter named in `scales` at its multiple of the rate.
    pub fn with_lr_scales(mut self, scales: BTreeMap<String, f32>) -> Self {
        self.lr_scales = scales;
        self
    }

    /// Updates every parameter that has a gradient.
    pub fn step(&mut self, params: &mut Params, grads: &Params, lr: f32) {
        self.steps += 1;
        let t = self.steps as i32;
        for (name, g) in grads {
            let Some(p) = params.get_mut(name) else {
                continue;
            };
            let lr = lr * self.lr_scales.get(name).copied().unwrap_or(1.0);
            let fresh = !self.state.contains_key(name);
            let slots = self.state.entry(name.clone()).or_insert_with(|| {
                self.config
                    .slots()
                    .iter()
                    .map(|_| Tensor::zeros(g.shape().to_vec()))
                    .collect()
            });
            let (p, g) = (p.data_mut(), g.data());
            match self.config {
                OptimizerConfig::Sgd {
                    momentum,
                    dampening,
                    nesterov,
                    weight_decay,
                } => {
                    if momentum == 0.0 {
                        for (w, &gi) in p.iter_mut().zip(g) {
                            *w -= lr * (gi + weight_decay * *w);
                        }
                        continue;
                    }
                    let buf = slots[0].data_mut();
                    for ((w, &gi), b) in p.iter_mut().zip(g).zip(buf.iter_mut()) {
                        let d = gi + weight_decay * *w;
                        *b = if fresh {
                            d
                        } else {
                            momentum * *b + (1.0 - dampening) * d
                        };
                        let step = if nesterov { d + momentum * *b } else { *b };
                        *w -= lr * step;
                    }
                }
                OptimizerConfig::Adam {
                    beta1,
                    beta2,
                    eps,
                    weight_decay,
                }
                | OptimizerConfig::AdamW {
                    beta1,
                    beta2,
                    eps,
                    weight_decay,
                } => {
                    let decoupled = matches!(self.config, OptimizerConfig::AdamW { .. });
                    let bc1 = 1.0 - beta1.powi(t);
                    let bc2 = 1.0 - beta2.powi(t);
                    let (m_slot, v_slot) = slots.split_at_mut(1);
                    let (m, v) = (m_slot[0].data_mut(), v_slot[0].data_mut());
                    for i in 0..p.len() {
                        let mut gi = g[i];
                        if decoupled {
                            p[i] *= 1.0 - lr * weight_decay;
                        } else {
                            gi += weight_decay * p[i];
                        }
                        m[i] = beta1 * m[i] + (1.0 - beta1) * gi;
                        v[i] = beta2 * v[i] + (1.0 - beta2) * gi * gi;
                        let denom = (v[i] / bc2).sqrt() + eps;
                        p[i] -= lr * (m[i] / bc1) / denom;
                    }
                }
            }
        }
    }

    /// The state as named tensors (`{param}.{slot}`), for checkpoints.
    pub fn state_tensors(&self) -> BTreeMap<String, Tensor> {
        let slots = self.config.slots();
        self.state
            .iter()
            .flat_map(|(name, ts)| {
                ts.iter()
                    .zip(slots)
                    .map(move |(t, s)| (format!("{name}.{s}"), t.clone()))
            })
            .collect()
    }

    /// Restores state saved by [`Optimizer::state_tensors`]; `params` gives the expected shapes.
    pub fn load_state(
        &mut self,
        tensors: &BTreeMap<String, Tensor>,
        params: &Params,
        steps: u64,
    ) -> Result<()> {
        self.state.clear();
        self.steps = steps;
        let slots = self.config.slots();
        if slots.is_empty() {
            return Ok(());
        }
        for (name, p) in params {
            let mut ts = Vec::new();
            for s in slots {
                match tensors.get(&format!("{name}.{s}")) {
                    Some(t) if t.shape() == p.shape() => ts.push(t.clone()),
                    Some(t) => {
                        return Err(Error::Config(format!(
                            "optimizer state {name}.{s} has shape {:?}, the parameter {:?}",
                            t.shape(),
                            p.shape()
                        )))
                    }
                    None => break,
                }
            }
            if ts.len() == slots.len() {
                self.state.insert(name.clone(), ts);
            }
        }
        Ok(())
    }
}
