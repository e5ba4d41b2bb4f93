//! Loss terms on the engine. A closed enum: each distillation or regularization loss that needs
//! the autodiff graph is added here as a variant, with its reference value tested against a
//! PyTorch script (`tests/reference/distill_losses.py`).
//!
//! Feature terms read a *tap* of the student (a node's output, kept in the autodiff graph) and
//! a teacher tensor given as data; the teacher side goes through the same engine functions
//! without gradient, so both sides are computed identically.

use std::collections::HashMap;

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Tensor as BT};

use super::value::{upload, Value};
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
    /// `weight * mean((s - t)^2)` between the tap and a target of the same shape: the FitNets
    /// hint loss (the tap is the student's regressor node on top of its guided layer).
    FeatureMse {
        tap: String,
        target: Tensor,
        weight: f32,
    },
    /// Attention transfer (Zagoruyko & Komodakis 2017, as their code): with
    /// `at(A) = normalize(mean_c(|A_c|^p) flattened)`, `weight * mean((at(s) - at(t))^2)`;
    /// the teacher activation must have the student tap's spatial size.
    Attention {
        tap: String,
        teacher: Tensor,
        p: f32,
        weight: f32,
    },
    /// Relational KD (Park et al. 2019, as their code) on flattened embeddings of the batch:
    /// distance-wise Huber loss on pairwise distances normalized by their mean, and angle-wise
    /// Huber loss on the cosines of the angles of every triplet.
    Relational {
        tap: String,
        teacher: Tensor,
        distance_weight: f32,
        angle_weight: f32,
    },
    /// Similarity-preserving KD (Tung & Mori 2019): with `G = normalize_rows(A A^T)` of the
    /// flattened activations, `weight * sum((G_s - G_t)^2) / batch^2`.
    Similarity {
        tap: String,
        teacher: Tensor,
        weight: f32,
    },
    /// A logits term (cross-entropy or soft targets) on another named output of the graph
    /// than the main one: an early exit's or an auxiliary head's own loss.
    At { output: String, term: Box<LossTerm> },
}

impl LossTerm {
    /// The student node this term reads, if any.
    pub fn tap(&self) -> Option<&str> {
        match self {
            LossTerm::FeatureMse { tap, .. }
            | LossTerm::Attention { tap, .. }
            | LossTerm::Relational { tap, .. }
            | LossTerm::Similarity { tap, .. } => Some(tap),
            LossTerm::At { output, .. } => Some(output),
            _ => None,
        }
    }
}

/// `sqrt(sum_sq + 1e-24)`: the Euclidean norm with a floor of 1e-12 whose gradient stays finite
/// at zero (the engine's `sqrt` has an infinite derivative there, which times the zero
/// derivative of a clamp gives NaN; PyTorch special-cases the norm's subgradient at 0).
fn safe_norm<const D: usize>(sum_sq: BT<D>) -> BT<D> {
    sum_sq.add_scalar(1e-24).sqrt()
}

/// `x / max(||x||_2, 1e-12)` along dim 1 (PyTorch's `F.normalize`), finite gradients at zero rows.
fn normalize_rows(x: BT<2>) -> BT<2> {
    let n = safe_norm(x.clone().powf_scalar(2.0).sum_dim(1));
    x / n
}

fn flat(v: &Value) -> BT<2> {
    v.flat()
}

fn attention_map(v: &Value, p: f32) -> Result<BT<2>> {
    let Value::V4(t) = v else {
        return Err(Error::Config(
            "attention transfer needs a [batch, C, H, W] activation".into(),
        ));
    };
    let [b, _, h, w] = t.dims();
    let m = t.clone().abs().powf_scalar(p).mean_dim(1).reshape([b, h * w]);
    Ok(normalize_rows(m))
}

/// `0.5 d^2` for `|d| < 1`, `|d| - 0.5` beyond: PyTorch's `smooth_l1_loss` (beta 1), mean.
fn huber_mean<const D: usize>(d: BT<D>) -> BT<1> {
    let a = d.abs();
    let c = a.clone().clamp_max(1.0);
    (c.clone().powf_scalar(2.0).mul_scalar(0.5) + (a - c)).mean()
}

/// Pairwise Euclidean distances (zero diagonal), divided by their mean over distinct pairs.
fn rkd_distances(e: BT<2>, dev: &Device) -> BT<2> {
    let [b, _] = e.dims();
    let sq = e.clone().powf_scalar(2.0).sum_dim(1);
    let prod = e.clone().matmul(e.transpose());
    let d2 = (sq.clone() + sq.transpose() - prod.mul_scalar(2.0)).clamp_min(1e-12);
    let off_diag = upload(
        (0..b * b)
            .map(|i| if i / b == i % b { 0.0 } else { 1.0 })
            .collect(),
        [b, b],
        dev,
    );
    let d = d2.sqrt() * off_diag;
    let mean = d.clone().sum().div_scalar(((b * b - b).max(1)) as f32);
    d / mean.reshape([1, 1])
}

