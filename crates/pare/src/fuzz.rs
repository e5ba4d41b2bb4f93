//! Byte-level entry points of every parser that reads a user's file, for the cargo-fuzz
//! targets in `fuzz/` and for the bounded runs of them in `tests/fuzz_entries.rs`.
//!
//! Each entry point takes a file's bytes and goes as far as pare goes with such a file: parse,
//! check, then bind, resume or run what it describes. The contract the fuzzers check is that
//! every input ends in `Ok` or in the error pare would report: never a panic, an abort, or an
//! allocation beyond the caps (`ir::graph::MAX_ELEMENTS`, `data::idx::MAX_IDX_BYTES`). Files
//! sealed by a checksum (`.pare`, checkpoints, the teacher cache) are also parsed past the
//! checksum, since random bytes would almost never get through it.
//!
//! [`seeds`] makes valid files for every target, each of which its entry point accepts: the
//! fuzzers' starting corpora (written by the ignored test `write_seeds` in
//! `tests/fuzz_entries.rs`).

use std::collections::HashMap;
use std::path::Path;

use crate::codec::file::{self as pare_file, Encoding};
use crate::data::idx::{parse_idx, IdxArray};
use crate::distill::cache::{self, CacheKey};
use crate::error::{Error, Result};
use crate::ir::graph::ops::{bn, conv, linear};
use crate::ir::io::{self, arch_json, bind_params, parse_arch, parse_safetensors, parse_sealed};
use crate::ir::op::{Embedding, LayerNorm, Mean};
use crate::ir::{DType, GraphBuilder, Model, Op, Reparams, Tensor};
use crate::pipeline::Recipe;
use crate::train::checkpoint::{self, Checkpoint};
use crate::train::config::EpochSums;
use crate::train::{FitConfig, Optimizer};
use crate::zoo::ZooModel;

/// One fuzz target: a kind of user file and the entry point that reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// `arch.json`: parsed, checked, initialized and run when small.
    Arch,
    /// `weights.safetensors`: parsed, bound onto [`tiny_model`]'s graph, run.
    Weights,
    /// IDX images or labels, gzipped or raw: parsed, then paired into a data set.
    Idx,
    /// A `.pare` compressed model: decoded (through the checksum and past it), run when small.
    Pare,
    /// A compression recipe: parsed, then checked against its model before any stage.
    Recipe,
    /// A training checkpoint of [`tiny_model`]: read as `--resume` reads it.
    Checkpoint,
    /// A teacher-logit cache: read as a distillation run with `--teacher-cache` reads it.
    TeacherCache,
    /// An ONNX model: decoded, imported, run when small.
    Onnx,
}

impl Target {
    pub const ALL: [Target; 8] = [
        Target::Arch,
        Target::Weights,
        Target::Idx,
        Target::Pare,
        Target::Recipe,
        Target::Checkpoint,
        Target::TeacherCache,
        Target::Onnx,
    ];

    /// The cargo-fuzz target's name (and its corpus folder's).
    pub fn name(self) -> &'static str {
        match self {
            Target::Arch => "arch",
            Target::Weights => "weights",
            Target::Idx => "idx",
            Target::Pare => "pare",
            Target::Recipe => "recipe",
            Target::Checkpoint => "checkpoint",
            Target::TeacherCache => "teacher_cache",
            Target::Onnx => "onnx",
        }
    }

    /// Runs the target's entry point on `bytes`.
    pub fn run(self, bytes: &[u8]) -> Result<()> {
        match self {
            Target::Arch => arch(bytes),
            Target::Weights => weights(bytes),
            Target::Idx => idx(bytes),
            Target::Pare => pare(bytes),
            Target::Recipe => recipe(bytes),
            Target::Checkpoint => checkpoint(bytes),
            Target::TeacherCache => teacher_cache(bytes),
            Target::Onnx => onnx(bytes),
        }
    }
}

/// The path error messages name: the entry points read bytes, not files.
fn path() -> &'static Path {
    Path::new("fuzz-input")
}

fn text(bytes: &[u8]) -> Result<&str> {
    std::str::from_utf8(bytes).map_err(|e| Error::Arch {
        path: path().to_path_buf(),
        reason: format!("not UTF-8: {e}"),
    })
}

