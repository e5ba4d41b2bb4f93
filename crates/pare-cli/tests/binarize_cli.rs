//! `pare binarize`: a BNN trained on real data beside its float network, saved as a model
//! directory and a one-bit-per-weight `model.pare` that evaluates to the reported accuracy and
//! runs the binary kernel; bad requests refused.

mod common;

use common::{fails_with, ok};

#[test]
fn binarize_trains_a_bnn_beside_its_float_network() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("bnn");
    let o = out.to_str().unwrap();
    let text = ok(&[
        "binarize", "--model", "lenet300", "--method", "bnn", "--epochs", "1", "--out", o,
    ]);
    assert!(
        text.contains("binary weights in fc1, fc2") && text.contains("in float"),
        "{text}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("binarize.json")).unwrap()).unwrap();
    let acc = report["binary"]["accuracy"].as_f64().unwrap();
    assert!(acc > 0.7, "{report}");
    assert!(report["float"]["accuracy"].as_f64().unwrap() > 0.7, "{report}");
    // fc1 and fc2 at one bit per weight: the file is far below the f32 weights'.
    let (f32_bytes, pare_bytes) = (
        report["weights_f32_bytes"].as_u64().unwrap(),
        report["model_pare_bytes"].as_u64().unwrap(),
    );
    assert!(f32_bytes > 20 * pare_bytes, "{report}");
    let file = out.join("model.pare");
    let eval = ok(&["eval", file.to_str().unwrap(), "--json"]);
    let e: serde_json::Value = serde_json::from_str(&eval).unwrap();
    assert!(
        (e["accuracy"].as_f64().unwrap() - acc).abs() < 2e-3,
        "{eval} vs {acc}"
    );
    let bench = ok(&["bench", "latency", o, "--reps", "2", "--layers", "8"]);
    assert!(bench.contains("linear binary"), "{bench}");
}

#[test]
fn binarize_refuses_what_it_cannot_do() {
    let tmp = tempfile::tempdir().unwrap();
    let o = tmp.path().join("o");
    let o = o.to_str().unwrap();
    fails_with(
        &[
            "binarize", "--model", "lenet300", "--method", "ternary", "--out", o,
        ],
        &["binaryconnect, bnn or xnor"],
    );
    fails_with(
        &[
            "binarize", "--model", "resnet20", "--method", "xnor", "--epochs", "1", "--out", o,
        ],
        &["chains"],
    );
    fails_with(&["binarize", "--method", "bnn", "--out", o], &["--model"]);
    fails_with(
        &[
            "bench", "gemm", "--dtype", "int2", "--m", "2", "--k", "8", "--n", "8",
        ],
        &["f32, int8, int4 or binary"],
    );
}

#[test]
fn bench_gemm_times_binary_and_int8_layers_beside_f32() {
    for dtype in ["binary", "int8", "int4"] {
        let text = ok(&[
            "bench", "gemm", "--m", "4", "--k", "130", "--n", "70", "--dtype", dtype, "--reps", "3", "--json",
        ]);
        let r: serde_json::Value = serde_json::from_str(&text).unwrap();
        // 4-bit codes run packed two to a byte where the CPU has the 512-bit VNNI path, as
        // bytes on the int8 kernel elsewhere.
        let kernel = r["kernel"].as_str().unwrap();
        assert!(
            kernel.starts_with(&format!("linear {dtype}"))
                || (dtype == "int4" && kernel.starts_with("linear int8")),
            "{r}"
        );
        assert!(r["ms"].as_f64().unwrap() > 0.0 && r["f32_ms"].as_f64().unwrap() > 0.0);
    }
}
