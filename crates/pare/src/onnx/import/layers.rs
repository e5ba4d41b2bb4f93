//! The ops with weights (Conv, Gemm, MatMul, BatchNormalization, LayerNormalization) and the
//! 2-D windows (pooling), whose weights become the pare layer's named parameters.

use super::ops::*;
use super::{Importer, Val};
use crate::ir::graph::MAX_ELEMENTS;
use crate::ir::op::{ceil_window_dropped, Op};
use crate::ir::op::{AvgPool2d, BatchNorm, Clip, Conv2d, LayerNorm, Linear, MaxPool2d, Pad, Reshape, Scale};
use crate::onnx::consts::Const;
use crate::onnx::proto::NodeProto;

/// Explicit pads `[begin.., end..]` for 2-D windows, from `pads` or `auto_pad`.
pub(super) fn window_pads(
    n: &NodeProto,
    hw: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
) -> R<[[usize; 2]; 2]> {
    let auto = attr_s(n, "auto_pad").unwrap_or_default();
    match auto.as_str() {
        "" | "NOTSET" => {
            let p = attr_ints(n, "pads").unwrap_or(vec![0; 4]);
            if p.len() != 4 || p.iter().any(|&v| !(0..=MAX_ELEMENTS as i64).contains(&v)) {
                return Err(format!(
                    "pads {p:?}: expected four non-negative values of at most {MAX_ELEMENTS}"
                ));
            }
            Ok([[p[0] as usize, p[2] as usize], [p[1] as usize, p[3] as usize]])
        }
        "VALID" => Ok([[0, 0], [0, 0]]),
        "SAME_UPPER" | "SAME_LOWER" => {
            let mut out = [[0; 2]; 2];
            for a in 0..2 {
                let o = hw[a].div_ceil(stride[a]);
                let total = ((o - 1) * stride[a] + (kernel[a] - 1) * dilation[a] + 1).saturating_sub(hw[a]);
                let small = total / 2;
                out[a] = if auto == "SAME_UPPER" {
                    [small, total - small]
                } else {
                    [total - small, small]
                };
            }
            Ok(out)
        }
        other => Err(format!("auto_pad = '{other}' is not an ONNX padding mode")),
    }
}

/// Two window sizes (kernel, strides, dilations) from an attribute: positive, and at most the
/// element cap, so that window arithmetic on them cannot overflow.
pub(super) fn pair(v: Option<Vec<i64>>, default: usize, what: &str) -> R<[usize; 2]> {
    let fits = |x: &i64| (1..=MAX_ELEMENTS as i64).contains(x);
    match v.as_deref() {
        None => Ok([default; 2]),
        Some([a, b]) if fits(a) && fits(b) => Ok([*a as usize, *b as usize]),
        Some(other) => Err(format!(
            "{what} {other:?}: pare takes two positive values of at most {MAX_ELEMENTS} (2-D windows)"
        )),
    }
}

/// Asymmetric padding (or any, with `explicit`) as a Pad node of `value` before the window
/// op; the padding left to the op is returned.
pub(super) fn split_pads(
    imp: &mut Importer,
    n: &NodeProto,
    x: &mut (String, Vec<usize>),
    pads: [[usize; 2]; 2],
    value: f32,
    explicit: bool,
) -> R<[usize; 2]> {
    if !explicit && pads[0][0] == pads[0][1] && pads[1][0] == pads[1][1] {
        return Ok([pads[0][0], pads[1][0]]);
    }
    let v = unary(
        imp,
        n,
        &x.0,
        Op::Pad(Pad {
            pads: vec![[0, 0], pads[0], pads[1]],
            value,
        }),
    )?;
    if let Val::Dyn { name, shape } = v {
        *x = (name, shape);
    }
    Ok([0, 0])
}

