//! `pare exits`: early-exit heads grafted onto a trained model, trained (frozen backbone or
//! jointly), thresholds chosen on the validation split, and the result measured on the test
//! set: accuracy, average MACs and batch-1 / batch-64 latency against the model without exits,
//! with the accuracy-MACs curve of every rule.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use pare::data::{split, Dataset};
use pare::exits::{
    attach, choose, exit_costs, sweep, timed_run, train_frozen, ExitLogits, Head, Outcome, Rule, SelfDistill,
    Target,
};
use pare::fuse::fold_batch_norm;
use pare::ir::io;
use pare::native::{compile, compile_exits};
use pare::report::plot::{line_chart, Series};
use pare::report::thousands;
use pare::train::{fit, Chain, FitConfig, OptimizerConfig, OutputLosses, Schedule};
use serde_json::json;

use crate::finetune::interrupted;
use crate::progress::ProgressHooks;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Training {
    /// Shallow-Deep Networks: only the heads learn, on the backbone's stored features.
    Frozen,
    /// BranchyNet: backbone and heads learn together, each exit with its own weighted loss.
    Joint,
}

#[derive(Args)]
pub struct ExitsArgs {
    /// Trained model directory.
    pub dir: PathBuf,
    /// Output model directory (the model with its exits; exits.json holds the policy, the
    /// curves and the measurements).
    #[arg(long)]
    pub out: PathBuf,
    /// Nodes to attach exit heads to, e.g. layer1.2.relu2,layer2.2.relu2 (see `pare info`).
    #[arg(long, value_delimiter = ',', required = true)]
    pub at: Vec<String>,
    /// The rule saved with the model; all three are reported.
    #[arg(long, default_value = "confidence", value_parser = ["confidence", "entropy", "patience"])]
    pub rule: String,
    /// Choose the threshold losing at most this many accuracy points on the validation split
    /// against the main output (default 0.5 when no target is given).
    #[arg(long, conflicts_with_all = ["target_acc", "budget"])]
    pub max_drop: Option<f64>,
    /// Choose the cheapest threshold reaching this validation accuracy.
    #[arg(long, conflicts_with = "budget")]
    pub target_acc: Option<f64>,
    /// Choose the most accurate threshold spending at most this fraction of the model's MACs
    /// on average, e.g. 0.5.
    #[arg(long)]
    pub budget: Option<f64>,
    #[arg(long, value_enum, default_value = "frozen")]
    pub train: Training,
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    #[arg(long, default_value_t = 0.05)]
    pub lr: f32,
    #[arg(long, default_value_t = 5e-4)]
    pub weight_decay: f32,
    /// Joint training: the weight of each exit's loss beside the main output's (1).
    #[arg(long, default_value_t = 1.0)]
    pub exit_weight: f32,
    /// Hidden width of each head (0: one Linear layer after the pooling).
    #[arg(long, default_value_t = 0)]
    pub hidden: usize,
    /// Frozen training: distill every head from the model's final head at this temperature
    /// (self-distillation, loss (1 - alpha) CE + alpha T^2 soft cross-entropy).
    #[arg(long, value_name = "T")]
    pub distill: Option<f32>,
    /// The weight of the distillation term with --distill.
    #[arg(long, default_value_t = 0.5)]
    pub alpha: f32,
    /// Training images held out to choose thresholds on: the same count and --seed as the
    /// model's training run, so that they are images it never saw.
    #[arg(long, default_value_t = 5000)]
    pub val: usize,
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub data: crate::data_args::DataArgs,
}

