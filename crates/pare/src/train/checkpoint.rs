//! Training checkpoints: one safetensors file holding the parameters (`param.*`), the optimizer
//! state (`optim.*`) and, as JSON metadata, where the run is (epoch, step, history, running
//! sums) and what it is (architecture and config), written atomically.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::config::{EpochRecord, EpochSums, FitConfig};
use super::optim::Optimizer;
use crate::error::{Error, Result};
use crate::ir::io::{arch_json, encode_sealed, parse_sealed, write_atomic};
use crate::ir::{Model, Params, Tensor};

const META_KEY: &str = "pare.checkpoint";
const VERSION: u32 = 1;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Meta {
    pub version: u32,
    pub arch: String,
    pub config: FitConfig,
    /// The next epoch and step to run (0-based).
    pub epoch: usize,
    pub step: usize,
    pub optimizer_steps: u64,
    pub history: Vec<EpochRecord>,
    pub sums: EpochSums,
}

pub(crate) struct Checkpoint {
    pub meta: Meta,
    pub params: Params,
    pub optimizer: BTreeMap<String, Tensor>,
}

impl Checkpoint {
    pub(crate) fn new(
        model: &Model,
        opt: &Optimizer,
        cfg: &FitConfig,
        history: &[EpochRecord],
        epoch: usize,
        step: usize,
        sums: EpochSums,
    ) -> Self {
        Checkpoint {
            meta: Meta {
                version: VERSION,
                arch: arch_json(&model.graph),
                config: cfg.clone(),
                epoch,
                step,
                optimizer_steps: opt.steps,
                history: history.to_vec(),
                sums,
            },
            params: model.params.clone(),
            optimizer: opt.state_tensors(),
        }
    }
}

pub(crate) fn save(path: &Path, ck: &Checkpoint) -> Result<()> {
    write_atomic(path, &encode(ck))
}

/// The checkpoint file's bytes: sealed safetensors.
pub(crate) fn encode(ck: &Checkpoint) -> Vec<u8> {
    let mut all = BTreeMap::new();
    for (k, v) in &ck.params {
        all.insert(format!("param.{k}"), v.clone());
    }
    for (k, v) in &ck.optimizer {
        all.insert(format!("optim.{k}"), v.clone());
    }
    let meta = HashMap::from([(
        META_KEY.to_string(),
        serde_json::to_string(&ck.meta).expect("checkpoint metadata serializes"),
    )]);
    encode_sealed(&all, meta)
}

/// Loads a checkpoint and checks it belongs to this model and a compatible configuration
/// (same architecture, seed, batch size, optimizer and augmentation; more epochs are allowed).
pub(crate) fn load(path: &Path, model: &Model, cfg: &FitConfig) -> Result<Checkpoint> {
    let err = |reason: String| Error::Checkpoint {
        path: path.to_path_buf(),
        reason,
    };
    if !path.exists() {
        return Err(err(
            "no checkpoint to resume from (run without --resume first)".into()
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse(&bytes, path, model, cfg)
}

/// [`load`] on the file's bytes; `path` names it in errors.
pub(crate) fn parse(bytes: &[u8], path: &Path, model: &Model, cfg: &FitConfig) -> Result<Checkpoint> {
    let (tensors, metadata) = parse_sealed(bytes, path)?;
    from_parts(tensors, metadata, path, model, cfg)
}

/// What the checkpoint's tensors and metadata say, checked against this model and run.
pub(crate) fn from_parts(
    tensors: BTreeMap<String, Tensor>,
    metadata: HashMap<String, String>,
    path: &Path,
    model: &Model,
    cfg: &FitConfig,
) -> Result<Checkpoint> {
    let err = |reason: String| Error::Checkpoint {
        path: path.to_path_buf(),
        reason,
    };
    let meta: Meta = metadata
        .get(META_KEY)
        .ok_or_else(|| err("not a pare checkpoint (no metadata)".into()))
        .and_then(|s| serde_json::from_str(s).map_err(|e| err(format!("metadata: {e}"))))?;
    if meta.version != VERSION {
        return Err(err(format!(
            "version {} is not supported (expected {VERSION})",
            meta.version
        )));
    }
    if meta.arch != arch_json(&model.graph) {
        return Err(err("it was written for a different architecture".into()));
    }
    let c = &meta.config;
    if c.seed != cfg.seed
        || c.batch_size != cfg.batch_size
        || c.optimizer != cfg.optimizer
        || c.augment != cfg.augment
    {
        return Err(err(format!(
            "it was written with a different seed, batch size, optimizer or augmentation \
             (seed {}, batch {}); resume with the same settings",
            c.seed, c.batch_size
        )));
    }
    if meta.epoch > cfg.epochs {
        return Err(err(format!(
            "it has already run {} epochs, more than the {} requested",
            meta.epoch, cfg.epochs
        )));
    }
    let mut params = Params::new();
    let mut optimizer = BTreeMap::new();
    for (k, v) in tensors {
        if let Some(n) = k.strip_prefix("param.") {
            params.insert(n.to_string(), v);
        } else if let Some(n) = k.strip_prefix("optim.") {
            optimizer.insert(n.to_string(), v);
        }
    }
    let params = Model::new(model.graph.clone(), params)
        .map_err(|e| err(e.to_string()))?
        .params;
    Ok(Checkpoint {
        meta,
        params,
        optimizer,
    })
}
