//! HashedNets: a hashed layer stores 1/F of the weights, runs alike in both engines and after
//! saving and loading, gets each bucket's gradient as the signed sum of its positions', fits a
//! trained layer's weights by least squares, and trains.

mod common;

use common::{max_diff, toy_data, zoo};
use pare::exec::{train_step, LossTerm};
use pare::hashing::{hash_linears, Buckets};
use pare::ir::op::hashed_index;
use pare::ir::op::{HashedLinear, Linear};
use pare::ir::{GraphBuilder, Model, Op, Reparams, Tensor};
use pare::train::{fit, FitConfig, NoHooks, OptimizerConfig, Schedule};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn images(n: usize) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    Tensor::from_vec(
        vec![n, 1, 28, 28],
        (0..n * 784).map(|_| rng.random_range(-1.0..2.0)).collect(),
    )
}

/// The dense model with the hashed model's virtual weights.
fn expanded(h: &Model) -> Model {
    let mut graph = h.graph.clone();
    let mut params = h.params.clone();
    for n in &h.graph.nodes {
        let Op::HashedLinear(HashedLinear {
            in_features,
            out_features,
            buckets,
            seed,
            bias,
        }) = n.op
        else {
            continue;
        };
        let table = h.params[&format!("{}.weight", n.name)].data().to_vec();
        let (index, sign) = hashed_index(seed, out_features, in_features, buckets);
        let w: Vec<f32> = index
            .iter()
            .zip(&sign)
            .map(|(&b, s)| s * table[b as usize])
            .collect();
        params.insert(
            format!("{}.weight", n.name),
            Tensor::from_vec(vec![out_features, in_features], w),
        );
        let dense = pare::ir::Node {
            name: n.name.clone(),
            op: Op::Linear(Linear {
                in_features,
                out_features,
                bias,
            }),
            inputs: n.inputs.clone(),
        };
        graph.replace(&n.name, vec![dense], &n.name).unwrap();
    }
    Model::new(graph, params).unwrap()
}

#[test]
fn a_hashed_lenet300_stores_an_eighth_and_runs_alike_everywhere() {
    let m = zoo("lenet300");
    let (h, layers) = hash_linears(&m, 8.0, None, Buckets::Fresh, 5).unwrap();
    assert_eq!(layers.len(), 3);
    assert_eq!(layers[0].buckets, 29_400);
    let ratio = m.num_params() as f64 / h.num_params() as f64;
    assert!((7.8..8.0).contains(&ratio), "{ratio}");
    assert_eq!(h.macs(), m.macs(), "the virtual layer does the same work");
    let x = images(6);
    let native = pare::native::infer(&h, &x).unwrap();
    let engine = pare::exec::infer(&h, &x, &Reparams::new(), &[]).unwrap().output;
    assert!(max_diff(&native, &engine) < 1e-4);
    let dense = pare::native::infer(&expanded(&h), &x).unwrap();
    assert!(max_diff(&native, &dense) < 1e-5);

    // Saved as its buckets, loaded with the same hash.
    let dir = tempfile::tempdir().unwrap();
    pare::ir::io::save(&h, dir.path()).unwrap();
    let back = pare::ir::io::load(dir.path()).unwrap();
    assert_eq!(back, h);
    assert_eq!(back.params["fc1.weight"].shape(), &[29_400]);
    assert_eq!(pare::native::infer(&back, &x).unwrap(), native);
    let size = |p: &str| std::fs::metadata(dir.path().join(p)).unwrap().len();
    assert!(
        size("weights.safetensors") < 4 * 34_000 + 4096,
        "{}",
        size("weights.safetensors")
    );

    // A layer whose virtual weight could not be built, or with buckets nothing reads.
    for (inp, out, buckets) in [(4, 3, 0), (4, 3, 13), (1 << 20, 1 << 10, 8)] {
        let mut b = GraphBuilder::new(vec![inp]);
        b.then(
            "h",
            Op::HashedLinear(HashedLinear {
                in_features: inp,
                out_features: out,
                buckets,
                seed: 0,
                bias: false,
            }),
        );
        let e = b.finish().unwrap_err().to_string();
        assert!(e.contains("hashed_linear needs"), "{e}");
    }
    let e = hash_linears(&m, 0.5, None, Buckets::Fresh, 0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("factor of 0.5"), "{e}");
    let e = hash_linears(&m, 8.0, Some(&["fc9".to_string()]), Buckets::Fresh, 0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("'fc9'"), "{e}");
}

