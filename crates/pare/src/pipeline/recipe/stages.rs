//! The stages a recipe may hold, each with its settings and their defaults.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::checked::*;
use crate::prune::schedule::Ramp;
use crate::prune::Criterion;
use crate::quant::{CentroidInit, Observer, Reduce};

/// Where the pipeline starts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// A zoo model, freshly initialized (then a `train` stage should come first).
    #[serde(default)]
    pub zoo: Option<String>,
    /// A model directory (relative paths are relative to the recipe's directory).
    #[serde(default)]
    pub dir: Option<PathBuf>,
    #[serde(default)]
    pub seed: u64,
}

/// A stage's training: SGD with momentum, as in the papers' fine-tuning, or Adam.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Training {
    pub epochs: usize,
    pub lr: Positive,
    /// `"sgd"` (default) or `"adam"` (PyTorch's defaults; `momentum` is then unused,
    /// `weight_decay` is L2 on the gradient).
    #[serde(default, skip_serializing_if = "is_sgd")]
    pub optimizer: OptimizerName,
    #[serde(default = "momentum")]
    pub momentum: f32,
    #[serde(default)]
    pub weight_decay: f32,
    #[serde(default = "batch_size")]
    pub batch_size: usize,
    /// Cosine decay of the learning rate to zero over the stage.
    #[serde(default)]
    pub cosine: bool,
    /// Random crops (padding 2) while training.
    #[serde(default)]
    pub augment: bool,
    /// With `augment`: how many fixed crop views of each image to cycle through (0: a fresh
    /// crop every epoch). A distillation stage caches its teacher's logits per view.
    #[serde(default)]
    pub views: usize,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerName {
    #[default]
    Sgd,
    Adam,
}

fn is_sgd(o: &OptimizerName) -> bool {
    *o == OptimizerName::Sgd
}

fn momentum() -> f32 {
    0.9
}

fn batch_size() -> usize {
    128
}

