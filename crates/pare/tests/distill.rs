//! Distillation: every loss term against PyTorch on hand-made inputs
//! (`reference/distill_losses.py`), and shape mismatches as clear errors.

use pare::exec::{train_step, LossTerm};
use pare::ir::graph::ops::linear;
use pare::ir::{GraphBuilder, Model, Op, Reparams, Tensor};

struct Reference {
    shape: Vec<usize>,
    x: Vec<f32>,
    t_same: Vec<f32>,
    t_wide: Vec<f32>,
    values: serde_json::Value,
}

fn reference() -> Reference {
    let text = include_str!("reference/distill_losses.json");
    let v: serde_json::Value = serde_json::from_str(text).unwrap();
    let vec = |k: &str| -> Vec<f32> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect()
    };
    Reference {
        shape: v["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect(),
        x: vec("x"),
        t_same: vec("t_same"),
        t_wide: vec("t_wide"),
        values: v.clone(),
    }
}

/// input [3, 3, 3] -> identity "feat" (the tapped student activation is the input itself)
/// -> flatten -> linear.
fn probe() -> Model {
    let mut b = GraphBuilder::new(vec![3, 3, 3]);
    b.then("feat", Op::Identity);
    b.then("flatten", Op::Flatten);
    b.then("fc", linear(27, 2));
    Model::init(b.finish().unwrap(), 0).unwrap()
}

fn loss(term: LossTerm) -> Result<f32, String> {
    let r = reference();
    let x = Tensor::from_vec(r.shape.clone(), r.x.clone());
    train_step(&probe(), &x, &[term], &Reparams::new(), &[], 0)
        .map(|o| o.loss)
        .map_err(|e| e.to_string())
}

fn close(got: f32, key: &str) {
    let want = reference().values[key].as_f64().unwrap() as f32;
    assert!(
        (got - want).abs() <= 1e-5 + 1e-4 * want.abs(),
        "{key}: pare {got}, PyTorch {want}"
    );
}

#[test]
fn feature_losses_match_pytorch() {
    let r = reference();
    let wide = Tensor::from_vec(vec![4, 5, 3, 3], r.t_wide.clone());
    let tap = "feat".to_string();
    close(
        loss(LossTerm::FeatureMse {
            tap: tap.clone(),
            target: Tensor::from_vec(r.shape.clone(), r.t_same.clone()),
            weight: 1.0,
        })
        .unwrap(),
        "mse",
    );
    for (p, key) in [(2.0, "at_p2"), (1.0, "at_p1")] {
        let term = LossTerm::Attention {
            tap: tap.clone(),
            teacher: wide.clone(),
            p,
            weight: 1.0,
        };
        close(loss(term).unwrap(), key);
    }
    let rkd = |d: f32, a: f32| LossTerm::Relational {
        tap: tap.clone(),
        teacher: wide.clone(),
        distance_weight: d,
        angle_weight: a,
    };
    close(loss(rkd(1.0, 0.0)).unwrap(), "rkd_distance");
    close(loss(rkd(0.0, 1.0)).unwrap(), "rkd_angle");
    close(
        loss(LossTerm::Similarity {
            tap: tap.clone(),
            teacher: wide.clone(),
            weight: 1.0,
        })
        .unwrap(),
        "sp",
    );
}

#[test]
fn mismatched_shapes_are_clear_errors() {
    let r = reference();
    // A hint target with other channels needs a regressor.
    let e = loss(LossTerm::FeatureMse {
        tap: "feat".into(),
        target: Tensor::from_vec(vec![4, 5, 3, 3], r.t_wide.clone()),
        weight: 1.0,
    })
    .unwrap_err();
    assert!(e.contains("regressor") && e.contains("feat"), "{e}");
    // Attention maps need equal spatial sizes.
    let e = loss(LossTerm::Attention {
        tap: "feat".into(),
        teacher: Tensor::zeros(vec![4, 3, 2, 2]),
        p: 2.0,
        weight: 1.0,
    })
    .unwrap_err();
    assert!(e.contains("spatial"), "{e}");
    // A tap that names no node.
    let e = loss(LossTerm::Similarity {
        tap: "nope".into(),
        teacher: Tensor::zeros(vec![4, 3]),
        weight: 1.0,
    })
    .unwrap_err();
    assert!(e.contains("nope"), "{e}");
}
