//! Model constructors. Each returns an `ir::Graph`; [`ZooModel::init`] gives it the weights its
//! reference implementation starts from (PyTorch's defaults, except where the network's own code
//! re-initializes, as torchvision's SqueezeNet does). Parameter counts equal those of the same nets written in PyTorch
//! (`tests/reference/zoo_params.py` prints them; `tests/zoo.rs` compares).

use crate::ir::op::{
    Attention, AvgPool2d, ChannelShuffle, Concat, Conv2d, Dropout, LayerNorm, Linear, MaxPool2d, Parameter,
    Reshape, Select, Transpose,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ir::graph::ops::{bn, conv, conv_grouped, depthwise, linear, max_pool};
use crate::ir::model::normal;
use crate::ir::tensor::Tensor;
use crate::ir::{Graph, GraphBuilder, Model, Op};

/// A model of the zoo with its size options.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case", deny_unknown_fields)]
pub enum ZooModel {
    /// LeNet-300-100: 784-300-100-10 with ReLU.
    Lenet300,
    /// Caffe's LeNet-5 as used by Deep Compression: conv 20@5x5, max-pool, conv 50@5x5,
    /// max-pool, ip 500 + ReLU, ip 10 (431,080 parameters). Like Caffe, no ReLU after the convs.
    Lenet5,
    /// A ReLU MLP with the given hidden sizes and optional dropout after each hidden layer
    /// (Hinton's distillation teacher is `[1200, 1200]` with dropout).
    Mlp { hidden: Vec<usize>, dropout: f64 },
    /// A small VGG-style CNN with BatchNorm: [32, 32, M, 64, 64, M, 128, 128, M], fc 256 + BN1d, fc.
    Vgg,
    /// CIFAR-style ResNet (He et al. 2016, Sec. 4.2) with depth 6n+2, stages of 16/32/64
    /// channels, BN, residual adds; the shortcut where shape changes is a 1x1 conv + BN
    /// (option B), which keeps every channel prunable.
    Resnet { depth: usize },
    /// MobileNet-v1-style: a 3x3 stem, then depthwise-separable blocks (3x3 depthwise + BN +
    /// ReLU, 1x1 pointwise + BN + ReLU), global average pool, fc. `width` scales channels.
    Mobilenet { width: f32 },
    /// SqueezeNet (Iandola et al. 2016) for small images: a 3x3 stem of 64, max-pool, Fire
    /// modules (1x1 squeeze, then 1x1 and 3x3 expands concatenated) 16/64, 16/64, max-pool,
    /// 32/128, 32/128, and torchvision's classifier (1x1 conv to the classes, ReLU, global
    /// average pool). Biases and no BatchNorm, as in the paper; initialized as torchvision does
    /// (see [`ZooModel::init`]), without which the stack does not train.
    Squeezenet,
    /// ShuffleNet v1 (Zhang et al. 2018) with 3 groups for small images: a 3x3 stem of 24 +
    /// BN, then stages of 60, 120 and 240 channels (2, 4 and 2 units). A unit is a grouped 1x1
    /// to a quarter of its width + BN + ReLU, a channel shuffle, a 3x3 depthwise + BN, a grouped
    /// 1x1 + BN, added to the input (or, at a stage's first, stride-2 unit, concatenated with
    /// its 3x3 average pool), then ReLU. The first 1x1 of the network is not grouped (24
    /// channels are too few, as the paper notes). Global average pool, fc.
    Shufflenet,
    /// Xception (Chollet 2017) for small images: a 3x3 stem of 16, a stride-2 3x3 of 32 (each
    /// with BN and ReLU), then the entry flow's two blocks (32 -> 64 -> 128: two separable
    /// convolutions, each a 3x3 depthwise then a 1x1 and BN, a ReLU between and before the
    /// second block's first, a 3x3 stride-2 max-pool, added to a stride-2 1x1 + BN shortcut),
    /// two middle-flow blocks (three ReLU, separable convolution, BN, added to the input) at
    /// 128, then ReLU, global average pool, fc (157,594 parameters).
    Xception,
    /// A tiny Vision Transformer (Dosovitskiy et al. 2021): 7x7 patches embedded by a stride-7
    /// conv, a class token, learned position embeddings, 4 pre-norm blocks (LayerNorm,
    /// 4-head self-attention, LayerNorm, GELU MLP 128) of width 64, a final LayerNorm and a
    /// linear head on the class token. Names and layouts are those of
    /// `shared/reference/vit_reference.py` (139,018 parameters at 1x28x28).
    Vit,
}

/// The zoo ViT's sizes: patch side, width, heads, blocks, MLP width.
const VIT: (usize, usize, usize, usize, usize) = (7, 64, 4, 4, 128);

impl ZooModel {
    /// Parses a model name as the CLI takes it: `lenet300`, `lenet5`, `mlp` (sizes from
    /// `hidden`), `vgg`, `resnet20` / `resnet-56` / `resnet` (20), `mobilenet`.
    /// Parses `name`, `name:h1,h2,..` (hidden sizes of an `mlp`) or `mobilenet:W` (a width
    /// multiplier), as `--model`, `--student` and recipes name a model to build.
    pub fn parse_spec(spec: &str) -> Result<ZooModel> {
        match spec.split_once(':') {
            Some((name, w)) if matches!(ZooModel::parse(name, None, 0.0)?, ZooModel::Mobilenet { .. }) => {
                ZooModel::mobilenet(w.trim().parse::<f32>().unwrap_or(f32::NAN))
            }
            Some((name, h)) => {
                let sizes = h
                    .split(',')
                    .map(|x| x.trim().parse::<usize>())
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|_| {
                        Error::Config(format!(
                            "'{spec}': hidden sizes must be numbers, e.g. mlp:800,800"
                        ))
                    })?;
                ZooModel::parse(name, Some(&sizes), 0.0)
            }
            None => ZooModel::parse(spec, None, 0.0),
        }
    }

    pub fn parse(name: &str, hidden: Option<&[usize]>, dropout: f64) -> Result<ZooModel> {
        let n = name.to_ascii_lowercase().replace(['-', '_'], "");
        let m = match n.as_str() {
            "lenet300" | "lenet300100" => ZooModel::Lenet300,
            "lenet5" => ZooModel::Lenet5,
            "mlp" => ZooModel::Mlp {
                hidden: hidden.map(<[usize]>::to_vec).unwrap_or_else(|| vec![800, 800]),
                dropout,
            },
            "vgg" | "vggsmall" => ZooModel::Vgg,
            "mobilenet" | "mobilenetv1" => ZooModel::Mobilenet { width: 1.0 },
            "squeezenet" => ZooModel::Squeezenet,
            "shufflenet" | "shufflenetv1" => ZooModel::Shufflenet,
            "xception" => ZooModel::Xception,
            "resnet" => ZooModel::Resnet { depth: 20 },
            "vit" => ZooModel::Vit,
            _ => match n.strip_prefix("resnet").and_then(|d| d.parse().ok()) {
                Some(depth) => ZooModel::Resnet { depth },
                None => {
                    return Err(Error::Config(format!(
                        "unknown model '{name}' (known: {})",
                        catalog().iter().map(|m| m.label()).collect::<Vec<_>>().join(", ")
                    )))
                }
            },
        };
        // Hidden sizes and dropout belong to the MLP: given with another model they would be
        // silently ignored.
        if !matches!(m, ZooModel::Mlp { .. }) && (hidden.is_some() || dropout != 0.0) {
            return Err(Error::Config(format!(
                "--hidden and --dropout are for the mlp model, not {name}"
            )));
        }
        if let ZooModel::Mlp { hidden, .. } = &m {
            if hidden.is_empty() || hidden.contains(&0) {
                return Err(Error::Config(
                    "mlp hidden sizes must be positive, e.g. --hidden 800,800".into(),
                ));
            }
        }
        if !(0.0..1.0).contains(&dropout) {
            return Err(Error::Config(format!("dropout must be in [0, 1), got {dropout}")));
        }
        if let ZooModel::Resnet { depth } = m {
            if depth < 8 || (depth - 2) % 6 != 0 {
                return Err(Error::Config(format!(
                    "resnet depth must be 6n+2 with n >= 1 (8, 14, 20, 32, 56, ...), got {depth}"
                )));
            }
        }
        Ok(m)
    }

    /// MobileNet with its channels scaled by `width`, in (0, 4].
    pub fn mobilenet(width: f32) -> Result<ZooModel> {
        if !(width > 0.0 && width <= 4.0) {
            return Err(Error::Config(format!(
                "a MobileNet width multiplier must be in (0, 4], e.g. mobilenet:0.5; got {width}"
            )));
        }
        Ok(ZooModel::Mobilenet { width })
    }

    /// A short name for listings.
    pub fn label(&self) -> String {
        match self {
            ZooModel::Lenet300 => "lenet300".into(),
            ZooModel::Lenet5 => "lenet5".into(),
            ZooModel::Mlp { hidden, dropout } => {
                let h: Vec<String> = hidden.iter().map(|h| h.to_string()).collect();
                let d = if *dropout > 0.0 {
                    format!(" dropout {dropout}")
                } else {
                    String::new()
                };
                format!("mlp {}{d}", h.join("-"))
            }
            ZooModel::Vgg => "vgg".into(),
            ZooModel::Resnet { depth } => format!("resnet{depth}"),
            ZooModel::Mobilenet { width } if *width == 1.0 => "mobilenet".into(),
            ZooModel::Mobilenet { width } => format!("mobilenet x{width}"),
            ZooModel::Vit => "vit".into(),
            ZooModel::Squeezenet => "squeezenet".into(),
            ZooModel::Shufflenet => "shufflenet".into(),
            ZooModel::Xception => "xception".into(),
        }
    }

    /// Initial weights for `graph` (built by [`ZooModel::build`]) from `seed`: PyTorch's
    /// defaults ([`Model::init`]), and for SqueezeNet torchvision's scheme on top. Its ten
    /// convolutions have no BatchNorm, and under the default bound of 1/sqrt(fan_in) the signal
    /// shrinks layer by layer until the classifier's ReLU passes nothing and the loss stays at
    /// ln 10 (measured in pare and in PyTorch alike); torchvision draws every convolution from
    /// kaiming-uniform with gain sqrt(2) (bound sqrt(6 / fan_in)), the classifier from
    /// N(0, 0.01), and zeroes the biases. `bench/models.py` does the same.
    pub fn init(&self, graph: Graph, seed: u64) -> Result<Model> {
        let mut model = Model::init(graph, seed)?;
        if *self != ZooModel::Squeezenet {
            return Ok(model);
        }
        // A stream apart from the default draw's, so the other parameters stay as they were.
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_50EE_2E7E);
        let convs: Vec<(String, usize)> = model
            .graph
            .nodes
            .iter()
            .filter_map(|n| match n.op {
                Op::Conv2d(Conv2d {
                    in_channels,
                    kernel_size,
                    groups,
                    ..
                }) => Some((
                    n.name.clone(),
                    in_channels / groups * kernel_size[0] * kernel_size[1],
                )),
                _ => None,
            })
            .collect();
        for (node, fan_in) in convs {
            let w = model
                .params
                .get_mut(&format!("{node}.weight"))
                .expect("a conv declares a weight");
            let data = if node == "classifier" {
                normal(&mut rng, w.len(), 0.01)
            } else {
                let bound = (6.0 / fan_in as f32).sqrt();
                (0..w.len()).map(|_| rng.random_range(-bound..bound)).collect()
            };
            *w = Tensor::from_vec(w.shape().to_vec(), data);
            if let Some(b) = model.params.get_mut(&format!("{node}.bias")) {
                *b = Tensor::zeros(b.shape().to_vec());
            }
        }
        Ok(model)
    }

    /// The graph for `input` = `[C, H, W]` images and `classes` outputs.
    pub fn build(&self, input: &[usize], classes: usize) -> Result<Graph> {
        let &[c, h, w] = input else {
            return Err(Error::Config(format!(
                "zoo models take [C, H, W] inputs, got {input:?}"
            )));
        };
        let mut b = GraphBuilder::new(input.to_vec());
        match self {
            ZooModel::Lenet300 => mlp(&mut b, c * h * w, &[300, 100], 0.0, classes),
            ZooModel::Mlp { hidden, dropout } => mlp(&mut b, c * h * w, hidden, *dropout, classes),
            ZooModel::Lenet5 => {
                b.then("conv1", conv(c, 20, 5, 1, 0, true));
                b.then("pool1", max_pool(2, 2));
                b.then("conv2", conv(20, 50, 5, 1, 0, true));
                b.then("pool2", max_pool(2, 2));
                b.then("flatten", Op::Flatten);
                let n: usize = b.last_shape()?.iter().product();
                b.then("fc1", linear(n, 500));
                b.then("relu1", Op::Relu);
                b.then("fc2", linear(500, classes));
            }
            ZooModel::Vgg => {
                let mut ch = c;
                let mut i = 0;
                for (stage, &out) in [32, 64, 128].iter().enumerate() {
                    for _ in 0..2 {
                        i += 1;
                        b.then(format!("conv{i}"), conv(ch, out, 3, 1, 1, false));
                        b.then(format!("bn{i}"), bn(out));
                        b.then(format!("relu{i}"), Op::Relu);
                        ch = out;
                    }
                    b.then(format!("pool{}", stage + 1), max_pool(2, 2));
                }
                b.then("flatten", Op::Flatten);
                let n: usize = b.last_shape()?.iter().product();
                b.then(
                    "fc1",
                    Op::Linear(Linear {
                        in_features: n,
                        out_features: 256,
                        bias: false,
                    }),
                );
                b.then("bn_fc1", bn(256));
                b.then("relu_fc1", Op::Relu);
                b.then("fc2", linear(256, classes));
            }
            ZooModel::Resnet { depth } => resnet(&mut b, c, (depth - 2) / 6, classes),
            ZooModel::Mobilenet { width } => mobilenet(&mut b, c, *width, classes),
            ZooModel::Vit => vit(&mut b, [c, h, w], classes)?,
            ZooModel::Squeezenet => squeezenet(&mut b, c, classes),
            ZooModel::Shufflenet => shufflenet(&mut b, c, classes),
            ZooModel::Xception => xception(&mut b, c, classes),
        }
        b.finish()
    }
}

