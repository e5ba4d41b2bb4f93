//! Compression recipes: a TOML file naming the starting model and the stages to run, e.g.
//!
//! ```toml
//! [model]
//! zoo = "lenet300"
//!
//! [[stage]]
//! train.train = { epochs = 10, lr = 0.01 }
//!
//! [[stage]]
//! [stage.prune]
//! layers = { fc1 = 0.92, fc2 = 0.91, fc3 = 0.74 }
//! ramp = "agp"
//! prune_epochs = 10
//! train = { epochs = 30, lr = 0.01, cosine = true }
//!
//! [[stage]]
//! [stage.cluster]
//! bits = 5
//! train = { epochs = 5, lr = 0.0001 }
//!
//! [encode]
//! huffman = true
//! ```
//!
//! Each `[[stage]]` holds one table named for its kind (`train`, `prune`, `structured`,
//! `cluster`, `quantize`, `distill`). Unknown keys and impossible values (a ratio of 1, 20 bits, a negative learning rate) are
//! rejected while parsing, with the line and column; names that depend on the model (layers)
//! are checked against it before the first stage runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ir::quant::{GAP_BITS, SHARE_BITS};
use crate::prune::schedule::Ramp;
use crate::prune::Criterion;
use crate::quant::{CentroidInit, Observer, Reduce};

/// A number checked while the recipe is parsed, so that toml reports the line of a bad value.
macro_rules! checked {
    ($(#[$doc:meta])* $name:ident($ty:ty, $tys:literal), |$v:ident| $ok:expr, $msg:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(try_from = $tys, into = $tys)]
        pub struct $name(pub $ty);

        impl TryFrom<$ty> for $name {
            type Error = String;
            fn try_from($v: $ty) -> std::result::Result<Self, String> {
                if $ok {
                    Ok($name($v))
                } else {
                    Err(format!($msg))
                }
            }
        }

        impl From<$name> for $ty {
            fn from(x: $name) -> $ty {
                x.0
            }
        }
    };
}

checked!(
    /// A fraction in `[0, 1)`: what may be removed from a layer.
    Fraction(f32, "f32"),
    |v| (0.0..1.0).contains(&v),
    "{v} is not a fraction in [0, 1) (a layer keeps at least one weight)"
);
checked!(
    /// A positive, finite number (learning rates, temperatures).
    Positive(f32, "f32"),
    |v| v > 0.0 && v.is_finite(),
    "{v} must be positive"
);
checked!(
    /// A bit width in `SHARE_BITS` (weight sharing) or `BITS` (uniform; checked by the stage).
    Bits(u32, "u32"),
    |v| SHARE_BITS.contains(&v),
    "{v} bits: must be in {SHARE_BITS:?}"
);
checked!(
    /// The percentile an observer clips at, in `(50, 100]` (the range keeps both tails).
    Percentile(f32, "f32"),
    |v| v > 50.0 && v <= 100.0,
    "percentile {v} must be in (50, 100]"
);
checked!(
    /// A weight in `[0, 1]`.
    UnitFraction(f32, "f32"),
    |v| (0.0..=1.0).contains(&v),
    "{v} must be in [0, 1]"
);

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

/// SGD with momentum, as in the papers' fine-tuning.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Training {
    pub epochs: usize,
    pub lr: Positive,
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

fn yes() -> bool {
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncodeSpec {
    #[serde(default = "yes")]
    pub huffman: bool,
    /// Relative-index width for sparse layers; absent = the smallest of 2..=8 per layer.
    #[serde(default)]
    pub gap_bits: Option<u32>,
    #[serde(default = "file_name")]
    pub file: String,
}

impl Default for EncodeSpec {
    fn default() -> Self {
        EncodeSpec {
            huffman: true,
            gap_bits: None,
            file: file_name(),
        }
    }
}

fn file_name() -> String {
    "model.pare".into()
}

/// What `pare compress` writes in its output directory besides the compressed file.
pub const OUTPUT_NAMES: [&str; 4] = ["model", "report.md", "report.json", "stages"];

/// The compressed file's name must be a plain file name inside the output directory: no
/// directories, not absolute, not `.`/`..`, and none of the other outputs' names.
fn check_file_name(name: &str) -> std::result::Result<(), String> {
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0'])
        && !name.starts_with('.');
    if !plain {
        return Err("must be a plain file name (no directories, not hidden), e.g. \"model.pare\"".into());
    }
    if OUTPUT_NAMES.contains(&name) {
        return Err(format!(
            "is the name of another output ({})",
            OUTPUT_NAMES.join(", ")
        ));
    }
    Ok(())
}

/// A whole recipe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    pub model: ModelSpec,
    /// Held-out training images for validation during training stages (0 = none).
    #[serde(default)]
    pub val: usize,
    #[serde(default, rename = "stage")]
    pub stages: Vec<Stage>,
    #[serde(default)]
    pub encode: EncodeSpec,
}

impl Stage {
    pub fn name(&self) -> &'static str {
        match self {
            Stage::Train(_) => "train",
            Stage::Prune(_) => "prune",
            Stage::Structured(_) => "structured",
            Stage::Cluster(_) => "cluster",
            Stage::Quantize(_) => "quantize",
            Stage::Distill(_) => "distill",
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
        }
    }
}

