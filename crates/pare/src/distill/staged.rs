//! The distillation methods that are schedules of training runs: FitNets' two stages (Romero
//! et al. 2015), Teacher-Assistant KD (Mirzadeh et al. 2020), Born-Again generations
//! (Furlanello et al. 2018) and Label Refinery rounds (Bagherinezhad et al. 2018).
//!
//! Each is a function over a [`Train`]: the caller's training run (data, optimizer, schedule,
//! progress, interruption), so that the CLI and recipes run the same schedule.

use super::{add_regressor, DistillHook, Feature, FeatureKind, Objective};
use crate::error::Result;
use crate::ir::{rewrite, Model};
use crate::train::Hooks;

/// One training run of `model` for `epochs` with `hook`'s extra terms, seeded by `seed`.
pub trait Train {
    fn train(
        &mut self,
        model: &mut Model,
        epochs: usize,
        seed: u64,
        hook: Option<&mut dyn Hooks>,
    ) -> Result<()>;
}

/// Trains `student` with the `objective`'s terms from `teacher` for `epochs`.
pub fn kd(
    trainer: &mut dyn Train,
    student: &mut Model,
    teacher: &Model,
    objective: Objective,
    epochs: usize,
    seed: u64,
) -> Result<()> {
    let mut hook = DistillHook::new(teacher.clone(), student, objective)?;
    trainer.train(student, epochs, seed, Some(&mut hook))
}

/// FitNets' hint stage: which student layer is guided by which teacher layer, for how long
/// and how strongly.
#[derive(Clone, Debug, PartialEq)]
pub struct Hint {
    pub guided: String,
    pub hint: String,
    pub epochs: usize,
    pub weight: f32,
}

/// FitNets: stage 1 trains the student up to `hint.guided` (through a regressor grafted onto
/// it) to predict the teacher's `hint.hint` layer with the MSE alone; the regressor is then
/// removed and stage 2 trains the whole student with `objective` (KD) for `epochs`.
pub fn fitnets(
    trainer: &mut dyn Train,
    student: &Model,
    teacher: &Model,
    hint: &Hint,
    objective: Objective,
    epochs: usize,
    seed: u64,
) -> Result<Model> {
    let (mut s, regressor) = add_regressor(student, &hint.guided, teacher, &hint.hint, seed)?;
    let mut hint_only = Objective::kd(1.0, 0.0);
    hint_only.ce_weight = 0.0;
    hint_only.features = vec![Feature {
        student: regressor.clone(),
        teacher: hint.hint.clone(),
        kind: FeatureKind::Hint,
        weight: hint.weight,
    }];
    kd(trainer, &mut s, teacher, hint_only, hint.epochs.max(1), seed)?;
    let mut s = rewrite::remove_side(&s, &regressor)?;
    kd(trainer, &mut s, teacher, objective, epochs, seed)?;
    Ok(s)
}

/// Teacher-Assistant KD: the assistant (between teacher and student in size) is distilled
/// from the teacher, then the student from the assistant. Returns both.
pub fn takd(
    trainer: &mut dyn Train,
    teacher: &Model,
    mut assistant: Model,
    mut student: Model,
    objective: Objective,
    epochs: usize,
    seed: u64,
) -> Result<(Model, Model)> {
    kd(trainer, &mut assistant, teacher, objective.clone(), epochs, seed)?;
    kd(trainer, &mut student, &assistant, objective, epochs, seed)?;
    Ok((assistant, student))
}

/// A chain of generations: generation `g` (1-based) is `fresh(g)` distilled with `objective`
/// from generation `g - 1`, generation 0 being `first`. Born-Again networks use KD and the
/// student's own architecture as `first`; Label Refinery uses soft labels only
/// ([`Objective::refinery`]). `done(g, model)` sees each generation as it is trained (to save
/// or evaluate it). Returns generations 1..=`n`.
#[allow(clippy::too_many_arguments)]
pub fn generations(
    trainer: &mut dyn Train,
    first: &Model,
    fresh: &mut dyn FnMut(usize) -> Result<Model>,
    n: usize,
    objective: Objective,
    epochs: usize,
    seed: u64,
    done: &mut dyn FnMut(usize, &Model) -> Result<()>,
) -> Result<Vec<Model>> {
    let mut out: Vec<Model> = Vec::with_capacity(n);
    for g in 1..=n {
        let mut s = fresh(g)?;
        let prev = out.last().unwrap_or(first);
        kd(trainer, &mut s, prev, objective.clone(), epochs, seed + g as u64)?;
        done(g, &s)?;
        out.push(s);
    }
    Ok(out)
}
