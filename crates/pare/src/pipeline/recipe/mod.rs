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
//! `cluster`, `quantize`, `distill`, `factorize`, `tie`, `hash`, `exits`, `binarize`). Unknown keys and impossible values (a ratio of 1, 20 bits, a negative learning rate) are
//! rejected while parsing, with the line and column; names that depend on the model (layers)
//! are checked against it before the first stage runs.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ir::quant::GAP_BITS;
use crate::prune::schedule::Ramp;

mod checked;
mod stages;

pub use checked::*;
pub use stages::*;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncodeSpec {
    #[serde(default = "stages::yes")]
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
                // The separable conversion takes no rank: without a rule only convolutions
                // change (as `pare factorize --conv separable`).
                Stage::Factorize(f)
                    if match [f.energy.is_some(), f.rank.is_some(), f.vbmf]
                        .iter()
                        .filter(|x| **x)
                        .count()
                    {
                        0 => f.conv != Some(crate::lowrank::ConvMethod::Separable),
                        n => n != 1,
                    } =>
                {
                    return Err(at(
                        "give exactly one of energy, rank and vbmf (none only with conv = \"separable\")"
                            .into(),
                    ))
                }
                Stage::Factorize(f) if f.energy.is_some_and(|e| e.0 == 0.0) || f.rank == Some(0) => {
                    return Err(at(
                        "energy and rank must be above 0 (the layer would be removed)".into()
                    ))
                }
                Stage::Exits(e) if e.at.is_empty() => {
                    return Err(at("at must name at least one layer".into()))
                }
                Stage::Exits(e)
                    if [e.max_drop.is_some(), e.target_acc.is_some(), e.budget.is_some()]
                        .iter()
                        .filter(|x| **x)
                        .count()
                        > 1 =>
                {
                    return Err(at("give at most one of max_drop, target_acc and budget".into()))
                }
                Stage::Exits(e)
                    if e.max_drop.is_some_and(|d| !(d >= 0.0 && d.is_finite()))
                        || e.target_acc.is_some_and(|a| !(0.0..=1.0).contains(&a))
                        || e.budget.is_some_and(|b| !(b > 0.0 && b <= 1.0)) =>
                {
                    return Err(at(
                        "max_drop must be 0 or more points, target_acc in [0, 1], budget in (0, 1]".into(),
                    ))
                }
                Stage::Exits(_) if r.val == 0 => return Err(at(
                    "an exits stage chooses its threshold on held-out images: set `val` (e.g. val = 5000)"
                        .into(),
                )),
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
    use crate::prune::Criterion;
    use crate::quant::CentroidInit;

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
