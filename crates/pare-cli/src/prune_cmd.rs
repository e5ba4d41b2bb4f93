//! `pare prune`: unstructured or structured pruning of a model directory, fine-tuning, and a
//! before/after report (accuracy, per-layer shapes, parameters, MACs, sparsity, CPU latency).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use pare::data::{calibration_batches, Dataset};
use pare::ir::op::{Conv2d, Linear};
use pare::ir::{io, Model};
use pare::prune::schedule::{MaskHook, PruneSchedule, Ramp};
use pare::prune::unstructured::{magnitude_masks, WeightCriterion};
use pare::prune::{Amount, Criterion, Scope, Selection, Steps, Surgery};
use pare::report::{latencies_ms, summarize, thousands, Engine, Summary};
use pare::train::{accuracy, FitConfig, OptimizerConfig, Schedule};
use serde_json::json;

use crate::finetune::{interrupted, print_before_after, FinetuneArgs};
use crate::progress::ProgressHooks;

#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub enum Method {
    Unstructured,
    Structured,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub enum RampArg {
    Oneshot,
    Linear,
    Agp,
}

#[derive(Args)]
pub struct PruneArgs {
    /// Model directory to prune.
    pub dir: PathBuf,
    /// Output model directory.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, value_enum)]
    pub method: Method,
    /// Structured: the importance criterion (l1, l2, fpgm, bn, apoz, taylor, random).
    #[arg(long, default_value = "l1")]
    pub criterion: Criterion,
    /// Fraction to remove: of each layer's channels (structured) or weights (unstructured).
    #[arg(long)]
    pub ratio: Option<f32>,
    /// Per-layer fractions, e.g. fc1=0.92,fc2=0.91,fc3=0.74 (others use --ratio, default 0).
    #[arg(long, value_delimiter = ',')]
    pub layer: Vec<String>,
    /// Rank all layers together (per-producer normalized scores for structured).
    #[arg(long)]
    pub global: bool,
    /// Remove below this value: |w| (unstructured) or score / layer mean score (structured).
    #[arg(long)]
    pub threshold: Option<f32>,
    /// Unstructured: remove |w| < QUALITY x std of the layer's weights (Deep Compression).
    #[arg(long)]
    pub quality: Option<f32>,
    /// Layers that are left alone.
    #[arg(long, value_delimiter = ',')]
    pub exclude: Vec<String>,
    /// Unstructured: how the sparsity grows during fine-tuning.
    #[arg(long, value_enum, default_value = "oneshot")]
    pub schedule: RampArg,
    /// Unstructured with --schedule linear/agp: epochs over which the sparsity ramps up.
    #[arg(long, default_value_t = 1)]
    pub prune_epochs: usize,
    /// Unstructured ramps: steps between mask updates.
    #[arg(long, default_value_t = 50)]
    pub prune_every: usize,
    /// Structured: prune in this many steps, fine-tuning after each.
    #[arg(long, default_value_t = 1)]
    pub steps: usize,
    #[command(flatten)]
    pub tune: FinetuneArgs,
    /// Structured, per layer: round each layer's kept channels to a multiple of this (e.g. 8,
    /// or 16 for onnxruntime on AVX-512) so that dense kernels stay efficient; a layer of this
    /// many channels or fewer keeps them all.
    #[arg(long, default_value_t = 1)]
    pub round_to: usize,
    /// Structured: re-initialize the pruned architecture's weights before fine-tuning, i.e.
    /// train it from scratch (the "Rethinking the Value of Network Pruning" baseline).
    #[arg(long)]
    pub reinit: bool,
    /// Calibration batches for data-driven criteria (apoz, taylor).
    #[arg(long, default_value_t = 8)]
    pub calib_batches: usize,
    #[command(flatten)]
    pub data: crate::data_args::DataArgs,
}

fn parse_layers(items: &[String]) -> Result<BTreeMap<String, f32>> {
    items
        .iter()
        .map(|s| {
            let (k, v) = s
                .split_once('=')
                .with_context(|| format!("--layer '{s}': expected NAME=FRACTION"))?;
            let v: f32 = v
                .parse()
                .with_context(|| format!("--layer '{s}': '{v}' is not a number"))?;
            Ok((k.to_string(), v))
        })
        .collect()
}

