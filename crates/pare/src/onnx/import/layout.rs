//! Ops that move or pick elements: Split, Slice, Gather, Pad, and the shape rules of Reshape,
//! Squeeze / Unsqueeze and Expand, with the batch axis kept first and whole.

use super::ops::*;
use super::{Importer, Val};
use crate::ir::graph::{DType, INPUT, MAX_ELEMENTS};
use crate::ir::op::{elements, Op};
use crate::ir::op::{Embedding, Pad, Select, Slice};
use crate::onnx::consts::{strides, Const, Sym};
use crate::onnx::proto::NodeProto;

pub(super) fn split(imp: &mut Importer, n: &NodeProto, ins: &[Option<Val>]) -> R<Vec<Val>> {
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
    let total = sizes.iter().try_fold(0usize, |a, &b| a.checked_add(b));
    if sizes.len() != parts || total != Some(size) {
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
            Op::Slice(Slice {
                axis: axis as isize,
                start,
                end: start + s,
            }),
        )?);
        start += s;
    }
    Ok(out)
}

pub(super) fn slice(imp: &mut Importer, n: &NodeProto, ins: &[Option<Val>]) -> R<Val> {
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
            Op::Slice(Slice {
                axis: axis as isize,
                start: s,
                end: e,
            }),
        )? {
            x = (name, shape);
        }
    }
    Ok(alias(&x))
}

pub(super) fn gather(imp: &mut Importer, n: &NodeProto, ins: &[Option<Val>]) -> R<Val> {
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
                Op::Select(Select { axis: axis as isize, index: i })
            } else {
                Op::Slice(Slice { axis: axis as isize, start: i, end: i + 1 })
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
            let op = Op::Embedding(Embedding {
                num_embeddings: rows,
                embedding_dim: dim,
            });
            let name = imp.layer_name(n, n.input.first().map(String::as_str));
            imp.add(name, op, &[INPUT], vec![("weight", tensor(&[rows, dim], floats(table, "table")?))])
        }
        _ => Err("pare imports Gather of one constant position from a runtime value, or an embedding lookup of the model's ids".into()),
    }
}

pub(super) fn pad(imp: &mut Importer, n: &NodeProto, ins: &[Option<Val>]) -> R<Val> {
    let x = dyn_in(ins, 0)?;
    let mode = attr_s(n, "mode").unwrap_or_else(|| "constant".into());
    if mode != "constant" {
        return Err(format!("mode = '{mode}': pare pads with zeros"));
    }
    let value = match opt_const(ins, 2)? {
        Some(v) => scalar(v, "constant_value")?,
        None => 0.0,
    };
    if !value.is_finite() {
        return Err(format!("constant_value {value}: pare pads with finite values"));
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
    unary(imp, n, &x.0, Op::Pad(Pad { pads, value }))
}

/// The per-sample shape of `Reshape(x, target)`; the batch axis must stay first and whole.
pub(super) fn reshape_target(per_sample: &[usize], target: &[Sym], allowzero: bool) -> R<Vec<usize>> {
    let total = bounded(per_sample)?;
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
    let known = bounded(&out)?;
    if let Some(k) = infer {
        if known == 0 || !total.is_multiple_of(known) {
            return Err(bad());
        }
        out[k] = total / known;
    }
    if bounded(&out)? != total {
        return Err(format!(
            "reshape to {target:?} changes the {total} elements of a sample"
        ));
    }
    Ok(out)
}

/// Squeeze (`insert` false) or Unsqueeze of the per-sample shape.
pub(super) fn squeeze_shape(per_sample: &[usize], axes: Option<&[i64]>, insert: bool) -> R<Vec<usize>> {
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
pub(super) fn expand_shape(full: &[Sym], target: &[Sym]) -> R<Vec<Sym>> {
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

/// The elements of a shape a file asks for, refused past pare's cap (`MAX_ELEMENTS`) before
/// anything is computed or allocated from it: the product of its non-zero axes is bounded,
/// so no product or stride of it overflows.
pub(super) fn bounded(shape: &[usize]) -> R<usize> {
    let nonzero: Vec<usize> = shape.iter().copied().filter(|&d| d != 0).collect();
    match elements(&nonzero) {
        Some(n) if n <= MAX_ELEMENTS => Ok(elements(shape).unwrap_or(0)),
        _ => Err(format!("shape {shape:?} holds more than {MAX_ELEMENTS} elements")),
    }
}

/// A constant's elements broadcast to `shape` (right-aligned).
pub(super) fn broadcast_const(c: &Const, shape: &[usize]) -> R<Const> {
    let src = c.shape();
    let pad = shape.len() - src.len();
    let st = strides(src);
    let n = bounded(shape)?;
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
    Ok(match c {
        Const::F32 { data, .. } => Const::F32 {
            shape: shape.to_vec(),
            data: idx.iter().map(|&i| data[i]).collect(),
        },
        Const::Ints { data, .. } => Const::Ints {
            shape: shape.to_vec(),
            data: idx.iter().map(|&i| data[i]).collect(),
        },
    })
}
