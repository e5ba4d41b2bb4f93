//! Quantization and weight sharing: uniform k-bit post-training quantization and
//! quantization-aware training ([`uniform`], activation ranges from [`observer`]), and Deep
//! Compression's trained quantization: k-means weight sharing ([`kmeans`](mod@kmeans)) with centroid
//! fine-tuning ([`share`]). The numeric definitions live in [`crate::ir::quant`], because the
//! IR's fake-quantizers use them; the compressed file format is [`crate::codec`].

pub mod kmeans;
pub mod observer;
pub mod share;
pub mod uniform;

pub use crate::ir::reparam::bake;
pub use kmeans::{kmeans, CentroidInit, Clusters};
pub use observer::{Observer, Samples};
pub use share::{Reduce, SharedLayer, Sharing, SharingHook};
pub use uniform::{calibrate_activations, strip_act_quant, weight_reparams, ActQuant, ActScope, LayerBits};
