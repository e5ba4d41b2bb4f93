//! What each op owns and costs: its parameters (PyTorch `state_dict` names and layouts, with
//! the axes that index channels) and its multiply-accumulates.

use super::{Op, ParamKind, ParamSpec};
use crate::ir::op::{Attention, BatchNorm, Conv2d, Embedding, HashedLinear, LayerNorm, Linear, Parameter};

impl Op {
    /// The parameters this op owns, in PyTorch `state_dict` order.
    pub fn params(&self) -> Vec<ParamSpec> {
        let p = |suffix, shape: Vec<usize>, kind, out_axis, in_axis| ParamSpec {
            suffix,
            shape,
            kind,
            out_axis,
            in_axis,
        };
        match *self {
            Op::Linear(Linear {
                in_features,
                out_features,
                bias,
            }) => {
                let mut v = vec![p(
                    "weight",
                    vec![out_features, in_features],
                    ParamKind::Weight,
                    Some(0),
                    Some(1),
                )];
                if bias {
                    v.push(p("bias", vec![out_features], ParamKind::Bias, Some(0), None));
                }
                v
            }
            // The buckets index no channel: the layer is not sliced by structured pruning.
            Op::HashedLinear(HashedLinear {
                out_features,
                buckets,
                bias,
                ..
            }) => {
                let mut v = vec![p("weight", vec![buckets], ParamKind::Weight, None, None)];
                if bias {
                    v.push(p("bias", vec![out_features], ParamKind::Bias, None, None));
                }
                v
            }
            Op::Conv2d(Conv2d {
                in_channels,
                out_channels,
                kernel_size,
                groups,
                bias,
                ..
            }) => {
                // Axis 1 holds a group's input slots (all inputs for groups = 1); a depthwise
                // kernel has one input channel per filter: nothing to slice there.
                let in_axis = (!self.is_depthwise()).then_some(1);
                let mut v = vec![p(
                    "weight",
                    vec![
                        out_channels,
                        in_channels / groups.max(1),
                        kernel_size[0],
                        kernel_size[1],
                    ],
                    ParamKind::Weight,
                    Some(0),
                    in_axis,
                )];
                if bias {
                    v.push(p("bias", vec![out_channels], ParamKind::Bias, Some(0), None));
                }
                v
            }
            Op::LayerNorm(LayerNorm { dim, .. }) => vec![
                p("weight", vec![dim], ParamKind::Weight, None, None),
                p("bias", vec![dim], ParamKind::Bias, None, None),
            ],
            Op::Embedding(Embedding {
                num_embeddings,
                embedding_dim,
            }) => vec![p(
                "weight",
                vec![num_embeddings, embedding_dim],
                ParamKind::Weight,
                None,
                None,
            )],
            Op::Parameter(Parameter { ref shape }) => {
                let mut stored = vec![1];
                stored.extend_from_slice(shape);
                vec![p("", stored, ParamKind::Weight, None, None)]
            }
            Op::Attention(Attention { dim, .. }) => {
                let inner = self.attention_inner();
                vec![
                    p(
                        "in_proj_weight",
                        vec![3 * inner, dim],
                        ParamKind::Weight,
                        None,
                        None,
                    ),
                    p("in_proj_bias", vec![3 * inner], ParamKind::Bias, None, None),
                    p("out_proj.weight", vec![dim, inner], ParamKind::Weight, None, None),
                    p("out_proj.bias", vec![dim], ParamKind::Bias, None, None),
                ]
            }
            Op::BatchNorm(BatchNorm { num_features, .. }) => vec![
                p("weight", vec![num_features], ParamKind::Weight, Some(0), None),
                p("bias", vec![num_features], ParamKind::Bias, Some(0), None),
                p(
                    "running_mean",
                    vec![num_features],
                    ParamKind::Buffer,
                    Some(0),
                    None,
                ),
                p(
                    "running_var",
                    vec![num_features],
                    ParamKind::Buffer,
                    Some(0),
                    None,
                ),
            ],
            _ => Vec::new(),
        }
    }

    /// Number of trained parameters (buffers excluded), as PyTorch's `sum(p.numel())` counts.
    pub fn num_params(&self) -> usize {
        self.params()
            .iter()
            .filter(|s| s.kind != ParamKind::Buffer)
            .map(|s| s.shape.iter().product::<usize>())
            .sum()
    }

    /// Multiply-accumulates per sample. Counted for Linear, Conv2d and MatMul only, the usual convention
    /// (BN folds into the preceding conv at inference; activations and pools are not MACs).
    pub fn macs(&self, inputs: &[&[usize]], output: &[usize]) -> u64 {
        match *self {
            Op::Linear(Linear {
                in_features,
                out_features,
                ..
            })
            | Op::HashedLinear(HashedLinear {
                in_features,
                out_features,
                ..
            }) => {
                // One dot product of length `in_features` per output element.
                let positions: usize = output.iter().product::<usize>() / out_features.max(1);
                (positions * in_features * out_features) as u64
            }
            Op::Attention(Attention { dim, .. }) => {
                // Projections (3 in, 1 out) plus scores and their weighted sum.
                let (t, inner) = (output.first().copied().unwrap_or(0), self.attention_inner());
                (4 * t * dim * inner + 2 * t * t * inner) as u64
            }
            Op::MatMul => {
                let k = inputs.first().and_then(|x| x.last()).copied().unwrap_or(0);
                (output.iter().product::<usize>() * k) as u64
            }
            Op::Conv2d(Conv2d {
                in_channels,
                kernel_size,
                groups,
                ..
            }) => {
                let out_elems: usize = output.iter().product();
                (out_elems * (in_channels / groups.max(1)) * kernel_size[0] * kernel_size[1]) as u64
            }
            _ => 0,
        }
    }
}