fn mlp(b: &mut GraphBuilder, inputs: usize, hidden: &[usize], dropout: f64, classes: usize) {
    b.then("flatten", Op::Flatten);
    let mut n = inputs;
    for (i, &h) in hidden.iter().enumerate() {
        b.then(format!("fc{}", i + 1), linear(n, h));
        b.then(format!("relu{}", i + 1), Op::Relu);
        if dropout > 0.0 {
            b.then(format!("drop{}", i + 1), Op::Dropout(Dropout { p: dropout }));
        }
        n = h;
    }
    b.then(format!("fc{}", hidden.len() + 1), linear(n, classes));
}

fn resnet(b: &mut GraphBuilder, c: usize, n: usize, classes: usize) {
    b.then("conv1", conv(c, 16, 3, 1, 1, false));
    b.then("bn1", bn(16));
    let mut x = b.then("relu", Op::Relu);
    let mut ch = 16;
    for (s, &out) in [16, 32, 64].iter().enumerate() {
        for blk in 0..n {
            let stride = if s > 0 && blk == 0 { 2 } else { 1 };
            let p = format!("layer{}.{blk}", s + 1);
            b.add(format!("{p}.conv1"), conv(ch, out, 3, stride, 1, false), &[&x]);
            b.then(format!("{p}.bn1"), bn(out));
            b.then(format!("{p}.relu1"), Op::Relu);
            b.then(format!("{p}.conv2"), conv(out, out, 3, 1, 1, false));
            let main = b.then(format!("{p}.bn2"), bn(out));
            let short = if stride != 1 || ch != out {
                b.add(
                    format!("{p}.shortcut.0"),
                    conv(ch, out, 1, stride, 0, false),
                    &[&x],
                );
                b.then(format!("{p}.shortcut.1"), bn(out))
            } else {
                x.clone()
            };
            b.add(format!("{p}.add"), Op::Add, &[&main, &short]);
            x = b.then(format!("{p}.relu2"), Op::Relu);
            ch = out;
        }
    }
    b.then("avgpool", Op::GlobalAvgPool);
    b.then("flatten", Op::Flatten);
    b.then("fc", linear(ch, classes));
}

