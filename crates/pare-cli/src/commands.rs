//! One function per subcommand: parse-level arguments in, library calls, printed results out.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use pare::data::{fashion, split, Dataset, Subset};
use pare::ir::op::{Conv2d, Linear};
use pare::ir::{io, Model, Reparams};
use pare::report::{render, summarize, thousands, Engine};
use pare::train::{evaluate, fit, Chain, FitConfig, LrSchedule, OptimizerConfig, Schedule};
use pare::zoo::{catalog, ZooModel};
use serde_json::json;

use crate::progress::ProgressHooks;
use crate::{ModelArgs, OptimizerArg, ScheduleArg, TrainArgs};

const CHECKPOINT: &str = "checkpoint.safetensors";
const REPORT: &str = "report.json";

pub fn zoo(as_json: bool) -> Result<()> {
    let mut rows = Vec::new();
    for m in catalog() {
        let model = Model::init(m.build(&[1, 28, 28], 10)?, 0)?;
        rows.push((m.label(), model.num_params(), model.macs()));
    }
    if as_json {
        let v: Vec<_> = rows
            .iter()
            .map(|(n, p, m)| json!({"model": n, "params": p, "macs": m}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("{:<26} {:>12} {:>14}", "model", "params", "MACs@1x28x28");
    for (n, p, m) in rows {
        println!("{n:<26} {:>12} {:>14}", thousands(p as u64), thousands(m));
    }
    println!("(mlp takes --hidden, e.g. --model mlp --hidden 1200,1200 --dropout 0.5; resnet depth 6n+2: resnet8 ... resnet56)");
    Ok(())
}

fn zoo_model(m: &ModelArgs) -> Result<ZooModel> {
    let zm = if m.model.contains(':') && m.hidden.is_none() {
        ZooModel::parse_spec(&m.model)?
    } else {
        ZooModel::parse(&m.model, m.hidden.as_deref(), m.dropout)?
    };
    match (m.width, &zm) {
        (None, _) => Ok(zm),
        (Some(w), ZooModel::Mobilenet { .. }) => Ok(ZooModel::mobilenet(w)?),
        (Some(_), _) => bail!("--width is for the mobilenet model, not {}", m.model),
    }
}

/// A freshly initialized zoo model for `set`: its sample shape, class count and pixel
/// statistics (recorded as the model's input normalization).
pub(crate) fn fresh_model(zm: &ZooModel, set: &dyn Dataset, seed: u64) -> Result<Model> {
    let mut graph = zm.build(set.sample_shape(), set.num_classes())?;
    graph.input.normalize = fashion::pixel_stats(set);
    Ok(zm.init(graph, seed)?)
}

pub fn train(a: TrainArgs) -> Result<()> {
    io::check_output_dir(&a.out, &[&a.data.path()])?;
    let _lock = crate::lock::OutputLock::take(&a.out)?;
    let zm = zoo_model(&a.model)?;
    let lr = a.lr.unwrap_or(match a.optimizer {
        OptimizerArg::Sgd => 0.01,
        _ => 0.001,
    });
    let optimizer = match a.optimizer {
        OptimizerArg::Sgd => OptimizerConfig::Sgd {
            momentum: a.momentum,
            dampening: 0.0,
            nesterov: a.nesterov,
            weight_decay: a.weight_decay,
        },
        OptimizerArg::Adam => OptimizerConfig::adam(a.weight_decay),
        OptimizerArg::Adamw => OptimizerConfig::AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: a.weight_decay,
        },
    };
    let splits = a.data.load()?;
    let train_all: Arc<dyn Dataset> = Arc::new(splits.train);
    let steps_per_epoch = (train_all.len() - a.val).div_ceil(a.batch_size.max(1));
    let kind = match a.schedule {
        ScheduleArg::Constant => LrSchedule::Constant,
        ScheduleArg::Step => LrSchedule::Step {
            every_epochs: a.step_epochs,
            gamma: a.gamma,
        },
        ScheduleArg::Cosine => LrSchedule::Cosine { min_lr: 0.0 },
    };
    let cfg = FitConfig {
        epochs: a.epochs,
        batch_size: a.batch_size,
        optimizer,
        schedule: Schedule {
            base_lr: lr,
            kind,
            warmup_steps: a.warmup_epochs * steps_per_epoch,
        },
        seed: a.seed,
        augment: pare::data::Augment {
            crop_padding: a.crop_padding,
            hflip: a.hflip,
            views: 0,
        },
        checkpoint: Some(a.out.join(CHECKPOINT)),
        resume: a.resume,
        ..Default::default()
    };
    cfg.validate()?;
    let mut model = fresh_model(&zm, train_all.as_ref(), a.seed)?;
    if let Some(f) = a.hashed {
        let (m, layers) =
            pare::hashing::hash_linears(&model, f, None, pare::hashing::Buckets::Fresh, a.seed)?;
        if layers.is_empty() {
            bail!("--hashed: {} has no Linear layer to hash", zm.label());
        }
        model = m;
    }
    if !a.tie.is_empty() {
        model = pare::tying::tie_blocks(&model, &a.tie, pare::tying::TieInit::First, a.tie_norms)?.0;
    } else if a.tie_norms {
        bail!("--tie-norms goes with --tie");
    }
    let (train_set, val_set): (Subset, Option<Subset>) = if a.val > 0 {
        let (t, v) = split(train_all.clone(), a.val, a.seed)?;
        (t, Some(v))
    } else {
        (
            Subset::new(train_all.clone(), (0..train_all.len()).collect())?,
            None,
        )
    };
    println!(
        "training {} ({} parameters, {} MACs) on {} images, validating on {}, {} epochs",
        zm.label(),
        thousands(model.num_params() as u64),
        thousands(model.macs()),
        train_set.len(),
        val_set.as_ref().map_or(0, |v| v.len()),
        a.epochs
    );
    if a.slimming.is_nan() || a.slimming < 0.0 {
        bail!("--slimming must be non-negative, got {}", a.slimming);
    }
    let mut progress = ProgressHooks::new(a.epochs, false);
    let mut slimming = pare::prune::slimming::SlimmingPenalty { lambda: a.slimming };
    let mut hooks = Chain(vec![&mut slimming, &mut progress]);
    let started = Instant::now();
    let report = fit(
        &mut model,
        &train_set,
        val_set.as_ref().map(|v| v as &dyn Dataset),
        &cfg,
        &mut hooks,
    )?;
    if report.interrupted {
        println!(
            "interrupted: checkpoint saved to {}; continue with the same command plus --resume",
            a.out.join(CHECKPOINT).display()
        );
        // The conventional exit status of a program stopped by SIGINT.
        crate::lock::exit(130);
    }
    let test = evaluate(&model, &splits.test, 1000, &Reparams::new())?;
    io::save(&model, &a.out)?;
    let train_seconds: f64 = report.history.iter().map(|r| r.seconds).sum();
    let rep = json!({
        "model": zm,
        "params": model.num_params(),
        "macs": model.macs(),
        "epochs": a.epochs,
        "config": cfg,
        "normalize": model.graph.input.normalize,
        "slimming": a.slimming,
        "hashed": a.hashed,
        "tie": a.tie,
        "tie_norms": a.tie_norms,
        "history": report.history,
        "test_accuracy": test.accuracy,
        "test_loss": test.loss,
        "train_seconds": train_seconds,
        "wall_seconds": started.elapsed().as_secs_f64(),
    });
    io::write_atomic(
        &a.out.join(REPORT),
        serde_json::to_string_pretty(&rep)?.as_bytes(),
    )?;
    println!(
        "test accuracy {:.4} (loss {:.4}) on {} images; wrote {}",
        test.accuracy,
        test.loss,
        test.samples,
        a.out.display()
    );
    Ok(())
}

/// A model directory, a compressed `.pare` file (decoded) or an `.onnx` file (imported).
pub(crate) fn load_model(path: &Path) -> Result<Model> {
    if !path.exists() {
        bail!(
            "{}: no such file or directory (a model directory, a .pare or an .onnx file)",
            path.display()
        );
    }
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("onnx")) {
        Ok(pare::onnx::load(path)?)
    } else if path.is_file() {
        Ok(pare::codec::read(path)?)
    } else {
        Ok(io::load(path)?)
    }
}

pub fn eval(
    dir: &Path,
    data: &crate::data_args::DataArgs,
    batch_size: usize,
    output: Option<&str>,
    native: bool,
    predictions: Option<&Path>,
    as_json: bool,
) -> Result<()> {
    if batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let mut model = load_model(dir)?;
    if let Some(out) = output {
        let graph = model
            .graph
            .select_output(out)
            .with_context(|| format!("--output {out}: {}", dir.display()))?;
        model = pare::ir::Model::new(graph, model.params)?;
    }
    let splits = data.load()?;
    if let Some(path) = predictions {
        write_predictions(&model, &splits.test, batch_size, native, path)?;
    }
    if native {
        return eval_native(&model, &splits.test, batch_size, as_json);
    }
    let m = evaluate(&model, &splits.test, batch_size, &Reparams::new())?;
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"accuracy": m.accuracy, "loss": m.loss, "samples": m.samples})
            )?
        );
    } else {
        println!(
            "accuracy {:.4} (loss {:.4}) on {} test images",
            m.accuracy, m.loss, m.samples
        );
    }
    Ok(())
}

