//! `pare export` (a model as an ONNX file, optionally with a test case of its outputs) and
//! `pare import` (an ONNX file as a model directory).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use pare::ir::graph::Normalize;
use pare::ir::{io, Model, Tensor};
use pare::onnx::Int8Form;
use pare::zoo::ZooModel;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::commands::load_model;

#[derive(Args)]
pub struct ExportArgs {
    /// Model directory, .pare file or .onnx file.
    #[arg(required_unless_present = "zoo", conflicts_with = "zoo")]
    pub model: Option<PathBuf>,
    /// Export a freshly initialized zoo model instead (e.g. resnet20, mobilenet:0.5,
    /// mlp:300,100) for 1x28x28 inputs and 10 classes, with Fashion-MNIST's normalization.
    #[arg(long)]
    pub zoo: Option<String>,
    /// Seed of --zoo's initial weights.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The ONNX file to write (opset 17).
    #[arg(long, value_name = "FILE")]
    pub onnx: PathBuf,
    /// Export this named output as the main one (an early exit, an auxiliary head); every
    /// output of the graph is an output of the file.
    #[arg(long)]
    pub output: Option<String>,
    /// Quantized export in QDQ form: the layers pare runs in int8 (an 8-bit fake quantizer
    /// before, weights on an integer grid, the next fake quantizer after) get int8 weights with
    /// one scale per output channel and a DequantizeLinear, so onnxruntime runs its integer
    /// kernels; a BatchNorm between such a layer and its ReLU is folded into the scales.
    #[arg(long, conflicts_with = "integer_ops")]
    pub qdq: bool,
    /// Quantized export as integer ops: the same layers as --qdq written as ConvInteger /
    /// MatMulInteger on uint8 codes, their int32 sums scaled back to f32, for runtimes that run
    /// integer ops but do not fuse QDQ patterns.
    #[arg(long)]
    pub integer_ops: bool,
    /// Fold BatchNorm into the preceding convolution or Linear layer first.
    #[arg(long)]
    pub fold_bn: bool,
    /// Also write a test case: a batch of uniform [0, 1) inputs and pare's outputs on it, in
    /// ONNX's test-data layout (DIR/test_data_set_0/input_0.pb, output_K.pb).
    #[arg(long, value_name = "DIR")]
    pub test_data: Option<PathBuf>,
    /// Samples in the test case's batch.
    #[arg(long, default_value_t = 8)]
    pub test_batch: usize,
    #[arg(long)]
    pub json: bool,
}

pub fn export(a: ExportArgs) -> Result<()> {
    let mut model = match (&a.model, &a.zoo) {
        (Some(path), _) => load_model(path)?,
        (None, Some(spec)) => {
            let zm = ZooModel::parse_spec(spec)?;
            let mut graph = zm.build(&[1, 28, 28], 10)?;
            // Fashion-MNIST's pixel mean and deviation (what `pare train` sets from the data).
            graph.input.normalize = Normalize::scalar(0.2860, 0.3530);
            zm.init(graph, a.seed)?
        }
        (None, None) => bail!("name a model, or --zoo NAME"),
    };
    if let Some(out) = &a.output {
        let graph = model
            .graph
            .select_output(out)
            .with_context(|| format!("--output {out}"))?;
        model = Model::new(graph, model.params)?;
    }
    if a.fold_bn {
        model = pare::fuse::fold_batch_norm(&model)?;
    }
    let int8 = match (a.qdq, a.integer_ops) {
        (true, _) => Int8Form::Qdq,
        (_, true) => Int8Form::IntegerOps,
        _ => Int8Form::F32,
    };
    let options = pare::onnx::Options { int8 };
    let proto = pare::onnx::to_onnx_with(&model, options)?;
    let graph = proto.graph.as_ref().expect("an exported model has a graph");
    let (nodes, inits) = (graph.node.len(), graph.initializer.len());
    let int8_layers = graph
        .node
        .iter()
        .filter(|n| {
            n.op_type == "DequantizeLinear" && n.output[0].ends_with(".weight")
                || matches!(n.op_type.as_str(), "ConvInteger" | "MatMulInteger")
        })
        .count();
    io::write_atomic(&a.onnx, &prost::Message::encode_to_vec(&proto))?;
    let bytes = std::fs::metadata(&a.onnx).map(|m| m.len()).unwrap_or(0);
    if let Some(dir) = &a.test_data {
        if a.test_batch == 0 {
            bail!("--test-batch must be at least 1");
        }
        let x = test_input(&model, a.test_batch);
        // The file normalizes its raw input itself; pare's engines take it normalized.
        let mut normalized = x.clone();
        let sample = &model.graph.input.shape;
        model.graph.input.normalize.apply(sample, normalized.data_mut());
        let outs = pare::native::compile(&model)?.run_all(&normalized)?;
        let named: Vec<(String, Tensor)> = model
            .graph
            .outputs()
            .iter()
            .map(|s| s.to_string())
            .zip(outs)
            .collect();
        pare::onnx::write_test_data(dir, model.graph.input.dtype, &x, &named)?;
    }
    if a.json {
        let rep = json!({
            "file": a.onnx, "bytes": bytes, "onnx_nodes": nodes, "initializers": inits,
            "parameters": model.num_params(), "macs": model.macs(), "outputs": model.graph.outputs(),
            "int8_layers": int8_layers,
        });
        println!("{}", serde_json::to_string_pretty(&rep)?);
    } else {
        println!(
            "wrote {} ({bytes} bytes, opset {}): {nodes} ONNX nodes, {inits} initializers, {} parameters, {} MACs; outputs {}",
            a.onnx.display(),
            pare::onnx::export::OPSET,
            model.num_params(),
            model.macs(),
            model.graph.outputs().join(", ")
        );
        if a.qdq {
            println!("{int8_layers} layers with int8 weights (QDQ)");
        }
        if a.integer_ops {
            println!("{int8_layers} layers as integer ops (ConvInteger / MatMulInteger)");
        }
        if let Some(dir) = &a.test_data {
            println!("test case: {}", dir.join("test_data_set_0").display());
        }
    }
    Ok(())
}