/// Models up to this many parameters and multiply-accumulates are run in both engines; larger
/// ones only parsed and checked (a fuzzer must try thousands of inputs a second).
const RUN_PARAMS: u64 = 100_000;
const RUN_MACS: u64 = 2_000_000;

/// Runs `model` on a batch of one zero input in the native engine and the training engine.
fn run_small(model: &Model) -> Result<()> {
    if model.num_params() as u64 > RUN_PARAMS || model.macs() > RUN_MACS {
        return Ok(());
    }
    let mut shape = vec![1];
    shape.extend_from_slice(&model.graph.input.shape);
    let x = Tensor::zeros(shape);
    crate::native::infer(model, &x)?;
    crate::exec::infer(model, &x, &Reparams::new(), &[])?;
    Ok(())
}

/// Parses `arch.json`; a small graph is initialized and run.
pub fn arch(bytes: &[u8]) -> Result<()> {
    let graph = parse_arch(text(bytes)?, path())?;
    let params: Option<u64> = crate::ir::model::param_refs(&graph)
        .iter()
        .try_fold(0u64, |n, r| {
            n.checked_add(r.spec.shape.iter().product::<usize>() as u64)
        });
    if params.is_some_and(|n| n <= RUN_PARAMS) {
        run_small(&Model::init(graph, 0)?)?;
    }
    Ok(())
}

/// Parses a safetensors file and binds it onto [`tiny_model`]'s graph, then runs it.
pub fn weights(bytes: &[u8]) -> Result<()> {
    let (tensors, _) = parse_safetensors(bytes, path())?;
    run_small(&bind_params(tiny_model().graph, tensors, path())?)
}

/// Parses IDX bytes; images `[N, H, W]` are paired with N zero labels (at most one per byte
/// of the file), labels `[N]` with N blank 1x1 images, as the data loader pairs two files.
pub fn idx(bytes: &[u8]) -> Result<()> {
    let a = parse_idx(bytes, path())?;
    let set = match a.dims.len() {
        1 => {
            let images = IdxArray {
                dims: vec![a.dims[0], 1, 1],
                data: vec![0; a.dims[0]],
            };
            crate::data::fashion::pair(images, path(), a, path())?
        }
        _ => {
            // As many labels as images, but never more than the file's bytes: dims such as
            // [2^32 - 1, 0, 0] declare no data, and a labels file that long would be as large.
            let n = a.dims[0].min(a.data.len());
            let labels = IdxArray {
                dims: vec![n],
                data: vec![0; n],
            };
            crate::data::fashion::pair(a, path(), labels, path())?
        }
    };
    crate::data::fashion::pixel_stats(&set);
    Ok(())
}

/// Decodes a `.pare` file (checksum first) and its body without the checksum; a small
/// decoded model is run.
pub fn pare(bytes: &[u8]) -> Result<()> {
    let compressed = |reason: String| Error::Compressed {
        path: path().to_path_buf(),
        reason,
    };
    // The body is decoded once, whatever the checksum says; the checksum's verdict comes first.
    let body = bytes
        .get(..bytes.len().saturating_sub(pare_file::CHECKSUM))
        .unwrap_or(&[]);
    let envelope = pare_file::checked_body(bytes).map(drop);
    let model = pare_file::decode_body(body);
    if let Ok(m) = &model {
        run_small(m)?;
    }
    envelope.and(model.map(drop)).map_err(compressed)
}

/// Decodes an ONNX file and imports it; a small imported model is run.
pub fn onnx(bytes: &[u8]) -> Result<()> {
    let proto = crate::onnx::decode(bytes, path())?;
    run_small(&crate::onnx::from_onnx(&proto, path())?)
}

/// Parses a recipe and checks it against its starting model (a zoo model for 1x28x28 inputs
/// and 10 classes, or [`tiny_model`] for a recipe that names a directory).
pub fn recipe(bytes: &[u8]) -> Result<()> {
    let r = Recipe::parse(text(bytes)?, path())?;
    let model = match &r.model.zoo {
        Some(name) => Model::init(ZooModel::parse(name, None, 0.0)?.build(&[1, 28, 28], 10)?, 0)?,
        None => tiny_model(),
    };
    crate::pipeline::preflight(&r, &model)
}

