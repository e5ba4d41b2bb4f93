//! A model compiled for the native engine: the steps to run, each with its kernel and the
//! buffer slots it reads and writes, decided once and then run on any number of batches.

use super::act::Act;
use super::kernel::Kernel;
use super::{buffers, Fused};
use crate::error::Result;
use crate::ir::op::{Conv2d, Dropout, FakeQuant, HashedLinear, Linear};
use crate::ir::{Model, Op, Tensor, INPUT};

/// One node that runs: its kernel, the slots it reads, and the slots it is the last reader of
/// (their buffers are recycled once it ran).
#[derive(Clone, Debug)]
pub(super) struct Step {
    /// Index of the node in the model's graph (for per-layer timings).
    pub(super) node: usize,
    name: String,
    kernel: Kernel,
    inputs: Vec<usize>,
    output: usize,
    release: Vec<usize>,
}

/// An eval-mode model ready to run: see [`compile`].
#[derive(Clone, Debug)]
pub struct Plan {
    input: crate::ir::InputSpec,
    /// The ids every embedding has a row for (see [`crate::ir::Graph::id_rows`]).
    id_rows: usize,
    pub(super) steps: Vec<Step>,
    pub(super) slots: usize,
    /// The slots of the graph's outputs, the main one first.
    pub(super) outputs: Vec<usize>,
}

/// Compiles `model` for the native engine: which nodes run and which alias their input (a
/// ReLU fused into the layer before it, Dropout, Identity), one kernel per running node with its
/// parameters, and the buffer slot of every value with the step after which it is freed.
///
/// The plan copies the parameters it needs, so the model can be dropped. Reparameterizations
/// are not applied: bake masks and quantizers into the weights first (a saved or decoded model
/// already has them baked). Fold BatchNorm ([`crate::fuse`]) for speed.
pub fn compile(model: &Model) -> Result<Plan> {
    compile_order(model, &(0..model.graph.nodes.len()).collect::<Vec<_>>())
}

/// [`compile`] with the nodes run in `order`: any order in which every node comes after the
/// nodes it reads (the nodes left out must not be needed by those in it). An early-exit plan
/// runs the nodes of each exit's stage before the next stage's.
pub(super) fn compile_order(model: &Model, order: &[usize]) -> Result<Plan> {
    let g = &model.graph;
    let fused = fusions(model);
    // Slot 0 is the input, slot i + 1 node i; a node that aliases its input reads and is read
    // through its source's slot.
    let mut slot_of: Vec<usize> = Vec::with_capacity(g.nodes.len() + 1);
    slot_of.push(0);
    let index: std::collections::HashMap<&str, usize> = g
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.as_str(), i))
        .collect();
    let lookup = |slot_of: &[usize], name: &str| -> usize {
        if name == INPUT {
            0
        } else {
            slot_of[index[name] + 1]
        }
    };
    for (i, node) in g.nodes.iter().enumerate() {
        let own = if fused[i] == Role::Alias {
            lookup(&slot_of, &node.inputs[0])
        } else {
            i + 1
        };
        slot_of.push(own);
    }
    let outputs: Vec<usize> = g.outputs().iter().map(|o| lookup(&slot_of, o)).collect();
    // The position in `order` of the last node reading each slot (directly or through an
    // alias), plus one; 0 for none.
    let mut last_use = vec![0usize; g.nodes.len() + 1];
    for (pos, &i) in order.iter().enumerate() {
        for inp in &g.nodes[i].inputs {
            last_use[lookup(&slot_of, inp)] = pos + 1;
        }
    }
    let mut steps: Vec<Step> = Vec::new();
    let mut step_pos: Vec<usize> = Vec::new();
    for (pos, &i) in order.iter().enumerate() {
        let node = &g.nodes[i];
        if fused[i] == Role::Alias {
            continue;
        }
        let relu = if fused[i] == Role::WithRelu {
            Fused::Relu
        } else {
            Fused::None
        };
        steps.push(Step {
            node: i,
            name: node.name.clone(),
            kernel: Kernel::new(model, i, relu),
            inputs: node.inputs.iter().map(|n| lookup(&slot_of, n)).collect(),
            output: i + 1,
            release: Vec::new(),
        });
        step_pos.push(pos);
    }
    // A slot is freed after the last step at or before its last reader; outputs are kept.
    for (k, &last) in last_use.iter().enumerate() {
        if last == 0 || outputs.contains(&k) {
            continue;
        }
        if let Some(s) = (0..steps.len()).rev().find(|&s| step_pos[s] < last) {
            steps[s].release.push(k);
        }
    }
    Ok(Plan {
        input: g.input.clone(),
        id_rows: g.id_rows(),
        steps,
        slots: g.nodes.len() + 1,
        outputs,
    })
}

impl Plan {
    /// Eval-mode forward pass on a batch `x` (`[N, ...input shape]`, normalized): the value of
    /// the model's output in PyTorch layout (the logits `[N, classes]`).
    /// The kernel each running node got, by node index (aliased nodes run none).
    pub fn kernels(&self) -> Vec<(usize, String)> {
        self.steps.iter().map(|s| (s.node, s.kernel.label())).collect()
    }

    pub fn run(&self, x: &Tensor) -> Result<Tensor> {
        self.run_timed(x, &mut |_, _| {})
    }

