//! Uniform (affine) k-bit quantization: the definitions every quantizer in pare shares.
//!
//! For a range `[lo, hi]` and `bits` = b:
//! - **symmetric**: integers `q` in `[-(2^(b-1) - 1), 2^(b-1) - 1]` (the "restricted" range, so
//!   that `-q` is representable and zero is exact), zero point 0, scale `s = max(|lo|, |hi|) / qmax`;
//! - **asymmetric**: integers in `[0, 2^b - 1]`, the range first widened to contain 0,
//!   `s = (hi - lo) / (2^b - 1)`, zero point `z = clamp(round(-lo / s), 0, 2^b - 1)` (an integer,
//!   so 0.0 is exactly representable: zero padding and ReLU zeros stay exact).
//!
//! `quantize(x) = clamp(round_half_even(x / s) + z, qmin, qmax)` and
//! `dequantize(q) = (q - z) * s`, both in f32. For `x` inside the representable range
//! `[(qmin - z) s, (qmax - z) s]` the error is at most `s / 2` (plus f32 rounding); outside it
//! the value saturates. Rounding half to even matches PyTorch's `torch.round` and numpy. A zero
//! range gives scale 1, so an all-zero tensor stays exactly zero.

use serde::{Deserialize, Serialize};

/// Bit width and signedness of a uniform quantizer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scheme {
    pub bits: u32,
    pub symmetric: bool,
}

/// Bit widths of uniform quantization: 1 bit is binarization, not an affine grid; above 16
/// bits gains nothing over f32 storage.
pub const BITS: std::ops::RangeInclusive<u32> = 2..=16;

/// Bit widths of k-means weight sharing: the width of a codebook index (1 bit: two centroids).
pub const SHARE_BITS: std::ops::RangeInclusive<u32> = 1..=16;

/// Widths of the sparse encoding's relative index (the gap to the next stored weight).
pub const GAP_BITS: std::ops::RangeInclusive<u32> = 1..=16;

impl Scheme {
    /// Smallest and largest integer level.
    pub fn levels(&self) -> (i32, i32) {
        let b = self.bits.clamp(*BITS.start(), *BITS.end());
        if self.symmetric {
            let m = (1i32 << (b - 1)) - 1;
            (-m, m)
        } else {
            (0, (1i32 << b) - 1)
        }
    }

    /// Scale and zero point for values in `[lo, hi]`.
    pub fn params(&self, lo: f32, hi: f32) -> QParams {
        let (qmin, qmax) = self.levels();
        let (lo, hi) = (lo.min(0.0), hi.max(0.0));
        if self.symmetric {
            let m = lo.abs().max(hi.abs());
            let scale = if m > 0.0 && m.is_finite() {
                m / qmax as f32
            } else {
                1.0
            };
            QParams {
                scale,
                zero_point: 0,
                qmin,
                qmax,
            }
        } else {
            let span = hi - lo;
            let scale = if span > 0.0 && span.is_finite() {
                span / (qmax - qmin) as f32
            } else {
                1.0
            };
            let zero_point = ((-lo / scale).round_ties_even() as i32).clamp(qmin, qmax);
            QParams {
                scale,
                zero_point,
                qmin,
                qmax,
            }
        }
    }

    /// Scale and zero point covering every value of `data`.
    pub fn params_for(&self, data: &[f32]) -> QParams {
        let (lo, hi) = data
            .iter()
            .fold((0f32, 0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        self.params(lo, hi)
    }
}

/// The affine map of one quantized tensor (or one channel of it).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct QParams {
    pub scale: f32,
    pub zero_point: i32,
    pub qmin: i32,
    pub qmax: i32,
}

impl QParams {
    pub fn quantize(&self, x: f32) -> i32 {
        let q = (x / self.scale).round_ties_even();
        // NaN becomes the zero point; the conversion saturates (an infinity or a huge value
        // becomes i64::MAX or MIN), and so must the addition, or +inf would wrap to qmin.
        let q = if q.is_nan() { 0.0 } else { q };
        (q as i64)
            .saturating_add(self.zero_point as i64)
            .clamp(self.qmin as i64, self.qmax as i64) as i32
    }

