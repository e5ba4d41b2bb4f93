//! Knowledge distillation: a student trained by the ordinary fit loop with extra loss terms
//! from a teacher that runs in eval mode, without gradient, on the very batch (and augmented
//! view) the student sees ("patient and consistent" teaching, Beyer et al. 2022).
//!
//! One [`Objective`] covers the per-step methods: Hinton KD (soft targets at temperature T),
//! FitNets hints (through a regressor node grafted onto the student), attention transfer,
//! relational KD, similarity-preserving KD and Label Refinery (soft labels only). Methods that
//! are schedules of runs (Born-Again generations, Teacher-Assistant chains, refinery rounds)
//! compose those runs; Deep Mutual Learning trains peers side by side ([`dml`]).

pub mod cache;
pub mod dml;
pub mod staged;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::data::{sequential, Batch, Dataset};
use crate::error::{Error, Result};
use crate::exec::{infer, LossTerm};
use crate::ir::graph::ops::{conv, linear};
use crate::ir::{rewrite, Model, Node, Normalize, Readers, Reparams, Tensor};
use crate::train::Hooks;

/// Row-wise softmax of `logits / t` over the last axis (`[batch, classes]` logits).
pub fn softmax(logits: &Tensor, t: f32) -> Tensor {
    let c = logits.shape().last().copied().unwrap_or(1).max(1);
    let mut out = logits.data().to_vec();
    for row in out.chunks_mut(c) {
        let max = row.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v / t));
        let mut sum = 0.0;
        for v in row.iter_mut() {
            *v = (*v / t - max).exp();
            sum += *v;
        }
        row.iter_mut().for_each(|v| *v /= sum);
    }
    Tensor::from_vec(logits.shape().to_vec(), out)
}

/// How a student layer is matched with a teacher layer.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FeatureKind {
    /// FitNets: MSE between the student's regressor output and the teacher's hint layer.
    Hint,
    /// Attention transfer with maps `mean_c |A|^p`.
    Attention { p: f32 },
    /// Relational KD (distance and angle weights; the paper uses 25 and 50).
    Relational { distance: f32, angle: f32 },
    /// Similarity-preserving KD.
    Similarity,
}

/// One matched layer pair.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Feature {
    pub student: String,
    pub teacher: String,
    pub kind: FeatureKind,
    pub weight: f32,
}

/// The per-step objective of a distillation run:
/// `ce_weight * CE(labels) + kd_weight * T^2 * CE(softmax(teacher / T), student / T) + features`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Objective {
    pub ce_weight: f32,
    pub kd_weight: f32,
    pub temperature: f32,
    pub features: Vec<Feature>,
}

impl Objective {
    /// Hinton et al.: `alpha` on the soft targets, `1 - alpha` on the labels.
    pub fn kd(temperature: f32, alpha: f32) -> Self {
        Objective {
            ce_weight: 1.0 - alpha,
            kd_weight: alpha,
            temperature,
            features: Vec::new(),
        }
    }

    /// Label Refinery: the previous model's predictions are the only labels.
    pub fn refinery() -> Self {
        Objective::kd(1.0, 1.0)
    }

    pub fn validate(&self, student: &Model, teacher: &Model) -> Result<()> {
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(Error::Config(format!(
                "temperature {} must be positive",
                self.temperature
            )));
        }
        if !(0.0..=1.0).contains(&self.kd_weight) && self.features.is_empty() {
            return Err(Error::Config(format!(
                "alpha {} must be in [0, 1]",
                self.kd_weight
            )));
        }
        for f in &self.features {
            if student.graph.node(&f.student).is_none() {
                return Err(Error::Config(format!("the student has no layer '{}'", f.student)));
            }
            if teacher.graph.node(&f.teacher).is_none() {
                return Err(Error::Config(format!("the teacher has no layer '{}'", f.teacher)));
            }
        }
        Ok(())
    }
}

