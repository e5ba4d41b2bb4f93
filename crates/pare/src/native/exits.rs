//! Early-exit inference that really skips work: the graph runs in stages, one per exit (the
//! nodes that exit needs and no earlier one did), and after each exit's logits the samples
//! that leave are dropped from every live value, so later stages compute only for the samples
//! still in the batch. At batch 1 a sample that exits ends the run.

use super::buffers;
use super::plan::{compile_order, take, Plan};
use crate::error::{Error, Result};
use crate::ir::{Model, Tensor};

/// A model compiled to stop per sample at its exits: see [`compile_exits`].
#[derive(Clone, Debug)]
pub struct ExitPlan {
    plan: Plan,
    /// For each exit and then the main output, the number of steps run once its logits are
    /// ready, its slot, and whether the slot is the exit's own (not an input it aliases, which
    /// later stages may still read).
    stages: Vec<(usize, usize, bool)>,
    classes: usize,
}

/// What one early-exit run gives back.
#[derive(Clone, Debug, PartialEq)]
pub struct ExitRun {
    /// `[N, classes]`: each sample's logits from the exit it left at.
    pub logits: Tensor,
    /// The exit each sample left at; `exits.len()` for the main output.
    pub exit: Vec<usize>,
}

/// Compiles `model` to run with early exits at `exits` (extra outputs of its graph, ordered
/// from the earliest to the latest; the main output is the last stage). Every exit and the
/// main output must give one vector of the same width per sample, and no node may read an
/// exit (an exit is the last node of its head).
pub fn compile_exits(model: &Model, exits: &[String]) -> Result<ExitPlan> {
    let g = &model.graph;
    let shapes = model.shapes();
    let classes = shapes.of(g, &g.output).to_vec();
    let [width] = classes[..] else {
        return Err(Error::graph(
            &g.output,
            format!("an early-exit model's output must be one vector per sample, got {classes:?}"),
        ));
    };
    for e in exits {
        if !g.extra_outputs.contains(e) {
            return Err(Error::graph(
                e,
                format!(
                    "is not an extra output of the graph (extra outputs: {})",
                    g.extra_outputs.join(", ")
                ),
            ));
        }
        if shapes.of(g, e) != classes.as_slice() {
            return Err(Error::graph(
                e,
                format!(
                    "the exit gives {:?} per sample; the main output gives {classes:?}",
                    shapes.of(g, e)
                ),
            ));
        }
        if let Some(&r) = g.consumers(e).first() {
            return Err(Error::graph(
                e,
                format!(
                    "node '{}' reads the exit; an exit must be the last node of its head",
                    g.nodes[r].name
                ),
            ));
        }
    }
    let names: Vec<&str> = exits
        .iter()
        .map(String::as_str)
        .chain([g.output.as_str()])
        .collect();
    let stages = g.stages(&names)?;
    let order: Vec<usize> = stages.iter().flatten().copied().collect();
    let plan = compile_order(model, &order)?;
    // Steps follow `order`, so a stage's steps end where the next stage's nodes begin.
    let mut ends = Vec::with_capacity(stages.len());
    for (k, stage) in stages.iter().enumerate() {
        let end = plan
            .steps
            .iter()
            .take_while(|s| !later(&stages[k + 1..], s.node))
            .count();
        debug_assert!(stage.iter().all(|&i| !later(&stages[k + 1..], i)));
        let slot = plan.outputs[output_index(g, names[k])];
        let own = g.index_of(names[k]).map(|i| i + 1) == Some(slot);
        ends.push((end, slot, own));
    }
    Ok(ExitPlan {
        plan,
        stages: ends,
        classes: width,
    })
}

fn later(stages: &[Vec<usize>], node: usize) -> bool {
    stages.iter().any(|s| s.contains(&node))
}

fn output_index(g: &crate::ir::Graph, name: &str) -> usize {
    g.outputs()
        .iter()
        .position(|o| *o == name)
        .expect("checked to be an output")
}

impl ExitPlan {
    /// Runs the batch `x`, asking `exits_here(exit, sample, logits)` after each exit for each
    /// sample still running (samples are numbered as in `x`); those for which it says yes
    /// leave with that exit's logits, the others go on without them.
    pub fn run(
        &self,
        x: &Tensor,
        exits_here: &mut dyn FnMut(usize, usize, &[f32]) -> bool,
    ) -> Result<ExitRun> {
        let n = x.shape()[0];
        let c = self.classes;
        let mut slots = self.plan.start(x)?;
        let mut live: Vec<usize> = (0..n).collect();
        let mut logits = vec![0.0f32; n * c];
        let last = self.stages.len() - 1;
        let mut exit = vec![last; n];
        let mut done = 0;
        for (k, &(end, slot, own)) in self.stages.iter().enumerate() {
            self.plan
                .run_steps(&mut slots, done..end, live.len(), &mut |_, _| {})?;
            done = end;
            let y = slots[slot].as_ref().expect("outputs are computed");
            let mut keep = Vec::with_capacity(live.len());
            for (r, &s) in live.iter().enumerate() {
                let row = &y.data()[r * c..(r + 1) * c];
                if k == last || exits_here(k, s, row) {
                    logits[s * c..(s + 1) * c].copy_from_slice(row);
                    exit[s] = k;
                } else {
                    keep.push(r);
                }
            }
            if own {
                buffers::recycle(take(&mut slots, slot).into_data());
            }
            if keep.is_empty() {
                break;
            }
            if keep.len() < live.len() {
                for a in slots.iter_mut().flatten() {
                    let kept = a.select(&keep);
                    buffers::recycle(std::mem::replace(a, kept).into_data());
                }
                live = keep.iter().map(|&r| live[r]).collect();
            }
        }
        for a in slots.into_iter().flatten() {
            buffers::recycle(a.into_data());
        }
        Ok(ExitRun {
            logits: Tensor::from_vec(vec![n, c], logits),
            exit,
        })
    }

    /// The number of exits before the main output.
    pub fn exits(&self) -> usize {
        self.stages.len() - 1
    }
}
