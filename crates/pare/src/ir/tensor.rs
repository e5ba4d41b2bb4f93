//! pare's own dense tensor: a shape and row-major values, held as f32 or, for compressed or
//! loaded weights, as they are stored: integer codes with row scales, half-precision floats,
//! sign bits with row magnitudes, or plain 32-bit integers.
//!
//! Parameters, activations handed back to callers, masks and optimizer state are all this type,
//! so that every compression method can read and rewrite them without touching the tensor engine.
//! Every tensor reads as f32 ([`Tensor::data`]); a tensor held otherwise expands to f32 only
//! when something reads it so (once, then kept), and turns into f32 when written
//! ([`Tensor::data_mut`]). The native engine reads codes and sign bits themselves
//! ([`Tensor::store`]), so a quantized or binary model loaded from a `.pare` file runs without
//! an f32 copy of those weights.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// How a tensor's values are held. Rows are the slices of axis 0 (a layer's output channels).
#[derive(Clone, Debug, PartialEq)]
pub enum Store {
    F32(Vec<f32>),
    /// Symmetric integer codes: value `scales[r] * codes[i]` for element `i` of row `r` (one
    /// scale per row, or one for the whole tensor). `bits` (2..=8) is the quantizer's width,
    /// every code lies within `±(2^(bits-1) - 1)`.
    Int {
        bits: u32,
        codes: Vec<i8>,
        scales: Vec<f32>,
    },
    /// Asymmetric integer codes (`u8`, `bits` 2..=8, each within `0..2^bits`) with a scale and
    /// a zero point per row (or one pair for the whole tensor): value
    /// `scales[r] * (codes[i] - zero_points[r])`.
    Uint {
        bits: u32,
        codes: Vec<u8>,
        scales: Vec<f32>,
        zero_points: Vec<i32>,
    },
    /// Half-precision floats as loaded or stored: IEEE binary16 (`bf16` false) or bfloat16
    /// (`bf16` true) bit patterns.
    Half {
        bf16: bool,
        bits: Vec<u16>,
    },
    /// One sign bit per element, least significant bit first (bit `i % 8` of byte `i / 8` is
    /// element `i`): value `magnitudes[r]` where the bit is 1, `-magnitudes[r]` where it is 0
    /// (binary networks' `alpha_r * sign(w)`).
    Signs {
        bits: Vec<u8>,
        magnitudes: Vec<f32>,
    },
    /// Integers as a checkpoint holds them (index buffers such as a transformer's position
    /// ids, masks, counters): read as f32 where used, exact up to 2^24 in magnitude, and
    /// written back to safetensors as I32.
    I32(Vec<i32>),
}

impl Store {
    /// The name of the element type: `f32`, `int8`, `int4`, ..., `1-bit` or `i32`.
    pub fn dtype(&self) -> String {
        match self {
            Store::F32(_) => "f32".into(),
            Store::Int { bits, .. } => format!("int{bits}"),
            Store::Uint { bits, .. } => format!("uint{bits}"),
            Store::Half { bf16, .. } => if *bf16 { "bf16" } else { "f16" }.into(),
            Store::Signs { .. } => "1-bit".into(),
            Store::I32(_) => "i32".into(),
        }
    }
}

/// A dense, row-major tensor (see the module's notes on how its values are held).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(from = "Plain", into = "Plain")]
pub struct Tensor {
    shape: Vec<usize>,
    store: Store,
    /// The f32 values of a tensor not held as f32, once something read them so.
    view: OnceLock<Vec<f32>>,
}

/// The serialized form: shape and f32 values.
#[derive(Serialize, Deserialize)]
struct Plain {
    shape: Vec<usize>,
    data: Vec<f32>,
}

impl From<Plain> for Tensor {
    fn from(p: Plain) -> Tensor {
        Tensor::f32(p.shape, p.data)
    }
}

impl From<Tensor> for Plain {
    fn from(t: Tensor) -> Plain {
        Plain {
            shape: t.shape.clone(),
            data: t.into_data(),
        }
    }
}

/// Tensors are equal when their shapes and values are, however they are held.
impl PartialEq for Tensor {
    fn eq(&self, other: &Tensor) -> bool {
        self.shape == other.shape && self.data() == other.data()
    }
}

impl Tensor {
    fn f32(shape: Vec<usize>, data: Vec<f32>) -> Tensor {
        Tensor {
            shape,
            store: Store::F32(data),
            view: OnceLock::new(),
        }
    }