/// The teacher's view of a student batch: the same pixels, re-normalized with the teacher's
/// own statistics if they differ.
pub(crate) fn teacher_input(s: &Normalize, teacher: &Model, x: &Tensor) -> Tensor {
    let t = &teacher.graph.input.normalize;
    if s == t {
        return x.clone();
    }
    let mut y = x.clone();
    let sample = &x.shape()[1..];
    s.undo(sample, y.data_mut());
    t.apply(sample, y.data_mut());
    y
}

/// Adds the teacher's terms to every training step of the student.
pub struct DistillHook {
    /// Private: `plan` is derived from it at construction.
    teacher: Model,
    pub teacher_reparams: Reparams,
    pub objective: Objective,
    /// The student's normalization (the batch is normalized with it).
    student_norm: Normalize,
    taps: Vec<String>,
    /// Teacher logits per (view, sample index), for batches that hold a fixed view of their
    /// samples (unaugmented data, or one of a finite set of augmented views: the teacher's
    /// output for it is then the same every time it comes back) when no feature term needs
    /// the teacher's taps.
    cache: HashMap<(usize, usize), Vec<f32>>,
    /// Whether to use that cache (on by default; results are identical either way).
    pub use_cache: bool,
    /// The teacher with BatchNorm folded, compiled for the native engine, run when only its
    /// logits are needed (about twice as fast as the training engine's eval pass).
    plan: crate::native::Plan,
}

impl DistillHook {
    pub fn new(teacher: Model, student: &Model, objective: Objective) -> Result<Self> {
        objective.validate(student, &teacher)?;
        if teacher.graph.input.shape != student.graph.input.shape {
            return Err(Error::Config(format!(
                "teacher input {:?} differs from the student's {:?}",
                teacher.graph.input.shape, student.graph.input.shape
            )));
        }
        let mut taps: Vec<String> = objective.features.iter().map(|f| f.teacher.clone()).collect();
        taps.dedup();
        Ok(DistillHook {
            teacher_reparams: Reparams::new(),
            objective,
            student_norm: student.graph.input.normalize.clone(),
            taps,
            cache: HashMap::new(),
            use_cache: true,
            plan: crate::native::compile(&crate::fuse::fold_batch_norm(&teacher)?)?,
            teacher,
        })
    }
}

impl DistillHook {
    /// The teacher, as given (never updated by training).
    pub fn teacher(&self) -> &Model {
        &self.teacher
    }
}

impl Hooks for DistillHook {
    fn loss_terms(&mut self, batch: &Batch, terms: &mut Vec<LossTerm>) -> Result<()> {
        let o = &self.objective;
        for t in terms.iter_mut() {
            if let LossTerm::CrossEntropy { weight, .. } = t {
                *weight = o.ce_weight;
            }
        }
        let view = batch.view.filter(|_| self.use_cache && o.features.is_empty());
        let cached = view.is_some_and(|v| batch.indices.iter().all(|&i| self.cache.contains_key(&(v, i))));
        let (logits, taps) = if let (true, Some(v)) = (cached, view) {
            let rows: Vec<f32> = batch
                .indices
                .iter()
                .flat_map(|&i| self.cache[&(v, i)].iter().copied())
                .collect();
            let classes = rows.len() / batch.indices.len().max(1);
            (
                Tensor::from_vec(vec![batch.indices.len(), classes], rows),
                Default::default(),
            )
        } else {
            let x = teacher_input(&self.student_norm, &self.teacher, &batch.x);
            let (output, taps) = if self.taps.is_empty() && self.teacher_reparams.is_empty() {
                (self.plan.run(&x)?, Default::default())
            } else {
                let out = infer(&self.teacher, &x, &self.teacher_reparams, &self.taps)?;
                (out.output, out.taps)
            };
            if let Some(v) = view {
                let classes = output.shape()[1];
                for (r, &i) in batch.indices.iter().enumerate() {
                    self.cache
                        .insert((v, i), output.data()[r * classes..(r + 1) * classes].to_vec());
                }
            }
            (output, taps)
        };
        if o.kd_weight > 0.0 {
            terms.push(LossTerm::SoftTargets {
                target: softmax(&logits, o.temperature),
                temperature: o.temperature,
                weight: o.kd_weight,
            });
        }
        for f in &o.features {
            let teacher: Tensor = taps[&f.teacher].clone();
            let tap = f.student.clone();
            terms.push(match f.kind {
                FeatureKind::Hint => LossTerm::FeatureMse {
                    tap,
                    target: teacher,
                    weight: f.weight,
                },
                FeatureKind::Attention { p } => LossTerm::Attention {
                    tap,
                    teacher,
                    p,
                    weight: f.weight,
                },
                FeatureKind::Relational { distance, angle } => LossTerm::Relational {
                    tap,
                    teacher,
                    distance_weight: distance * f.weight,
                    angle_weight: angle * f.weight,
                },
                FeatureKind::Similarity => LossTerm::Similarity {
                    tap,
                    teacher,
                    weight: f.weight,
                },
            });
        }
        Ok(())
    }
}