#[test]
fn a_bucket_gradient_is_the_signed_sum_of_its_positions_and_fit_recovers_buckets() {
    let m = zoo("lenet300");
    let (h, _) = hash_linears(&m, 16.0, Some(&["fc2".to_string()]), Buckets::Fresh, 9).unwrap();
    let d = expanded(&h);
    let x = images(8);
    let ce = [LossTerm::CrossEntropy {
        labels: vec![0, 1, 2, 3, 4, 5, 6, 7],
        weight: 1.0,
    }];
    let gh = train_step(&h, &x, &ce, &Reparams::new(), &[], 0).unwrap();
    let gd = train_step(&d, &x, &ce, &Reparams::new(), &[], 0).unwrap();
    assert!((gh.loss - gd.loss).abs() < 1e-5);
    let Op::HashedLinear(HashedLinear { buckets, seed, .. }) = h.graph.node("fc2").unwrap().op else {
        panic!("fc2 is hashed")
    };
    let (index, sign) = hashed_index(seed, 100, 300, buckets);
    let mut want = vec![0.0f32; buckets];
    for ((&b, s), g) in index.iter().zip(&sign).zip(gd.grads["fc2.weight"].data()) {
        want[b as usize] += s * g;
    }
    let got = &gh.grads["fc2.weight"];
    assert!(max_diff(got, &Tensor::from_vec(vec![buckets], want)) < 1e-5);
    assert_eq!(gh.grads["fc1.weight"], gd.grads["fc1.weight"]);

    // Fitting the expanded (dense) weights gives the buckets back.
    let (fitted, _) = hash_linears(&d, 16.0, Some(&["fc2".to_string()]), Buckets::Fit, 9).unwrap();
    assert!(max_diff(&fitted.params["fc2.weight"], &h.params["fc2.weight"]) < 1e-6);
}

#[test]
fn a_hashed_network_trains() {
    let data = toy_data();
    let mut b = GraphBuilder::new(vec![1, 8, 8]);
    b.then("flatten", Op::Flatten);
    b.then("fc1", pare::ir::graph::ops::linear(64, 32));
    b.then("relu", Op::Relu);
    b.then("fc2", pare::ir::graph::ops::linear(32, 3));
    let m = Model::init(b.finish().unwrap(), 1).unwrap();
    let (mut h, _) = hash_linears(&m, 4.0, None, Buckets::Fresh, 1).unwrap();
    let cfg = FitConfig {
        epochs: 8,
        batch_size: 16,
        optimizer: OptimizerConfig::sgd(0.9, 0.0),
        schedule: Schedule::constant(0.05),
        ..Default::default()
    };
    fit(&mut h, &data, None, &cfg, &mut NoHooks).unwrap();
    let acc = pare::native::accuracy(&h, &data).unwrap();
    assert!(acc > 0.9, "{acc}");
}

/// A hashed layer's rows and columns cannot be removed (the hash reads positions), so
/// structured pruning leaves it whole, and a model with nothing else to prune is refused
/// rather than "pruned" to itself.
#[test]
fn structured_pruning_keeps_hashed_layers_whole() {
    use pare::prune::select::check_prunable;
    use pare::prune::DepGraph;

    let dense = zoo("lenet300");
    let (all, _) = hash_linears(&dense, 8.0, None, Buckets::Fresh, 0).unwrap();
    let e = check_prunable(&DepGraph::build(&all).unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("no channels") && e.contains("hashed"), "{e}");
    // With fc2 hashed, fc1's outputs feed it and are fixed too: nothing prunable either.
    let (mid, _) = hash_linears(&dense, 8.0, Some(&["fc2".to_string()]), Buckets::Fresh, 0).unwrap();
    assert!(check_prunable(&DepGraph::build(&mid).unwrap()).is_err());
    // With fc1 hashed, fc2's 100 outputs stay prunable.
    let (first, _) = hash_linears(&dense, 8.0, Some(&["fc1".to_string()]), Buckets::Fresh, 0).unwrap();
    let deps = DepGraph::build(&first).unwrap();
    check_prunable(&deps).unwrap();
    assert_eq!(deps.families.len(), 1);
    assert_eq!(deps.families[0].groups.len(), 100);
}