fn mobilenet(b: &mut GraphBuilder, c: usize, width: f32, classes: usize) {
    let w = |n: usize| ((n as f32 * width).round() as usize).max(1);
    let mut ch = w(32);
    b.then("conv1", conv(c, ch, 3, 1, 1, false));
    b.then("bn1", bn(ch));
    b.then("relu1", Op::Relu);
    for (i, &(out, stride)) in [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1)]
        .iter()
        .enumerate()
    {
        let out = w(out);
        let p = format!("blocks.{i}");
        b.then(format!("{p}.dw"), depthwise(ch, 3, stride, 1));
        b.then(format!("{p}.dw_bn"), bn(ch));
        b.then(format!("{p}.dw_relu"), Op::Relu);
        b.then(format!("{p}.pw"), conv(ch, out, 1, 1, 0, false));
        b.then(format!("{p}.pw_bn"), bn(out));
        b.then(format!("{p}.pw_relu"), Op::Relu);
        ch = out;
    }
    b.then("avgpool", Op::GlobalAvgPool);
    b.then("flatten", Op::Flatten);
    b.then("fc", linear(ch, classes));
}

fn squeezenet(b: &mut GraphBuilder, c: usize, classes: usize) {
    b.then("conv1", conv(c, 64, 3, 1, 1, true));
    b.then("relu1", Op::Relu);
    b.then("pool1", max_pool(2, 2));
    let mut ch = 64;
    for (i, (squeeze, expand)) in [(16, 64), (16, 64), (32, 128), (32, 128)].into_iter().enumerate() {
        let p = format!("fire{}", i + 2);
        b.then(format!("{p}.squeeze"), conv(ch, squeeze, 1, 1, 0, true));
        let s = b.then(format!("{p}.squeeze_relu"), Op::Relu);
        b.add(
            format!("{p}.expand1x1"),
            conv(squeeze, expand, 1, 1, 0, true),
            &[&s],
        );
        let e1 = b.then(format!("{p}.expand1x1_relu"), Op::Relu);
        b.add(
            format!("{p}.expand3x3"),
            conv(squeeze, expand, 3, 1, 1, true),
            &[&s],
        );
        let e3 = b.then(format!("{p}.expand3x3_relu"), Op::Relu);
        b.add(format!("{p}.cat"), Op::Concat(Concat { axis: 0 }), &[&e1, &e3]);
        ch = 2 * expand;
        if i == 1 {
            b.then("pool2", max_pool(2, 2));
        }
    }
    b.then("classifier", conv(ch, classes, 1, 1, 0, true));
    b.then("classifier_relu", Op::Relu);
    b.then("avgpool", Op::GlobalAvgPool);
    b.then("flatten", Op::Flatten);
}

