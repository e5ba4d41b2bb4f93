//! Loss terms on the engine. A closed enum: each distillation or regularization loss that needs
//! the autodiff graph is added here as a variant, with its reference value tested on the CPU.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Tensor as BT};

use super::value::upload;
use crate::error::{Error, Result};
use crate::ir::Tensor;

/// One term of a training objective, evaluated on the output logits `[batch, classes]`.
#[derive(Clone, Debug, PartialEq)]
pub enum LossTerm {
    /// Mean cross-entropy with integer labels, times `weight`.
    CrossEntropy { labels: Vec<u32>, weight: f32 },
    /// Mean cross-entropy against soft targets at temperature `t`:
    /// `weight * t^2 * mean_i( -sum_c target[i,c] * log_softmax(z_i / t)[c] )`.
    /// With `target = softmax(teacher / t)` this is Hinton's distillation term (up to the
    /// target's entropy, a constant): the `t^2` keeps gradient magnitudes comparable across `t`.
    SoftTargets {
        target: Tensor,
        temperature: f32,
        weight: f32,
    },
}

pub(crate) fn total(logits: BT<2>, terms: &[LossTerm], dev: &Device) -> Result<BT<1>> {
    let [batch, classes] = logits.dims();
    if terms.is_empty() {
        return Err(Error::Config(
            "a training objective needs at least one loss term".into(),
        ));
    }
    let mut acc: Option<BT<1>> = None;
    for term in terms {
        let t = match term {
            LossTerm::CrossEntropy { labels, weight } => {
                if labels.len() != batch {
                    return Err(Error::Config(format!(
                        "cross-entropy got {} labels for a batch of {batch}",
                        labels.len()
                    )));
                }
                let mut onehot = vec![0f32; batch * classes];
                for (i, &l) in labels.iter().enumerate() {
                    let l = l as usize;
                    if l >= classes {
                        return Err(Error::Config(format!(
                            "label {l} is out of range for {classes} output classes"
                        )));
                    }
                    onehot[i * classes + l] = 1.0;
                }
                let onehot = upload(onehot, [batch, classes], dev);
                let lp = log_softmax(logits.clone(), 1);
                (lp * onehot).sum().mul_scalar(-weight / batch as f32)
            }
            LossTerm::SoftTargets {
                target,
                temperature,
                weight,
            } => {
                if target.shape() != [batch, classes] {
                    return Err(Error::Config(format!(
                        "soft targets have shape {:?}, the logits are [{batch}, {classes}]",
                        target.shape()
                    )));
                }
                let t = *temperature;
                let tgt = upload(target.data().to_vec(), [batch, classes], dev);
                let lp = log_softmax(logits.clone().div_scalar(t), 1);
                (lp * tgt).sum().mul_scalar(-weight * t * t / batch as f32)
            }
        };
        acc = Some(match acc {
            None => t,
            Some(a) => a + t,
        });
    }
    Ok(acc.expect("at least one term"))
}