pub(super) fn conv(imp: &mut Importer, n: &NodeProto, ins: &[Option<Val>]) -> R<Val> {
    let mut x = dyn_in(ins, 0)?;
    // A 1-D convolution is the 2-D one over [C, 1, L] with [out, in / groups, 1, k] filters.
    if let [_, _] = x.1[..] {
        let weight = const_in(ins, 1)?;
        let [o, cg, k] = weight.shape()[..] else {
            return Err(format!(
                "weight of shape {:?}: expected [out, in / groups, k] for a 1-D convolution",
                weight.shape()
            ));
        };
        let mut lifted = ins.to_vec();
        lifted[1] = Some(Val::Const(weight.reshaped(vec![o, cg, 1, k])));
        return through_2d(imp, n, lifted, conv);
    }
    let [c, h, w] = x.1[..] else {
        return Err(format!(
            "reads a value of per-sample shape {:?}; pare imports 1-D and 2-D convolutions",
            x.1
        ));
    };
    let weight = const_in(ins, 1)?;
    let [o, cg, kh, kw] = weight.shape()[..] else {
        return Err(format!(
            "weight of shape {:?}: expected [out, in / groups, kh, kw]",
            weight.shape()
        ));
    };
    let groups = attr_i(n, "group", 1).max(1) as usize;
    if cg * groups != c || o % groups != 0 {
        return Err(format!(
            "weight {:?} with group = {groups} does not fit {c} input channels",
            weight.shape()
        ));
    }
    let stride = pair(attr_ints(n, "strides"), 1, "strides")?;
    let dilation = pair(attr_ints(n, "dilations"), 1, "dilations")?;
    let pads = window_pads(n, [h, w], [kh, kw], stride, dilation)?;
    let padding = split_pads(imp, n, &mut x, pads, 0.0, false)?;
    let mut params = vec![("weight", tensor(weight.shape(), floats(weight, "weight")?))];
    let bias = opt_const(ins, 2)?;
    if let Some(b) = bias {
        if b.len() != o {
            return Err(format!("bias has {} values for {o} filters", b.len()));
        }
        params.push(("bias", tensor(&[o], floats(b, "bias")?)));
    }
    let op = Op::Conv2d(Conv2d {
        in_channels: c,
        out_channels: o,
        kernel_size: [kh, kw],
        stride,
        padding,
        dilation,
        groups,
        bias: bias.is_some(),
    });
    let name = imp.layer_name(n, n.input.get(1).map(String::as_str));
    imp.add(name, op, &[&x.0], params)
}

pub(super) fn gemm(imp: &mut Importer, n: &NodeProto, ins: &[Option<Val>]) -> R<Val> {
    let x = dyn_in(ins, 0)?;
    if attr_i(n, "transA", 0) != 0 {
        return Err("transA = 1 would transpose the batch axis away".into());
    }
    let b = const_in(ins, 1)?;
    let [r, k] = b.shape()[..] else {
        return Err(format!("B of shape {:?}: expected a matrix", b.shape()));
    };
    let alpha = attr_f(n, "alpha", 1.0);
    let mut w = Const::F32 {
        shape: vec![r, k],
        data: floats(b, "B")?.iter().map(|v| v * alpha).collect(),
    };
    if attr_i(n, "transB", 0) == 0 {
        w = w.transposed(&[1, 0]);
    }
    let (out, inp) = (w.shape()[0], w.shape()[1]);
    let mut params = vec![("weight", tensor(&[out, inp], w.floats().unwrap_or_default()))];
    let c = opt_const(ins, 2)?;
    if let Some(c) = c {
        let beta = attr_f(n, "beta", 1.0);
        let v = floats(c, "C")?;
        let bias: Vec<f32> = match v.len() {
            1 => vec![v[0] * beta; out],
            m if m == out && c.shape().iter().rev().skip(1).all(|&d| d == 1) => {
                v.iter().map(|x| x * beta).collect()
            }
            _ => {
                return Err(format!(
                    "C of shape {:?} is not a bias of {out} outputs",
                    c.shape()
                ))
            }
        };
        params.push(("bias", tensor(&[out], bias)));
    }
    let op = Op::Linear(Linear {
        in_features: inp,
        out_features: out,
        bias: c.is_some(),
    });
    let name = imp.layer_name(n, n.input.get(1).map(String::as_str));
    imp.add(name, op, &[&x.0], params)
}

pub(super) fn matmul(imp: &mut Importer, n: &NodeProto, ins: &[Option<Val>]) -> R<Val> {
    let x = dyn_in(ins, 0)?;
    match &ins[1] {
        Some(Val::Const(b)) => {
            let [k, m] = b.shape()[..] else {
                return Err(format!(
                    "a constant B of shape {:?}: pare imports a matrix (a Linear layer)",
                    b.shape()
                ));
            };
            let w = Const::F32 {
                shape: vec![k, m],
                data: floats(b, "B")?,
            }
            .transposed(&[1, 0]);
            let op = Op::Linear(Linear {
                in_features: k,
                out_features: m,
                bias: false,
            });
            let name = imp.layer_name(n, n.input.get(1).map(String::as_str));
            let v = imp.add(
                name.clone(),
                op,
                &[&x.0],
                vec![("weight", tensor(&[m, k], w.floats().unwrap_or_default()))],
            )?;
            imp.biasless.insert(name);
            Ok(v)
        }
        _ => {
            let y = dyn_in(ins, 1)?;
            binary(imp, n, Op::MatMul, &x.0, &y.0)
        }
    }
}