fn shufflenet(b: &mut GraphBuilder, c: usize, classes: usize) {
    const G: usize = 3;
    b.then("conv1", conv(c, 24, 3, 1, 1, false));
    b.then("bn1", bn(24));
    let mut x = b.then("relu1", Op::Relu);
    let mut ch = 24;
    for (s, (out, units)) in [(60, 2), (120, 4), (240, 2)].into_iter().enumerate() {
        for u in 0..units {
            let p = format!("stage{}.{u}", s + 2);
            let first = u == 0;
            let mid = out / 4;
            let branch_out = if first { out - ch } else { out };
            let g1 = if s == 0 && first { 1 } else { G };
            b.add(
                format!("{p}.gconv1"),
                conv_grouped(ch, mid, 1, 0, 1, g1, false),
                &[&x],
            );
            b.then(format!("{p}.bn1"), bn(mid));
            b.then(format!("{p}.relu1"), Op::Relu);
            b.then(
                format!("{p}.shuffle"),
                Op::ChannelShuffle(ChannelShuffle { groups: G }),
            );
            b.then(
                format!("{p}.dwconv"),
                depthwise(mid, 3, if first { 2 } else { 1 }, 1),
            );
            b.then(format!("{p}.bn2"), bn(mid));
            b.then(
                format!("{p}.gconv2"),
                conv_grouped(mid, branch_out, 1, 0, 1, G, false),
            );
            let branch = b.then(format!("{p}.bn3"), bn(branch_out));
            if first {
                let pool = Op::AvgPool2d(AvgPool2d {
                    kernel_size: [3, 3],
                    stride: [2, 2],
                    padding: [1, 1],
                    count_include_pad: true,
                    ceil_mode: false,
                });
                let short = b.add(format!("{p}.shortcut"), pool, &[&x]);
                b.add(
                    format!("{p}.cat"),
                    Op::Concat(Concat { axis: 0 }),
                    &[&branch, &short],
                );
            } else {
                b.add(format!("{p}.add"), Op::Add, &[&branch, &x]);
            }
            x = b.then(format!("{p}.relu"), Op::Relu);
            ch = out;
        }
    }
    b.then("avgpool", Op::GlobalAvgPool);
    b.then("flatten", Op::Flatten);
    b.then("fc", linear(ch, classes));
}