impl Recipe {
    /// Parses a recipe; `path` names the file in errors, which carry the line and column.
    pub fn parse(text: &str, path: &Path) -> Result<Recipe> {
        let bad = |reason: String| Error::Recipe {
            path: path.to_path_buf(),
            reason,
        };
        let mut r: Recipe = toml::from_str(text).map_err(|e| bad(e.to_string().trim_end().to_string()))?;
        match (&r.model.zoo, &r.model.dir) {
            (Some(_), None) | (None, Some(_)) => {}
            _ => return Err(bad("[model] needs exactly one of `zoo` and `dir`".into())),
        }
        let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let resolve = |dir: &mut PathBuf| {
            if dir.is_relative() {
                *dir = base.join(&*dir);
            }
        };
        if let Some(dir) = &mut r.model.dir {
            resolve(dir);
        }
        for s in &mut r.stages {
            if let Stage::Distill(DistillStage { teacher: Some(t), .. }) = s {
                resolve(t);
            }
        }
        for (i, s) in r.stages.iter().enumerate() {
            let at = |m: String| bad(format!("stage {} ({}): {m}", i + 1, s.name()));
            if let Some(t) = s.training() {
                if t.batch_size == 0 {
                    return Err(at("train.batch_size must be at least 1".into()));
                }
                if !(0.0..1.0).contains(&t.momentum) || !(t.weight_decay >= 0.0 && t.weight_decay.is_finite())
                {
                    return Err(at(format!(
                        "train.momentum must be in [0, 1) and weight_decay a finite number >= 0 (got {}, {})",
                        t.momentum, t.weight_decay
                    )));
                }
                if t.views > 0 && !t.augment {
                    return Err(at(
                        "train.views counts augmented views: it needs augment = true".into()
                    ));
                }
            }
            match s {
                Stage::Train(TrainStage { train: t }) | Stage::Distill(DistillStage { train: t, .. })
                    if t.epochs == 0 =>
                {
                    return Err(at(
                        "train.epochs must be at least 1 (the stage only trains)".into()
                    ))
                }
                Stage::Prune(p) if p.ramp != Ramp::OneShot && p.prune_epochs > p.train.epochs => {
                    return Err(at(format!(
                        "prune_epochs ({}) cannot exceed train.epochs ({})",
                        p.prune_epochs, p.train.epochs
                    )))
                }
                Stage::Prune(p) if p.every == 0 => return Err(at("every must be at least 1".into())),
                Stage::Structured(p) if p.steps == 0 || p.round_to == 0 => {
                    return Err(at("steps and round_to must be at least 1".into()))
                }
                Stage::Structured(p) if p.criterion.needs_data() && p.calib_batches == 0 => {
                    return Err(at(format!(
                        "criterion {} scores channels on data: calib_batches must be at least 1",
                        p.criterion.name()
                    )))
                }
                Stage::Structured(p)
                    if p.threshold.is_none() && p.ratio.0 == 0.0 && p.layers.values().all(|f| f.0 == 0.0) =>
                {
                    return Err(at(
                        "removes nothing: give a ratio, per-layer fractions above 0 or a threshold".into(),
                    ))
                }
                Stage::Structured(p) if p.threshold.is_some() && p.ratio.0 > 0.0 => {
                    return Err(at("give a ratio or a threshold, not both".into()))
                }
                Stage::Structured(p) if p.global && !p.layers.is_empty() => {
                    return Err(at(
                        "per-layer fractions apply to per-layer ranking, not to global".into(),
                    ))
                }
                Stage::Quantize(q) => {
                    let bits = [Some(q.bits), q.conv_bits]
                        .into_iter()
                        .flatten()
                        .chain(q.layers.values().copied());
                    if let Some(b) = bits.into_iter().find(|b| b.0 < 2) {
                        return Err(at(format!(
                            "uniform quantization needs at least 2 bits, got {}",
                            b.0
                        )));
                    }
                    if q.activations.is_some_and(|a| a.bits.0 < 2) {
                        return Err(at("activation bits must be at least 2".into()));
                    }
                }
                _ => {}
            }
        }
        if r.encode.gap_bits.is_some_and(|g| !GAP_BITS.contains(&g)) {
            return Err(bad(format!("[encode] gap_bits must be in {GAP_BITS:?}")));
        }
        check_file_name(&r.encode.file)
            .map_err(|e| bad(format!("[encode] file = {:?}: {e}", r.encode.file)))?;
        Ok(r)
    }

