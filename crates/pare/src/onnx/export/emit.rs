//! One pare op as ONNX nodes: the op-by-op part of the export, each op its standard ONNX op
//! or a short chain of them, the rest of the writer's work (inputs, initializers, the batch
//! axis) staying in `mod.rs`.

use super::{attr_float, attr_int, attr_ints, f32_tensor, i64_tensor, usizes, Ctx, Writer};
use crate::error::{Error, Result};
use crate::ir::op::{ceil_window_dropped, hashed_weight, Op};
use crate::ir::op::{
    Attention, AvgPool2d, BatchNorm, ChannelShuffle, Clip, Concat, Conv2d, Dropout, Embedding, FakeQuant,
    HashedLinear, LayerNorm, Linear, MaxPool2d, Mean, Pad, Parameter, Reshape, Scale, Select, Slice, Softmax,
    Transpose,
};
use crate::onnx::proto::AttributeProto;

impl Writer {
    pub(super) fn emit(&mut self, ctx: &Ctx, op: &Op) -> Result<()> {
        let (name, x) = (ctx.name, ctx.ins.first().map(String::as_str).unwrap_or(""));
        let sub = |s: &str| format!("{name}/{s}");
        match op {
            Op::Linear(Linear { .. }) if self.integer_layer(ctx) => self.integer_linear(ctx),
            Op::Conv2d(conv) if self.integer_layer(ctx) => self.integer_conv(ctx, conv),
            Op::Linear(Linear { bias, .. }) => {
                let (w, b) = self.weight_and_bias(ctx, *bias);
                self.linear(ctx, &w, b.as_deref());
            }
            Op::HashedLinear(HashedLinear {
                in_features,
                out_features,
                seed,
                bias,
                ..
            }) => {
                // ONNX has no hashed layer: the virtual weight is written out dense.
                let dense = hashed_weight(*seed, *out_features, *in_features, ctx.param("weight").data());
                let w = self.init(f32_tensor(
                    &ctx.param_name("weight"),
                    &[*out_features, *in_features],
                    &dense,
                ));
                let b = bias.then(|| self.param(ctx, "bias"));
                self.linear(ctx, &w, b.as_deref());
            }
            Op::Conv2d(conv) => {
                let (w, b) = self.weight_and_bias(ctx, conv.bias);
                let mut ins = vec![x.to_string(), w];
                ins.extend(b);
                let ins: Vec<&str> = ins.iter().map(String::as_str).collect();
                self.node("Conv", name, &ins, name, conv_attrs(conv));
            }
            Op::BatchNorm(BatchNorm { eps, momentum, .. }) => {
                let ps: Vec<String> = ["weight", "bias", "running_mean", "running_var"]
                    .iter()
                    .map(|s| self.param(ctx, s))
                    .collect();
                let attrs = vec![
                    attr_float("epsilon", *eps as f32),
                    attr_float("momentum", 1.0 - *momentum as f32),
                ];
                self.node(
                    "BatchNormalization",
                    name,
                    &[x, &ps[0], &ps[1], &ps[2], &ps[3]],
                    name,
                    attrs,
                );
            }
            Op::LayerNorm(LayerNorm { eps, .. }) => {
                let (w, b) = (self.param(ctx, "weight"), self.param(ctx, "bias"));
                let attrs = vec![attr_int("axis", -1), attr_float("epsilon", *eps as f32)];
                self.node("LayerNormalization", name, &[x, &w, &b], name, attrs);
            }
            Op::Relu => self.node("Relu", name, &[x], name, vec![]),
            Op::Sigmoid => self.node("Sigmoid", name, &[x], name, vec![]),
            Op::Tanh => self.node("Tanh", name, &[x], name, vec![]),
            Op::HardSwish => self.node("HardSwish", name, &[x], name, vec![]),
            Op::Abs => self.node("Abs", name, &[x], name, vec![]),
            Op::Erf => self.node("Erf", name, &[x], name, vec![]),
            Op::Dropout(Dropout { .. }) | Op::Identity => self.node("Identity", name, &[x], name, vec![]),
            Op::Relu6 => self.clip(name, x, 0.0, 6.0),
            Op::Clip(Clip { min, max }) => self.clip(name, x, *min, *max),
            Op::Gelu => {
                // 0.5 x (1 + erf(x / sqrt 2)): PyTorch's exact GELU as its exporter writes it.
                let (r2, one, half) = (
                    self.scalar(&sub("sqrt2"), std::f32::consts::SQRT_2),
                    self.scalar(&sub("one"), 1.0),
                    self.scalar(&sub("half"), 0.5),
                );
                let (d, e, a, m) = (sub("div"), sub("erf"), sub("add"), sub("mul"));
                self.node("Div", &d, &[x, &r2], &d, vec![]);
                self.node("Erf", &e, &[&d], &e, vec![]);
                self.node("Add", &a, &[&e, &one], &a, vec![]);
                self.node("Mul", &m, &[x, &a], &m, vec![]);
                self.node("Mul", name, &[&m, &half], name, vec![]);
            }
            Op::Silu => {
                let s = sub("sigmoid");
                self.node("Sigmoid", &s, &[x], &s, vec![]);
                self.node("Mul", name, &[x, &s], name, vec![]);
            }
            Op::Sign => {
                // pare's sign is +1 at 0 (BNN's), ONNX's Sign 0 there.
                let (zero, pos, neg) = (
                    self.scalar(&sub("zero"), 0.0),
                    self.scalar(&sub("pos"), 1.0),
                    self.scalar(&sub("neg"), -1.0),
                );
                let ge = sub("ge");
                self.node("GreaterOrEqual", &ge, &[x, &zero], &ge, vec![]);
                self.node("Where", name, &[&ge, &pos, &neg], name, vec![]);
            }
            Op::Scale(Scale { factor }) => {
                let f = self.scalar(&sub("factor"), *factor as f32);
                self.node("Mul", name, &[x, &f], name, vec![]);
            }
            Op::MaxPool2d(MaxPool2d {
                kernel_size,
                stride,
                padding,
                ceil_mode,
            }) => {
                let attrs = window_attrs(ctx, kernel_size, stride, padding, *ceil_mode)?;
                self.node("MaxPool", name, &[x], name, attrs);
            }
            Op::AvgPool2d(AvgPool2d {
                kernel_size,
                stride,
                padding,
                count_include_pad,
                ceil_mode,
            }) => {
                let mut attrs = window_attrs(ctx, kernel_size, stride, padding, *ceil_mode)?;
                attrs.push(attr_int("count_include_pad", *count_include_pad as i64));
                self.node("AveragePool", name, &[x], name, attrs);
            }
            Op::GlobalAvgPool => self.node("GlobalAveragePool", name, &[x], name, vec![]),
            Op::Flatten => self.node("Flatten", name, &[x], name, vec![attr_int("axis", 1)]),
            Op::Add => {
                let ins: Vec<&str> = ctx.ins.iter().map(String::as_str).collect();
                let op = if ins.len() == 2 { "Add" } else { "Sum" };
                self.node(op, name, &ins, name, vec![]);
            }
            Op::Mul => self.broadcasting(ctx, "Mul"),
            Op::Sub => self.broadcasting(ctx, "Sub"),
            Op::Div => self.broadcasting(ctx, "Div"),
            Op::MatMul => self.node("MatMul", name, &[x, &ctx.ins[1]], name, vec![]),
            Op::Concat(Concat { axis }) => {
                let a = ctx.axis(*axis, ctx.out_shape.len())?;
                let ins: Vec<&str> = ctx.ins.iter().map(String::as_str).collect();
                self.node("Concat", name, &ins, name, vec![attr_int("axis", a)]);
            }
            Op::Softmax(Softmax { axis }) => {
                let a = ctx.axis(*axis, ctx.out_shape.len())?;
                self.node("Softmax", name, &[x], name, vec![attr_int("axis", a)]);
            }
            Op::Reshape(Reshape { shape }) => self.reshape(name, x, shape, name),
            Op::Transpose(Transpose { perm }) => self.transpose(name, x, perm, name),
            Op::Slice(Slice { axis, start, end }) => {
                let a = ctx.axis(*axis, ctx.in_shapes[0].len())?;
                let (s, e, ax) = (
                    self.ints(&sub("starts"), &[*start as i64]),
                    self.ints(&sub("ends"), &[*end as i64]),
                    self.ints(&sub("axes"), &[a]),
                );
                self.node("Slice", name, &[x, &s, &e, &ax], name, vec![]);
            }
            Op::Select(Select { axis, index }) => {
                let a = ctx.axis(*axis, ctx.in_shapes[0].len())?;
                let i = self.init(i64_tensor(&sub("index"), &[], &[*index as i64]));
                self.node("Gather", name, &[x, &i], name, vec![attr_int("axis", a)]);
            }
            Op::Mean(Mean { axes, keepdim }) => {
                let rank = ctx.in_shapes[0].len();
                let axes = axes
                    .iter()
                    .map(|&a| ctx.axis(a, rank))
                    .collect::<Result<Vec<_>>>()?;
                let attrs = vec![attr_ints("axes", &axes), attr_int("keepdims", *keepdim as i64)];
                self.node("ReduceMean", name, &[x], name, attrs);
            }
            Op::Pad(Pad { pads, value }) => {
                let mut p = vec![0i64];
                p.extend(pads.iter().map(|q| q[0] as i64));
                p.push(0);
                p.extend(pads.iter().map(|q| q[1] as i64));
                let p = self.ints(&sub("pads"), &p);
                if *value == 0.0 {
                    self.node("Pad", name, &[x, &p], name, vec![]);
                } else {
                    let v = self.scalar(&sub("value"), *value);
                    self.node("Pad", name, &[x, &p, &v], name, vec![]);
                }
            }
            Op::ChannelShuffle(ChannelShuffle { groups }) => {
                let [c, h, w] = ctx.in_shapes[0] else {
                    return Err(Error::graph(name, "channel_shuffle reads [C, H, W]"));
                };
                let (g, s, t) = (sub("groups"), sub("shuffle"), sub("shuffle_shape"));
                self.reshape(&g, x, &[*groups, c / groups, *h, *w], &g);
                self.transpose(&s, &g, &[1, 0, 2, 3], &s);
                self.reshape(&t, &s, &[*c, *h, *w], name);
            }
            Op::Parameter(Parameter { shape }) => {
                // Stored [1, ..shape]; expanded to the batch so it joins batched values anywhere.
                let p = self.param(ctx, "");
                let batch = self.batch();
                let rest = self.ints(&sub("shape"), &usizes(shape));
                let full = sub("expand_shape");
                self.node(
                    "Concat",
                    &full,
                    &[&batch, &rest],
                    &full,
                    vec![attr_int("axis", 0)],
                );
                let out = sub("expanded");
                self.node("Expand", name, &[&p, &full], &out, vec![]);
            }
            Op::Embedding(Embedding { .. }) => {
                let w = self.param(ctx, "weight");
                self.node("Gather", name, &[&w, x], name, vec![attr_int("axis", 0)]);
            }
            Op::Attention(Attention { dim, heads, .. }) => self.attention(ctx, *dim, *heads, op.head_dim()),
            Op::FakeQuant(FakeQuant { .. }) => self.fake_quant(ctx, op)?,
        }
        Ok(())
    }
}

