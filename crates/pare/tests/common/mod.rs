//! Small generated data and models shared by the integration tests.
#![allow(dead_code)]

use pare::data::InMemory;
use pare::ir::graph::ops::{bn, conv, linear};
use pare::ir::op::{Dropout, MaxPool2d};
use pare::ir::{GraphBuilder, Model, Op, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// 240 images `[1, 8, 8]`, 3 classes: the class sets which third of the rows is bright.
pub fn toy_data() -> InMemory {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let (mut px, mut labels) = (Vec::new(), Vec::new());
    for i in 0..240u32 {
        let c = i % 3;
        for y in 0..8 {
            for _ in 0..8 {
                let bright = (y * 3 / 8) as u32 == c;
                px.push(if bright { 0.7 } else { 0.1 } + rng.random_range(0.0..0.3));
            }
        }
        labels.push(c);
    }
    InMemory::new(vec![1, 8, 8], 3, px, labels).unwrap()
}

/// conv + BN + ReLU + max-pool + dropout + linear: every stateful piece of the loop.
pub fn toy_model(seed: u64) -> Model {
    let mut b = GraphBuilder::new(vec![1, 8, 8]);
    b.then("conv", conv(1, 4, 3, 1, 1, false));
    b.then("bn", bn(4));
    b.then("relu", Op::Relu);
    b.then(
        "pool",
        Op::MaxPool2d(MaxPool2d {
            kernel_size: [2, 2],
            stride: [2, 2],
            padding: [0, 0],
            ceil_mode: false,
        }),
    );
    b.then("flatten", Op::Flatten);
    b.then("drop", Op::Dropout(Dropout { p: 0.2 }));
    b.then("fc", linear(64, 3));
    Model::init(b.finish().unwrap(), seed).unwrap()
}

/// A zoo model by name for 1x28x28 inputs and 10 classes, initialized with seed 4.
pub fn zoo(name: &str) -> Model {
    let zm = pare::zoo::ZooModel::parse(name, None, 0.0).unwrap();
    Model::init(zm.build(&[1, 28, 28], 10).unwrap(), 4).unwrap()
}

/// The largest absolute difference between two tensors of the same length.
pub fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    a.data()
        .iter()
        .zip(b.data())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// `n` images `[1, 28, 28]` of a fixed pattern, labels 0..9 in turn: data for pipeline tests
/// on the zoo's 28x28 models.
pub fn pattern_set(n: usize) -> pare::data::InMemory {
    let images: Vec<f32> = (0..n * 784).map(|i| ((i * 37) % 101) as f32 / 101.0).collect();
    let labels: Vec<u32> = (0..n as u32).map(|i| i % 10).collect();
    pare::data::InMemory::new(vec![1, 28, 28], 10, images, labels).unwrap()
}

/// Running statistics away from their defaults, so BatchNorm's four tensors are all checked.
pub fn perturb_batch_norms(model: &mut Model) {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for (name, t) in model.params.iter_mut() {
        if name.ends_with("running_mean") || name.ends_with("running_var") {
            for v in t.data_mut() {
                *v = rng.random_range(0.5..1.5);
            }
        }
    }
}

/// A zoo model for 1x28x28 inputs and 10 classes as an export test wants it: seeded weights,
/// Fashion-MNIST's input normalization, BatchNorm statistics away from their defaults.
pub fn zoo_for_export(zm: &pare::zoo::ZooModel, seed: u64) -> Model {
    let mut g = zm.build(&[1, 28, 28], 10).unwrap();
    g.input.normalize = pare::ir::graph::Normalize::scalar(0.286, 0.353);
    let mut model = zm.init(g, seed).unwrap();
    perturb_batch_norms(&mut model);
    model
}

/// `model` with `weight_bits` per-channel symmetric weights (baked) and 8-bit asymmetric
/// activations in `scope`, calibrated by min/max on `batches` batches of 8 random inputs of
/// `shape` in [-1.5, 1.5).
pub fn quantized(
    model: &Model,
    weight_bits: u32,
    shape: &[usize],
    batches: usize,
    scope: pare::quant::ActScope,
) -> Model {
    let act = pare::quant::ActQuant {
        bits: 8,
        symmetric: false,
        observer: pare::quant::Observer::MinMax,
        scope,
    };
    quantized_with(model, weight_bits, shape, batches, act)
}

/// [`quantized`] with the activation quantizers `act` asks for.
pub fn quantized_with(
    model: &Model,
    weight_bits: u32,
    shape: &[usize],
    batches: usize,
    act: pare::quant::ActQuant,
) -> Model {
    use pare::quant::{calibrate_activations, weight_reparams, LayerBits};
    let bits = LayerBits::uniform(weight_bits).resolve(model, 2..=16).unwrap();
    let baked = pare::ir::reparam::bake(model, &weight_reparams(model, &bits, true, true, false));
    let calib: Vec<pare::data::Batch> = (0..batches)
        .map(|i| {
            let mut rng = ChaCha8Rng::seed_from_u64(100 + i as u64);
            let full = [&[8], shape].concat();
            let n = full.iter().product();
            pare::data::Batch {
                x: Tensor::from_vec(full, (0..n).map(|_| rng.random_range(-1.5..1.5)).collect()),
                labels: vec![0; 8],
                indices: (0..8).collect(),
                view: Some(0),
            }
        })
        .collect();
    calibrate_activations(&baked, &pare::ir::Reparams::new(), &calib, act).unwrap()
}

/// The index of each row's largest value (the predicted classes of a `[N, classes]` output).
pub fn argmax(t: &Tensor) -> Vec<usize> {
    t.data()
        .chunks(t.shape()[1])
        .map(|r| (0..r.len()).max_by(|&a, &b| r[a].total_cmp(&r[b])).unwrap())
        .collect()
}

/// A tensor of `shape` with elements uniform in [-scale, scale), seeded.
pub fn random(shape: Vec<usize>, seed: u64, scale: f32) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = shape.iter().product();
    Tensor::from_vec(shape, (0..n).map(|_| rng.random_range(-scale..scale)).collect())
}

