//! Each ONNX op as pare nodes, or folded when its inputs are constants. An `Err` says what
//! about the node pare does not support; the caller adds the node's name and op type.

use super::arith::{arith, qparams};
use super::fold::fold;
use super::layers::{batch_norm, conv, gemm, layer_norm, matmul, pool};
use super::layout::{expand_shape, gather, pad, reshape_target, slice, split, squeeze_shape};
use super::{Importer, Val};
use crate::ir::graph::INPUT;
use crate::ir::op::Op;
use crate::ir::op::{Clip, Concat, FakeQuant, Mean, Reshape, Scale, Softmax, Transpose};
use crate::ir::Tensor;
use crate::onnx::consts::{Const, Sym};
use crate::onnx::proto::{data_type, AttributeProto, NodeProto};

pub(super) type R<T> = Result<T, String>;

pub(super) fn attr<'a>(n: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    n.attribute.iter().find(|a| a.name == name)
}

pub(super) fn attr_i(n: &NodeProto, name: &str, default: i64) -> i64 {
    attr(n, name).and_then(|a| a.i).unwrap_or(default)
}

pub(super) fn attr_f(n: &NodeProto, name: &str, default: f32) -> f32 {
    attr(n, name).and_then(|a| a.f).unwrap_or(default)
}

pub(super) fn attr_ints(n: &NodeProto, name: &str) -> Option<Vec<i64>> {
    attr(n, name).map(|a| a.ints.clone())
}

pub(super) fn attr_s(n: &NodeProto, name: &str) -> Option<String> {
    attr(n, name)
        .and_then(|a| a.s.as_ref())
        .map(|s| String::from_utf8_lossy(s).into_owned())
}

pub(super) fn dyn_in(ins: &[Option<Val>], k: usize) -> R<(String, Vec<usize>)> {
    match ins.get(k) {
        Some(Some(Val::Dyn { name, shape })) => Ok((name.clone(), shape.clone())),
        Some(Some(Val::Const(_))) => Err(format!(
            "input {k} is a constant where pare needs a value computed from the model's input"
        )),
        Some(Some(Val::Gelu { .. })) => Err(format!(
            "input {k} is a partial GELU (x / sqrt 2, erf, + 1, x *) used outside that pattern"
        )),
        Some(Some(Val::AtLeastZero { .. })) => Err(format!(
            "input {k} is a comparison x >= 0, which pare imports only as the condition of Where(x >= 0, 1, -1)"
        )),
        _ => Err(format!("input {k} is missing")),
    }
}

pub(super) fn const_in(ins: &[Option<Val>], k: usize) -> R<&Const> {
    match ins.get(k) {
        Some(Some(Val::Const(c))) => Ok(c),
        Some(Some(_)) => Err(format!(
            "input {k} must be a constant (an initializer or folded from one)"
        )),
        _ => Err(format!("input {k} is missing")),
    }
}

pub(super) fn opt_const(ins: &[Option<Val>], k: usize) -> R<Option<&Const>> {
    match ins.get(k) {
        None | Some(None) => Ok(None),
        Some(_) => const_in(ins, k).map(Some),
    }
}

pub(super) fn floats(c: &Const, what: &str) -> R<Vec<f32>> {
    c.floats()
        .ok_or_else(|| format!("{what} depends on the batch size"))
}

pub(super) fn ints(c: &Const, what: &str) -> R<Vec<i64>> {
    c.known_ints()
        .ok_or_else(|| format!("{what} must be integers known at import"))
}

pub(super) fn scalar(c: &Const, what: &str) -> R<f32> {
    match floats(c, what)?.as_slice() {
        [v] => Ok(*v),
        _ => Err(format!("{what} must hold one value, has shape {:?}", c.shape())),
    }
}

pub(super) fn tensor(shape: &[usize], data: Vec<f32>) -> Tensor {
    Tensor::from_vec(shape.to_vec(), data)
}

/// An axis of the batched tensor (negative counts from the end) as a per-sample axis; the batch
/// axis itself is refused.
pub(super) fn per_sample_axis(axis: i64, per_sample_rank: usize, what: &str) -> R<usize> {
    let rank = per_sample_rank as i64 + 1;
    let a = if axis < 0 { axis + rank } else { axis };
    if !(0..rank).contains(&a) {
        return Err(format!("{what} {axis} is out of range for a rank-{rank} tensor"));
    }
    if a == 0 {
        return Err(format!(
            "{what} {axis} is the batch axis; pare keeps the batch axis first and whole"
        ));
    }
    Ok(a as usize - 1)
}

