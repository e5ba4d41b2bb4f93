//! The `fake_quant` op.

use serde::{Deserialize, Serialize};

/// Simulated quantization of the activations flowing through (see [`super::quant`]):
/// `y = dequantize(quantize(x))` with a calibrated scale and zero point. The backward pass
/// is the clipped straight-through estimator: gradient 1 inside the representable range,
/// 0 where the value saturates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FakeQuant {
    pub bits: u32,
    pub symmetric: bool,
    pub scale: f32,
    pub zero_point: i32,
}
