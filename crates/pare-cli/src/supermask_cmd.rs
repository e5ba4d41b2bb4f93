//! `pare supermask`: subnetworks of an untrained network. Compares the dense network trained
//! normally, the "large final" supermask (the mask of the trained weights' largest magnitudes
//! applied to the initial weights, Zhou et al. 2019) and a learned supermask (scores trained
//! with a straight-through top-k, Ramanujan et al. 2020), all at the same density.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use pare::ir::io;
use pare::prune::supermask::scores;
use pare::prune::unstructured::{apply_masks, magnitude_masks, WeightCriterion};
use pare::train::{accuracy, fit, FitConfig, Schedule};
use pare::zoo::ZooModel;
use serde_json::json;

use crate::commands::fresh_model;
use crate::progress::ProgressHooks;

#[derive(Args)]
pub struct SupermaskArgs {
    /// Zoo model (fresh initialization).
    #[arg(long, default_value = "lenet300")]
    pub model: String,
    /// Fraction of each layer's weights kept.
    #[arg(long, default_value_t = 0.5)]
    pub keep: f32,
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    /// Learning rate of the scores (SGD, momentum 0.9, cosine decay).
    #[arg(long, default_value_t = 0.1)]
    pub lr: f32,
    /// Learning rate of the dense model trained for the "large final" mask (SGD, momentum 0.9).
    #[arg(long, default_value_t = 0.01)]
    pub dense_lr: f32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub data: crate::data_args::DataArgs,
}

fn config(epochs: usize, lr: f32, cosine: bool, seed: u64) -> FitConfig {
    FitConfig {
        epochs,
        schedule: Schedule::cosine_if(cosine, lr),
        seed,
        ..Default::default()
    }
}

pub fn supermask(a: SupermaskArgs) -> Result<()> {
    io::check_output_dir(&a.out, &[&a.data.path()])?;
    let _lock = crate::lock::OutputLock::take(&a.out)?;
    let _dir = a.data.path();
    let splits = a.data.load()?;
    let init = fresh_model(&ZooModel::parse(&a.model, None, 0.0)?, &splits.train, a.seed)?;
    let (mut scored, mut hook) = scores(&init, a.keep, a.seed)?;
    let acc = |m: &pare::ir::Model| -> Result<f32> { Ok(accuracy(m, &splits.test)?) };
    let stop = |interrupted: bool| {
        if interrupted {
            println!("interrupted; nothing was written");
            crate::lock::exit(130);
        }
    };
    println!("== dense training ({} epochs)", a.epochs);
    let mut dense = init.clone();
    let r = fit(
        &mut dense,
        &splits.train,
        None,
        &config(a.epochs, a.dense_lr, false, a.seed),
        &mut ProgressHooks::new(a.epochs, false),
    )?;
    stop(r.interrupted);
    let criterion = WeightCriterion::LayerSparsity {
        default: 1.0 - a.keep,
        per_layer: BTreeMap::new(),
    };
    let masks = magnitude_masks(&dense, &criterion, &[])?;
    let mut large_final = init.clone();
    apply_masks(&mut large_final, &masks);
    println!("== learned supermask ({} epochs)", a.epochs);
    let mut progress = ProgressHooks::new(a.epochs, false);
    let r = fit(
        &mut scored,
        &splits.train,
        None,
        &config(a.epochs, a.lr, true, a.seed),
        &mut pare::train::Chain(vec![&mut hook, &mut progress]),
    )?;
    stop(r.interrupted);
    let learned = hook.bake(&scored);
    io::save(&learned, &a.out.join("model"))?;
    let rows = [
        ("untrained init (dense)", acc(&init)?),
        ("trained dense", acc(&dense)?),
        (
            "large-final supermask on the init (no training)",
            acc(&large_final)?,
        ),
        ("learned supermask on the init (scores trained)", acc(&learned)?),
    ];
    println!(
        "\n| {} at {:.0}% of weights | test accuracy |\n|---|---|",
        a.model,
        100.0 * a.keep
    );
    for (n, v) in &rows {
        println!("| {n} | {v:.4} |");
    }
    let report = json!({
        "model": a.model, "keep": a.keep, "epochs": a.epochs, "lr": a.lr, "seed": a.seed,
        "results": rows.iter().map(|(n, v)| json!({"model": n, "accuracy": v})).collect::<Vec<_>>(),
    });
    crate::finetune::write_report(&a.out, "supermask.json", &report)?;
    println!(
        "wrote {}/model (the masked initial weights) and supermask.json",
        a.out.display()
    );
    Ok(())
}
