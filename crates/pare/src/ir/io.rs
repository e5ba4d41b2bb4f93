//! Model directories: `arch.json` (the graph, serde) and `weights.safetensors` (parameters with
//! PyTorch `state_dict` names and layouts), plus the atomic-write and safetensors helpers that
//! checkpoints and reports reuse.
//!
//! Loading checks every name, dtype and shape and names the file and tensor that is wrong.
//! Writing goes through a temporary file in the same directory and a rename, so a crash never
//! leaves a half-written file behind.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Write;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use serde::{Deserialize, Serialize};

use super::graph::Graph;
use super::model::{param_refs, Model, Params};
use super::tensor::{Store, Tensor};
use crate::error::{Error, Result};

pub const ARCH_FILE: &str = "arch.json";
pub const WEIGHTS_FILE: &str = "weights.safetensors";
const ARCH_FORMAT: &str = "pare-arch";
const ARCH_VERSION: u32 = 1;

/// The on-disk form of `arch.json`: a format tag and version around the graph.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ArchFile {
    format: String,
    version: u32,
    #[serde(flatten)]
    graph: Graph,
}

/// Refuses an output directory that is one of the `inputs` (directories or files a command
/// reads), lies inside one, or contains one: writing it would replace or mix with what the
/// command reads. Paths are compared resolved (absolute, symbolic links followed as far as
/// they exist), so `a/../a` and a link to an input are caught too.
pub fn check_output_dir(out: &Path, inputs: &[&Path]) -> Result<()> {
    let o = resolved(out);
    for input in inputs {
        let i = resolved(input);
        let relation = if o == i {
            "is"
        } else if o.starts_with(&i) {
            "lies inside"
        } else if i.starts_with(&o) {
            "contains"
        } else {
            continue;
        };
        return Err(Error::Config(format!(
            "output directory {}: it {relation} the input {}; write to another directory (nothing was written)",
            out.display(),
            input.display()
        )));
    }
    Ok(())
}

/// `p` made absolute, with its longest existing prefix canonicalized (links resolved) and the
/// rest appended as given, `.` and `..` folded.
fn resolved(p: &Path) -> std::path::PathBuf {
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let mut existing = abs.clone();
    let mut rest: Vec<std::ffi::OsString> = Vec::new();
    loop {
        if let Ok(c) = existing.canonicalize() {
            let mut out = c;
            for part in rest.iter().rev() {
                match part.to_str() {
                    Some(".") => {}
                    Some("..") => {
                        out.pop();
                    }
                    _ => out.push(part),
                }
            }
            return out;
        }
        match (existing.file_name().map(|n| n.to_os_string()), existing.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            // `..` at the end or the root: keep what is there.
            _ => return abs,
        }
    }
}

