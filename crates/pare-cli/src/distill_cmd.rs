//! `pare distill`: train a student from a teacher with any of the nine methods, next to the
//! same student trained alone with the same budget, and report all of them on the test set.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use pare::data::{split, Augment, Dataset, Subset};
use pare::distill::cache::CacheKey;
use pare::distill::dml::DmlHook;
use pare::distill::{add_regressor, ensemble_accuracy, staged, DistillHook, Feature, FeatureKind, Objective};
use pare::ir::{io, Model};
use pare::train::{accuracy, fit, Chain, FitConfig, Hooks, OptimizerConfig, Schedule};
use pare::zoo::ZooModel;
use serde_json::json;

use crate::commands::fresh_model;
use crate::progress::ProgressHooks;

#[derive(Clone, Copy, ValueEnum, PartialEq, Debug)]
pub enum MethodArg {
    Kd,
    Fitnet,
    At,
    Rkd,
    Sp,
    Dml,
    Ban,
    Takd,
    Refinery,
}

#[derive(Args)]
pub struct DistillArgs {
    /// Teacher model directory (not needed for dml, ban and refinery).
    #[arg(long)]
    pub teacher: Option<PathBuf>,
    /// Student: a zoo model name (fresh; `mlp:800,800` sets hidden sizes) or a model directory
    /// (e.g. a pruned copy of the teacher).
    #[arg(long)]
    pub student: String,
    #[arg(long, value_enum)]
    pub method: MethodArg,
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    #[arg(long, default_value_t = 0.05)]
    pub lr: f32,
    /// Cosine decay of the learning rate (recommended: KD at high T is unstable at a constant
    /// high rate).
    #[arg(long)]
    pub cosine: bool,
    #[arg(long, default_value_t = 5e-4)]
    pub weight_decay: f32,
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Random crops (zero padding of this many pixels); teacher and student see the same crop.
    #[arg(long, default_value_t = 0)]
    pub crop_padding: usize,
    /// Random horizontal flips (teacher and student see the same flip).
    #[arg(long)]
    pub hflip: bool,
    /// Cycle through this many fixed augmented views of each image (0: a fresh view every
    /// epoch). With views the teacher's logits are cached per view, so a long "patient" schedule
    /// costs the teacher only `views` forward passes over the data.
    #[arg(long, default_value_t = 0)]
    pub views: usize,
    #[arg(long, default_value_t = 4.0)]
    pub temperature: f32,
    /// Weight of the soft targets; 1 - alpha goes to the labels.
    #[arg(long, default_value_t = 0.9)]
    pub alpha: f32,
    /// Layer pairs STUDENT:TEACHER (fitnet: guided:hint; at, rkd, sp: matched layers).
    #[arg(long, value_delimiter = ',')]
    pub pairs: Vec<String>,
    /// Weight of the feature terms (defaults: fitnet 1, at 1000, rkd 1 with distance 25 and
    /// angle 50, sp 3000, the papers' settings).
    #[arg(long)]
    pub beta: Option<f32>,
    /// Add Hinton KD to at/rkd/sp (their papers report both with and without).
    #[arg(long)]
    pub with_kd: bool,
    /// FitNets stage 1 (hint) epochs; stage 2 (KD) runs --epochs.
    #[arg(long, default_value_t = 2)]
    pub hint_epochs: usize,
    /// Born-again generations.
    #[arg(long, default_value_t = 3)]
    pub generations: usize,
    /// Teacher-assistant: a zoo model name or directory.
    #[arg(long)]
    pub assistant: Option<String>,
    /// Label Refinery rounds.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Mutual-learning peers (all of the student's architecture).
    #[arg(long, default_value_t = 2)]
    pub peers: usize,
    /// Skip training the student alone (the baseline every report compares with).
    #[arg(long)]
    pub no_baseline: bool,
    /// Hold out this many training images for validation.
    #[arg(long, default_value_t = 0)]
    pub val: usize,
    /// Train on a seeded subset of this many of the remaining training images (0: all), for
    /// method tables that must fit a CPU budget; every model of the run sees the same subset.
    #[arg(long, default_value_t = 0)]
    pub train_images: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub data: crate::data_args::DataArgs,
    /// --method kd: keep the teacher's logits for the fixed views in this file and reuse them
    /// in later runs with the same teacher, data, split, seed and augmentation (a temperature
    /// or alpha sweep pays for the teacher once). A file made for another run is refused.
    #[arg(long, value_name = "FILE")]
    pub teacher_cache: Option<PathBuf>,
}

