//! `pare binarize`: BinaryConnect, BNN or XNOR-Net from a trained model (fine-tuned) or from a
//! fresh zoo model, trained with Adam, reported beside the same network in float trained with
//! the same budget: accuracy, binary weights, weights file and measured latency.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use pare::binary::{binarize, Method};
use pare::data::fashion;
use pare::ir::{io, reparam::bake, Model};
use pare::report::{latencies_ms, thousands, Engine};
use pare::train::{accuracy, fit, Chain, FitConfig, Hooks, OptimizerConfig, ReparamHook, Schedule};
use serde_json::json;

use crate::commands::fresh_model;
use crate::progress::ProgressHooks;

#[derive(Args)]
pub struct BinarizeArgs {
    /// Trained model directory to start from (or --model for a fresh zoo model).
    pub dir: Option<PathBuf>,
    /// Zoo model trained from scratch (fresh initialization with --seed).
    #[arg(long, conflicts_with = "dir")]
    pub model: Option<String>,
    /// binaryconnect (binary weights), bnn (binary weights and activations) or xnor (scaled
    /// binary weights and activations, first and last layer real).
    #[arg(long)]
    pub method: String,
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 0.001)]
    pub lr: f32,
    /// BinaryConnect's stochastic binarization: each weight +1 with probability
    /// clip((w + 1) / 2, 0, 1), drawn every step (the deployed network takes the sign).
    #[arg(long)]
    pub stochastic: bool,
    /// BinaryConnect's per-layer learning-rate scaling: each binary layer's rate multiplied by
    /// 1 / sqrt(1.5 / (fan_in + fan_out)) (Glorot's bound).
    #[arg(long)]
    pub glorot_lr: bool,
    /// Cosine decay of the learning rate instead of a constant rate.
    #[arg(long)]
    pub cosine: bool,
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Skip the float network trained with the same budget (its accuracy is then not reported).
    #[arg(long)]
    pub no_float: bool,
    /// How model.pare stores the real-valued tensors (first and last layers, BatchNorm,
    /// biases; the binary weights are bits either way): f32; f16; or int8, the real layers'
    /// weights as 8-bit per-channel codes and the rest in f16 (the papers keep those layers in
    /// full precision: int8 departs from their protocol). The report gives the file's own
    /// accuracy when it is not f32.
    #[arg(long, value_enum, default_value_t = Real::F32)]
    pub real: Real,
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub data: crate::data_args::DataArgs,
}

