//! `pare train --hashed F`: a HashedNets model trained on real data and saved as its buckets;
//! `pare hash`: a trained model's layers hashed, fitted and fine-tuned; bad requests refused.

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

#[test]
fn hash_fits_a_trained_model_and_fine_tunes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (dense, hashed) = (tmp.path().join("d"), tmp.path().join("h"));
    let (d, h) = (dense.to_str().unwrap(), hashed.to_str().unwrap());
    ok(&[
        "train", "--model", "lenet300", "--epochs", "1", "--lr", "0.1", "--val", "50000", "--out", d,
    ]);
    let text = ok(&[
        "hash",
        d,
        "--factor",
        "8",
        "--layers",
        "fc1,fc2",
        "--finetune-epochs",
        "1",
        "--out",
        h,
    ]);
    assert!(
        text.contains("fc1") && text.contains("235200") && text.contains("29400"),
        "{text}"
    );
    assert!(
        text.contains("right after hashing") && text.contains("weights file /"),
        "{text}"
    );
    let m = pare::ir::io::load(&hashed).unwrap();
    assert_eq!(m.graph.node("fc2").unwrap().op.kind(), "hashed_linear");
    assert_eq!(
        m.graph.node("fc3").unwrap().op.kind(),
        "linear",
        "not named, left dense"
    );
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(hashed.join("hash.json")).unwrap()).unwrap();
    assert_eq!(r["after"]["params"], 29_400 + 300 + 3_750 + 100 + 1_010);
    assert!(
        r["after"]["weights_bytes"].as_u64().unwrap() * 6 < r["before"]["weights_bytes"].as_u64().unwrap()
    );
    assert!(r["hashed_accuracy"].as_f64().is_some(), "{r}");
    assert!(r["after"]["accuracy"].as_f64().unwrap() > 0.6, "{r}");

    let o = tmp.path().join("x");
    let o = o.to_str().unwrap();
    fails_with(&["hash", d, "--factor", "0", "--out", o], &["factor of 0"]);
    fails_with(
        &["hash", d, "--factor", "8", "--layers", "fc9", "--out", o],
        &["fc9"],
    );
    fails_with(
        &["hash", h, "--factor", "8", "--layers", "fc1", "--out", o],
        &["fc1"],
    );
}
