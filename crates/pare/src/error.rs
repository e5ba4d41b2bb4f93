//! The library's one error type. Every variant carries the context a user needs to fix the
//! problem: the file, the tensor or node name, and what was expected.

use std::path::PathBuf;

/// Result alias used throughout the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in pare's library code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system error on a named file.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An IDX data file is malformed.
    #[error("{path}: not a valid IDX file: {reason}")]
    Idx { path: PathBuf, reason: String },
    /// A data set is missing or inconsistent.
    #[error("data set: {0}")]
    Data(String),
    /// `arch.json` could not be parsed or describes an invalid graph.
    #[error("{path}: {reason}")]
    Arch { path: PathBuf, reason: String },
    /// A weights file does not match the architecture.
    #[error("{path}: tensor '{tensor}': {reason}")]
    Weights {
        path: PathBuf,
        tensor: String,
        reason: String,
    },
    /// A safetensors file is unreadable as a whole.
    #[error("{path}: not a valid safetensors file: {reason}")]
    Safetensors { path: PathBuf, reason: String },
    /// The graph is inconsistent (shape mismatch, unknown input, cycle...).
    #[error("graph: node '{node}': {reason}")]
    Graph { node: String, reason: String },
    /// A configuration value is impossible (zero batch size, unknown model...).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A compressed model file is corrupt, truncated or of another format version.
    #[error("{path}: compressed model: {reason}")]
    Compressed { path: PathBuf, reason: String },
    /// An ONNX file is unreadable, or holds what pare cannot import (every unsupported node
    /// named at once).
    #[error("{path}: ONNX: {reason}")]
    Onnx { path: PathBuf, reason: String },
    /// A compression recipe has an unknown key or an impossible value.
    #[error("{path}: {reason}")]
    Recipe { path: PathBuf, reason: String },
    /// The user asked the run to stop (Ctrl-C); what was completed is saved.
    #[error("interrupted")]
    Interrupted,
    /// A checkpoint cannot be used to resume this run.
    #[error("{path}: checkpoint: {reason}")]
    Checkpoint { path: PathBuf, reason: String },
    /// Training produced a non-finite loss: the run was stopped instead of continuing on garbage.
    #[error(
        "loss became {value} at epoch {epoch}, step {step}: training diverged (try a lower learning rate)"
    )]
    NonFinite { epoch: usize, step: usize, value: f32 },
}

impl Error {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn graph(node: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Graph {
            node: node.into(),
            reason: reason.into(),
        }
    }
}