fn xception(b: &mut GraphBuilder, c: usize, classes: usize) {
    b.then("conv1", conv(c, 16, 3, 1, 1, false));
    b.then("bn1", bn(16));
    b.then("relu1", Op::Relu);
    b.then("conv2", conv(16, 32, 3, 2, 1, false));
    b.then("bn2", bn(32));
    let mut x = b.then("relu2", Op::Relu);
    // A separable convolution + BN after `from`: depthwise 3x3, pointwise 1x1, both unbiased.
    let sep = |b: &mut GraphBuilder, p: &str, from: &str, i: usize, o: usize| -> String {
        b.add(format!("{p}.dw"), depthwise(i, 3, 1, 1), &[from]);
        b.then(format!("{p}.pw"), conv(i, o, 1, 1, 0, false));
        b.then(format!("{p}.bn"), bn(o))
    };
    let mut ch = 32;
    for (k, out) in [64, 128].into_iter().enumerate() {
        let p = format!("block{}", k + 1);
        // The first block reads the stem's ReLU; the later ones start with their own.
        let input = if k == 0 {
            x.clone()
        } else {
            b.add(format!("{p}.relu0"), Op::Relu, &[&x])
        };
        let y = sep(b, &format!("{p}.sep1"), &input, ch, out);
        let r = b.add(format!("{p}.relu1"), Op::Relu, &[&y]);
        sep(b, &format!("{p}.sep2"), &r, out, out);
        let pool = b.then(
            format!("{p}.pool"),
            Op::MaxPool2d(MaxPool2d {
                kernel_size: [3, 3],
                stride: [2, 2],
                padding: [1, 1],
                ceil_mode: false,
            }),
        );
        b.add(format!("{p}.skip"), conv(ch, out, 1, 2, 0, false), &[&x]);
        let skip = b.then(format!("{p}.skip_bn"), bn(out));
        x = b.add(format!("{p}.add"), Op::Add, &[&pool, &skip]);
        ch = out;
    }
    for k in 0..2 {
        let p = format!("middle{}", k + 1);
        let mut y = x.clone();
        for j in 1..=3 {
            let r = b.add(format!("{p}.relu{j}"), Op::Relu, &[&y]);
            y = sep(b, &format!("{p}.sep{j}"), &r, ch, ch);
        }
        x = b.add(format!("{p}.add"), Op::Add, &[&y, &x]);
    }
    b.add("relu_out", Op::Relu, &[&x]);
    b.then("avgpool", Op::GlobalAvgPool);
    b.then("flatten", Op::Flatten);
    b.then("fc", linear(ch, classes));
}

