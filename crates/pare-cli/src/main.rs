//! `pare`: the command-line front end. Parses arguments (clap), shows progress (indicatif),
//! prints results, and reports errors with their cause chain (anyhow). All the work is done by
//! the `pare` library.

mod binarize_cmd;
mod commands;
mod compress_cmd;
mod data_args;
mod distill_cmd;
mod exits_cmd;
mod factorize_cmd;
mod finetune;
mod hash_cmd;
mod lock;
mod onnx_cmd;
mod progress;
mod prune_cmd;
mod supermask_cmd;
mod tie_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use data_args::DataArgs;

#[derive(Parser)]
#[command(
    name = "pare",
    version,
    about = "Make neural networks smaller and faster, and prove it with measured numbers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the model zoo with parameters and MACs at 1x28x28.
    Zoo {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Train a zoo model on a data set (Fashion-MNIST unless --data names another; the model takes
    /// its input shape and classes from the data) and write a model directory.
    Train(TrainArgs),
    /// Evaluate a model on the test split of the data set (--data; Fashion-MNIST by default).
    Eval {
        /// Model directory (arch.json + weights.safetensors), compressed model (model.pare) or
        /// ONNX file (imported).
        dir: PathBuf,
        #[command(flatten)]
        data: DataArgs,
        #[arg(long, default_value_t = 1000)]
        batch_size: usize,
        /// Which of the graph's named outputs to evaluate (an early exit, an auxiliary head);
        /// the main output by default.
        #[arg(long)]
        output: Option<String>,
        /// Evaluate on pare's native inference engine (integer and binary kernels where the
        /// model's values allow them) instead of the training engine, and name the kernels.
        #[arg(long)]
        native: bool,
        /// Also write each test image's predicted class, one per line in test-set order (to
        /// compare with another runtime's predictions: bench/onnx_check.py eval).
        #[arg(long, value_name = "FILE")]
        predictions: Option<PathBuf>,
        /// Print a JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run a compression recipe (TOML): prune, fine-tune, cluster or quantize, Huffman-code,
    /// write model.pare, and report accuracy after every stage and every byte of the file.
    Compress(compress_cmd::CompressArgs),
    /// Uniform k-bit quantization of a model directory: post-training (weights, optionally
    /// activations with a calibration observer) or quantization-aware training.
    Quantize(compress_cmd::QuantizeArgs),
    /// Subnetworks of an untrained network: large-final and learned (straight-through) supermasks
    /// next to the dense network, at one density.
    Supermask(supermask_cmd::SupermaskArgs),
    /// Knowledge distillation into a student (kd, fitnet, at, rkd, sp, dml, ban, takd, refinery),
    /// reported next to the same student trained alone with the same budget.
    Distill(distill_cmd::DistillArgs),
    /// Show a model directory layer by layer: op, output shape, parameters, MACs, sparsity.
    Info {
        dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Prune a model directory (unstructured masks or structured channel removal), fine-tune,
    /// and report accuracy, parameters, MACs and latency before and after.
    Prune(prune_cmd::PruneArgs),
    /// Prune each layer alone at several ratios and plot accuracy against ratio.
    Sensitivity(prune_cmd::SensitivityArgs),
    /// Low-rank factorization of Linear layers by truncated SVD (one layer becomes two) and of
    /// convolutions by spatial SVD or Tucker-2, optional fine-tuning, and a before/after report
    /// with measured latency.
    Factorize(factorize_cmd::FactorizeArgs),
    /// Cross-layer tying (ALBERT): identical blocks compute with one parameter set, stored
    /// once; optional fine-tuning and a before/after report with the weights file's size.
    Tie(tie_cmd::TieArgs),
    /// HashedNets on a trained model: Linear layers keep 1/F of their weights as shared values
    /// read through a hash of each position (fitted to the trained weights), optional
    /// fine-tuning and a before/after report with the weights file's size.
    Hash(hash_cmd::HashArgs),
    /// Binary networks (BinaryConnect, BNN, XNOR-Net) from a trained model or a fresh zoo
    /// model, reported beside the same network in float trained with the same budget.
    Binarize(binarize_cmd::BinarizeArgs),
    /// Early exits: classifier heads grafted onto chosen layers, trained, thresholds chosen on
    /// validation data for a target accuracy or MAC budget, and the saving measured (MACs and
    /// latency) with the accuracy-MACs curve of every exit rule.
    Exits(exits_cmd::ExitsArgs),
    /// Lottery ticket experiment: iterative magnitude pruning with rewinding, and the random
    /// re-initialization control.
    Lottery(prune_cmd::LotteryArgs),
    /// Write a model as an ONNX file (opset 17) that onnxruntime and other ONNX runtimes run,
    /// optionally with a test case of pare's outputs.
    Export(onnx_cmd::ExportArgs),
    /// Read an ONNX model (e.g. from torch.onnx) into a model directory that every pare
    /// command takes.
    Import(onnx_cmd::ImportArgs),
    /// Measure performance.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// CPU inference latency (median ms at batch 1 and 64) of model directories or `.pare`
    /// files, in one run.
    Latency {
        dirs: Vec<PathBuf>,
        #[arg(long, default_value_t = 30)]
        reps: usize,
        #[arg(long)]
        json: bool,
        /// Also time each layer of pare's kernels at this batch size (e.g. 64); with two
        /// directories, each layer's speed-up beside its MAC ratio.
        #[arg(long, value_name = "BATCH")]
        layers: Option<usize>,
    },
    /// One Linear layer's time at batch M (K inputs, N outputs) in a weight form, beside the
    /// f32 layer in the same run: milliseconds, GOP/s (2 M K N operations) and the ratio.
    Gemm {
        #[arg(long, default_value_t = 64)]
        m: usize,
        #[arg(long, default_value_t = 1024)]
        k: usize,
        #[arg(long, default_value_t = 1024)]
        n: usize,
        /// f32, int8 (8-bit activations times 7-bit weights, exact i32 sums), int4 (4-bit
        /// weights, two to a byte, unpacked in registers) or binary (XNOR + popcount on
        /// bit-packed signs).
        #[arg(long, default_value = "binary")]
        dtype: String,
        #[arg(long, default_value_t = 50)]
        reps: usize,
        #[arg(long)]
        json: bool,
    },
    /// Seconds per training epoch and images/s on the full training split (Fashion-MNIST by default).
    Train {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long, default_value_t = 1)]
        epochs: usize,
        #[arg(long, default_value_t = 128)]
        batch_size: usize,
        #[arg(long, default_value_t = 0.01)]
        lr: f32,
        #[command(flatten)]
        data: DataArgs,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Clone)]
struct ModelArgs {
    /// Zoo model: lenet300, lenet5, mlp, vgg, resnet20 (resnet8/14/32/56), mobilenet,
    /// squeezenet, shufflenet, xception, vit.
    #[arg(long)]
    model: String,
    /// Width multiplier of --model mobilenet, e.g. 0.5.
    #[arg(long)]
    width: Option<f32>,
    /// Hidden sizes for --model mlp, e.g. 1200,1200.
    #[arg(long, value_delimiter = ',')]
    hidden: Option<Vec<usize>>,
    /// Dropout after each hidden layer of --model mlp.
    #[arg(long, default_value_t = 0.0)]
    dropout: f64,
}

#[derive(Clone, Copy, ValueEnum)]
enum OptimizerArg {
    Sgd,
    Adam,
    Adamw,
}

#[derive(Clone, Copy, ValueEnum)]
enum ScheduleArg {
    Constant,
    Step,
    Cosine,
}

#[derive(Args)]
struct TrainArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[arg(long)]
    epochs: usize,
    /// Output model directory.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// Learning rate [default: 0.01 for sgd, 0.001 for adam/adamw].
    #[arg(long)]
    lr: Option<f32>,
    #[arg(long, value_enum, default_value = "sgd")]
    optimizer: OptimizerArg,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    momentum: f32,
    #[arg(long)]
    nesterov: bool,
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f32,
    #[arg(long, value_enum, default_value = "constant")]
    schedule: ScheduleArg,
    /// For --schedule step: multiply the rate by --gamma every this many epochs.
    #[arg(long, default_value_t = 10)]
    step_epochs: usize,
    #[arg(long, default_value_t = 0.1)]
    gamma: f32,
    /// Linear warm-up over this many epochs.
    #[arg(long, default_value_t = 0)]
    warmup_epochs: usize,
    /// Training images held out for validation, e.g. 5000 (seeded split). The default, 0,
    /// trains on all 60,000 images like the usual Fashion-MNIST protocol.
    #[arg(long, default_value_t = 0)]
    val: usize,
    /// Random-crop augmentation: pad by this many pixels, then crop back (0: off).
    #[arg(long, default_value_t = 0)]
    crop_padding: usize,
    /// Random horizontal flips.
    #[arg(long)]
    hflip: bool,
    /// Network Slimming: L1 penalty of this strength on every BatchNorm scale (e.g. 1e-4), so
    /// that `pare prune --criterion bn` finds channels to remove.
    #[arg(long, default_value_t = 0.0)]
    slimming: f32,
    /// HashedNets: every Linear layer's weights drawn from 1/F as many shared values through
    /// a hash of their position, trained in that form (e.g. 8).
    #[arg(long, value_name = "F")]
    hashed: Option<f64>,
    /// Cross-layer tying (ALBERT): these blocks (node-name prefixes, e.g.
    /// blocks.0,blocks.1,blocks.2,blocks.3) compute with the first one's parameters, trained
    /// and stored once.
    #[arg(long, value_delimiter = ',', value_name = "BLOCKS")]
    tie: Vec<String>,
    /// With --tie: tie the blocks' BatchNorm and LayerNorm layers too, as ALBERT does (tied
    /// BatchNorms keep running statistics mixed over the blocks' depths).
    #[arg(long)]
    tie_norms: bool,
    /// Continue an interrupted run from OUT/checkpoint.safetensors.
    #[arg(long)]
    resume: bool,
}

