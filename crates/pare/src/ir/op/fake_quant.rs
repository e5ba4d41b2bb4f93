//! The `fake_quant` op.

use serde::{Deserialize, Serialize};

use super::rules::Rules;
use super::AxisRule;
use crate::ir::quant::{QParams, Scheme, BITS};

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

impl FakeQuant {
    /// The affine map this node simulates.
    pub fn qparams(&self) -> QParams {
        let scheme = Scheme {
            bits: self.bits,
            symmetric: self.symmetric,
        };
        let (qmin, qmax) = scheme.levels();
        QParams {
            scale: self.scale,
            zero_point: self.zero_point,
            qmin,
            qmax,
        }
    }
}

impl Rules for FakeQuant {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let (bits, scale) = (self.bits, self.scale);
        if !BITS.contains(&bits) {
            return Err(format!("fake_quant bits={bits} must be in {BITS:?}"));
        }
        if !(scale > 0.0 && scale.is_finite()) {
            return Err(format!("fake_quant scale={scale} must be positive and finite"));
        }
        Ok(inputs[0].to_vec())
    }

    fn axis_rule(&self, inputs: &[&[usize]], _out_rank: usize) -> AxisRule {
        AxisRule::same_axes(inputs[0].len(), &[])
    }

    fn is_elementwise(&self) -> bool {
        true
    }
}