/// `pare eval --native`: accuracy on the native engine, and how many layers run each kernel.
/// Each image's predicted class on the chosen engine, one per line.
fn write_predictions(
    model: &Model,
    test: &dyn pare::data::Dataset,
    batch_size: usize,
    native: bool,
    path: &Path,
) -> Result<()> {
    let plan = if native {
        Some(pare::native::compile(model)?)
    } else {
        None
    };
    let mut text = String::new();
    for b in pare::data::sequential(test, batch_size, &model.graph.input.normalize) {
        let y = match &plan {
            Some(p) => p.run(&b.x)?,
            None => pare::exec::infer(model, &b.x, &Reparams::new(), &[])?.output,
        };
        for c in y.argmax_rows() {
            text.push_str(&format!("{c}\n"));
        }
    }
    io::write_atomic(path, text.as_bytes())?;
    Ok(())
}

fn eval_native(
    model: &pare::ir::Model,
    test: &dyn pare::data::Dataset,
    batch_size: usize,
    as_json: bool,
) -> Result<()> {
    let plan = pare::native::compile(model)?;
    let accuracy = pare::native::plan_accuracy(&plan, model, test, batch_size)?;
    let seen = test.len();
    let mut kernels = std::collections::BTreeMap::<String, usize>::new();
    for (i, k) in plan.kernels() {
        if matches!(
            model.graph.nodes[i].op,
            pare::ir::Op::Linear(Linear { .. }) | pare::ir::Op::Conv2d(Conv2d { .. })
        ) {
            *kernels.entry(k).or_default() += 1;
        }
    }
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"accuracy": accuracy, "samples": seen, "engine": "native", "layer_kernels": kernels})
            )?
        );
    } else {
        let list: Vec<String> = kernels.iter().map(|(k, n)| format!("{n} {k}")).collect();
        println!(
            "accuracy {accuracy:.4} on {seen} test images (native engine; layers: {})",
            list.join(", ")
        );
    }
    Ok(())
}