pub(super) fn alias(v: &(String, Vec<usize>)) -> Val {
    Val::Dyn {
        name: v.0.clone(),
        shape: v.1.clone(),
    }
}

/// Where a per-sample reshape keeps the same elements: the node, or nothing if the shape is
/// unchanged.
pub(super) fn reshape(
    imp: &mut Importer,
    n: &NodeProto,
    x: &(String, Vec<usize>),
    shape: Vec<usize>,
) -> R<Val> {
    if shape == x.1 {
        return Ok(alias(x));
    }
    let name = imp.fresh(super::display_name(n));
    imp.add(name, Op::Reshape(Reshape { shape }), &[&x.0], vec![])
}

pub(super) fn convert(imp: &mut Importer, n: &NodeProto, ins: &[Option<Val>]) -> R<Vec<Val>> {
    let op = n.op_type.as_str();
    let all_const = ins.iter().flatten().all(|v| matches!(v, Val::Const(_)));
    if all_const && !matches!(op, "Shape") {
        return fold(imp, n, ins);
    }
    let one = |v: Val| Ok(vec![v]);
    match op {
        "Identity" | "Dropout" => match &ins[0] {
            Some(v) => Ok(vec![v.clone(), Val::Failed]),
            None => Err("has no input".into()),
        },
        "Relu" | "Sigmoid" | "Tanh" | "Abs" | "HardSwish" => {
            let x = dyn_in(ins, 0)?;
            let pop = match op {
                "Relu" => Op::Relu,
                "Sigmoid" => Op::Sigmoid,
                "Tanh" => Op::Tanh,
                "Abs" => Op::Abs,
                _ => Op::HardSwish,
            };
            one(unary(imp, n, &x.0, pop)?)
        }
        "Gelu" => {
            let x = dyn_in(ins, 0)?;
            match attr_s(n, "approximate").as_deref() {
                None | Some("none") => one(unary(imp, n, &x.0, Op::Gelu)?),
                Some(a) => Err(format!("approximate = '{a}': pare's GELU is the exact (erf) one")),
            }
        }
        // An erf of `x / sqrt 2` starts an exact GELU written out; any other erf is the op.
        "Erf" => {
            let x = dyn_in(ins, 0)?;
            let scaled = imp.nodes.iter().rev().find(|m| m.name == x.0);
            match scaled.map(|m| (&m.op, &m.inputs)) {
                Some((Op::Scale(Scale { factor }), inputs))
                    if (factor - std::f64::consts::FRAC_1_SQRT_2).abs() < 1e-6 =>
                {
                    let src = inputs[0].clone();
                    let shape = if src == INPUT {
                        imp.input_shape().to_vec()
                    } else {
                        imp.shapes[&src].clone()
                    };
                    one(Val::Gelu {
                        x: src,
                        shape,
                        step: 1,
                    })
                }
                _ => one(unary(imp, n, &x.0, Op::Erf)?),
            }
        }
        "Clip" => {
            let x = dyn_in(ins, 0)?;
            let lo = opt_const(ins, 1)?.map(|c| scalar(c, "min")).transpose()?;
            let hi = opt_const(ins, 2)?.map(|c| scalar(c, "max")).transpose()?;
            let pop = match (lo, hi) {
                (Some(0.0), Some(6.0)) => Op::Relu6,
                (Some(0.0), None) => Op::Relu,
                (lo, hi) => Op::Clip(Clip {
                    min: lo.unwrap_or(f32::MIN),
                    max: hi.unwrap_or(f32::MAX),
                }),
            };
            one(unary(imp, n, &x.0, pop)?)
        }
        "HardSigmoid" => {
            // max(0, min(1, alpha x + beta))
            let x = dyn_in(ins, 0)?;
            let (alpha, beta) = (attr_f(n, "alpha", 0.2), attr_f(n, "beta", 0.5));
            let s = unary(imp, n, &x.0, Op::Scale(Scale { factor: alpha as f64 }))?;
            let s = name_of(&s);
            let c = imp.constant(&format!("{}/beta", super::display_name(n)), vec![1], vec![-beta])?;
            let shifted = binary(imp, n, Op::Sub, &s, &c)?;
            one(unary(
                imp,
                n,
                &name_of(&shifted),
                Op::Clip(Clip { min: 0.0, max: 1.0 }),
            )?)
        }
        // ONNX's sign is 0 at 0, pare's (BNN's) +1 there: (sign(x) - sign(-x)) / 2.
        "Sign" => {
            let x = dyn_in(ins, 0)?;
            let pos = name_of(&unary(imp, n, &x.0, Op::Sign)?);
            let neg = name_of(&unary(imp, n, &x.0, Op::Scale(Scale { factor: -1.0 }))?);
            let neg = name_of(&unary(imp, n, &neg, Op::Sign)?);
            let diff = name_of(&binary(imp, n, Op::Sub, &pos, &neg)?);
            one(unary(imp, n, &diff, Op::Scale(Scale { factor: 0.5 }))?)
        }
        // `x >= 0` is imported only as the condition of `Where(x >= 0, 1, -1)`, pare's sign as
        // `pare export` writes it.
        "GreaterOrEqual" => {
            let x = dyn_in(ins, 0)?;
            if scalar(const_in(ins, 1)?, "the bound")? != 0.0 {
                return Err(
                    "compares with a bound other than 0 (pare imports x >= 0 as the condition of a sign)"
                        .into(),
                );
            }
            one(Val::AtLeastZero { x: x.0 })
        }
        "Where" => {
            let Some(Some(Val::AtLeastZero { x, .. })) = ins.first() else {
                return Err(
                    "chooses by a condition other than x >= 0 (pare imports Where(x >= 0, 1, -1), a sign)"
                        .into(),
                );
            };
            let (a, b) = (
                scalar(const_in(ins, 1)?, "input 1")?,
                scalar(const_in(ins, 2)?, "input 2")?,
            );
            if (a, b) != (1.0, -1.0) {
                return Err(format!(
                    "chooses {a} and {b} where pare imports 1 and -1 (a sign)"
                ));
            }
            let x = x.clone();
            one(unary(imp, n, &x, Op::Sign)?)
        }
        "LeakyRelu" | "PRelu" => {
            // relu(x) - slope * relu(-x)
            let x = dyn_in(ins, 0)?;
            let pos = name_of(&unary(imp, n, &x.0, Op::Relu)?);
            let neg = name_of(&unary(imp, n, &x.0, Op::Scale(Scale { factor: -1.0 }))?);
            let neg = name_of(&unary(imp, n, &neg, Op::Relu)?);
            let scaled = if op == "LeakyRelu" {
                unary(
                    imp,
                    n,
                    &neg,
                    Op::Scale(Scale {
                        factor: attr_f(n, "alpha", 0.01) as f64,
                    }),
                )?
            } else {
                let slope = const_in(ins, 1)?;
                let shape = const_shape(slope, x.1.len())?;
                let p = imp.constant(
                    &format!("{}/slope", super::display_name(n)),
                    shape,
                    floats(slope, "slope")?,
                )?;
                binary(imp, n, Op::Mul, &neg, &p)?
            };
            one(binary(imp, n, Op::Sub, &pos, &name_of(&scaled))?)
        }
        "Add" | "Sub" | "Mul" | "Div" => one(arith(imp, n, ins)?),
        "QuantizeLinear" => {
            let x = dyn_in(ins, 0)?;
            let (scale, zero_point, signed) = qparams(imp, n, ins)?;
            one(Val::Quantized {
                x: x.0,
                scale,
                zero_point,
                signed,
            })
        }
        "DequantizeLinear" => {
            let Some(Some(Val::Quantized {
                x,
                scale,
                zero_point,
                signed,
            })) = ins.first()
            else {
                return Err("dequantizes a runtime value that no QuantizeLinear produced".into());
            };
            if qparams(imp, n, ins)? != (*scale, *zero_point, *signed) {
                return Err("its scale and zero point differ from the QuantizeLinear's it reads".into());
            }
            let op = Op::FakeQuant(FakeQuant {
                bits: 8,
                symmetric: *signed,
                scale: *scale,
                zero_point: *zero_point,
            });
            let x = x.clone();
            one(unary(imp, n, &x, op)?)
        }
        "Sum" => {
            let xs = (0..ins.len()).map(|k| dyn_in(ins, k)).collect::<R<Vec<_>>>()?;
            if xs.is_empty() {
                return Err("has no inputs".into());
            }
            if xs.len() == 1 {
                return one(alias(&xs[0]));
            }
            let names: Vec<&str> = xs.iter().map(|x| x.0.as_str()).collect();
            let name = imp.fresh(super::display_name(n));
            one(imp.add(name, Op::Add, &names, vec![])?)
        }
        "Conv" => one(conv(imp, n, ins)?),
        "Gemm" => one(gemm(imp, n, ins)?),
        "MatMul" => one(matmul(imp, n, ins)?),
        "BatchNormalization" => one(batch_norm(imp, n, ins)?),
        "LayerNormalization" => one(layer_norm(imp, n, ins)?),
        "MaxPool" | "AveragePool" => one(pool(imp, n, ins)?),
        "GlobalAveragePool" => {
            let x = dyn_in(ins, 0)?;
            one(unary(imp, n, &x.0, Op::GlobalAvgPool)?)
        }
        "Flatten" => {
            let x = dyn_in(ins, 0)?;
            if attr_i(n, "axis", 1) != 1 {
                return Err(format!(
                    "axis = {}: pare flattens everything after the batch axis (axis 1)",
                    attr_i(n, "axis", 1)
                ));
            }
            if x.1.len() == 3 {
                one(unary(imp, n, &x.0, Op::Flatten)?)
            } else {
                let total = x.1.iter().product();
                one(reshape(imp, n, &x, vec![total])?)
            }
        }
        "Reshape" => {
            let x = dyn_in(ins, 0)?;
            let target = match const_in(ins, 1)? {
                Const::Ints { data, .. } => data.clone(),
                Const::F32 { .. } => return Err("the shape must be integers".into()),
            };
            let shape = reshape_target(&x.1, &target, attr_i(n, "allowzero", 0) != 0)?;
            one(reshape(imp, n, &x, shape)?)
        }
        "Transpose" => {
            let x = dyn_in(ins, 0)?;
            let rank = x.1.len() + 1;
            let perm = attr_ints(n, "perm").unwrap_or_else(|| (0..rank as i64).rev().collect());
            if perm.len() != rank || perm[0] != 0 {
                return Err(format!("perm {perm:?} moves the batch axis; pare keeps it first"));
            }
            let perm: Vec<usize> = perm[1..]
                .iter()
                .map(|&p| usize::try_from(p).ok().and_then(|p| p.checked_sub(1)))
                .collect::<Option<_>>()
                .ok_or_else(|| format!("perm {perm:?} moves the batch axis; pare keeps it first"))?;
            if perm.iter().enumerate().all(|(i, &p)| i == p) {
                return one(alias(&x));
            }
            one(unary(imp, n, &x.0, Op::Transpose(Transpose { perm }))?)
        }
        "Squeeze" | "Unsqueeze" => {
            let x = dyn_in(ins, 0)?;
            let axes = match opt_const(ins, 1)? {
                Some(c) => Some(ints(c, "axes")?),
                None => attr_ints(n, "axes"),
            };
            let shape = squeeze_shape(&x.1, axes.as_deref(), op == "Unsqueeze")?;
            one(reshape(imp, n, &x, shape)?)
        }
        "Concat" => {
            let rank = ins.iter().flatten().find_map(|v| match v {
                Val::Dyn { shape, .. } => Some(shape.len()),
                _ => None,
            });
            let rank = rank.ok_or("no input is a runtime value")?;
            let axis = per_sample_axis(attr_i(n, "axis", 0), rank, "axis")?;
            let mut names = vec![];
            for (k, v) in ins.iter().enumerate() {
                match v {
                    Some(Val::Const(c)) => {
                        let shape = const_shape(c, rank)?;
                        let p = imp.constant(
                            &format!("{}/const{k}", super::display_name(n)),
                            shape,
                            floats(c, "a concatenated constant")?,
                        )?;
                        names.push(p);
                    }
                    _ => names.push(dyn_in(ins, k)?.0),
                }
            }
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            if refs.len() == 1 {
                let shape = imp
                    .shapes
                    .get(refs[0])
                    .cloned()
                    .unwrap_or_else(|| imp.input_shape().to_vec());
                return one(Val::Dyn {
                    name: names[0].clone(),
                    shape,
                });
            }
            let name = imp.fresh(super::display_name(n));
            one(imp.add(name, Op::Concat(Concat { axis: axis as isize }), &refs, vec![])?)
        }
        "Split" => split(imp, n, ins),
        "Slice" => one(slice(imp, n, ins)?),
        "Gather" => one(gather(imp, n, ins)?),
        "Pad" => one(pad(imp, n, ins)?),
        "ReduceMean" => {
            let x = dyn_in(ins, 0)?;
            let axes = match opt_const(ins, 1)? {
                Some(c) => ints(c, "axes")?,
                None => attr_ints(n, "axes").unwrap_or_default(),
            };
            if axes.is_empty() {
                return Err("a mean over every axis (no axes) would mix the batch".into());
            }
            let axes = axes
                .iter()
                .map(|&a| per_sample_axis(a, x.1.len(), "axis").map(|a| a as isize))
                .collect::<R<Vec<_>>>()?;
            let keepdim = attr_i(n, "keepdims", 1) != 0;
            one(unary(imp, n, &x.0, Op::Mean(Mean { axes, keepdim }))?)
        }
        "Softmax" => {
            let x = dyn_in(ins, 0)?;
            let axis = per_sample_axis(attr_i(n, "axis", -1), x.1.len(), "axis")?;
            one(unary(imp, n, &x.0, Op::Softmax(Softmax { axis: axis as isize }))?)
        }
        "Shape" => {
            let full: Vec<Sym> = match &ins[0] {
                Some(Val::Dyn { shape, .. }) | Some(Val::Gelu { shape, .. }) => std::iter::once(Sym::Batch)
                    .chain(shape.iter().map(|&d| Sym::Int(d as i64)))
                    .collect(),
                Some(Val::Const(c)) => c.shape().iter().map(|&d| Sym::Int(d as i64)).collect(),
                _ => return Err("has no input".into()),
            };
            let r = full.len() as i64;
            let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
            let (s, e) = (clamp(attr_i(n, "start", 0)), clamp(attr_i(n, "end", r)));
            let data = full[s..e.max(s)].to_vec();
            one(Val::Const(Const::Ints {
                shape: vec![data.len()],
                data,
            }))
        }
        "Cast" => {
            let x = dyn_in(ins, 0)?;
            match attr_i(n, "to", 0) as i32 {
                data_type::FLOAT => one(alias(&x)),
                t => Err(format!(
                    "casts a runtime value to {}; pare computes in FLOAT",
                    data_type::name(t)
                )),
            }
        }
        "Expand" => {
            let target = match const_in(ins, 1)? {
                Const::Ints { data, .. } => data.clone(),
                _ => return Err("the shape must be integers".into()),
            };
            match &ins[0] {
                Some(Val::Dyn { name, shape }) => {
                    let full: Vec<Sym> = std::iter::once(Sym::Batch)
                        .chain(shape.iter().map(|&d| Sym::Int(d as i64)))
                        .collect();
                    if expand_shape(&full, &target)? == full {
                        one(Val::Dyn {
                            name: name.clone(),
                            shape: shape.clone(),
                        })
                    } else {
                        Err("expands a runtime value to a larger shape; pare broadcasts inside Mul/Sub/Div only".into())
                    }
                }
                _ => Err(format!("input 0 is {}", "not a runtime value")),
            }
        }
        other => Err(format!("op {other} cannot be imported")),
    }
}

