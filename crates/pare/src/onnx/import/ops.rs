//! Each ONNX op as pare nodes, or folded when its inputs are constants. An `Err` says what
//! about the node pare does not support; the caller adds the node's name and op type.

use super::{Importer, Val};
use crate::ir::graph::{DType, INPUT};
use crate::ir::op::{broadcast, Op};
use crate::ir::Tensor;
use crate::onnx::consts::{strides, Const, Sym};
use crate::onnx::proto::{data_type, AttributeProto, NodeProto};

type R<T> = Result<T, String>;

fn attr<'a>(n: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    n.attribute.iter().find(|a| a.name == name)
}

fn attr_i(n: &NodeProto, name: &str, default: i64) -> i64 {
    attr(n, name).and_then(|a| a.i).unwrap_or(default)
}

fn attr_f(n: &NodeProto, name: &str, default: f32) -> f32 {
    attr(n, name).and_then(|a| a.f).unwrap_or(default)
}

fn attr_ints(n: &NodeProto, name: &str) -> Option<Vec<i64>> {
    attr(n, name).map(|a| a.ints.clone())
}

fn attr_s(n: &NodeProto, name: &str) -> Option<String> {
    attr(n, name)
        .and_then(|a| a.s.as_ref())
        .map(|s| String::from_utf8_lossy(s).into_owned())
}

fn dyn_in(ins: &[Option<Val>], k: usize) -> R<(String, Vec<usize>)> {
    match ins.get(k) {
        Some(Some(Val::Dyn { name, shape })) => Ok((name.clone(), shape.clone())),
        Some(Some(Val::Const(_))) => Err(format!(
            "input {k} is a constant where pare needs a value computed from the model's input"
        )),
        Some(Some(Val::Gelu { .. })) => Err(format!(
            "input {k} is a partial GELU (x / sqrt 2, erf, + 1, x *) used outside that pattern"
        )),
        _ => Err(format!("input {k} is missing")),
    }
}

fn const_in(ins: &[Option<Val>], k: usize) -> R<&Const> {
    match ins.get(k) {
        Some(Some(Val::Const(c))) => Ok(c),
        Some(Some(_)) => Err(format!(
            "input {k} must be a constant (an initializer or folded from one)"
        )),
        _ => Err(format!("input {k} is missing")),
    }
}

fn opt_const(ins: &[Option<Val>], k: usize) -> R<Option<&Const>> {
    match ins.get(k) {
        None | Some(None) => Ok(None),
        Some(_) => const_in(ins, k).map(Some),
    }
}

fn floats(c: &Const, what: &str) -> R<Vec<f32>> {
    c.floats()
        .ok_or_else(|| format!("{what} depends on the batch size"))
}

fn ints(c: &Const, what: &str) -> R<Vec<i64>> {
    c.known_ints()
        .ok_or_else(|| format!("{what} must be integers known at import"))
}

fn scalar(c: &Const, what: &str) -> R<f32> {
    match floats(c, what)?.as_slice() {
        [v] => Ok(*v),
        _ => Err(format!("{what} must hold one value, has shape {:?}", c.shape())),
    }
}

fn tensor(shape: &[usize], data: Vec<f32>) -> Tensor {
    Tensor::from_vec(shape.to_vec(), data)
}