/// Signal dispositions a command-line tool wants, set before any other thread exists.
///
/// - SIGPIPE back to its default: output piped into a reader that stops early
///   (`pare info DIR | head`) ends the process quietly, as it does for other tools (Rust ignores
///   SIGPIPE, so every `println!` after the reader left would panic).
/// - SIGXFSZ ignored: a write past the file-size limit (`ulimit -f`) then fails with EFBIG,
///   which `write_atomic` reports with the file's name after removing its temporary file,
///   instead of the signal killing the process silently and leaving the temporary behind.
fn set_signal_dispositions() {
    #[cfg(unix)]
    // SAFETY: called first thing in `main`, before any other thread exists; SIG_DFL and
    // SIG_IGN are valid dispositions for these signals.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

fn main() -> ExitCode {
    set_signal_dispositions();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Zoo { json } => commands::zoo(json),
        Command::Train(args) => commands::train(args),
        Command::Eval {
            dir,
            data,
            batch_size,
            output,
            native,
            predictions,
            json,
        } => commands::eval(
            &dir,
            &data,
            batch_size,
            output.as_deref(),
            native,
            predictions.as_deref(),
            json,
        ),
        Command::Info { dir, json } => commands::info(&dir, json),
        Command::Prune(args) => prune_cmd::prune(args),
        Command::Compress(args) => compress_cmd::compress(args),
        Command::Distill(args) => distill_cmd::distill(args),
        Command::Supermask(args) => supermask_cmd::supermask(args),
        Command::Quantize(args) => compress_cmd::quantize(args),
        Command::Sensitivity(args) => prune_cmd::sensitivity(args),
        Command::Factorize(args) => factorize_cmd::factorize_cmd(args),
        Command::Tie(args) => tie_cmd::tie_cmd(args),
        Command::Hash(args) => hash_cmd::hash_cmd(args),
        Command::Binarize(args) => binarize_cmd::binarize_cmd(args),
        Command::Exits(args) => exits_cmd::exits_cmd(args),
        Command::Lottery(args) => prune_cmd::lottery(args),
        Command::Export(args) => onnx_cmd::export(args),
        Command::Import(args) => onnx_cmd::import(args),
        Command::Bench {
            what:
                BenchCommand::Latency {
                    dirs,
                    reps,
                    json,
                    layers,
                },
        } => commands::bench_latency(&dirs, reps, json, layers),
        Command::Bench {
            what:
                BenchCommand::Gemm {
                    m,
                    k,
                    n,
                    dtype,
                    reps,
                    json,
                },
        } => commands::bench_gemm(m, k, n, &dtype, reps, json),
        Command::Bench {
            what:
                BenchCommand::Train {
                    model,
                    epochs,
                    batch_size,
                    lr,
                    data,
                    json,
                },
        } => commands::bench_train(&model, epochs, batch_size, lr, &data, json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A cause whose words the message already holds (an OS error after its path) is
            // not repeated.
            let mut shown = e.to_string();
            eprintln!("error: {shown}");
            for cause in e.chain().skip(1).map(|c| c.to_string()) {
                if !shown.contains(&cause) {
                    eprintln!("  caused by: {cause}");
                    shown.push_str(&cause);
                }
            }
            ExitCode::FAILURE
        }
    }
}
