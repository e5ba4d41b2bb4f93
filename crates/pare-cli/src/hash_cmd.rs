//! `pare hash`: HashedNets on a trained model. Linear layers keep `1 / factor` of their weights
//! as shared values read through a hash of each position, starting from the least-squares fit
//! to the trained weights; optional fine-tuning, and a before/after report (accuracy,
//! parameters, file size, latency).

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use pare::hashing::{hash_linears, Buckets};
use pare::ir::io;
use serde_json::json;

use crate::finetune::{finetune_and_compare, write_report, FinetuneArgs};

#[derive(Args)]
pub struct HashArgs {
    /// Model directory whose Linear layers to hash.
    pub dir: PathBuf,
    /// Output model directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Virtual weights per stored value: 8 keeps 1/8 of each layer's weights.
    #[arg(long)]
    pub factor: f64,
    /// Linear layers to hash (default: every one).
    #[arg(long, value_delimiter = ',')]
    pub layers: Vec<String>,
    /// Where the shared values start: the least-squares fit to the trained weights (fit: each
    /// value the mean of its positions' signed weights) or a fresh draw (fresh).
    #[arg(long, default_value = "fit", value_parser = ["fit", "fresh"])]
    pub init: String,
    #[command(flatten)]
    pub tune: FinetuneArgs,
    #[command(flatten)]
    pub data: crate::data_args::DataArgs,
}

pub fn hash_cmd(a: HashArgs) -> Result<()> {
    let data_dir = a.data.path();
    io::check_output_dir(&a.out, &[&a.dir, &data_dir])?;
    let _lock = crate::lock::OutputLock::take(&a.out)?;
    let base = io::load(&a.dir)?;
    let init = if a.init == "fresh" {
        Buckets::Fresh
    } else {
        Buckets::Fit
    };
    let layers = (!a.layers.is_empty()).then_some(a.layers.as_slice());
    let (mut model, hashed) = hash_linears(&base, a.factor, layers, init, a.tune.seed)?;
    if hashed.is_empty() {
        bail!("{}: the model has no Linear layer to hash", a.dir.display());
    }
    let splits = a.data.load()?;
    println!("{:<16} {:>16} {:>12}", "layer", "virtual weights", "stored");
    for h in &hashed {
        println!("{:<16} {:>16} {:>12}", h.layer, h.virtual_weights, h.buckets);
    }
    let c = finetune_and_compare(&a.dir, &a.out, &base, &mut model, &a.tune, &splits, "hashing")?;
    let [before, after] = c.sides(&base, &model);
    let report = json!({
        "base": a.dir,
        "factor": a.factor,
        "init": a.init,
        "layers": hashed,
        "finetune_epochs": a.tune.finetune_epochs,
        "before": before,
        "hashed_accuracy": c.right_after,
        "after": after,
    });
    write_report(&a.out, "hash.json", &report)?;
    println!("wrote {} (hash.json holds the report)", a.out.display());
    Ok(())
}
