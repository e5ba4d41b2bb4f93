//! Each op's local rules: output shape, parameter count, MACs, axis mapping, and clear errors.

use pare::ir::graph::ops::{bn, conv, conv_grouped, depthwise, linear, max_pool};
use pare::ir::op::{
    Attention, AvgPool2d, ChannelShuffle, Clip, Concat, Conv2d, Dropout, Embedding, LayerNorm, Linear,
    MaxPool2d, Mean, Pad, Parameter, Reshape, Scale, Select, Slice, Softmax, Transpose,
};
use pare::ir::Op;

/// Checks one op: output shape, parameters and MACs for the given inputs.
fn check(op: Op, inputs: &[&[usize]], out: &[usize], params: usize, macs: u64) {
    let got = op.output_shape(inputs).unwrap_or_else(|e| panic!("{op:?}: {e}"));
    assert_eq!(got, out, "{op:?} output shape");
    assert_eq!(op.num_params(), params, "{op:?} params");
    assert_eq!(op.macs(inputs, &got), macs, "{op:?} MACs");
}

fn error(op: Op, inputs: &[&[usize]], needle: &str) {
    let e = op.output_shape(inputs).expect_err("should be rejected");
    assert!(e.contains(needle), "error '{e}' should mention '{needle}'");
}

#[test]
fn linear_rules() {
    check(linear(784, 300), &[&[784]], &[300], 784 * 300 + 300, 784 * 300);
    let nobias = Op::Linear(Linear {
        in_features: 4,
        out_features: 3,
        bias: false,
    });
    check(nobias, &[&[4]], &[3], 12, 12);
    error(linear(784, 300), &[&[1, 28, 28]], "last axis is 784");
}

#[test]
fn conv_rules() {
    check(
        conv(1, 20, 5, 1, 0, true),
        &[&[1, 28, 28]],
        &[20, 24, 24],
        520,
        20 * 24 * 24 * 25,
    );
    check(
        conv(16, 32, 3, 2, 1, false),
        &[&[16, 28, 28]],
        &[32, 14, 14],
        4608,
        32 * 14 * 14 * 144,
    );
    let dilated = conv_grouped(2, 4, 3, 0, 2, 1, false);
    check(dilated, &[&[2, 10, 10]], &[4, 6, 6], 72, 4 * 36 * 18);
    check(
        depthwise(32, 3, 2, 1),
        &[&[32, 28, 28]],
        &[32, 14, 14],
        288,
        32 * 196 * 9,
    );
    error(
        conv(3, 8, 3, 1, 1, true),
        &[&[1, 28, 28]],
        "expects 3 input channels",
    );
    error(conv(1, 8, 3, 1, 0, true), &[&[1, 2, 2]], "does not fit");
    let bad_groups = conv_grouped(6, 4, 1, 0, 1, 4, false);
    error(bad_groups, &[&[6, 4, 4]], "groups=4 must divide");
}

#[test]
fn normalization_and_pooling_rules() {
    check(bn(16), &[&[16, 7, 7]], &[16, 7, 7], 32, 0);
    check(bn(256), &[&[256]], &[256], 512, 0);
    error(bn(16), &[&[8, 7, 7]], "expects [16]");
    check(max_pool(2, 2), &[&[20, 24, 24]], &[20, 12, 12], 0, 0);
    let overlapping = Op::AvgPool2d(AvgPool2d {
        kernel_size: [3, 3],
        stride: [2, 2],
        padding: [1, 1],
        count_include_pad: false,
        ceil_mode: false,
    });
    check(overlapping, &[&[8, 28, 28]], &[8, 14, 14], 0, 0);
    let too_much_pad = Op::MaxPool2d(MaxPool2d {
        kernel_size: [2, 2],
        stride: [2, 2],
        padding: [2, 2],
        ceil_mode: false,
    });
    error(too_much_pad, &[&[1, 8, 8]], "at most half");
    // Ceil mode: 8 -> 4 windows of 3 at stride 2 (floor: 3); 5 padded to 7 -> 3 windows of 2
    // at stride 2, the fourth dropped since it would start in the right padding.
    let ceil = |k, p| {
        Op::MaxPool2d(MaxPool2d {
            kernel_size: [k, k],
            stride: [2, 2],
            padding: [p, p],
            ceil_mode: true,
        })
    };
    check(ceil(3, 0), &[&[2, 8, 5]], &[2, 4, 2], 0, 0);
    check(ceil(2, 1), &[&[2, 5, 6]], &[2, 3, 4], 0, 0);
    check(Op::GlobalAvgPool, &[&[64, 7, 7]], &[64, 1, 1], 0, 0);
    check(Op::Flatten, &[&[50, 4, 4]], &[800], 0, 0);
}

