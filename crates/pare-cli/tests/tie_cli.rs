//! `pare train --tie` and `pare tie`: ALBERT-style tied ViT blocks trained on real data, a
//! trained model's blocks tied after the fact, each stored once; bad block lists refused.

mod common;

use common::{fails_with, ok};

const BLOCKS: &str = "blocks.0,blocks.1,blocks.2,blocks.3";

fn report(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn tied_blocks_train_and_trained_blocks_tie() {
    let tmp = tempfile::tempdir().unwrap();
    let (tied, dense, after) = (tmp.path().join("t"), tmp.path().join("d"), tmp.path().join("a"));
    let (t, d, a) = (
        tied.to_str().unwrap(),
        dense.to_str().unwrap(),
        after.to_str().unwrap(),
    );
    let train = |out: &str, extra: &[&str]| {
        let mut args = vec![
            "train",
            "--model",
            "vit",
            "--epochs",
            "1",
            "--val",
            "55000",
            "--optimizer",
            "adamw",
            "--out",
            out,
        ];
        args.extend_from_slice(extra);
        ok(&args)
    };
    // Three blocks' attention and MLP (33,216 parameters each) read block 0's.
    let text = train(t, &["--tie", BLOCKS]);
    assert!(text.contains("39,370 parameters"), "{text}");
    let m = pare::ir::io::load(&tied).unwrap();
    assert_eq!(m.graph.ties["blocks.2.fc1"], "blocks.0.fc1");
    assert!(
        !m.graph.ties.contains_key("blocks.2.n1"),
        "LayerNorms stay per block"
    );
    assert!(
        report(&tied.join("report.json"))["test_accuracy"]
            .as_f64()
            .unwrap()
            > 0.4
    );

    train(d, &[]);
    let text = ok(&["tie", d, "--blocks", BLOCKS, "--tie-norms", "--out", a]);
    assert!(
        text.contains("15 layers of 3 blocks now compute with those of blocks.0"),
        "{text}"
    );
    let r = report(&after.join("tie.json"));
    assert_eq!(r["after"]["params"], 139_018 - 3 * 33_472);
    let (before, after_bytes) = (
        r["before"]["weights_bytes"].as_u64().unwrap(),
        r["after"]["weights_bytes"].as_u64().unwrap(),
    );
    assert!(
        before - after_bytes >= 4 * 3 * 33_472,
        "{before} -> {after_bytes}"
    );
    assert_eq!(
        pare::ir::io::load(&after).unwrap().num_params(),
        139_018 - 3 * 33_472
    );

    let o = tmp.path().join("x");
    let o = o.to_str().unwrap();
    fails_with(
        &["tie", d, "--blocks", "blocks.0", "--out", o],
        &["at least two blocks"],
    );
    fails_with(
        &["tie", d, "--blocks", "blocks.0,blocks.9", "--out", o],
        &["'blocks.9.': no such block"],
    );
    fails_with(
        &["tie", t, "--blocks", "blocks.0,blocks.1", "--out", o],
        &["tied already"],
    );
    fails_with(
        &[
            "train",
            "--model",
            "vit",
            "--tie-norms",
            "--epochs",
            "1",
            "--out",
            o,
        ],
        &["--tie-norms goes with --tie"],
    );
    fails_with(
        &[
            "factorize",
            t,
            "--energy",
            "0.9",
            "--layers",
            "blocks.1.fc1",
            "--out",
            o,
        ],
        &["'blocks.1.fc1' shares its parameters"],
    );
}