struct Measure {
    accuracy: f32,
    summary: Summary,
}

fn measure(m: &Model, test: &dyn Dataset) -> Result<Measure> {
    Ok(Measure {
        accuracy: accuracy(m, test)?,
        summary: summarize(m),
    })
}

pub fn prune(a: PruneArgs) -> Result<()> {
    io::check_output_dir(&a.out, &[&a.dir, &a.data.path()])?;
    let _lock = crate::lock::OutputLock::take(&a.out)?;
    let base = io::load(&a.dir)?;
    let splits = a.data.load()?;
    let layers = parse_layers(&a.layer)?;
    let before = measure(&base, &splits.test)?;
    println!(
        "before: test accuracy {:.4}, {} parameters, {} MACs",
        before.accuracy,
        thousands(before.summary.params as u64),
        thousands(before.summary.macs)
    );
    let mut model = base.clone();
    let mut surgery = Surgery::default();
    let spe = splits.train.len().div_ceil(a.tune.batch_size.max(1));
    match a.method {
        Method::Unstructured => {
            if a.reinit {
                bail!("--reinit is for structured pruning (it re-initializes the smaller architecture)");
            }
            let ratio = a.ratio.unwrap_or(0.0);
            let criterion = match (a.threshold, a.quality) {
                (Some(t), None) => WeightCriterion::Threshold(t),
                (None, Some(q)) => WeightCriterion::StdQuality(q),
                (None, None) if a.global => WeightCriterion::GlobalSparsity(ratio),
                (None, None) => WeightCriterion::LayerSparsity {
                    default: ratio,
                    per_layer: layers,
                },
                _ => bail!("give at most one of --threshold and --quality"),
            };
            // Validate the request at once, before any training.
            magnitude_masks(&model, &criterion, &a.exclude)?;
            let ramp = match a.schedule {
                RampArg::Oneshot => Ramp::OneShot,
                RampArg::Linear => Ramp::Linear,
                RampArg::Agp => Ramp::Agp,
            };
            if ramp != Ramp::OneShot && a.prune_epochs > a.tune.finetune_epochs {
                bail!(
                    "--prune-epochs ({}) cannot exceed --finetune-epochs ({})",
                    a.prune_epochs,
                    a.tune.finetune_epochs
                );
            }
            let sched = PruneSchedule::over_epochs(ramp, a.prune_epochs, spe, a.prune_every);
            let mut hook = MaskHook::new(criterion, a.exclude.clone(), Some(sched), BTreeMap::new())?;
            hook.update(&mut model, 0)?;
            a.tune
                .run(&mut model, &splits.train, a.tune.finetune_epochs, Some(&mut hook))
                .map_err(interrupted)?;
        }
        Method::Structured => {
            if a.steps == 0 || a.round_to == 0 {
                bail!("--steps and --round-to must be at least 1");
            }
            if a.criterion.needs_data() && a.calib_batches == 0 {
                bail!(
                    "--criterion {} scores channels on data: --calib-batches must be at least 1",
                    a.criterion.name()
                );
            }
            if a.quality.is_some() {
                bail!("--quality is for unstructured pruning");
            }
            if a.reinit && a.steps > 1 {
                bail!("--reinit trains the final architecture from scratch; use it with --steps 1");
            }
            let amount = match (a.threshold, a.ratio) {
                (Some(t), None) => Amount::Threshold(t),
                (None, r) => {
                    let r = r.unwrap_or(0.0);
                    if !(0.0..1.0).contains(&r) {
                        bail!("--ratio {r} is impossible; it must be in [0, 1) (a layer keeps at least one channel)");
                    }
                    Amount::Ratio(r)
                }
                _ => bail!("give --ratio or --threshold, not both"),
            };
            let steps = Steps {
                criterion: a.criterion,
                selection: Selection {
                    scope: if a.global { Scope::Global } else { Scope::PerLayer },
                    amount,
                    per_layer: layers,
                    exclude: a.exclude.clone(),
                    round_to: a.round_to,
                },
                steps: a.steps.max(1),
                seed: a.tune.seed,
                calib: Some((&splits.train, a.calib_batches, a.tune.batch_size)),
            };
            let total = steps.steps;
            (model, surgery) = steps
                .run(&base, |step, pruned, s| {
                    println!(
                        "step {}/{total}: removed {} channels ({} parameters, {} MACs left)",
                        step + 1,
                        s.count(),
                        thousands(pruned.num_params() as u64),
                        thousands(pruned.macs())
                    );
                    if a.reinit {
                        *pruned = Model::init(pruned.graph.clone(), a.tune.seed)?;
                    }
                    a.tune.run(pruned, &splits.train, a.tune.finetune_epochs, None)
                })
                .map_err(interrupted)?;
        }
    }
    let after = measure(&model, &splits.test)?;
    // Both models timed together at the end, interleaved: the speed-up does not depend on how
    // busy the machine was before and after the fine-tuning.
    let b1 = latencies_ms(&[&base, &model], 1, 50, Engine::Native)?;
    let b64 = latencies_ms(&[&base, &model], 64, 20, Engine::Native)?;
    io::save(&model, &a.out)?;
    let table = compare_table(&before.summary, &after.summary);
    print!("{table}");
    let mac_ratio = before.summary.macs as f64 / after.summary.macs.max(1) as f64;
    let rows = vec![
        (
            "test accuracy",
            format!("{:.4}", before.accuracy),
            format!("{:.4}", after.accuracy),
        ),
        (
            "parameters (non-zero)",
            thousands(before.summary.nonzero_params as u64),
            thousands(after.summary.nonzero_params as u64),
        ),
        (
            "MACs",
            thousands(before.summary.macs),
            thousands(after.summary.macs),
        ),
    ];
    print_before_after(rows, &b1, &b64);
    if a.method == Method::Unstructured {
        println!(
            "(unstructured sparsity runs on dense kernels: expect no speed-up until sparse kernels land)"
        );
    }
    println!(
        "accuracy change {:+.2} pt; MACs / {:.2}; batch-64 speed-up x{:.2}; non-zero parameters / {:.2}",
        (after.accuracy - before.accuracy) * 100.0,
        mac_ratio,
        b64[0] / b64[1],
        before.summary.nonzero_params as f64 / after.summary.nonzero_params.max(1) as f64
    );
    let report = json!({
        "method": match a.method { Method::Unstructured => "unstructured", Method::Structured => "structured" },
        "base": a.dir,
        "base_arch": io::arch_json(&base.graph),
        "surgery": surgery,
        "before": {"accuracy": before.accuracy, "summary": before.summary, "latency_ms_b1": b1[0], "latency_ms_b64": b64[0]},
        "after": {"accuracy": after.accuracy, "summary": after.summary, "latency_ms_b1": b1[1], "latency_ms_b64": b64[1]},
        "mac_reduction": mac_ratio,
        "speedup_b64": b64[0] / b64[1],
    });
    crate::finetune::write_report(&a.out, "prune.json", &report)?;
    println!(
        "wrote {} (prune.json holds the report and the surgery log)",
        a.out.display()
    );
    Ok(())
}

