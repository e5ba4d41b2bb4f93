//! Data: the formats `--data` reads ([`source`]: IDX and Fashion-MNIST, CIFAR-10 binary, image
//! folders, NumPy arrays), image preparation, the `Dataset` trait, splits, batches and
//! augmentation.

pub mod batch;
pub mod cifar;
pub mod dataset;
pub mod fashion;
pub mod folder;
pub mod idx;
pub mod npz;
pub mod prep;
pub mod source;

pub use batch::{calibration_batches, epoch_order, make_batch, sequential, Augment, Batch};
pub use dataset::{split, Dataset, InMemory, Subset};
pub use prep::Prep;
pub use source::{load, Format, Splits};
