//! Gradients of every op against central finite differences, through the whole engine path
//! (parameter upload, graph execution, loss, backward, download).

use pare::exec::{train_step, LossTerm};
use pare::ir::graph::ops::{avg_pool2d, bn, conv, conv_grouped, depthwise, linear, max_pool, max_pool2d};
use pare::ir::op::{
    Attention, ChannelShuffle, Clip, Concat, Dropout, Embedding, LayerNorm, Mean, Pad, Parameter, Reshape,
    Scale, Select, Slice, Softmax, Transpose,
};
use pare::ir::{GraphBuilder, Model, Op, Reparams, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const CLASSES: usize = 3;

fn loss(model: &Model, x: &Tensor, labels: &[u32]) -> (f32, pare::ir::Params) {
    let terms = [LossTerm::CrossEntropy {
        labels: labels.to_vec(),
        weight: 1.0,
    }];
    let out = train_step(model, x, &terms, &Reparams::new(), &[], 42).unwrap();
    (out.loss, out.grads)
}

/// Builds `body` between a `[2, 6, 6]` input and a flatten + linear head, then compares the
/// analytic gradient of every trainable parameter with central differences at a few entries.
fn grad_check(body: impl FnOnce(&mut GraphBuilder)) {
    grad_check_named("", body)
}

fn grad_check_named(what: &str, body: impl FnOnce(&mut GraphBuilder)) {
    let mut b = GraphBuilder::new(vec![2, 6, 6]);
    body(&mut b);
    if b.last_shape().unwrap().len() > 1 {
        b.then("head_flatten", Op::Flatten);
    }
    let n: usize = b.last_shape().unwrap().iter().product();
    b.then("head", linear(n, CLASSES));
    let mut model = Model::init(b.finish().unwrap(), 3).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let x = Tensor::from_vec(
        vec![4, 2, 6, 6],
        (0..288).map(|_| rng.random_range(-1.0..1.0)).collect(),
    );
    let labels: Vec<u32> = (0..4).map(|i| i % CLASSES as u32).collect();
    check_gradients(
        &mut model,
        &x,
        &labels,
        1e-4,
        |len| (0..len.min(6)).map(|k| (k * 7919) % len).collect(),
        what,
    );
}

/// Compares the analytic gradient of every trainable parameter with central differences at
/// the entries `entries(len)` picks.
fn check_gradients(
    model: &mut Model,
    x: &Tensor,
    labels: &[u32],
    eps: f32,
    entries: impl Fn(usize) -> Vec<usize>,
    what: &str,
) {
    let (_, grads) = loss(model, x, labels);
    for name in model.trainable() {
        for i in entries(model.params[&name].len()) {
            let orig = model.params[&name].data()[i];
            model.params.get_mut(&name).unwrap().data_mut()[i] = orig + eps;
            let (lp, _) = loss(model, x, labels);
            model.params.get_mut(&name).unwrap().data_mut()[i] = orig - eps;
            let (lm, _) = loss(model, x, labels);
            model.params.get_mut(&name).unwrap().data_mut()[i] = orig;
            let numeric = (lp - lm) / (2.0 * eps);
            let analytic = grads[&name].data()[i];
            assert!(
                (numeric - analytic).abs() <= 2e-3 + 5e-2 * numeric.abs(),
                "{what} {name}[{i}]: analytic {analytic}, numeric {numeric}"
            );
        }
    }
}

#[test]
fn linear_and_flatten() {
    grad_check(|b| {
        b.then("flatten", Op::Flatten);
        b.then("fc", linear(72, 5));
    });
}

#[test]
fn conv_dense_strided_dilated() {
    grad_check(|b| {
        b.then("c1", conv(2, 3, 3, 1, 1, true));
        b.then("c2", conv(3, 4, 3, 2, 1, false));
    });
    grad_check(|b| {
        b.then("dil", conv_grouped(2, 3, 3, 1, 2, 1, true));
    });
}

#[test]
fn conv_depthwise_and_grouped() {
    grad_check(|b| {
        b.then("c1", conv(2, 4, 1, 1, 0, false));
        b.then("dw", depthwise(4, 3, 1, 1));
    });
    grad_check(|b| {
        b.then("grouped", conv_grouped(2, 4, 3, 0, 1, 2, true));
    });
}

#[test]
fn batch_norm_2d_and_1d_in_train_mode() {
    grad_check(|b| {
        b.then("c", conv(2, 3, 3, 1, 1, false));
        b.then("bn", bn(3));
    });
    grad_check(|b| {
        b.then("flatten", Op::Flatten);
        b.then("fc", linear(72, 6));
        b.then("bn1d", bn(6));
        b.then("relu", Op::Relu);
    });
}

#[test]
fn activations() {
    for act in [
        Op::Relu,
        Op::Relu6,
        Op::Gelu,
        Op::Sigmoid,
        Op::Tanh,
        Op::HardSwish,
        Op::Identity,
    ] {
        grad_check_named(act.kind(), |b| {
            b.then("c", conv(2, 3, 3, 1, 1, true));
            b.then("act", act.clone());
        });
    }
}

#[test]
fn pools() {
    grad_check(|b| {
        b.then("c", conv(2, 3, 1, 1, 0, true));
        b.then("mp", max_pool(2, 2));
    });
    // Ceil mode: the partial last window gets its share of the gradient.
    for ceil_mode in [false, true] {
        grad_check(|b| {
            b.then("c", conv(2, 3, 1, 1, 0, true));
            b.then("mp", max_pool2d(3, 2, 1, ceil_mode));
        });
        for count_include_pad in [true, false] {
            grad_check(|b| {
                b.then("c", conv(2, 3, 1, 1, 0, true));
                b.then("ap", avg_pool2d(3, 2, 1, count_include_pad, ceil_mode));
            });
        }
    }
    grad_check(|b| {
        b.then("c", conv(2, 3, 3, 1, 1, true));
        b.then("gap", Op::GlobalAvgPool);
    });
}

#[test]
fn add_concat_dropout() {
    grad_check(|b| {
        let a = b.add("a", conv(2, 3, 3, 1, 1, true), &["input"]);
        let c = b.add("b", conv(2, 3, 1, 1, 0, false), &["input"]);
        b.add("sum", Op::Add, &[&a, &c]);
    });
    grad_check(|b| {
        let a = b.add("a", conv(2, 3, 3, 1, 1, true), &["input"]);
        let c = b.add("b", conv(2, 2, 1, 1, 0, false), &["input"]);
        b.add("cat", Op::Concat(Concat { axis: 0 }), &[&a, &c]);
    });
    grad_check(|b| {
        b.then("flatten", Op::Flatten);
        b.then("fc", linear(72, 8));
        b.then("drop", Op::Dropout(Dropout { p: 0.5 }));
    });
}

/// The `[2, 6, 6]` input read as a sequence of 6 tokens of 12 features.
fn tokens(b: &mut GraphBuilder) -> String {
    b.then("seq", Op::Reshape(Reshape { shape: vec![6, 12] }))
}

#[test]
fn layer_norm_and_linear_on_tokens() {
    grad_check(|b| {
        tokens(b);
        b.then("ln", Op::LayerNorm(LayerNorm { dim: 12, eps: 1e-5 }));
        b.then("fc", linear(12, 8));
        b.then("act", Op::Silu);
    });
}

#[test]
fn absolute_value() {
    // Inputs and weights keep pre-activations away from 0, where |x| has no derivative.
    grad_check(|b| {
        b.then("conv", conv(2, 3, 3, 1, 1, true));
        b.then("abs", Op::Abs);
    });
}

#[test]
fn error_function() {
    grad_check(|b| {
        b.then("conv", conv(2, 3, 3, 1, 1, true));
        b.then("erf", Op::Erf);
    });
}

#[test]
fn multihead_attention() {
    // PyTorch's heads (3 of 4 features in a width of 12), and pruned ones (2 of 5).
    for (heads, head_dim) in [(3, None), (2, Some(5))] {
        grad_check(|b| {
            tokens(b);
            b.then(
                "att",
                Op::Attention(Attention {
                    dim: 12,
                    heads,
                    head_dim,
                }),
            );
        });
    }
}

#[test]
fn matmul_softmax_transpose_scale() {
    grad_check(|b| {
        let s = tokens(b);
        let q = b.add("q", linear(12, 4), &[&s]);
        b.add("k", linear(12, 4), &[&s]);
        let kt = b.then("kt", Op::Transpose(Transpose { perm: vec![1, 0] }));
        b.add("scores", Op::MatMul, &[&q, &kt]);
        b.then("scaled", Op::Scale(Scale { factor: 0.5 }));
        let p = b.then("p", Op::Softmax(Softmax { axis: -1 }));
        b.add("ctx", Op::MatMul, &[&p, &s]);
    });
}

#[test]
fn broadcast_arithmetic_with_parameters() {
    grad_check(|b| {
        let s = tokens(b);
        let g = b.add("gain", Op::Parameter(Parameter { shape: vec![12] }), &[]);
        let m = b.add("mul", Op::Mul, &[&s, &g]);
        let o = b.add("offset", Op::Parameter(Parameter { shape: vec![6, 1] }), &[]);
        let d = b.add("sub", Op::Sub, &[&m, &o]);
        b.add("den_p", Op::Parameter(Parameter { shape: vec![1, 12] }), &[]);
        let den = b.then("den", Op::Sigmoid);
        b.add("div", Op::Div, &[&d, &den]);
    });
}

#[test]
fn slice_select_concat_mean_clip() {
    grad_check(|b| {
        let s = tokens(b);
        let x = b.add("fc", linear(12, 12), &[&s]);
        let a = b.add(
            "left",
            Op::Slice(Slice {
                axis: 1,
                start: 2,
                end: 10,
            }),
            &[&x],
        );
        let c = b.add(
            "right",
            Op::Slice(Slice {
                axis: -1,
                start: 0,
                end: 4,
            }),
            &[&x],
        );
        let cat = b.add("cat", Op::Concat(Concat { axis: -1 }), &[&a, &c]);
        let first = b.add("first", Op::Select(Select { axis: 0, index: 1 }), &[&cat]);
        let mean = b.add(
            "mean",
            Op::Mean(Mean {
                axes: vec![0],
                keepdim: false,
            }),
            &[&cat],
        );
        let sum = b.add("sum", Op::Add, &[&first, &mean]);
        b.add("clip", Op::Clip(Clip { min: -0.6, max: 0.6 }), &[&sum]);
    });
}

#[test]
fn pad_and_channel_shuffle() {
    grad_check(|b| {
        b.then("c1", conv(2, 4, 3, 1, 1, true));
        b.then(
            "pad",
            Op::Pad(Pad {
                pads: vec![[0, 0], [1, 2], [2, 0]],
                value: 0.25,
            }),
        );
        b.then("shuffle", Op::ChannelShuffle(ChannelShuffle { groups: 2 }));
        b.then("c2", conv_grouped(4, 4, 3, 0, 1, 2, true));
    });
}

/// An embedding table's gradient (rows gathered by integer ids; repeated ids accumulate) and
/// those of the layers after it, on a graph whose input is ids.
#[test]
fn embedding_of_integer_ids() {
    let mut b = GraphBuilder::new(vec![5]);
    b.input_dtype(pare::ir::DType::Index);
    b.then(
        "emb",
        Op::Embedding(Embedding {
            num_embeddings: 8,
            embedding_dim: 4,
        }),
    );
    b.then("ln", Op::LayerNorm(LayerNorm { dim: 4, eps: 1e-5 }));
    b.then("flat", Op::Reshape(Reshape { shape: vec![20] }));
    b.then("head", linear(20, CLASSES));
    let mut model = Model::init(b.finish().unwrap(), 3).unwrap();
    // Ids 0..7 with repeats (3 appears four times) over four samples; row 7 is never read.
    let ids: Vec<f32> = [1, 3, 3, 0, 6, 2, 3, 5, 4, 4, 0, 1, 2, 5, 6, 6, 0, 3, 1, 2]
        .iter()
        .map(|&i| i as f32)
        .collect();
    let x = Tensor::from_vec(vec![4, 5], ids);
    let labels: Vec<u32> = vec![0, 1, 2, 1];
    check_gradients(
        &mut model,
        &x,
        &labels,
        1e-3,
        |len| (0..len).collect(),
        "embedding",
    );
    let (_, grads) = loss(&model, &x, &labels);
    // The row no id selects gets exactly no gradient.
    assert!(grads["emb.weight"].data()[7 * 4..].iter().all(|g| *g == 0.0));
}
