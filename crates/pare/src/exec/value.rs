//! Conversions between pare's [`Tensor`] and the engine's tensors, and the rank-tagged value
//! that flows along graph edges (vectors `[B, F]` or images `[B, C, H, W]`).

use burn::tensor::{Device, Tensor as BT, TensorData};

use crate::ir::Tensor;

/// An activation on the engine: rank 2 (`[batch, features]`) or rank 4 (`[batch, C, H, W]`).
#[derive(Clone)]
pub(crate) enum Value {
    V2(BT<2>),
    V4(BT<4>),
}

impl Value {
    pub(crate) fn from_tensor(t: &Tensor, dev: &Device) -> Option<Value> {
        match *t.shape() {
            [a, b] => Some(Value::V2(upload(t.data().to_vec(), [a, b], dev))),
            [a, b, c, d] => Some(Value::V4(upload(t.data().to_vec(), [a, b, c, d], dev))),
            _ => None,
        }
    }

    pub(crate) fn dims(&self) -> Vec<usize> {
        match self {
            Value::V2(t) => t.dims().to_vec(),
            Value::V4(t) => t.dims().to_vec(),
        }
    }

    pub(crate) fn to_tensor(&self) -> Tensor {
        match self {
            Value::V2(t) => download(t.clone()),
            Value::V4(t) => download(t.clone()),
        }
    }
}

/// Applies a rank-generic function to whichever rank the value has.
macro_rules! map_value {
    ($v:expr, |$t:ident| $body:expr) => {
        match $v {
            $crate::exec::value::Value::V2($t) => $crate::exec::value::Value::V2($body),
            $crate::exec::value::Value::V4($t) => $crate::exec::value::Value::V4($body),
        }
    };
}
pub(crate) use map_value;

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