/// A convolution's attributes (ONNX's Conv and ConvInteger take the same).
pub(super) fn conv_attrs(conv: &Conv2d) -> Vec<AttributeProto> {
    let Conv2d {
        kernel_size,
        stride,
        padding,
        dilation,
        groups,
        ..
    } = conv;
    vec![
        attr_ints("kernel_shape", &usizes(kernel_size)),
        attr_ints("strides", &usizes(stride)),
        attr_ints("pads", &usizes(&[padding[0], padding[1], padding[0], padding[1]])),
        attr_ints("dilations", &usizes(dilation)),
        attr_int("group", *groups as i64),
    ]
}

/// A pool's window attributes (kernel, strides, both-sided pads, ceil mode), once its ceil
/// mode is one every runtime sizes alike.
fn window_attrs(
    ctx: &Ctx,
    kernel: &[usize; 2],
    stride: &[usize; 2],
    padding: &[usize; 2],
    ceil_mode: bool,
) -> Result<Vec<AttributeProto>> {
    portable_ceil(ctx, ceil_mode, kernel, stride, padding)?;
    Ok(vec![
        attr_ints("kernel_shape", &usizes(kernel)),
        attr_ints("strides", &usizes(stride)),
        attr_ints("pads", &usizes(&[padding[0], padding[1], padding[0], padding[1]])),
        attr_int("ceil_mode", ceil_mode as i64),
    ])
}

/// A ceil-mode pool whose last window would start in the right padding has no portable ONNX
/// form: onnxruntime sizes its output one window larger than pare, PyTorch and tract do.
fn portable_ceil(ctx: &Ctx, ceil: bool, k: &[usize; 2], s: &[usize; 2], p: &[usize; 2]) -> Result<()> {
    let hw = &ctx.in_shapes[0][1..];
    if ceil && (0..2).any(|a| ceil_window_dropped(hw[a], k[a], s[a], p[a])) {
        return Err(Error::graph(
            ctx.name,
            format!(
                "ceil_mode on input {hw:?} (kernel {k:?}, stride {s:?}, padding {p:?}): the last window would start in the padding, which ONNX runtimes count and pare drops"
            ),
        ));
    }
    Ok(())
}
