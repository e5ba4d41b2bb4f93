//! `pare factorize`: low-rank factorization of a model directory's Linear layers (truncated
//! SVD) and convolutions (spatial SVD or Tucker-2), optional fine-tuning, and a before/after
//! report (accuracy, per-layer ranks, parameters, MACs, CPU latency).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Result};
use clap::Args;
use pare::data::{split, Dataset, Subset};
use pare::distill::{DistillHook, Objective};
use pare::ir::io;
use pare::lowrank::{factorize_for_macs, factorize_with, refit_separable, ConvMethod, Rank};
use pare::native;
use pare::report::{latencies_ms, thousands, Engine};
use pare::train::accuracy;
use serde_json::json;

use crate::finetune::{after_finetune, interrupted, print_before_after, FinetuneArgs};

#[derive(Args)]
pub struct FactorizeArgs {
    /// Model directory to factorize.
    pub dir: PathBuf,
    /// Output model directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Keep the fewest singular values holding this fraction of each layer's squared
    /// Frobenius norm, in (0, 1].
    #[arg(long)]
    pub energy: Option<f64>,
    /// Keep at most this many singular values per layer.
    #[arg(long)]
    pub rank: Option<usize>,
    /// Choose each layer's rank by empirical variational Bayesian matrix factorization: the
    /// components above the noise level it estimates from the singular values (for Tucker-2,
    /// on each channel axis's unfolding, as Kim et al. 2016).
    #[arg(long)]
    pub vbmf: bool,
    /// Keep this fraction of the model's MACs, in (0, 1): each layer is factorized alone at
    /// 10%..90% of its rank and evaluated, then the ranks are chosen by one accuracy floor
    /// (AIMET's greedy selection).
    #[arg(long)]
    pub macs: Option<f64>,
    /// --macs: training images held out (seeded split, --seed) to evaluate the trials on.
    #[arg(long, default_value_t = 5000)]
    pub val: usize,
    /// --macs: how many of the held-out images each trial is evaluated on.
    #[arg(long, default_value_t = 1000)]
    pub samples: usize,
    /// Also factorize convolutions: spatial (kh x kw -> kh x 1, 1 x kw), tucker2 (1x1, core,
    /// 1x1 on the channel axes) or separable (depthwise kh x kw, then 1x1; the 1x1 refitted to
    /// the original layer's outputs on --calib training images).
    #[arg(long, value_parser = ["spatial", "tucker2", "separable"])]
    pub conv: Option<String>,
    /// Training images the separable conversion's 1x1 layers are refitted on.
    #[arg(long, default_value_t = 256)]
    pub calib: usize,
    /// Fine-tune by knowledge distillation from the model before factorization (Hinton KD,
    /// T = 4, alpha = 0.9) instead of the labels alone.
    #[arg(long)]
    pub distill: bool,
    /// Layers to factorize (default: every Linear layer, and with --conv every convolution the
    /// method applies to).
    #[arg(long, value_delimiter = ',')]
    pub layers: Vec<String>,
    #[command(flatten)]
    pub tune: FinetuneArgs,
    #[command(flatten)]
    pub data: crate::data_args::DataArgs,
}

