//! Structured pruning of transformers: a ViT's attention heads and MLP neurons, and the heads of
//! attention written out as projections, reshapes, transposes and matrix products (as BERT and
//! ONNX files hold it), which axis mappings carry like the fused op's.

use std::collections::BTreeSet;

use pare::exec::infer;
use pare::ir::graph::ops::linear;
use pare::ir::op::{Attention, Mean, Reshape, Scale, Select, Softmax, Transpose};
use pare::ir::{GraphBuilder, Model, Op, Reparams};
use pare::prune::structured::{remove_groups, replay, zero_groups};
use pare::prune::DepGraph;
use pare::zoo::ZooModel;

mod common;
use common::families;

/// In a ViT the channels of a token sequence are its features: the MLP neurons of each block
/// (fc1 -> GELU -> fc2) are groups, and so are the heads of each attention op (their query,
/// key, value rows and output columns together); the residual stream (tied to the position
/// embedding, normalized by LayerNorm) stays whole. A removal replays from its surgery log.
#[test]
fn a_vits_heads_and_mlp_neurons_are_its_channel_groups() {
    let m = Model::init(ZooModel::Vit.build(&[1, 28, 28], 10).unwrap(), 5).unwrap();
    let d = DepGraph::build(&m).unwrap();
    let want: Vec<String> = (0..4)
        .flat_map(|i| [format!("blocks.{i}.att"), format!("blocks.{i}.fc1")])
        .collect();
    assert_eq!(families(&m), want);
    for (f, name) in d.families.iter().zip(&want) {
        let units = if name.ends_with("att") { 4 } else { 128 };
        assert_eq!(f.groups.len(), units, "{name}");
    }
    // Two heads of block 0 and three neurons of block 1's MLP.
    let att = &d.families[d.family_of(&m, "blocks.0.att").unwrap()];
    let fc1 = &d.families[d.family_of(&m, "blocks.1.fc1").unwrap()];
    let remove: BTreeSet<usize> = [
        att.groups[0],
        att.groups[2],
        fc1.groups[5],
        fc1.groups[6],
        fc1.groups[100],
    ]
    .into();
    let (p, s) = remove_groups(&m, &d, &remove).unwrap();
    assert_eq!(
        p.graph.node("blocks.0.att").unwrap().op,
        Op::Attention(Attention {
            dim: 64,
            heads: 2,
            head_dim: Some(16)
        })
    );
    assert_eq!(p.params["blocks.0.att.in_proj_weight"].shape(), &[96, 64]);
    assert_eq!(p.params["blocks.0.att.out_proj.weight"].shape(), &[64, 32]);
    assert_eq!(p.params["blocks.1.fc2.weight"].shape(), &[64, 125]);
    assert_eq!(s.removed["blocks.0.att"], vec![0, 2]);
    assert_eq!(replay(&m, &s).unwrap(), p);
    // The kept heads are the same heads: with the removed ones zeroed, outputs agree.
    let mut z = m.clone();
    zero_groups(&mut z, &d, &remove);
    let x = common::random(vec![3, 1, 28, 28], 1, 1.0);
    let a = infer(&z, &x, &Reparams::new(), &[]).unwrap().output;
    let b = infer(&p, &x, &Reparams::new(), &[]).unwrap().output;
    assert!(a.max_abs_diff(&b) < 1e-4);
    let e = remove_groups(&m, &d, &att.groups.iter().copied().collect()).unwrap_err();
    assert!(e.to_string().contains("every channel (or head)"), "{e}");
}

/// How a self-attention of 2 heads of 4 over `[5, 8]` tokens is written.
#[derive(Clone, Copy, PartialEq)]
enum Form {
    /// The fused op.
    Fused,
    /// As BERT files hold it: q, k and v projections, each reshaped into heads and transposed.
    Separate,
    /// As pare's ONNX export and timm's ViT write it: one projection of `3 * dim`, reshaped to
    /// `[tokens, 3, heads, head_dim]`, transposed, and q, k, v selected from it.
    Packed,
}

/// Self-attention over `[5, 8]` tokens written as `form` (the written-out forms as reshapes,
/// transposes, two matrix products, a softmax, a reshape back and the output projection), then
/// a token mean and a head.
fn attention_model(form: Form) -> Model {
    let mut b = GraphBuilder::new(vec![5, 8]);
    let heads = |b: &mut GraphBuilder, name: &str, perm: Vec<usize>| {
        b.add(name, linear(8, 8), &["input"]);
        b.then(
            format!("{name}_heads"),
            Op::Reshape(Reshape { shape: vec![5, 2, 4] }),
        );
        b.then(format!("{name}_t"), Op::Transpose(Transpose { perm }))
    };
    let (q, k, v) = match form {
        Form::Fused => {
            b.then(
                "att",
                Op::Attention(Attention {
                    dim: 8,
                    heads: 2,
                    head_dim: None,
                }),
            );
            (String::new(), String::new(), String::new())
        }
        Form::Separate => (
            heads(&mut b, "q", vec![1, 0, 2]),
            heads(&mut b, "k", vec![1, 2, 0]),
            heads(&mut b, "v", vec![1, 0, 2]),
        ),
        Form::Packed => {
            b.then("qkv", linear(8, 24));
            b.then(
                "qkv_heads",
                Op::Reshape(Reshape {
                    shape: vec![5, 3, 2, 4],
                }),
            );
            b.then(
                "qkv_t",
                Op::Transpose(Transpose {
                    perm: vec![1, 2, 0, 3],
                }),
            );
            let pick = |b: &mut GraphBuilder, name: &str, index| {
                b.add(name, Op::Select(Select { axis: 0, index }), &["qkv_t"])
            };
            let q = pick(&mut b, "q", 0);
            pick(&mut b, "k_rows", 1);
            let k = b.then("k", Op::Transpose(Transpose { perm: vec![0, 2, 1] }));
            (q, k, pick(&mut b, "v", 2))
        }
    };
    if form != Form::Fused {
        b.add("scores", Op::MatMul, &[&q, &k]);
        b.then("scaled", Op::Scale(Scale { factor: 0.5 }));
        b.then("probs", Op::Softmax(Softmax { axis: -1 }));
        b.add("mixed", Op::MatMul, &["probs", &v]);
        b.then("mixed_t", Op::Transpose(Transpose { perm: vec![1, 0, 2] }));
        b.then("merged", Op::Reshape(Reshape { shape: vec![5, 8] }));
        b.then("o", linear(8, 8));
    }
    b.then(
        "pool",
        Op::Mean(Mean {
            axes: vec![0],
            keepdim: false,
        }),
    );
    b.then("head", linear(8, 3));
    Model::init(b.finish().unwrap(), 3).unwrap()
}

