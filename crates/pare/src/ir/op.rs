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
    /// Concatenation of two or more inputs along the channel axis.
    Concat,
    /// Inverted dropout; the identity in eval mode.
    Dropout {
        p: f64,
    },
    Identity,
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

/// A parameter an op owns, named `{node}.{suffix}` as in a PyTorch `state_dict`.
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

/// How an op's channel axis (axis 0 of the per-sample shape) relates to its inputs' channels.
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
            Op::Concat => "concat",
            Op::Dropout { .. } => "dropout",
            Op::Identity => "identity",
            Op::FakeQuant { .. } => "fake_quant",
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
        )
    }

    /// Accepted number of inputs: `(min, max)`.
    pub fn arity(&self) -> (usize, usize) {
        match self {
            Op::Add | Op::Concat => (2, usize::MAX),
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

    /// How the channel axis maps from inputs to output.
    pub fn channel_rule(&self) -> ChannelRule {
        match self {
            Op::Linear { .. } => ChannelRule::Transform,
            Op::Conv2d { groups, .. } if *groups == 1 => ChannelRule::Transform,
            Op::Conv2d { .. } if self.is_depthwise() => ChannelRule::Passthrough,
            Op::Conv2d { .. } => ChannelRule::Fixed,
            Op::Concat => ChannelRule::Concat,
            Op::Flatten => ChannelRule::Flatten,
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
            } => match *x {
                [n] if n == in_features => Ok(vec![out_features]),
                _ => Err(format!("linear expects input [{in_features}], got {x:?}")),
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
            Op::Concat => {
                let mut out = x.to_vec();
                for s in &inputs[1..] {
                    if s.len() != x.len() || s[1..] != x[1..] {
                        return Err(format!(
                            "concat expects shapes equal but for the channel axis, got {x:?} and {s:?}"
                        ));
                    }
                    out[0] += s[0];
                }
                Ok(out)
            }
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

    /// Multiply-accumulates per sample. Counted for Linear and Conv2d only, the usual convention
    /// (BN folds into the preceding conv at inference; activations and pools are not MACs).
    pub fn macs(&self, output: &[usize]) -> u64 {
        match *self {
            Op::Linear {
                in_features,
                out_features,
                ..
            } => (in_features * out_features) as u64,
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
