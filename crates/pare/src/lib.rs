//! # pare: model compression with measured results
//!
//! The key decision: a model is *data* — an [`ir::Model`], a graph of named nodes over a
//! closed [`ir::Op`] enum plus named parameters — not a tree of framework modules. Every
//! compression method is a function from model to model (or to masks), so pruning can slice
//! parameters, factorization can replace nodes and exits can be grafted on, and the result is
//! saved as `arch.json` + `weights.safetensors` with PyTorch names and layouts.
//!
//! Execution ([`exec`]) is the only module that touches the tensor engine (burn, flex CPU
//! backend); everything else speaks in [`ir::Tensor`]. Deployed inference runs on pare's own
//! kernels ([`native`]), whose cost follows the MACs that compression removes.
//!
//! Module map: [`ir`] (graph, ops, params, quantizer definitions, I/O), [`exec`]
//! (forward/backward, loss terms), [`data`] (IDX, Fashion-MNIST, batches, augmentation),
//! [`train`] (optimizers, schedules, fit loop, checkpoints), [`zoo`] (model constructors),
//! methods [`prune`], [`quant`] (uniform PTQ/QAT, weight sharing) and [`distill`], [`codec`]
//! (Huffman, sparse index, the `.pare` file), [`pipeline`] (TOML recipes composing the
//! methods), [`report`] (per-layer tables, plots, latency), [`native`] (inference kernels),
//! [`fuse`] (BatchNorm folding), [`lowrank`] (SVD factorization of Linear layers).

pub mod binary;
pub mod codec;
pub mod data;
pub mod distill;
pub mod error;
pub mod exec;
pub mod exits;
pub mod fuse;
#[doc(hidden)]
pub mod fuzz;
pub mod hashing;
pub mod ir;
pub mod lowrank;
pub mod native;
pub mod onnx;
pub mod pipeline;
pub mod prune;
pub mod quant;
pub mod report;
pub mod train;
pub mod tying;
pub mod zoo;

pub use error::{Error, Result};
