//! Low-rank factorization of Linear layers: a layer of low rank is replaced exactly; a
//! truncation keeps the energy it reports (Eckart-Young: the residual is the rest); rules and
//! names are checked.

mod common;

use common::max_diff;

use pare::ir::graph::ops::linear;
use pare::ir::{GraphBuilder, Model, Op, Tensor};
use pare::lowrank::{factorize, factorize_for_macs, factorize_with, ConvMethod, Rank};
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

/// input [3, 10, 10] -> c1 (3 -> 8, 3x3, stride 2, pad 1, bias) -> relu -> c2 (8 -> 6, 3x3)
/// -> relu -> pw (6 -> 6, 1x1) -> flatten -> fc.
fn conv_model() -> Model {
    use pare::ir::graph::ops::conv;
    let mut b = GraphBuilder::new(vec![3, 10, 10]);
    b.then("c1", conv(3, 8, 3, 2, 1, true));
    b.then("relu1", Op::Relu);
    b.then("c2", conv(8, 6, 3, 1, 1, false));
    b.then("relu2", Op::Relu);
    b.then("pw", conv(6, 6, 1, 1, 0, false));
    b.then("flatten", Op::Flatten);
    b.then("fc", linear(6 * 25, 4));
    Model::init(b.finish().unwrap(), 2).unwrap()
}

fn rand_vec(rng: &mut ChaCha8Rng, n: usize) -> Vec<f64> {
    (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
}

/// Sets conv `name`'s 3x3 weight `[o, i, 3, 3]` to one of spatial rank 2
/// (`W[f, c, y, x] = sum_j A[(c, y), j] B[j, (x, f)]`).
fn spatial_rank2(m: &mut Model, name: &str, rng: &mut ChaCha8Rng) {
    let w = m.params.get_mut(&format!("{name}.weight")).unwrap();
    let (o, i) = (w.shape()[0], w.shape()[1]);
    let (a, b) = (rand_vec(rng, i * 3 * 2), rand_vec(rng, 2 * 3 * o));
    let d = w.data_mut();
    for f in 0..o {
        for c in 0..i {
            for y in 0..3 {
                for x in 0..3 {
                    let v: f64 = (0..2)
                        .map(|j| a[(c * 3 + y) * 2 + j] * b[j * 3 * o + x * o + f])
                        .sum();
                    d[((f * i + c) * 3 + y) * 3 + x] = (v * 0.2) as f32;
                }
            }
        }
    }
}

/// Sets conv `name`'s weight to one of Tucker ranks (2, 2) on its channel axes.
fn tucker_rank2(m: &mut Model, name: &str, rng: &mut ChaCha8Rng) {
    let w = m.params.get_mut(&format!("{name}.weight")).unwrap();
    let (o, i, k) = (w.shape()[0], w.shape()[1], w.shape()[2] * w.shape()[3]);
    let (uo, ui, core) = (rand_vec(rng, o * 2), rand_vec(rng, i * 2), rand_vec(rng, 4 * k));
    let d = w.data_mut();
    for f in 0..o {
        for c in 0..i {
            for yx in 0..k {
                let mut v = 0.0;
                for a in 0..2 {
                    for b in 0..2 {
                        v += uo[f * 2 + a] * ui[c * 2 + b] * core[(a * 2 + b) * k + yx];
                    }
                }
                d[(f * i + c) * k + yx] = (v * 0.3) as f32;
            }
        }
    }
}

#[test]
fn convolutions_of_low_rank_are_replaced_exactly_in_both_engines() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let x = Tensor::from_vec(
        vec![3, 3, 10, 10],
        (0..900).map(|_| rng.random_range(-1.0..1.0)).collect(),
    );
    let layers = Some(vec!["c1".to_string(), "c2".to_string()]);
    for method in [ConvMethod::Spatial, ConvMethod::Tucker2] {
        let mut m = conv_model();
        for name in ["c1", "c2"] {
            match method {
                ConvMethod::Spatial => spatial_rank2(&mut m, name, &mut rng),
                ConvMethod::Tucker2 => tucker_rank2(&mut m, name, &mut rng),
                ConvMethod::Separable => unreachable!("tested on its own"),
            }
        }
        let (f, report) = factorize_with(&m, layers.as_deref(), Rank::Energy(1.0), Some(method)).unwrap();
        for r in &report {
            assert!(
                r.factorized && r.rank == 2 && r.energy > 1.0 - 1e-6,
                "{method:?}: {r:?}"
            );
        }
        match method {
            ConvMethod::Spatial => {
                assert_eq!(f.params["c1_v.weight"].shape(), &[2, 3, 3, 1]);
                assert_eq!(f.params["c1.weight"].shape(), &[8, 2, 1, 3]);
            }
            ConvMethod::Tucker2 => {
                assert_eq!(report[0].input_rank, Some(2));
                assert_eq!(f.params["c2_in.weight"].shape(), &[2, 8, 1, 1]);
                assert_eq!(f.params["c2_core.weight"].shape(), &[2, 2, 3, 3]);
                assert_eq!(f.params["c2.weight"].shape(), &[6, 2, 1, 1]);
            }
            ConvMethod::Separable => unreachable!("tested on its own"),
        }
        assert_eq!(f.params["c1.bias"], m.params["c1.bias"]);
        assert!(f.macs() < m.macs(), "{method:?}");
        let want = pare::native::infer(&m, &x).unwrap();
        let native = pare::native::infer(&f, &x).unwrap();
        assert!(
            max_diff(&native, &want) < 1e-4,
            "{method:?}: {}",
            max_diff(&native, &want)
        );
        let engine = pare::exec::infer(&f, &x, &Default::default(), &[])
            .unwrap()
            .output;
        assert!(max_diff(&engine, &want) < 1e-4, "{method:?}");
    }
}

