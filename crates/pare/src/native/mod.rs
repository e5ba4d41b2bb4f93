//! pare's own CPU inference engine: the deployable forward pass that latency reports time.
//!
//! Why not the training engine: burn's flex backend runs a convolution as a generic im2col with
//! per-call overheads that do not shrink with the channel count, so a model with half its
//! channels removed ran only 1.39x faster for 1.90x fewer MACs. Here every convolution of a batch
//! is one matrix product with the spatial positions of all samples as the long side
//! (`[N*H*W, K] x [K, C_out]`, `gemm` crate, both cores), activations live channel-major
//! (`[C, N, H, W]`, so a channel concat is a plain append and a 1x1 convolution needs no copy),
//! and a ReLU that only follows a Conv2d/Linear/Add is fused into it. Cost then scales with the
//! MACs, which is what structured pruning promises.
//!
//! A model is compiled once ([`compile`]) into a [`Plan`]: one kernel per node with its
//! parameters (`kernel.rs`), the buffer slot of every value and the step after which it is
//! freed (`plan.rs`); running the plan dispatches on the kernels, nothing is looked up by name.
//! Bit-packed (`binary.rs`) and integer (`int8/`) layers are further forms of a layer's weight,
//! chosen from the model's values where they compute what the f32 kernels compute
//! (`weights.rs`).
//!
//! Semantics are eval mode: BatchNorm uses running statistics, Dropout is the identity, FakeQuant
//! rounds like [`crate::ir::QParams::fake`]. `tests/native.rs` checks every zoo model against
//! [`crate::exec::infer`].

mod act;
mod binary;
mod buffers;
mod conv;
mod exits;
mod int8;
mod kernel;
mod matmul;
mod nd;
mod plan;
mod pool;
mod sparse;
mod tensor;
mod weights;

pub use binary::{dot_reference, BinaryMatrix, PopcountPath};
pub use exits::{compile_exits, ExitPlan, ExitRun};
pub use int8::{int8_dot_reference, ActCodes, Int8Conv, Int8Matrix, Int8Path, MAX_WEIGHT_CODE};
pub use plan::{compile, Plan};

use crate::error::{Error, Result};
use crate::ir::{Model, Tensor};

/// A ReLU applied inside the producing op's output loop.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Fused {
    None,
    Relu,
}

/// Eval-mode forward pass of `model` on a batch `x` (`[N, ...input shape]`, normalized): the
/// logits `[N, classes]` (or the output node's value in PyTorch layout). Compiles the model
/// for this one call; keep a [`Plan`] to run many batches.
pub fn infer(model: &Model, x: &Tensor) -> Result<Tensor> {
    compile(model)?.run(x)
}

/// Accuracy of `model` on `set` on this engine (eval mode, batches of 500): the fast figure
/// for searches that evaluate many candidate models (rank budgets, sensitivity).
pub fn accuracy(model: &Model, set: &dyn crate::data::Dataset) -> Result<f64> {
    plan_accuracy(&compile(model)?, model, set, 500)
}

/// Accuracy of `model` compiled into `plan` on `set`, in batches of `batch_size`.
pub fn plan_accuracy(
    plan: &Plan,
    model: &Model,
    set: &dyn crate::data::Dataset,
    batch_size: usize,
) -> Result<f64> {
    let (mut right, mut seen) = (0usize, 0usize);
    for b in crate::data::sequential(set, batch_size, &model.graph.input.normalize) {
        let y = plan.run(&b.x)?;
        right += crate::train::loss_and_correct(&y, &b.labels).1;
        seen += b.labels.len();
    }
    Ok(right as f64 / seen.max(1) as f64)
}

/// A per-sample axis of the op as an axis of the full `[N, ..]` shape.
fn axis_of(axis: isize, full: &[usize]) -> Result<usize> {
    crate::ir::op::resolve_axis(axis, full.len() - 1)
        .map(|a| a + 1)
        .map_err(Error::Config)
}