pub fn info(dir: &Path, as_json: bool) -> Result<()> {
    let model = load_model(dir)?;
    let s = summarize(&model);
    if as_json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        print!("{}", render(&s));
    }
    Ok(())
}

pub fn bench_train(
    m: &ModelArgs,
    epochs: usize,
    batch_size: usize,
    lr: f32,
    data: &crate::data_args::DataArgs,
    as_json: bool,
) -> Result<()> {
    let zm = zoo_model(m)?;
    let splits = data.load()?;
    let mut model = fresh_model(&zm, &splits.train, 0)?;
    let cfg = FitConfig {
        epochs,
        batch_size,
        schedule: Schedule::constant(lr),
        ..Default::default()
    };
    let mut hooks = ProgressHooks::new(epochs, as_json);
    let report = fit(&mut model, &splits.train, None, &cfg, &mut hooks)?;
    let secs: Vec<f64> = report.history.iter().map(|r| r.seconds).collect();
    let mean = secs.iter().sum::<f64>() / secs.len().max(1) as f64;
    let ips = splits.train.len() as f64 / mean;
    if as_json {
        println!(
            "{}",
            json!({"model": zm.label(), "batch_size": batch_size, "epochs": epochs, "seconds_per_epoch": secs, "mean_seconds_per_epoch": mean, "images_per_sec": ips})
        );
    } else {
        println!(
            "{}: {:.2} s/epoch ({:.0} images/s), batch {batch_size}, {epochs} epoch(s)",
            zm.label(),
            mean,
            ips
        );
    }
    Ok(())
}

