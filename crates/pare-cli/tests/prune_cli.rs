//! `pare prune`, `pare sensitivity` and `pare lottery` end to end on the real data set.

mod common;

use common::{fails_with, ok, trained};

#[test]
fn structured_neuron_pruning_shrinks_and_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let base = trained(dir.path());
    let out = dir.path().join("pruned");
    let s = ok(&[
        "prune",
        &base,
        "--out",
        out.to_str().unwrap(),
        "--method",
        "structured",
        "--criterion",
        "l2",
        "--ratio",
        "0.5",
    ]);
    assert!(s.contains("latency batch 64"), "{s}");
    let info = ok(&["info", out.to_str().unwrap()]);
    // fc1 keeps 150 of 300 neurons, fc2 50 of 100: 784*150+150 + 150*50+50 + 50*10+10.
    assert!(
        info.contains("[150]") && info.contains("125,810 parameters"),
        "{info}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("prune.json")).unwrap()).unwrap();
    assert_eq!(report["surgery"]["removed"]["fc1"].as_array().unwrap().len(), 150);
    assert!(report["after"]["accuracy"].as_f64().unwrap() > 0.5);
    assert!(report["mac_reduction"].as_f64().unwrap() > 1.9);

    // The per-layer profile pairs the layers by name and prints each one's MAC ratio: fc1 lost
    // half its outputs (2x), fc2 half its inputs and outputs (4x). Fused ReLUs have no row.
    let pruned = out.to_str().unwrap();
    let t = ok(&["bench", "latency", &base, pruned, "--reps", "3", "--layers", "4"]);
    let row = |name: &str| {
        t.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} row: {t}"))
            .to_string()
    };
    assert!(row("fc1").ends_with("2.00x"), "{t}");
    assert!(row("fc2").ends_with("4.00x"), "{t}");
    assert!(!t.contains("relu1 "), "{t}");
    assert!(t.contains("speed-up") && t.contains("layers sum to"), "{t}");
    // One model alone: its times, no ratios.
    let alone = ok(&["bench", "latency", pruned, "--reps", "2", "--layers", "2"]);
    assert!(alone.contains("fc1 ") && !alone.contains("speed-up"), "{alone}");
    let j: serde_json::Value = serde_json::from_str(&ok(&[
        "bench", "latency", pruned, "--reps", "2", "--layers", "4", "--json",
    ]))
    .unwrap();
    let times = j[0]["layers"]["times"].as_array().unwrap();
    let macs: u64 = times.iter().map(|t| t["macs"].as_u64().unwrap()).sum();
    assert_eq!(macs, j[0]["macs"].as_u64().unwrap());
    assert!(times.iter().all(|t| t["ms"].as_f64().unwrap() >= 0.0));
    fails_with(
        &["bench", "latency", pruned, "--layers", "0"],
        &["--layers", "at least 1"],
    );
}

#[test]
fn unstructured_layer_sparsity_with_fine_tuning_keeps_zeros() {
    let dir = tempfile::tempdir().unwrap();
    let base = trained(dir.path());
    let out = dir.path().join("sparse");
    ok(&[
        "prune",
        &base,
        "--out",
        out.to_str().unwrap(),
        "--method",
        "unstructured",
        "--layer",
        "fc1=0.92,fc2=0.91,fc3=0.74",
        "--schedule",
        "agp",
        "--prune-epochs",
        "1",
        "--finetune-epochs",
        "1",
    ]);
    let info = ok(&["info", out.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&info).unwrap();
    let sparsity: Vec<f64> = v["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["sparsity"].as_f64())
        .collect();
    for (got, want) in sparsity.iter().zip([0.92, 0.91, 0.74]) {
        assert!((got - want).abs() < 1e-3, "{sparsity:?}");
    }
}

#[test]
fn impossible_prune_requests_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let base = trained(dir.path());
    let out = dir.path().join("x");
    let o = out.to_str().unwrap();
    fails_with(
        &[
            "prune",
            &base,
            "--out",
            o,
            "--method",
            "structured",
            "--ratio",
            "1.0",
        ],
        &["must be in [0, 1)"],
    );
    fails_with(
        &[
            "prune",
            &base,
            "--out",
            o,
            "--method",
            "structured",
            "--ratio",
            "0.5",
            "--exclude",
            "fc9",
        ],
        &["unknown layer 'fc9'"],
    );
    fails_with(
        &[
            "prune",
            &base,
            "--out",
            o,
            "--method",
            "unstructured",
            "--layer",
            "fc7=0.5",
        ],
        &["fc7"],
    );
    fails_with(
        &[
            "prune",
            &base,
            "--out",
            o,
            "--method",
            "unstructured",
            "--layer",
            "fc1",
        ],
        &["expected NAME=FRACTION"],
    );
    fails_with(
        &[
            "prune",
            &base,
            "--out",
            o,
            "--method",
            "structured",
            "--criterion",
            "bn",
            "--ratio",
            "0.5",
        ],
        &["BatchNorm"],
    );
    assert!(!out.exists(), "nothing is written for a refused request");
}

#[test]
fn sensitivity_writes_table_and_plot() {
    let dir = tempfile::tempdir().unwrap();
    let base = trained(dir.path());
    let out = dir.path().join("sens");
    let s = ok(&[
        "sensitivity",
        &base,
        "--out",
        out.to_str().unwrap(),
        "--ratios",
        "0.2,0.8",
        "--samples",
        "1000",
    ]);
    assert!(s.contains("| fc1 |") && s.contains("| fc2 |"), "{s}");
    let svg = std::fs::read_to_string(out.join("sensitivity.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("fc1"));
}

#[test]
fn lottery_runs_rounds_with_the_control() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("lt");
    let s = ok(&[
        "lottery",
        "--out",
        out.to_str().unwrap(),
        "--rounds",
        "2",
        "--epochs",
        "1",
        "--batch-size",
        "256",
    ]);
    assert!(
        s.contains("64.0%") || s.contains("64.1%"),
        "two rounds leave about 64% of the weights: {s}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("lottery.json")).unwrap()).unwrap();
    let rounds = v["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 3);
    assert!(rounds[2]["random_accuracy"].as_f64().unwrap() > 0.5);
    assert!(rounds[2]["ticket_accuracy"].as_f64().unwrap() > 0.5);
}
