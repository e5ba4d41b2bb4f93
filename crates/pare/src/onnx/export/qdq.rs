//! Quantized export in QDQ form: the layers pare runs in int8 written with int8 weights and a
//! DequantizeLinear (one scale per output channel, `axis` 0), so an ONNX runtime runs them on
//! its integer kernels (onnxruntime fuses `DequantizeLinear -> Conv -> QuantizeLinear` into
//! QLinearConv).
//!
//! A Conv2d or Linear is written so when its input is an 8-bit fake quantizer, its weight rows
//! lie on an integer grid ([`weight_grid`]), and its output reaches the next fake quantizer
//! through at most a BatchNorm and a ReLU, each read by nothing else: the pattern a runtime
//! fuses. Such a BatchNorm is folded into the layer on the way; its per-channel factor
//! multiplies the row scales, so the codes stay those pare computes with. The bias becomes
//! int32 codes at the input scale times each row's, as QLinearConv takes it. Every other layer
//! keeps f32 weights.

use std::collections::{HashMap, HashSet};

use crate::ir::op::param_name;
use crate::ir::op::{BatchNorm, Conv2d, FakeQuant, Linear};
use crate::ir::quant::weight_grid;
use crate::ir::{Model, Op};

/// A layer written with quantized weights.
pub(super) struct QLayer {
    /// Row-major codes in the weight's shape.
    pub codes: Vec<i8>,
    /// One scale per output channel (positive).
    pub scales: Vec<f32>,
    /// The bias after any folded BatchNorm (`None`: no bias and no BatchNorm).
    pub bias: Option<Vec<f32>>,
    /// The scale of the fake quantizer the layer reads.
    pub input_scale: f32,
    /// That quantizer's zero point with its codes moved to `0..=255` (its lowest code at 0):
    /// the layer's input as `uint8` codes, for the integer-op form.
    pub input_zero_point: u8,
}

/// The layers of `model` to write in QDQ form, by node name, and the BatchNorms folded into
/// them (indices), which the export skips.
pub(super) fn plan(model: &Model) -> (HashMap<String, QLayer>, HashSet<usize>) {
    let g = &model.graph;
    let mut layers = HashMap::new();
    let mut folded = HashSet::new();
    // The one reader of a node, when it is not also an output of the graph.
    let only_reader = |name: &str| match g.consumers(name).as_slice() {
        [k] if !g.is_output(name) => Some(*k),
        _ => None,
    };
    for (i, node) in g.nodes.iter().enumerate() {
        let rows = match node.op {
            Op::Conv2d(Conv2d { out_channels, .. }) => out_channels,
            Op::Linear(Linear { out_features, .. }) => out_features,
            _ => continue,
        };
        if g.is_tied(&node.name) || g.ties.values().any(|o| o == &node.name) {
            continue;
        }
        let input = node
            .inputs
            .first()
            .and_then(|x| g.node(x))
            .and_then(|x| x.op.act_qparams());
        let Some(input) = input.filter(|q| q.qmax - q.qmin <= 255) else {
            continue;
        };
        // conv -> [BatchNorm] -> [ReLU] -> fake quantizer
        let mut at = i;
        let mut bn = None;
        let mut reaches_quantizer = false;
        while let Some(k) = only_reader(&g.nodes[at].name) {
            match g.nodes[k].op {
                Op::BatchNorm(BatchNorm { .. })
                    if bn.is_none() && at == i && !g.is_tied(&g.nodes[k].name) =>
                {
                    bn = Some(k)
                }
                Op::Relu | Op::Relu6 => {}
                Op::FakeQuant(FakeQuant { .. }) => {
                    reaches_quantizer = true;
                    break;
                }
                _ => break,
            }
            at = k;
        }
        if !reaches_quantizer {
            continue;
        }
        let w = &model.params[&param_name(&node.name, "weight")];
        let width = w.len() / rows;
        let Some((mut codes, mut scales)) = weight_grid(w.data(), rows, width, 127) else {
            continue;
        };
        let mut bias = model
            .params
            .get(&param_name(&node.name, "bias"))
            .map(|b| b.data().to_vec());
        if let Some(k) = bn {
            let Op::BatchNorm(BatchNorm { eps, .. }) = g.nodes[k].op else {
                unreachable!()
            };
            let p = |s: &str| model.params[&param_name(&g.nodes[k].name, s)].data();
            let (gamma, beta, mean, var) = (p("weight"), p("bias"), p("running_mean"), p("running_var"));
            let b0 = bias.unwrap_or_else(|| vec![0.0; rows]);
            let mut folded_bias = vec![0.0; rows];
            for c in 0..rows {
                let f = gamma[c] / (var[c] + eps as f32).sqrt();
                folded_bias[c] = (b0[c] - mean[c]) * f + beta[c];
                scales[c] *= f.abs();
                if f < 0.0 {
                    codes[c * width..(c + 1) * width]
                        .iter_mut()
                        .for_each(|q| *q = -*q);
                }
            }
            bias = Some(folded_bias);
        }
        // A BatchNorm with a zero factor (or overflowing values) leaves the layer in f32.
        let fits = |c: usize, b: f32| (b / (input.scale * scales[c])).abs() < i32::MAX as f32 / 2.0;
        let finite = scales.iter().all(|s| *s > 0.0 && s.is_finite())
            && bias
                .as_ref()
                .is_none_or(|b| b.iter().enumerate().all(|(c, &v)| fits(c, v)));
        if !finite {
            continue;
        }
        folded.extend(bn);
        layers.insert(
            node.name.clone(),
            QLayer {
                codes,
                scales,
                bias,
                input_scale: input.scale,
                input_zero_point: (input.zero_point - input.qmin) as u8,
            },
        );
    }
    (layers, folded)
}