/// An axis of the batched tensor (negative counts from the end) as a per-sample axis; the batch
/// axis itself is refused.
fn per_sample_axis(axis: i64, per_sample_rank: usize, what: &str) -> R<usize> {
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

fn alias(v: &(String, Vec<usize>)) -> Val {
    Val::Dyn {
        name: v.0.clone(),
        shape: v.1.clone(),
    }
}

/// Where a per-sample reshape keeps the same elements: the node, or nothing if the shape is
/// unchanged.
fn reshape(imp: &mut Importer, n: &NodeProto, x: &(String, Vec<usize>), shape: Vec<usize>) -> R<Val> {
    if shape == x.1 {
        return Ok(alias(x));
    }
    let name = imp.fresh(super::display_name(n));
    imp.add(name, Op::Reshape { shape }, &[&x.0], vec![])
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
        "Erf" => {
            let x = dyn_in(ins, 0)?;
            let scaled = imp.nodes.iter().rev().find(|m| m.name == x.0);
            match scaled.map(|m| (&m.op, &m.inputs)) {
                Some((Op::Scale { factor }, inputs))
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
                _ => Err("Erf is imported as part of exact GELU (0.5 x (1 + erf(x / sqrt 2))) only".into()),
            }
        }
        "Clip" => {
            let x = dyn_in(ins, 0)?;
            let lo = opt_const(ins, 1)?.map(|c| scalar(c, "min")).transpose()?;
            let hi = opt_const(ins, 2)?.map(|c| scalar(c, "max")).transpose()?;
            let pop = match (lo, hi) {
                (Some(0.0), Some(6.0)) => Op::Relu6,
                (Some(0.0), None) => Op::Relu,
                (lo, hi) => Op::Clip {
                    min: lo.unwrap_or(f32::MIN),
                    max: hi.unwrap_or(f32::MAX),
                },
            };
            one(unary(imp, n, &x.0, pop)?)
        }
        "HardSigmoid" => {
            // max(0, min(1, alpha x + beta))
            let x = dyn_in(ins, 0)?;
            let (alpha, beta) = (attr_f(n, "alpha", 0.2), attr_f(n, "beta", 0.5));
            let s = unary(imp, n, &x.0, Op::Scale { factor: alpha as f64 })?;
            let s = name_of(&s);
            let c = imp.constant(&format!("{}/beta", super::display_name(n)), vec![1], vec![-beta])?;
            let shifted = binary(imp, n, Op::Sub, &s, &c)?;
            one(unary(
                imp,
                n,
                &name_of(&shifted),
                Op::Clip { min: 0.0, max: 1.0 },
            )?)
        }
        "LeakyRelu" | "PRelu" => {
            // relu(x) - slope * relu(-x)
            let x = dyn_in(ins, 0)?;
            let pos = name_of(&unary(imp, n, &x.0, Op::Relu)?);
            let neg = name_of(&unary(imp, n, &x.0, Op::Scale { factor: -1.0 })?);
            let neg = name_of(&unary(imp, n, &neg, Op::Relu)?);
            let scaled = if op == "LeakyRelu" {
                unary(
                    imp,
                    n,
                    &neg,
                    Op::Scale {
                        factor: attr_f(n, "alpha", 0.01) as f64,
                    },
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
            let op = Op::FakeQuant {
                bits: 8,
                symmetric: *signed,
                scale: *scale,
                zero_point: *zero_point,
            };
            let x = x.clone();
            one(unary(imp, n, &x, op)?)
        }
        "Sum" => {
            let xs = (0..ins.len()).map(|k| dyn_in(ins, k)).collect::<R<Vec<_>>>()?;
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
            let perm: Vec<usize> = perm[1..].iter().map(|&p| p as usize - 1).collect();
            if perm.iter().enumerate().all(|(i, &p)| i == p) {
                return one(alias(&x));
            }
            one(unary(imp, n, &x.0, Op::Transpose { perm })?)
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
            one(imp.add(name, Op::Concat { axis: axis as isize }, &refs, vec![])?)
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
            one(unary(imp, n, &x.0, Op::Mean { axes, keepdim })?)
        }
        "Softmax" => {
            let x = dyn_in(ins, 0)?;
            let axis = per_sample_axis(attr_i(n, "axis", -1), x.1.len(), "axis")?;
            one(unary(imp, n, &x.0, Op::Softmax { axis: axis as isize })?)
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

fn name_of(v: &Val) -> String {
    match v {
        Val::Dyn { name, .. } => name.clone(),
        _ => String::new(),
    }
}

/// A per-tensor quantizer's scale, zero point and code type (INT8 signed, UINT8 not).
fn qparams(imp: &Importer, n: &NodeProto, ins: &[Option<Val>]) -> R<(f32, i32, bool)> {
    let scale = scalar(const_in(ins, 1)?, "a runtime value's scale (per-tensor)")?;
    if !(scale > 0.0 && scale.is_finite()) {
        return Err(format!("scale {scale} is not a positive number"));
    }
    // The codes' type is the zero point's (UINT8 without one).
    let signed = n
        .input
        .get(2)
        .and_then(|z| imp.elem_types.get(z))
        .is_some_and(|&t| t == data_type::INT8);
    let zp = match opt_const(ins, 2)? {
        Some(c) => scalar(c, "zero point")? as i32,
        None => 0,
    };
    Ok((scale, zp, signed))
}

/// A one-input node on `x`.
fn unary(imp: &mut Importer, n: &NodeProto, x: &str, op: Op) -> R<Val> {
    let name = imp.fresh(super::display_name(n));
    imp.add(name, op, &[x], vec![])
}

fn binary(imp: &mut Importer, n: &NodeProto, op: Op, a: &str, b: &str) -> R<Val> {
    let name = imp.fresh(super::display_name(n));
    imp.add(name, op, &[a, b], vec![])
}

/// The per-sample shape a constant has when it broadcasts against a value of per-sample rank
/// `rank`: a leading batch axis of size 1 dropped, a scalar as `[1]`.
fn const_shape(c: &Const, rank: usize) -> R<Vec<usize>> {
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

/// Add / Sub / Mul / Div: of two runtime values, of a runtime value and a constant (a Linear's
/// bias, the model's input normalization, a scale, or a `parameter` node), or a GELU step.
fn arith(imp: &mut Importer, n: &NodeProto, ins: &[Option<Val>]) -> R<Val> {
    let op = n.op_type.as_str();
    let (a, b) = (
        ins[0].clone().ok_or("input 0 is missing")?,
        ins[1].clone().ok_or("input 1 is missing")?,
    );
    // exact GELU written out: Erf(x / sqrt 2) + 1, x * that, then * 0.5
    match (op, &a, &b) {
        ("Add", Val::Gelu { x, shape, step: 1 }, Val::Const(c))
        | ("Add", Val::Const(c), Val::Gelu { x, shape, step: 1 })
            if c.floats().is_some_and(|v| v == [1.0]) =>
        {
            return Ok(Val::Gelu {
                x: x.clone(),
                shape: shape.clone(),
                step: 2,
            });
        }
        ("Mul", Val::Dyn { name, .. }, Val::Gelu { x, shape, step: 2 })
        | ("Mul", Val::Gelu { x, shape, step: 2 }, Val::Dyn { name, .. })
            if name == x =>
        {
            return Ok(Val::Gelu {
                x: x.clone(),
                shape: shape.clone(),
                step: 3,
            });
        }
        ("Mul", Val::Gelu { x, step: 3, .. }, Val::Const(c))
        | ("Mul", Val::Const(c), Val::Gelu { x, step: 3, .. })
            if c.floats().is_some_and(|v| v == [0.5]) =>
        {
            let x = x.clone();
            return unary(imp, n, &x, Op::Gelu);
        }
        _ => {}
    }
    match (&a, &b) {
        (Val::Dyn { name: x, shape: xs }, Val::Dyn { name: y, shape: ys }) => {
            let pop = match op {
                "Add" if xs == ys => Op::Add,
                "Add" => {
                    return Err(format!(
                        "adds values of shapes {xs:?} and {ys:?}; pare adds runtime values of equal shape"
                    ))
                }
                "Sub" => Op::Sub,
                "Mul" => Op::Mul,
                _ => Op::Div,
            };
            binary(imp, n, pop, x, y)
        }
        (Val::Dyn { name, shape }, Val::Const(c)) => {
            with_const(imp, n, (name.clone(), shape.clone()), c, false)
        }
        (Val::Const(c), Val::Dyn { name, shape }) => {
            with_const(imp, n, (name.clone(), shape.clone()), c, true)
        }
        _ => Err("reads a partial GELU (x / sqrt 2, erf, + 1, x *) outside that pattern".into()),
    }
}

/// `x op c` (or `c op x` when `const_first`).
fn with_const(
    imp: &mut Importer,
    n: &NodeProto,
    x: (String, Vec<usize>),
    c: &Const,
    const_first: bool,
) -> R<Val> {
    let op = n.op_type.as_str();
    let values = floats(c, "the constant")?;
    let is_scalar = values.len() == 1;
    let reads_once = |k: usize| imp.uses.get(&n.input[k]).copied() == Some(1);
    // A Linear made from a MatMul, then + bias: the bias joins the layer.
    if op == "Add" && imp.biasless.contains(&x.0) && reads_once(if const_first { 1 } else { 0 }) {
        let out = *x.1.last().unwrap_or(&0);
        if values.len() == out && c.shape().iter().rev().skip(1).all(|&d| d == 1) {
            let node = imp
                .nodes
                .iter_mut()
                .find(|m| m.name == x.0)
                .expect("the Linear node");
            if let Op::Linear { bias, .. } = &mut node.op {
                *bias = true;
            }
            imp.params.insert(format!("{}.bias", x.0), tensor(&[out], values));
            imp.biasless.remove(&x.0);
            return Ok(alias(&x));
        }
    }
    // (input - mean) / std at the head of the graph: the model's input normalization.
    if x.0 == INPUT && is_scalar && !const_first && imp.input_dtype() == DType::F32 {
        let norm = &mut imp.normalize;
        let v = values[0];
        let first_read = reads_once(0);
        if op == "Sub" && first_read && norm.mean == 0.0 && norm.std == 1.0 {
            norm.mean = v;
            return Ok(alias(&x));
        }
        if op == "Div" && first_read && norm.std == 1.0 && v > 0.0 && v.is_finite() {
            norm.std = v;
            return Ok(alias(&x));
        }
    }
    if is_scalar && !const_first && matches!(op, "Mul" | "Div") {
        let f = if op == "Mul" {
            values[0] as f64
        } else {
            1.0 / values[0] as f64
        };
        return unary(imp, n, &x.0, Op::Scale { factor: f });
    }
    if is_scalar && const_first && op == "Mul" {
        return unary(
            imp,
            n,
            &x.0,
            Op::Scale {
                factor: values[0] as f64,
            },
        );
    }
    let shape = const_shape(c, x.1.len())?;
    let base = format!("{}/const", super::display_name(n));
    match (op, const_first) {
        // x + c as x - (-c): pare's Add takes runtime values of one shape, Sub broadcasts.
        ("Add", _) => {
            let p = imp.constant(&base, shape, values.iter().map(|v| -v).collect())?;
            binary(imp, n, Op::Sub, &x.0, &p)
        }
        ("Mul", _) => {
            let p = imp.constant(&base, shape, values)?;
            binary(imp, n, Op::Mul, &x.0, &p)
        }
        (_, first) => {
            let p = imp.constant(&base, shape, values)?;
            let pop = if op == "Sub" { Op::Sub } else { Op::Div };
            if first {
                binary(imp, n, pop, &p, &x.0)
            } else {
                binary(imp, n, pop, &x.0, &p)
            }
        }
    }
}

/// Explicit pads `[begin.., end..]` for 2-D windows, from `pads` or `auto_pad`.
fn window_pads(
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
            if p.len() != 4 || p.iter().any(|&v| v < 0) {
                return Err(format!("pads {p:?}: expected four non-negative values"));
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

fn pair(v: Option<Vec<i64>>, default: usize, what: &str) -> R<[usize; 2]> {
    match v.as_deref() {
        None => Ok([default; 2]),
        Some([a, b]) if *a > 0 && *b > 0 => Ok([*a as usize, *b as usize]),
        Some(other) => Err(format!(
            "{what} {other:?}: pare takes two positive values (2-D windows)"
        )),
    }
}

/// Asymmetric padding as a Pad node before the window op; the symmetric part is returned.
fn split_pads(
    imp: &mut Importer,
    n: &NodeProto,
    x: &mut (String, Vec<usize>),
    pads: [[usize; 2]; 2],
) -> R<[usize; 2]> {
    if pads[0][0] == pads[0][1] && pads[1][0] == pads[1][1] {
        return Ok([pads[0][0], pads[1][0]]);
    }
    let v = unary(
        imp,
        n,
        &x.0,
        Op::Pad {
            pads: vec![[0, 0], pads[0], pads[1]],
        },
    )?;
    if let Val::Dyn { name, shape } = v {
        *x = (name, shape);
    }
    Ok([0, 0])
}

fn conv(imp: &mut Importer, n: &NodeProto, ins: &[Option<Val>]) -> R<Val> {
    let mut x = dyn_in(ins, 0)?;
    let [c, h, w] = x.1[..] else {
        return Err(format!(
            "reads a value of per-sample shape {:?}; pare imports 2-D convolutions",
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
    let padding = split_pads(imp, n, &mut x, pads)?;
    let mut params = vec![("weight", tensor(weight.shape(), floats(weight, "weight")?))];
    let bias = opt_const(ins, 2)?;
    if let Some(b) = bias {
        if b.len() != o {
            return Err(format!("bias has {} values for {o} filters", b.len()));
        }
        params.push(("bias", tensor(&[o], floats(b, "bias")?)));
    }
    let op = Op::Conv2d {
        in_channels: c,
        out_channels: o,
        kernel_size: [kh, kw],
        stride,
        padding,
        dilation,
        groups,
        bias: bias.is_some(),
    };
    let name = imp.layer_name(n, Some(&n.input[1]));
    imp.add(name, op, &[&x.0], params)
}

fn gemm(imp: &mut Importer, n: &NodeProto, ins: &[Option<Val>]) -> R<Val> {
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
    let op = Op::Linear {
        in_features: inp,
        out_features: out,
        bias: c.is_some(),
    };
    let name = imp.layer_name(n, Some(&n.input[1]));
    imp.add(name, op, &[&x.0], params)
}

fn matmul(imp: &mut Importer, n: &NodeProto, ins: &[Option<Val>]) -> R<Val> {
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
            let op = Op::Linear {
                in_features: k,
                out_features: m,
                bias: false,
            };
            let name = imp.layer_name(n, Some(&n.input[1]));
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

fn batch_norm(imp: &mut Importer, n: &NodeProto, ins: &[Option<Val>]) -> R<Val> {
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
    let op = Op::BatchNorm {
        num_features: c,
        eps: attr_f(n, "epsilon", 1e-5) as f64,
        momentum: 1.0 - attr_f(n, "momentum", 0.9) as f64,
    };
    let name = imp.layer_name(n, Some(&n.input[1]));
    imp.add(name, op, &[&x.0], params)
}

fn layer_norm(imp: &mut Importer, n: &NodeProto, ins: &[Option<Val>]) -> R<Val> {
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
    let op = Op::LayerNorm {
        dim,
        eps: attr_f(n, "epsilon", 1e-5) as f64,
    };
    let params = vec![
        ("weight", tensor(&[dim], floats(scale, "scale")?)),
        ("bias", tensor(&[dim], bias)),
    ];
    let name = imp.layer_name(n, Some(&n.input[1]));
    imp.add(name, op, &[&x.0], params)
}

fn pool(imp: &mut Importer, n: &NodeProto, ins: &[Option<Val>]) -> R<Val> {
    let mut x = dyn_in(ins, 0)?;
    let [_, h, w] = x.1[..] else {
        return Err(format!(
            "reads a value of per-sample shape {:?}; pare imports 2-D pooling",
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
    if attr_i(n, "ceil_mode", 0) != 0 {
        // Ceil mode adds a last, partial window where the floor leaves input uncovered.
        for (a, size) in [h, w].iter().enumerate() {
            let span = size + pads[a][0] + pads[a][1] - kernel[a];
            if span % stride[a] != 0 {
                return Err("ceil_mode = 1 with a partial last window: pare pools in floor mode".into());
            }
        }
    }
    // A zero pad is exact before a max pool only if no window is all padding: pare's own
    // max pool pads with -inf, so asymmetric pads are refused for it.
    let symmetric = pads[0][0] == pads[0][1] && pads[1][0] == pads[1][1];
    if max && !symmetric {
        return Err(format!("asymmetric pads {pads:?} for a max pool"));
    }
    let padding = split_pads(imp, n, &mut x, pads)?;
    let op = if max {
        Op::MaxPool2d {
            kernel_size: kernel,
            stride,
            padding,
        }
    } else {
        Op::AvgPool2d {
            kernel_size: kernel,
            stride,
            padding,
            count_include_pad: attr_i(n, "count_include_pad", 0) != 0 || !symmetric,
        }
    };
    unary(imp, n, &x.0, op)
}

fn split(imp: &mut Importer, n: &NodeProto, ins: &[Option<Val>]) -> R<Vec<Val>> {
    let x = dyn_in(ins, 0)?;
    let axis = per_sample_axis(attr_i(n, "axis", 0), x.1.len(), "axis")?;
    let size = x.1[axis];
    let parts = n.output.len();
    let sizes: Vec<usize> = match opt_const(ins, 1)? {
        Some(c) => ints(c, "split")?.iter().map(|&v| v.max(0) as usize).collect(),
        None => match attr_ints(n, "split") {
            Some(v) => v.iter().map(|&v| v.max(0) as usize).collect(),
            None => {
                let chunk = size.div_ceil(parts.max(1));
                (0..parts)
                    .map(|k| chunk.min(size.saturating_sub(k * chunk)))
                    .collect()
            }
        },
    };
    if sizes.len() != parts || sizes.iter().sum::<usize>() != size {
        return Err(format!(
            "split sizes {sizes:?} do not cut axis {} of size {size} into {parts} outputs",
            axis + 1
        ));
    }
    let mut start = 0;
    let mut out = vec![];
    for s in sizes {
        out.push(unary(
            imp,
            n,
            &x.0,
            Op::Slice {
                axis: axis as isize,
                start,
                end: start + s,
            },
        )?);
        start += s;
    }
    Ok(out)
}

fn slice(imp: &mut Importer, n: &NodeProto, ins: &[Option<Val>]) -> R<Val> {
    let mut x = dyn_in(ins, 0)?;
    let starts = ints(const_in(ins, 1)?, "starts")?;
    let ends = ints(const_in(ins, 2)?, "ends")?;
    let rank = x.1.len() + 1;
    let axes = match opt_const(ins, 3)? {
        Some(c) => ints(c, "axes")?,
        None => (0..starts.len() as i64).collect(),
    };
    let steps = match opt_const(ins, 4)? {
        Some(c) => ints(c, "steps")?,
        None => vec![1; starts.len()],
    };
    if axes.len() != starts.len() || ends.len() != starts.len() || steps.len() != starts.len() {
        return Err("starts, ends, axes and steps differ in length".into());
    }
    for k in 0..starts.len() {
        let a = if axes[k] < 0 {
            axes[k] + rank as i64
        } else {
            axes[k]
        };
        if a == 0 {
            if starts[k] == 0 && ends[k] >= i32::MAX as i64 && steps[k] == 1 {
                continue;
            }
            return Err("slices the batch axis".into());
        }
        let axis = per_sample_axis(a, x.1.len(), "axis")?;
        if steps[k] != 1 {
            return Err(format!("step {}: pare slices contiguous ranges", steps[k]));
        }
        let dim = x.1[axis] as i64;
        let fix = |v: i64| (if v < 0 { v + dim } else { v }).clamp(0, dim) as usize;
        let (s, e) = (fix(starts[k]), fix(ends[k]));
        if e <= s {
            return Err(format!(
                "the slice {}..{} of axis {a} is empty",
                starts[k], ends[k]
            ));
        }
        if s == 0 && e == dim as usize {
            continue;
        }
        if let Val::Dyn { name, shape } = unary(
            imp,
            n,
            &x.0,
            Op::Slice {
                axis: axis as isize,
                start: s,
                end: e,
            },
        )? {
            x = (name, shape);
        }
    }
    Ok(alias(&x))
}

fn gather(imp: &mut Importer, n: &NodeProto, ins: &[Option<Val>]) -> R<Val> {
    match (&ins[0], &ins[1]) {
        (Some(Val::Dyn { name, shape }), Some(Val::Const(idx))) => {
            let axis = per_sample_axis(attr_i(n, "axis", 0), shape.len(), "axis")?;
            let dim = shape[axis] as i64;
            let i = match ints(idx, "indices")?.as_slice() {
                [i] => {
                    let i = if *i < 0 { i + dim } else { *i };
                    if !(0..dim).contains(&i) {
                        return Err(format!("index {i} is out of range for size {dim}"));
                    }
                    i as usize
                }
                other => return Err(format!("indices {other:?}: pare gathers one position")),
            };
            let op = if idx.shape().is_empty() {
                Op::Select { axis: axis as isize, index: i }
            } else {
                Op::Slice { axis: axis as isize, start: i, end: i + 1 }
            };
            unary(imp, n, name, op)
        }
        (Some(Val::Const(table)), Some(Val::Dyn { name, .. })) if name == INPUT && imp.input_dtype() == DType::Index => {
            let [rows, dim] = table.shape()[..] else {
                return Err(format!("an embedding table of shape {:?}: expected a matrix", table.shape()));
            };
            if attr_i(n, "axis", 0) != 0 {
                return Err("an embedding lookup gathers along axis 0".into());
            }
            let op = Op::Embedding {
                num_embeddings: rows,
                embedding_dim: dim,
            };
            let name = imp.layer_name(n, Some(&n.input[0]));
            imp.add(name, op, &[INPUT], vec![("weight", tensor(&[rows, dim], floats(table, "table")?))])
        }
        _ => Err("pare imports Gather of one constant position from a runtime value, or an embedding lookup of the model's ids".into()),
    }
}

fn pad(imp: &mut Importer, n: &NodeProto, ins: &[Option<Val>]) -> R<Val> {
    let x = dyn_in(ins, 0)?;
    let mode = attr_s(n, "mode").unwrap_or_else(|| "constant".into());
    if mode != "constant" {
        return Err(format!("mode = '{mode}': pare pads with zeros"));
    }
    if let Some(v) = opt_const(ins, 2)? {
        if scalar(v, "constant_value")? != 0.0 {
            return Err("a non-zero constant_value: pare pads with zeros".into());
        }
    }
    if opt_const(ins, 3)?.is_some() {
        return Err("the axes input is not supported (list pads for every axis)".into());
    }
    let p = ints(const_in(ins, 1)?, "pads")?;
    let rank = x.1.len() + 1;
    if p.len() != 2 * rank || p.iter().any(|&v| v < 0) {
        return Err(format!("pads {p:?}: expected {} non-negative values", 2 * rank));
    }
    if p[0] != 0 || p[rank] != 0 {
        return Err("pads the batch axis".into());
    }
    let pads = (1..rank).map(|a| [p[a] as usize, p[rank + a] as usize]).collect();
    unary(imp, n, &x.0, Op::Pad { pads })
}

/// The per-sample shape of `Reshape(x, target)`; the batch axis must stay first and whole.
fn reshape_target(per_sample: &[usize], target: &[Sym], allowzero: bool) -> R<Vec<usize>> {
    let total: usize = per_sample.iter().product();
    let full: Vec<Sym> = std::iter::once(Sym::Batch)
        .chain(per_sample.iter().map(|&d| Sym::Int(d as i64)))
        .collect();
    let mut dims: Vec<Sym> = vec![];
    for (i, &t) in target.iter().enumerate() {
        dims.push(match t {
            Sym::Int(0) if !allowzero => *full.get(i).ok_or("copies an axis the input lacks")?,
            t => t,
        });
    }
    let bad = || format!("reshape to {target:?} does not keep the batch axis first and whole");
    let rest = match dims.first() {
        Some(Sym::Batch) => &dims[1..],
        Some(Sym::Int(-1)) if !dims[1..].contains(&Sym::Int(-1)) => &dims[1..],
        _ => return Err(bad()),
    };
    let mut out = vec![];
    let mut infer = None;
    for (k, d) in rest.iter().enumerate() {
        match d {
            Sym::Int(-1) if infer.is_none() => {
                infer = Some(k);
                out.push(1);
            }
            Sym::Int(v) if *v > 0 => out.push(*v as usize),
            _ => return Err(bad()),
        }
    }
    let known: usize = out.iter().product();
    if let Some(k) = infer {
        if known == 0 || !total.is_multiple_of(known) {
            return Err(bad());
        }
        out[k] = total / known;
    }
    if out.iter().product::<usize>() != total {
        return Err(format!(
            "reshape to {target:?} changes the {total} elements of a sample"
        ));
    }
    Ok(out)
}

/// Squeeze (`insert` false) or Unsqueeze of the per-sample shape.
fn squeeze_shape(per_sample: &[usize], axes: Option<&[i64]>, insert: bool) -> R<Vec<usize>> {
    let rank = per_sample.len() + 1;
    if insert {
        let axes = axes.ok_or("Unsqueeze needs axes")?;
        let out_rank = rank + axes.len();
        let mut pos: Vec<usize> = axes
            .iter()
            .map(|&a| per_sample_axis(a, out_rank - 1, "axis").map(|a| a + 1))
            .collect::<R<_>>()?;
        pos.sort_unstable();
        let mut out = vec![];
        let mut src = per_sample.iter();
        for i in 1..out_rank {
            if pos.contains(&i) {
                out.push(1);
            } else {
                out.push(*src.next().ok_or("repeated axes")?);
            }
        }
        return Ok(out);
    }
    match axes {
        None => Ok(per_sample.iter().copied().filter(|&d| d != 1).collect()),
        Some(axes) => {
            let drop: Vec<usize> = axes
                .iter()
                .map(|&a| per_sample_axis(a, per_sample.len(), "axis"))
                .collect::<R<_>>()?;
            if let Some(&a) = drop.iter().find(|&&a| per_sample[a] != 1) {
                return Err(format!("squeezes axis {} of size {}", a + 1, per_sample[a]));
            }
            Ok(per_sample
                .iter()
                .enumerate()
                .filter(|(i, _)| !drop.contains(i))
                .map(|(_, &d)| d)
                .collect())
        }
    }
}

/// The shape `Expand(x, target)` gives `full` (right-aligned broadcasting).
fn expand_shape(full: &[Sym], target: &[Sym]) -> R<Vec<Sym>> {
    let r = full.len().max(target.len());
    let at = |v: &[Sym], i: usize| {
        if i + v.len() >= r {
            v[i + v.len() - r]
        } else {
            Sym::Int(1)
        }
    };
    (0..r)
        .map(|i| match (at(full, i), at(target, i)) {
            (a, Sym::Int(1)) => Ok(a),
            (Sym::Int(1), b) => Ok(b),
            (a, b) if a == b => Ok(a),
            (a, b) => Err(format!("cannot broadcast {a:?} to {b:?}")),
        })
        .collect()
}

/// A constant's elements broadcast to `shape` (right-aligned).
fn broadcast_const(c: &Const, shape: &[usize]) -> Const {
    let src = c.shape();
    let pad = shape.len() - src.len();
    let st = strides(src);
    let n: usize = shape.iter().product();
    let out_strides = strides(shape);
    let idx: Vec<usize> = (0..n)
        .map(|flat| {
            (0..src.len())
                .map(|a| {
                    let pos = (flat / out_strides[a + pad]) % shape[a + pad];
                    if src[a] == 1 {
                        0
                    } else {
                        pos * st[a]
                    }
                })
                .sum()
        })
        .collect();
    match c {
        Const::F32 { data, .. } => Const::F32 {
            shape: shape.to_vec(),
            data: idx.iter().map(|&i| data[i]).collect(),
        },
        Const::Ints { data, .. } => Const::Ints {
            shape: shape.to_vec(),
            data: idx.iter().map(|&i| data[i]).collect(),
        },
    }
}

/// A node whose inputs are all constants, computed at import.
fn fold(imp: &mut Importer, n: &NodeProto, ins: &[Option<Val>]) -> R<Vec<Val>> {
    let c = |k: usize| const_in(ins, k);
    let out = match n.op_type.as_str() {
        "Constant" => constant_attr(n)?,
        "Identity" | "Dropout" => c(0)?.clone(),
        "Cast" => {
            let x = c(0)?;
            match attr_i(n, "to", 0) as i32 {
                data_type::FLOAT | data_type::DOUBLE => Const::F32 {
                    shape: x.shape().to_vec(),
                    data: floats(x, "a cast value")?,
                },
                data_type::INT64
                | data_type::INT32
                | data_type::INT8
                | data_type::UINT8
                | data_type::BOOL => match x {
                    Const::F32 { shape, data } => {
                        Const::ints(shape.clone(), &data.iter().map(|&v| v as i64).collect::<Vec<_>>())
                    }
                    ints => ints.clone(),
                },
                t => return Err(format!("casts to {}", data_type::name(t))),
            }
        }
        "Unsqueeze" | "Squeeze" => {
            let x = c(0)?;
            let axes = match opt_const(ins, 1)? {
                Some(a) => Some(ints(a, "axes")?),
                None => attr_ints(n, "axes"),
            };
            // The constant's own axes (no batch): shift by one for the shared helper.
            let shape = squeeze_shape(
                x.shape(),
                axes.as_ref()
                    .map(|a| {
                        a.iter()
                            .map(|v| if *v >= 0 { v + 1 } else { *v })
                            .collect::<Vec<_>>()
                    })
                    .as_deref(),
                n.op_type == "Unsqueeze",
            )
            .map_err(|e| e.replace("the batch axis", "axis 0"))?;
            x.reshaped(shape)
        }
        "Concat" => {
            let parts = (0..ins.len()).map(c).collect::<R<Vec<_>>>()?;
            let rank = parts[0].shape().len() as i64;
            let a = attr_i(n, "axis", 0);
            let a = if a < 0 { a + rank } else { a };
            if !(0..rank).contains(&a) || parts.iter().any(|p| p.shape().len() as i64 != rank) {
                return Err("constants of different ranks or an axis out of range".into());
            }
            Const::concat(&parts, a as usize).ok_or("concatenates reals with integers")?
        }
        "Gather" => {
            let (x, idx) = (c(0)?, ints(c(1)?, "indices")?);
            let rank = x.shape().len() as i64;
            let a = attr_i(n, "axis", 0);
            let a = (if a < 0 { a + rank } else { a }) as usize;
            let dim = *x.shape().get(a).ok_or("axis out of range")? as i64;
            let picks = idx
                .iter()
                .map(|&i| {
                    let i = if i < 0 { i + dim } else { i };
                    (0..dim)
                        .contains(&i)
                        .then_some(i as usize)
                        .ok_or(format!("index {i} out of range"))
                })
                .collect::<R<Vec<_>>>()?;
            let g = x.sliced(a, &picks);
            let mut shape = x.shape()[..a].to_vec();
            shape.extend(c(1)?.shape());
            shape.extend(&x.shape()[a + 1..]);
            g.reshaped(shape)
        }
        "Slice" => {
            let x = c(0)?;
            let (starts, ends) = (ints(c(1)?, "starts")?, ints(c(2)?, "ends")?);
            let axes = match opt_const(ins, 3)? {
                Some(a) => ints(a, "axes")?,
                None => (0..starts.len() as i64).collect(),
            };
            let steps = match opt_const(ins, 4)? {
                Some(a) => ints(a, "steps")?,
                None => vec![1; starts.len()],
            };
            let mut v = x.clone();
            let rank = x.shape().len() as i64;
            for k in 0..starts.len().min(ends.len()).min(axes.len()).min(steps.len()) {
                let a = (if axes[k] < 0 { axes[k] + rank } else { axes[k] }) as usize;
                let dim = *v.shape().get(a).ok_or("axis out of range")? as i64;
                if steps[k] != 1 {
                    return Err("a step other than 1".into());
                }
                let fix = |p: i64| (if p < 0 { p + dim } else { p }).clamp(0, dim) as usize;
                let range: Vec<usize> = (fix(starts[k])..fix(ends[k])).collect();
                v = v.sliced(a, &range);
            }
            v
        }
        "Reshape" => {
            let x = c(0)?;
            let t = ints(c(1)?, "shape")?;
            let mut shape = vec![];
            let mut infer = None;
            for (i, &d) in t.iter().enumerate() {
                match d {
                    0 => shape.push(*x.shape().get(i).ok_or("copies a missing axis")?),
                    -1 => {
                        infer = Some(i);
                        shape.push(1);
                    }
                    d if d > 0 => shape.push(d as usize),
                    _ => return Err(format!("shape {t:?}")),
                }
            }
            if let Some(i) = infer {
                let known: usize = shape.iter().product();
                shape[i] = x.len() / known.max(1);
            }
            if shape.iter().product::<usize>() != x.len() {
                return Err(format!("reshape of {:?} to {t:?}", x.shape()));
            }
            x.reshaped(shape)
        }
        "Transpose" => {
            let x = c(0)?;
            let rank = x.shape().len();
            let perm: Vec<usize> = attr_ints(n, "perm")
                .map(|p| p.iter().map(|&v| v as usize).collect())
                .unwrap_or_else(|| (0..rank).rev().collect());
            let mut seen = perm.clone();
            seen.sort_unstable();
            if seen != (0..rank).collect::<Vec<_>>() {
                return Err(format!("perm {perm:?} is not a permutation of {rank} axes"));
            }
            x.transposed(&perm)
        }
        "Expand" => {
            let x = c(0)?;
            let target = match c(1)? {
                Const::Ints { data, .. } => data.clone(),
                _ => return Err("the shape must be integers".into()),
            };
            let full: Vec<Sym> = x.shape().iter().map(|&d| Sym::Int(d as i64)).collect();
            let shape = expand_shape(&full, &target)?;
            match shape.split_first() {
                // A learned constant repeated over the batch: a `parameter` node.
                Some((Sym::Batch, rest)) => {
                    let per_sample: Vec<usize> = rest
                        .iter()
                        .map(|s| match s {
                            Sym::Int(v) if *v > 0 => Ok(*v as usize),
                            _ => Err("expands to a shape with the batch size past axis 0".to_string()),
                        })
                        .collect::<R<_>>()?;
                    let mut stored = vec![1];
                    stored.extend(&per_sample);
                    let src = x.reshaped(if x.shape().len() < stored.len() {
                        let mut s = vec![1; stored.len() - x.shape().len()];
                        s.extend(x.shape());
                        s
                    } else {
                        let mut s = x.shape().to_vec();
                        s[0] = 1;
                        s
                    });
                    let data = floats(&broadcast_const(&src, &stored), "an expanded constant")?;
                    let name = imp.layer_name(n, Some(&n.input[0]));
                    let mut tensor_shape = vec![1];
                    tensor_shape.extend(&per_sample);
                    let v = imp.add(
                        name,
                        Op::Parameter { shape: per_sample },
                        &[],
                        vec![("", tensor(&tensor_shape, data))],
                    )?;
                    return Ok(vec![v]);
                }
                _ => {
                    let shape: Vec<usize> = shape
                        .iter()
                        .map(|s| match s {
                            Sym::Int(v) => *v as usize,
                            Sym::Batch => 0,
                        })
                        .collect();
                    broadcast_const(x, &shape)
                }
            }
        }
        "Add" | "Sub" | "Mul" | "Div" => {
            let (a, b) = (c(0)?, c(1)?);
            elementwise(&n.op_type, a, b)?
        }
        // Quantized weights of a QDQ model: (codes - zero point) * scale, per tensor or per axis.
        "DequantizeLinear" => {
            let x = c(0)?;
            let codes = ints(x, "codes")?;
            let scale = floats(c(1)?, "scale")?;
            let zp = match opt_const(ins, 2)? {
                Some(z) => ints(z, "zero point")?,
                None => vec![0; scale.len()],
            };
            let shape = x.shape();
            let (axis, per) = if scale.len() == 1 {
                (0, 1)
            } else {
                let rank = shape.len() as i64;
                let a = attr_i(n, "axis", 1);
                let a = (if a < 0 { a + rank } else { a }) as usize;
                if shape.get(a) != Some(&scale.len()) || zp.len() != scale.len() {
                    return Err(format!(
                        "{} scales do not match axis {a} of codes {shape:?}",
                        scale.len()
                    ));
                }
                (a, scale.len())
            };
            let inner: usize = shape.get(axis + 1..).map_or(1, |s| s.iter().product());
            let data = codes
                .iter()
                .enumerate()
                .map(|(i, &q)| {
                    let k = if per == 1 { 0 } else { (i / inner) % per };
                    (q - zp[k]) as f32 * scale[k]
                })
                .collect();
            Const::F32 {
                shape: shape.to_vec(),
                data,
            }
        }
        other => return Err(format!("{other} of constants only is not folded")),
    };
    Ok(vec![Val::Const(out)])
}

/// Elementwise arithmetic on constants of one shape, or with a scalar.
fn elementwise(op: &str, a: &Const, b: &Const) -> R<Const> {
    let shape = broadcast(a.shape(), b.shape())?;
    let (a, b) = (broadcast_const(a, &shape), broadcast_const(b, &shape));
    match (&a, &b) {
        (Const::Ints { data: x, .. }, Const::Ints { data: y, .. }) => {
            let data = x
                .iter()
                .zip(y)
                .map(|(p, q)| match (p, q) {
                    (Sym::Int(p), Sym::Int(q)) => Ok(Sym::Int(match op {
                        "Add" => p + q,
                        "Sub" => p - q,
                        "Mul" => p * q,
                        _ if *q == 0 => return Err("integer division by zero".to_string()),
                        _ => p.div_euclid(*q),
                    })),
                    _ => Err("arithmetic on the batch size".into()),
                })
                .collect::<R<Vec<_>>>()?;
            Ok(Const::Ints { shape, data })
        }
        _ => {
            let (x, y) = (floats(&a, "operand")?, floats(&b, "operand")?);
            let f = |p: f32, q: f32| match op {
                "Add" => p + q,
                "Sub" => p - q,
                "Mul" => p * q,
                _ => p / q,
            };
            Ok(Const::F32 {
                shape,
                data: x.iter().zip(&y).map(|(&p, &q)| f(p, q)).collect(),
            })
        }
    }
}

/// The value of a `Constant` node.
fn constant_attr(n: &NodeProto) -> R<Const> {
    let a = n.attribute.first().ok_or("has no value attribute")?;
    match a.name.as_str() {
        "value" => crate::onnx::consts::from_proto(a.t.as_ref().ok_or("value holds no tensor")?),
        "value_float" => Ok(Const::F32 {
            shape: vec![],
            data: vec![a.f.unwrap_or(0.0)],
        }),
        "value_floats" => Ok(Const::F32 {
            shape: vec![a.floats.len()],
            data: a.floats.clone(),
        }),
        "value_int" => Ok(Const::ints(vec![], &[a.i.unwrap_or(0)])),
        "value_ints" => Ok(Const::ints(vec![a.ints.len()], &a.ints)),
        other => Err(format!("a constant given as {other} is not supported")),
    }
}