pub(super) fn batch_norm(imp: &mut Importer, n: &NodeProto, ins: &[Option<Val>]) -> R<Val> {
    let x = dyn_in(ins, 0)?;
    if attr_i(n, "training_mode", 0) != 0 {
        return Err("training_mode = 1: pare imports inference graphs".into());
    }
    if n.output.iter().skip(1).any(|o| !o.is_empty()) {
        return Err("outputs running statistics: pare imports inference graphs".into());
    }
    let c = x.1[0];
    let mut params = vec![];
    for (k, suffix) in [
        (1, "weight"),
        (2, "bias"),
        (3, "running_mean"),
        (4, "running_var"),
    ] {
        let v = const_in(ins, k)?;
        if v.len() != c {
            return Err(format!("{suffix} has {} values for {c} channels", v.len()));
        }
        params.push((suffix, tensor(&[c], floats(v, suffix)?)));
    }
    let op = Op::BatchNorm(BatchNorm {
        num_features: c,
        eps: attr_f(n, "epsilon", 1e-5) as f64,
        momentum: 1.0 - attr_f(n, "momentum", 0.9) as f64,
    });
    let name = imp.layer_name(n, n.input.get(1).map(String::as_str));
    imp.add(name, op, &[&x.0], params)
}

pub(super) fn layer_norm(imp: &mut Importer, n: &NodeProto, ins: &[Option<Val>]) -> R<Val> {
    let x = dyn_in(ins, 0)?;
    let rank = x.1.len() as i64 + 1;
    let axis = attr_i(n, "axis", -1);
    if axis != -1 && axis != rank - 1 {
        return Err(format!("axis = {axis}: pare normalizes over the last axis only"));
    }
    if n.output.iter().skip(1).any(|o| !o.is_empty()) {
        return Err("outputs the mean and inverse deviation: pare imports inference graphs".into());
    }
    let dim = *x.1.last().unwrap_or(&0);
    let scale = const_in(ins, 1)?;
    if scale.len() != dim {
        return Err(format!("scale has {} values for {dim} features", scale.len()));
    }
    let bias = match opt_const(ins, 2)? {
        Some(b) if b.len() == dim => floats(b, "bias")?,
        Some(b) => return Err(format!("bias has {} values for {dim} features", b.len())),
        None => vec![0.0; dim],
    };
    let op = Op::LayerNorm(LayerNorm {
        dim,
        eps: attr_f(n, "epsilon", 1e-5) as f64,
    });
    let params = vec![
        ("weight", tensor(&[dim], floats(scale, "scale")?)),
        ("bias", tensor(&[dim], bias)),
    ];
    let name = imp.layer_name(n, n.input.get(1).map(String::as_str));
    imp.add(name, op, &[&x.0], params)
}

