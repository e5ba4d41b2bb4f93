//! Training: optimizers, learning-rate schedules, the fit loop with hooks, checkpoints.

pub(crate) mod checkpoint;
pub mod config;
pub mod fit;
pub mod optim;
pub mod outputs;
pub mod reparam_hook;
pub mod schedule;

pub use fit::{
    accuracy, evaluate, fit, loss_and_correct, update_running_stats, Chain, EpochRecord, FitConfig,
    FitReport, Hooks, Metrics, NoHooks, StepInfo,
};
pub use optim::{Optimizer, OptimizerConfig};
pub use outputs::OutputLosses;
pub use reparam_hook::ReparamHook;
pub use schedule::{LrSchedule, Schedule};
