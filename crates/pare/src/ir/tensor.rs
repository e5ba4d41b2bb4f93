//! pare's own dense f32 tensor: a shape and a row-major buffer.
//!
//! Parameters, activations handed back to callers, masks and optimizer state are all this type,
//! so that every compression method can read and rewrite them without touching the tensor engine.

use serde::{Deserialize, Serialize};

/// A dense, row-major f32 tensor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Vec<f32>,
}

impl Tensor {
    /// Builds a tensor; `None` when `data.len()` is not the product of `shape`.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Option<Self> {
        (shape.iter().product::<usize>() == data.len()).then_some(Tensor { shape, data })
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
        Tensor { shape, data }
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
        Tensor {
            shape,
            data: vec![value; n],
        }
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn data(&self) -> &[f32] {
        &self.data
    }

    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }

    pub fn into_data(self) -> Vec<f32> {
        self.data
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// The first NaN or infinite value with its flat position: weights must not hold one
    /// (every loader refuses them, naming the tensor).
    pub fn first_non_finite(&self) -> Option<(usize, f32)> {
        self.data
            .iter()
            .copied()
            .enumerate()
            .find(|(_, v)| !v.is_finite())
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Fraction of exactly-zero entries (pruned weights are exact zeros).
    pub fn sparsity(&self) -> f64 {
        if self.data.is_empty() {
            return 0.0;
        }
        self.data.iter().filter(|v| **v == 0.0).count() as f64 / self.data.len() as f64
    }

    /// Largest absolute elementwise difference; `f32::INFINITY` when shapes differ.
    pub fn max_abs_diff(&self, other: &Tensor) -> f32 {
        if self.shape != other.shape {
            return f32::INFINITY;
        }
        self.data
            .iter()
            .zip(&other.data)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max)
    }

    /// The slices at `indices` along `axis`, in that order (structured pruning keeps channels
    /// this way).
    ///
    /// # Panics
    /// When `axis` is out of range or an index is out of bounds (callers derive both from the
    /// tensor's own shape).
    pub fn select(&self, axis: usize, indices: &[usize]) -> Tensor {
        let outer: usize = self.shape[..axis].iter().product();
        let dim = self.shape[axis];
        let inner: usize = self.shape[axis + 1..].iter().product();
        let mut data = Vec::with_capacity(outer * indices.len() * inner);
        for o in 0..outer {
            for &i in indices {
                assert!(
                    i < dim,
                    "index {i} out of range for axis {axis} of {:?}",
                    self.shape
                );
                let start = (o * dim + i) * inner;
                data.extend_from_slice(&self.data[start..start + inner]);
            }
        }
        let mut shape = self.shape.clone();
        shape[axis] = indices.len();
        Tensor { shape, data }
    }

    /// Index of the largest value in each row of a `[rows, cols]` tensor (see [`argmax`]).
    pub fn argmax_rows(&self) -> Vec<usize> {
        let cols = *self.shape.last().unwrap_or(&1);
        if cols == 0 {
            return Vec::new();
        }
        self.data.chunks(cols).map(argmax).collect()
    }
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
