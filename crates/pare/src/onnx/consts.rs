//! Values known when an ONNX file is imported: initializers, `Constant` nodes, and the integer
//! vectors of shape arithmetic (`Shape -> Gather -> Unsqueeze -> Concat -> Reshape`, as
//! `torch.onnx` writes `x.view(x.size(0), -1)`), whose one unknown is the batch size. They are
//! folded at import, so a pare graph receives only constants and runtime values.

use super::proto::{data_type, TensorProto};

/// One element of an integer constant: a number, or the batch size (unknown until run time).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sym {
    Int(i64),
    Batch,
}

/// A constant tensor: real values, or integers that may hold the batch size.
#[derive(Clone, Debug, PartialEq)]
pub enum Const {
    F32 { shape: Vec<usize>, data: Vec<f32> },
    Ints { shape: Vec<usize>, data: Vec<Sym> },
}

impl Const {
    pub fn shape(&self) -> &[usize] {
        match self {
            Const::F32 { shape, .. } | Const::Ints { shape, .. } => shape,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Const::F32 { data, .. } => data.len(),
            Const::Ints { data, .. } => data.len(),
        }
    }

    pub fn ints(shape: Vec<usize>, v: &[i64]) -> Const {
        Const::Ints {
            shape,
            data: v.iter().map(|&i| Sym::Int(i)).collect(),
        }
    }

    /// The values as f32 (integers converted), or `None` when one is the batch size.
    pub fn floats(&self) -> Option<Vec<f32>> {
        match self {
            Const::F32 { data, .. } => Some(data.clone()),
            Const::Ints { data, .. } => data
                .iter()
                .map(|s| match s {
                    Sym::Int(i) => Some(*i as f32),
                    Sym::Batch => None,
                })
                .collect(),
        }
    }

    /// The values as integers, or `None` for real values or a batch size.
    pub fn known_ints(&self) -> Option<Vec<i64>> {
        match self {
            Const::F32 { .. } => None,
            Const::Ints { data, .. } => data
                .iter()
                .map(|s| match s {
                    Sym::Int(i) => Some(*i),
                    Sym::Batch => None,
                })
                .collect(),
        }
    }

    /// The same elements under another shape (the caller checked the count).
    pub fn reshaped(&self, shape: Vec<usize>) -> Const {
        match self {
            Const::F32 { data, .. } => Const::F32 {
                shape,
                data: data.clone(),
            },
            Const::Ints { data, .. } => Const::Ints {
                shape,
                data: data.clone(),
            },
        }
    }

    /// Elements picked by flat index into a new shape.
    fn pick(&self, shape: Vec<usize>, idx: &[usize]) -> Const {
        match self {
            Const::F32 { data, .. } => Const::F32 {
                shape,
                data: idx.iter().map(|&i| data[i]).collect(),
            },
            Const::Ints { data, .. } => Const::Ints {
                shape,
                data: idx.iter().map(|&i| data[i]).collect(),
            },
        }
    }

    /// Axis permutation.
    pub fn transposed(&self, perm: &[usize]) -> Const {
        let shape = self.shape();
        let out: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
        let strides = strides(shape);
        let n = self.len();
        let mut idx = Vec::with_capacity(n);
        let mut pos = vec![0usize; out.len()];
        for _ in 0..n {
            idx.push(pos.iter().zip(perm).map(|(&p, &a)| p * strides[a]).sum());
            for d in (0..out.len()).rev() {
                pos[d] += 1;
                if pos[d] < out[d] {
                    break;
                }
                pos[d] = 0;
            }
        }
        self.pick(out, &idx)
    }

    /// Positions `start..end` (step `step`) of `axis`.
    pub fn sliced(&self, axis: usize, range: &[usize]) -> Const {
        let shape = self.shape();
        let (outer, inner) = (
            shape[..axis].iter().product::<usize>(),
            shape[axis + 1..].iter().product::<usize>(),
        );
        let mut idx = vec![];
        for o in 0..outer {
            for &r in range {
                idx.extend((0..inner).map(|i| (o * shape[axis] + r) * inner + i));
            }
        }
        let mut out = shape.to_vec();
        out[axis] = range.len();
        self.pick(out, &idx)
    }

    /// Concatenation along `axis` (same kind and other sizes: checked by the caller).
    pub fn concat(parts: &[&Const], axis: usize) -> Option<Const> {
        let first = parts.first()?;
        let shape = first.shape();
        let outer: usize = shape[..axis].iter().product();
        let mut out = shape.to_vec();
        out[axis] = parts.iter().map(|p| p.shape()[axis]).sum();
        let chunk = |p: &Const| p.shape()[axis..].iter().product::<usize>();
        match first {
            Const::F32 { .. } => {
                let mut data = vec![];
                for o in 0..outer {
                    for p in parts {
                        let Const::F32 { data: d, .. } = p else {
                            return None;
                        };
                        data.extend_from_slice(&d[o * chunk(p)..(o + 1) * chunk(p)]);
                    }
                }
                Some(Const::F32 { shape: out, data })
            }
            Const::Ints { .. } => {
                let mut data = vec![];
                for o in 0..outer {
                    for p in parts {
                        let Const::Ints { data: d, .. } = p else {
                            return None;
                        };
                        data.extend_from_slice(&d[o * chunk(p)..(o + 1) * chunk(p)]);
                    }
                }
                Some(Const::Ints { shape: out, data })
            }
        }
    }
}

