//! Zoo models: parameter counts equal PyTorch's (reference/zoo_params.py), MACs are as counted
//! by hand, and every model runs forward and backward.

use std::collections::BTreeMap;

use pare::exec::{infer, train_step, LossTerm};
use pare::ir::{Model, Reparams, Tensor};
use pare::zoo::ZooModel;

fn model(name: &str) -> Model {
    let (n, hidden, dropout) = match name {
        "mlp:1200,1200:0.5" => ("mlp", Some(vec![1200, 1200]), 0.5),
        "mlp:800,800" => ("mlp", Some(vec![800, 800]), 0.0),
        "mlp:30,30" => ("mlp", Some(vec![30, 30]), 0.0),
        "mobilenet:0.5" => {
            let zm = ZooModel::parse_spec(name).unwrap();
            return zm.init(zm.build(&[1, 28, 28], 10).unwrap(), 0).unwrap();
        }
        other => (other, None, 0.0),
    };
    let zm = ZooModel::parse(n, hidden.as_deref(), dropout).unwrap();
    zm.init(zm.build(&[1, 28, 28], 10).unwrap(), 0).unwrap()
}

#[test]
fn parameter_counts_equal_pytorch() {
    let reference: BTreeMap<String, usize> =
        serde_json::from_str(include_str!("reference/zoo_params.json")).unwrap();
    for (name, want) in reference {
        assert_eq!(model(&name).num_params(), want, "{name}");
    }
}

#[test]
fn macs_match_hand_counts() {
    assert_eq!(model("lenet300").macs(), 784 * 300 + 300 * 100 + 100 * 10);
    // conv1 20x24x24x25 + conv2 50x8x8x500 + fc1 800x500 + fc2 500x10
    assert_eq!(model("lenet5").macs(), 288_000 + 1_600_000 + 400_000 + 5_000);
}

#[test]
fn every_zoo_model_runs_forward_and_backward() {
    let x = Tensor::from_vec(
        vec![2, 1, 28, 28],
        (0..1568).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect(),
    );
    for zm in pare::zoo::catalog() {
        let m = Model::init(zm.build(&[1, 28, 28], 10).unwrap(), 0).unwrap();
        let out = infer(&m, &x, &Reparams::new(), &[]).unwrap();
        assert_eq!(out.output.shape(), &[2, 10], "{}", zm.label());
        let terms = [LossTerm::CrossEntropy {
            labels: vec![3, 7],
            weight: 1.0,
        }];
        let step = train_step(&m, &x, &terms, &Reparams::new(), &[], 0).unwrap();
        assert!(step.loss.is_finite() && step.loss > 0.0, "{}", zm.label());
        assert_eq!(step.grads.len(), m.trainable().len(), "{}", zm.label());
    }
}

#[test]
fn taps_return_intermediate_activations() {
    let m = model("resnet8");
    let x = Tensor::zeros(vec![3, 1, 28, 28]);
    let taps = ["layer2.0.add".to_string(), "avgpool".to_string()];
    let out = infer(&m, &x, &Reparams::new(), &taps).unwrap();
    assert_eq!(out.taps["layer2.0.add"].shape(), &[3, 32, 14, 14]);
    assert_eq!(out.taps["avgpool"].shape(), &[3, 64, 1, 1]);
    let e = infer(&m, &x, &Reparams::new(), &["nope".to_string()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("nope"), "{e}");
}

#[test]
fn unknown_or_impossible_models_are_rejected() {
    let e = ZooModel::parse("alexnet", None, 0.0).unwrap_err().to_string();
    assert!(
        e.contains("unknown model 'alexnet'") && e.contains("lenet5"),
        "{e}"
    );
    assert!(ZooModel::parse("resnet21", None, 0.0)
        .unwrap_err()
        .to_string()
        .contains("6n+2"));
    assert!(ZooModel::parse("mlp", Some(&[0]), 0.0).is_err());
}

#[test]
fn same_seed_same_init_and_pytorch_default_bounds() {
    let a = model("lenet300");
    assert_eq!(a, model("lenet300"));
    let w = &a.params["fc1.weight"];
    let bound = 1.0 / 784f32.sqrt();
    assert!(w.data().iter().all(|v| v.abs() <= bound));
    let max = w.data().iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(max > 0.99 * bound, "uniform init should reach its bound");
}

/// SqueezeNet starts from torchvision's init: kaiming-uniform (gain sqrt 2) convolutions, the
/// classifier from N(0, 0.01), zero biases, drawn apart from `Model::init`'s defaults.
#[test]
fn squeezenet_starts_from_torchvisions_init() {
    let m = model("squeezenet");
    assert_eq!(m, model("squeezenet"), "the same seed gives the same model");
    let w = m.params["fire3.expand3x3.weight"].data();
    let bound = (6.0f32 / (16.0 * 9.0)).sqrt();
    let max = w.iter().fold(0f32, |a, v| a.max(v.abs()));
    assert!(max <= bound && max > 0.99 * bound, "max {max}, bound {bound}");
    let c = m.params["classifier.weight"].data();
    let std = (c.iter().map(|v| v * v).sum::<f32>() / c.len() as f32).sqrt();
    assert!((std - 0.01).abs() < 0.001, "classifier std {std}");
    for (name, t) in &m.params {
        if name.ends_with(".bias") {
            assert!(t.data().iter().all(|&v| v == 0.0), "{name} is not zero");
        }
    }
    let default = Model::init(m.graph.clone(), 0).unwrap();
    assert_ne!(default.params["conv1.weight"], m.params["conv1.weight"]);
}