fn vit(b: &mut GraphBuilder, [c, h, w]: [usize; 3], classes: usize) -> Result<()> {
    let (patch, dim, heads, depth, mlp) = VIT;
    if h % patch != 0 || w % patch != 0 {
        return Err(Error::Config(format!(
            "vit cuts {patch}x{patch} patches: the input's height and width must be multiples of {patch}, got {h}x{w}"
        )));
    }
    let tokens = (h / patch) * (w / patch);
    b.then("patch", conv(c, dim, patch, patch, 0, true));
    b.then(
        "patch_tokens",
        Op::Reshape(Reshape {
            shape: vec![dim, tokens],
        }),
    );
    let seq = b.then("patch_seq", Op::Transpose(Transpose { perm: vec![1, 0] }));
    let cls = b.add("cls", Op::Parameter(Parameter { shape: vec![1, dim] }), &[]);
    let cat = b.add("tokens", Op::Concat(Concat { axis: 0 }), &[&cls, &seq]);
    let pos = b.add(
        "pos",
        Op::Parameter(Parameter {
            shape: vec![tokens + 1, dim],
        }),
        &[],
    );
    let mut x = b.add("embed", Op::Add, &[&cat, &pos]);
    let ln = |dim| Op::LayerNorm(LayerNorm { dim, eps: 1e-5 });
    for i in 0..depth {
        let p = format!("blocks.{i}");
        b.add(format!("{p}.n1"), ln(dim), &[&x]);
        let att = b.then(
            format!("{p}.att"),
            Op::Attention(Attention {
                dim,
                heads,
                head_dim: None,
            }),
        );
        x = b.add(format!("{p}.add1"), Op::Add, &[&x, &att]);
        b.then(format!("{p}.n2"), ln(dim));
        b.then(format!("{p}.fc1"), linear(dim, mlp));
        b.then(format!("{p}.gelu"), Op::Gelu);
        let y = b.then(format!("{p}.fc2"), linear(mlp, dim));
        x = b.add(format!("{p}.add2"), Op::Add, &[&x, &y]);
    }
    b.add("norm", ln(dim), &[&x]);
    b.then("cls_out", Op::Select(Select { axis: 0, index: 0 }));
    b.then("head", linear(dim, classes));
    Ok(())
}

/// The models `pare zoo` lists.
pub fn catalog() -> Vec<ZooModel> {
    vec![
        ZooModel::Lenet300,
        ZooModel::Lenet5,
        ZooModel::Mlp {
            hidden: vec![1200, 1200],
            dropout: 0.5,
        },
        ZooModel::Mlp {
            hidden: vec![800, 800],
            dropout: 0.0,
        },
        ZooModel::Vgg,
        ZooModel::Resnet { depth: 8 },
        ZooModel::Resnet { depth: 20 },
        ZooModel::Resnet { depth: 56 },
        ZooModel::Mobilenet { width: 1.0 },
        ZooModel::Squeezenet,
        ZooModel::Shufflenet,
        ZooModel::Xception,
        ZooModel::Vit,
    ]
}