#[test]
fn a_truncated_convolution_keeps_the_energy_it_reports_and_bad_names_are_refused() {
    let m = conv_model();
    for method in [ConvMethod::Spatial, ConvMethod::Tucker2] {
        let (f, report) = factorize_with(&m, None, Rank::Fixed(3), Some(method)).unwrap();
        // Spatial SVD leaves the 1x1 conv; Tucker-2 takes it but it cannot shrink.
        let names: Vec<&str> = report.iter().map(|r| r.layer.as_str()).collect();
        match method {
            ConvMethod::Spatial => assert_eq!(names, ["c1", "c2", "fc"]),
            ConvMethod::Tucker2 => assert_eq!(names, ["c1", "c2", "pw", "fc"]),
            ConvMethod::Separable => unreachable!("tested on its own"),
        }
        for r in &report {
            assert!(r.energy > 0.0 && r.energy <= 1.0 + 1e-9, "{r:?}");
        }
        let pw = report.iter().find(|r| r.layer == "pw");
        assert!(pw.is_none_or(|r| !r.factorized), "{pw:?}");
        let c2 = report.iter().find(|r| r.layer == "c2").unwrap();
        assert!(c2.factorized && c2.rank == 3, "{c2:?}");
        // The energy left out is the truncation's squared error.
        let w = m.params["c2.weight"].data();
        let (o, i, k) = (6, 8, 9);
        let approx = |fo: usize, c: usize, yx: usize| -> f64 {
            let p = |n: &str| f.params[n].data();
            match method {
                ConvMethod::Spatial => (0..3)
                    .map(|j| {
                        p("c2_v.weight")[(j * i + c) * 3 + yx / 3] as f64
                            * p("c2.weight")[(fo * 3 + j) * 3 + yx % 3] as f64
                    })
                    .sum(),
                ConvMethod::Tucker2 => {
                    let ri = c2.input_rank.unwrap();
                    let mut v = 0.0;
                    for a in 0..3 {
                        for b in 0..ri {
                            v += p("c2.weight")[fo * 3 + a] as f64
                                * p("c2_core.weight")[(a * ri + b) * k + yx] as f64
                                * p("c2_in.weight")[b * i + c] as f64;
                        }
                    }
                    v
                }
                ConvMethod::Separable => unreachable!("tested on its own"),
            }
        };
        let (mut resid, mut total) = (0.0, 0.0);
        for fo in 0..o {
            for c in 0..i {
                for yx in 0..k {
                    let x = w[(fo * i + c) * k + yx] as f64;
                    resid += (x - approx(fo, c, yx)).powi(2);
                    total += x * x;
                }
            }
        }
        assert!(
            (resid / total - (1.0 - c2.energy)).abs() < 1e-4,
            "{method:?}: {} vs {}",
            resid / total,
            1.0 - c2.energy
        );
        assert!(f.num_params() < m.num_params());
    }
    let e = factorize_with(
        &m,
        Some(&["pw".to_string()]),
        Rank::Fixed(1),
        Some(ConvMethod::Spatial),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("'pw'") && e.contains("kernel above 1x1"), "{e}");
    let e = factorize(&m, Some(&["c1".to_string()]), Rank::Fixed(1))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no Linear layer named 'c1'"), "{e}");
}