    pub fn dequantize(&self, q: i32) -> f32 {
        (q - self.zero_point) as f32 * self.scale
    }

    /// `dequantize(quantize(x))`: the value a fake quantizer outputs.
    pub fn fake(&self, x: f32) -> f32 {
        self.dequantize(self.quantize(x))
    }

    /// The interval that quantizes without saturating.
    pub fn range(&self) -> (f32, f32) {
        (self.dequantize(self.qmin), self.dequantize(self.qmax))
    }
}

/// Quantization of one weight tensor: per tensor or per slice along axis 0 (output channel).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightQuant {
    pub bits: u32,
    pub per_channel: bool,
    #[serde(default = "yes")]
    pub symmetric: bool,
}

fn yes() -> bool {
    true
}

impl WeightQuant {
    pub fn scheme(&self) -> Scheme {
        Scheme {
            bits: self.bits,
            symmetric: self.symmetric,
        }
    }

    /// Number of slices with their own parameters for a tensor of `shape`.
    pub fn rows(&self, shape: &[usize]) -> usize {
        if self.per_channel {
            shape.first().copied().unwrap_or(1).max(1)
        } else {
            1
        }
    }

    /// One `QParams` per slice, from the slice's min and max.
    pub fn params(&self, shape: &[usize], data: &[f32]) -> Vec<QParams> {
        let rows = self.rows(shape);
        let chunk = (data.len() / rows).max(1);
        data.chunks(chunk).map(|c| self.scheme().params_for(c)).collect()
    }

    /// The integer codes of `data` and the parameters that map them back.
    pub fn quantize(&self, shape: &[usize], data: &[f32]) -> (Vec<i32>, Vec<QParams>) {
        let params = self.params(shape, data);
        let chunk = (data.len() / params.len()).max(1);
        let codes = data
            .chunks(chunk)
            .zip(&params)
            .flat_map(|(c, p)| c.iter().map(|&v| p.quantize(v)))
            .collect();
        (codes, params)
    }

    /// The fake-quantized values (what the layer computes with).
    pub fn fake(&self, shape: &[usize], data: &[f32]) -> Vec<f32> {
        let (codes, params) = self.quantize(shape, data);
        dequantize(&codes, &params)
    }
}

/// Values of integer codes laid out as equal slices, one per `QParams`.
pub fn dequantize(codes: &[i32], params: &[QParams]) -> Vec<f32> {
    let chunk = (codes.len() / params.len().max(1)).max(1);
    codes
        .chunks(chunk)
        .zip(params)
        .flat_map(|(c, p)| c.iter().map(|&q| p.dequantize(q)))
        .collect()
}

/// The codes (row-major) and row scales of a `[rows, width]` weight whose every row is
/// `scale_r * q` with integer `|q| <= limit`, or `None`. The grid is found from the largest
/// magnitude of the row or of the tensor (per-channel or per-tensor quantization) divided by
/// the top code of a symmetric 2- to 8-bit quantizer; the coarsest step the codes allow is
/// kept. What the integer kernels and quantized ONNX export read a baked weight as.
pub fn weight_grid(w: &[f32], rows: usize, width: usize, limit: i32) -> Option<(Vec<i8>, Vec<f32>)> {
    if rows == 0 || width == 0 || w.len() != rows * width || w.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let top = |s: &[f32]| s.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let whole = top(w);
    let mut codes = Vec::with_capacity(w.len());
    let mut scale = Vec::with_capacity(rows);
    for row in w.chunks(width) {
        let own = top(row);
        let found = [127, 63, 31, 15, 7, 3, 1, 64]
            .iter()
            .filter(|&&d| d <= limit)
            .flat_map(|&d| [own / d as f32, whole / d as f32])
            .find_map(|s| on_grid(row, s, limit).map(|q| (s, q)));
        let (s, q) = match found {
            Some(f) => f,
            None if own == 0.0 => (1.0, vec![0; width]),
            None => return None,
        };
        // The coarsest step the codes allow: a 4-bit row found on the 63-code grid (each code
        // a multiple of 9) becomes codes within +-7, which pack two to a byte.
        let g = q.iter().fold(0i32, |g, &v| gcd(g, (v as i32).abs()));
        let (s, q) = if g > 1 {
            (s * g as f32, q.iter().map(|&v| v / g as i8).collect())
        } else {
            (s, q)
        };
        scale.push(s);
        codes.extend(q);
    }
    Some((codes, scale))
}