/// The configuration [`seeds`] trains [`tiny_model`] with, and checkpoints are read against.
fn tiny_config() -> FitConfig {
    FitConfig {
        epochs: 3,
        ..FitConfig::default()
    }
}

/// Reads a checkpoint of [`tiny_model`] (checksum first, then its content without the
/// checksum) and restores the optimizer state from it, as `--resume` does.
pub fn checkpoint(bytes: &[u8]) -> Result<()> {
    let (model, cfg) = (tiny_model(), tiny_config());
    let sealed = checkpoint::parse(bytes, path(), &model, &cfg);
    let (tensors, metadata) = parse_safetensors(bytes, path())?;
    let ck = checkpoint::from_parts(tensors, metadata, path(), &model, &cfg)?;
    let mut opt = Optimizer::new(cfg.optimizer);
    opt.load_state(&ck.optimizer, &ck.params, ck.meta.optimizer_steps)?;
    sealed.map(drop)
}

/// Reads a teacher-logit cache (checksum first, then its content under the key it declares)
/// for a teacher with 3 outputs.
pub fn teacher_cache(bytes: &[u8]) -> Result<()> {
    let sealed = parse_sealed(bytes, path());
    let (tensors, meta) = parse_safetensors(bytes, path())?;
    let key = CacheKey::decode(meta.get(cache::KEY_FIELD).map_or("", String::as_str));
    cache::saved_logits(&tensors, &meta, path(), &key, 3)?;
    sealed.map(drop)
}

/// A conv + BatchNorm + ReLU + linear model on 1x4x4 inputs with 3 classes: every kind of
/// parameter, small enough to run thousands of times a second.
pub fn tiny_model() -> Model {
    let mut b = GraphBuilder::new(vec![1, 4, 4]);
    b.then("conv", conv(1, 2, 3, 1, 1, true));
    b.then("bn", bn(2));
    b.then("relu", Op::Relu);
    b.then("flatten", Op::Flatten);
    b.then("fc", linear(32, 3));
    Model::init(b.finish().expect("a valid graph"), 7).expect("a small model")
}

/// A token model: embedding, LayerNorm, mean over the tokens, head. Seeds the arch
/// target with the index dtype and rank-3 values.
fn tiny_tokens() -> Result<Model> {
    let mut b = GraphBuilder::new(vec![5]);
    b.input_dtype(DType::Index);
    b.then(
        "embed",
        Op::Embedding(Embedding {
            num_embeddings: 11,
            embedding_dim: 4,
        }),
    );
    b.then("norm", Op::LayerNorm(LayerNorm { dim: 4, eps: 1e-5 }));
    b.then(
        "pool",
        Op::Mean(Mean {
            axes: vec![0],
            keepdim: false,
        }),
    );
    b.then("fc", linear(4, 3));
    Model::init(b.finish()?, 3)
}

/// An IDX array's bytes (type unsigned byte).
fn idx_bytes(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 8, dims.len() as u8];
    dims.iter()
        .for_each(|d| out.extend_from_slice(&(*d as u32).to_be_bytes()));
    out.extend_from_slice(data);
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(bytes).expect("gzip into memory");
    z.finish().expect("gzip into memory")
}

