//! `pare compress` (a TOML recipe: prune -> fine-tune -> cluster/quantize -> encode) and
//! `pare quantize` (one uniform quantization stage, PTQ or QAT, on a model directory). Both
//! run the library's pipeline and write `model.pare`, the decoded model directory and the
//! report (Markdown + JSON).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use pare::data::{split, Dataset, Subset};
use pare::ir::quant::BITS;
use pare::ir::{io, Model};
use pare::pipeline::recipe::{
    Activations, Bits, EncodeSpec, ModelSpec, ObserverName, Percentile, Positive, QuantizeStage, Stage,
    Training,
};
use pare::pipeline::{preflight, report, run, Data, Events, Recipe, StageReport};
use pare::quant::ActScope;
use pare::train::Hooks;
use pare::zoo::ZooModel;

use crate::commands::fresh_model;
use crate::progress::ProgressHooks;

#[derive(Args)]
pub struct CompressArgs {
    /// The recipe (TOML), e.g. recipes/lenet300.toml.
    #[arg(long)]
    pub recipe: PathBuf,
    /// Output directory: model.pare, model/ (decoded), report.md, report.json, stages/.
    #[arg(long)]
    pub out: PathBuf,
    /// Skip the stages a previous run of the same recipe finished (saved under OUT/stages).
    #[arg(long)]
    pub resume: bool,
    /// Overrides the recipe's seed.
    #[arg(long)]
    pub seed: Option<u64>,
    #[command(flatten)]
    pub data: crate::data_args::DataArgs,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ObserverArg {
    Minmax,
    Percentile,
    Mse,
    Kl,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ActScopeArg {
    Layers,
    Graph,
}

#[derive(Args)]
pub struct QuantizeArgs {
    /// Model directory to quantize.
    pub dir: PathBuf,
    #[arg(long)]
    pub out: PathBuf,
    /// Weight bits (2..=16) of Linear, Conv2d and attention layers.
    #[arg(long, default_value_t = 8)]
    pub bits: u32,
    /// One scale per tensor instead of per output channel.
    #[arg(long)]
    pub per_tensor: bool,
    /// Asymmetric weights (a zero point) instead of symmetric.
    #[arg(long)]
    pub asymmetric: bool,
    /// Also quantize activations (where --act-scope says) to this many bits.
    #[arg(long)]
    pub act_bits: Option<u32>,
    /// Which activations --act-bits quantizes: `layers` (the inputs of Linear/Conv2d) or
    /// `graph` (also both inputs of every Add, so that a residual stream stays int8 and an
    /// integer runtime runs a ResNet's QDQ export without converting at every block).
    /// Default: layers.
    #[arg(long, value_enum)]
    pub act_scope: Option<ActScopeArg>,
    #[arg(long, value_enum, default_value = "minmax")]
    pub observer: ObserverArg,
    /// Percentile for --observer percentile.
    #[arg(long, default_value_t = 99.99)]
    pub percentile: f32,
    #[arg(long, default_value_t = 8)]
    pub calib_batches: usize,
    /// Quantization-aware training epochs (0: post-training quantization only).
    #[arg(long, default_value_t = 0)]
    pub qat_epochs: usize,
    #[arg(long, default_value_t = 0.001)]
    pub lr: f32,
    /// Cosine decay of the QAT learning rate.
    #[arg(long)]
    pub cosine: bool,
    /// Huffman-code the integer codes in model.pare.
    #[arg(long)]
    pub huffman: bool,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub data: crate::data_args::DataArgs,
}

/// Prints stage boundaries and results; progress bars for training.
struct Printer;

impl Events for Printer {
    fn stage_started(&mut self, index: usize, total: usize, name: &str) {
        println!("== stage {index}/{total}: {name}");
    }

    fn training_hooks(&mut self, epochs: usize) -> Box<dyn Hooks> {
        Box::new(ProgressHooks::new(epochs, false))
    }

    fn stage_finished(&mut self, r: &StageReport) {
        let before = r
            .accuracy_before_training
            .map_or(String::new(), |a| format!(" (before its training {a:.4})"));
        println!(
            "{} {}: test accuracy {:.4}{before}, {:.1}% of weights kept, {:.0} s{}",
            if r.index == 0 { "start" } else { "done" },
            r.name,
            r.accuracy,
            100.0 * r.nonzero_weights as f64 / r.weights.max(1) as f64,
            r.seconds,
            if r.detail.is_empty() {
                String::new()
            } else {
                format!("\n  {}", r.detail)
            }
        );
    }
}

/// The recipe's starting model directory, read before the data so that a wrong path fails at
/// once; `source` is the recipe file, named in the error.
fn model_dir(spec: &ModelSpec, source: Option<&Path>) -> Result<Option<Model>> {
    let (None, Some(dir)) = (&spec.zoo, &spec.dir) else {
        return Ok(None);
    };
    let model = io::load(dir);
    Ok(Some(match source {
        Some(recipe) => {
            model.with_context(|| format!("{}: [model] dir = \"{}\"", recipe.display(), dir.display()))?
        }
        None => model?,
    }))
}

fn fresh_zoo_model(spec: &ModelSpec, train: &dyn Dataset) -> Result<Model> {
    let name = spec
        .zoo
        .as_deref()
        .expect("Recipe::parse requires a zoo model or a directory");
    fresh_model(&ZooModel::parse(name, None, 0.0)?, train, spec.seed)
}

/// Runs `recipe` (read from the file `source`, or made by a command) into `out`.
fn execute(
    recipe: &Recipe,
    source: Option<&Path>,
    title: &str,
    out: &Path,
    resume: bool,
    data: &crate::data_args::DataArgs,
) -> Result<()> {
    let dir = data.path();
    // Everything the recipe reads: the data, the starting model, the teachers.
    let mut inputs: Vec<&Path> = vec![&dir];
    inputs.extend(recipe.model.dir.as_deref());
    for s in &recipe.stages {
        if let Stage::Distill(d) = s {
            inputs.extend(d.teacher.as_deref());
        }
    }
    io::check_output_dir(out, &inputs)?;
    let _lock = crate::lock::OutputLock::take(out)?;
    let loaded = model_dir(&recipe.model, source)?;
    // A model directory is checked against the recipe before the data is read; a zoo model
    // is built for the data's image size, so after.
    let check = |model: &Model| -> Result<()> {
        let checked = preflight(recipe, model);
        match source {
            Some(path) => checked.with_context(|| path.display().to_string()),
            None => Ok(checked?),
        }
    };
    if let Some(m) = &loaded {
        check(m)?;
    }
    let splits = data.load()?;
    let train_all: Arc<dyn Dataset> = Arc::new(splits.train);
    let (train, val): (Subset, Option<Subset>) = if recipe.val > 0 {
        let (t, v) = split(train_all.clone(), recipe.val, recipe.model.seed)?;
        (t, Some(v))
    } else {
        (
            Subset::new(train_all.clone(), (0..train_all.len()).collect())?,
            None,
        )
    };
    let model = match loaded {
        Some(m) => m,
        None => {
            let m = fresh_zoo_model(&recipe.model, train_all.as_ref())?;
            check(&m)?;
            m
        }
    };
    let data = Data {
        train: &train,
        val: val.as_ref().map(|v| v as &dyn Dataset),
        test: &splits.test,
    };
    let outcome = match run(recipe, model, &data, &mut Printer, Some(out), resume) {
        Err(pare::Error::Interrupted) => {
            println!(
                "interrupted: finished stages are saved under {}; rerun with --resume to continue",
                out.join("stages").display()
            );
            crate::lock::exit(130);
        }
        r => r?,
    };
    let file = out.join(&recipe.encode.file);
    io::write_atomic(&file, &outcome.bytes)?;
    io::save(&outcome.model, &out.join("model"))?;
    let md = report::markdown(title, &outcome);
    io::write_atomic(&out.join("report.md"), md.as_bytes())?;
    let json = serde_json::to_string_pretty(&report::json(recipe, &outcome))?;
    io::write_atomic(&out.join("report.json"), json.as_bytes())?;
    println!("\n{md}");
    println!(
        "wrote {} ({} bytes, {:.1}x smaller than f32), {}/model, report.md, report.json",
        file.display(),
        outcome.bytes.len(),
        outcome.ratio(),
        out.display()
    );
    Ok(())
}

pub fn compress(a: CompressArgs) -> Result<()> {
    io::check_output_dir(&a.out, &[&a.recipe])?;
    let mut recipe = Recipe::load(&a.recipe)?;
    if let Some(seed) = a.seed {
        recipe.model.seed = seed;
    }
    let title = format!("pare compress {}", a.recipe.display());
    execute(&recipe, Some(&a.recipe), &title, &a.out, a.resume, &a.data)
}

pub fn quantize(a: QuantizeArgs) -> Result<()> {
    let bits = |b: u32, what: &str| -> Result<Bits> {
        if !BITS.contains(&b) {
            anyhow::bail!("{what} {b}: uniform quantization takes {BITS:?} bits");
        }
        Ok(Bits(b))
    };
    // Checked even when unused, so a wrong value is never silently ignored.
    let percentile = Percentile::try_from(a.percentile).map_err(|e| anyhow::anyhow!("--percentile: {e}"))?;
    if a.act_scope.is_some() && a.act_bits.is_none() {
        anyhow::bail!("--act-scope says which activations --act-bits quantizes: give --act-bits too");
    }
    let stage = QuantizeStage {
        bits: bits(a.bits, "--bits")?,
        conv_bits: None,
        layers: BTreeMap::new(),
        per_channel: !a.per_tensor,
        symmetric: !a.asymmetric,
        activations: a
            .act_bits
            .map(|b| -> Result<Activations> {
                Ok(Activations {
                    bits: bits(b, "--act-bits")?,
                    symmetric: false,
                    observer: match a.observer {
                        ObserverArg::Minmax => ObserverName::Minmax,
                        ObserverArg::Percentile => ObserverName::Percentile,
                        ObserverArg::Mse => ObserverName::Mse,
                        ObserverArg::Kl => ObserverName::Kl,
                    },
                    percentile,
                    scope: match a.act_scope {
                        None | Some(ActScopeArg::Layers) => ActScope::Layers,
                        Some(ActScopeArg::Graph) => ActScope::Graph,
                    },
                })
            })
            .transpose()?,
        calib_batches: a.calib_batches,
        train: (a.qat_epochs > 0)
            .then(|| -> Result<Training> {
                Ok(Training {
                    epochs: a.qat_epochs,
                    lr: Positive::try_from(a.lr).map_err(|e| anyhow::anyhow!("--lr: {e}"))?,
                    optimizer: Default::default(),
                    momentum: 0.9,
                    weight_decay: 0.0,
                    batch_size: 128,
                    cosine: a.cosine,
                    augment: false,
                    views: 0,
                })
            })
            .transpose()?,
    };
    let text = toml::to_string(&Recipe {
        model: ModelSpec {
            zoo: None,
            dir: Some(std::path::absolute(&a.dir)?),
            seed: a.seed,
        },
        val: 0,
        stages: vec![Stage::Quantize(stage)],
        encode: EncodeSpec {
            huffman: a.huffman,
            ..Default::default()
        },
    })?;
    // Through the parser, so flags get the same checks as a recipe file.
    let recipe = Recipe::parse(&text, Path::new("<command line>"))?;
    let title = format!("pare quantize {}", a.dir.display());
    execute(&recipe, None, &title, &a.out, false, &a.data)
}
