//! Low-rank factorization of Linear layers: a layer of low rank is replaced exactly; a
//! truncation keeps the energy it reports (Eckart-Young: the residual is the rest); rules and
//! names are checked.

mod common;

use pare::ir::graph::ops::linear;
use pare::ir::{GraphBuilder, Model, Op, Tensor};
use pare::lowrank::{factorize, Rank};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// input 64 -> fc1 (48, rank 4) -> relu -> fc2 (10).
fn rank4_model() -> Model {
    let mut b = GraphBuilder::new(vec![64]);
    b.then("fc1", linear(64, 48));
    b.then("relu", Op::Relu);
    b.then("fc2", linear(48, 10));
    let mut m = Model::init(b.finish().unwrap(), 1).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let a: Vec<f32> = (0..48 * 4).map(|_| rng.random_range(-1.0..1.0)).collect();
    let c: Vec<f32> = (0..4 * 64).map(|_| rng.random_range(-1.0..1.0)).collect();
    let w = m.params.get_mut("fc1.weight").unwrap().data_mut();
    for i in 0..48 {
        for j in 0..64 {
            w[i * 64 + j] = (0..4).map(|k| a[i * 4 + k] * c[k * 64 + j]).sum::<f32>() * 0.1;
        }
    }
    m
}

fn batch(n: usize, f: usize) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    Tensor::from_vec(
        vec![n, f],
        (0..n * f).map(|_| rng.random_range(-1.0..1.0)).collect(),
    )
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    a.data()
        .iter()
        .zip(b.data())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn a_layer_of_low_rank_is_replaced_exactly_in_both_engines() {
    let m = rank4_model();
    let (f, report) = factorize(&m, Some(&["fc1".to_string()]), Rank::Energy(1.0)).unwrap();
    assert_eq!(report.len(), 1);
    let r = &report[0];
    assert_eq!((r.rank, r.full_rank, r.factorized), (4, 48, true));
    assert_eq!((r.weights_before, r.weights_after), (64 * 48, 4 * (64 + 48)));
    assert_eq!(f.params["fc1_v.weight"].shape(), &[4, 64]);
    assert_eq!(f.params["fc1.weight"].shape(), &[48, 4]);
    assert_eq!(f.params["fc1.bias"], m.params["fc1.bias"]);
    assert_eq!(f.num_params(), m.num_params() - 64 * 48 + 4 * (64 + 48));
    let x = batch(5, 64);
    let want = pare::native::infer(&m, &x).unwrap();
    assert!(max_diff(&pare::native::infer(&f, &x).unwrap(), &want) < 1e-4);
    let engine = pare::exec::infer(&f, &x, &Default::default(), &[])
        .unwrap()
        .output;
    assert!(max_diff(&engine, &want) < 1e-4);
}

#[test]
fn a_truncation_keeps_the_energy_it_reports() {
    let m = common::zoo("lenet300");
    let (f, report) = factorize(&m, None, Rank::Energy(0.6)).unwrap();
    for r in &report {
        assert!(r.energy >= 0.6 - 1e-9, "{r:?}");
        if !r.factorized {
            continue;
        }
        // W - U_r V_r: its squared norm is the energy left out.
        let (out, inp) = (
            m.params[&format!("{}.weight", r.layer)].shape()[0],
            m.params[&format!("{}.weight", r.layer)].shape()[1],
        );
        let u = &f.params[&format!("{}.weight", r.layer)];
        let v = &f.params[&format!("{}_v.weight", r.layer)];
        let w = &m.params[&format!("{}.weight", r.layer)];
        let (mut resid, mut total) = (0f64, 0f64);
        for i in 0..out {
            for j in 0..inp {
                let approx: f64 = (0..r.rank)
                    .map(|k| u.data()[i * r.rank + k] as f64 * v.data()[k * inp + j] as f64)
                    .sum();
                let x = w.data()[i * inp + j] as f64;
                resid += (x - approx).powi(2);
                total += x * x;
            }
        }
        assert!(
            (resid / total - (1.0 - r.energy)).abs() < 1e-3,
            "{}: {} vs {}",
            r.layer,
            resid / total,
            1.0 - r.energy
        );
    }
    let fc1 = report.iter().find(|r| r.layer == "fc1").unwrap();
    // A random initialization has a flat spectrum: 60% of the energy takes 105 of 300 values.
    assert!(fc1.factorized && fc1.rank < fc1.full_rank / 2, "{fc1:?}");
    assert!(f.num_params() < m.num_params());
    // The factorized model saves and loads like any other.
    let dir = tempfile::tempdir().unwrap();
    pare::ir::io::save(&f, dir.path()).unwrap();
    assert_eq!(pare::ir::io::load(dir.path()).unwrap().params, f.params);
}

#[test]
fn a_rank_that_saves_nothing_leaves_the_layer_and_bad_rules_are_refused() {
    let m = rank4_model();
    let (f, report) = factorize(&m, Some(&["fc2".to_string()]), Rank::Fixed(10)).unwrap();
    assert!(!report[0].factorized);
    assert_eq!(f.graph, m.graph);
    for (layers, rule, needle) in [
        (
            Some(vec!["relu".to_string()]),
            Rank::Fixed(2),
            "no Linear layer named 'relu'",
        ),
        (None, Rank::Energy(0.0), "energy 0"),
        (None, Rank::Energy(1.5), "energy 1.5"),
        (None, Rank::Energy(f64::NAN), "energy NaN"),
        (None, Rank::Fixed(0), "rank 0"),
    ] {
        let e = factorize(&m, layers.as_deref(), rule).unwrap_err().to_string();
        assert!(e.contains(needle), "{e}");
    }
}