    pub fn load(path: &Path) -> Result<Recipe> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Recipe::parse(&text, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> std::result::Result<Recipe, String> {
        Recipe::parse(s, Path::new("r.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn a_full_recipe_parses() {
        let r = parse(
            r#"
[model]
zoo = "lenet300"
[[stage]]
[stage.prune]
layers = { fc1 = 0.9 }
prune_epochs = 2
train = { epochs = 3, lr = 0.01, cosine = true }
[[stage]]
[stage.cluster]
bits = 5
conv_bits = 8
[[stage]]
[stage.quantize]
bits = 8
activations = { bits = 8, observer = "kl" }
[encode]
huffman = false
"#,
        )
        .unwrap();
        assert_eq!(r.stages.len(), 3);
        assert!(
            matches!(&r.stages[1], Stage::Cluster(c) if c.bits == Bits(5) && c.init == CentroidInit::Linear)
        );
        assert!(!r.encode.huffman);
    }

    #[test]
    fn a_structured_stage_parses_with_defaults_and_rejects_what_cannot_run() {
        let head = "[model]\nzoo = \"resnet20\"\n[[stage]]\n[stage.structured]\n";
        let r = parse(&format!(
            "{head}ratio = 0.3\ntrain = {{ epochs = 2, lr = 0.01 }}\n"
        ))
        .unwrap();
        let Stage::Structured(s) = &r.stages[0] else {
            panic!("a structured stage");
        };
        assert_eq!(
            (s.criterion, s.steps, s.round_to, s.global),
            (Criterion::L1, 1, 1, false)
        );
        let r = parse(&format!(
            "{head}criterion = \"fpgm\"\nlayers = {{ \"layer1.0.conv1\" = 0.5 }}\ntrain = {{ epochs = 0, lr = 0.01 }}\n"
        ))
        .unwrap();
        assert!(matches!(&r.stages[0], Stage::Structured(s) if s.criterion == Criterion::Fpgm));
        let r = parse(&format!(
            "{head}criterion = \"bn\"\nthreshold = 0.4\ntrain = {{ epochs = 0, lr = 0.01 }}\n"
        ))
        .unwrap();
        assert!(matches!(&r.stages[0], Stage::Structured(s) if s.threshold == Some(Positive(0.4))));
        for (body, needle) in [
            ("train = { epochs = 1, lr = 0.01 }\n", "removes nothing"),
            (
                "ratio = 0.3\nsteps = 0\ntrain = { epochs = 1, lr = 0.01 }\n",
                "steps",
            ),
            (
                "ratio = 0.3\nglobal = true\nlayers = { fc = 0.5 }\ntrain = { epochs = 1, lr = 0.01 }\n",
                "global",
            ),
            ("ratio = 1.0\ntrain = { epochs = 1, lr = 0.01 }\n", "line 5"),
            (
                "ratio = 0.3\nthreshold = 0.5\ntrain = { epochs = 1, lr = 0.01 }\n",
                "not both",
            ),
            (
                "threshold = -1\ntrain = { epochs = 1, lr = 0.01 }\n",
                "must be positive",
            ),
        ] {
            let e = parse(&format!("{head}{body}")).unwrap_err();
            assert!(e.contains(needle), "{body}: {e}");
        }
    }

    #[test]
    fn unknown_keys_and_impossible_values_name_the_line() {
        let e = parse("[model]\nzoo = \"lenet300\"\n[[stage]]\n[stage.cluster]\nbits = 5\nbitz = 4\n")
            .unwrap_err();
        assert!(e.contains("line 6") && e.contains("bitz"), "{e}");
        let e = parse("[model]\nzoo = \"x\"\n[[stage]]\n[stage.prune]\nlayers = { fc1 = 1.0 }\ntrain = { epochs = 1, lr = 0.1 }\n")
            .unwrap_err();
        assert!(e.contains("line 5") && e.contains("fraction"), "{e}");
        let e = parse("[model]\nzoo = \"x\"\n[[stage]]\ncluster.bits = 20\n").unwrap_err();
        assert!(e.contains("line 4") && e.contains("1..=16"), "{e}");
        let e = parse("[model]\nzoo = \"x\"\n[[stage]]\nsquash = {}\n").unwrap_err();
        assert!(e.contains("squash"), "{e}");
        let e = parse("[model]\nzoo = \"x\"\ndir = \"y\"\n").unwrap_err();
        assert!(e.contains("exactly one"), "{e}");
        let e = parse("[model]\nzoo = \"x\"\n[[stage]]\n[stage.train]\ntrain = { epochs = 1, lr = -1.0 }\n")
            .unwrap_err();
        assert!(e.contains("line 5") && e.contains("positive"), "{e}");
    }
}
