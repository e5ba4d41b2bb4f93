//! Inference rewrites that keep a model's eval-mode function and make it cheaper to run.
//!
//! [`fold_batch_norm`]: a BatchNorm whose only input is a Linear or Conv2d read by nothing
//! else (neither of them tied to other layers) is folded into that layer's weights, `w' = w * s`, `b' = (b - mean) * s + beta` with
//! `s = gamma / sqrt(var + eps)`, and removed. The result is the deployable form: no BN pass
//! over the activations, which on the CPU costs about as much as a small convolution.

use crate::error::Result;
use crate::ir::op::{BatchNorm, Conv2d, Linear};
use crate::ir::{rewrite, Model, Op, Tensor};

/// Folds every foldable BatchNorm (eval-mode semantics: running statistics).
pub fn fold_batch_norm(model: &Model) -> Result<Model> {
    let mut graph = model.graph.clone();
    let mut params = model.params.clone();
    let mut i = 0;
    while i < graph.nodes.len() {
        let node = graph.nodes[i].clone();
        let Op::BatchNorm(BatchNorm { eps, .. }) = node.op else {
            i += 1;
            continue;
        };
        let producer = node.inputs[0].clone();
        let Some(pi) = graph.index_of(&producer) else {
            i += 1;
            continue;
        };
        // A tied layer's weights serve other nodes, whose BatchNorms may differ: left unfolded.
        let foldable = matches!(
            graph.nodes[pi].op,
            Op::Linear(Linear { .. }) | Op::Conv2d(Conv2d { .. })
        ) && !graph.is_tied(&producer)
            && !graph.is_tied(&node.name)
            && graph.consumers(&producer).len() == 1
            && !graph.is_output(&producer);
        if !foldable {
            i += 1;
            continue;
        }
        let p = |s: &str| params[&format!("{}.{s}", node.name)].data().to_vec();
        let (gamma, beta, mean, var) = (p("weight"), p("bias"), p("running_mean"), p("running_var"));
        let scale: Vec<f32> = gamma
            .iter()
            .zip(&var)
            .map(|(g, v)| g / (v + eps as f32).sqrt())
            .collect();
        let wname = format!("{producer}.weight");
        // Integer codes and sign bits keep their form: the factor joins their row scales.
        params.get_mut(&wname).expect("weighted op").scale_rows(&scale);
        let bname = format!("{producer}.bias");
        let old_b = params
            .get(&bname)
            .map(|t| t.data().to_vec())
            .unwrap_or_else(|| vec![0.0; scale.len()]);
        let b: Vec<f32> = (0..scale.len())
            .map(|c| (old_b[c] - mean[c]) * scale[c] + beta[c])
            .collect();
        params.insert(bname, Tensor::from_vec(vec![scale.len()], b));
        let mut with_bias = graph.nodes[pi].clone();
        match &mut with_bias.op {
            Op::Linear(Linear { bias, .. }) | Op::Conv2d(Conv2d { bias, .. }) => *bias = true,
            _ => unreachable!("checked above"),
        }
        graph.replace(&producer, vec![with_bias], &producer)?;
        for name in rewrite::params_of(&graph, &node.name) {
            params.remove(&name);
        }
        // Readers of the BN now read the layer it was folded into.
        graph.bypass(&node.name)?;
    }
    Model::new(graph, params)
}
