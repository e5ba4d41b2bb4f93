//! The fine-tuning options and run shared by the commands that change a trained model and
//! then train it back (`prune`, `factorize`, `tie`, `hash`): SGD with momentum 0.9, constant or
//! cosine rate; the before/after table they end with; their JSON reports.

use clap::Args;
use pare::data::Dataset;
use pare::ir::Model;
use pare::train::{fit, Chain, FitConfig, Hooks, OptimizerConfig, Schedule};

use crate::progress::ProgressHooks;

#[derive(Args)]
pub struct FinetuneArgs {
    /// Fine-tuning epochs (structured pruning: after each step).
    #[arg(long, default_value_t = 0)]
    pub finetune_epochs: usize,
    #[arg(long, default_value_t = 0.01)]
    pub lr: f32,
    /// Cosine decay of the fine-tuning learning rate instead of a constant rate.
    #[arg(long)]
    pub cosine: bool,
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f32,
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl FinetuneArgs {
    /// Fine-tunes `model` for `epochs` (none: unchanged), with `extra` hooks beside the
    /// progress bar. An interruption is [`pare::Error::Interrupted`]: the caller writes nothing.
    pub fn run(
        &self,
        model: &mut Model,
        train: &dyn Dataset,
        epochs: usize,
        extra: Option<&mut dyn Hooks>,
    ) -> pare::Result<()> {
        if epochs == 0 {
            return Ok(());
        }
        let cfg = FitConfig {
            epochs,
            batch_size: self.batch_size,
            optimizer: OptimizerConfig::sgd(0.9, self.weight_decay),
            schedule: Schedule::cosine_if(self.cosine, self.lr),
            seed: self.seed,
            ..Default::default()
        };
        cfg.validate()?;
        let mut progress = ProgressHooks::new(epochs, false);
        let r = match extra {
            Some(h) => fit(model, train, None, &cfg, &mut Chain(vec![h, &mut progress]))?,
            None => fit(model, train, None, &cfg, &mut progress)?,
        };
        if r.interrupted {
            return Err(pare::Error::Interrupted);
        }
        Ok(())
    }
}

/// Says what an interruption during fine-tuning means for these commands: nothing was written.
pub fn interrupted(e: pare::Error) -> anyhow::Error {
    match e {
        pare::Error::Interrupted => anyhow::anyhow!("interrupted during fine-tuning; nothing was written"),
        other => other.into(),
    }
}

/// Prints the before/after table of a command that changed a model: `rows` (name, before,
/// after), then the two latencies measured on both models together (`b1`, `b64`: before, after).
pub fn print_before_after(rows: Vec<(&str, String, String)>, b1: &[f64], b64: &[f64]) {
    println!("\n{:<24} {:>14} {:>14}", "", "before", "after");
    let latency = [
        (
            "latency batch 1 (ms)",
            format!("{:.3}", b1[0]),
            format!("{:.3}", b1[1]),
        ),
        (
            "latency batch 64 (ms)",
            format!("{:.2}", b64[0]),
            format!("{:.2}", b64[1]),
        ),
    ];
    for (k, b, af) in rows.into_iter().chain(latency) {
        println!("{k:<24} {b:>14} {af:>14}");
    }
}

/// `", 0.8939 after 10 epochs of fine-tuning"`, or nothing without fine-tuning: the tail of the
/// sentence these commands end with.
pub fn after_finetune(accuracy: f32, epochs: usize) -> String {
    if epochs > 0 {
        format!(", {accuracy:.4} after {epochs} epochs of fine-tuning")
    } else {
        String::new()
    }
}

/// What [`finetune_and_compare`] measured: test accuracy before, right after the rewrite and
/// after fine-tuning; the weights files' sizes; latencies (ms) at batch 1 and 64, before and
/// after.
pub struct Compared {
    pub before: f32,
    pub right_after: f32,
    pub after: f32,
    pub size_before: u64,
    pub size_after: u64,
    pub b1: Vec<f64>,
    pub b64: Vec<f64>,
}

impl Compared {
    /// The report's `before` and `after` objects.
    pub fn sides(&self, base: &Model, model: &Model) -> [serde_json::Value; 2] {
        let side = |m: &Model, acc: f32, bytes: u64, k: usize| {
            serde_json::json!({"accuracy": acc, "params": m.num_params(), "weights_bytes": bytes,
                "latency_ms_b1": self.b1[k], "latency_ms_b64": self.b64[k]})
        };
        [
            side(base, self.before, self.size_before, 0),
            side(model, self.after, self.size_after, 1),
        ]
    }
}

/// For the rewrites that share weights (tying, hashing): measures `model` (`base` rewritten by
/// `what`, e.g. "tying") on the test set, fine-tunes it as `tune` says, times both models,
/// saves `model` to `out`, and prints accuracy, parameters, weights-file size, MACs and
/// latency side by side with a one-line summary.
pub fn finetune_and_compare(
    base_dir: &std::path::Path,
    out: &std::path::Path,
    base: &Model,
    model: &mut Model,
    tune: &FinetuneArgs,
    splits: &pare::data::fashion::Splits,
    what: &str,
) -> anyhow::Result<Compared> {
    use pare::ir::io;
    use pare::report::{latencies_ms, thousands, Engine};
    use pare::train::accuracy;
    let before = accuracy(base, &splits.test)?;
    let right_after = accuracy(model, &splits.test)?;
    tune.run(model, &splits.train, tune.finetune_epochs, None)
        .map_err(interrupted)?;
    let after = accuracy(model, &splits.test)?;
    let b1 = latencies_ms(&[base, model], 1, 50, Engine::Native)?;
    let b64 = latencies_ms(&[base, model], 64, 20, Engine::Native)?;
    io::save(model, out)?;
    let size = |d: &std::path::Path| std::fs::metadata(d.join(io::WEIGHTS_FILE)).map(|m| m.len());
    let (size_before, size_after) = (size(base_dir)?, size(out)?);
    let rows = vec![
        ("test accuracy", format!("{before:.4}"), format!("{after:.4}")),
        (
            "parameters",
            thousands(base.num_params() as u64),
            thousands(model.num_params() as u64),
        ),
        (
            "weights file (bytes)",
            thousands(size_before),
            thousands(size_after),
        ),
        ("MACs", thousands(base.macs()), thousands(model.macs())),
    ];
    print_before_after(rows, &b1, &b64);
    println!(
        "accuracy {right_after:.4} right after {what}{}; parameters / {:.2}; weights file / {:.2}",
        after_finetune(after, tune.finetune_epochs),
        base.num_params() as f64 / model.num_params() as f64,
        size_before as f64 / size_after as f64,
    );
    Ok(Compared {
        before,
        right_after,
        after,
        size_before,
        size_after,
        b1,
        b64,
    })
}

/// Writes a command's JSON report atomically as `dir/file`.
pub fn write_report(dir: &std::path::Path, file: &str, report: &serde_json::Value) -> anyhow::Result<()> {
    pare::ir::io::write_atomic(&dir.join(file), serde_json::to_string_pretty(report)?.as_bytes())?;
    Ok(())
}