/// Row-major strides of a shape.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1] * shape[d + 1];
    }
    s
}

/// Little-endian values of `width` bytes each from a tensor's raw data.
fn raw_values<T>(
    raw: &[u8],
    width: usize,
    type_name: &str,
    read: impl Fn(&[u8]) -> T,
) -> Result<Vec<T>, String> {
    if !raw.len().is_multiple_of(width) {
        return Err(format!(
            "raw data of {} bytes is not a whole number of {type_name} values",
            raw.len()
        ));
    }
    Ok(raw.chunks_exact(width).map(read).collect())
}

/// A `TensorProto` as a constant: FLOAT/DOUBLE as f32, integer and boolean types as integers.
/// Errors say what is wrong with it (the caller adds the file and the tensor's name).
pub fn from_proto(t: &TensorProto) -> Result<Const, String> {
    if t.data_location == 1 {
        return Err(
            "its data is in an external file; pare reads single-file models (save with all tensors inside)"
                .into(),
        );
    }
    let shape = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("has a negative dimension {d}")))
        .collect::<Result<Vec<usize>, String>>()?;
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&n| n <= crate::ir::graph::MAX_ELEMENTS)
        .ok_or_else(|| {
            format!(
                "dimensions {shape:?} hold more than {} elements",
                crate::ir::graph::MAX_ELEMENTS
            )
        })?;
    let raw = &t.raw_data;
    let bytes = |c: &[u8]| -> [u8; 8] {
        let mut b = [0u8; 8];
        b[..c.len()].copy_from_slice(c);
        b
    };
    let (floats, ints): (Option<Vec<f32>>, Option<Vec<i64>>) = match t.data_type {
        data_type::FLOAT if raw.is_empty() => (Some(t.float_data.clone()), None),
        data_type::FLOAT => (
            Some(raw_values(raw, 4, "FLOAT", |c| {
                f32::from_le_bytes(bytes(c)[..4].try_into().unwrap())
            })?),
            None,
        ),
        data_type::DOUBLE if raw.is_empty() => {
            (Some(t.double_data.iter().map(|&v| v as f32).collect()), None)
        }
        data_type::DOUBLE => (
            Some(raw_values(raw, 8, "DOUBLE", |c| {
                f64::from_le_bytes(bytes(c)) as f32
            })?),
            None,
        ),
        data_type::INT64 if raw.is_empty() => (None, Some(t.int64_data.clone())),
        data_type::INT64 => (
            None,
            Some(raw_values(raw, 8, "INT64", |c| i64::from_le_bytes(bytes(c)))?),
        ),
        data_type::INT32 | data_type::INT8 | data_type::UINT8 | data_type::BOOL if raw.is_empty() => {
            (None, Some(t.int32_data.iter().map(|&v| v as i64).collect()))
        }
        data_type::INT32 => (
            None,
            Some(raw_values(raw, 4, "INT32", |c| {
                i32::from_le_bytes(bytes(c)[..4].try_into().unwrap()) as i64
            })?),
        ),
        data_type::INT8 => (None, Some(raw.iter().map(|&b| b as i8 as i64).collect())),
        data_type::UINT8 | data_type::BOOL => (None, Some(raw.iter().map(|&b| b as i64).collect())),
        other => {
            return Err(format!(
                "has element type {} ({other}); pare reads FLOAT, DOUBLE and integer tensors",
                data_type::name(other)
            ))
        }
    };
    let count = floats
        .as_ref()
        .map_or_else(|| ints.as_ref().map_or(0, Vec::len), Vec::len);
    if count != n {
        return Err(format!(
            "holds {count} values ({} bytes of raw data) but its dimensions {shape:?} need {n}",
            raw.len()
        ));
    }
    Ok(match (floats, ints) {
        (Some(data), _) => Const::F32 { shape, data },
        (None, Some(data)) => Const::ints(shape, &data),
        (None, None) => unreachable!("every element type gives values"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_slice_concat() {
        let c = Const::F32 {
            shape: vec![2, 3],
            data: vec![0., 1., 2., 3., 4., 5.],
        };
        assert_eq!(
            c.transposed(&[1, 0]).floats().unwrap(),
            vec![0., 3., 1., 4., 2., 5.]
        );
        assert_eq!(c.sliced(1, &[1, 2]).floats().unwrap(), vec![1., 2., 4., 5.]);
        let cat = Const::concat(&[&c, &c.sliced(1, &[0])], 1).unwrap();
        assert_eq!(cat.shape(), &[2, 4]);
        assert_eq!(cat.floats().unwrap(), vec![0., 1., 2., 0., 3., 4., 5., 3.]);
    }

    #[test]
    fn proto_sizes_are_checked() {
        let t = TensorProto {
            dims: vec![2, 2],
            data_type: data_type::FLOAT,
            raw_data: vec![0; 12],
            ..Default::default()
        };
        let e = from_proto(&t).unwrap_err();
        assert!(e.contains("holds 3 values") && e.contains("need 4"), "{e}");
        let t = TensorProto {
            dims: vec![-1],
            data_type: data_type::FLOAT,
            ..Default::default()
        };
        assert!(from_proto(&t).unwrap_err().contains("negative"));
    }
}