    /// Builds a tensor; `None` when `data.len()` is not the product of `shape`.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Option<Self> {
        (shape.iter().product::<usize>() == data.len()).then(|| Tensor::f32(shape, data))
    }

    /// Builds a tensor from a shape and data the caller knows are consistent.
    ///
    /// # Panics
    /// When `data.len()` differs from the product of `shape` (a programming error, never user input).
    pub fn from_vec(shape: impl Into<Vec<usize>>, data: Vec<f32>) -> Self {
        let shape = shape.into();
        assert_eq!(
            shape.iter().product::<usize>(),
            data.len(),
            "tensor data does not match shape {shape:?}"
        );
        Tensor::f32(shape, data)
    }

    /// A tensor held as symmetric integer codes (see [`Store::Int`]); `None` unless the codes
    /// fill `shape`, lie within the `bits`-bit range, and there is one finite scale per row
    /// (or one in all).
    pub fn from_codes(shape: Vec<usize>, bits: u32, codes: Vec<i8>, scales: Vec<f32>) -> Option<Self> {
        let top = (1i32 << (bits.clamp(2, 8) - 1)) - 1;
        let ok = (2..=8).contains(&bits)
            && codes.len() == shape.iter().product::<usize>()
            && (scales.len() == 1 || scales.len() == rows_of(&shape))
            && scales.iter().all(|s| (s * top as f32).is_finite())
            && codes.iter().all(|&q| (q as i32).abs() <= top);
        ok.then_some(Tensor {
            shape,
            store: Store::Int { bits, codes, scales },
            view: OnceLock::new(),
        })
    }

    /// A tensor held as asymmetric integer codes (see [`Store::Uint`]); `None` unless the codes
    /// fill `shape` within the `bits`-bit range, and there is one scale and zero point (within
    /// the codes' range) per row or one in all, every value finite.
    pub fn from_ucodes(
        shape: Vec<usize>,
        bits: u32,
        codes: Vec<u8>,
        scales: Vec<f32>,
        zero_points: Vec<i32>,
    ) -> Option<Self> {
        let top = (1i32 << bits.clamp(2, 8)) - 1;
        let ok = (2..=8).contains(&bits)
            && codes.len() == shape.iter().product::<usize>()
            && (scales.len() == 1 || scales.len() == rows_of(&shape))
            && zero_points.len() == scales.len()
            && zero_points.iter().all(|z| (0..=top).contains(z))
            && scales.iter().all(|s| (s * top as f32).is_finite())
            && codes.iter().all(|&q| i32::from(q) <= top);
        ok.then_some(Tensor {
            shape,
            store: Store::Uint {
                bits,
                codes,
                scales,
                zero_points,
            },
            view: OnceLock::new(),
        })
    }

    /// A tensor held as half-precision floats (see [`Store::Half`]); `None` unless there is a
    /// value per element.
    pub fn from_half(shape: Vec<usize>, bf16: bool, bits: Vec<u16>) -> Option<Self> {
        (bits.len() == shape.iter().product::<usize>()).then_some(Tensor {
            shape,
            store: Store::Half { bf16, bits },
            view: OnceLock::new(),
        })
    }

    /// A tensor held as sign bits and row magnitudes (see [`Store::Signs`]); `None` unless
    /// there is a bit per element (bits past the last unused and 0) and a finite magnitude per
    /// row.
    pub fn from_signs(shape: Vec<usize>, bits: Vec<u8>, magnitudes: Vec<f32>) -> Option<Self> {
        let n: usize = shape.iter().product();
        let tail_clear = n.is_multiple_of(8) || bits.last().is_some_and(|b| b >> (n % 8) == 0);
        let ok = bits.len() == n.div_ceil(8)
            && tail_clear
            && magnitudes.len() == rows_of(&shape)
            && magnitudes.iter().all(|m| m.is_finite());
        ok.then_some(Tensor {
            shape,
            store: Store::Signs { bits, magnitudes },
            view: OnceLock::new(),
        })
    }

    /// A tensor held as 32-bit integers (see [`Store::I32`]); `None` unless there is a value
    /// per element.
    pub fn from_i32(shape: Vec<usize>, values: Vec<i32>) -> Option<Self> {
        (values.len() == shape.iter().product::<usize>()).then_some(Tensor {
            shape,
            store: Store::I32(values),
            view: OnceLock::new(),
        })
    }

    pub fn zeros(shape: impl Into<Vec<usize>>) -> Self {
        Self::full(shape, 0.0)
    }

    pub fn ones(shape: impl Into<Vec<usize>>) -> Self {
        Self::full(shape, 1.0)
    }

    pub fn full(shape: impl Into<Vec<usize>>, value: f32) -> Self {
        let shape = shape.into();
        let n = shape.iter().product();
        Tensor::f32(shape, vec![value; n])
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// How the values are held.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The values as f32, row-major. A tensor held otherwise expands on the first call and
    /// keeps the expansion.
    pub fn data(&self) -> &[f32] {
        match &self.store {
            Store::F32(v) => v,
            _ => self.view.get_or_init(|| self.expand()),
        }
    }

    /// The values as f32 for writing: a tensor held otherwise becomes an f32 tensor.
    pub fn data_mut(&mut self) -> &mut [f32] {
        if !matches!(self.store, Store::F32(_)) {
            let data = self.view.take().unwrap_or_else(|| self.expand());
            self.store = Store::F32(data);
        }
        match &mut self.store {
            Store::F32(v) => v,
            _ => unreachable!("made f32 above"),
        }
    }

    pub fn into_data(mut self) -> Vec<f32> {
        match std::mem::replace(&mut self.store, Store::F32(Vec::new())) {
            Store::F32(v) => v,
            held => {
                self.store = held;
                self.view.take().unwrap_or_else(|| self.expand())
            }
        }
    }

    /// Each element's code, zero point and scale, row-major, for a tensor held as codes (none
    /// otherwise); rows are `width` long.
    fn codes(&self, width: usize) -> Box<dyn Iterator<Item = (i32, i32, f32)> + '_> {
        // Row `i / width`, or the one row of a per-tensor scale.
        let row = move |i: usize, per_row: usize| if per_row == 1 { 0 } else { i / width.max(1) };
        match &self.store {
            Store::Int { codes, scales, .. } => Box::new(
                codes
                    .iter()
                    .enumerate()
                    .map(move |(i, &q)| (i32::from(q), 0, scales[row(i, scales.len())])),
            ),
            Store::Uint {
                codes,
                scales,
                zero_points,
                ..
            } => Box::new(codes.iter().enumerate().map(move |(i, &q)| {
                let r = row(i, scales.len());
                (i32::from(q), zero_points[r], scales[r])
            })),
            _ => Box::new(std::iter::empty()),
        }
    }

    /// The f32 values of a tensor not held as f32.
    fn expand(&self) -> Vec<f32> {
        let width = self.len() / rows_of(&self.shape).max(1);
        let row = |i: usize| i / width.max(1);
        match &self.store {
            Store::F32(v) => v.clone(),
            Store::Int { .. } | Store::Uint { .. } => {
                self.codes(width).map(|(q, z, s)| s * (q - z) as f32).collect()
            }
            Store::Half { bf16, bits } => bits.iter().map(|&b| half_to_f32(*bf16, b)).collect(),
            Store::I32(v) => v.iter().map(|&x| x as f32).collect(),
            Store::Signs { bits, magnitudes } => (0..self.len())
                .map(|i| {
                    let m = magnitudes[row(i)];
                    if bits[i / 8] >> (i % 8) & 1 == 1 {
                        m
                    } else {
                        -m
                    }
                })
                .collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether a tensor not held as f32 keeps an f32 expansion (something read it as f32):
    /// tests check that packing a layer made none.
    pub fn holds_f32_copy(&self) -> bool {
        self.view.get().is_some()
    }

    /// The first NaN or infinite value with its flat position: weights must not hold one
    /// (every loader refuses them, naming the tensor). Codes and bits are checked as they are
    /// held (their scales bound every value), without expanding them.
    pub fn first_non_finite(&self) -> Option<(usize, f32)> {
        match &self.store {
            Store::F32(v) => v.iter().copied().enumerate().find(|(_, v)| !v.is_finite()),
            Store::Half { bf16, bits } => bits
                .iter()
                .map(|&b| half_to_f32(*bf16, b))
                .enumerate()
                .find(|(_, v)| !v.is_finite()),
            Store::Int { .. } | Store::Uint { .. } | Store::Signs { .. } | Store::I32(_) => None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fraction of exactly-zero entries (pruned weights are exact zeros).
    pub fn sparsity(&self) -> f64 {
        match self.len() {
            0 => 0.0,
            n => self.zero_count() as f64 / n as f64,
        }
    }

    /// How many entries are exactly zero, counted as the values are held (codes, bits and
    /// halves are not expanded).
    pub fn zero_count(&self) -> usize {
        let width = self.len() / rows_of(&self.shape);
        match &self.store {
            Store::F32(v) => v.iter().filter(|v| **v == 0.0).count(),
            Store::Int { .. } | Store::Uint { .. } => {
                self.codes(width).filter(|&(q, z, s)| q == z || s == 0.0).count()
            }
            Store::Half { bits, .. } => bits.iter().filter(|b| **b & 0x7fff == 0).count(),
            Store::Signs { magnitudes, .. } => magnitudes.iter().filter(|m| **m == 0.0).count() * width,
            Store::I32(v) => v.iter().filter(|x| **x == 0).count(),
        }
    }

    /// Multiplies row `r` (slice `r` of axis 0) by `factors[r]` (a BatchNorm folded into the
    /// layer before it). Codes keep their values and take the factor into their row scales,
    /// sign bits into their magnitudes (flipped where the factor is negative); f32 otherwise.
    ///
    /// # Panics
    /// When `factors` has not one value per row (callers take it from the same layer).
    pub fn scale_rows(&mut self, factors: &[f32]) {
        let rows = rows_of(&self.shape);
        assert_eq!(factors.len(), rows, "one factor per row of {:?}", self.shape);
        let width = self.len() / rows;
        self.view = OnceLock::new();
        let held = match &mut self.store {
            Store::Int { bits, scales, .. } => {
                let top = ((1i32 << (*bits - 1)) - 1) as f32;
                let scaled: Vec<f32> = (0..rows).map(|r| scales[r % scales.len()] * factors[r]).collect();
                let fits = scaled.iter().all(|s| (s * top).is_finite());
                if fits {
                    *scales = scaled;
                }
                fits
            }
            Store::Signs { bits, magnitudes } => {
                let fits = factors.iter().all(|f| f.is_finite());
                for (r, &f) in factors.iter().enumerate().filter(|_| fits) {
                    magnitudes[r] *= f.abs();
                    if f < 0.0 {
                        for k in r * width..(r + 1) * width {
                            bits[k / 8] ^= 1 << (k % 8);
                        }
                    }
                }
                fits
            }
            Store::Uint {
                bits,
                scales,
                zero_points,
                ..
            } => {
                let top = ((1i32 << *bits) - 1) as f32;
                let scaled: Vec<f32> = (0..rows).map(|r| scales[r % scales.len()] * factors[r]).collect();
                let fits = scaled.iter().all(|s| (s * top).is_finite());
                if fits {
                    *zero_points = (0..rows).map(|r| zero_points[r % zero_points.len()]).collect();
                    *scales = scaled;
                }
                fits
            }
            Store::F32(_) | Store::Half { .. } | Store::I32(_) => false,
        };
        if !held {
            for (row, f) in self.data_mut().chunks_mut(width.max(1)).zip(factors) {
                row.iter_mut().for_each(|v| *v *= f);
            }
        }
    }

    /// Largest absolute elementwise difference; `f32::INFINITY` when shapes differ.
    pub fn max_abs_diff(&self, other: &Tensor) -> f32 {
        if self.shape != other.shape {
            return f32::INFINITY;
        }
        self.data()
            .iter()
            .zip(other.data())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max)
    }

    /// The slices at `indices` along `axis`, in that order (structured pruning keeps channels
    /// this way), as f32.
    ///
    /// # Panics
    /// When `axis` is out of range or an index is out of bounds (callers derive both from the
    /// tensor's own shape).
    pub fn select(&self, axis: usize, indices: &[usize]) -> Tensor {
        let outer: usize = self.shape[..axis].iter().product();
        let dim = self.shape[axis];
        let inner: usize = self.shape[axis + 1..].iter().product();
        let values = self.data();
        let mut data = Vec::with_capacity(outer * indices.len() * inner);
        for o in 0..outer {
            for &i in indices {
                assert!(
                    i < dim,
                    "index {i} out of range for axis {axis} of {:?}",
                    self.shape
                );
                let start = (o * dim + i) * inner;
                data.extend_from_slice(&values[start..start + inner]);
            }
        }
        let mut shape = self.shape.clone();
        shape[axis] = indices.len();
        Tensor::f32(shape, data)
    }

    /// Index of the largest value in each row of a `[rows, cols]` tensor (see [`argmax`]).
    pub fn argmax_rows(&self) -> Vec<usize> {
        let cols = *self.shape.last().unwrap_or(&1);
        if cols == 0 {
            return Vec::new();
        }
        self.data().chunks(cols).map(argmax).collect()
    }
}

/// The f32 value of a half-precision bit pattern (exact).
fn half_to_f32(bf16: bool, bits: u16) -> f32 {
    if bf16 {
        half::bf16::from_bits(bits).to_f32()
    } else {
        half::f16::from_bits(bits).to_f32()
    }
}

/// The rows of a tensor of this shape, as per-channel quantizers count them: the size of
/// axis 0, at least 1.
fn rows_of(shape: &[usize]) -> usize {
    shape.first().copied().unwrap_or(1).max(1)
}

/// Index of the largest value of `row`, the first of equal ones (as PyTorch's argmax); 0 for
/// an empty row or one of NaNs.
pub fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |best, (i, &v)| if v > best.1 { (i, v) } else { best },
        )
        .0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int() -> Tensor {
        Tensor::from_codes(vec![2, 3], 4, vec![1, -7, 0, 3, 2, -1], vec![0.5, 0.25]).unwrap()
    }

    #[test]
    fn codes_read_as_their_values_and_turn_f32_when_written() {
        let t = int();
        assert_eq!(t.store().dtype(), "int4");
        assert!(!t.holds_f32_copy());
        assert_eq!(t.sparsity(), 1.0 / 6.0);
        assert!(!t.holds_f32_copy(), "sparsity counts codes");
        let want = [0.5, -3.5, 0.0, 0.75, 0.5, -0.25];
        assert_eq!(t.data(), want);
        assert!(t.holds_f32_copy());
        assert_eq!(t, Tensor::from_vec(vec![2, 3], want.to_vec()));
        let mut w = t.clone();
        w.data_mut()[0] = 9.0;
        assert_eq!(w.store().dtype(), "f32");
        assert_eq!(w.data()[..2], [9.0, -3.5]);
        assert_eq!(t.clone().into_data(), want);
        // Serialized as f32 values, read back as f32.
        let back: Tensor = serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.store().dtype(), "f32");
        let per_tensor = Tensor::from_codes(vec![2, 2], 8, vec![127, -127, 0, 1], vec![0.5]).unwrap();
        assert_eq!(per_tensor.data(), [63.5, -63.5, 0.0, 0.5]);
    }

    #[test]
    fn held_forms_are_checked() {
        let codes =
            |bits, codes: Vec<i8>, scales: Vec<f32>| Tensor::from_codes(vec![2, 2], bits, codes, scales);
        assert!(codes(4, vec![8, 0, 0, 0], vec![1.0]).is_none(), "past 4 bits");
        assert!(codes(8, vec![-128, 0, 0, 0], vec![1.0]).is_none(), "symmetric");
        assert!(codes(8, vec![0; 3], vec![1.0]).is_none(), "too few");
        assert!(codes(8, vec![0; 4], vec![1.0; 3]).is_none(), "scales per row");
        assert!(codes(8, vec![0; 4], vec![f32::NAN]).is_none());
        assert!(codes(8, vec![0; 4], vec![f32::MAX]).is_none(), "values overflow");
        assert!(codes(1, vec![0; 4], vec![1.0]).is_none());
        assert!(Tensor::from_signs(vec![3, 3], vec![0, 0], vec![1.0; 3]).is_some());
        assert!(
            Tensor::from_signs(vec![3, 3], vec![0, 2], vec![1.0; 3]).is_none(),
            "bit past the end"
        );
        assert!(Tensor::from_signs(vec![3, 3], vec![0], vec![1.0; 3]).is_none());
        assert!(Tensor::from_signs(vec![3, 3], vec![0, 0], vec![1.0; 2]).is_none());
    }

    #[test]
    fn asymmetric_codes_read_as_their_values() {
        let u =
            Tensor::from_ucodes(vec![2, 2], 8, vec![0, 255, 10, 12], vec![0.5, 2.0], vec![128, 10]).unwrap();
        assert_eq!(u.store().dtype(), "uint8");
        assert_eq!(u.sparsity(), 0.25);
        assert_eq!(u.data(), [-64.0, 63.5, 0.0, 4.0]);
        let mut s = u.clone();
        s.scale_rows(&[2.0, -1.0]);
        assert_eq!(s.store().dtype(), "uint8");
        assert_eq!(s.data(), [-128.0, 127.0, -0.0, -4.0]);
        let bad = |codes: Vec<u8>, z: Vec<i32>| Tensor::from_ucodes(vec![2, 2], 4, codes, vec![1.0], z);
        assert!(bad(vec![16, 0, 0, 0], vec![0]).is_none(), "past 4 bits");
        assert!(bad(vec![0; 4], vec![16]).is_none(), "zero point past 4 bits");
        assert!(bad(vec![0; 4], vec![0, 0]).is_none(), "a zero point per scale");
        assert!(bad(vec![15, 0, 0, 0], vec![3]).is_some());
    }

    #[test]
    fn halves_read_as_their_values() {
        let bits = [0x3c00, 0xc000, 0x0001, 0x7c00];
        let f16 = Tensor::from_half(vec![4], false, bits.to_vec()).unwrap();
        assert_eq!(f16.store().dtype(), "f16");
        assert_eq!(f16.first_non_finite(), Some((3, f32::INFINITY)));
        assert!(!f16.holds_f32_copy());
        assert_eq!(f16.data()[..3], [1.0, -2.0, 2f32.powi(-24)]);
        let bf16 = Tensor::from_half(vec![2], true, vec![0x3f80, 0x8000]).unwrap();
        assert_eq!((bf16.store().dtype().as_str(), bf16.sparsity()), ("bf16", 0.5));
        assert_eq!(bf16.data(), [1.0, -0.0]);
        assert!(Tensor::from_half(vec![3], true, vec![0; 2]).is_none());
    }

    #[test]
    fn signs_read_as_magnitudes() {
        // Rows of 3: bits 0b_101_110 (least significant first).
        let t = Tensor::from_signs(vec![2, 3], vec![0b10_1110], vec![2.0, 0.5]).unwrap();
        assert_eq!(t.store().dtype(), "1-bit");
        assert_eq!(t.data(), [-2.0, 2.0, 2.0, 0.5, -0.5, 0.5]);
    }

    #[test]
    fn integers_read_as_their_values_and_scale_as_f32() {
        let mut t = Tensor::from_i32(vec![2, 2], vec![0, -3, 1 << 24, 7]).unwrap();
        assert_eq!((t.store().dtype().as_str(), t.zero_count()), ("i32", 1));
        assert_eq!(t.first_non_finite(), None);
        assert_eq!(t.data(), [0.0, -3.0, 16_777_216.0, 7.0]);
        t.scale_rows(&[0.5, 1.0]);
        assert_eq!(t.store().dtype(), "f32", "scaled integers are no longer integers");
        assert_eq!(t.data(), [0.0, -1.5, 16_777_216.0, 7.0]);
        assert!(Tensor::from_i32(vec![3], vec![1, 2]).is_none());
    }

    #[test]
    fn scaled_rows_keep_codes_and_bits() {
        let f = [2.0, -1.0];
        let scaled = |t: &Tensor| {
            let d = t.data();
            Tensor::from_vec(
                vec![2, 3],
                d.iter().enumerate().map(|(i, v)| v * f[i / 3]).collect(),
            )
        };
        let want = scaled(&int());
        let mut t = int();
        t.scale_rows(&f);
        assert_eq!(t.store().dtype(), "int4");
        assert_eq!(t, want);
        let s = Tensor::from_signs(vec![2, 3], vec![0b10_1110], vec![2.0, 0.5]).unwrap();
        let want = scaled(&s);
        let mut s = s.clone();
        assert_eq!(s.data().len(), 6);
        s.scale_rows(&f);
        assert_eq!(s.store().dtype(), "1-bit");
        assert!(!s.holds_f32_copy(), "a stale expansion is dropped");
        assert_eq!(s, want);
        let mut big = Tensor::from_codes(vec![1, 2], 8, vec![1, 2], vec![1e36]).unwrap();
        big.scale_rows(&[1e6]);
        assert_eq!(big.store().dtype(), "f32", "scales past f32 fall back");
        let mut d = Tensor::from_vec(vec![2, 1], vec![1.0, 2.0]);
        d.scale_rows(&[3.0, 0.5]);
        assert_eq!(d.data(), [3.0, 1.0]);
    }
}