pub fn binarize_cmd(a: BinarizeArgs) -> Result<()> {
    let data_dir = a.data.path();
    let mut inputs: Vec<&std::path::Path> = vec![&data_dir];
    if let Some(d) = &a.dir {
        inputs.push(d);
    }
    io::check_output_dir(&a.out, &inputs)?;
    let method = Method::parse(&a.method)?;
    let _lock = crate::lock::OutputLock::take(&a.out)?;
    let splits = a.data.load()?;
    let (base, source) = match (&a.dir, &a.model) {
        (Some(d), None) => (io::load(d)?, d.display().to_string()),
        (None, Some(m)) => (
            fresh_model(&pare::zoo::ZooModel::parse(m, None, 0.0)?, &splits.train, a.seed)?,
            format!("fresh {m} (seed {})", a.seed),
        ),
        _ => bail!("give a model directory or --model NAME"),
    };
    let mut bin = binarize(&base, method)?;
    if a.stochastic {
        bin = bin.with_stochastic_weights();
    }
    println!(
        "{} on {source}: binary weights in {}; binary inputs to {}",
        method.name(),
        list(&bin.binary_layers),
        list(&bin.binary_inputs)
    );
    let cfg = FitConfig {
        epochs: a.epochs,
        batch_size: a.batch_size,
        optimizer: OptimizerConfig::adam(0.0),
        schedule: Schedule::cosine_if(a.cosine, a.lr),
        seed: a.seed,
        ..Default::default()
    };
    cfg.validate()?;
    // The per-layer scaling belongs to the binary network's training; the float network
    // trains at the base rate.
    let bin_cfg = FitConfig {
        lr_scales: if a.glorot_lr {
            bin.glorot_lr_scales()
        } else {
            Default::default()
        },
        ..cfg.clone()
    };
    println!("== {} ({} epochs)", method.name(), a.epochs);
    let mut model = bin.model.clone();
    let binary_epoch_s = train(
        &mut model,
        &splits,
        &bin_cfg,
        &mut ReparamHook::new(bin.reparams.clone()),
        "nothing was written",
    )?;
    let binary = bake(&model, &bin.reparams);
    let binary_acc = accuracy(&binary, &splits.test)?;
    // Stochastic BinaryConnect's test-time protocol in the paper: the real weights.
    let real_acc = if a.stochastic {
        let acc = accuracy(&model, &splits.test)?;
        println!("test accuracy with the real weights (the paper's test-time protocol for stochastic binarization): {acc:.4}");
        Some(acc)
    } else {
        None
    };
    // Saved before the float run, so that an interruption there keeps the binary network.
    io::save(&binary, &a.out)?;
    // The deployable file: one sign bit per binary weight and a magnitude per row, the other
    // tensors as --real says.
    let plan = file_plan(&binary, &bin.binary_layers, a.real);
    let file = a.out.join("model.pare");
    let pare_bytes = pare::codec::file::write(&file, &binary, &plan)?.total();
    let file_acc = if a.real != Real::F32 {
        let acc = accuracy(&pare::codec::file::read(&file)?, &splits.test)?;
        println!(
            "test accuracy of model.pare (real-valued tensors {}): {acc:.4}",
            a.real.name()
        );
        Some(acc)
    } else {
        None
    };
    let f32_bytes = std::fs::metadata(a.out.join(io::WEIGHTS_FILE))?.len();
    let float = if a.no_float {
        None
    } else {
        println!("== the same network in float ({} epochs)", a.epochs);
        let mut f = bin.float.clone();
        let kept = format!("the binary network is in {} (no report)", a.out.display());
        let epoch_s = train(&mut f, &splits, &cfg, &mut pare::train::NoHooks, &kept)?;
        let acc = accuracy(&f, &splits.test)?;
        Some((f, acc, epoch_s))
    };
    let binary_weights: usize = bin
        .binary_layers
        .iter()
        .map(|l| binary.params[&format!("{l}.weight")].len())
        .sum();
    let mut models: Vec<&Model> = vec![&binary];
    if let Some((f, ..)) = &float {
        models.insert(0, f);
    }
    let b1 = latencies_ms(&models, 1, 50, Engine::Native)?;
    let b64 = latencies_ms(&models, 64, 20, Engine::Native)?;
    let k = models.len() - 1;
    println!("\n{:<28} {:>12} {:>12}", "", "float", method.name());
    let fl = |f: &dyn Fn(&Trained, usize) -> String| float.as_ref().map_or("-".into(), |x| f(x, 0));
    let rows: Vec<(&str, String, String)> = vec![
        (
            "test accuracy",
            fl(&|x, _| format!("{:.4}", x.1)),
            format!("{binary_acc:.4}"),
        ),
        (
            "parameters",
            thousands(bin.float.num_params() as u64),
            thousands(binary.num_params() as u64),
        ),
        ("binary weights", "0".into(), thousands(binary_weights as u64)),
        (
            "file (bytes)",
            format!("{} f32", thousands(f32_bytes)),
            format!("{} .pare", thousands(pare_bytes as u64)),
        ),
        (
            "latency b1 (ms, native)",
            fl(&|_, i| format!("{:.3}", b1[i])),
            format!("{:.3}", b1[k]),
        ),
        (
            "latency b64 (ms, native)",
            fl(&|_, i| format!("{:.2}", b64[i])),
            format!("{:.2}", b64[k]),
        ),
        (
            "training (s per epoch)",
            fl(&|x, _| format!("{:.1}", x.2)),
            format!("{binary_epoch_s:.1}"),
        ),
    ];
    for (name, f, b) in &rows {
        println!("{name:<28} {f:>12} {b:>12}");
    }
    if let Some((_, acc, _)) = &float {
        println!(
            "{}: {binary_acc:.4} against {acc:.4} in float ({:+.2} pt)",
            method.name(),
            100.0 * (binary_acc - acc)
        );
    }
    let report = json!({
        "source": source,
        "method": method.name(),
        "epochs": a.epochs,
        "lr": a.lr,
        "cosine": a.cosine,
        "seed": a.seed,
        "stochastic": a.stochastic,
        "glorot_lr": a.glorot_lr,
        "binary_layers": bin.binary_layers,
        "binary_inputs": bin.binary_inputs,
        "binary_weights": binary_weights,
        "weights_f32_bytes": f32_bytes,
        "model_pare_bytes": pare_bytes,
        "real": a.real.name(),
        "model_pare_accuracy": file_acc,
        "binary": {"accuracy": binary_acc, "accuracy_real_weights": real_acc,
            "params": binary.num_params(), "latency_ms_b1": b1[k], "latency_ms_b64": b64[k],
            "train_seconds_per_epoch": binary_epoch_s},
        "float": float.as_ref().map(|(f, acc, epoch_s)| json!({"accuracy": acc, "params": f.num_params(),
            "latency_ms_b1": b1[0], "latency_ms_b64": b64[0], "train_seconds_per_epoch": epoch_s})),
    });
    crate::finetune::write_report(&a.out, "binarize.json", &report)?;
    println!(
        "model.pare: {} bytes, / {:.1} against the f32 weights file",
        thousands(pare_bytes as u64),
        f32_bytes as f64 / pare_bytes as f64
    );
    println!(
        "wrote {} (model.pare the binary file, binarize.json the report)",
        a.out.display()
    );
    Ok(())
}

