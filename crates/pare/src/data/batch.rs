//! Batches: seeded epoch orders, normalization and optional augmentation.
//!
//! Every random choice is a pure function of `(seed, epoch, sample index)`, so an interrupted
//! run resumed at any step sees exactly the batches the uninterrupted run saw.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::dataset::Dataset;
use crate::ir::{Normalize, Tensor};

/// Training-time augmentation of `[C, H, W]` images.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Augment {
    /// Random crop after zero-padding by this many pixels on each side (0: off).
    pub crop_padding: usize,
    /// Flip horizontally with probability 1/2.
    pub hflip: bool,
    /// How many distinct augmented views of each sample a run uses: 0 draws a fresh view every
    /// epoch; `v > 0` makes epoch `e` reuse view `e mod v`. A finite set of views lets per-sample
    /// results (a teacher's logits) be cached while the student still sees augmented data.
    #[serde(default)]
    pub views: usize,
}

impl Augment {
    pub fn is_off(&self) -> bool {
        self.crop_padding == 0 && !self.hflip
    }

    /// The view epoch `epoch` draws: `None` when every epoch draws a new one.
    pub fn view_of(&self, epoch: usize) -> Option<usize> {
        if self.is_off() {
            Some(0)
        } else if self.views > 0 {
            Some(epoch % self.views)
        } else {
            None
        }
    }
}

/// A batch ready for a model: normalized images `[B, C, H, W]` and labels.
#[derive(Clone, Debug)]
pub struct Batch {
    pub x: Tensor,
    pub labels: Vec<u32>,
    /// Positions of the samples in their data set, and which fixed view of them the batch holds
    /// (`Some(0)` for unaugmented data, `None` for a fresh random augmentation): what a cache of
    /// per-sample results (a teacher's logits) is keyed by and valid for.
    pub indices: Vec<usize>,
    pub view: Option<usize>,
}

/// The shuffled sample order of `epoch` for a run seeded with `seed`.
pub fn epoch_order(len: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(mix(seed, epoch as u64, 0x0BDE));
    order.shuffle(&mut rng);
    order
}

/// The first `n` batches of `batch_size` samples in an order drawn from `seed`, unaugmented:
/// what the data-driven pruning criteria (APoZ, Taylor) and the activation observers calibrate
/// on. Its own stream (not epoch 0's order), so calibration does not replay training's first
/// batches.
pub fn calibration_batches(
    set: &dyn Dataset,
    norm: &Normalize,
    n: usize,
    batch_size: usize,
    seed: u64,
) -> Vec<Batch> {
    epoch_order(set.len(), seed, 0xCA11)
        .chunks(batch_size.max(1))
        .take(n)
        .map(|idx| make_batch(set, idx, norm, None))
        .collect()
}

/// Mixes integers into one well-spread seed (splitmix64 finalizer).
pub fn mix(a: u64, b: u64, c: u64) -> u64 {
    let mut z = a
        .wrapping_add(b.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(c.wrapping_mul(0xD1B5_4A32_D192_ED03));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Builds the batch of `indices`, normalized; with `augment`, each sample is transformed by a
/// generator seeded from `(aug_seed, index)`, and the batch is labelled with `view` (see
/// [`Batch::view`]).
pub fn make_batch(
    set: &dyn Dataset,
    indices: &[usize],
    norm: &Normalize,
    augment: Option<(&Augment, u64, Option<usize>)>,
) -> Batch {
    let shape = set.sample_shape().to_vec();
    let per: usize = shape.iter().product();
    let augmented = matches!(augment, Some((aug, ..)) if !aug.is_off() && shape.len() == 3);
    let view = match augment {
        Some((_, _, view)) if augmented => view,
        _ => Some(0),
    };
    let mut x = Vec::with_capacity(per * indices.len());
    let mut scratch = vec![0f32; per];
    for &i in indices {
        let img = set.image(i);
        let src = match augment {
            Some((aug, seed, _)) if augmented => {
                let mut rng = ChaCha8Rng::seed_from_u64(mix(seed, i as u64, 0xA116));
                augment_into(img, &shape, aug, &mut rng, &mut scratch);
                &scratch[..]
            }
            _ => img,
        };
        let start = x.len();
        x.extend_from_slice(src);
        norm.apply(&shape, &mut x[start..]);
    }
    let mut bshape = vec![indices.len()];
    bshape.extend(&shape);
    Batch {
        x: Tensor::from_vec(bshape, x),
        labels: indices.iter().map(|&i| set.label(i)).collect(),
        indices: indices.to_vec(),
        view,
    }
}

/// Random crop with zero padding, then an optional horizontal flip, into `out`.
fn augment_into(img: &[f32], shape: &[usize], aug: &Augment, rng: &mut ChaCha8Rng, out: &mut [f32]) {
    let (c, h, w) = (shape[0], shape[1], shape[2]);
    let p = aug.crop_padding as i64;
    let (dy, dx) = if p > 0 {
        (
            rng.random_range(-p..=p) as isize,
            rng.random_range(-p..=p) as isize,
        )
    } else {
        (0, 0)
    };
    let flip = aug.hflip && rng.random::<bool>();
    for ch in 0..c {
        for y in 0..h {
            for x in 0..w {
                let sy = y as isize + dy;
                let sx0 = if flip { (w - 1 - x) as isize } else { x as isize };
                let sx = sx0 + dx;
                let v = if sy >= 0 && sx >= 0 && (sy as usize) < h && (sx as usize) < w {
                    img[ch * h * w + sy as usize * w + sx as usize]
                } else {
                    0.0
                };
                out[ch * h * w + y * w + x] = v;
            }
        }
    }
}

/// Consecutive batches over the whole set in order (evaluation), no augmentation.
pub fn sequential<'a>(
    set: &'a dyn Dataset,
    batch_size: usize,
    norm: &'a Normalize,
) -> impl Iterator<Item = Batch> + 'a {
    let n = set.len();
    let bs = batch_size.max(1);
    (0..n.div_ceil(bs)).map(move |b| {
        let idx: Vec<usize> = (b * bs..((b + 1) * bs).min(n)).collect();
        make_batch(set, &idx, norm, None)
    })
}
