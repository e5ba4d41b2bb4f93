//! `pare train --hashed F`: a HashedNets model trained on real data and saved as its buckets.

mod common;

use common::{fails_with, ok};

#[test]
fn train_hashed_writes_a_model_of_buckets() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("h");
    let o = out.to_str().unwrap();
    let text = ok(&[
        "train", "--model", "lenet300", "--hashed", "8", "--epochs", "1", "--lr", "0.1", "--val", "50000",
        "--out", o,
    ]);
    assert!(text.contains("33,"), "about 33k parameters: {text}");
    let m = pare::ir::io::load(&out).unwrap();
    assert_eq!(m.graph.node("fc1").unwrap().op.kind(), "hashed_linear");
    assert_eq!(m.params["fc1.weight"].shape(), &[29_400]);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["hashed"], 8.0);
    assert!(report["test_accuracy"].as_f64().unwrap() > 0.5, "{report}");
    fails_with(
        &[
            "train", "--model", "lenet300", "--hashed", "0.5", "--epochs", "1", "--out", o,
        ],
        &["factor of 0.5"],
    );
}