/// How `model.pare` stores the real-valued tensors of a binary network.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Real {
    F32,
    F16,
    /// The real layers' weights as 8-bit per-channel codes, the other tensors in f16.
    Int8,
}

impl Real {
    fn name(self) -> &'static str {
        match self {
            Real::F32 => "f32",
            Real::F16 => "f16",
            Real::Int8 => "int8",
        }
    }
}

/// How model.pare stores each tensor: binary layers' weights as bits, the others as `real`
/// says (f32 needs no entry).
fn file_plan(model: &Model, binary_layers: &[String], real: Real) -> pare::codec::file::Plan {
    use pare::codec::file::Encoding;
    let layer_weights: Vec<String> = model.layer_weights().into_iter().map(|(_, w)| w).collect();
    let int8 = Encoding::Uniform {
        bits: 8,
        per_channel: true,
        symmetric: true,
        huffman: false,
    };
    model
        .params
        .keys()
        .filter_map(|name| {
            let enc = if binary_layers.iter().any(|l| *name == format!("{l}.weight")) {
                Encoding::Binary
            } else {
                match real {
                    Real::Int8 if layer_weights.contains(name) => int8,
                    Real::F32 => return None,
                    Real::F16 | Real::Int8 => Encoding::F16,
                }
            };
            Some((name.clone(), enc))
        })
        .collect()
}

/// A trained network, its test accuracy and its training seconds per epoch.
type Trained = (Model, f32, f64);

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// Trains `model` with `hook` beside a progress bar and returns the mean seconds of an epoch's
/// training steps; an interruption exits, saying what was `written` by then.
fn train(
    model: &mut Model,
    splits: &fashion::Splits,
    cfg: &FitConfig,
    hook: &mut dyn Hooks,
    written: &str,
) -> Result<f64> {
    let mut progress = ProgressHooks::new(cfg.epochs, false);
    let r = fit(
        model,
        &splits.train,
        None,
        cfg,
        &mut Chain(vec![hook, &mut progress]),
    )?;
    if r.interrupted {
        println!("interrupted; {written}");
        crate::lock::exit(130);
    }
    Ok(r.history.iter().map(|e| e.seconds).sum::<f64>() / r.history.len().max(1) as f64)
}
