//! The distill stage: Hinton KD into the current model (its encoding kept), or one of the
//! schedules of runs of [`crate::distill::staged`], each run with the stage's training
//! settings and pruned zeros kept.

use super::stages::keep_zeros;
use super::*;
use crate::distill::staged::{self, Hint, Train};
use crate::pipeline::recipe::{DistillMethod, DistillStage};
use crate::zoo::ZooModel;

/// The stage's training runs for the staged methods: its settings with the epochs each run asks
/// for, zeros of the trained model kept (a structured or pruned student stays so).
struct StageRuns<'a, 'd> {
    train: &'a Training,
    data: &'a Data<'d>,
    events: &'a mut dyn Events,
}

impl Train for StageRuns<'_, '_> {
    fn train(
        &mut self,
        model: &mut Model,
        epochs: usize,
        seed: u64,
        hook: Option<&mut dyn Hooks>,
    ) -> Result<()> {
        let t = Training {
            epochs,
            ..self.train.clone()
        };
        let mut keep = keep_zeros(model)?;
        match hook {
            Some(h) => train(
                model,
                &t,
                seed,
                self.data,
                &mut Chain(vec![&mut keep, h]),
                self.events,
            ),
            None => train(model, &t, seed, self.data, &mut keep, self.events),
        }
    }
}

pub(super) fn distill(
    d: &DistillStage,
    state: &mut State,
    seed: u64,
    data: &Data,
    events: &mut dyn Events,
) -> Result<(Option<f32>, String)> {
    let teacher = match &d.teacher {
        Some(dir) => io::load(dir)?,
        None => state.original.clone(),
    };
    let from = d
        .teacher
        .as_ref()
        .map_or("the starting model".to_string(), |p| p.display().to_string());
    let kd = Objective::kd(d.temperature.0, d.alpha.0);
    let before = accuracy(&state.model, &state.reparams, data)?;
    let epochs = d.train.epochs;
    let mut runs = StageRuns {
        train: &d.train,
        data,
        events,
    };
    let what = match &d.method {
        DistillMethod::Kd => {
            let mut hook = DistillHook::new(teacher, &state.model, kd)?;
            train_keeping(state, &d.train, seed, data, runs.events, Some(&mut hook))?;
            format!("KD from {from}")
        }
        DistillMethod::Fitnet {
            guided,
            hint,
            hint_epochs,
            beta,
        } => {
            let hint = Hint {
                guided: guided.clone(),
                hint: hint.clone(),
                epochs: *hint_epochs,
                weight: beta.0,
            };
            state.model = staged::fitnets(&mut runs, &state.model, &teacher, &hint, kd, epochs, seed)?;
            format!(
                "FitNets from {from}: {} epochs of hint {} -> {}, then KD",
                hint.epochs, hint.guided, hint.hint
            )
        }
        DistillMethod::Takd { assistant } => {
            let mut graph = ZooModel::parse_spec(assistant)?
                .build(data.train.sample_shape(), data.train.num_classes())?;
            graph.input.normalize = crate::data::fashion::pixel_stats(data.train);
            let assistant_model = Model::init(graph, seed)?;
            let student = state.model.clone();
            let (a, s) = staged::takd(&mut runs, &teacher, assistant_model, student, kd, epochs, seed)?;
            state.model = s;
            format!(
                "TAKD from {from} through a {assistant} assistant (test accuracy {:.4})",
                crate::train::accuracy(&a, data.test)?
            )
        }
        DistillMethod::BornAgain { generations } | DistillMethod::Refinery { rounds: generations } => {
            let born_again = matches!(d.method, DistillMethod::BornAgain { .. });
            // Born-Again generations start from the current model; refinery rounds from the
            // teacher, with soft labels only.
            let (first, objective) = if born_again {
                (state.model.clone(), kd)
            } else {
                (teacher, Objective::refinery())
            };
            let graph = state.model.graph.clone();
            let mut fresh = |g: usize| Model::init(graph.clone(), seed.wrapping_add(g as u64));
            let mut accs = Vec::new();
            let mut done = |_: usize, m: &Model| {
                accs.push(format!("{:.4}", crate::train::accuracy(m, data.test)?));
                Ok(())
            };
            let gens = staged::generations(
                &mut runs,
                &first,
                &mut fresh,
                *generations,
                objective,
                epochs,
                seed,
                &mut done,
            )?;
            state.model = gens.into_iter().last().expect("at least one generation");
            format!(
                "{} {} from {from}: test accuracy per generation {}",
                generations,
                if born_again {
                    "Born-Again generations"
                } else {
                    "refinery rounds"
                },
                accs.join(", ")
            )
        }
    };
    Ok((
        Some(before),
        format!(
            "{what}, T {}, alpha {}, {epochs} epochs",
            d.temperature.0, d.alpha.0
        ),
    ))
}
