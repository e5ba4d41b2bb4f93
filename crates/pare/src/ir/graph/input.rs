//! What a model takes: its input's per-sample shape, element type and normalization.

use serde::{Deserialize, Serialize};

use super::INPUT;
use crate::error::{Error, Result};

/// Input normalization: `x' = (x - mean) / std` on pixels in [0, 1], with one mean and
/// deviation for every channel or one per channel of an image input `[C, H, W]` (what
/// torchvision's ImageNet models expect).
///
/// It belongs to the model, not the data set, so that a saved model evaluates correctly on
/// raw data without the user remembering how it was trained. In `arch.json` a single value is a
/// number and per-channel values are a list.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Normalize {
    #[serde(with = "one_or_many")]
    pub mean: Vec<f32>,
    #[serde(with = "one_or_many")]
    pub std: Vec<f32>,
}

impl Default for Normalize {
    fn default() -> Self {
        Normalize::scalar(0.0, 1.0)
    }
}

impl Normalize {
    /// One mean and deviation for every channel.
    pub fn scalar(mean: f32, std: f32) -> Normalize {
        Normalize {
            mean: vec![mean],
            std: vec![std],
        }
    }

    /// Whether it leaves values unchanged.
    pub fn is_identity(&self) -> bool {
        *self == Normalize::default()
    }

    /// Whether it has one value per channel.
    pub fn per_channel(&self) -> bool {
        self.mean.len() > 1
    }

    /// The mean and deviation of channel `c` (the shared pair when there is one).
    pub fn at(&self, c: usize) -> (f32, f32) {
        let k = if self.per_channel() { c } else { 0 };
        (self.mean[k], self.std[k])
    }

    /// Normalizes, in place, a buffer of whole samples of per-sample shape `sample`: a
    /// per-channel pair applies along axis 0.
    pub fn apply(&self, sample: &[usize], x: &mut [f32]) {
        self.map(sample, x, |v, m, s| (v - m) / s);
    }

    /// Undoes [`Normalize::apply`]: back to pixels.
    pub fn undo(&self, sample: &[usize], x: &mut [f32]) {
        self.map(sample, x, |v, m, s| v * s + m);
    }

    fn map(&self, sample: &[usize], x: &mut [f32], f: impl Fn(f32, f32, f32) -> f32) {
        let per: usize = sample.iter().product::<usize>().max(1);
        let channels = if self.per_channel() { self.mean.len() } else { 1 };
        let run = per / channels;
        for chunk in x.chunks_mut(run.max(1)).enumerate() {
            let (m, s) = self.at(chunk.0 % channels);
            chunk.1.iter_mut().for_each(|v| *v = f(*v, m, s));
        }
    }

    /// Checks the values against an input of per-sample shape `shape`.
    pub(super) fn check(&self, shape: &[usize]) -> std::result::Result<(), String> {
        if self.mean.is_empty() || self.mean.len() != self.std.len() {
            return Err(format!(
                "normalize has {} means and {} deviations; give one of each, or one per channel",
                self.mean.len(),
                self.std.len()
            ));
        }
        if self.per_channel() && !(shape.len() == 3 && shape[0] == self.mean.len()) {
            return Err(format!(
                "normalize has {} values per field, but the input {shape:?} is not an image of {} channels",
                self.mean.len(),
                self.mean.len()
            ));
        }
        if !self.std.iter().all(|s| *s > 0.0 && s.is_finite()) {
            return Err("normalize.std must be positive numbers".into());
        }
        if !self.mean.iter().all(|m| m.is_finite()) {
            return Err("normalize.mean must be finite numbers".into());
        }
        Ok(())
    }
}

/// `mean M std S`, or `mean [M1, ..] std [S1, ..]` per channel.
impl std::fmt::Display for Normalize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.per_channel() {
            write!(f, "mean {:?} std {:?}", self.mean, self.std)
        } else {
            write!(f, "mean {} std {}", self.mean[0], self.std[0])
        }
    }
}

/// A list of values that is written as a bare number when it holds one.
mod one_or_many {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(f32),
        Many(Vec<f32>),
    }

    pub fn serialize<S: Serializer>(v: &[f32], s: S) -> Result<S::Ok, S::Error> {
        match v {
            [one] => one.serialize(s),
            many => many.serialize(s),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f32>, D::Error> {
        Ok(match OneOrMany::deserialize(d)? {
            OneOrMany::One(v) => vec![v],
            OneOrMany::Many(v) => v,
        })
    }
}

/// What the elements of the model's input are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DType {
    /// Real values (pixels): what every op but [`Op::Embedding`] reads.
    #[default]
    F32,
    /// Integer ids (token indices) below 2^24, held exactly in the engines' f32 buffers; only
    /// [`Op::Embedding`] reads them, and a batch is checked against its table size.
    Index,
}

impl DType {
    pub(super) fn is_f32(&self) -> bool {
        *self == DType::F32
    }
}

/// The largest table an [`Op::Embedding`] may index: ids travel as exact f32 integers.
pub const MAX_INDEX: usize = 1 << 24;

/// What the model takes: the per-sample shape (no batch axis), its element type and its
/// normalization (of real values only).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    pub shape: Vec<usize>,
    #[serde(default, skip_serializing_if = "DType::is_f32")]
    pub dtype: DType,
    #[serde(default)]
    pub normalize: Normalize,
}

impl InputSpec {
    /// Checks a batch `[N, ..per-sample shape]` with N > 0; for an index input, also that every
    /// value is an id below `rows` (no engine then indexes past a table).
    pub fn check_batch(&self, x: &crate::ir::Tensor, rows: usize) -> Result<()> {
        let shape = x.shape();
        if shape.len() != self.shape.len() + 1 || shape[1..] != self.shape[..] || shape[0] == 0 {
            return Err(Error::graph(
                INPUT,
                format!(
                    "input batch has shape {shape:?}, expected a batch of the model's per-sample shape {:?}",
                    self.shape
                ),
            ));
        }
        if self.dtype == DType::Index {
            let bad = |v: f32| !(v.fract() == 0.0 && v >= 0.0 && (v as usize) < rows);
            if let Some((i, v)) = x.data().iter().enumerate().find(|(_, v)| bad(**v)) {
                return Err(Error::graph(
                    INPUT,
                    format!("input value {v} at flat position {i} is not an id in 0..{rows}"),
                ));
            }
        }
        Ok(())
    }
}
