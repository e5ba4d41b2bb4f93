//! Execution of `ir` models on the tensor engine (burn 0.22, flex CPU backend, autodiff).
//!
//! This module is the boundary: burn types never leave it. Callers hand in pare [`Tensor`]s
//! and get pare tensors back (outputs, taps, gradients, batch statistics). Parameters are
//! uploaded per call, so the model stays plain data that any method can rewrite between steps;
//! the cost (one copy of the weights per step) is measured in `bench/`.

mod forward;
mod loss;
mod nd;
pub(crate) mod value;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use burn::tensor::Device;

pub use loss::LossTerm;

use crate::error::{Error, Result};
use crate::ir::{Model, Params, Reparams, Tensor};
use forward::{run, upload_params, Mode};
use value::{download, Value};

fn infer_device() -> &'static Device {
    static DEV: OnceLock<Device> = OnceLock::new();
    DEV.get_or_init(Device::flex)
}

fn train_device() -> &'static Device {
    static DEV: OnceLock<Device> = OnceLock::new();
    DEV.get_or_init(|| Device::flex().autodiff())
}

/// A forward pass's results: the output node's value and any requested intermediate values.
#[derive(Clone, Debug)]
pub struct Outputs {
    pub output: Tensor,
    pub taps: BTreeMap<String, Tensor>,
}

/// Statistics one BatchNorm node saw in a training batch.
#[derive(Clone, Debug)]
pub struct BatchStats {
    pub node: String,
    pub mean: Tensor,
    /// Unbiased (Bessel-corrected) variance, what PyTorch folds into `running_var`.
    pub var_unbiased: Tensor,
}

/// Results of one forward + backward pass in train mode.
#[derive(Clone, Debug)]
pub struct StepOutput {
    pub loss: f32,
    /// The output node's value (logits) for the batch.
    pub output: Tensor,
    /// Gradient of the loss for every trainable parameter (zeros where it does not contribute).
    pub grads: Params,
    pub batch_stats: Vec<BatchStats>,
    pub taps: BTreeMap<String, Tensor>,
}

fn input_value(model: &Model, x: &Tensor, dev: &Device) -> Result<Value> {
    model.graph.check_batch(x)?;
    Ok(Value::from_tensor(x, dev).expect("a checked batch has rank 2..=6"))
}

/// Runs the model in eval mode (running BN statistics, no dropout) on a normalized batch.
pub fn infer(model: &Model, x: &Tensor, reparams: &Reparams, taps: &[String]) -> Result<Outputs> {
    let dev = infer_device();
    let (_, params) = upload_params(model, reparams, dev, false, None);
    let out = run(model, input_value(model, x, dev)?, &params, Mode::Eval, taps, dev)?;
    Ok(Outputs {
        output: out.output.to_tensor(),
        taps: out.taps.into_iter().map(|(k, v)| (k, v.to_tensor())).collect(),
    })
}

/// A forward pass in train mode (batch statistics, dropout seeded by `seed`) with no gradient
/// and no running-statistics update: a model's predictions as it sees them during its own
/// training step (what mutual-learning peers give each other).
pub fn infer_train_mode(model: &Model, x: &Tensor, seed: u64) -> Result<Tensor> {
    let dev = infer_device();
    let (_, params) = upload_params(model, &Reparams::new(), dev, false, None);
    let out = run(
        model,
        input_value(model, x, dev)?,
        &params,
        Mode::Train { seed },
        &[],
        dev,
    )?;
    Ok(out.output.to_tensor())
}

/// One forward + backward pass in train mode (batch statistics, dropout seeded by `seed`).
///
/// The loss is the sum of `terms` evaluated on the output node. Parameters are not updated:
/// the caller's optimizer does that with the returned gradients.
pub fn train_step(
    model: &Model,
    x: &Tensor,
    terms: &[LossTerm],
    reparams: &Reparams,
    taps: &[String],
    seed: u64,
) -> Result<StepOutput> {
    let dev = train_device();
    let (leaves, params) = upload_params(model, reparams, dev, true, Some(seed));
    for t in terms {
        if let LossTerm::At { output, .. } = t {
            if !model.graph.is_output(output) {
                return Err(Error::graph(
                    output,
                    "a loss names it, but it is not an output of the graph",
                ));
            }
        }
    }
    // The caller's taps plus those the loss terms read.
    let mut all_taps: Vec<String> = taps.to_vec();
    for t in terms.iter().filter_map(LossTerm::tap) {
        if !all_taps.iter().any(|x| x == t) {
            all_taps.push(t.to_string());
        }
    }
    let out = run(
        model,
        input_value(model, x, dev)?,
        &params,
        Mode::Train { seed },
        &all_taps,
        dev,
    )?;
    let logits = match &out.output {
        Value::V2(t) => t.clone(),
        _ => {
            return Err(Error::graph(
                &model.graph.output,
                "the output must be [batch, classes] for a classification loss",
            ))
        }
    };
    let tap_values: std::collections::HashMap<String, Value> = out.taps.iter().cloned().collect();
    let mut loss = loss::total(logits.clone(), &tap_values, terms, dev)?;
    // The engine panics on backward through a loss that reaches no tracked tensor (e.g. a
    // feature loss on a tap before any parameter); a zero-weighted leaf keeps it tracked.
    match leaves.values().next() {
        Some(leaf) => loss = loss + leaf.clone().sum().mul_scalar(0.0),
        None => return Err(Error::Config("the model has no trainable parameters".into())),
    }
    let loss_value = loss.clone().into_scalar::<f32>();
    let grads = loss.backward();
    let mut grad_map = Params::new();
    for (name, leaf) in leaves {
        let shape = model.params[&name].shape().to_vec();
        let g = match leaf.grad(&grads) {
            Some(g) => Tensor::from_vec(shape, download(g).into_data()),
            None => Tensor::zeros(shape),
        };
        grad_map.insert(name, g);
    }
    let batch_stats = out
        .bn
        .into_iter()
        .map(|b| {
            let mean = download(b.mean.inner());
            let mut var = download(b.var.inner());
            let n = b.count as f32;
            let bessel = if n > 1.0 { n / (n - 1.0) } else { 1.0 };
            var.data_mut().iter_mut().for_each(|v| *v *= bessel);
            BatchStats {
                node: b.node,
                mean,
                var_unbiased: var,
            }
        })
        .collect();
    Ok(StepOutput {
        loss: loss_value,
        output: download(logits.inner()),
        grads: grad_map,
        batch_stats,
        taps: out
            .taps
            .into_iter()
            .filter(|(k, _)| taps.contains(k))
            .map(|(k, v)| (k, v.to_tensor()))
            .collect(),
    })
}
