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

/// `--real`: the real-valued tensors of model.pare in f16, or the real layers' weights as
/// 8-bit codes; the file is smaller and its own accuracy is reported (and is what `eval` of
/// the file gives).
#[test]
fn binarize_stores_the_real_valued_tensors_as_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let mut sizes = Vec::new();
    for real in ["f32", "f16", "int8"] {
        let out = tmp.path().join(real);
        let o = out.to_str().unwrap();
        ok(&[
            "binarize",
            "--model",
            "lenet300",
            "--method",
            "bnn",
            "--epochs",
            "1",
            "--no-float",
            "--real",
            real,
            "--out",
            o,
        ]);
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("binarize.json")).unwrap()).unwrap();
        sizes.push(report["model_pare_bytes"].as_u64().unwrap());
        let file = out.join("model.pare");
        let eval: serde_json::Value =
            serde_json::from_str(&ok(&["eval", file.to_str().unwrap(), "--json"])).unwrap();
        let file_acc = &report["model_pare_accuracy"];
        match real {
            "f32" => assert!(file_acc.is_null(), "{report}"),
            _ => assert_eq!(file_acc.as_f64(), eval["accuracy"].as_f64(), "{report}"),
        }
        assert!(
            (eval["accuracy"].as_f64().unwrap() - report["binary"]["accuracy"].as_f64().unwrap()).abs()
                < 0.01,
            "{real}: {report}"
        );
        // `pare info` of the file says how each layer's weights are held.
        let info = ok(&["info", file.to_str().unwrap()]);
        let held = |layer: &str| {
            let row = info
                .lines()
                .find(|l| l.starts_with(&format!("{layer} ")))
                .unwrap();
            row.split_whitespace().last().unwrap().to_string()
        };
        assert_eq!(
            (held("fc1").as_str(), held("fc2").as_str()),
            ("1-bit", "1-bit"),
            "{info}"
        );
        let (fc3, bn) = match real {
            "int8" => ("int8", "f16"),
            other => (other, other),
        };
        assert_eq!(
            (held("fc3").as_str(), held("fc1_bn").as_str()),
            (fc3, bn),
            "{info}"
        );
    }
    // fc3's 1,000 weights: 4 bytes each, then 2, then 1 (its 100 + 10 biases and the
    // BatchNorms' 1,600 values go to 2 bytes in both).
    assert!(sizes[0] >= sizes[1] + 2 * 1000 + 2 * 1600, "{sizes:?}");
    assert!(sizes[1] >= sizes[2] + 1000 - 100, "{sizes:?}");
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