/// Per-layer before/after table for layers with parameters.
fn compare_table(b: &Summary, a: &Summary) -> String {
    let shape = |s: &[usize]| s.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x");
    let mut out = format!(
        "{:<22} {:>14} {:>14} {:>10} {:>10} {:>12} {:>12} {:>8} {:>8}\n",
        "layer", "out before", "out after", "params", "after", "MACs", "after", "sparse", "after"
    );
    for (lb, la) in b.layers.iter().zip(&a.layers) {
        if lb.params == 0 {
            continue;
        }
        let sp = |s: Option<f64>| s.map(|v| format!("{:.1}%", v * 100.0)).unwrap_or_default();
        out.push_str(&format!(
            "{:<22} {:>14} {:>14} {:>10} {:>10} {:>12} {:>12} {:>8} {:>8}\n",
            lb.name,
            shape(&lb.output_shape),
            shape(&la.output_shape),
            thousands(lb.params as u64),
            thousands(la.params as u64),
            thousands(lb.macs),
            thousands(la.macs),
            sp(lb.sparsity),
            sp(la.sparsity)
        ));
    }
    out
}

#[derive(Args)]
pub struct SensitivityArgs {
    /// Model directory.
    pub dir: PathBuf,
    /// Output directory for sensitivity.json, sensitivity.md and sensitivity.svg.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value = "structured")]
    pub method: Method,
    /// Structured: the importance criterion (l1, l2, fpgm, bn, apoz, taylor, random).
    #[arg(long, default_value = "l1")]
    pub criterion: Criterion,
    /// Ratios to try for each layer.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9"
    )]
    pub ratios: Vec<f32>,
    /// Evaluate on the first N test images (all 10,000 by default).
    #[arg(long)]
    pub samples: Option<usize>,
    #[arg(long, default_value_t = 8)]
    pub calib_batches: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub data: crate::data_args::DataArgs,
}

