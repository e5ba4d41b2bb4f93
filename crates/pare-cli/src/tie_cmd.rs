//! `pare tie`: cross-layer tying of a trained model's identical blocks (ALBERT-style), optional
//! fine-tuning, and a before/after report (accuracy, parameters, file size, latency).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use pare::ir::io;
use pare::tying::{tie_blocks, TieInit};
use serde_json::json;

use crate::finetune::{finetune_and_compare, write_report, FinetuneArgs};

#[derive(Args)]
pub struct TieArgs {
    /// Model directory whose blocks to tie.
    pub dir: PathBuf,
    /// Output model directory.
    #[arg(long)]
    pub out: PathBuf,
    /// The identical blocks, as node-name prefixes (e.g. blocks.0,blocks.1,blocks.2,blocks.3):
    /// the second and later compute with the first one's parameters.
    #[arg(long, value_delimiter = ',', required = true)]
    pub blocks: Vec<String>,
    /// Where the shared parameters start: the mean of the blocks' (mean) or the first block's
    /// (first).
    #[arg(long, default_value = "mean", value_parser = ["mean", "first"])]
    pub init: String,
    /// Tie the blocks' BatchNorm and LayerNorm layers too, as ALBERT does (tied BatchNorms keep
    /// running statistics mixed over the blocks' depths).
    #[arg(long)]
    pub tie_norms: bool,
    #[command(flatten)]
    pub tune: FinetuneArgs,
    #[command(flatten)]
    pub data: crate::data_args::DataArgs,
}

pub fn tie_cmd(a: TieArgs) -> Result<()> {
    let data_dir = a.data.path();
    io::check_output_dir(&a.out, &[&a.dir, &data_dir])?;
    let _lock = crate::lock::OutputLock::take(&a.out)?;
    let base = io::load(&a.dir)?;
    let (mut model, tied) = tie_blocks(&base, &a.blocks, TieInit::parse(&a.init)?, a.tie_norms)?;
    let splits = a.data.load()?;
    println!(
        "{} layers of {} blocks now compute with those of {}",
        tied.ties.len(),
        a.blocks.len() - 1,
        tied.owner
    );
    let c = finetune_and_compare(&a.dir, &a.out, &base, &mut model, &a.tune, &splits, "tying")?;
    let [before, after] = c.sides(&base, &model);
    let report = json!({
        "base": a.dir,
        "blocks": a.blocks,
        "init": a.init,
        "tie_norms": a.tie_norms,
        "ties": tied.ties,
        "finetune_epochs": a.tune.finetune_epochs,
        "before": before,
        "tied_accuracy": c.right_after,
        "after": after,
    });
    write_report(&a.out, "tie.json", &report)?;
    println!("wrote {} (tie.json holds the report)", a.out.display());
    Ok(())
}