/// Writes `bytes` to `path` atomically: a sibling temporary file, fsync, then rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(dir) = dir {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let tmp = path.with_file_name(format!(".{file_name}.{}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// Serializes named tensors (and string metadata) to safetensors bytes: integers held as
/// i32 as I32, every other tensor as F32.
pub fn encode_safetensors(
    tensors: &BTreeMap<String, Tensor>,
    metadata: Option<HashMap<String, String>>,
) -> Vec<u8> {
    let bytes: Vec<(&String, Dtype, Vec<u8>)> = tensors
        .iter()
        .map(|(k, t)| match t.store() {
            Store::I32(v) => (k, Dtype::I32, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            _ => (
                k,
                Dtype::F32,
                t.data().iter().flat_map(|v| v.to_le_bytes()).collect(),
            ),
        })
        .collect();
    let views: Vec<(&String, TensorView<'_>)> = bytes
        .iter()
        .zip(tensors.values())
        .map(|((k, dtype, b), t)| {
            let view = TensorView::new(*dtype, t.shape().to_vec(), b)
                .expect("byte length matches shape by construction");
            (*k, view)
        })
        .collect();
    safetensors::serialize(views, metadata).expect("tensors with consistent shapes serialize")
}

/// The metadata key under which [`encode_sealed`] records its checksum.
pub const CHECKSUM_KEY: &str = "pare.crc32";

/// CRC-32 of the tensors (name, shape, little-endian values, in name order) and the other
/// metadata (sorted): what a sealed file's checksum covers.
fn seal(tensors: &BTreeMap<String, Tensor>, metadata: &HashMap<String, String>) -> String {
    let mut h = crc32fast::Hasher::new();
    for (name, t) in tensors {
        h.update(name.as_bytes());
        t.shape()
            .iter()
            .for_each(|d| h.update(&(*d as u64).to_le_bytes()));
        t.data().iter().for_each(|v| h.update(&v.to_le_bytes()));
    }
    let mut keys: Vec<&String> = metadata.keys().filter(|k| *k != CHECKSUM_KEY).collect();
    keys.sort();
    for k in keys {
        h.update(k.as_bytes());
        h.update(metadata[k].as_bytes());
    }
    format!("{:08x}", h.finalize())
}

/// [`encode_safetensors`] with a checksum of tensors and metadata in the metadata: for files
/// pare writes and reads back itself (checkpoints, the teacher-logit cache), where a flipped
/// byte must not be trained on.
pub fn encode_sealed(tensors: &BTreeMap<String, Tensor>, metadata: HashMap<String, String>) -> Vec<u8> {
    let mut metadata = metadata;
    let crc = seal(tensors, &metadata);
    metadata.insert(CHECKSUM_KEY.to_string(), crc);
    encode_safetensors(tensors, Some(metadata))
}

/// Reads a file written by [`encode_sealed`], checking its checksum.
///
/// # Errors
/// As [`read_safetensors`], and when the checksum is missing or does not match (the file was
/// changed or damaged after pare wrote it).
pub fn read_sealed(path: &Path) -> Result<(BTreeMap<String, Tensor>, HashMap<String, String>)> {
    let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_sealed(&bytes, path)
}

/// [`read_sealed`] on bytes already read; `path` names the file in errors.
pub fn parse_sealed(
    bytes: &[u8],
    path: &Path,
) -> Result<(BTreeMap<String, Tensor>, HashMap<String, String>)> {
    let (tensors, metadata) = parse_safetensors(bytes, path)?;
    let bad = |reason: &str| Error::Safetensors {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let want = metadata
        .get(CHECKSUM_KEY)
        .ok_or_else(|| bad("no checksum (not written by this version of pare)"))?;
    if *want != seal(&tensors, &metadata) {
        return Err(bad(
            "checksum mismatch: the file was changed or damaged after pare wrote it",
        ));
    }
    Ok((tensors, metadata))
}

/// Reads every tensor of a safetensors file, with the file's metadata.
///
/// F32 is read as is, F64 converted; F16 and BF16 are held as they are, and so are integers
/// and booleans (as i32: a checkpoint's index buffers and masks; 64-bit and unsigned 32-bit
/// values must fit). PyTorch's integer BatchNorm counter `*.num_batches_tracked` is skipped
/// (pare does not use it). Any other dtype, or an integer past the i32 range, is an error
/// naming the tensor.
pub fn read_safetensors(path: &Path) -> Result<(BTreeMap<String, Tensor>, HashMap<String, String>)> {
    let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_safetensors(&bytes, path)
}

/// [`read_safetensors`] on bytes already read; `path` names the file in errors.
pub fn parse_safetensors(
    bytes: &[u8],
    path: &Path,
) -> Result<(BTreeMap<String, Tensor>, HashMap<String, String>)> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| Error::Safetensors {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| Error::Safetensors {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let metadata = meta.metadata().clone().unwrap_or_default();
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        if name.ends_with(".num_batches_tracked") {
            continue;
        }
        let t = decode_tensor(view.dtype(), view.shape(), view.data()).map_err(|reason| Error::Weights {
            path: path.to_path_buf(),
            tensor: name.clone(),
            reason,
        })?;
        if let Some((i, v)) = t.first_non_finite() {
            return Err(Error::Weights {
                path: path.to_path_buf(),
                tensor: name,
                reason: format!("holds the non-finite value {v} at flat position {i}"),
            });
        }
        out.insert(name, t);
    }
    Ok((out, metadata))
}

/// A stored tensor: f32 and f64 as f32 values, f16 and bf16 held as they are (read as f32
/// where used; see [`crate::ir::tensor::Store::Half`]), integers and booleans as i32.
fn decode_tensor(dtype: Dtype, shape: &[usize], b: &[u8]) -> std::result::Result<Tensor, String> {
    let shape = shape.to_vec();
    let malformed = || format!("{dtype:?} data does not fill shape {shape:?}");
    let words = |n: usize| b.chunks_exact(n);
    let half = |bf16| {
        let bits = words(2).map(|c| u16::from_le_bytes(le(c))).collect();
        Tensor::from_half(shape.clone(), bf16, bits).ok_or_else(malformed)
    };
    let ints = |v: Vec<i128>| -> std::result::Result<Tensor, String> {
        let narrow: std::result::Result<Vec<i32>, String> = v
            .iter()
            .enumerate()
            .map(|(i, &x)| {
                i32::try_from(x).map_err(|_| {
                    format!("holds the integer {x} at flat position {i}, past the i32 range pare holds integers in")
                })
            })
            .collect();
        Tensor::from_i32(shape.clone(), narrow?).ok_or_else(malformed)
    };
    let v: Vec<f32> = match dtype {
        Dtype::F16 => return half(false),
        Dtype::BF16 => return half(true),
        Dtype::BOOL | Dtype::U8 => return ints(b.iter().map(|&x| x.into()).collect()),
        Dtype::I8 => return ints(b.iter().map(|&x| (x as i8).into()).collect()),
        Dtype::I16 => return ints(words(2).map(|c| i16::from_le_bytes(le(c)).into()).collect()),
        Dtype::U16 => return ints(words(2).map(|c| u16::from_le_bytes(le(c)).into()).collect()),
        Dtype::I32 => return ints(words(4).map(|c| i32::from_le_bytes(le(c)).into()).collect()),
        Dtype::U32 => return ints(words(4).map(|c| u32::from_le_bytes(le(c)).into()).collect()),
        Dtype::I64 => return ints(words(8).map(|c| i64::from_le_bytes(le(c)).into()).collect()),
        Dtype::U64 => return ints(words(8).map(|c| u64::from_le_bytes(le(c)).into()).collect()),
        Dtype::F32 => words(4).map(|c| f32::from_le_bytes(le(c))).collect(),
        Dtype::F64 => words(8).map(|c| f64::from_le_bytes(le(c)) as f32).collect(),
        other => {
            return Err(format!(
                "dtype {other:?} is not supported (expected F32, F64, F16, BF16, an integer or BOOL)"
            ))
        }
    };
    Tensor::new(shape.clone(), v).ok_or_else(malformed)
}

/// A little-endian word of `N` bytes (`c` is one of `chunks_exact(N)`).
fn le<const N: usize>(c: &[u8]) -> [u8; N] {
    c.try_into().expect("a chunk of N bytes")
}

/// Parses `arch.json` text into a validated graph.
pub fn parse_arch(text: &str, path: &Path) -> Result<Graph> {
    let arch_err = |reason: String| Error::Arch {
        path: path.to_path_buf(),
        reason,
    };
    let file: ArchFile = serde_json::from_str(text).map_err(|e| arch_err(e.to_string()))?;
    if file.format != ARCH_FORMAT {
        return Err(arch_err(format!(
            "format is '{}', expected '{ARCH_FORMAT}'",
            file.format
        )));
    }
    if file.version != ARCH_VERSION {
        return Err(arch_err(format!(
            "version {} is not supported (this pare reads version {ARCH_VERSION})",
            file.version
        )));
    }
    file.graph.shapes().map_err(|e| arch_err(e.to_string()))?;
    Ok(file.graph)
}

/// Serializes a graph as `arch.json` text.
pub fn arch_json(graph: &Graph) -> String {
    let file = ArchFile {
        format: ARCH_FORMAT.into(),
        version: ARCH_VERSION,
        graph: graph.clone(),
    };
    serde_json::to_string_pretty(&file).expect("graphs always serialize")
}

/// Checks loaded tensors against the graph: every declared parameter present with its shape,
/// nothing extra. Errors name the file and the tensor.
pub fn bind_params(graph: Graph, mut tensors: BTreeMap<String, Tensor>, path: &Path) -> Result<Model> {
    let mut params = Params::new();
    for r in param_refs(&graph) {
        let t = tensors.remove(&r.name).ok_or_else(|| Error::Weights {
            path: path.to_path_buf(),
            tensor: r.name.clone(),
            reason: format!(
                "missing (node '{}' is a {} and needs shape {:?})",
                graph.nodes[r.node].name,
                graph.nodes[r.node].op.kind(),
                r.spec.shape
            ),
        })?;
        if t.shape() != r.spec.shape.as_slice() {
            return Err(Error::Weights {
                path: path.to_path_buf(),
                tensor: r.name,
                reason: format!("shape {:?}, expected {:?}", t.shape(), r.spec.shape),
            });
        }
        params.insert(r.name, t);
    }
    if let Some(extra) = tensors.keys().next() {
        return Err(Error::Weights {
            path: path.to_path_buf(),
            tensor: extra.clone(),
            reason: "not a parameter of any node in the architecture".into(),
        });
    }
    Model::new(graph, params)
}

/// Saves `dir/arch.json` and `dir/weights.safetensors`, each atomically.
pub fn save(model: &Model, dir: &Path) -> Result<()> {
    write_atomic(&dir.join(ARCH_FILE), arch_json(&model.graph).as_bytes())?;
    write_atomic(&dir.join(WEIGHTS_FILE), &encode_safetensors(&model.params, None))
}

/// Loads a model directory written by [`save`] (or by PyTorch plus a hand-written `arch.json`).
pub fn load(dir: &Path) -> Result<Model> {
    let arch_path = dir.join(ARCH_FILE);
    let text = fs::read_to_string(&arch_path).map_err(|e| Error::io(&arch_path, e))?;
    let graph = parse_arch(&text, &arch_path)?;
    load_weights(graph, &dir.join(WEIGHTS_FILE))
}

/// Loads weights from any safetensors file onto a graph.
pub fn load_weights(graph: Graph, path: &Path) -> Result<Model> {
    let (tensors, _) = read_safetensors(path)?;
    bind_params(graph, tensors, path)
}
