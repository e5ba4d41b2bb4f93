//! `pare exits`: heads trained on real data, thresholds chosen, the saving measured and
//! reported; bad requests refused before any work.

mod common;

use common::{fails_with, ok, untrained_lenet300};

#[test]
fn exits_reports_every_rule_and_writes_the_model_with_its_heads() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    pare::ir::io::save(&untrained_lenet300(), &base).unwrap();
    let out = tmp.path().join("exits");
    let (b, o) = (base.to_str().unwrap(), out.to_str().unwrap());
    let text = ok(&[
        "exits",
        b,
        "--at",
        "relu1",
        "--epochs",
        "1",
        "--rule",
        "entropy",
        "--distill",
        "3",
        "--out",
        o,
    ]);
    for needle in ["confidence", "entropy", "patience", "batch 1", "time saved"] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
    let m = pare::ir::io::load(&out).unwrap();
    assert_eq!(m.graph.extra_outputs, ["exits.0.fc"]);
    assert_eq!(m.params["exits.0.fc.weight"].shape(), &[10, 300]);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("exits.json")).unwrap()).unwrap();
    assert_eq!(report["policy"]["rule"], "entropy");
    assert_eq!(report["training"]["distill"]["temperature"], 3.0);
    assert_eq!(report["macs_if_left"].as_array().unwrap().len(), 2);
    assert_eq!(
        report["measured"]["batch_1"]["left_at"].as_array().unwrap().len(),
        2
    );
    // The run measured decides as the simulation on the test logits does.
    let chosen = report["chosen"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["rule"] == "entropy")
        .unwrap();
    assert_eq!(
        chosen["test"]["left_at"],
        report["measured"]["batch_1"]["left_at"]
    );
    assert!(out.join("exits.svg").exists());

    for (args, needle) in [
        (vec!["exits", b, "--at", "conv9", "--out", o], "conv9"),
        (
            vec!["exits", b, "--at", "relu1", "--budget", "1.5", "--out", o],
            "--budget",
        ),
        (
            vec!["exits", b, "--at", "relu1", "--val", "0", "--out", o],
            "--val",
        ),
        (vec!["exits", b, "--at", "fc3", "--out", o], "output"),
        (
            vec!["exits", o, "--at", "relu1", "--out", b],
            "already has exit heads",
        ),
        (vec!["exits", b, "--at", "relu1", "--out", b], "is the input"),
        (
            vec![
                "exits",
                b,
                "--at",
                "relu1",
                "--train",
                "joint",
                "--distill",
                "2",
                "--out",
                o,
            ],
            "goes with --train frozen",
        ),
        (
            vec!["exits", b, "--at", "relu1", "--distill", "0", "--out", o],
            "positive temperature",
        ),
    ] {
        fails_with(&args, &[needle]);
    }
}