pub fn exits_cmd(a: ExitsArgs) -> Result<()> {
    let rule = Rule::parse(&a.rule)?;
    let target = match (a.max_drop, a.target_acc, a.budget) {
        (_, _, Some(b)) if !(b > 0.0 && b <= 1.0) => bail!("--budget must be in (0, 1], got {b}"),
        (_, Some(t), _) if !(0.0..=1.0).contains(&t) => bail!("--target-acc must be in [0, 1], got {t}"),
        (Some(d), _, _) if !(d >= 0.0 && d.is_finite()) => {
            bail!("--max-drop must be 0 or more points, got {d}")
        }
        (_, _, Some(b)) => Target::Budget(b),
        (_, Some(t), _) => Target::Accuracy(t),
        (d, _, _) => Target::Drop(d.unwrap_or(0.5)),
    };
    if a.val == 0 {
        bail!("--val must hold out some training images to choose thresholds on");
    }
    let distill = a.distill.map(|t| SelfDistill::new(t, a.alpha)).transpose()?;
    if distill.is_some() && a.train == Training::Joint {
        bail!("--distill teaches the heads from the final head of a frozen backbone: it goes with --train frozen");
    }
    let data_dir = a.data.path();
    io::check_output_dir(&a.out, &[&a.dir, &data_dir])?;
    let _lock = crate::lock::OutputLock::take(&a.out)?;
    let base = io::load(&a.dir)?;
    // The taps are checked before the data is read.
    let (mut model, exits) = attach(&base, &a.at, Head { hidden: a.hidden }, a.seed)?;
    let names: Vec<String> = exits.iter().map(|e| e.output.clone()).collect();
    let cfg = FitConfig {
        epochs: a.epochs,
        batch_size: a.batch_size,
        optimizer: OptimizerConfig::sgd(0.9, a.weight_decay),
        schedule: Schedule::cosine_if(true, a.lr),
        seed: a.seed,
        ..Default::default()
    };
    cfg.validate()?;
    let splits = a.data.load()?;
    let all: Arc<dyn Dataset> = Arc::new(splits.train);
    let (train, val) = split(all, a.val, a.seed)?;
    eprintln!(
        "exits at {} ({} training, {} epochs on {} images)",
        exits
            .iter()
            .map(|e| e.tap.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        match a.train {
            Training::Frozen => "frozen backbone",
            Training::Joint => "joint",
        },
        a.epochs,
        train.len()
    );
    let mut progress = ProgressHooks::new(a.epochs, false);
    match a.train {
        Training::Frozen => {
            train_frozen(&mut model, &exits, &train, &cfg, distill, &mut progress).map_err(interrupted)?
        }
        Training::Joint => {
            let weights = names.iter().map(|n| (n.clone(), a.exit_weight)).collect();
            let mut losses = OutputLosses::new(&model, weights)?;
            let r = fit(
                &mut model,
                &train,
                None,
                &cfg,
                &mut Chain(vec![&mut losses, &mut progress]),
            )?;
            if r.interrupted {
                bail!("interrupted during training; nothing was written");
            }
        }
    }
    let costs = exit_costs(&model, &names)?;
    let full_macs = *costs.last().expect("costs end with the main output") as f64;
    let val_logits = ExitLogits::collect(&model, &names, &val)?;
    let test_logits = ExitLogits::collect(&model, &names, &splits.test)?;
    let (val_acc, test_acc) = (val_logits.accuracies(), test_logits.accuracies());

    println!(
        "\n{:<22} {:>14} {:>10} {:>10}",
        "exit", "MACs if left", "val acc", "test acc"
    );
    let taps = exits.iter().map(|e| e.tap.as_str()).chain(["(main output)"]);
    for (k, tap) in taps.enumerate() {
        println!(
            "{:<22} {:>14} {:>10.4} {:>10.4}",
            tap,
            thousands(costs[k]),
            val_acc[k],
            test_acc[k]
        );
    }

    // Every rule's threshold is chosen on the validation split and reported on the test set.
    let mut chosen = Vec::new();
    for r in Rule::ALL {
        let on_val = choose(r, target, &val_logits, &costs)?;
        let on_test = pare::exits::simulate(on_val.policy, &test_logits, &costs);
        chosen.push((r, on_val, on_test));
    }
    let base_acc = test_acc[test_acc.len() - 1];
    println!(
        "\n{:<11} {:>10} {:>10} {:>9} {:>12} {:>11}   left at each exit (test)",
        "rule", "threshold", "test acc", "vs main", "avg MACs", "MACs saved"
    );
    for (r, _, t) in &chosen {
        println!(
            "{:<11} {:>10} {:>10.4} {:>+9.2} {:>12} {:>10.1}%   {:?}",
            r.name(),
            fmt_threshold(t.policy.threshold),
            t.accuracy,
            100.0 * (t.accuracy - base_acc),
            thousands(t.macs as u64),
            100.0 * (1.0 - t.macs / full_macs),
            t.left_at
        );
    }
    let policy = chosen
        .iter()
        .find(|(r, ..)| *r == rule)
        .expect("every rule is chosen")
        .1
        .policy;

    // Measured: the model without exits against the early-exit run, same images, same process,
    // both in their deployable form (BatchNorm folded), as latency reports measure.
    let base_plan = compile(&fold_batch_norm(&base)?)?;
    let exit_plan = compile_exits(&fold_batch_norm(&model)?, &names)?;
    let norm = model.graph.input.normalize.clone();
    let b1 = timed_run(&base_plan, &exit_plan, policy, &splits.test, &norm, 1)?;
    let b64 = timed_run(&base_plan, &exit_plan, policy, &splits.test, &norm, 64)?;
    let n = splits.test.len() as f64;
    println!(
        "\n{} rule, measured on the {} test images (native engine):",
        rule.name(),
        splits.test.len()
    );
    for (label, t) in [("batch 1", &b1), ("batch 64", &b64)] {
        println!(
            "  {label:<9} without exits {:.3} ms/image, with exits {:.3} ms/image: time saved {:.1}% (accuracy {:.4} -> {:.4})",
            1e3 * t.base_seconds / n,
            1e3 * t.exit_seconds / n,
            100.0 * (1.0 - t.exit_seconds / t.base_seconds),
            t.base_accuracy,
            t.exit_accuracy
        );
    }

    io::save(&model, &a.out)?;
    let curves: Vec<(Rule, Vec<Outcome>)> = Rule::ALL
        .iter()
        .map(|&r| (r, sweep(r, &test_logits, &costs)))
        .collect();
    let mut series: Vec<Series> = curves
        .iter()
        .map(|(r, pts)| Series {
            name: r.name().to_string(),
            points: pts
                .iter()
                .map(|p| (100.0 * p.macs / full_macs, 100.0 * p.accuracy))
                .collect(),
        })
        .collect();
    series.push(Series {
        name: "each exit alone".into(),
        points: costs
            .iter()
            .zip(&test_acc)
            .map(|(&c, &acc)| (100.0 * c as f64 / full_macs, 100.0 * acc))
            .collect(),
    });
    line_chart(
        &a.out.join("exits.svg"),
        "Early exits: test accuracy against average MACs",
        "average MACs (% of the model without exits)",
        "test accuracy (%)",
        &series,
    )?;
    let timing = |t: &pare::exits::TimedRun| {
        json!({"base_ms_per_image": 1e3 * t.base_seconds / n, "exit_ms_per_image": 1e3 * t.exit_seconds / n,
               "time_saved": 1.0 - t.exit_seconds / t.base_seconds, "base_accuracy": t.base_accuracy,
               "exit_accuracy": t.exit_accuracy, "left_at": t.left_at})
    };
    let report = json!({
        "base": a.dir,
        "exits": exits.iter().map(|e| json!({"tap": e.tap, "output": e.output})).collect::<Vec<_>>(),
        "policy": policy,
        "training": {"mode": match a.train { Training::Frozen => "frozen", Training::Joint => "joint" },
                     "epochs": a.epochs, "lr": a.lr, "hidden": a.hidden, "val": a.val, "seed": a.seed,
                     "distill": distill.map(|d| json!({"temperature": d.temperature, "alpha": d.alpha}))},
        "target": format!("{target:?}"),
        "macs_if_left": costs,
        "val_accuracy": val_acc,
        "test_accuracy": test_acc,
        "chosen": chosen.iter().map(|(r, v, t)| json!({"rule": r.name(), "val": v, "test": t})).collect::<Vec<_>>(),
        "measured": {"batch_1": timing(&b1), "batch_64": timing(&b64)},
        "curves": curves.iter().map(|(r, p)| json!({"rule": r.name(), "test": p})).collect::<Vec<_>>(),
    });
    crate::finetune::write_report(&a.out, "exits.json", &report)?;
    println!(
        "wrote {} (exits.json: policy, curves, measurements; exits.svg: accuracy against MACs)",
        a.out.display()
    );
    Ok(())
}

fn fmt_threshold(t: f32) -> String {
    if t.is_finite() {
        format!("{t}")
    } else {
        "never".into()
    }
}