#[test]
fn multi_input_rules() {
    check(Op::Add, &[&[16, 8, 8], &[16, 8, 8]], &[16, 8, 8], 0, 0);
    error(Op::Add, &[&[16, 8, 8], &[32, 8, 8]], "equal input shapes");
    check(
        Op::Concat(Concat { axis: 0 }),
        &[&[16, 8, 8], &[8, 8, 8], &[4, 8, 8]],
        &[28, 8, 8],
        0,
        0,
    );
    error(
        Op::Concat(Concat { axis: 0 }),
        &[&[16, 8, 8], &[16, 4, 4]],
        "equal but for axis 0",
    );
    error(Op::Add, &[&[4]], "at least 2");
    error(Op::Relu, &[&[4], &[4]], "takes 1 input");
}

#[test]
fn elementwise_rules() {
    for op in [
        Op::Relu,
        Op::Relu6,
        Op::Gelu,
        Op::Sigmoid,
        Op::Tanh,
        Op::HardSwish,
        Op::Identity,
        Op::Dropout(Dropout { p: 0.5 }),
    ] {
        check(op, &[&[3, 5, 5]], &[3, 5, 5], 0, 0);
    }
    error(Op::Dropout(Dropout { p: 1.0 }), &[&[4]], "dropout p");
}

