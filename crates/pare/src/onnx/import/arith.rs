//! Arithmetic with constants and the patterns of standard ops that become one pare op: a
//! MatMul's bias, the input normalization, exact GELU, QuantizeLinear / DequantizeLinear pairs.

use super::ops::*;
use super::{Importer, Val};
use crate::ir::graph::{DType, INPUT};
use crate::ir::op::Op;
use crate::ir::op::{Linear, Scale};
use crate::onnx::consts::Const;
use crate::onnx::proto::{data_type, NodeProto};

/// A per-tensor quantizer's scale, zero point and code type (INT8 signed, UINT8 not).
pub(super) fn qparams(imp: &Importer, n: &NodeProto, ins: &[Option<Val>]) -> R<(f32, i32, bool)> {
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

/// Add / Sub / Mul / Div: of two runtime values, of a runtime value and a constant (a Linear's
/// bias, the model's input normalization, a scale, or a `parameter` node), or a GELU step.
pub(super) fn arith(imp: &mut Importer, n: &NodeProto, ins: &[Option<Val>]) -> R<Val> {
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
pub(super) fn with_const(
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
            if let Op::Linear(Linear { bias, .. }) = &mut node.op {
                *bias = true;
            }
            imp.params.insert(format!("{}.bias", x.0), tensor(&[out], values));
            imp.biasless.remove(&x.0);
            return Ok(alias(&x));
        }
    }
    // (input - mean) / std at the head of the graph: the model's input normalization, one
    // value or one per channel of an image (a constant [C, 1, 1] or [1, C, 1, 1]).
    let per_channel = x.1.len() == 3
        && values.len() == x.1[0]
        && c.shape().iter().rev().take(2).all(|&d| d == 1)
        && c.shape().len() <= 4;
    if x.0 == INPUT && (is_scalar || per_channel) && !const_first && imp.input_dtype() == DType::F32 {
        let first_read = reads_once(0);
        let norm = &mut imp.normalize;
        if op == "Sub" && first_read && norm.is_identity() {
            norm.std = vec![1.0; values.len()];
            norm.mean = values;
            return Ok(alias(&x));
        }
        let unit_std = norm.std.iter().all(|&s| s == 1.0);
        if op == "Div" && first_read && unit_std && values.iter().all(|&v| v > 0.0 && v.is_finite()) {
            // A per-channel step after a shared one makes both per channel.
            let channels = values.len().max(norm.mean.len());
            norm.mean.resize(channels, norm.mean[0]);
            norm.std = if values.len() == channels {
                values
            } else {
                vec![values[0]; channels]
            };
            return Ok(alias(&x));
        }
    }
    if is_scalar && !const_first && matches!(op, "Mul" | "Div") {
        let f = if op == "Mul" {
            values[0] as f64
        } else {
            1.0 / values[0] as f64
        };
        return unary(imp, n, &x.0, Op::Scale(Scale { factor: f }));
    }
    if is_scalar && const_first && op == "Mul" {
        return unary(
            imp,
            n,
            &x.0,
            Op::Scale(Scale {
                factor: values[0] as f64,
            }),
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
