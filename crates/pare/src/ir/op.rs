//! The closed set of operations a pare graph can hold, and the local rules each one states:
//! output shape, parameters (with the axes that index channels), channel mapping and MACs.
//!
//! Shapes here are per sample (no batch axis): `[features]` for vectors, `[C, H, W]` for images.
//! Global analyses (shape inference, structured-pruning dependency groups, reports) are closures
//! of these local rules; no pass outside this file special-cases an op's arithmetic.

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
    /// Max pooling, floor mode (PyTorch default). Padding must be at most half the kernel.
    MaxPool2d {
        kernel_size: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    },
    /// Average pooling, floor mode; overlapping windows (e.g. 3x3 stride 2) are allowed.
    AvgPool2d {
        kernel_size: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        count_include_pad: bool,
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
    /// Zero padding: `pads[i] = [before, after]` for each per-sample axis `i` (every axis
    /// listed).
    Pad {
        pads: Vec<[usize; 2]>,
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

/// How an op's channel axis ([`channel_axis`]) relates to its inputs' channels.
///
/// Structured pruning closes over these rules to find which parameter slices must be removed
/// together; see `ARCHITECTURE.md`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelRule {
    /// The op consumes its input channels through a weight and creates new output channels
    /// (Linear, dense or grouped-but-not-depthwise Conv2d). A boundary between groups.
    Transform,
    /// Output channel `c` is channel `c` of every input (elementwise ops, BN, pools, depthwise
    /// conv, Add). All inputs' channels are coupled with the output's.
    Passthrough,
    /// Output channels are the inputs' channels one after the other.
    Concat,
    /// Input channel `c` of `[C, H, W]` becomes output features `c*H*W .. (c+1)*H*W`.
    Flatten,
    /// Grouped convolution that is not depthwise: channels can only be removed a whole group at
    /// a time, which pare does not do yet, so its channels are fixed.
    Fixed,
    /// The op mixes or moves positions of its inputs' axes (normalization over features,
    /// products of activations, reshapes, broadcasting): every channel it reads or makes is
    /// fixed.
    Opaque,
}

/// The channel axis of a per-sample value of rank `rank`, the axis structured pruning removes
/// slices of: the features of a vector `[F]`, of each token of a sequence `[tokens, F]`, and the
/// channels of an image `[C, H, W]`. Other ranks have none (their values are left whole).
pub fn channel_axis(rank: usize) -> Option<usize> {
    match rank {
        1 | 3 => Some(0),
        2 => Some(1),
        _ => None,
    }
}

fn is_zero(v: &isize) -> bool {
    *v == 0
}

/// `axis` of a rank-`rank` shape as an index (negative counts from the end).
pub fn resolve_axis(axis: isize, rank: usize) -> Result<usize, String> {
    let r = rank as isize;
    let a = if axis < 0 { axis + r } else { axis };
    if (0..r).contains(&a) {
        Ok(a as usize)
    } else {
        Err(format!("axis {axis} is out of range for a rank-{rank} input"))
    }
}

/// NumPy broadcasting of two shapes (aligned at the last axis; sizes equal or 1).
pub fn broadcast(a: &[usize], b: &[usize]) -> Result<Vec<usize>, String> {
    let n = a.len().max(b.len());
    let at = |s: &[usize], i: usize| if i + s.len() < n { 1 } else { s[i + s.len() - n] };
    (0..n)
        .map(|i| match (at(a, i), at(b, i)) {
            (x, y) if x == y || y == 1 => Ok(x),
            (1, y) => Ok(y),
            _ => Err(format!("shapes {a:?} and {b:?} do not broadcast")),
        })
        .collect()
}

fn conv_out(size: usize, k: usize, s: usize, p: usize, d: usize) -> Option<usize> {
    let span = d * (k - 1) + 1;
    let padded = size + 2 * p;
    (padded >= span && s > 0).then(|| (padded - span) / s + 1)
}

impl Op {
    /// The op's name as written in `arch.json` and reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Linear { .. } => "linear",
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
            Op::Clip { .. } => "clip",
            Op::Mean { .. } => "mean",
            Op::Parameter { .. } => "parameter",
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
    pub fn act_qparams(&self) -> Option<super::quant::QParams> {
        match *self {
            Op::FakeQuant {
                bits,
                symmetric,
                scale,
                zero_point,
            } => {
                let (qmin, qmax) = super::quant::Scheme { bits, symmetric }.levels();
                Some(super::quant::QParams {
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
            Op::Linear {
                in_features,
                out_features,
                bias,
            } => {
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
            Op::Conv2d {
                in_channels,
                out_channels,
                kernel_size,
                groups,
                bias,
                ..
            } => {
                // A depthwise kernel has one input channel per filter: nothing to slice on axis 1.
                let in_axis = (groups == 1).then_some(1);
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
            Op::LayerNorm { dim, .. } => vec![
                p("weight", vec![dim], ParamKind::Weight, None, None),
                p("bias", vec![dim], ParamKind::Bias, None, None),
            ],
            Op::Parameter { ref shape } => {
                let mut stored = vec![1];
                stored.extend_from_slice(shape);
                vec![p("", stored, ParamKind::Weight, None, None)]
            }
            Op::Attention { dim, .. } => {
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
            Op::BatchNorm { num_features, .. } => vec![
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

    /// How the channel axis (see [`channel_axis`]) maps from the inputs, of these per-sample
    /// shapes, to the output.
    pub fn channel_rule(&self, inputs: &[&[usize]]) -> ChannelRule {
        let rank = inputs.first().map_or(0, |x| x.len());
        let Some(ca) = channel_axis(rank) else {
            return ChannelRule::Opaque;
        };
        if inputs.iter().any(|x| channel_axis(x.len()).is_none()) {
            return ChannelRule::Opaque;
        }
        // Whether an axis attribute names the channel axis (None: out of range).
        let is_channel = |a: isize| resolve_axis(a, rank).ok().map(|a| a == ca);
        match self {
            // A Linear consumes the last axis: channels for vectors and token sequences.
            Op::Linear { .. } if rank <= 2 => ChannelRule::Transform,
            Op::Linear { .. } => ChannelRule::Opaque,
            Op::Conv2d { groups, .. } if *groups == 1 => ChannelRule::Transform,
            Op::Conv2d { .. } if self.is_depthwise() => ChannelRule::Passthrough,
            Op::Conv2d { .. } => ChannelRule::Fixed,
            Op::Concat { axis } => match is_channel(*axis) {
                Some(true) => ChannelRule::Concat,
                Some(false) => ChannelRule::Passthrough,
                None => ChannelRule::Opaque,
            },
            Op::Flatten if rank == 3 => ChannelRule::Flatten,
            Op::Flatten if rank == 1 => ChannelRule::Passthrough,
            // Ops along another axis than the channels keep each channel apart.
            // Padding other axes than the channels adds positions, not channels.
            Op::Pad { pads } => match pads.get(ca) {
                Some([0, 0]) => ChannelRule::Passthrough,
                _ => ChannelRule::Opaque,
            },
            Op::Softmax { axis } | Op::Slice { axis, .. } => match is_channel(*axis) {
                Some(false) => ChannelRule::Passthrough,
                _ => ChannelRule::Opaque,
            },
            // A token of a sequence: its features are the output's channels. (Selecting a row
            // of an image would leave [C, W], whose channel axis is another.)
            Op::Select { axis, .. } if rank == 2 && is_channel(*axis) == Some(false) => {
                ChannelRule::Passthrough
            }
            Op::Select { .. } => ChannelRule::Opaque,
            Op::Mean { axes, keepdim } => {
                let reduces_channels = axes.iter().any(|a| is_channel(*a) != Some(false));
                // Without keepdim, a [T, D] token mean is [D]: the channels stay the last axis.
                if reduces_channels || (rank == 3 && !keepdim && axes.len() != 2) {
                    ChannelRule::Opaque
                } else {
                    ChannelRule::Passthrough
                }
            }
            Op::Flatten
            | Op::LayerNorm { .. }
            | Op::MatMul
            | Op::Reshape { .. }
            | Op::Transpose { .. }
            | Op::Mul
            | Op::Sub
            | Op::Div
            | Op::Parameter { .. }
            | Op::ChannelShuffle { .. }
            | Op::Attention { .. } => ChannelRule::Opaque,
            _ => ChannelRule::Passthrough,
        }
    }

    /// Output shape for the given input shapes; the error says what was expected.
    pub fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let (lo, hi) = self.arity();
        if inputs.len() < lo || inputs.len() > hi {
            return Err(format!(
                "{} takes {} input(s), got {}",
                self.kind(),
                if lo == hi {
                    lo.to_string()
                } else {
                    format!("at least {lo}")
                },
                inputs.len()
            ));
        }
        if let Op::Parameter { shape } = self {
            if shape.is_empty() || shape.contains(&0) {
                return Err(format!(
                    "parameter shape {shape:?} must be non-empty and positive"
                ));
            }
            return Ok(shape.clone());
        }
        let x = inputs[0];
        let image = |what: &str| -> Result<(usize, usize, usize), String> {
            match *x {
                [c, h, w] => Ok((c, h, w)),
                _ => Err(format!(
                    "{what} expects a [C, H, W] input, got {x:?} (add a flatten/reshape or fix the graph)"
                )),
            }
        };
        match *self {
            Op::Linear {
                in_features,
                out_features,
                ..
            } => match x.split_last() {
                Some((&n, lead)) if n == in_features => {
                    let mut out = lead.to_vec();
                    out.push(out_features);
                    Ok(out)
                }
                _ => Err(format!(
                    "linear expects an input whose last axis is {in_features}, got {x:?}"
                )),
            },
            Op::Conv2d {
                in_channels,
                out_channels,
                kernel_size,
                stride,
                padding,
                dilation,
                groups,
                ..
            } => {
                let (c, h, w) = image("conv2d")?;
                if c != in_channels {
                    return Err(format!("conv2d expects {in_channels} input channels, got {c}"));
                }
                if groups == 0 || in_channels % groups != 0 || out_channels % groups != 0 {
                    return Err(format!(
                        "conv2d groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}"
                    ));
                }
                if kernel_size.contains(&0) || stride.contains(&0) || dilation.contains(&0) {
                    return Err("conv2d kernel_size, stride and dilation must be positive".into());
                }
                let oh = conv_out(h, kernel_size[0], stride[0], padding[0], dilation[0]);
                let ow = conv_out(w, kernel_size[1], stride[1], padding[1], dilation[1]);
                match (oh, ow) {
                    (Some(oh), Some(ow)) => Ok(vec![out_channels, oh, ow]),
                    _ => Err(format!(
                        "conv2d kernel {kernel_size:?} does not fit input {h}x{w} with padding {padding:?}"
                    )),
                }
            }
            Op::BatchNorm { num_features, .. } => {
                if x.first() != Some(&num_features) || !(x.len() == 1 || x.len() == 3) {
                    return Err(format!(
                        "batch_norm expects [{num_features}] or [{num_features}, H, W], got {x:?}"
                    ));
                }
                Ok(x.to_vec())
            }
            Op::MaxPool2d {
                kernel_size,
                stride,
                padding,
            }
            | Op::AvgPool2d {
                kernel_size,
                stride,
                padding,
                ..
            } => {
                let (c, h, w) = image(self.kind())?;
                if kernel_size.contains(&0) || stride.contains(&0) {
                    return Err(format!(
                        "{}: kernel_size and stride must be positive",
                        self.kind()
                    ));
                }
                if padding[0] * 2 > kernel_size[0] || padding[1] * 2 > kernel_size[1] {
                    return Err(format!(
                        "{}: padding {padding:?} must be at most half of kernel {kernel_size:?}",
                        self.kind()
                    ));
                }
                let oh = conv_out(h, kernel_size[0], stride[0], padding[0], 1);
                let ow = conv_out(w, kernel_size[1], stride[1], padding[1], 1);
                match (oh, ow) {
                    (Some(oh), Some(ow)) => Ok(vec![c, oh, ow]),
                    _ => Err(format!(
                        "{}: kernel {kernel_size:?} does not fit input {h}x{w}",
                        self.kind()
                    )),
                }
            }
            Op::GlobalAvgPool => {
                let (c, _, _) = image("global_avg_pool")?;
                Ok(vec![c, 1, 1])
            }
            Op::Flatten => Ok(vec![x.iter().product()]),
            Op::Add => {
                if let Some(bad) = inputs.iter().find(|s| **s != x) {
                    return Err(format!("add expects equal input shapes, got {x:?} and {bad:?}"));
                }
                Ok(x.to_vec())
            }
            Op::Concat { axis } => {
                let a = resolve_axis(axis, x.len())?;
                let mut out = x.to_vec();
                for s in &inputs[1..] {
                    if s.len() != x.len() || s[..a] != x[..a] || s[a + 1..] != x[a + 1..] {
                        return Err(format!(
                            "concat expects shapes equal but for axis {a}, got {x:?} and {s:?}"
                        ));
                    }
                    out[a] += s[a];
                }
                Ok(out)
            }
            Op::LayerNorm { dim, eps } => {
                if x.last() != Some(&dim) {
                    return Err(format!("layer_norm expects a last axis of {dim}, got {x:?}"));
                }
                if !(eps > 0.0 && eps.is_finite()) {
                    return Err(format!("layer_norm eps={eps} must be positive and finite"));
                }
                Ok(x.to_vec())
            }
            Op::MatMul => {
                let y = inputs[1];
                let r = x.len();
                if r < 2 || y.len() != r || x[..r - 2] != y[..r - 2] || x[r - 1] != y[r - 2] {
                    return Err(format!(
                        "matmul expects [.., m, k] and [.., k, n] with equal leading axes, got {x:?} and {y:?}"
                    ));
                }
                let mut out = x.to_vec();
                out[r - 1] = y[r - 1];
                Ok(out)
            }
            Op::Softmax { axis } => {
                resolve_axis(axis, x.len())?;
                Ok(x.to_vec())
            }
            Op::Reshape { ref shape } => {
                let (have, want) = (x.iter().product::<usize>(), shape.iter().product::<usize>());
                if shape.is_empty() || shape.contains(&0) || have != want {
                    return Err(format!(
                        "reshape of {x:?} ({have} elements) to {shape:?} ({want} elements)"
                    ));
                }
                Ok(shape.clone())
            }
            Op::Transpose { ref perm } => {
                let mut seen = vec![false; x.len()];
                let valid = perm.len() == x.len()
                    && perm
                        .iter()
                        .all(|&p| p < x.len() && !std::mem::replace(&mut seen[p], true));
                if !valid {
                    return Err(format!(
                        "transpose perm {perm:?} is not a permutation of the {} axes of {x:?}",
                        x.len()
                    ));
                }
                Ok(perm.iter().map(|&p| x[p]).collect())
            }
            Op::Mul | Op::Sub | Op::Div => {
                broadcast(x, inputs[1]).map_err(|e| format!("{}: {e}", self.kind()))
            }
            Op::Scale { factor } => {
                if !factor.is_finite() {
                    return Err(format!("scale factor={factor} must be finite"));
                }
                Ok(x.to_vec())
            }
            Op::Slice { axis, start, end } => {
                let a = resolve_axis(axis, x.len())?;
                if start >= end || end > x[a] {
                    return Err(format!(
                        "slice {start}..{end} is empty or outside axis {a} of {x:?}"
                    ));
                }
                let mut out = x.to_vec();
                out[a] = end - start;
                Ok(out)
            }
            Op::Select { axis, index } => {
                let a = resolve_axis(axis, x.len())?;
                if x.len() < 2 || index >= x[a] {
                    return Err(format!(
                        "select of position {index} of axis {a} needs a rank-2 or larger input with that position, got {x:?}"
                    ));
                }
                let mut out = x.to_vec();
                out.remove(a);
                Ok(out)
            }
            Op::Clip { min, max } => {
                if !(min.is_finite() && max.is_finite() && min <= max) {
                    return Err(format!("clip needs finite min <= max, got {min}..{max}"));
                }
                Ok(x.to_vec())
            }
            Op::Mean { ref axes, keepdim } => {
                let mut drop = vec![false; x.len()];
                for &a in axes {
                    let a = resolve_axis(a, x.len())?;
                    if std::mem::replace(&mut drop[a], true) {
                        return Err(format!("mean names axis {a} twice"));
                    }
                }
                if axes.is_empty() || (!keepdim && drop.iter().all(|d| *d)) {
                    return Err(format!(
                        "mean over {axes:?} of {x:?} must name an axis and keep at least one"
                    ));
                }
                Ok(x.iter()
                    .zip(&drop)
                    .filter_map(|(&d, &gone)| match (gone, keepdim) {
                        (false, _) => Some(d),
                        (true, true) => Some(1),
                        (true, false) => None,
                    })
                    .collect())
            }
            Op::Silu => Ok(x.to_vec()),
            Op::Pad { ref pads } => {
                if pads.len() != x.len() {
                    return Err(format!(
                        "pad needs one [before, after] pair per axis of {x:?}, got {}",
                        pads.len()
                    ));
                }
                x.iter()
                    .zip(pads)
                    .map(|(&d, &[a, b])| {
                        d.checked_add(a)
                            .and_then(|v| v.checked_add(b))
                            .ok_or_else(|| format!("pad {pads:?} overflows the shape {x:?}"))
                    })
                    .collect()
            }
            Op::ChannelShuffle { groups } => match *x {
                [c, _, _] if groups > 0 && c % groups == 0 => Ok(x.to_vec()),
                _ => Err(format!(
                    "channel_shuffle with {groups} groups needs a [C, H, W] input with C a multiple of them, got {x:?}"
                )),
            },
            Op::Attention { dim, heads, head_dim } => {
                let fits = match head_dim {
                    None => dim % heads.max(1) == 0,
                    Some(hd) => hd > 0,
                };
                if heads == 0 || dim == 0 || !fits {
                    return Err(format!(
                        "multihead_attention: heads={heads} must divide dim={dim} (both positive), or head_dim be given"
                    ));
                }
                match *x {
                    [_, d] if d == dim => Ok(x.to_vec()),
                    _ => Err(format!(
                        "multihead_attention expects a [tokens, {dim}] input, got {x:?}"
                    )),
                }
            }
            Op::Parameter { .. } => unreachable!("handled before reading inputs"),
            Op::Dropout { p } => {
                if !(0.0..1.0).contains(&p) {
                    return Err(format!("dropout p must be in [0, 1), got {p}"));
                }
                Ok(x.to_vec())
            }
            Op::Relu
            | Op::Relu6
            | Op::Gelu
            | Op::Sigmoid
            | Op::Tanh
            | Op::HardSwish
            | Op::Identity
            | Op::FakeQuant { .. } => {
                if let Op::FakeQuant { bits, scale, .. } = *self {
                    if !super::quant::BITS.contains(&bits) {
                        return Err(format!("fake_quant bits={bits} must be in 2..=16"));
                    }
                    if !(scale > 0.0 && scale.is_finite()) {
                        return Err(format!("fake_quant scale={scale} must be positive and finite"));
                    }
                }
                Ok(x.to_vec())
            }
        }
    }

    /// Multiply-accumulates per sample. Counted for Linear, Conv2d and MatMul only, the usual convention
    /// (BN folds into the preceding conv at inference; activations and pools are not MACs).
    pub fn macs(&self, inputs: &[&[usize]], output: &[usize]) -> u64 {
        match *self {
            Op::Linear {
                in_features,
                out_features,
                ..
            } => {
                // One dot product of length `in_features` per output element.
                let positions: usize = output.iter().product::<usize>() / out_features.max(1);
                (positions * in_features * out_features) as u64
            }
            Op::Attention { dim, .. } => {
                // Projections (3 in, 1 out) plus scores and their weighted sum.
                let (t, inner) = (output.first().copied().unwrap_or(0), self.attention_inner());
                (4 * t * dim * inner + 2 * t * t * inner) as u64
            }
            Op::MatMul => {
                let k = inputs.first().and_then(|x| x.last()).copied().unwrap_or(0);
                (output.iter().product::<usize>() * k) as u64
            }
            Op::Conv2d {
                in_channels,
                kernel_size,
                groups,
                ..
            } => {
                let out_elems: usize = output.iter().product();
                (out_elems * (in_channels / groups.max(1)) * kernel_size[0] * kernel_size[1]) as u64
            }
            _ => 0,
        }
    }
}
