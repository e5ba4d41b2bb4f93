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

mod attention;
mod avg_pool2d;
mod batch_norm;
mod channel_shuffle;
mod clip;
mod concat;
mod conv2d;
mod dropout;
mod embedding;
mod fake_quant;
mod hashed_linear;
mod layer_norm;
mod linear;
mod max_pool2d;
mod mean;
mod pad;
mod parameter;
mod reshape;
mod scale;
mod select;
mod slice;
mod softmax;
mod transpose;

pub use axes::{channel_axis, AxisRule, Couple, Source};
pub use hashed::{hashed_index, hashed_weight};
pub use shape::{broadcast, elements, resolve_axis};
pub(crate) use shape::{ceil_window_dropped, pool_out};
pub use shrink::Kept;

pub use attention::Attention;
pub use avg_pool2d::AvgPool2d;
pub use batch_norm::BatchNorm;
pub use channel_shuffle::ChannelShuffle;
pub use clip::Clip;
pub use concat::Concat;
pub use conv2d::Conv2d;
pub use dropout::Dropout;
pub use embedding::Embedding;
pub use fake_quant::FakeQuant;
pub use hashed_linear::HashedLinear;
pub use layer_norm::LayerNorm;
pub use linear::Linear;
pub use max_pool2d::MaxPool2d;
pub use mean::Mean;
pub use pad::Pad;
pub use parameter::Parameter;
pub use reshape::Reshape;
pub use scale::Scale;
pub use select::Select;
pub use slice::Slice;
pub use softmax::Softmax;
pub use transpose::Transpose;

use serde::{Deserialize, Serialize};

/// One operation of a model graph.
///
/// Serialized in `arch.json` as an object tagged by `"op"`, e.g.
/// `{"op": "linear", "in_features": 784, "out_features": 300, "bias": true}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    /// See [`Linear`].
    Linear(Linear),
    /// See [`HashedLinear`].
    HashedLinear(HashedLinear),
    /// See [`Conv2d`].
    Conv2d(Conv2d),
    /// See [`BatchNorm`].
    BatchNorm(BatchNorm),
    Relu,
    Relu6,
    /// Exact (erf) GELU, PyTorch's default.
    Gelu,
    Sigmoid,
    Tanh,
    HardSwish,
    /// See [`MaxPool2d`].
    MaxPool2d(MaxPool2d),
    /// See [`AvgPool2d`].
    AvgPool2d(AvgPool2d),
    /// Mean over H and W: `[C, H, W] -> [C, 1, 1]` (PyTorch's `AdaptiveAvgPool2d(1)`).
    GlobalAvgPool,
    /// `[C, H, W] -> [C * H * W]`, channel-major as in PyTorch.
    Flatten,
    /// Elementwise sum of two or more inputs of equal shape (residual connections).
    Add,
    /// See [`Concat`].
    Concat(Concat),
    /// See [`Dropout`].
    Dropout(Dropout),
    Identity,
    /// See [`LayerNorm`].
    LayerNorm(LayerNorm),
    /// Product of two activations, batched over the leading axes: `[.., m, k] x [.., k, n] ->
    /// [.., m, n]` (leading axes equal; attention scores and their weighted sums).
    #[serde(rename = "matmul")]
    MatMul,
    /// See [`Softmax`].
    Softmax(Softmax),
    /// See [`Reshape`].
    Reshape(Reshape),
    /// See [`Transpose`].
    Transpose(Transpose),
    /// Elementwise product of two inputs, NumPy broadcasting over the per-sample shapes.
    Mul,
    /// Elementwise difference `a - b`, NumPy broadcasting.
    Sub,
    /// Elementwise quotient `a / b`, NumPy broadcasting.
    Div,
    /// See [`Scale`].
    Scale(Scale),
    /// See [`Slice`].
    Slice(Slice),
    /// See [`Select`].
    Select(Select),
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
    /// See [`Clip`].
    Clip(Clip),
    /// See [`Mean`].
    Mean(Mean),
    /// See [`Attention`].
    #[serde(rename = "multihead_attention")]
    Attention(Attention),
    /// See [`Pad`].
    Pad(Pad),
    /// See [`ChannelShuffle`].
    ChannelShuffle(ChannelShuffle),
    /// See [`Parameter`].
    Parameter(Parameter),
    /// See [`Embedding`].
    Embedding(Embedding),
    /// See [`FakeQuant`].
    FakeQuant(FakeQuant),
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

