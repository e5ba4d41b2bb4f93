//! The closed set of operations a pare graph can hold, and the local rules each one states:
//! output shape, parameters (with the axes that index channels), axis mapping and MACs.
//!
//! Shapes here are per sample (no batch axis): `[features]` for vectors, `[tokens, features]` for
//! sequences, `[C, H, W]` for images. Global analyses (shape inference, structured-pruning
//! dependency groups, reports) are closures of these local rules; no pass outside this module
//! special-cases an op's arithmetic.
//!
//! Each op's struct and rules ([`Rules`]) live in its own file (`conv2d.rs`, `attention.rs`,
//! ...; the attribute-free elementwise ops share `elementwise.rs`, residual sums and
//! broadcasting arithmetic `arith.rs`). This file holds the enum, the names, and the one
//! list the dispatch to the rules is generated from (`dispatch!`: [`Op::rules`],
//! [`Op::shrunk`]); `shape.rs` and `axes.rs` hold the arithmetic and the
//! axis-mapping types the rules share, `shrink.rs` what structured pruning keeps.

mod arith;
mod axes;
mod elementwise;
mod flatten;
mod global_avg_pool;
mod hashed;
mod matmul;
mod rules;
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
pub use rules::Rules;
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

impl ParamSpec {
    pub fn new(
        suffix: &'static str,
        shape: Vec<usize>,
        kind: ParamKind,
        out_axis: Option<usize>,
        in_axis: Option<usize>,
    ) -> ParamSpec {
        ParamSpec {
            suffix,
            shape,
            kind,
            out_axis,
            in_axis,
        }
    }
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
            Op::Linear(_) => "linear",
            Op::HashedLinear(_) => "hashed_linear",
            Op::Conv2d(_) => "conv2d",
            Op::BatchNorm(_) => "batch_norm",
            Op::Relu => "relu",
            Op::Relu6 => "relu6",
            Op::Gelu => "gelu",
            Op::Sigmoid => "sigmoid",
            Op::Tanh => "tanh",
            Op::HardSwish => "hard_swish",
            Op::MaxPool2d(_) => "max_pool2d",
            Op::AvgPool2d(_) => "avg_pool2d",
            Op::GlobalAvgPool => "global_avg_pool",
            Op::Flatten => "flatten",
            Op::Add => "add",
            Op::Concat(_) => "concat",
            Op::Dropout(_) => "dropout",
            Op::Identity => "identity",
            Op::FakeQuant(_) => "fake_quant",
            Op::LayerNorm(_) => "layer_norm",
            Op::MatMul => "matmul",
            Op::Softmax(_) => "softmax",
            Op::Reshape(_) => "reshape",
            Op::Transpose(_) => "transpose",
            Op::Mul => "mul",
            Op::Sub => "sub",
            Op::Div => "div",
            Op::Scale(_) => "scale",
            Op::Slice(_) => "slice",
            Op::Select(_) => "select",
            Op::Silu => "silu",
            Op::Sign => "sign",
            Op::Abs => "abs",
            Op::Erf => "erf",
            Op::Clip(_) => "clip",
            Op::Mean(_) => "mean",
            Op::Parameter(_) => "parameter",
            Op::Embedding(_) => "embedding",
            Op::Attention(_) => "multihead_attention",
            Op::Pad(_) => "pad",
            Op::ChannelShuffle(_) => "channel_shuffle",
        }
    }

    /// True for ops applied independently to each element.
    pub fn is_elementwise(&self) -> bool {
        self.rules().is_elementwise()
    }

    /// Accepted number of inputs: `(min, max)`.
    pub fn arity(&self) -> (usize, usize) {
        self.rules().arity()
    }

    /// Output shape for the given input shapes; the error says what was expected.
    pub fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let (lo, hi) = self.arity();
        if inputs.len() < lo || inputs.len() > hi {
            let want = if lo == hi {
                lo.to_string()
            } else {
                format!("at least {lo}")
            };
            return Err(format!(
                "{} takes {want} input(s), got {}",
                self.kind(),
                inputs.len()
            ));
        }
        self.rules().output_shape(inputs)
    }

    /// How the positions of every axis map from the inputs, of these per-sample shapes, to the
    /// output (see [`AxisRule`]). Shapes have passed shape inference.
    pub fn axis_rule(&self, inputs: &[&[usize]]) -> AxisRule {
        let rank = inputs.first().map_or(0, |s| s.len());
        let out_rank = self.output_shape(inputs).map_or(rank, |s| s.len());
        self.rules().axis_rule(inputs, out_rank)
    }

    /// The parameters this op owns, in PyTorch `state_dict` order.
    pub fn params(&self) -> Vec<ParamSpec> {
        self.rules().params()
    }

    /// Number of trained parameters (buffers excluded), as PyTorch's `sum(p.numel())` counts.
    pub fn num_params(&self) -> usize {
        self.params()
            .iter()
            .filter(|s| s.kind != ParamKind::Buffer)
            .map(|s| s.shape.iter().product::<usize>())
            .sum()
    }

    /// Multiply-accumulates per sample, for these input and output shapes (see
    /// [`Rules::macs`]).
    pub fn macs(&self, inputs: &[&[usize]], output: &[usize]) -> u64 {
        self.rules().macs(inputs, output)
    }

    /// The affine map of a [`Op::FakeQuant`] node.
    pub fn act_qparams(&self) -> Option<crate::ir::quant::QParams> {
        match self {
            Op::FakeQuant(q) => Some(q.qparams()),
            _ => None,
        }
    }

    /// The size of an attention op's heads (0 for other ops).
    pub fn head_dim(&self) -> usize {
        match self {
            Op::Attention(a) => a.head_dim(),
            _ => 0,
        }
    }

    /// An attention op's inner width, `heads * head_dim` (0 for other ops).
    pub fn attention_inner(&self) -> usize {
        match self {
            Op::Attention(a) => a.inner(),
            _ => 0,
        }
    }

    /// Channels an op owns inside itself, prunable apart from its inputs and output: an
    /// attention op's heads.
    pub fn internal_channels(&self) -> usize {
        match self {
            Op::Attention(a) => a.heads,
            _ => 0,
        }
    }

    /// For an attention op keeping the heads `keep`: the rows of `in_proj_weight` (and
    /// `in_proj_bias`) and the columns of `out_proj.weight` that hold them, in order.
    pub fn head_slices(&self, keep: &[usize]) -> (Vec<usize>, Vec<usize>) {
        match self {
            Op::Attention(a) => a.head_slices(keep),
            _ => (Vec::new(), Vec::new()),
        }
    }

    /// True for a convolution whose every group holds one input and one output channel.
    pub fn is_depthwise(&self) -> bool {
        matches!(self, Op::Conv2d(c) if c.is_depthwise())
    }
}

