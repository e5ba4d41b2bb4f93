//! The closed set of operations a pare graph can hold, and the local rules each one states:
//! output shape, parameters (with the axes that index channels), axis mapping and MACs.
//!
//! Shapes here are per sample (no batch axis): `[features]` for vectors, `[tokens, features]` for
//! sequences, `[C, H, W]` for images. Global analyses (shape inference, structured-pruning
//! dependency groups, reports) are closures of these local rules; no pass outside this module
//! special-cases an op's arithmetic. This file holds the enum and what identifies an op;
//! `shape.rs` its output shapes, `params.rs` its parameters and MACs, `axes.rs` its axis
//! mapping, `shrink.rs` its attributes after structured pruning.

mod axes;
mod hashed;
mod params;
mod shape;
mod shrink;

pub use axes::{channel_axis, AxisRule, Couple, Source};
pub use hashed::{hashed_index, hashed_weight};
pub use shape::{broadcast, elements, resolve_axis};
pub(crate) use shape::{ceil_window_dropped, pool_out};
pub use shrink::Kept;

use serde::{Deserialize, Serialize};

/// One operation of a model graph.
///
/// Serialized in `arch.json` as an object tagged by `"op"`, e.g.
/// `{"op": "linear", "in_features": 784, "out_features": 300, "bias": true}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    /// `y = x W^T + b`, weight stored `[out, in]` as in PyTorch.
    Linear {
        in_features: usize,
        out_features: usize,
        bias: bool,
    },
    /// HashedNets (Chen et al. 2015): a Linear whose virtual `[out, in]` weight reads a vector
    /// of `buckets` shared values through a hash of its position, with a sign hash:
    /// `W[i, j] = sign(i, j) * weight[bucket(i, j)]` (see [`hashed_index`]). Only the buckets
    /// (and the bias) are parameters; `seed` picks the hash, so the layer is the same after
    /// saving and loading.
    HashedLinear {
        in_features: usize,
        out_features: usize,
        buckets: usize,
        seed: u64,
        bias: bool,
    },
    /// 2-D convolution, weight `[out, in / groups, kh, kw]`. `groups == in == out` is depthwise.
    Conv2d {
        in_channels: usize,
        out_channels: usize,
        kernel_size: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        dilation: [usize; 2],
        groups: usize,
        bias: bool,
    },
    /// Batch normalization over axis 0 of the per-sample shape (1-D on `[C]`, 2-D on `[C, H, W]`),
    /// with PyTorch semantics: running variance updated with the unbiased batch variance.
    BatchNorm {
        num_features: usize,
        eps: f64,
        momentum: f64,
    },
    Relu,
    Relu6,
    /// Exact (erf) GELU, PyTorch's default.
    Gelu,
    Sigmoid,
    Tanh,
    HardSwish,
    /// Max pooling. Padding must be at most half the kernel. Floor mode (PyTorch's default), or
    /// `ceil_mode`: a last, partial window where floor mode leaves input uncovered, if it
    /// starts inside the input or its left padding (PyTorch's and ONNX's rule).
    MaxPool2d {
        kernel_size: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        ceil_mode: bool,
    },
    /// Average pooling; overlapping windows (e.g. 3x3 stride 2) are allowed. A window's
    /// divisor counts its padding with `count_include_pad`, never the part of a ceil-mode
    /// window past the padded image (PyTorch's rule).
    AvgPool2d {
        kernel_size: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        count_include_pad: bool,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        ceil_mode: bool,
    },
    /// Mean over H and W: `[C, H, W] -> [C, 1, 1]` (PyTorch's `AdaptiveAvgPool2d(1)`).
    GlobalAvgPool,
    /// `[C, H, W] -> [C * H * W]`, channel-major as in PyTorch.
    Flatten,
    /// Elementwise sum of two or more inputs of equal shape (residual connections).
    Add,
    /// Concatenation of two or more inputs along `axis` of the per-sample shape (0, the channel
    /// axis of images, by default; negative counts from the end).
    Concat {
        #[serde(default, skip_serializing_if = "is_zero")]
        axis: isize,
    },
    /// Inverted dropout; the identity in eval mode.
    Dropout {
        p: f64,
    },
    Identity,
    /// Layer normalization over the last axis (PyTorch's `nn.LayerNorm(dim)`): weight and bias
    /// `[dim]`, biased variance.
    LayerNorm {
        dim: usize,
        eps: f64,
    },
    /// Product of two activations, batched over the leading axes: `[.., m, k] x [.., k, n] ->
    /// [.., m, n]` (leading axes equal; attention scores and their weighted sums).
    #[serde(rename = "matmul")]
    MatMul,
    /// Softmax along `axis` (negative counts from the end).
    Softmax {
        axis: isize,
    },
    /// The same elements in row-major order under another per-sample shape.
    Reshape {
        shape: Vec<usize>,
    },
    /// Permutation of the per-sample axes: output axis `i` is input axis `perm[i]`.
    Transpose {
        perm: Vec<usize>,
    },
    /// Elementwise product of two inputs, NumPy broadcasting over the per-sample shapes.
    Mul,
    /// Elementwise difference `a - b`, NumPy broadcasting.
    Sub,
    /// Elementwise quotient `a / b`, NumPy broadcasting.
    Div,
    /// `x * factor` (e.g. attention's `1 / sqrt(head_dim)`).
    Scale {
        factor: f64,
    },
    /// Positions `start..end` of `axis`.
    Slice {
        axis: isize,
        start: usize,
        end: usize,
    },
    /// Position `index` of `axis`, the axis removed (e.g. a ViT's class token).
    Select {
        axis: isize,
        index: usize,
    },
    /// `x * sigmoid(x)`.
    Silu,
    /// Binary activation of BNN / XNOR-Net: `+1` where `x >= 0`, `-1` elsewhere. Backward is the
    /// straight-through estimator cancelled outside `[-1, 1]` (the gradient of hardtanh), as in
    /// Hubara et al. 2016.
    Sign,
    /// `|x|` (XNOR-Net's input scale `K` averages it over channels).
    Abs,
    /// The Gauss error function `erf(x)`, elementwise (ONNX's Erf where it is not part of an
    /// exact GELU).
    Erf,
    /// `min(max(x, min), max)`.
    Clip {
        min: f32,
        max: f32,
    },
    /// Mean over `axes`, kept as size 1 with `keepdim`, removed otherwise.
    Mean {
        axes: Vec<isize>,
        #[serde(default)]
        keepdim: bool,
    },
    /// Multi-head self-attention over a `[tokens, dim]` sequence, PyTorch's
    /// `nn.MultiheadAttention(dim, heads, batch_first=True)` called as `att(x, x, x)`: one input
    /// projection `in_proj_weight` `[3 * dim, dim]` (query, key, value rows in that order) with
    /// `in_proj_bias`, scaled dot-product softmax per head of `dim / heads` features, and the
    /// output projection `out_proj.weight` `[dim, dim]` with `out_proj.bias`.
    ///
    /// `head_dim` is `dim / heads` unless given: a model whose heads were pruned keeps fewer
    /// heads of the same size, so its inner width `heads * head_dim` is below `dim` and the
    /// projections are `[3 * inner, dim]` and `[dim, inner]`.
    #[serde(rename = "multihead_attention")]
    Attention {
        dim: usize,
        heads: usize,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        head_dim: Option<usize>,
    },
    /// Constant padding: `pads[i] = [before, after]` for each per-sample axis `i` (every axis
    /// listed), new positions set to `value` (0 unless given; a finite number, so the lowest
    /// f32 stands for the -inf a max pool pads with).
    Pad {
        pads: Vec<[usize; 2]>,
        #[serde(default, skip_serializing_if = "is_zero_f32")]
        value: f32,
    },
    /// ShuffleNet's channel shuffle on `[C, H, W]`: the channels seen as `[groups, C / groups]`
    /// and transposed, so the next grouped convolution mixes every group (Zhang et al. 2018).
    ChannelShuffle {
        groups: usize,
    },
    /// A learned tensor of per-sample shape `shape`, the same for every sample (a class token,
    /// a position embedding). Its parameter `weight` is stored `[1, ..shape]`, as a PyTorch
    /// `nn.Parameter` broadcast over the batch is. Takes no input.
    Parameter {
        shape: Vec<usize>,
    },
    /// A lookup table (PyTorch's `nn.Embedding`): each integer id of the input becomes row `id`
    /// of `weight` `[num_embeddings, embedding_dim]`, so `[T]` ids give `[T, embedding_dim]`.
    /// Reads the graph's input, which must then be of dtype `index`.
    Embedding {
        num_embeddings: usize,
        embedding_dim: usize,
    },
    /// Simulated quantization of the activations flowing through (see [`super::quant`]):
    /// `y = dequantize(quantize(x))` with a calibrated scale and zero point. The backward pass
    /// is the clipped straight-through estimator: gradient 1 inside the representable range,
    /// 0 where the value saturates.
    FakeQuant {
        bits: u32,
        symmetric: bool,
        scale: f32,
        zero_point: i32,
    },
}