struct Ctx<'a> {
    a: &'a DistillArgs,
    train: &'a dyn Dataset,
    val: Option<&'a dyn Dataset>,
    test: &'a dyn Dataset,
    full: &'a dyn Dataset,
}

impl Ctx<'_> {
    fn config(&self, epochs: usize, seed: u64) -> FitConfig {
        let a = self.a;
        FitConfig {
            epochs,
            batch_size: a.batch_size,
            optimizer: OptimizerConfig::sgd(0.9, a.weight_decay),
            schedule: Schedule::cosine_if(a.cosine, a.lr),
            seed,
            augment: Augment {
                crop_padding: a.crop_padding,
                hflip: a.hflip,
                views: a.views,
            },
            ..Default::default()
        }
    }

    /// A fresh zoo model (`mlp:800,800` gives hidden sizes) or a loaded directory.
    fn model(&self, spec: &str, seed: u64) -> Result<Model> {
        let p = std::path::Path::new(spec);
        if p.is_dir() {
            return Ok(io::load(p)?);
        }
        let zm = ZooModel::parse_spec(spec)
            .with_context(|| format!("'{spec}' is neither a directory nor a zoo model"))?;
        fresh_model(&zm, self.full, seed)
    }

    fn train(
        &self,
        model: &mut Model,
        epochs: usize,
        seed: u64,
        hook: Option<&mut dyn Hooks>,
    ) -> pare::Result<()> {
        let mut progress = ProgressHooks::new(epochs, false);
        let cfg = self.config(epochs, seed);
        let r = match hook {
            Some(h) => fit(
                model,
                self.train,
                self.val,
                &cfg,
                &mut Chain(vec![h, &mut progress]),
            )?,
            None => fit(model, self.train, self.val, &cfg, &mut progress)?,
        };
        if r.interrupted {
            println!("interrupted; nothing was written");
            crate::lock::exit(130);
        }
        Ok(())
    }

    /// [`Ctx::kd`] with the teacher's logits loaded from and saved to `--teacher-cache`.
    fn kd_cached(
        &self,
        student: &mut Model,
        teacher: &Model,
        objective: Objective,
        path: &Path,
    ) -> Result<()> {
        let a = self.a;
        let mut key = CacheKey::for_teacher(teacher);
        key.set("seed", a.seed)
            .set("views", a.views)
            .set("crop_padding", a.crop_padding)
            .set("hflip", a.hflip)
            .set("val", a.val)
            .set("train_images", a.train_images)
            .set("train_samples", self.train.len())
            .set("data", a.data.path().display())
            .set("student_input", format!("{:?}", student.graph.input));
        let mut hook = DistillHook::new(teacher.clone(), student, objective)?;
        let loaded = if path.exists() {
            let n = hook.load_logits(path, &key)?;
            println!("teacher logits: {n} loaded from {}", path.display());
            n
        } else {
            0
        };
        self.train(student, a.epochs, a.seed, Some(&mut hook))?;
        if hook.cached_logits() > loaded {
            hook.save_logits(path, &key)?;
            println!(
                "teacher logits: {} saved to {}",
                hook.cached_logits(),
                path.display()
            );
        }
        Ok(())
    }

    /// Test accuracy, and validation accuracy when a split was held out (what settings are
    /// chosen on: the test set only reports).
    fn accuracy(&self, m: &Model) -> Result<Acc> {
        let on = |set: &dyn Dataset| -> Result<f32> { Ok(accuracy(m, set)?) };
        Ok(Acc {
            test: on(self.test)?,
            val: self.val.map(on).transpose()?,
        })
    }

    fn ensemble(&self, models: &[&Model]) -> Result<Acc> {
        Ok(Acc {
            test: ensemble_accuracy(models, self.test, 1000)?,
            val: self.val.map(|v| ensemble_accuracy(models, v, 1000)).transpose()?,
        })
    }
}