/// One step of a pipeline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Stage {
    /// Train (or fine-tune) the current model; weights that are zero stay zero.
    Train(TrainStage),
    /// Magnitude pruning to per-layer sparsities with a schedule, fine-tuning meanwhile.
    Prune(PruneStage),
    /// Structured pruning: channels (filters, neurons) removed by an importance criterion, so
    /// the model gets physically smaller, with fine-tuning after each step.
    Structured(StructuredStage),
    /// k-means weight sharing of layer weights (Linear, Conv2d, attention), then centroid fine-tuning.
    Cluster(ClusterStage),
    /// Uniform quantization of weights (and optionally activations), PTQ or QAT.
    Quantize(QuantizeStage),
    /// Distillation from a teacher, by default the model the pipeline started from: Hinton KD
    /// fine-tuning (pruned zeros, shared values and quantizers are kept), or one of the
    /// methods that are schedules of runs (FitNets, TAKD, Born-Again, Label Refinery).
    Distill(DistillStage),
    /// Low-rank factorization: Linear layers by SVD, and with `conv` convolutions by spatial
    /// SVD or Tucker-2, then fine-tuning.
    Factorize(FactorizeStage),
    /// Cross-layer tying (ALBERT): identical blocks compute with one parameter set, then
    /// training.
    Tie(TieStage),
    /// HashedNets: Linear layers replaced by hashed ones that store `1 / factor` of their
    /// weights as shared values, then training.
    Hash(HashStage),
    /// Early exits: heads grafted after the named layers, trained on the frozen backbone, and
    /// one rule's threshold chosen on the validation split (`val`).
    Exits(ExitsStage),
    /// A binary network (BinaryConnect, BNN or XNOR-Net): the model rewritten and trained
    /// under binary weights, which later stages keep and the file stores as one bit each.
    Binarize(BinarizeStage),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BinarizeStage {
    /// `"binaryconnect"` (binary weights), `"bnn"` (binary weights and activations) or
    /// `"xnor"` (scaled binary weights and activations, first and last layer real).
    pub method: crate::binary::Method,
    /// BinaryConnect's stochastic binarization while training (the stored network takes the
    /// sign).
    #[serde(default)]
    pub stochastic: bool,
    /// BinaryConnect's per-layer learning-rate scaling (Glorot's bound).
    #[serde(default)]
    pub glorot_lr: bool,
    /// The papers train binary networks with Adam: `optimizer = "adam"`.
    pub train: Training,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExitsStage {
    /// The layers whose outputs the heads read, in graph order.
    pub at: Vec<String>,
    /// `"confidence"` (default), `"entropy"` or `"patience"`.
    #[serde(default = "confidence")]
    pub rule: crate::exits::Rule,
    /// The cheapest threshold losing at most this many accuracy points on the validation
    /// split (the default: 0.5) ...
    #[serde(default)]
    pub max_drop: Option<f64>,
    /// ... or keeping at least this accuracy ...
    #[serde(default)]
    pub target_acc: Option<f64>,
    /// ... or the most accurate one spending at most this fraction of the MACs on average.
    #[serde(default)]
    pub budget: Option<f64>,
    /// Hidden width of each head (0: one Linear layer after the pooling).
    #[serde(default)]
    pub hidden: usize,
    /// Distill every head from the final head at this temperature (alpha 0.5).
    #[serde(default)]
    pub distill: Option<Positive>,
    /// The heads' training (the backbone stays frozen).
    pub train: Training,
}

fn confidence() -> crate::exits::Rule {
    crate::exits::Rule::Confidence
}

impl ExitsStage {
    /// The target the threshold is chosen for (checked when the recipe is read: at most one
    /// is given, each in range).
    pub fn target(&self) -> crate::exits::Target {
        use crate::exits::Target;
        match (self.max_drop, self.target_acc, self.budget) {
            (_, _, Some(b)) => Target::Budget(b),
            (_, Some(a), _) => Target::Accuracy(a),
            (d, _, _) => Target::Drop(d.unwrap_or(0.5)),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TieStage {
    /// The identical blocks as node-name prefixes; the later ones use the first one's
    /// parameters.
    pub blocks: Vec<String>,
    /// `"mean"` (default: the blocks' mean) or `"first"` (the first block's parameters).
    #[serde(default = "mean_init")]
    pub init: crate::tying::TieInit,
    /// Tie the blocks' BatchNorm and LayerNorm layers too, as ALBERT does.
    #[serde(default)]
    pub norms: bool,
    pub train: Training,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HashStage {
    /// Virtual weights per stored value (8: each layer keeps 1/8 of its weights).
    pub factor: HashFactor,
    /// The Linear layers to hash (default: every one).
    #[serde(default)]
    pub layers: Vec<String>,
    /// `"fit"` (default: each shared value the mean of its positions' signed weights, for a
    /// trained model) or `"fresh"` (drawn as a new layer's, for training from scratch as the
    /// paper does).
    #[serde(default = "fit_buckets")]
    pub init: crate::hashing::Buckets,
    pub train: Training,
}

fn fit_buckets() -> crate::hashing::Buckets {
    crate::hashing::Buckets::Fit
}

fn mean_init() -> crate::tying::TieInit {
    crate::tying::TieInit::Mean
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FactorizeStage {
    /// Keep the fewest singular values holding this fraction of each layer's squared norm.
    #[serde(default)]
    pub energy: Option<UnitFraction>,
    /// Or keep at most this many.
    #[serde(default)]
    pub rank: Option<usize>,
    /// Or choose each layer's rank by empirical variational Bayesian matrix factorization.
    #[serde(default)]
    pub vbmf: bool,
    /// `"spatial"`, `"tucker2"` or `"separable"`: also factorize the convolutions that method
    /// applies to.
    #[serde(default)]
    pub conv: Option<crate::lowrank::ConvMethod>,
    /// `"separable"`: training images each pointwise layer is refitted on, to the original
    /// layer's outputs (0: keep the weight-space fit).
    #[serde(default = "separable_calib")]
    pub calib: usize,
    /// The layers to factorize (default: all that qualify).
    #[serde(default)]
    pub layers: Vec<String>,
    pub train: Training,
}

fn separable_calib() -> usize {
    256
}

impl FactorizeStage {
    /// The rank rule (checked when the recipe is read: exactly one of energy, rank and vbmf, or
    /// none for the separable conversion, which takes no rank).
    pub fn rank_rule(&self) -> crate::lowrank::Rank {
        if self.vbmf {
            return crate::lowrank::Rank::Vbmf;
        }
        match (self.energy, self.rank) {
            (Some(e), _) => crate::lowrank::Rank::Energy(e.0 as f64),
            (None, r) => crate::lowrank::Rank::Fixed(r.unwrap_or(usize::MAX)),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistillStage {
    /// A model directory; absent = the model the recipe started from (`[model] dir`).
    #[serde(default)]
    pub teacher: Option<PathBuf>,
    #[serde(default = "four")]
    pub temperature: Positive,
    #[serde(default = "alpha")]
    pub alpha: UnitFraction,
    /// `kd` by default.
    #[serde(default)]
    pub method: DistillMethod,
    pub train: Training,
}

/// How a distill stage teaches the current model. In TOML: `method = "kd"`, or a table such
/// as `method = { fitnet = { guided = "relu2", hint = "conv3" } }`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum DistillMethod {
    /// Hinton KD into the current model, keeping its encoding.
    #[default]
    Kd,
    /// FitNets: `hint_epochs` training the layers up to `guided` (through a regressor) to
    /// predict the teacher's `hint` layer, then KD.
    Fitnet {
        guided: String,
        hint: String,
        #[serde(default = "one")]
        hint_epochs: usize,
        #[serde(default = "unit")]
        beta: Positive,
    },
    /// Teacher-Assistant KD: `assistant`, a zoo model (`vgg`, `mlp:1200,1200`) built fresh, is
    /// distilled from the teacher, then the current model from it.
    Takd { assistant: String },
    /// Born-Again networks: `generations` fresh copies of the current architecture, each
    /// distilled from the one before (the first from the current model); the last is kept.
    BornAgain { generations: usize },
    /// Label Refinery: like Born-Again, with the previous model's predictions as the only labels
    /// (the first round learns from the teacher).
    Refinery { rounds: usize },
}

impl DistillMethod {
    pub fn name(&self) -> &'static str {
        match self {
            DistillMethod::Kd => "kd",
            DistillMethod::Fitnet { .. } => "fitnet",
            DistillMethod::Takd { .. } => "takd",
            DistillMethod::BornAgain { .. } => "born_again",
            DistillMethod::Refinery { .. } => "refinery",
        }
    }
}

fn unit() -> Positive {
    Positive(1.0)
}

fn four() -> Positive {
    Positive(4.0)
}

fn alpha() -> UnitFraction {
    UnitFraction(0.9)
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainStage {
    pub train: Training,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneStage {
    /// Sparsity for layers not listed in `layers`.
    #[serde(default = "zero_fraction")]
    pub default: Fraction,
    /// Per-layer sparsity (fraction of weights removed).
    #[serde(default)]
    pub layers: BTreeMap<String, Fraction>,
    #[serde(default = "agp")]
    pub ramp: Ramp,
    /// Epochs over which the sparsity ramps up (the rest of `train.epochs` fine-tunes).
    #[serde(default = "one")]
    pub prune_epochs: usize,
    /// Steps between mask updates during the ramp.
    #[serde(default = "every")]
    pub every: usize,
    pub train: Training,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StructuredStage {
    #[serde(default = "l1")]
    pub criterion: Criterion,
    /// Fraction of the channels removed from each layer not listed in `layers` (with
    /// `global`, of all prunable channels, ranked together).
    #[serde(default = "zero_fraction")]
    pub ratio: Fraction,
    /// Instead of a ratio: remove the channels whose score, divided by the mean score of their
    /// layer, is below this (Network Slimming's threshold on BN scales, say); each layer keeps
    /// at least one channel. With `steps`, applied again at every step.
    #[serde(default)]
    pub threshold: Option<Positive>,
    /// Per-layer fractions, by layer name (a layer coupled to others through a residual add
    /// stands for all of them).
    #[serde(default)]
    pub layers: BTreeMap<String, Fraction>,
    /// Rank every layer's channels together (scores normalized per layer).
    #[serde(default)]
    pub global: bool,
    /// Layers that keep all their channels.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Round each layer's kept channel count to a multiple of this (1: off).
    #[serde(default = "one")]
    pub round_to: usize,
    /// Remove the channels in this many equal steps (of what is left), fine-tuning after each.
    #[serde(default = "one")]
    pub steps: usize,
    /// Calibration batches (of 128) for the data-driven criteria (apoz, taylor).
    #[serde(default = "calib")]
    pub calib_batches: usize,
    /// Fine-tuning after each step (`epochs = 0`: none).
    pub train: Training,
}

fn l1() -> Criterion {
    Criterion::L1
}

fn zero_fraction() -> Fraction {
    Fraction(0.0)
}

fn agp() -> Ramp {
    Ramp::Agp
}

fn one() -> usize {
    1
}

fn every() -> usize {
    50
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterStage {
    /// Bits (codebook of `2^bits` values) for Linear layers and the default.
    pub bits: Bits,
    /// Bits for Conv2d layers (Deep Compression: 8).
    #[serde(default)]
    pub conv_bits: Option<Bits>,
    #[serde(default)]
    pub layers: BTreeMap<String, Bits>,
    #[serde(default = "linear")]
    pub init: CentroidInit,
    #[serde(default)]
    pub reduce: Reduce,
    /// Centroid fine-tuning; absent = none.
    #[serde(default)]
    pub train: Option<Training>,
}

fn linear() -> CentroidInit {
    CentroidInit::Linear
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuantizeStage {
    pub bits: Bits,
    #[serde(default)]
    pub conv_bits: Option<Bits>,
    #[serde(default)]
    pub layers: BTreeMap<String, Bits>,
    #[serde(default = "yes")]
    pub per_channel: bool,
    #[serde(default = "yes")]
    pub symmetric: bool,
    /// Activation quantization (simulated), calibrated on training batches.
    #[serde(default)]
    pub activations: Option<Activations>,
    #[serde(default = "calib")]
    pub calib_batches: usize,
    /// Quantization-aware training; absent = post-training quantization only.
    #[serde(default)]
    pub train: Option<Training>,
}

pub(super) fn yes() -> bool {
    true
}

fn calib() -> usize {
    8
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Activations {
    pub bits: Bits,
    #[serde(default)]
    pub symmetric: bool,
    #[serde(default = "minmax")]
    pub observer: ObserverName,
    /// For the percentile observer.
    #[serde(default = "percentile")]
    pub percentile: Percentile,
    /// `layers` (the inputs of Linear/Conv2d) or `graph` (also the inputs of every Add).
    #[serde(default)]
    pub scope: crate::quant::ActScope,
}

fn minmax() -> ObserverName {
    ObserverName::Minmax
}

fn percentile() -> Percentile {
    Percentile(99.99)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObserverName {
    Minmax,
    Percentile,
    Mse,
    Kl,
}

impl Activations {
    pub fn observer(&self) -> Observer {
        match self.observer {
            ObserverName::Minmax => Observer::MinMax,
            ObserverName::Percentile => Observer::Percentile { q: self.percentile.0 },
            ObserverName::Mse => Observer::Mse,
            ObserverName::Kl => Observer::Kl,
        }
    }
}

/// How the final file is written.
impl Stage {
    pub fn name(&self) -> &'static str {
        match self {
            Stage::Train(_) => "train",
            Stage::Prune(_) => "prune",
            Stage::Structured(_) => "structured",
            Stage::Cluster(_) => "cluster",
            Stage::Quantize(_) => "quantize",
            Stage::Distill(_) => "distill",
            Stage::Factorize(_) => "factorize",
            Stage::Tie(_) => "tie",
            Stage::Hash(_) => "hash",
            Stage::Exits(_) => "exits",
            Stage::Binarize(_) => "binarize",
        }
    }

    pub fn training(&self) -> Option<&Training> {
        match self {
            Stage::Train(s) => Some(&s.train),
            Stage::Prune(s) => Some(&s.train),
            Stage::Structured(s) => Some(&s.train),
            Stage::Cluster(s) => s.train.as_ref(),
            Stage::Quantize(s) => s.train.as_ref(),
            Stage::Distill(s) => Some(&s.train),
            Stage::Factorize(s) => Some(&s.train),
            Stage::Tie(s) => Some(&s.train),
            Stage::Hash(s) => Some(&s.train),
            Stage::Exits(s) => Some(&s.train),
            Stage::Binarize(s) => Some(&s.train),
        }
    }
}