fn gcd(a: i32, b: i32) -> i32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The codes of `row` on the grid of step `s`, if every value is within 1e-3 of a multiple
/// of `s` no larger than `limit` times it.
fn on_grid(row: &[f32], s: f32, limit: i32) -> Option<Vec<i8>> {
    if !(s > 0.0 && s.is_finite()) {
        return None;
    }
    row.iter()
        .map(|&v| {
            let t = v / s;
            let q = t.round();
            ((t - q).abs() <= 1e-3 && q.abs() <= limit as f32).then_some(q as i8)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn error_within_half_a_step(
            data in prop::collection::vec(-100f32..100.0, 1..200),
            bits in 2u32..=8,
            symmetric in any::<bool>(),
        ) {
            let s = Scheme { bits, symmetric };
            let p = s.params_for(&data);
            // The rounded zero point may shift the range by up to half a step, which the
            // bound below still covers.
            for &x in &data {
                let err = (p.fake(x) - x).abs();
                prop_assert!(err <= p.scale * 0.5 * (1.0 + 1e-4) + 1e-6, "x {x} err {err} scale {}", p.scale);
            }
        }

        #[test]
        fn zero_is_exact_and_codes_in_range(
            data in prop::collection::vec(-10f32..10.0, 1..100),
            bits in 2u32..=8,
            symmetric in any::<bool>(),
        ) {
            let p = Scheme { bits, symmetric }.params_for(&data);
            prop_assert_eq!(p.fake(0.0), 0.0);
            for &x in &data {
                let q = p.quantize(x);
                prop_assert!(q >= p.qmin && q <= p.qmax);
            }
        }

        #[test]
        fn per_channel_never_worse_than_per_tensor(
            data in prop::collection::vec(-5f32..5.0, 12..=12),
            bits in 2u32..=8,
        ) {
            let shape = [3usize, 4];
            let err = |per_channel| {
                let q = WeightQuant { bits, per_channel, symmetric: true };
                q.fake(&shape, &data).iter().zip(&data).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max)
            };
            let bound = Scheme { bits, symmetric: true }.params_for(&data).scale * 0.5 * 1.001;
            prop_assert!(err(true) <= bound);
            prop_assert!(err(false) <= bound);
        }
    }

    #[test]
    fn levels_and_saturation() {
        let s = Scheme {
            bits: 8,
            symmetric: true,
        };
        assert_eq!(s.levels(), (-127, 127));
        let p = s.params(-1.0, 1.0);
        assert_eq!(p.quantize(5.0), 127);
        assert_eq!(p.quantize(f32::NAN), 0);
        // Infinities and values past i64 saturate to the ends, with or without a zero point.
        assert_eq!((p.quantize(f32::INFINITY), p.quantize(-1e30)), (127, -127));
        let z = Scheme {
            bits: 8,
            symmetric: false,
        }
        .params(-2.0, 3.0);
        assert!(z.zero_point > 0);
        assert_eq!((z.quantize(f32::INFINITY), z.quantize(1e30)), (255, 255));
        assert_eq!((z.quantize(f32::NEG_INFINITY), z.quantize(-1e30)), (0, 0));
        let a = Scheme {
            bits: 4,
            symmetric: false,
        }
        .params(0.0, 6.0);
        assert_eq!((a.qmin, a.qmax, a.zero_point), (0, 15, 0));
        assert_eq!(a.fake(6.0), 6.0);
        // Ties go to even, like torch.round.
        let unit = QParams {
            scale: 1.0,
            zero_point: 0,
            qmin: -8,
            qmax: 7,
        };
        assert_eq!(unit.quantize(2.5), 2);
        assert_eq!(unit.quantize(3.5), 4);
        // An all-zero tensor stays zero.
        assert_eq!(s.params_for(&[0.0; 4]).fake(0.0), 0.0);
    }
}