#[test]
fn a_mac_budget_is_met_and_the_sensitive_layer_keeps_the_higher_rank() {
    let m = conv_model();
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let x = Tensor::from_vec(
        vec![4, 3, 10, 10],
        (0..1200).map(|_| rng.random_range(-1.0..1.0)).collect(),
    );
    let want = pare::native::infer(&m, &x).unwrap();
    // A stand-in for accuracy: closeness to the original's outputs, where c1 matters 20 times
    // as much as c2.
    let mut calls = 0;
    let mut eval = |f: &Model| -> pare::Result<f64> {
        calls += 1;
        let d = max_diff(&pare::native::infer(f, &x)?, &want) as f64;
        let c1_changed = f.graph.node("c1_core").is_some();
        Ok(1.0 - d * if c1_changed { 20.0 } else { 1.0 })
    };
    let layers = Some(vec!["c1".to_string(), "c2".to_string()]);
    let (f, rows, report) =
        factorize_for_macs(&m, layers.as_deref(), Some(ConvMethod::Tucker2), 0.7, &mut eval).unwrap();
    assert!(
        f.macs() as f64 <= 0.7 * m.macs() as f64,
        "{} of {}",
        f.macs(),
        m.macs()
    );
    assert_eq!(report.base_macs, m.macs());
    assert_eq!(calls, 1 + report.trials.len());
    assert!(report.trials.iter().all(|t| t.macs_saved > 0));
    let rank = |l: &str| {
        rows.iter()
            .find(|r| r.layer == l)
            .map(|r| (r.factorized, r.rank))
            .unwrap()
    };
    let (c1, c2) = (rank("c1"), rank("c2"));
    assert!(c2.0, "{rows:?}");
    assert!(!c1.0 || c1.1 > c2.1, "the sensitive layer gave up more: {rows:?}");
    for frac in [0.0, 1.0, f64::NAN] {
        let e = factorize_for_macs(&m, None, Some(ConvMethod::Tucker2), frac, &mut |_| Ok(1.0)).unwrap_err();
        assert!(e.to_string().contains("MAC budget"), "{e}");
    }
    let e = factorize_for_macs(&m, None, Some(ConvMethod::Tucker2), 0.001, &mut |_| Ok(1.0)).unwrap_err();
    assert!(e.to_string().contains("out of reach"), "{e}");
}

/// Sets conv `name`'s weight to a depthwise-separable one: `W[f, c, yx] = p[f, c] d[c, yx]`.
fn separable_weight(m: &mut Model, name: &str, rng: &mut ChaCha8Rng) {
    let w = m.params.get_mut(&format!("{name}.weight")).unwrap();
    let (o, i, k) = (w.shape()[0], w.shape()[1], w.shape()[2] * w.shape()[3]);
    let (p, d) = (rand_vec(rng, o * i), rand_vec(rng, i * k));
    let data = w.data_mut();
    for f in 0..o {
        for c in 0..i {
            for yx in 0..k {
                data[(f * i + c) * k + yx] = (p[f * i + c] * d[c * k + yx] * 0.5) as f32;
            }
        }
    }
}

#[test]
fn a_separable_conversion_is_exact_on_separable_weights_and_refits_on_data() {
    use pare::lowrank::refit_pointwise;
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let x = Tensor::from_vec(
        vec![4, 3, 10, 10],
        (0..1200).map(|_| rng.random_range(-1.0..1.0)).collect(),
    );
    let layers = vec!["c1".to_string(), "c2".to_string()];
    let mut m = conv_model();
    separable_weight(&mut m, "c1", &mut rng);
    separable_weight(&mut m, "c2", &mut rng);
    let (f, rows) = factorize_with(&m, Some(&layers), Rank::Fixed(1), Some(ConvMethod::Separable)).unwrap();
    assert!(
        rows.iter().all(|r| r.factorized && r.energy > 1.0 - 1e-6),
        "{rows:?}"
    );
    assert_eq!(f.params["c2_dw.weight"].shape(), &[8, 1, 3, 3]);
    assert_eq!(f.params["c2.weight"].shape(), &[6, 8, 1, 1]);
    assert_eq!(
        f.graph.node("c2_dw").unwrap().op,
        pare::ir::graph::ops::conv_grouped(8, 8, 3, 1, 1, 8, false)
    );
    let want = pare::native::infer(&m, &x).unwrap();
    assert!(max_diff(&pare::native::infer(&f, &x).unwrap(), &want) < 1e-4);
    let engine = pare::exec::infer(&f, &x, &Default::default(), &[])
        .unwrap()
        .output;
    assert!(max_diff(&engine, &want) < 1e-4);

    // Unnamed, the stem (3 input channels) stays a full convolution.
    let (_, rows) = factorize_with(&m, None, Rank::Fixed(1), Some(ConvMethod::Separable)).unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r.layer.as_str()).collect();
    assert_eq!(names, ["c2", "fc"]);

    // On a general weight the rank-1 fit is approximate; refitting the pointwise layers on data
    // brings each converted layer's output closer to the original's.
    let m = conv_model();
    let (f, _) = factorize_with(&m, Some(&layers), Rank::Fixed(1), Some(ConvMethod::Separable)).unwrap();
    let err = |model: &Model| -> f64 {
        let taps = ["c2".to_string()];
        let a = pare::exec::infer(model, &x, &Default::default(), &taps)
            .unwrap()
            .taps;
        let b = pare::exec::infer(&m, &x, &Default::default(), &taps)
            .unwrap()
            .taps;
        a["c2"]
            .data()
            .iter()
            .zip(b["c2"].data())
            .map(|(p, q)| ((p - q) as f64).powi(2))
            .sum()
    };
    let refit = refit_pointwise(&f, &m, &layers, std::slice::from_ref(&x)).unwrap();
    let (before, after) = (err(&f), err(&refit));
    assert!(after < 0.9 * before, "{before} -> {after}");
    assert_ne!(
        refit.params["c1.bias"], f.params["c1.bias"],
        "the bias is refitted too"
    );
    let e = refit_pointwise(&f, &m, &["fc".to_string()], &[x])
        .unwrap_err()
        .to_string();
    assert!(e.contains("'fc' is not a depthwise-separable conversion"), "{e}");
}

