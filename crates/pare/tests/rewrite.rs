//! Graph rewrites: each keeps the function it should keep, fails cleanly, and leaves the graph
//! unchanged when it fails.

use pare::exec::infer;
use pare::ir::graph::ops::{bn, linear};
use pare::ir::rewrite::{self, Readers};
use pare::ir::{GraphBuilder, Model, Node, Op, Reparams, Tensor, INPUT};

fn mlp() -> Model {
    let mut b = GraphBuilder::new([6]);
    b.then("fc1", linear(6, 5));
    b.then("relu", Op::Relu);
    b.then("fc2", linear(5, 3));
    Model::init(b.finish().unwrap(), 3).unwrap()
}

fn x() -> Tensor {
    Tensor::from_vec([4, 6], (0..24).map(|i| (i as f32 * 0.37).sin()).collect())
}

fn out(m: &Model) -> Tensor {
    infer(m, &x(), &Reparams::new(), &[]).unwrap().output
}

fn node(name: &str, op: Op, inputs: &[&str]) -> Node {
    Node {
        name: name.into(),
        op,
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
    }
}

#[test]
fn insert_after_moves_the_chosen_readers() {
    let m = mlp();
    // An identity after fc1 read by everyone keeps the function and the order.
    let with = rewrite::insert_after(
        &m,
        "fc1",
        node("id", Op::Identity, &["fc1"]),
        Default::default(),
        Readers::All,
    )
    .unwrap();
    let names: Vec<&str> = with.graph.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["fc1", "id", "relu", "fc2"]);
    assert_eq!(with.graph.nodes[2].inputs, ["id"]);
    assert_eq!(out(&with).max_abs_diff(&out(&m)), 0.0);
    // At the front, reading the input; only fc1 moves.
    let mut g = m.graph.clone();
    g.insert_after(
        INPUT,
        node("pre", Op::Relu, &[INPUT]),
        Readers::Matching(&|n: &Node| n.name == "fc1"),
    )
    .unwrap();
    assert_eq!(g.nodes[0].name, "pre");
    assert_eq!(g.nodes[1].inputs, ["pre"]);
    // A side branch: nothing reads it, the output is unchanged.
    let side = rewrite::insert_after(
        &m,
        "relu",
        node("tap", linear(5, 2), &["relu"]),
        tap_params(),
        Readers::None,
    )
    .unwrap();
    assert_eq!(side.graph.consumers("tap"), Vec::<usize>::new());
    assert_eq!(out(&side).max_abs_diff(&out(&m)), 0.0);
    // Removing the side branch gives back the model, parameters included.
    assert_eq!(rewrite::remove_side(&side, "tap").unwrap(), m);
}

fn tap_params() -> pare::ir::Params {
    [
        ("tap.weight".to_string(), Tensor::zeros([2, 5])),
        ("tap.bias".to_string(), Tensor::zeros([2])),
    ]
    .into_iter()
    .collect()
}

#[test]
fn bypass_reconnects_readers_and_outputs() {
    let mut b = GraphBuilder::new([6]);
    b.then("fc1", linear(6, 5));
    b.then("bn", bn(5));
    let m = Model::init(b.finish().unwrap(), 1).unwrap();
    let without = rewrite::bypass(&m, "bn").unwrap();
    assert_eq!(without.graph.output, "fc1");
    assert!(without.params.keys().all(|k| k.starts_with("fc1.")));
    assert_eq!(without.graph.nodes.len(), 1);
}

#[test]
fn replace_by_an_equivalent_subgraph() {
    // fc1 (6 -> 5) becomes fc1a (6 -> 6, the identity) then fc1 (6 -> 5, the old weights):
    // the function is unchanged and fc1's readers follow the new output.
    let m = mlp();
    let mut graph = m.graph.clone();
    graph
        .replace(
            "fc1",
            vec![
                node("fc1a", linear(6, 6), &[INPUT]),
                node("fc1b", linear(6, 5), &["fc1a"]),
            ],
            "fc1b",
        )
        .unwrap();
    assert_eq!(graph.node("relu").unwrap().inputs, ["fc1b"]);
    let mut params = m.params.clone();
    let eye: Vec<f32> = (0..36).map(|i| if i % 7 == 0 { 1.0 } else { 0.0 }).collect();
    params.insert("fc1a.weight".into(), Tensor::from_vec([6, 6], eye));
    params.insert("fc1a.bias".into(), Tensor::zeros([6]));
    params.insert("fc1b.weight".into(), params["fc1.weight"].clone());
    params.insert("fc1b.bias".into(), params["fc1.bias"].clone());
    params.remove("fc1.weight");
    params.remove("fc1.bias");
    let factored = Model::new(graph, params).unwrap();
    assert!(out(&factored).max_abs_diff(&out(&m)) < 1e-6);
    // Replacing the output node moves the output name.
    let mut g = m.graph.clone();
    g.replace("fc2", vec![node("head", linear(5, 3), &["relu"])], "head")
        .unwrap();
    assert_eq!(g.output, "head");
}

#[test]
fn failed_rewrites_leave_the_graph_unchanged() {
    let m = mlp();
    let mut g = m.graph.clone();
    let cases: Vec<(Box<dyn Fn(&mut pare::ir::Graph) -> pare::error::Result<()>>, &str)> = vec![
        (
            Box::new(|g| g.insert_after("nope", node("x", Op::Relu, &["nope"]), Readers::All)),
            "no such node",
        ),
        (
            Box::new(|g| g.insert_after("fc1", node("relu", Op::Relu, &["fc1"]), Readers::All)),
            "already exists",
        ),
        // A node whose shape does not fit its readers.
        (
            Box::new(|g| g.insert_after("fc1", node("wide", linear(5, 7), &["fc1"]), Readers::All)),
            "fc2",
        ),
        (Box::new(|g| g.bypass("fc1")), "fc2"),
        (Box::new(|g| g.remove_side("relu")), "only a side node"),
        (
            Box::new(|g| g.replace("fc1", vec![node("a", linear(6, 5), &[INPUT])], "b")),
            "none of its nodes",
        ),
        (
            Box::new(|g| {
                g.replace(
                    "fc1",
                    vec![node("a", linear(6, 5), &[INPUT]), node("a", Op::Relu, &["a"])],
                    "a",
                )
            }),
            "two nodes alike",
        ),
        (
            Box::new(|g| g.replace("relu", vec![node("fc2x", linear(5, 4), &["fc1"])], "fc2x")),
            "fc2",
        ),
    ];
    for (edit, needle) in cases {
        let e = edit(&mut g).expect_err(needle).to_string();
        assert!(e.contains(needle), "'{e}' should mention '{needle}'");
        assert_eq!(g, m.graph);
    }
}