/// The multi-run methods of `pare::distill::staged` train through the command's own runs
/// (progress bars, Ctrl-C).
impl staged::Train for &Ctx<'_> {
    fn train(
        &mut self,
        model: &mut Model,
        epochs: usize,
        seed: u64,
        hook: Option<&mut dyn Hooks>,
    ) -> pare::Result<()> {
        Ctx::train(self, model, epochs, seed, hook)
    }
}

#[derive(Clone, Copy)]
struct Acc {
    test: f32,
    val: Option<f32>,
}

/// The method as the command line spells it (`at`, not `At`).
fn method_name(m: MethodArg) -> String {
    m.to_possible_value()
        .map_or_else(|| format!("{m:?}"), |v| v.get_name().to_string())
}

fn pairs(a: &DistillArgs) -> Result<Vec<(String, String)>> {
    a.pairs
        .iter()
        .map(|p| {
            p.split_once(':')
                .map(|(s, t)| (s.to_string(), t.to_string()))
                .with_context(|| format!("--pairs '{p}': expected STUDENT_LAYER:TEACHER_LAYER"))
        })
        .collect()
}

fn feature_objective(a: &DistillArgs, kind: FeatureKind, default_beta: f32) -> Result<Objective> {
    let pairs = pairs(a)?;
    if pairs.is_empty() {
        bail!(
            "--method {} needs --pairs STUDENT_LAYER:TEACHER_LAYER",
            method_name(a.method)
        );
    }
    let mut o = if a.with_kd {
        Objective::kd(a.temperature, a.alpha)
    } else {
        Objective::kd(a.temperature, 0.0)
    };
    o.features = pairs
        .into_iter()
        .map(|(student, teacher)| Feature {
            student,
            teacher,
            kind,
            weight: a.beta.unwrap_or(default_beta),
        })
        .collect();
    Ok(o)
}