#[test]
fn sequence_and_tensor_rules() {
    let ln = Op::LayerNorm(LayerNorm { dim: 64, eps: 1e-5 });
    check(ln.clone(), &[&[17, 64]], &[17, 64], 128, 0);
    error(ln, &[&[17, 32]], "last axis of 64");
    // A Linear acts on the last axis of any rank: one dot product per token.
    check(
        linear(64, 128),
        &[&[17, 64]],
        &[17, 128],
        64 * 128 + 128,
        17 * 64 * 128,
    );
    error(linear(64, 128), &[&[64, 17]], "last axis is 64");
    check(
        Op::MatMul,
        &[&[4, 17, 16], &[4, 16, 17]],
        &[4, 17, 17],
        0,
        4 * 17 * 17 * 16,
    );
    error(Op::MatMul, &[&[4, 17, 16], &[2, 16, 17]], "equal leading axes");
    error(Op::MatMul, &[&[16], &[16]], "[.., m, k]");
    check(
        Op::Softmax(Softmax { axis: -1 }),
        &[&[4, 17, 17]],
        &[4, 17, 17],
        0,
        0,
    );
    error(Op::Softmax(Softmax { axis: 3 }), &[&[4, 17, 17]], "out of range");
    check(
        Op::Reshape(Reshape { shape: vec![64, 16] }),
        &[&[64, 4, 4]],
        &[64, 16],
        0,
        0,
    );
    error(
        Op::Reshape(Reshape { shape: vec![64, 15] }),
        &[&[64, 4, 4]],
        "1024 elements",
    );
    check(
        Op::Transpose(Transpose { perm: vec![1, 0] }),
        &[&[64, 16]],
        &[16, 64],
        0,
        0,
    );
    error(
        Op::Transpose(Transpose { perm: vec![0, 0] }),
        &[&[64, 16]],
        "not a permutation",
    );
    check(Op::Mul, &[&[17, 64], &[64]], &[17, 64], 0, 0);
    check(Op::Div, &[&[17, 1], &[1, 64]], &[17, 64], 0, 0);
    error(Op::Sub, &[&[17, 64], &[17, 32]], "do not broadcast");
    check(
        Op::Slice(Slice {
            axis: 1,
            start: 64,
            end: 128,
        }),
        &[&[17, 192]],
        &[17, 64],
        0,
        0,
    );
    error(
        Op::Slice(Slice {
            axis: 1,
            start: 64,
            end: 200,
        }),
        &[&[17, 192]],
        "outside axis 1",
    );
    check(
        Op::Select(Select { axis: 0, index: 0 }),
        &[&[17, 64]],
        &[64],
        0,
        0,
    );
    error(
        Op::Select(Select { axis: 0, index: 17 }),
        &[&[17, 64]],
        "position 17",
    );
    error(Op::Select(Select { axis: 0, index: 0 }), &[&[64]], "rank-2");
    check(
        Op::Concat(Concat { axis: 0 }),
        &[&[1, 64], &[16, 64]],
        &[17, 64],
        0,
        0,
    );
    check(
        Op::Concat(Concat { axis: -1 }),
        &[&[17, 32], &[17, 32]],
        &[17, 64],
        0,
        0,
    );
    check(
        Op::Mean(Mean {
            axes: vec![0],
            keepdim: false,
        }),
        &[&[17, 64]],
        &[64],
        0,
        0,
    );
    check(
        Op::Mean(Mean {
            axes: vec![-1],
            keepdim: true,
        }),
        &[&[17, 64]],
        &[17, 1],
        0,
        0,
    );
    error(
        Op::Mean(Mean {
            axes: vec![0, 1],
            keepdim: false,
        }),
        &[&[17, 64]],
        "keep at least one",
    );
    check(Op::Clip(Clip { min: -1.0, max: 1.0 }), &[&[8]], &[8], 0, 0);
    error(Op::Clip(Clip { min: 1.0, max: -1.0 }), &[&[8]], "min <= max");
    check(Op::Silu, &[&[8]], &[8], 0, 0);
    check(Op::Sign, &[&[3, 5, 5]], &[3, 5, 5], 0, 0);
    check(Op::Abs, &[&[8]], &[8], 0, 0);
    check(Op::Erf, &[&[2, 8]], &[2, 8], 0, 0);
    check(Op::Scale(Scale { factor: 0.25 }), &[&[8]], &[8], 0, 0);
    check(
        Op::Parameter(Parameter { shape: vec![17, 64] }),
        &[],
        &[17, 64],
        17 * 64,
        0,
    );
    error(
        Op::Parameter(Parameter { shape: vec![1, 64] }),
        &[&[1, 64]],
        "takes 0 input",
    );
    let att = Op::Attention(Attention {
        dim: 64,
        heads: 4,
        head_dim: None,
    });
    check(
        att.clone(),
        &[&[17, 64]],
        &[17, 64],
        4 * 64 * 64 + 4 * 64,
        4 * 17 * 64 * 64 + 2 * 17 * 17 * 64,
    );
    error(
        Op::Attention(Attention {
            dim: 64,
            heads: 5,
            head_dim: None,
        }),
        &[&[17, 64]],
        "must divide",
    );
    // Two heads of 16 kept from four: inner width 32.
    let pruned = Op::Attention(Attention {
        dim: 64,
        heads: 2,
        head_dim: Some(16),
    });
    check(
        pruned.clone(),
        &[&[17, 64]],
        &[17, 64],
        4 * 64 * 32 + 3 * 32 + 64,
        4 * 17 * 64 * 32 + 2 * 17 * 17 * 32,
    );
    assert_eq!(
        pruned.head_slices(&[1]),
        ((16..32).chain(48..64).chain(80..96).collect(), (16..32).collect())
    );
    error(att, &[&[64]], "[tokens, 64]");
}