pub(super) fn name_of(v: &Val) -> String {
    match v {
        Val::Dyn { name, .. } => name.clone(),
        _ => String::new(),
    }
}

/// A one-input node on `x`.
pub(super) fn unary(imp: &mut Importer, n: &NodeProto, x: &str, op: Op) -> R<Val> {
    let name = imp.fresh(super::display_name(n));
    imp.add(name, op, &[x], vec![])
}

pub(super) fn binary(imp: &mut Importer, n: &NodeProto, op: Op, a: &str, b: &str) -> R<Val> {
    let name = imp.fresh(super::display_name(n));
    imp.add(name, op, &[a, b], vec![])
}

/// The per-sample shape a constant has when it broadcasts against a value of per-sample rank
/// `rank`: a leading batch axis of size 1 dropped, a scalar as `[1]`.
pub(super) fn const_shape(c: &Const, rank: usize) -> R<Vec<usize>> {
    let s = c.shape();
    if s.len() == rank + 1 {
        if s[0] != 1 {
            return Err(format!("a constant of shape {s:?} would set the batch size"));
        }
        Ok(s[1..].to_vec())
    } else if s.len() > rank + 1 {
        Err(format!(
            "a constant of shape {s:?} has more axes than the value it meets"
        ))
    } else if s.is_empty() {
        Ok(vec![1])
    } else {
        Ok(s.to_vec())
    }
}
