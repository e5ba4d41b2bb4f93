//! The teacher's cached logits saved between runs.
//!
//! Why: with fixed augmented views a KD run computes the teacher once per (view, sample), and
//! for a CNN teacher that is most of a run (VGG on 2 cores: about a minute per view of 55,000
//! images, the 200-epoch MLP student about 4 minutes in all). A sweep over temperature and
//! alpha, or a KD run beside its baselines, sees the very same views; saving the cache lets
//! those runs pay for the teacher once.
//!
//! A cache is only valid for the run it was made in: same teacher weights, data, split, seed
//! and augmentation. The caller describes that run as a [`CacheKey`]; a file made for another
//! key is refused with the first field that differs, never silently reused.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::DistillHook;
use crate::error::{Error, Result};
use crate::ir::io::{encode_sealed, read_sealed, write_atomic};
use crate::ir::{Model, Tensor};

/// Metadata field that holds the key.
pub(crate) const KEY_FIELD: &str = "pare.teacher_logits.key";

/// What a cached logit depends on, as ordered `name = value` fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheKey(BTreeMap<String, String>);

impl CacheKey {
    /// A key that starts with the teacher's fingerprint (its graph and every weight's bits).
    pub fn for_teacher(teacher: &Model) -> Self {
        let mut k = CacheKey(BTreeMap::new());
        k.set("teacher", format!("{:016x}", fingerprint(teacher)));
        k
    }

    /// Adds a field (the seed, the views, the data file, ...).
    pub fn set(&mut self, name: &str, value: impl ToString) -> &mut Self {
        self.0.insert(name.to_string(), value.to_string());
        self
    }

    fn encode(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub(crate) fn decode(s: &str) -> Self {
        CacheKey(
            s.lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    /// The first field whose value differs, as `(name, this, other)`.
    fn first_difference(&self, other: &CacheKey) -> Option<(String, String, String)> {
        let missing = || "(absent)".to_string();
        self.0
            .keys()
            .chain(other.0.keys())
            .find(|k| self.0.get(*k) != other.0.get(*k))
            .map(|k| {
                (
                    k.clone(),
                    self.0.get(k).cloned().unwrap_or_else(missing),
                    other.0.get(k).cloned().unwrap_or_else(missing),
                )
            })
    }
}

/// FNV-1a over the graph's JSON and every parameter's name, shape and bits.
fn fingerprint(m: &Model) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= *b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    eat(serde_json::to_string(&m.graph).unwrap_or_default().as_bytes());
    for (name, t) in &m.params {
        eat(name.as_bytes());
        for d in t.shape() {
            eat(&(*d as u64).to_le_bytes());
        }
        for v in t.data() {
            eat(&v.to_bits().to_le_bytes());
        }
    }
    h
}

/// Indices are stored as f32, exact below this.
const EXACT: usize = 1 << 24;

impl DistillHook {
    /// How many (view, sample) logits the cache holds.
    pub fn cached_logits(&self) -> usize {
        self.cache.len()
    }

    /// Writes the cache to `path` (atomically) under `key`.
    pub fn save_logits(&self, path: &Path, key: &CacheKey) -> Result<()> {
        write_atomic(path, &encode_logits(&self.cache, path, key)?)
    }

    /// Adds the logits saved at `path` to the cache and returns how many there were; a file
    /// saved under another key (another teacher, seed, split or augmentation) is an error that
    /// names the first differing field.
    pub fn load_logits(&mut self, path: &Path, key: &CacheKey) -> Result<usize> {
        let (tensors, meta) = read_sealed(path)?;
        let shapes = self.teacher().graph.shapes()?;
        let classes = shapes
            .of(&self.teacher().graph, &self.teacher().graph.output)
            .iter()
            .product();
        let saved = saved_logits(&tensors, &meta, path, key, classes)?;
        let n = saved.len();
        self.cache.extend(saved);
        Ok(n)
    }
}

/// The cache file's bytes (sealed safetensors): an `index` tensor of (view, sample) rows and
/// the `logits` rows in the same order, under `key`; `path` names the file in errors.
pub(crate) fn encode_logits(
    cache: &HashMap<(usize, usize), Vec<f32>>,
    path: &Path,
    key: &CacheKey,
) -> Result<Vec<u8>> {
    let mut entries: Vec<(&(usize, usize), &Vec<f32>)> = cache.iter().collect();
    entries.sort_by_key(|(k, _)| **k);
    let classes = entries.first().map_or(0, |(_, v)| v.len());
    if entries.iter().any(|((v, i), _)| *v >= EXACT || *i >= EXACT) {
        return Err(Error::Config(format!(
            "{}: teacher logit cache indices reach {EXACT} (more views or samples than it stores)",
            path.display()
        )));
    }
    let index: Vec<f32> = entries
        .iter()
        .flat_map(|((v, i), _)| [*v as f32, *i as f32])
        .collect();
    let logits: Vec<f32> = entries.iter().flat_map(|(_, l)| l.iter().copied()).collect();
    let tensors = BTreeMap::from([
        (
            "index".to_string(),
            Tensor::from_vec(vec![entries.len(), 2], index),
        ),
        (
            "logits".to_string(),
            Tensor::from_vec(vec![entries.len(), classes], logits),
        ),
    ]);
    let meta = HashMap::from([(KEY_FIELD.to_string(), key.encode())]);
    Ok(encode_sealed(&tensors, meta))
}

/// The `(view, sample) -> logits` entries of a read cache file (its tensors and metadata),
/// checked against `key`, the teacher's output width `classes`, and for consistent shapes and
/// indices.
pub(crate) fn saved_logits(
    tensors: &BTreeMap<String, Tensor>,
    meta: &HashMap<String, String>,
    path: &Path,
    key: &CacheKey,
    classes: usize,
) -> Result<Vec<((usize, usize), Vec<f32>)>> {
    let bad = |reason: String| Error::Config(format!("{}: {reason}", path.display()));
    let saved = CacheKey::decode(
        meta.get(KEY_FIELD)
            .ok_or_else(|| bad(format!("not a teacher logit cache (no {KEY_FIELD} metadata)")))?,
    );
    if let Some((field, want, got)) = key.first_difference(&saved) {
        return Err(bad(format!(
            "teacher logit cache made for another run: {field} is {got} there, {want} here \
             (delete the file or pass another path)"
        )));
    }
    let (Some(index), Some(logits)) = (tensors.get("index"), tensors.get("logits")) else {
        return Err(bad("teacher logit cache lacks its index or logits tensor".into()));
    };
    let n = index.shape().first().copied().unwrap_or(0);
    if index.shape() != [n, 2] || logits.shape().len() != 2 || logits.shape()[0] != n {
        return Err(bad(format!(
            "teacher logit cache shapes {:?} and {:?} do not match",
            index.shape(),
            logits.shape()
        )));
    }
    if n > 0 && logits.shape()[1] != classes {
        return Err(bad(format!(
            "teacher logit cache holds {} logits per sample, the teacher gives {classes}",
            logits.shape()[1]
        )));
    }
    if let Some(v) = index
        .data()
        .iter()
        .find(|v| !(v.fract() == 0.0 && (0.0..EXACT as f32).contains(*v)))
    {
        return Err(bad(format!(
            "teacher logit cache index {v} is not a view or sample number"
        )));
    }
    Ok(index
        .data()
        .chunks_exact(2)
        .enumerate()
        .map(|(r, pair)| {
            (
                (pair[0] as usize, pair[1] as usize),
                logits.data()[r * classes..(r + 1) * classes].to_vec(),
            )
        })
        .collect())
}
