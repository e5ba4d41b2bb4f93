//! The model intermediate representation: pare's own data structure for networks.
//!
//! A [`Model`] is a [`Graph`] of named [`Node`]s, each holding an [`Op`] from a closed enum, plus
//! named parameters ([`Params`]). Compression methods read and rewrite this structure; nothing
//! in `ir` depends on the tensor engine or on any other module of the crate.

pub mod graph;
pub mod io;
pub mod model;
pub mod op;
pub mod quant;
pub mod reparam;
pub mod rewrite;
pub mod tensor;

pub use graph::{DType, Graph, GraphBuilder, InputSpec, Node, Normalize, Shapes, INPUT};
pub use model::{Model, ParamRef, Params};
pub use op::{AxisRule, Op, ParamKind, ParamSpec};
pub use quant::{QParams, Scheme, WeightQuant};
pub use reparam::{Reparam, Reparams};
pub use rewrite::Readers;
pub use tensor::Tensor;
