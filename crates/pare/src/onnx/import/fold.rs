//! Nodes whose inputs are all constants, computed at import.

use super::ops::*;
use super::{Importer, Val};
use crate::ir::op::Parameter;
use crate::ir::op::{broadcast, Op};
use crate::onnx::consts::{Const, Sym};
use crate::onnx::proto::{data_type, NodeProto};

use super::layout::{bounded, broadcast_const, expand_shape, squeeze_shape};
/// A node whose inputs are all constants, computed at import.
pub(super) fn fold(imp: &mut Importer, n: &NodeProto, ins: &[Option<Val>]) -> R<Vec<Val>> {
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
            let rank = parts.first().ok_or("has no inputs")?.shape().len() as i64;
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
                let known = bounded(&shape)?;
                shape[i] = x.len() / known.max(1);
            }
            if bounded(&shape)? != x.len() {
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
                    let data = floats(&broadcast_const(&src, &stored)?, "an expanded constant")?;
                    let name = imp.layer_name(n, n.input.first().map(String::as_str));
                    let mut tensor_shape = vec![1];
                    tensor_shape.extend(&per_sample);
                    let v = imp.add(
                        name,
                        Op::Parameter(Parameter { shape: per_sample }),
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
                    broadcast_const(x, &shape)?
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
pub(super) fn elementwise(op: &str, a: &Const, b: &Const) -> R<Const> {
    let shape = broadcast(a.shape(), b.shape())?;
    let (a, b) = (broadcast_const(a, &shape)?, broadcast_const(b, &shape)?);
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
pub(super) fn constant_attr(n: &NodeProto) -> R<Const> {
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