pub fn sensitivity(a: SensitivityArgs) -> Result<()> {
    io::check_output_dir(&a.out, &[&a.dir, &a.data.path()])?;
    let _lock = crate::lock::OutputLock::take(&a.out)?;
    use pare::data::Subset;
    use pare::report::plot::{line_chart, Series};
    use std::sync::Arc;
    let model = io::load(&a.dir)?;
    let splits = a.data.load()?;
    let n = a.samples.unwrap_or(splits.test.len()).min(splits.test.len());
    let calib = calibration_batches(
        &splits.train,
        &model.graph.input.normalize,
        a.calib_batches,
        128,
        a.seed,
    );
    let test: Arc<dyn Dataset> = Arc::new(splits.test);
    let eval_set = Subset::new(test, (0..n).collect())?;
    let base = accuracy(&model, &eval_set)?;
    println!("unpruned accuracy {base:.4} on {n} test images");
    let mut eval = |m: &Model| accuracy(m, &eval_set);
    let points = match a.method {
        Method::Structured => {
            let imp = a.criterion.importance(a.seed, calib);
            pare::prune::sensitivity::structured(&model, imp.as_ref(), &a.ratios, &mut eval)?
        }
        Method::Unstructured => pare::prune::sensitivity::unstructured(&model, &a.ratios, &mut eval)?,
    };
    let mut layers: Vec<String> = Vec::new();
    for p in &points {
        if !layers.contains(&p.layer) {
            layers.push(p.layer.clone());
        }
    }
    let mut md = format!(
        "| layer | {} |\n|---|{}\n",
        a.ratios
            .iter()
            .map(|r| format!("{r}"))
            .collect::<Vec<_>>()
            .join(" | "),
        "---:|".repeat(a.ratios.len())
    );
    for l in &layers {
        let accs: Vec<String> = points
            .iter()
            .filter(|p| &p.layer == l)
            .map(|p| format!("{:.4}", p.accuracy))
            .collect();
        md.push_str(&format!("| {l} | {} |\n", accs.join(" | ")));
    }
    print!("{md}");
    let series: Vec<Series> = layers
        .iter()
        .map(|l| Series {
            name: l.clone(),
            points: points
                .iter()
                .filter(|p| &p.layer == l)
                .map(|p| (p.ratio as f64, p.accuracy as f64))
                .collect(),
        })
        .collect();
    let what = if a.method == Method::Structured {
        "channels"
    } else {
        "weights"
    };
    line_chart(
        &a.out.join("sensitivity.svg"),
        &format!("Sensitivity (unpruned {base:.4})"),
        &format!("fraction of the layer's {what} pruned"),
        "test accuracy",
        &series,
    )?;
    io::write_atomic(&a.out.join("sensitivity.md"), md.as_bytes())?;
    io::write_atomic(
        &a.out.join("sensitivity.json"),
        serde_json::to_string_pretty(&json!({"unpruned": base, "samples": n, "points": points}))?.as_bytes(),
    )?;
    println!("wrote {}/sensitivity.{{json,md,svg}}", a.out.display());
    Ok(())
}