/// Cosines of the angle at `j` of every triplet `(i, j, k)`, flattened.
fn rkd_angles(e: BT<2>) -> BT<1> {
    let [b, f] = e.dims();
    let diff = e.clone().reshape([1, b, f]) - e.reshape([b, 1, f]);
    let n = safe_norm(diff.clone().powf_scalar(2.0).sum_dim(2));
    let unit = diff / n;
    unit.clone().matmul(unit.swap_dims(1, 2)).reshape([b * b * b])
}

fn gram(a: BT<2>) -> BT<2> {
    normalize_rows(a.clone().matmul(a.transpose()))
}

pub(crate) fn total(
    logits: BT<2>,
    taps: &HashMap<String, Value>,
    terms: &[LossTerm],
    dev: &Device,
) -> Result<BT<1>> {
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
            LossTerm::FeatureMse { tap, target, weight } => {
                let s = flat(&taps[tap]);
                let dims = s.dims();
                if target.len() != dims[0] * dims[1] || target.shape()[0] != dims[0] {
                    return Err(Error::Config(format!(
                        "hint target has shape {:?}, the student's '{tap}' has {:?} (add a regressor)",
                        target.shape(),
                        taps[tap].dims()
                    )));
                }
                let t = upload(target.data().to_vec(), dims, dev);
                (s - t).powf_scalar(2.0).mean().mul_scalar(*weight)
            }
            LossTerm::Attention {
                tap,
                teacher,
                p,
                weight,
            } => {
                let s = attention_map(&taps[tap], *p)?;
                let t = teacher_value(teacher, dev)?;
                let tm = attention_map(&t, *p)?;
                if s.dims() != tm.dims() {
                    return Err(Error::Config(format!(
                        "attention maps differ: the student's '{tap}' is {:?}, the teacher's {:?} (spatial sizes must match)",
                        taps[tap].dims(),
                        teacher.shape()
                    )));
                }
                (s - tm.detach()).powf_scalar(2.0).mean().mul_scalar(*weight)
            }
            LossTerm::Relational {
                tap,
                teacher,
                distance_weight,
                angle_weight,
            } => {
                let s = flat(&taps[tap]);
                let t = flat(&teacher_value(teacher, dev)?).detach();
                if t.dims()[0] != s.dims()[0] {
                    return Err(Error::Config(
                        "relational KD: teacher and student batch sizes differ".into(),
                    ));
                }
                let mut l = huber_mean(rkd_distances(s.clone(), dev) - rkd_distances(t.clone(), dev))
                    .mul_scalar(*distance_weight);
                if *angle_weight != 0.0 {
                    l = l + huber_mean(rkd_angles(s) - rkd_angles(t)).mul_scalar(*angle_weight);
                }
                l
            }
            LossTerm::At { output, term } => {
                if matches!(**term, LossTerm::At { .. }) || term.tap().is_some() {
                    return Err(Error::Config(format!(
                        "the loss on output '{output}' must be cross-entropy or soft targets"
                    )));
                }
                let Value::V2(head) = taps[output].clone() else {
                    return Err(Error::graph(
                        output,
                        "an output with a logits loss must be [batch, classes]",
                    ));
                };
                total(head, taps, std::slice::from_ref(term), dev)?
            }
            LossTerm::Similarity { tap, teacher, weight } => {
                let s = flat(&taps[tap]);
                let t = flat(&teacher_value(teacher, dev)?).detach();
                let b = s.dims()[0];
                if t.dims()[0] != b {
                    return Err(Error::Config(
                        "similarity-preserving KD: batch sizes differ".into(),
                    ));
                }
                (gram(s) - gram(t))
                    .powf_scalar(2.0)
                    .sum()
                    .mul_scalar(*weight / (b * b) as f32)
            }
        };
        acc = Some(match acc {
            None => t,
            Some(a) => a + t,
        });
    }
    Ok(acc.expect("at least one term"))
}

fn teacher_value(t: &Tensor, dev: &Device) -> Result<Value> {
    Value::from_tensor(t, dev).ok_or_else(|| {
        Error::Config(format!(
            "a teacher activation of shape {:?} is not of rank 1 to 6",
            t.shape()
        ))
    })
}