/// Valid inputs for every target, as `(target, file name, bytes)`.
///
/// # Errors
/// Only if a zoo model or the codec fails on the seeds' own models (a bug).
pub fn seeds() -> Result<Vec<(Target, String, Vec<u8>)>> {
    let mut out = Vec::new();
    let tiny = tiny_model();
    let mut add = |t: Target, name: &str, bytes: Vec<u8>| out.push((t, name.to_string(), bytes));

    add(Target::Arch, "tiny.json", arch_json(&tiny.graph).into_bytes());
    add(
        Target::Arch,
        "tokens.json",
        arch_json(&tiny_tokens()?.graph).into_bytes(),
    );
    let lenet = Model::init(crate::zoo::ZooModel::Lenet300.build(&[1, 28, 28], 10)?, 0)?;
    let (hashed, _) = crate::hashing::hash_linears(&lenet, 8.0, None, crate::hashing::Buckets::Fresh, 0)?;
    add(
        Target::Arch,
        "lenet300-hashed.json",
        arch_json(&hashed.graph).into_bytes(),
    );
    for zm in crate::zoo::catalog() {
        let graph = zm.build(&[1, 28, 28], 10)?;
        let name: String = zm
            .label()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        add(
            Target::Arch,
            &format!("{name}.json"),
            arch_json(&graph).into_bytes(),
        );
    }

    add(Target::Onnx, "tiny.onnx", crate::onnx::encode(&tiny)?);
    add(Target::Onnx, "tokens.onnx", crate::onnx::encode(&tiny_tokens()?)?);
    let vit = crate::zoo::ZooModel::Vit.build(&[1, 28, 28], 10)?;
    add(
        Target::Onnx,
        "vit.onnx",
        crate::onnx::encode(&Model::init(vit, 0)?)?,
    );

    add(
        Target::Weights,
        "tiny.safetensors",
        io::encode_safetensors(&tiny.params, None),
    );

    let images: Vec<u8> = (0..3 * 4 * 4).map(|i| (i * 17 % 256) as u8).collect();
    add(Target::Idx, "images-idx3-ubyte", idx_bytes(&[3, 4, 4], &images));
    add(
        Target::Idx,
        "images-idx3-ubyte.gz",
        gzip(&idx_bytes(&[3, 4, 4], &images)),
    );
    add(Target::Idx, "labels-idx1-ubyte", idx_bytes(&[3], &[0, 9, 4]));
    add(
        Target::Idx,
        "labels-idx1-ubyte.gz",
        gzip(&idx_bytes(&[3], &[0, 9, 4])),
    );

    // Every encoding of the codec: uniform codes, a sparse index, a shared codebook, f32.
    let mut pruned = tiny.clone();
    let fc = pruned.params.get_mut("fc.weight").expect("fc has a weight");
    fc.data_mut().iter_mut().step_by(2).for_each(|v| *v = 0.0);
    let plan = pare_file::Plan::from([
        (
            "conv.weight".to_string(),
            Encoding::Uniform {
                bits: 4,
                per_channel: true,
                symmetric: false,
                huffman: true,
            },
        ),
        (
            "fc.weight".to_string(),
            Encoding::Sparse {
                gap_bits: 3,
                huffman: true,
            },
        ),
        ("fc.bias".to_string(), Encoding::Shared { huffman: false }),
    ]);
    add(Target::Pare, "tiny.pare", pare_file::encode(&pruned, &plan)?.0);
    add(
        Target::Pare,
        "tokens.pare",
        pare_file::encode(&tiny_tokens()?, &Default::default())?.0,
    );

    for name in ["lenet300.toml", "resnet20-shrink.toml", "lenet5.toml"] {
        let text = match name {
            "lenet300.toml" => include_str!("../../../recipes/lenet300.toml"),
            "resnet20-shrink.toml" => include_str!("../../../recipes/resnet20-shrink.toml"),
            _ => include_str!("../../../recipes/lenet5.toml"),
        };
        add(Target::Recipe, name, text.as_bytes().to_vec());
    }

    let cfg = tiny_config();
    let mut opt = Optimizer::new(cfg.optimizer);
    let momentum = tiny
        .params
        .iter()
        .map(|(k, t)| (format!("{k}.momentum_buffer"), Tensor::zeros(t.shape().to_vec())))
        .collect();
    opt.load_state(&momentum, &tiny.params, 7)?;
    let ck = Checkpoint::new(&tiny, &opt, &cfg, &[], 1, 2, EpochSums::default());
    add(Target::Checkpoint, "tiny.ckpt", checkpoint::encode(&ck));

    let mut key = CacheKey::for_teacher(&tiny);
    key.set("seed", 0).set("views", 2);
    let logits = HashMap::from([((0, 0), vec![0.5, -1.0, 2.0]), ((1, 4), vec![0.0, 0.25, -3.0])]);
    add(
        Target::TeacherCache,
        "tiny.logits",
        cache::encode_logits(&logits, path(), &key)?,
    );
    Ok(out)
}