/// An average pool whose divisor counts only the input (`count_include_pad = 0`) under pads
/// pare's pool cannot hold (asymmetric, or wider than half the kernel), exactly and without
/// parameters: the sum-average of the zero-padded input divided, window by window, by the
/// fraction of the window on the input, which is the same pool of a map of ones
/// (`clip(0 x, 1, 1)`) padded alike.
fn avg_pool_without_pads(
    imp: &mut Importer,
    n: &NodeProto,
    x: (String, Vec<usize>),
    pads: [[usize; 2]; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
) -> R<Val> {
    let pool = Op::AvgPool2d(AvgPool2d {
        kernel_size: kernel,
        stride,
        padding: [0, 0],
        count_include_pad: true,
        ceil_mode: false,
    });
    let zeros = name_of(&unary(imp, n, &x.0, Op::Scale(Scale { factor: 0.0 }))?);
    let ones = name_of(&unary(imp, n, &zeros, Op::Clip(Clip { min: 1.0, max: 1.0 }))?);
    let mut ones = (ones, x.1.clone());
    split_pads(imp, n, &mut ones, pads, 0.0, true)?;
    let fraction = name_of(&unary(imp, n, &ones.0, pool.clone())?);
    let mut x = x;
    split_pads(imp, n, &mut x, pads, 0.0, true)?;
    let sums = name_of(&unary(imp, n, &x.0, pool)?);
    binary(imp, n, Op::Div, &sums, &fraction)
}

/// A 1-D window op's attributes lifted to two axes, the first of size 1 (kernel, strides and
/// dilations 1 there, no pads): the same op on `[C, 1, L]` as on `[C, L]`.
fn lifted_to_2d(n: &NodeProto) -> NodeProto {
    let mut lifted = n.clone();
    for a in &mut lifted.attribute {
        match (a.name.as_str(), a.ints.as_slice()) {
            ("kernel_shape" | "strides" | "dilations", [v]) => a.ints = vec![1, *v],
            ("pads", [begin, end]) => a.ints = vec![0, *begin, 0, *end],
            _ => {}
        }
    }
    lifted
}

/// The 1-D window op `n` on `[C, L]` as the 2-D one, `op_2d`, on `[C, 1, L]`: the input
/// reshaped, the node's attributes lifted ([`lifted_to_2d`]), the output reshaped back to
/// `[C', L']`. The caller has lifted any weight in `ins` alike.
fn through_2d(
    imp: &mut Importer,
    n: &NodeProto,
    mut ins: Vec<Option<Val>>,
    op_2d: fn(&mut Importer, &NodeProto, &[Option<Val>]) -> R<Val>,
) -> R<Val> {
    let (x, shape) = dyn_in(&ins, 0)?;
    let tall = vec![shape[0], 1, shape[1]];
    ins[0] = Some(unary(imp, n, &x, Op::Reshape(Reshape { shape: tall }))?);
    match op_2d(imp, &lifted_to_2d(n), &ins)? {
        Val::Dyn { name, shape } => unary(
            imp,
            n,
            &name,
            Op::Reshape(Reshape {
                shape: vec![shape[0], shape[2]],
            }),
        ),
        other => Ok(other),
    }
}

pub(super) fn pool(imp: &mut Importer, n: &NodeProto, ins: &[Option<Val>]) -> R<Val> {
    let mut x = dyn_in(ins, 0)?;
    // A 1-D pool is the 2-D one over [C, 1, L].
    if let [_, _] = x.1[..] {
        return through_2d(imp, n, ins.to_vec(), pool);
    }
    let [_, h, w] = x.1[..] else {
        return Err(format!(
            "reads a value of per-sample shape {:?}; pare imports 1-D and 2-D pooling",
            x.1
        ));
    };
    if n.output.len() > 1 && !n.output[1].is_empty() {
        return Err("outputs the indices of the maxima: pare imports the pooled values only".into());
    }
    let kernel = pair(attr_ints(n, "kernel_shape"), 0, "kernel_shape")?;
    if kernel.contains(&0) {
        return Err("has no kernel_shape".into());
    }
    let stride = pair(attr_ints(n, "strides"), 1, "strides")?;
    if pair(attr_ints(n, "dilations"), 1, "dilations")? != [1, 1] {
        return Err("dilated pooling is not supported".into());
    }
    let pads = window_pads(n, [h, w], kernel, stride, [1, 1])?;
    let max = n.op_type == "MaxPool";
    // pare's pools pad both sides alike, by at most half the kernel; other pads become a Pad
    // node before the pool.
    let symmetric = pads[0][0] == pads[0][1] && pads[1][0] == pads[1][1];
    let within_half = (0..2).all(|a| 2 * pads[a][0].max(pads[a][1]) <= kernel[a]);
    let explicit = !symmetric || !within_half;
    // Ceil mode adds a last, partial window where the floor leaves input uncovered; its
    // divisor counts the padding on both sides, which an explicit Pad would change.
    let ceil_mode = attr_i(n, "ceil_mode", 0) != 0;
    if ceil_mode && explicit {
        return Err(format!(
            "ceil_mode = 1 with pads {pads:?} (pare's ceil-mode pools pad both sides alike, by at most half the kernel)"
        ));
    }
    // The ONNX spec keeps a last window that starts in the right padding, PyTorch drops it.
    if ceil_mode && (0..2).any(|a| ceil_window_dropped([h, w][a], kernel[a], stride[a], pads[a][0])) {
        return Err(format!(
            "ceil_mode = 1 on input {:?}: the last window would start in the padding (runtimes disagree on it)",
            [h, w]
        ));
    }
    // An explicit Pad puts its zeros in every window's divisor.
    let count_include_pad = attr_i(n, "count_include_pad", 0) != 0;
    if !max && explicit && !count_include_pad {
        return avg_pool_without_pads(imp, n, x, pads, kernel, stride);
    }
    // The Pad node holds the lowest f32 before a max pool (which pads with -inf itself), zeros
    // before an average pool that counts them.
    let value = if max { f32::MIN } else { 0.0 };
    let padding = split_pads(imp, n, &mut x, pads, value, explicit)?;
    let op = if max {
        Op::MaxPool2d(MaxPool2d {
            kernel_size: kernel,
            stride,
            padding,
            ceil_mode,
        })
    } else {
        Op::AvgPool2d(AvgPool2d {
            kernel_size: kernel,
            stride,
            padding,
            count_include_pad,
            ceil_mode,
        })
    };
    unary(imp, n, &x.0, op)
}