/// What a parameter is for: trained weights and biases, or buffers updated outside the optimizer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamKind {
    Weight,
    Bias,
    /// Running statistics: saved and loaded, never given to the optimizer.
    Buffer,
}

/// The full name of a node's parameter: `{node}.{suffix}` as in a PyTorch `state_dict`, or the
/// node's own name for an empty suffix (a bare `nn.Parameter` such as a class token).
pub fn param_name(node: &str, suffix: &str) -> String {
    if suffix.is_empty() {
        node.to_string()
    } else {
        format!("{node}.{suffix}")
    }
}

/// A parameter an op owns, named by [`param_name`] as in a PyTorch `state_dict`.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamSpec {
    pub suffix: &'static str,
    pub shape: Vec<usize>,
    pub kind: ParamKind,
    /// Axis indexed by the op's output channels (what structured pruning slices when it
    /// removes an output channel of this op or, for pass-through ops, a channel flowing through).
    pub out_axis: Option<usize>,
    /// Axis indexed by the op's input channels (sliced when a producer upstream loses a channel).
    pub in_axis: Option<usize>,
}

fn is_zero(v: &isize) -> bool {
    *v == 0
}

fn is_zero_f32(v: &f32) -> bool {
    *v == 0.0
}

impl Op {
    /// The op's name as written in `arch.json` and reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Linear { .. } => "linear",
            Op::HashedLinear { .. } => "hashed_linear",
            Op::Conv2d { .. } => "conv2d",
            Op::BatchNorm { .. } => "batch_norm",
            Op::Relu => "relu",
            Op::Relu6 => "relu6",
            Op::Gelu => "gelu",
            Op::Sigmoid => "sigmoid",
            Op::Tanh => "tanh",
            Op::HardSwish => "hard_swish",
            Op::MaxPool2d { .. } => "max_pool2d",
            Op::AvgPool2d { .. } => "avg_pool2d",
            Op::GlobalAvgPool => "global_avg_pool",
            Op::Flatten => "flatten",
            Op::Add => "add",
            Op::Concat { .. } => "concat",
            Op::Dropout { .. } => "dropout",
            Op::Identity => "identity",
            Op::FakeQuant { .. } => "fake_quant",
            Op::LayerNorm { .. } => "layer_norm",
            Op::MatMul => "matmul",
            Op::Softmax { .. } => "softmax",
            Op::Reshape { .. } => "reshape",
            Op::Transpose { .. } => "transpose",
            Op::Mul => "mul",
            Op::Sub => "sub",
            Op::Div => "div",
            Op::Scale { .. } => "scale",
            Op::Slice { .. } => "slice",
            Op::Select { .. } => "select",
            Op::Silu => "silu",
            Op::Sign => "sign",
            Op::Abs => "abs",
            Op::Erf => "erf",
            Op::Clip { .. } => "clip",
            Op::Mean { .. } => "mean",
            Op::Parameter { .. } => "parameter",
            Op::Embedding { .. } => "embedding",
            Op::Attention { .. } => "multihead_attention",
            Op::Pad { .. } => "pad",
            Op::ChannelShuffle { .. } => "channel_shuffle",
        }
    }

    /// True for ops applied independently to each element.
    pub fn is_elementwise(&self) -> bool {
        matches!(
            self,
            Op::Relu
                | Op::Relu6
                | Op::Gelu
                | Op::Sigmoid
                | Op::Tanh
                | Op::HardSwish
                | Op::Dropout { .. }
                | Op::Identity
                | Op::FakeQuant { .. }
                | Op::Silu
                | Op::Sign
                | Op::Abs
                | Op::Erf
                | Op::Clip { .. }
                | Op::Scale { .. }
        )
    }

    /// Accepted number of inputs: `(min, max)`.
    pub fn arity(&self) -> (usize, usize) {
        match self {
            Op::Add | Op::Concat { .. } => (2, usize::MAX),
            Op::MatMul | Op::Mul | Op::Sub | Op::Div => (2, 2),
            Op::Parameter { .. } => (0, 0),
            _ => (1, 1),
        }
    }

    /// The affine map of a [`Op::FakeQuant`] node.
    pub fn act_qparams(&self) -> Option<crate::ir::quant::QParams> {
        match *self {
            Op::FakeQuant {
                bits,
                symmetric,
                scale,
                zero_point,
            } => {
                let (qmin, qmax) = crate::ir::quant::Scheme { bits, symmetric }.levels();
                Some(crate::ir::quant::QParams {
                    scale,
                    zero_point,
                    qmin,
                    qmax,
                })
            }
            _ => None,
        }
    }

    /// The size of an attention op's heads (0 for other ops).
    pub fn head_dim(&self) -> usize {
        match *self {
            Op::Attention { dim, heads, head_dim } => head_dim.unwrap_or(dim / heads.max(1)),
            _ => 0,
        }
    }

    /// An attention op's inner width, `heads * head_dim` (0 for other ops).
    pub fn attention_inner(&self) -> usize {
        match *self {
            Op::Attention { heads, .. } => heads * self.head_dim(),
            _ => 0,
        }
    }

    /// Channels an op owns inside itself, prunable apart from its inputs and output: an
    /// attention op's heads.
    pub fn internal_channels(&self) -> usize {
        match *self {
            Op::Attention { heads, .. } => heads,
            _ => 0,
        }
    }

    /// For an attention op keeping the heads `keep`: the rows of `in_proj_weight` (and
    /// `in_proj_bias`) and the columns of `out_proj.weight` that hold them, in order.
    pub fn head_slices(&self, keep: &[usize]) -> (Vec<usize>, Vec<usize>) {
        let (hd, inner) = (self.head_dim(), self.attention_inner());
        let cols: Vec<usize> = keep.iter().flat_map(|&h| h * hd..(h + 1) * hd).collect();
        let rows = (0..3)
            .flat_map(|k| cols.iter().map(move |c| k * inner + c))
            .collect();
        (rows, cols)
    }

    /// True for a convolution whose every group holds one input and one output channel.
    pub fn is_depthwise(&self) -> bool {
        matches!(self, Op::Conv2d { in_channels, out_channels, groups, .. }
            if *groups > 1 && groups == in_channels && groups == out_channels)
    }
}
