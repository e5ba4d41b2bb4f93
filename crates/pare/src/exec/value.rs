//! Conversions between pare's [`Tensor`] and the engine's tensors, and the value that flows
//! along graph edges: an engine tensor of rank 1 to 6 (batch axis first).
//!
//! The engine's tensors carry their rank in the type (`Tensor<D>`), so a graph value is an enum
//! over ranks; [`map_value!`] applies a rank-generic expression to whichever rank a value has,
//! and [`reshape`] moves between ranks.

use burn::tensor::{Device, Tensor as BT, TensorData};

use crate::ir::Tensor;

/// The largest rank a value may have: the batch axis plus five per-sample axes.
pub(crate) const MAX_RANK: usize = 6;

/// An activation on the engine, `[batch, ..per-sample shape]`.
#[derive(Clone)]
pub(crate) enum Value {
    V1(BT<1>),
    V2(BT<2>),
    V3(BT<3>),
    V4(BT<4>),
    V5(BT<5>),
    V6(BT<6>),
}

/// Applies a rank-generic expression to whichever rank the value has; the result keeps it.
macro_rules! map_value {
    ($v:expr, |$t:ident| $body:expr) => {
        match $v {
            $crate::exec::value::Value::V1($t) => $crate::exec::value::Value::V1($body),
            $crate::exec::value::Value::V2($t) => $crate::exec::value::Value::V2($body),
            $crate::exec::value::Value::V3($t) => $crate::exec::value::Value::V3($body),
            $crate::exec::value::Value::V4($t) => $crate::exec::value::Value::V4($body),
            $crate::exec::value::Value::V5($t) => $crate::exec::value::Value::V5($body),
            $crate::exec::value::Value::V6($t) => $crate::exec::value::Value::V6($body),
        }
    };
}
pub(crate) use map_value;

/// Applies a rank-generic expression whose result is not a value (a shape, a download).
macro_rules! with_value {
    ($v:expr, |$t:ident| $body:expr) => {
        match $v {
            $crate::exec::value::Value::V1($t) => $body,
            $crate::exec::value::Value::V2($t) => $body,
            $crate::exec::value::Value::V3($t) => $body,
            $crate::exec::value::Value::V4($t) => $body,
            $crate::exec::value::Value::V5($t) => $body,
            $crate::exec::value::Value::V6($t) => $body,
        }
    };
}
#[allow(unused_imports)]
pub(crate) use with_value;

/// Pairs two values of one rank and applies a rank-generic expression; `None` for two ranks.
macro_rules! zip_values {
    ($a:expr, $b:expr, |$x:ident, $y:ident| $body:expr) => {
        match ($a, $b) {
            (Value::V1($x), Value::V1($y)) => Some(Value::V1($body)),
            (Value::V2($x), Value::V2($y)) => Some(Value::V2($body)),
            (Value::V3($x), Value::V3($y)) => Some(Value::V3($body)),
            (Value::V4($x), Value::V4($y)) => Some(Value::V4($body)),
            (Value::V5($x), Value::V5($y)) => Some(Value::V5($body)),
            (Value::V6($x), Value::V6($y)) => Some(Value::V6($body)),
            _ => None,
        }
    };
}
pub(crate) use zip_values;

/// The first `D` entries of `s` as an array (callers pass slices of length `D`).
pub(crate) fn arr<const D: usize>(s: &[usize]) -> [usize; D] {
    let mut a = [0; D];
    a.copy_from_slice(&s[..D]);
    a
}

/// The value with the same elements in row-major order under `shape` (any rank 1..=6).
pub(crate) fn reshape(v: Value, shape: &[usize]) -> Value {
    fn to<const D: usize>(t: BT<D>, shape: &[usize]) -> Value {
        match shape.len() {
            1 => Value::V1(t.reshape(arr::<1>(shape))),
            2 => Value::V2(t.reshape(arr::<2>(shape))),
            3 => Value::V3(t.reshape(arr::<3>(shape))),
            4 => Value::V4(t.reshape(arr::<4>(shape))),
            5 => Value::V5(t.reshape(arr::<5>(shape))),
            6 => Value::V6(t.reshape(arr::<6>(shape))),
            r => unreachable!("rank {r} is checked against {MAX_RANK} by the graph"),
        }
    }
    with_value!(v, |t| to(t, shape))
}

impl Value {
    /// Uploads a pare tensor; `None` for a rank outside 1..=6.
    pub(crate) fn from_tensor(t: &Tensor, dev: &Device) -> Option<Value> {
        let s = t.shape();
        if s.is_empty() || s.len() > MAX_RANK {
            return None;
        }
        let flat: BT<1> = upload(t.data().to_vec(), [t.len()], dev);
        Some(reshape(Value::V1(flat), s))
    }

    pub(crate) fn dims(&self) -> Vec<usize> {
        with_value!(self, |t| t.dims().to_vec())
    }

    pub(crate) fn rank(&self) -> usize {
        with_value!(self, |t| t.dims().len())
    }

    pub(crate) fn to_tensor(&self) -> Tensor {
        with_value!(self, |t| download(t.clone()))
    }

    /// The value as `[batch, features]` (every per-sample axis flattened).
    pub(crate) fn flat(&self) -> BT<2> {
        let d = self.dims();
        let per: usize = d[1..].iter().product();
        match reshape(self.clone(), &[d[0], per]) {
            Value::V2(t) => t,
            _ => unreachable!("reshaped to rank 2"),
        }
    }
}

pub(crate) fn upload<const D: usize>(data: Vec<f32>, shape: [usize; D], dev: &Device) -> BT<D> {
    BT::from_data(TensorData::new(data, shape), dev)
}

/// Copies an engine tensor back into a pare tensor.
pub(crate) fn download<const D: usize>(t: BT<D>) -> Tensor {
    let shape = t.dims().to_vec();
    let data = t
        .into_data()
        .try_into_vec::<f32>()
        .expect("pare only creates f32 tensors");
    Tensor::from_vec(shape, data)
}