    /// [`Plan::run`], calling `on_node(i, time)` after node `i` of the graph ran (nodes that
    /// alias their input do not run and are not reported): the per-layer profile of
    /// `pare bench latency --layers`.
    pub fn run_timed(
        &self,
        x: &Tensor,
        on_node: &mut dyn FnMut(usize, std::time::Duration),
    ) -> Result<Tensor> {
        let mut slots = self.start(x)?;
        self.run_steps(&mut slots, 0..self.steps.len(), x.shape()[0], on_node)?;
        Ok(take(&mut slots, self.outputs[0]).into_tensor())
    }

    /// Every output of the graph on the batch `x`, the main one first (an early-exit model's
    /// exits beside its final logits, computed in one pass).
    pub fn run_all(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        let mut slots = self.start(x)?;
        self.run_steps(&mut slots, 0..self.steps.len(), x.shape()[0], &mut |_, _| {})?;
        Ok(self
            .outputs
            .iter()
            .map(|&k| slots[k].clone().expect("outputs are computed").into_tensor())
            .collect())
    }

    /// [`Plan::run`] on a batch it takes over, so that it need not copy it (only images of
    /// several samples and channels are reordered): what a deployment that owns its input
    /// buffer runs, and what latencies are measured on.
    pub fn run_owned(&self, x: Tensor) -> Result<Tensor> {
        self.input.check_batch(&x, self.id_rows)?;
        let n = x.shape()[0];
        let mut slots: Vec<Option<Act>> = vec![None; self.slots];
        slots[0] = Some(Act::from_pytorch_owned(x.shape().to_vec(), x.into_data()));
        self.run_steps(&mut slots, 0..self.steps.len(), n, &mut |_, _| {})?;
        Ok(take(&mut slots, self.outputs[0]).into_tensor())
    }

    /// The slots of one run, holding the checked input batch.
    pub(super) fn start(&self, x: &Tensor) -> Result<Vec<Option<Act>>> {
        self.input.check_batch(x, self.id_rows)?;
        let mut slots: Vec<Option<Act>> = vec![None; self.slots];
        slots[0] = Some(Act::from_pytorch(x.shape(), x.data()));
        Ok(slots)
    }

    /// Runs `steps` on `n` samples held in `slots`, recycling what each step frees.
    pub(super) fn run_steps(
        &self,
        slots: &mut [Option<Act>],
        steps: std::ops::Range<usize>,
        n: usize,
        on_node: &mut dyn FnMut(usize, std::time::Duration),
    ) -> Result<()> {
        for step in &self.steps[steps] {
            let inputs: Vec<&Act> = step
                .inputs
                .iter()
                .map(|&k| slots[k].as_ref().expect("topological order"))
                .collect();
            let start = std::time::Instant::now();
            let y = step.kernel.run(&step.name, &inputs, n)?;
            on_node(step.node, start.elapsed());
            slots[step.output] = Some(y);
            for &k in &step.release {
                if let Some(a) = slots[k].take() {
                    buffers::recycle(a.into_data());
                }
            }
        }
        Ok(())
    }
}

/// The value in slot `k`, moved out.
pub(super) fn take(slots: &mut [Option<Act>], k: usize) -> Act {
    slots[k].take().expect("outputs are computed")
}

/// What a node does in the plan.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Role {
    Run,
    WithRelu,
    /// Produces its input unchanged (a fused ReLU, Dropout, Identity).
    Alias,
}

/// Which nodes run, which run with a fused ReLU, and which alias their input.
fn fusions(model: &Model) -> Vec<Role> {
    let g = &model.graph;
    let mut roles: Vec<Role> = g
        .nodes
        .iter()
        .map(|n| match n.op {
            Op::Dropout(Dropout { .. }) | Op::Identity => Role::Alias,
            _ => Role::Run,
        })
        .collect();
    // A sign read only by binary layers is their packing (a bit per value >= 0), a fake
    // quantizer read only by integer layers is their quantization as they read: either
    // aliases its input instead of writing a tensor of +-1 or of rounded values.
    for (i, node) in g.nodes.iter().enumerate() {
        let packs: fn(&Model, usize) -> bool = match node.op {
            Op::Sign => super::weights::runs_binary,
            Op::FakeQuant(FakeQuant { .. }) => super::weights::runs_int8,
            _ => continue,
        };
        let readers = g.consumers(&node.name);
        if !g.is_output(&node.name) && !readers.is_empty() && readers.iter().all(|&c| packs(model, c)) {
            roles[i] = Role::Alias;
        }
    }
    for (i, node) in g.nodes.iter().enumerate() {
        if node.op != Op::Relu {
            continue;
        }
        let Some(p) = g.index_of(&node.inputs[0]) else {
            continue;
        };
        let fusable = matches!(
            g.nodes[p].op,
            Op::Conv2d(Conv2d { .. })
                | Op::Linear(Linear { .. })
                | Op::HashedLinear(HashedLinear { .. })
                | Op::Add
        ) && roles[p] == Role::Run
            && g.consumers(&g.nodes[p].name).len() == 1
            && !g.is_output(&g.nodes[p].name);
        if fusable {
            roles[p] = Role::WithRelu;
            roles[i] = Role::Alias;
        }
    }
    roles
}