/// Grafts a FitNets regressor onto the student: a 1x1 convolution (images) or a linear map
/// (vectors) from the guided layer's output to the hint layer's shape, as a side node that the
/// hint loss reads and the output does not depend on. Returns the model and the node's name.
pub fn add_regressor(
    student: &Model,
    guided: &str,
    teacher: &Model,
    hint: &str,
    seed: u64,
) -> Result<(Model, String)> {
    let shape_of = |m: &Model, n: &str| -> Result<Vec<usize>> {
        let i = m
            .graph
            .index_of(n)
            .ok_or_else(|| Error::Config(format!("no layer '{n}'")))?;
        Ok(m.shapes().nodes[i].clone())
    };
    let (s, t) = (shape_of(student, guided)?, shape_of(teacher, hint)?);
    let op = match (s.as_slice(), t.as_slice()) {
        ([cs, hs, ws], [ct, ht, wt]) if hs == ht && ws == wt => conv(*cs, *ct, 1, 1, 0, false),
        ([fs], [ft]) => linear(*fs, *ft),
        _ => {
            return Err(Error::Config(format!(
                "guided layer '{guided}' {s:?} and hint layer '{hint}' {t:?} need equal spatial sizes (or both be vectors)"
            )))
        }
    };
    let name = format!("{guided}_regressor");
    let node = Node {
        name: name.clone(),
        op,
        inputs: vec![guided.to_string()],
    };
    // The regressor's initial weights are drawn as a fresh model of the grafted graph draws
    // them; the student keeps its own.
    let mut graph = student.graph.clone();
    graph.insert_after(guided, node, Readers::None)?;
    let fresh = Model::init(graph.clone(), seed)?;
    let mut params = student.params.clone();
    for k in rewrite::params_of(&graph, &name) {
        params.insert(k.clone(), fresh.params[&k].clone());
    }
    let with = Model::new(graph, params)?;
    Ok((with, name))
}

/// Test accuracy of the averaged softmax of several models (Born-Again ensembles, DML peers).
pub fn ensemble_accuracy(models: &[&Model], set: &dyn Dataset, batch_size: usize) -> Result<f32> {
    let first = models
        .first()
        .ok_or_else(|| Error::Config("an ensemble needs a model".into()))?;
    let (mut correct, mut seen) = (0usize, 0usize);
    let norm = &first.graph.input.normalize;
    for batch in sequential(set, batch_size, norm) {
        let mut avg: Option<Vec<f32>> = None;
        for m in models {
            let x = teacher_input(norm, m, &batch.x);
            let p = softmax(&infer(m, &x, &Reparams::new(), &[])?.output, 1.0);
            match &mut avg {
                None => avg = Some(p.data().to_vec()),
                Some(a) => a.iter_mut().zip(p.data()).for_each(|(a, v)| *a += v),
            }
        }
        let classes = set.num_classes();
        let avg = Tensor::from_vec(vec![batch.labels.len(), classes], avg.expect("one model"));
        correct += avg
            .argmax_rows()
            .iter()
            .zip(&batch.labels)
            .filter(|(p, l)| **p == **l as usize)
            .count();
        seen += batch.labels.len();
    }
    Ok(correct as f32 / seen.max(1) as f32)
}