#[derive(Args)]
pub struct LotteryArgs {
    /// Zoo model (lenet300 reproduces the paper's setting).
    #[arg(long, default_value = "lenet300")]
    pub model: String,
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 15)]
    pub rounds: usize,
    /// Training epochs per round.
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    #[arg(long, default_value_t = 0.2)]
    pub rate: f32,
    #[arg(long, default_value_t = 0.1)]
    pub output_rate: f32,
    /// Rewind to the weights after this many epochs instead of the initialization.
    #[arg(long, default_value_t = 0)]
    pub rewind_epoch: usize,
    /// Skip the random re-initialization control.
    #[arg(long)]
    pub no_control: bool,
    /// The paper: Adam 1.2e-3, batch 60.
    #[arg(long, default_value_t = 1.2e-3)]
    pub lr: f32,
    #[arg(long, default_value_t = 60)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub data: crate::data_args::DataArgs,
}

pub fn lottery(a: LotteryArgs) -> Result<()> {
    io::check_output_dir(&a.out, &[&a.data.path()])?;
    let _lock = crate::lock::OutputLock::take(&a.out)?;
    use pare::prune::lottery::{lottery, LotteryConfig};
    use pare::report::plot::{line_chart, Series};
    let splits = a.data.load()?;
    let zm = pare::zoo::ZooModel::parse(&a.model, None, 0.0)?;
    let init = crate::commands::fresh_model(&zm, &splits.train, a.seed)?;
    let output_layer = init
        .graph
        .nodes
        .iter()
        .rev()
        .find(|n| {
            matches!(
                n.op,
                pare::ir::Op::Linear(Linear { .. }) | pare::ir::Op::Conv2d(Conv2d { .. })
            )
        })
        .map(|n| n.name.clone())
        .context("the model has no prunable layer")?;
    let cfg = LotteryConfig {
        rounds: a.rounds,
        rate: a.rate,
        output_rate: a.output_rate,
        output_layer,
        rewind_epoch: a.rewind_epoch,
        random_control: !a.no_control,
        control_seed: a.seed + 1000,
    };
    let fit_cfg = FitConfig {
        epochs: a.epochs,
        batch_size: a.batch_size,
        optimizer: OptimizerConfig::adam(0.0),
        schedule: Schedule::constant(a.lr),
        seed: a.seed,
        ..Default::default()
    };
    let mut progress = ProgressHooks::new(a.epochs, true);
    println!(
        "{:>5} {:>10} {:>10} {:>10} {:>10}",
        "round", "remaining", "ticket", "random", "supermask"
    );
    let rounds = lottery(
        &init,
        &splits.train,
        &splits.test,
        &cfg,
        &fit_cfg,
        &mut progress,
        &mut |r| {
            let rnd = r
                .random_accuracy
                .map(|v| format!("{v:.4}"))
                .unwrap_or_else(|| "-".into());
            let sm = r
                .supermask_accuracy
                .map(|v| format!("{v:.4}"))
                .unwrap_or_else(|| "-".into());
            println!(
                "{:>5} {:>9.1}% {:>10.4} {:>10} {:>10}",
                r.round,
                r.remaining * 100.0,
                r.ticket_accuracy,
                rnd,
                sm
            );
        },
    )?;
    let mut series = vec![Series {
        name: "winning ticket (rewound)".into(),
        points: rounds
            .iter()
            .map(|r| (r.remaining * 100.0, r.ticket_accuracy as f64))
            .collect(),
    }];
    if cfg.random_control {
        series.push(Series {
            name: "random re-initialization".into(),
            points: rounds
                .iter()
                .filter_map(|r| r.random_accuracy.map(|v| (r.remaining * 100.0, v as f64)))
                .collect(),
        });
    }
    series.push(Series {
        name: "supermask (untrained init, large final)".into(),
        points: rounds
            .iter()
            .filter_map(|r| r.supermask_accuracy.map(|v| (r.remaining * 100.0, v as f64)))
            .collect(),
    });
    line_chart(
        &a.out.join("lottery.svg"),
        "Lottery ticket: test accuracy vs weights remaining",
        "% of weights remaining",
        "test accuracy",
        &series,
    )?;
    io::write_atomic(
        &a.out.join("lottery.json"),
        serde_json::to_string_pretty(&json!({"config": cfg, "training": fit_cfg, "rounds": rounds}))?
            .as_bytes(),
    )?;
    println!("wrote {}/lottery.{{json,svg}}", a.out.display());
    Ok(())
}