/// A written-out attention with the fused one's weights: its in_proj rows as they are
/// (packed) or split into q, k, v.
fn written_out_like(fused: &Model, form: Form) -> Model {
    let mut m = attention_model(form);
    let w = &fused.params["att.in_proj_weight"];
    let bias = &fused.params["att.in_proj_bias"];
    if form == Form::Packed {
        m.params.insert("qkv.weight".into(), w.clone());
        m.params.insert("qkv.bias".into(), bias.clone());
    }
    for (k, name) in ["q", "k", "v"]
        .iter()
        .enumerate()
        .filter(|_| form == Form::Separate)
    {
        let rows: Vec<usize> = (k * 8..(k + 1) * 8).collect();
        m.params.insert(format!("{name}.weight"), w.select(0, &rows));
        m.params.insert(format!("{name}.bias"), bias.select(0, &rows));
    }
    for (from, to) in [
        ("att.out_proj.weight", "o.weight"),
        ("att.out_proj.bias", "o.bias"),
        ("head.weight", "head.weight"),
        ("head.bias", "head.bias"),
    ] {
        m.params.insert(to.into(), fused.params[from].clone());
    }
    m
}

/// Axis mappings carry a head through reshapes, transposes, selections and matrix products:
/// a written-out attention's heads are groups of its q, k and v rows (of three projections, or
/// of one packed projection), and removing one gives what removing the same head of the fused
/// op gives, in both engines; the reshapes shrink with it.
#[test]
fn a_written_out_attentions_heads_are_groups_like_the_fused_ops() {
    let fused = attention_model(Form::Fused);
    let x = common::random(vec![3, 5, 8], 4, 1.0);
    let run = |m: &Model| infer(m, &x, &Reparams::new(), &[]).unwrap().output;
    let fd = DepGraph::build(&fused).unwrap();
    let fused_heads = &fd.families[fd.family_of(&fused, "att").unwrap()].groups;
    let (fp, _) = remove_groups(&fused, &fd, &BTreeSet::from([fused_heads[1]])).unwrap();
    for (form, producers, reshape) in [
        (Form::Separate, vec!["q", "k", "v"], ("q_heads", vec![5, 1, 4])),
        (Form::Packed, vec!["qkv"], ("qkv_heads", vec![5, 3, 1, 4])),
    ] {
        let m = written_out_like(&fused, form);
        assert!(run(&m).max_abs_diff(&run(&fused)) < 1e-5);
        let d = DepGraph::build(&m).unwrap();
        assert_eq!(families(&m), [producers.join("+"), "o".into()]);
        let heads = &d.families[d.family_of(&m, producers[0]).unwrap()].groups;
        assert_eq!(heads.len(), 2);
        let mut members: Vec<(String, usize)> = d.groups[heads[1]]
            .members
            .iter()
            .map(|&(n, c)| (m.graph.nodes[n].name.clone(), c))
            .collect();
        members.sort();
        // Head 1 is rows 4..8 of each of q, k and v.
        let mut want: Vec<(String, usize)> = if form == Form::Packed {
            [4, 12, 20]
                .iter()
                .flat_map(|&s| (s..s + 4).map(|c| ("qkv".to_string(), c)))
                .collect()
        } else {
            producers
                .iter()
                .flat_map(|n| (4..8).map(move |c| (n.to_string(), c)))
                .collect()
        };
        want.sort();
        assert_eq!(members, want);

        let (p, s) = remove_groups(&m, &d, &BTreeSet::from([heads[1]])).unwrap();
        assert_eq!(
            p.graph.node(reshape.0).unwrap().op,
            Op::Reshape(Reshape { shape: reshape.1 })
        );
        assert_eq!(
            p.graph.node("merged").unwrap().op,
            Op::Reshape(Reshape { shape: vec![5, 4] })
        );
        assert_eq!(p.params["o.weight"].shape(), &[8, 4]);
        assert_eq!(replay(&m, &s).unwrap(), p);
        let a = run(&p);
        assert!(a.max_abs_diff(&run(&fp)) < 1e-5, "{}", a.max_abs_diff(&run(&fp)));
        assert!(pare::native::infer(&p, &x).unwrap().max_abs_diff(&a) < 1e-5);
        // The head zeroed in place gives the same outputs as removing it.
        let mut z = m.clone();
        zero_groups(&mut z, &d, &BTreeSet::from([heads[1]]));
        assert!(run(&z).max_abs_diff(&a) < 1e-5);
    }
}