pub fn factorize_cmd(a: FactorizeArgs) -> Result<()> {
    let rule = match (a.energy, a.rank, a.macs) {
        _ if a.vbmf && (a.energy, a.rank, a.macs) != (None, None, None) => {
            bail!("give exactly one of --energy, --rank, --macs and --vbmf")
        }
        _ if a.vbmf => Some(Rank::Vbmf),
        (Some(e), None, None) => Some(Rank::Energy(e)),
        (None, Some(r), None) => Some(Rank::Fixed(r)),
        (None, None, Some(f)) if !(f > 0.0 && f < 1.0) => bail!("--macs must be in (0, 1), got {f}"),
        (None, None, Some(_)) if a.samples == 0 || a.samples > a.val => {
            bail!("--samples must be between 1 and --val ({})", a.val)
        }
        (None, None, Some(_)) => None,
        // The separable conversion takes no rank: without a rule only convolutions change.
        (None, None, None) if a.conv.as_deref() == Some("separable") => Some(Rank::Fixed(usize::MAX)),
        _ => bail!("give exactly one of --energy, --rank, --macs and --vbmf"),
    };
    let data_dir = a.data.path();
    io::check_output_dir(&a.out, &[&a.dir, &data_dir])?;
    let _lock = crate::lock::OutputLock::take(&a.out)?;
    let base = io::load(&a.dir)?;
    let layers = (!a.layers.is_empty()).then_some(a.layers.as_slice());
    // The rule and the names are checked before the data is read.
    let conv = a.conv.as_deref().map(ConvMethod::parse).transpose()?;
    let (checked, rows) = factorize_with(&base, layers, rule.unwrap_or(Rank::Fixed(usize::MAX)), conv)?;
    let splits = a.data.load()?;
    let train: Arc<dyn Dataset> = Arc::new(splits.train);
    let (mut model, ranks, budget) = match rule {
        Some(_) => (checked, rows, None),
        None => {
            let (_, val) = split(train.clone(), a.val, a.tune.seed)?;
            let probe = Subset::new(Arc::new(val), (0..a.samples).collect())?;
            eprintln!(
                "trying each layer alone at 10%..90% of its rank on {} held-out images",
                probe.len()
            );
            let mut eval = |m: &pare::ir::Model| native::accuracy(m, &probe);
            let (m, r, b) = factorize_for_macs(&base, layers, conv, a.macs.expect("matched"), &mut eval)?;
            (m, r, Some(b))
        }
    };
    if conv == Some(ConvMethod::Separable) && a.calib > 0 {
        let (m, converted) = refit_separable(&model, &base, &ranks, &*train, a.calib, a.tune.seed)?;
        eprintln!(
            "refitted {} pointwise layers on {} training images",
            converted.len(),
            a.calib
        );
        model = m;
    }
    let before = accuracy(&base, &splits.test)?;
    let factorized = accuracy(&model, &splits.test)?;
    println!(
        "{:<20} {:>8} {:>10} {:>8} {:>8} {:>12} {:>12}",
        "layer", "method", "full rank", "rank", "energy", "weights", "after"
    );
    for r in &ranks {
        println!(
            "{:<20} {:>8} {:>10} {:>8} {:>8.4} {:>12} {:>12}{}",
            r.layer,
            r.method,
            r.full_rank,
            match r.input_rank {
                Some(ri) => format!("{}/{ri}", r.rank),
                None => r.rank.to_string(),
            },
            r.energy,
            thousands(r.weights_before as u64),
            thousands(r.weights_after as u64),
            if r.factorized { "" } else { "  (kept: no smaller)" }
        );
    }
    if let Some(b) = &budget {
        println!(
            "ranks for {:.2} of the MACs ({} of {}): each chosen rank alone keeps at least {:.4} on the held-out images (unfactorized: {:.4})",
            model.macs() as f64 / b.base_macs as f64,
            thousands(model.macs()),
            thousands(b.base_macs),
            b.floor,
            b.base_accuracy
        );
    }
    let mut kd = if a.distill {
        Some(DistillHook::new(base.clone(), &model, Objective::kd(4.0, 0.9))?)
    } else {
        None
    };
    a.tune
        .run(
            &mut model,
            &*train,
            a.tune.finetune_epochs,
            kd.as_mut().map(|h| h as &mut dyn pare::train::Hooks),
        )
        .map_err(interrupted)?;
    let after = accuracy(&model, &splits.test)?;
    let b1 = latencies_ms(&[&base, &model], 1, 50, Engine::Native)?;
    let b64 = latencies_ms(&[&base, &model], 64, 20, Engine::Native)?;
    io::save(&model, &a.out)?;
    let rows = vec![
        ("test accuracy", format!("{before:.4}"), format!("{after:.4}")),
        (
            "parameters",
            thousands(base.num_params() as u64),
            thousands(model.num_params() as u64),
        ),
        ("MACs", thousands(base.macs()), thousands(model.macs())),
    ];
    print_before_after(rows, &b1, &b64);
    println!(
        "accuracy {:.4} right after the factorization{}; parameters / {:.2}; MACs / {:.2}; batch-64 speed-up x{:.2}",
        factorized,
        after_finetune(after, a.tune.finetune_epochs),
        base.num_params() as f64 / model.num_params() as f64,
        base.macs() as f64 / model.macs() as f64,
        b64[0] / b64[1]
    );
    let report = json!({
        "base": a.dir,
        "rule": match rule {
            Some(Rank::Energy(e)) => json!({"energy": e}),
            Some(Rank::Fixed(r)) => json!({"rank": r}),
            Some(Rank::Vbmf) => json!("vbmf"),
            None => json!({"macs": a.macs}),
        },
        "budget": budget,
        "conv": conv,
        "layers": ranks,
        "finetune_epochs": a.tune.finetune_epochs,
        "distill": a.distill,
        "before": {"accuracy": before, "params": base.num_params(), "macs": base.macs(), "latency_ms_b1": b1[0], "latency_ms_b64": b64[0]},
        "factorized_accuracy": factorized,
        "after": {"accuracy": after, "params": model.num_params(), "macs": model.macs(), "latency_ms_b1": b1[1], "latency_ms_b64": b64[1]},
    });
    crate::finetune::write_report(&a.out, "factorize.json", &report)?;
    println!("wrote {} (factorize.json holds the report)", a.out.display());
    Ok(())
}
