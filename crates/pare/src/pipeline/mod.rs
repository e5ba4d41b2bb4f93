//! Compression pipelines: a TOML [`Recipe`] (prune -> fine-tune -> cluster or quantize ->
//! encode) run stage by stage on one model by [`run()`], with an evaluation after every stage
//! and the compressed file decoded and evaluated at the end.

pub mod recipe;
pub mod report;
pub mod run;

pub use recipe::Recipe;
pub use run::{preflight, run, Data, Events, Outcome, StageReport};