/// The native engine's output on `x` against the training engine's, within 1e-4 of its
/// largest value.
pub fn assert_native_close(model: &Model, x: &Tensor, what: &str) {
    let want = pare::exec::infer(model, x, &pare::ir::Reparams::new(), &[])
        .unwrap()
        .output;
    let got = pare::native::infer(model, x).unwrap();
    assert_eq!(got.shape(), want.shape(), "{what}");
    let scale = want.data().iter().fold(1e-3f32, |m, v| m.max(v.abs()));
    let worst = max_diff(&got, &want);
    assert!(
        worst <= 1e-4 * scale,
        "{what}: max |native - engine| = {worst} (scale {scale})"
    );
}

/// A small RGB model (conv, global pool, flatten) for `[3, 8, 8]` inputs that normalizes each
/// channel with torchvision's ImageNet statistics.
pub fn rgb_model_imagenet_normalized() -> Model {
    let mut b = GraphBuilder::new(vec![3, 8, 8]);
    b.then("conv", conv(3, 4, 3, 1, 1, true));
    b.then("pool", Op::GlobalAvgPool);
    b.then("flat", Op::Flatten);
    let mut g = b.finish().unwrap();
    g.input.normalize = pare::ir::graph::Normalize {
        mean: vec![0.485, 0.456, 0.406],
        std: vec![0.229, 0.224, 0.225],
    };
    Model::init(g, 2).unwrap()
}

/// The names of a model's structured-pruning families (producers joined with '+').
pub fn families(m: &Model) -> Vec<String> {
    let d = pare::prune::DepGraph::build(m).unwrap();
    (0..d.families.len()).map(|f| d.family_name(m, f)).collect()
}