/// A seeded batch the model accepts: uniform [0, 1) values, or ids below the smallest table.
fn test_input(model: &Model, n: usize) -> Tensor {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut shape = vec![n];
    shape.extend(&model.graph.input.shape);
    let len = shape.iter().product();
    let data = match model.graph.input.dtype {
        pare::ir::graph::DType::F32 => (0..len).map(|_| rng.random_range(0.0..1.0)).collect(),
        pare::ir::graph::DType::Index => {
            let rows = model.graph.id_rows().max(1);
            (0..len).map(|_| rng.random_range(0..rows) as f32).collect()
        }
    };
    Tensor::from_vec(shape, data)
}

#[derive(Args)]
pub struct ImportArgs {
    /// The ONNX file (opset 13 or newer; one input whose first axis is the batch).
    pub file: PathBuf,
    /// Output model directory (arch.json + weights.safetensors).
    #[arg(long)]
    pub out: PathBuf,
    /// The input normalization the model was trained with, on pixels in [0, 1], when it is
    /// not in the file: `MEAN,STD` (one pair for all channels) or the means of every channel
    /// then their deviations (`0.485,0.456,0.406,0.229,0.224,0.225` for torchvision's ImageNet
    /// models). It becomes the model's, so `pare eval` and training read raw images and an
    /// export normalizes them itself.
    #[arg(long, value_name = "MEANS,STDS", value_delimiter = ',')]
    pub normalize: Option<Vec<f32>>,
    #[arg(long)]
    pub json: bool,
}

pub fn import(a: ImportArgs) -> Result<()> {
    io::check_output_dir(&a.out, &[&a.file])?;
    let mut model = pare::onnx::load(&a.file)?;
    if let Some(v) = &a.normalize {
        if v.is_empty() || v.len() % 2 != 0 {
            bail!("--normalize takes means then deviations, as many of each: MEAN,STD or M1,..,MC,S1,..,SC (got {} numbers)", v.len());
        }
        let found = &model.graph.input.normalize;
        if !found.is_identity() {
            bail!(
                "{}: the file normalizes its input itself ({found}); --normalize would normalize it twice",
                a.file.display(),
            );
        }
        let (mean, std) = v.split_at(v.len() / 2);
        let mut graph = model.graph.clone();
        graph.input.normalize = Normalize {
            mean: mean.to_vec(),
            std: std.to_vec(),
        };
        model = Model::new(graph, model.params).with_context(|| format!("--normalize {mean:?} {std:?}"))?;
    }
    io::save(&model, &a.out)?;
    let input = &model.graph.input;
    if a.json {
        let rep = json!({
            "dir": a.out, "nodes": model.graph.nodes.len(), "parameters": model.num_params(),
            "macs": model.macs(), "input": input.shape, "normalize": input.normalize,
            "outputs": model.graph.outputs(),
        });
        println!("{}", serde_json::to_string_pretty(&rep)?);
    } else {
        println!(
            "wrote {}: {} nodes, {} parameters, {} MACs; input {:?} (normalized by {}), outputs {}",
            a.out.display(),
            model.graph.nodes.len(),
            model.num_params(),
            model.macs(),
            input.shape,
            input.normalize,
            model.graph.outputs().join(", ")
        );
    }
    Ok(())
}
