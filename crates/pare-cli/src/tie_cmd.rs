//! `pare tie`: cross-layer tying of a trained model's identical blocks (ALBERT-style), optional
//! fine-tuning, and a before/after report (accuracy, parameters, file size, latency).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use pare::data::fashion;
use pare::ir::io;
use pare::train::accuracy;
use pare::tying::{tie_blocks, TieInit};
use serde_json::json;

use crate::finetune::{after_finetune, interrupted, save_and_compare, FinetuneArgs};

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
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
}

pub fn tie_cmd(a: TieArgs) -> Result<()> {
    let data_dir = fashion::resolve_dir(a.data.as_deref());
    io::check_output_dir(&a.out, &[&a.dir, &data_dir])?;
    let _lock = crate::lock::OutputLock::take(&a.out)?;
    let base = io::load(&a.dir)?;
    let (mut model, tied) = tie_blocks(&base, &a.blocks, TieInit::parse(&a.init)?, a.tie_norms)?;
    let splits = fashion::load(&data_dir)?;
    let before = accuracy(&base, &splits.test)?;
    let right_after = accuracy(&model, &splits.test)?;
    println!(
        "{} layers of {} blocks now compute with those of {}",
        tied.ties.len(),
        a.blocks.len() - 1,
        tied.owner
    );
    a.tune
        .run(&mut model, &splits.train, a.tune.finetune_epochs, None)
        .map_err(interrupted)?;
    let after = accuracy(&model, &splits.test)?;
    let c = save_and_compare(&a.dir, &a.out, &base, &model, [before, after])?;
    let (size_before, size_after) = (c.size_before, c.size_after);
    println!(
        "accuracy {right_after:.4} right after tying{}; parameters / {:.2}; weights file / {:.2}",
        after_finetune(after, a.tune.finetune_epochs),
        base.num_params() as f64 / model.num_params() as f64,
        size_before as f64 / size_after as f64,
    );
    let report = json!({
        "base": a.dir,
        "blocks": a.blocks,
        "init": a.init,
        "tie_norms": a.tie_norms,
        "ties": tied.ties,
        "finetune_epochs": a.tune.finetune_epochs,
        "before": {"accuracy": before, "params": base.num_params(), "weights_bytes": size_before, "latency_ms_b1": c.b1[0], "latency_ms_b64": c.b64[0]},
        "tied_accuracy": right_after,
        "after": {"accuracy": after, "params": model.num_params(), "weights_bytes": size_after, "latency_ms_b1": c.b1[1], "latency_ms_b64": c.b64[1]},
    });
    io::write_atomic(
        &a.out.join("tie.json"),
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    println!("wrote {} (tie.json holds the report)", a.out.display());
    Ok(())
}