#[test]
fn a_graph_with_an_empty_axis_is_rejected() {
    // Zero features or channels pass each op's own arithmetic; the graph refuses the value.
    for op in [linear(784, 0), conv(1, 0, 3, 1, 1, true)] {
        let mut b = pare::ir::GraphBuilder::new(vec![1, 28, 28]);
        if matches!(op, Op::Linear(Linear { .. })) {
            b.then("flatten", Op::Flatten);
        }
        b.then("layer", op);
        let e = b.finish().unwrap_err().to_string();
        assert!(e.contains("layer") && e.contains("all positive"), "{e}");
    }
}

#[test]
fn pad_and_shuffle_rules() {
    let pad = |pads: Vec<[usize; 2]>| Op::Pad(Pad { pads, value: 0.0 });
    check(pad(vec![[0, 0], [1, 2], [3, 0]]), &[&[4, 5, 6]], &[4, 8, 9], 0, 0);
    let nan = Op::Pad(Pad {
        pads: vec![[1, 1]],
        value: f32::NAN,
    });
    error(nan, &[&[4]], "must be a finite number");
    // A zero value is left out of arch.json; another is written.
    let json = |value| {
        serde_json::to_string(&Op::Pad(Pad {
            pads: vec![[1, 0]],
            value,
        }))
        .unwrap()
    };
    assert_eq!(json(0.0), r#"{"op":"pad","pads":[[1,0]]}"#);
    assert_eq!(json(-2.5), r#"{"op":"pad","pads":[[1,0]],"value":-2.5}"#);
    error(pad(vec![[1, 1]]), &[&[4, 5]], "one [before, after] pair per axis");
    error(pad(vec![[usize::MAX, 1]]), &[&[4]], "overflows");
    check(
        Op::ChannelShuffle(ChannelShuffle { groups: 2 }),
        &[&[8, 4, 4]],
        &[8, 4, 4],
        0,
        0,
    );
    error(
        Op::ChannelShuffle(ChannelShuffle { groups: 3 }),
        &[&[8, 4, 4]],
        "multiple",
    );
}

#[test]
fn embedding_rules_and_integer_inputs() {
    use pare::ir::{DType, GraphBuilder, Model, Tensor};
    let emb = |n, d| {
        Op::Embedding(Embedding {
            num_embeddings: n,
            embedding_dim: d,
        })
    };
    // Ids of any rank up to four gain a feature axis; a lookup is no multiply-accumulate.
    check(emb(30522, 384), &[&[128]], &[128, 384], 30522 * 384, 0);
    check(emb(10, 8), &[&[2, 3]], &[2, 3, 8], 80, 0);
    error(emb(0, 8), &[&[4]], "must be positive");
    error(emb(1 << 25, 8), &[&[4]], "at most");
    error(emb(10, 8), &[&[1, 2, 3, 4, 5]], "too many axes");

    // Only an embedding reads ids, and it reads nothing else.
    let graph = |dtype: DType, first: Op| {
        let mut b = GraphBuilder::new([4]);
        b.input_dtype(dtype);
        b.then("first", first);
        b.finish()
    };
    let e = graph(DType::F32, emb(10, 8)).unwrap_err().to_string();
    assert!(e.contains("first") && e.contains("dtype \"index\""), "{e}");
    let e = graph(DType::Index, Op::Relu).unwrap_err().to_string();
    assert!(e.contains("relu cannot read integer ids"), "{e}");
    let mut b = GraphBuilder::new([4]);
    b.input_dtype(DType::Index);
    b.then("emb", emb(10, 8));
    b.add("late", emb(10, 8), &["emb"]);
    let e = b.finish().unwrap_err().to_string();
    assert!(e.contains("late"), "{e}");

    // A batch of ids is checked against the smallest table before either engine runs it.
    let m = Model::init(graph(DType::Index, emb(10, 8)).unwrap(), 0).unwrap();
    for (bad, needle) in [(2.5, "2.5"), (-1.0, "-1"), (10.0, "0..10"), (f32::NAN, "NaN")] {
        let x = Tensor::from_vec([2, 4], vec![0.0, 1.0, 2.0, 3.0, 4.0, bad, 6.0, 7.0]);
        let e = pare::exec::infer(&m, &x, &Default::default(), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains(needle) && e.contains("position 5"), "{e}");
        let e = pare::native::infer(&m, &x).unwrap_err().to_string();
        assert!(e.contains(needle), "{e}");
    }
    // Saved and loaded with its dtype.
    let dir = tempfile::tempdir().unwrap();
    pare::ir::io::save(&m, dir.path()).unwrap();
    let arch = std::fs::read_to_string(dir.path().join("arch.json")).unwrap();
    assert!(arch.contains("\"dtype\": \"index\""), "{arch}");
    assert_eq!(pare::ir::io::load(dir.path()).unwrap(), m);
}

/// Extreme sizes are refused when a graph is checked, never wrapped or allocated: padding,
/// stride, dilation and kernels near usize::MAX, values or parameters past 2^28 elements.
#[test]
fn extreme_sizes_are_refused_without_overflow() {
    use pare::ir::GraphBuilder;
    let huge = usize::MAX / 2 + 1;
    let conv_with = |k: usize, s: usize, p: usize, d: usize| {
        Op::Conv2d(Conv2d {
            in_channels: 1,
            out_channels: 2,
            kernel_size: [k, 3],
            stride: [s, 1],
            padding: [p, 1],
            dilation: [d, 1],
            groups: 1,
            bias: false,
        })
    };
    for op in [
        conv_with(3, 1, huge, 1),
        conv_with(3, 1, usize::MAX, 1),
        conv_with(huge, 1, 1, 2),
        conv_with(3, 1, 1, huge),
        conv_with(3, usize::MAX, usize::MAX, usize::MAX),
    ] {
        let mut b = GraphBuilder::new([1, 8, 8]);
        b.then("c", op.clone());
        assert!(b.finish().is_err(), "{op:?}");
    }
    // A wide padding fits arithmetic but not memory: refused by the value cap.
    let mut b = GraphBuilder::new([1, 8, 8]);
    b.then("c", conv_with(3, 1, 1 << 27, 1));
    let e = b.finish().unwrap_err().to_string();
    assert!(
        e.contains("'c'") && e.contains("per sample") && e.contains("GB of f32"),
        "{e}"
    );
    // Parameters: one huge layer, or many that add up.
    let mut b = GraphBuilder::new([784]);
    b.then("fc1", linear(784, 1_000_000_000));
    let e = b.finish().unwrap_err().to_string();
    assert!(e.contains("fc1.weight") && e.contains("3.1 TB of f32"), "{e}");
    let mut b = GraphBuilder::new([4096]);
    for i in 0..20 {
        b.then(format!("fc{i}"), linear(4096, 4096));
    }
    let e = b.finish().unwrap_err().to_string();
    assert!(e.contains("fc15") && e.contains("parameters"), "{e}");
    // Flatten, concat and reshape of sizes whose product overflows.
    error(Op::Flatten, &[&[huge, 4, 4]], "overflows");
    error(
        Op::Concat(Concat { axis: 0 }),
        &[&[usize::MAX, 2, 2], &[1, 2, 2]],
        "overflows",
    );
    error(
        Op::Reshape(Reshape { shape: vec![4, 4] }),
        &[&[huge, 2, 8]],
        "too many elements",
    );
    // A graph just under the cap is fine (235M parameters).
    let mut b = GraphBuilder::new([784]);
    b.then("wide", linear(784, 300_000));
    assert!(b.finish().is_ok());
}