/// Gaussian noise of standard deviation `std`, Box-Muller on a seeded stream.
fn gaussian(rng: &mut ChaCha8Rng, n: usize, std: f64) -> Vec<f64> {
    (0..n)
        .map(|_| {
            let (u1, u2): (f64, f64) = (1.0 - rng.random::<f64>(), rng.random());
            std * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
        })
        .collect()
}

/// `rows x cols`: `rank` components of strength well above the noise, plus noise of `std`.
fn signal_plus_noise(rows: usize, cols: usize, rank: usize, std: f64, seed: u64) -> nalgebra::DMatrix<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let a = nalgebra::DMatrix::from_vec(rows, rank, gaussian(&mut rng, rows * rank, 1.0));
    let b = nalgebra::DMatrix::from_vec(rank, cols, gaussian(&mut rng, rank * cols, 1.0));
    let noise = nalgebra::DMatrix::from_vec(rows, cols, gaussian(&mut rng, rows * cols, std));
    a * b * 0.5 + noise
}

/// EVBMF finds the number of components that stand above the noise and the noise's variance,
/// with nothing to tune; on noise alone it finds none.
#[test]
fn vbmf_finds_the_signal_rank_and_the_noise_level() {
    for (rows, cols, rank, std) in [(60, 100, 5, 0.1), (120, 80, 12, 0.2), (64, 64, 3, 0.05)] {
        let m = signal_plus_noise(rows, cols, rank, std, rows as u64);
        let values: Vec<f64> = m.singular_values().iter().copied().collect();
        let v = pare::lowrank::vbmf::vbmf(&values, rows, cols);
        assert_eq!(v.rank, rank, "{rows}x{cols}: {v:?}");
        let rel = (v.noise_var / (std * std) - 1.0).abs();
        assert!(
            rel < 0.15,
            "{rows}x{cols}: noise variance {} vs {}",
            v.noise_var,
            std * std
        );
    }
    let noise = signal_plus_noise(50, 90, 0, 0.3, 7);
    let values: Vec<f64> = noise.singular_values().iter().copied().collect();
    assert_eq!(pare::lowrank::vbmf::vbmf(&values, 50, 90).rank, 0);
    assert_eq!(pare::lowrank::vbmf::vbmf(&[0.0; 4], 4, 6).rank, 0);
}

/// `Rank::Vbmf` picks a Linear layer's rank from its weights: 6 strong components plus noise
/// give rank 6.
#[test]
fn factorize_by_vbmf_keeps_the_components_above_the_noise() {
    let mut b = GraphBuilder::new(vec![100]);
    b.then("fc1", linear(100, 70));
    b.then("relu", Op::Relu);
    b.then("fc2", linear(70, 10));
    let mut m = Model::init(b.finish().unwrap(), 1).unwrap();
    let w = signal_plus_noise(70, 100, 6, 0.05, 11);
    let data: Vec<f32> = (0..70)
        .flat_map(|i| (0..100).map(move |j| (i, j)))
        .map(|(i, j)| w[(i, j)] as f32)
        .collect();
    m.params
        .insert("fc1.weight".into(), Tensor::from_vec(vec![70, 100], data));
    let (f, rows) = factorize_with(&m, Some(&["fc1".to_string()]), Rank::Vbmf, None).unwrap();
    assert_eq!(rows[0].rank, 6, "{:?}", rows[0]);
    assert_eq!(f.params["fc1_v.weight"].shape(), &[6, 100]);
}
