//! Ops in `arch.json`: each node's op as `{"op": kind, ..attributes}`, read back as itself,
//! unknown attributes refused.

use pare::ir::graph::ops::{bn, conv, linear, max_pool};
use pare::ir::op::{
    Attention, AvgPool2d, ChannelShuffle, Clip, Concat, Dropout, Embedding, HashedLinear, LayerNorm, Mean,
    Pad, Parameter, Reshape, Scale, Select, Slice, Softmax, Transpose,
};
use pare::ir::{Node, Op};

/// `arch.json` keeps each node's op as `{"op": kind, ..attributes}`: every op reads back as itself,
/// an attribute an op does not have is refused (for ops with and without attributes), and
/// attributes with defaults may be left out.
#[test]
fn every_op_reads_back_from_arch_json_and_unknown_attributes_are_refused() {
    let ops = vec![
        linear(4, 3),
        Op::HashedLinear(HashedLinear {
            in_features: 4,
            out_features: 3,
            buckets: 5,
            seed: 7,
            bias: true,
        }),
        conv(3, 8, 3, 1, 1, true),
        bn(8),
        max_pool(2, 2),
        Op::AvgPool2d(AvgPool2d {
            kernel_size: [2, 2],
            stride: [2, 2],
            padding: [0, 0],
            count_include_pad: false,
            ceil_mode: true,
        }),
        Op::Concat(Concat { axis: -1 }),
        Op::Dropout(Dropout { p: 0.5 }),
        Op::LayerNorm(LayerNorm { dim: 4, eps: 1e-5 }),
        Op::Softmax(Softmax { axis: -1 }),
        Op::Reshape(Reshape { shape: vec![2, 2] }),
        Op::Transpose(Transpose { perm: vec![1, 0] }),
        Op::Scale(Scale { factor: 0.5 }),
        Op::Slice(Slice {
            axis: 0,
            start: 1,
            end: 2,
        }),
        Op::Select(Select { axis: 0, index: 0 }),
        Op::Clip(Clip { min: 0.0, max: 6.0 }),
        Op::Mean(Mean {
            axes: vec![1, 2],
            keepdim: true,
        }),
        Op::Attention(Attention {
            dim: 8,
            heads: 2,
            head_dim: Some(4),
        }),
        Op::Pad(Pad {
            pads: vec![[1, 1]],
            value: -1.0,
        }),
        Op::ChannelShuffle(ChannelShuffle { groups: 2 }),
        Op::Parameter(Parameter { shape: vec![1, 4] }),
        Op::Embedding(Embedding {
            num_embeddings: 10,
            embedding_dim: 4,
        }),
        Op::FakeQuant(pare::ir::op::FakeQuant {
            bits: 8,
            symmetric: false,
            scale: 0.1,
            zero_point: 3,
        }),
        Op::Relu,
        Op::Relu6,
        Op::Gelu,
        Op::Sigmoid,
        Op::Tanh,
        Op::HardSwish,
        Op::GlobalAvgPool,
        Op::Flatten,
        Op::Add,
        Op::Identity,
        Op::MatMul,
        Op::Mul,
        Op::Sub,
        Op::Div,
        Op::Silu,
        Op::Sign,
        Op::Abs,
        Op::Erf,
    ];
    for op in &ops {
        let json = serde_json::to_value(op).unwrap();
        assert_eq!(json["op"], op.kind(), "{json}");
        let back: Op = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(&back, op, "{json}");
        // A node of the graph, as arch.json holds it (the op's keys flattened into it).
        let mut node = json.clone();
        node["name"] = "n".into();
        node["inputs"] = serde_json::json!(["input"]);
        let back: Node = serde_json::from_value(node.clone()).unwrap();
        assert_eq!(&back.op, op);
        node["kernel"] = 3.into();
        let e = serde_json::from_value::<Node>(node).unwrap_err();
        assert!(
            e.to_string().contains("unknown field `kernel`"),
            "{}: {e}",
            op.kind()
        );
    }
    let kinds: std::collections::BTreeSet<_> = ops.iter().map(Op::kind).collect();
    assert_eq!(kinds.len(), ops.len(), "each op once");
    let read = |s: &str| serde_json::from_str::<Op>(s).unwrap();
    assert_eq!(read(r#"{"op":"concat"}"#), Op::Concat(Concat { axis: 0 }));
    assert_eq!(
        read(r#"{"op":"max_pool2d","kernel_size":[2,2],"stride":[2,2],"padding":[0,0]}"#),
        max_pool(2, 2)
    );
    assert_eq!(
        read(r#"{"op":"mean","axes":[0]}"#),
        Op::Mean(Mean {
            axes: vec![0],
            keepdim: false
        })
    );
    assert!(serde_json::from_str::<Op>(r#"{"op":"linear","in_features":4}"#).is_err());
    assert!(serde_json::from_str::<Op>(r#"{"op":"conv3d"}"#).is_err());
}
