//! `pare factorize`: the report on real data, and bad requests refused before any work.

mod common;

use common::{fails_with, ok, untrained_lenet300};

#[test]
fn factorize_reports_ranks_and_writes_a_smaller_model() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    pare::ir::io::save(&untrained_lenet300(), &base).unwrap();
    let out = tmp.path().join("low");
    let (b, o) = (base.to_str().unwrap(), out.to_str().unwrap());
    let text = ok(&["factorize", b, "--rank", "16", "--layers", "fc1,fc2", "--out", o]);
    assert!(text.contains("parameters / "), "{text}");
    let m = pare::ir::io::load(&out).unwrap();
    assert_eq!(m.params["fc1_v.weight"].shape(), &[16, 784]);
    assert_eq!(m.params["fc2.weight"].shape(), &[100, 16]);
    assert_eq!(m.params["fc3.weight"].shape(), &[10, 100], "fc3 was not named");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("factorize.json")).unwrap()).unwrap();
    assert_eq!(report["layers"][0]["rank"], 16);
    assert_eq!(report["after"]["params"], m.num_params());
    for (args, needle) in [
        (
            vec!["factorize", b, "--out", o],
            "exactly one of --energy, --rank, --macs and --vbmf",
        ),
        (
            vec!["factorize", b, "--energy", "0.9", "--rank", "3", "--out", o],
            "exactly one",
        ),
        (
            vec!["factorize", b, "--vbmf", "--rank", "3", "--out", o],
            "exactly one",
        ),
        (vec!["factorize", b, "--energy", "1.5", "--out", o], "energy 1.5"),
        (
            vec!["factorize", b, "--rank", "8", "--layers", "conv9", "--out", o],
            "no Linear layer named 'conv9'",
        ),
        (vec!["factorize", b, "--rank", "8", "--out", b], "is the input"),
    ] {
        fails_with(&args, &[needle]);
    }
}

#[test]
fn factorize_takes_convolutions_by_spatial_svd_or_tucker2() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    let zm = pare::zoo::ZooModel::parse("lenet5", None, 0.0).unwrap();
    let m = pare::ir::Model::init(zm.build(&[1, 28, 28], 10).unwrap(), 1).unwrap();
    pare::ir::io::save(&m, &base).unwrap();
    let b = base.to_str().unwrap();
    let out = tmp.path().join("separable");
    let o = out.to_str().unwrap();
    let text = ok(&[
        "factorize",
        b,
        "--conv",
        "separable",
        "--calib",
        "64",
        "--finetune-epochs",
        "1",
        "--distill",
        "--out",
        o,
    ]);
    assert!(text.contains("separable"), "{text}");
    let f = pare::ir::io::load(&out).unwrap();
    assert_eq!(f.params["conv2_dw.weight"].shape(), &[20, 1, 5, 5]);
    assert!(f.graph.node("fc1_v").is_none(), "no rule: Linear layers stay");
    assert_eq!(f.params["fc1.weight"].shape(), m.params["fc1.weight"].shape());
    for (method, layer) in [("spatial", "conv2_v"), ("tucker2", "conv2_core")] {
        let out = tmp.path().join(method);
        let o = out.to_str().unwrap();
        let text = ok(&[
            "factorize",
            b,
            "--conv",
            method,
            "--rank",
            "4",
            "--layers",
            "conv2",
            "--out",
            o,
        ]);
        assert!(text.contains("MACs / "), "{text}");
        let f = pare::ir::io::load(&out).unwrap();
        assert!(f.graph.node(layer).is_some(), "{method}: no {layer}");
        assert!(f.macs() < m.macs());
    }
    let out = tmp.path().join("budget");
    let o = out.to_str().unwrap();
    let text = ok(&[
        "factorize",
        b,
        "--conv",
        "tucker2",
        "--macs",
        "0.5",
        "--samples",
        "200",
        "--out",
        o,
    ]);
    assert!(
        text.contains("ranks for 0.") && text.contains("of the MACs"),
        "{text}"
    );
    let f = pare::ir::io::load(&out).unwrap();
    assert!(f.macs() as f64 <= 0.5 * m.macs() as f64);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("factorize.json")).unwrap()).unwrap();
    assert!(!report["budget"]["trials"].as_array().unwrap().is_empty());
    for (args, needle) in [
        (
            vec!["factorize", b, "--macs", "1.5", "--out", o],
            "--macs must be in (0, 1)",
        ),
        (
            vec!["factorize", b, "--macs", "0.5", "--samples", "0", "--out", o],
            "--samples",
        ),
        (
            vec!["factorize", b, "--macs", "0.5", "--rank", "3", "--out", o],
            "exactly one of",
        ),
    ] {
        fails_with(&args, &[needle]);
    }
    let o = tmp.path().join("x");
    fails_with(
        &[
            "factorize",
            b,
            "--conv",
            "spatial",
            "--rank",
            "4",
            "--layers",
            "fc9",
            "--out",
            o.to_str().unwrap(),
        ],
        &["no Linear layer or ungrouped convolution with a kernel above 1x1 named 'fc9'"],
    );
}