pub(crate) fn is_zero(v: &isize) -> bool {
    *v == 0
}

pub(crate) fn is_zero_f32(v: &f32) -> bool {
    *v == 0.0
}

impl Op {
    /// The op's name as written in `arch.json` and reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Linear(Linear { .. }) => "linear",
            Op::HashedLinear(HashedLinear { .. }) => "hashed_linear",
            Op::Conv2d(Conv2d { .. }) => "conv2d",
            Op::BatchNorm(BatchNorm { .. }) => "batch_norm",
            Op::Relu => "relu",
            Op::Relu6 => "relu6",
            Op::Gelu => "gelu",
            Op::Sigmoid => "sigmoid",
            Op::Tanh => "tanh",
            Op::HardSwish => "hard_swish",
            Op::MaxPool2d(MaxPool2d { .. }) => "max_pool2d",
            Op::AvgPool2d(AvgPool2d { .. }) => "avg_pool2d",
            Op::GlobalAvgPool => "global_avg_pool",
            Op::Flatten => "flatten",
            Op::Add => "add",
            Op::Concat(Concat { .. }) => "concat",
            Op::Dropout(Dropout { .. }) => "dropout",
            Op::Identity => "identity",
            Op::FakeQuant(FakeQuant { .. }) => "fake_quant",
            Op::LayerNorm(LayerNorm { .. }) => "layer_norm",
            Op::MatMul => "matmul",
            Op::Softmax(Softmax { .. }) => "softmax",
            Op::Reshape(Reshape { .. }) => "reshape",
            Op::Transpose(Transpose { .. }) => "transpose",
            Op::Mul => "mul",
            Op::Sub => "sub",
            Op::Div => "div",
            Op::Scale(Scale { .. }) => "scale",
            Op::Slice(Slice { .. }) => "slice",
            Op::Select(Select { .. }) => "select",
            Op::Silu => "silu",
            Op::Sign => "sign",
            Op::Abs => "abs",
            Op::Erf => "erf",
            Op::Clip(Clip { .. }) => "clip",
            Op::Mean(Mean { .. }) => "mean",
            Op::Parameter(Parameter { .. }) => "parameter",
            Op::Embedding(Embedding { .. }) => "embedding",
            Op::Attention(Attention { .. }) => "multihead_attention",
            Op::Pad(Pad { .. }) => "pad",
            Op::ChannelShuffle(ChannelShuffle { .. }) => "channel_shuffle",
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
                | Op::Dropout(Dropout { .. })
                | Op::Identity
                | Op::FakeQuant(FakeQuant { .. })
                | Op::Silu
                | Op::Sign
                | Op::Abs
                | Op::Erf
                | Op::Clip(Clip { .. })
                | Op::Scale(Scale { .. })
        )
    }

    /// Accepted number of inputs: `(min, max)`.
    pub fn arity(&self) -> (usize, usize) {
        match self {
            Op::Add | Op::Concat(Concat { .. }) => (2, usize::MAX),
            Op::MatMul | Op::Mul | Op::Sub | Op::Div => (2, 2),
            Op::Parameter(Parameter { .. }) => (0, 0),
            _ => (1, 1),
        }
    }

    /// The affine map of a [`Op::FakeQuant`] node.
    pub fn act_qparams(&self) -> Option<crate::ir::quant::QParams> {
        match *self {
            Op::FakeQuant(FakeQuant {
                bits,
                symmetric,
                scale,
                zero_point,
            }) => {
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
            Op::Attention(Attention { dim, heads, head_dim }) => head_dim.unwrap_or(dim / heads.max(1)),
            _ => 0,
        }
    }

    /// An attention op's inner width, `heads * head_dim` (0 for other ops).
    pub fn attention_inner(&self) -> usize {
        match *self {
            Op::Attention(Attention { heads, .. }) => heads * self.head_dim(),
            _ => 0,
        }
    }

    /// Channels an op owns inside itself, prunable apart from its inputs and output: an
    /// attention op's heads.
    pub fn internal_channels(&self) -> usize {
        match *self {
            Op::Attention(Attention { heads, .. }) => heads,
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
        matches!(self, Op::Conv2d(Conv2d { in_channels, out_channels, groups, .. })
            if *groups > 1 && groups == in_channels && groups == out_channels)
    }
}