pub fn bench_latency(
    dirs: &[std::path::PathBuf],
    reps: usize,
    as_json: bool,
    layers: Option<usize>,
) -> Result<()> {
    if dirs.is_empty() {
        bail!("give at least one model directory");
    }
    if layers == Some(0) {
        bail!("--layers takes a batch size of at least 1");
    }
    let models = dirs.iter().map(|d| load_model(d)).collect::<Result<Vec<_>>>()?;
    let refs: Vec<&Model> = models.iter().collect();
    // All models interleaved in one measurement per setting: their ratios are what this
    // command is for.
    let lat = |batch, engine| pare::report::latencies_ms(&refs, batch, reps, engine);
    let (b1, b64) = (lat(1, Engine::Native)?, lat(64, Engine::Native)?);
    let (t1, t64) = (lat(1, Engine::Training)?, lat(64, Engine::Training)?);
    let profiles = match layers {
        Some(batch) => pare::report::layer_latencies_ms(&refs, batch, reps)?,
        None => Vec::new(),
    };
    let mut rows = Vec::new();
    for (i, (d, m)) in dirs.iter().zip(&models).enumerate() {
        let mut row = json!({"dir": d, "macs": m.macs(), "params": m.num_params(),
            "latency_ms_b1": b1[i], "latency_ms_b64": b64[i],
            "training_engine_ms_b1": t1[i], "training_engine_ms_b64": t64[i]});
        if let (Some(batch), Some(p)) = (layers, profiles.get(i)) {
            row["layers"] = json!({"batch": batch, "times": p});
        }
        rows.push(row);
        if !as_json {
            println!(
                "{:<36} {:>12} MACs  native: batch 1 {:>7.3} ms, batch 64 {:>8.2} ms  (training engine: {:>7.3} / {:>8.2} ms)",
                d.display(),
                thousands(m.macs()),
                b1[i],
                b64[i],
                t1[i],
                t64[i]
            );
        }
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else if let Some(batch) = layers {
        print!("{}", layer_table(dirs, &profiles, batch));
    }
    Ok(())
}

/// `pare bench gemm`: the layer in `dtype` and in f32, interleaved.
pub fn bench_gemm(m: usize, k: usize, n: usize, dtype: &str, reps: usize, as_json: bool) -> Result<()> {
    use pare::report::gemm::{gemm_layer, GemmDtype};
    if m == 0 {
        bail!("--m (the batch) must be at least 1");
    }
    let dt = GemmDtype::parse(dtype)?;
    let f32_layer = gemm_layer(GemmDtype::F32, k, n, 0)?;
    let layer = gemm_layer(dt, k, n, 0)?;
    let ms = pare::report::latencies_ms(&[&f32_layer, &layer], m, reps, Engine::Native)?;
    let kernel = pare::native::compile(&layer)?
        .kernels()
        .pop()
        .map(|(_, k)| k)
        .unwrap_or_default();
    let gops = |t: f64| 2.0 * (m * k * n) as f64 / (t * 1e-3) / 1e9;
    let report = json!({"m": m, "k": k, "n": n, "dtype": dtype, "kernel": kernel,
        "ms": ms[1], "gops": gops(ms[1]), "f32_ms": ms[0], "f32_gops": gops(ms[0]),
        "speedup_over_f32": ms[0] / ms[1]});
    if as_json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("[{m} x {k}] x [{k} x {n}], median of {reps}:");
        println!("  f32       {:>9.3} ms  {:>8.1} GOP/s", ms[0], gops(ms[0]));
        println!(
            "  {dtype:<9} {:>9.3} ms  {:>8.1} GOP/s  ({kernel})",
            ms[1],
            gops(ms[1])
        );
        println!("  {dtype} is x{:.2} the f32 speed", ms[0] / ms[1]);
    }
    Ok(())
}

/// Per-layer milliseconds, one column per model; with two models, also each layer's speed-up
/// (first / second) beside its MAC ratio, for the layers both have.
fn layer_table(
    dirs: &[std::path::PathBuf],
    profiles: &[Vec<pare::report::LayerTime>],
    batch: usize,
) -> String {
    use std::fmt::Write;
    let mut out = format!("\nper layer, pare's kernels, batch {batch} (median ms):\n");
    let pair = profiles.len() == 2;
    let _ = write!(out, "{:<24} {:<22}", "layer", "kernel");
    for d in dirs {
        let _ = write!(out, " {:>12}", short(d));
    }
    if pair {
        let _ = write!(out, " {:>9} {:>9}", "speed-up", "MAC ratio");
    }
    out.push('\n');
    for t in &profiles[0] {
        let others: Vec<Option<&pare::report::LayerTime>> = profiles
            .iter()
            .map(|p| p.iter().find(|o| o.name == t.name))
            .collect();
        // The kernel of the last model that has the layer (the compressed one of a pair).
        let kernel = others
            .iter()
            .rev()
            .find_map(|o| o.map(|o| o.kernel.as_str()))
            .unwrap_or("");
        let _ = write!(out, "{:<24} {kernel:<22}", t.name);
        for o in &others {
            let cell = o.map_or_else(|| "-".to_string(), |o| format!("{:.3}", o.ms));
            let _ = write!(out, " {cell:>12}");
        }
        if let Some(b) = others.get(1).copied().flatten().filter(|_| pair) {
            let _ = write!(out, " {:>8.2}x", t.ms / b.ms.max(1e-9));
            if b.macs > 0 {
                let _ = write!(out, " {:>8.2}x", t.macs as f64 / b.macs as f64);
            }
        }
        out.push('\n');
    }
    for (d, p) in dirs.iter().zip(profiles) {
        let _ = writeln!(
            out,
            "{}: layers sum to {:.2} ms",
            d.display(),
            p.iter().map(|t| t.ms).sum::<f64>()
        );
    }
    out
}

/// The last path component, for a column header.
fn short(d: &Path) -> String {
    d.file_name()
        .map_or_else(|| d.display().to_string(), |f| f.to_string_lossy().into_owned())
}
