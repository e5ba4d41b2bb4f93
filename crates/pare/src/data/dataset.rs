//! The `Dataset` trait and its two implementations: an in-memory set and an index subset.

use std::sync::Arc;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};

/// A labelled image classification set. Pixels are in [0, 1]; normalization belongs to the
/// model (`ir::InputSpec::normalize`) and is applied when batches are built.
pub trait Dataset: Send + Sync {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Per-sample shape, e.g. `[1, 28, 28]`.
    fn sample_shape(&self) -> &[usize];
    fn num_classes(&self) -> usize;
    /// The pixels of sample `i`, row-major, `sample_shape().product()` values.
    fn image(&self, i: usize) -> &[f32];
    fn label(&self, i: usize) -> u32;
}

/// A data set held in memory.
#[derive(Clone, Debug)]
pub struct InMemory {
    shape: Vec<usize>,
    classes: usize,
    images: Vec<f32>,
    labels: Vec<u32>,
}

impl InMemory {
    /// Checks that images and labels agree and every label is below `classes`.
    pub fn new(shape: Vec<usize>, classes: usize, images: Vec<f32>, labels: Vec<u32>) -> Result<Self> {
        let per: usize = shape.iter().product();
        if per == 0 || images.len() != per * labels.len() {
            return Err(Error::Data(format!(
                "{} pixel values do not make {} images of shape {shape:?}",
                images.len(),
                labels.len()
            )));
        }
        if let Some(bad) = labels.iter().find(|&&l| l as usize >= classes) {
            return Err(Error::Data(format!(
                "label {bad} is out of range for {classes} classes"
            )));
        }
        Ok(InMemory {
            shape,
            classes,
            images,
            labels,
        })
    }
}

impl Dataset for InMemory {
    fn len(&self) -> usize {
        self.labels.len()
    }
    fn sample_shape(&self) -> &[usize] {
        &self.shape
    }
    fn num_classes(&self) -> usize {
        self.classes
    }
    fn image(&self, i: usize) -> &[f32] {
        let per = self.images.len() / self.labels.len();
        &self.images[i * per..(i + 1) * per]
    }
    fn label(&self, i: usize) -> u32 {
        self.labels[i]
    }
}

/// A view of some samples of another set, by index (a train/validation split, a calibration set).
#[derive(Clone)]
pub struct Subset {
    parent: Arc<dyn Dataset>,
    indices: Vec<usize>,
}

impl Subset {
    /// # Errors
    /// When an index is out of range of the parent.
    pub fn new(parent: Arc<dyn Dataset>, indices: Vec<usize>) -> Result<Self> {
        if let Some(bad) = indices.iter().find(|&&i| i >= parent.len()) {
            return Err(Error::Data(format!(
                "subset index {bad} is out of range for a set of {}",
                parent.len()
            )));
        }
        Ok(Subset { parent, indices })
    }
}

impl Dataset for Subset {
    fn len(&self) -> usize {
        self.indices.len()
    }
    fn sample_shape(&self) -> &[usize] {
        self.parent.sample_shape()
    }
    fn num_classes(&self) -> usize {
        self.parent.num_classes()
    }
    fn image(&self, i: usize) -> &[f32] {
        self.parent.image(self.indices[i])
    }
    fn label(&self, i: usize) -> u32 {
        self.parent.label(self.indices[i])
    }
}

/// Splits `set` into (train, validation) with `val` samples drawn by a seeded shuffle.
pub fn split(set: Arc<dyn Dataset>, val: usize, seed: u64) -> Result<(Subset, Subset)> {
    if val >= set.len() {
        return Err(Error::Config(format!(
            "validation size {val} leaves no training samples out of {}",
            set.len()
        )));
    }
    let mut idx: Vec<usize> = (0..set.len()).collect();
    idx.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_5A17));
    let train = idx.split_off(val);
    let (mut t, mut v) = (train, idx);
    t.sort_unstable();
    v.sort_unstable();
    Ok((Subset::new(set.clone(), t)?, Subset::new(set, v)?))
}