pub fn distill(a: DistillArgs) -> Result<()> {
    let data_dir = a.data.path();
    let mut inputs = vec![data_dir.as_path()];
    inputs.extend(a.teacher.as_deref());
    io::check_output_dir(&a.out, &inputs)?;
    let _lock = crate::lock::OutputLock::take(&a.out)?;
    let _dir = a.data.path();
    let splits = a.data.load()?;
    let full: Arc<dyn Dataset> = Arc::new(splits.train);
    let (train, val): (Subset, Option<Subset>) = if a.val > 0 {
        let (t, v) = split(full.clone(), a.val, a.seed)?;
        (t, Some(v))
    } else {
        (Subset::new(full.clone(), (0..full.len()).collect())?, None)
    };
    let train = match a.train_images {
        0 => train,
        n if n < train.len() => {
            let rest = train.len() - n;
            split(Arc::new(train), rest, a.seed ^ 0x5B5E7)?.0
        }
        n => bail!(
            "--train-images {n}: only {} training images remain after --val {}",
            train.len(),
            a.val
        ),
    };
    let ctx = Ctx {
        a: &a,
        train: &train,
        val: val.as_ref().map(|v| v as &dyn Dataset),
        test: &splits.test,
        full: full.as_ref(),
    };
    let needs_teacher = !matches!(a.method, MethodArg::Dml | MethodArg::Ban | MethodArg::Refinery);
    let teacher = match (&a.teacher, needs_teacher) {
        (Some(t), _) => Some(io::load(t)?),
        (None, true) => bail!("--method {} needs --teacher DIR", method_name(a.method)),
        (None, false) => None,
    };
    if a.views > 0 && a.crop_padding == 0 && !a.hflip {
        bail!(
            "--views {} counts augmented views: add --crop-padding N or --hflip",
            a.views
        );
    }
    if a.teacher_cache.is_some() && !matches!(a.method, MethodArg::Kd) {
        bail!("--teacher-cache is for --method kd (one teacher, logits only)");
    }
    if a.teacher_cache.is_some() && a.views == 0 && (a.crop_padding > 0 || a.hflip) {
        bail!("--teacher-cache needs --views N with augmentation: fresh views are never seen twice");
    }
    if a.temperature.is_nan() || a.temperature <= 0.0 || !(0.0..=1.0).contains(&a.alpha) {
        bail!("--temperature must be positive and --alpha in [0, 1]");
    }
    // Everything the arguments decide is checked before the first epoch: a missing or wrong
    // --pairs must not cost the baseline's training first.
    let feature = match a.method {
        MethodArg::At => Some(feature_objective(&a, FeatureKind::Attention { p: 2.0 }, 1000.0)?),
        MethodArg::Rkd => Some(feature_objective(
            &a,
            FeatureKind::Relational {
                distance: 25.0,
                angle: 50.0,
            },
            1.0,
        )?),
        MethodArg::Sp => Some(feature_objective(&a, FeatureKind::Similarity, 3000.0)?),
        _ => None,
    };
    if let (Some(o), Some(t)) = (&feature, &teacher) {
        o.validate(&ctx.model(&a.student, a.seed)?, t)?;
    }
    let fitnet_pair = match (a.method, pairs(&a)?.as_slice()) {
        (MethodArg::Fitnet, [pair]) => Some(pair.clone()),
        (MethodArg::Fitnet, _) => bail!("--method fitnet takes one --pairs GUIDED:HINT"),
        _ => None,
    };
    if let (Some((guided, hint)), Some(t)) = (&fitnet_pair, &teacher) {
        add_regressor(&ctx.model(&a.student, a.seed)?, guided, t, hint, a.seed)?;
    }
    let seed = a.seed;
    let mut rows: Vec<(String, Acc)> = Vec::new();
    if let Some(t) = &teacher {
        rows.push(("teacher".into(), ctx.accuracy(t)?));
    }
    // The student alone, same budget: the baseline (and generation 0 / round 0 of ban and
    // refinery, which need it anyway).
    let alone = if !a.no_baseline || matches!(a.method, MethodArg::Ban | MethodArg::Refinery) {
        println!("== student alone ({} epochs)", a.epochs);
        let mut m = ctx.model(&a.student, seed)?;
        ctx.train(&mut m, a.epochs, seed, None)?;
        io::save(&m, &a.out.join("alone"))?;
        rows.push(("student alone".into(), ctx.accuracy(&m)?));
        Some(m)
    } else {
        None
    };
    let kd_objective = Objective::kd(a.temperature, a.alpha);
    match a.method {
        MethodArg::Kd => {
            println!("== KD (T {}, alpha {})", a.temperature, a.alpha);
            let mut s = ctx.model(&a.student, seed)?;
            let t = teacher.as_ref().expect("checked");
            match &a.teacher_cache {
                Some(path) => ctx.kd_cached(&mut s, t, kd_objective, path)?,
                None => staged::kd(&mut &ctx, &mut s, t, kd_objective, a.epochs, seed)?,
            }
            io::save(&s, &a.out.join("student"))?;
            rows.push(("student KD".into(), ctx.accuracy(&s)?));
        }
        MethodArg::At | MethodArg::Rkd | MethodArg::Sp => {
            let objective = feature.expect("built for these methods above");
            println!("== {:?}", a.method);
            let mut s = ctx.model(&a.student, seed)?;
            staged::kd(
                &mut &ctx,
                &mut s,
                teacher.as_ref().expect("checked"),
                objective,
                a.epochs,
                seed,
            )?;
            io::save(&s, &a.out.join("student"))?;
            rows.push((format!("student {:?}", a.method), ctx.accuracy(&s)?));
        }
        MethodArg::Fitnet => {
            let t = teacher.as_ref().expect("checked");
            let (guided, hint) = fitnet_pair.as_ref().expect("parsed above for fitnet");
            println!(
                "== FitNets: hint {guided} -> {hint} ({} epochs), then KD ({} epochs)",
                a.hint_epochs, a.epochs
            );
            let hint = staged::Hint {
                guided: guided.clone(),
                hint: hint.clone(),
                epochs: a.hint_epochs,
                weight: a.beta.unwrap_or(1.0),
            };
            let s0 = ctx.model(&a.student, seed)?;
            let s = staged::fitnets(&mut &ctx, &s0, t, &hint, kd_objective, a.epochs, seed)?;
            io::save(&s, &a.out.join("student"))?;
            rows.push(("student FitNets".into(), ctx.accuracy(&s)?));
        }
        MethodArg::Dml => {
            if a.peers < 2 {
                bail!("--peers must be at least 2");
            }
            let mut p0 = ctx.model(&a.student, seed)?;
            let others = (1..a.peers)
                .map(|k| ctx.model(&a.student, seed + k as u64))
                .collect::<Result<Vec<_>>>()?;
            println!("== deep mutual learning, {} peers", a.peers);
            let mut hook = DmlHook::new(&p0, others, OptimizerConfig::sgd(0.9, a.weight_decay), seed);
            ctx.train(&mut p0, a.epochs, seed, Some(&mut hook))?;
            let mut all = vec![p0];
            all.extend(hook.peers);
            for (k, m) in all.iter().enumerate() {
                io::save(m, &a.out.join(format!("peer{k}")))?;
                rows.push((format!("DML peer {k}"), ctx.accuracy(m)?));
            }
            let refs: Vec<&Model> = all.iter().collect();
            rows.push(("DML ensemble".into(), ctx.ensemble(&refs)?));
        }
        MethodArg::Ban | MethodArg::Refinery => {
            let is_ban = a.method == MethodArg::Ban;
            let (n, what, dir, objective) = if is_ban {
                (a.generations, "BAN generation", "gen", kd_objective)
            } else {
                (a.rounds, "refinery round", "round", Objective::refinery())
            };
            // Born-again generations start from the student trained alone; refinery rounds
            // from the teacher when one is given.
            let first = match (&teacher, is_ban) {
                (Some(t), false) => t.clone(),
                _ => alone.clone().expect("trained above"),
            };
            let mut fresh = |g: usize| -> pare::Result<Model> {
                println!("== {what} {g}/{n}");
                ctx.model(&a.student, seed + g as u64)
                    .map_err(|e| pare::Error::Config(format!("{e:#}")))
            };
            let mut done = |g: usize, s: &Model| -> pare::Result<()> {
                io::save(s, &a.out.join(format!("{dir}{g}")))?;
                rows.push((
                    format!("{what} {g}"),
                    ctx.accuracy(s)
                        .map_err(|e| pare::Error::Config(format!("{e:#}")))?,
                ));
                Ok(())
            };
            let gens = staged::generations(
                &mut &ctx, &first, &mut fresh, n, objective, a.epochs, seed, &mut done,
            )?;
            if is_ban {
                let refs: Vec<&Model> = gens.iter().collect();
                rows.push((format!("BAN ensemble of {n}"), ctx.ensemble(&refs)?));
            }
        }
        MethodArg::Takd => {
            let t = teacher.as_ref().expect("checked");
            let spec = a
                .assistant
                .as_deref()
                .context("--method takd needs --assistant MODEL")?;
            println!("== TAKD: teacher -> assistant {spec} -> student");
            let (assistant, s0) = (ctx.model(spec, seed)?, ctx.model(&a.student, seed)?);
            let (assistant, s) = staged::takd(&mut &ctx, t, assistant, s0, kd_objective, a.epochs, seed)?;
            io::save(&assistant, &a.out.join("assistant"))?;
            rows.push(("assistant (KD from teacher)".into(), ctx.accuracy(&assistant)?));
            io::save(&s, &a.out.join("student"))?;
            rows.push(("student TAKD".into(), ctx.accuracy(&s)?));
        }
    }
    let base = rows.iter().find(|r| r.0 == "student alone").map(|r| r.1);
    println!("\n| model | test accuracy | vs student alone | validation accuracy |\n|---|---|---|---|");
    for (name, acc) in &rows {
        let d = base.map_or("-".to_string(), |b| {
            format!("{:+.2} pt", 100.0 * (acc.test - b.test))
        });
        let v = acc.val.map_or("-".to_string(), |v| format!("{v:.4}"));
        println!("| {name} | {:.4} | {d} | {v} |", acc.test);
    }
    let report = json!({
        "method": format!("{:?}", a.method).to_lowercase(),
        "student": a.student,
        "teacher": a.teacher,
        "epochs": a.epochs, "lr": a.lr, "cosine": a.cosine, "temperature": a.temperature, "alpha": a.alpha,
        "crop_padding": a.crop_padding, "hflip": a.hflip, "views": a.views, "val": a.val,
        "train_images": a.train_images, "seed": a.seed,
        "results": rows.iter().map(|(n, acc)| json!({"model": n, "accuracy": acc.test, "val_accuracy": acc.val})).collect::<Vec<_>>(),
    });
    crate::finetune::write_report(&a.out, "distill.json", &report)?;
    Ok(())
}