/// Generates [`Op::rules`] and [`Op::shrunk`] from one list: the ops with attributes (each a
/// struct in its own file implementing [`Rules`]) and, for those without, the shared rules
/// they use. Both matches are exhaustive, so a new op that is not listed does not compile.
macro_rules! dispatch {
    (with: [$($op:ident),* $(,)?], without: [$($unit:ident => $rules:expr),* $(,)?] $(,)?) => {
        impl Op {
            /// The rules this op states in its own file.
            pub fn rules(&self) -> &dyn Rules {
                match self {
                    $(Op::$op(o) => o,)*
                    $(Op::$unit => &$rules,)*
                }
            }

            /// The op once slices of its axes (or its heads) are removed, as `kept` says (see
            /// [`Rules::shrunk`]).
            pub fn shrunk(&self, kept: &Kept) -> Op {
                match self {
                    $(Op::$op(o) => Op::$op(o.shrunk(kept)),)*
                    $(Op::$unit => Op::$unit,)*
                }
            }
        }
    };
}

dispatch! {
    with: [
        Linear, HashedLinear, Conv2d, BatchNorm, MaxPool2d, AvgPool2d, Concat, Dropout, FakeQuant,
        LayerNorm, Softmax, Reshape, Transpose, Scale, Slice, Select, Clip, Mean, Parameter,
        Embedding, Attention, Pad, ChannelShuffle,
    ],
    without: [
        Relu => elementwise::Elementwise,
        Relu6 => elementwise::Elementwise,
        Gelu => elementwise::Elementwise,
        Sigmoid => elementwise::Elementwise,
        Tanh => elementwise::Elementwise,
        HardSwish => elementwise::Elementwise,
        Identity => elementwise::Elementwise,
        Silu => elementwise::Elementwise,
        Sign => elementwise::Elementwise,
        Abs => elementwise::Elementwise,
        Erf => elementwise::Elementwise,
        GlobalAvgPool => global_avg_pool::GlobalAvgPool,
        Flatten => flatten::Flatten,
        MatMul => matmul::MatMul,
        Add => arith::Sum,
        Mul => arith::Broadcast("mul"),
        Sub => arith::Broadcast("sub"),
        Div => arith::Broadcast("div"),
    ],
}
