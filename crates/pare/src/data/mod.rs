//! Data: the IDX reader, Fashion-MNIST, the `Dataset` trait, splits, batches and augmentation.

pub mod batch;
pub mod dataset;
pub mod fashion;
pub mod idx;

pub use batch::{calibration_batches, epoch_order, make_batch, sequential, Augment, Batch};
pub use dataset::{split, Dataset, InMemory, Subset};
