//! The `pare` binary end to end on the real Fashion-MNIST set: train, eval, info, zoo, bench,
//! and the errors a user sees for bad input (exit code 1, a message naming the problem).

mod common;

use std::path::Path;

use common::{fails_with, ok, pare, stderr, stdout};

#[test]
fn zoo_lists_models_with_pytorch_parameter_counts() {
    let o = pare(&["zoo"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = stdout(&o);
    assert!(s.contains("lenet5") && s.contains("431,080"), "{s}");
    assert!(s.contains("resnet20") && s.contains("272,186"), "{s}");
}

#[test]
fn train_eval_info_on_real_data() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m");
    let out_s = out.to_str().unwrap();
    let o = pare(&[
        "train", "--model", "lenet300", "--epochs", "1", "--val", "5000", "--out", out_s,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("val loss"), "{}", stdout(&o));
    for f in [
        "arch.json",
        "weights.safetensors",
        "report.json",
        "checkpoint.safetensors",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let acc = report["test_accuracy"].as_f64().unwrap();
    assert!(acc > 0.8, "one epoch of LeNet-300-100 reaches > 0.8, got {acc}");
    assert_eq!(report["params"], 266_610);
    assert_eq!(report["history"].as_array().unwrap().len(), 1);

    let o = pare(&["eval", out_s, "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(
        (v["accuracy"].as_f64().unwrap() - acc).abs() < 1e-6,
        "eval agrees with the report"
    );

    let o = pare(&["info", out_s]);
    let s = stdout(&o);
    assert!(
        s.contains("fc1") && s.contains("235,500") && s.contains("266,610 parameters"),
        "{s}"
    );

    // Resuming a finished run with more epochs continues from the checkpoint.
    let o = pare(&[
        "train", "--model", "lenet300", "--epochs", "2", "--val", "5000", "--out", out_s, "--resume",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = stdout(&o);
    assert!(s.contains("epoch   2/2") && !s.contains("epoch   1/2"), "{s}");
}

#[test]
fn bench_train_reports_json() {
    // A small model keeps this quick: one epoch of LeNet-300-100.
    let o = pare(&["bench", "train", "--model", "lenet300", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert!(v["mean_seconds_per_epoch"].as_f64().unwrap() > 0.0);
    assert!(v["images_per_sec"].as_f64().unwrap() > 0.0);
}

#[test]
fn bad_input_gets_a_clear_error() {
    fails_with(
        &["train", "--model", "alexnet", "--epochs", "1", "--out", "/tmp/x"],
        &["unknown model 'alexnet'"],
    );
    fails_with(
        &["train", "--model", "resnet21", "--epochs", "1", "--out", "/tmp/x"],
        &["6n+2"],
    );
    fails_with(
        &["eval", "/nonexistent/model"],
        &["/nonexistent/model: no such file or directory"],
    );
    fails_with(
        &["info", "/nonexistent/model"],
        &["/nonexistent/model: no such file or directory"],
    );
    fails_with(
        &["eval", "nothere.pare"],
        &["nothere.pare: no such file or directory"],
    );
    // An OS error is said once, after its path, not again as a cause.
    let o = common::pare(&["eval", "/tmp", "--data", "/nonexistent/data"]);
    let e = stderr(&o);
    assert!(e.matches("os error 2").count() <= 1, "{e}");
    fails_with(&["eval", "/tmp", "--data", "/nonexistent/data"], &["arch.json"]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m");
    fails_with(
        &[
            "train",
            "--model",
            "lenet300",
            "--epochs",
            "1",
            "--out",
            out.to_str().unwrap(),
            "--data",
            "/nonexistent/data",
        ],
        &["/nonexistent/data", "dataset-fashion-mnist"],
    );
    fails_with(
        &[
            "train",
            "--model",
            "lenet300",
            "--epochs",
            "1",
            "--out",
            out.to_str().unwrap(),
            "--resume",
        ],
        &["no checkpoint to resume from"],
    );
    fails_with(
        &[
            "train",
            "--model",
            "lenet300",
            "--epochs",
            "1",
            "--out",
            out.to_str().unwrap(),
            "--lr",
            "1e9",
            "--val",
            "0",
        ],
        &["diverged"],
    );
    assert!(!Path::new("/tmp/x/arch.json").exists());
}

#[test]
fn eval_picks_one_of_the_graphs_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let base = common::trained(tmp.path());
    // Declare the hidden layer fc2 an extra output: an (untrained) exit of 100 "classes".
    let arch = std::path::Path::new(&base).join("arch.json");
    let text = std::fs::read_to_string(&arch).unwrap();
    let with_exit = text.replacen(
        "\"output\": \"fc3\"",
        "\"output\": \"fc3\", \"extra_outputs\": [\"fc2\"]",
        1,
    );
    assert_ne!(text, with_exit, "arch.json names its output");
    std::fs::write(&arch, with_exit).unwrap();
    let main: serde_json::Value = serde_json::from_str(&ok(&["eval", &base, "--json"])).unwrap();
    let fc3: serde_json::Value =
        serde_json::from_str(&ok(&["eval", &base, "--output", "fc3", "--json"])).unwrap();
    assert_eq!(main, fc3);
    let exit: serde_json::Value =
        serde_json::from_str(&ok(&["eval", &base, "--output", "fc2", "--json"])).unwrap();
    assert_ne!(exit["accuracy"], main["accuracy"]);
    fails_with(
        &["eval", &base, "--output", "relu1"],
        &["relu1", "not an output", "fc3, fc2"],
    );
}

/// Non-finite hyper-parameters and weights are refused with the flag or the tensor named.
#[test]
fn non_finite_values_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m");
    let o = out.to_str().unwrap();
    for wd in ["nan", "inf"] {
        fails_with(
            &[
                "train",
                "--model",
                "lenet300",
                "--epochs",
                "1",
                "--weight-decay",
                wd,
                "--out",
                o,
            ],
            &["weight decay"],
        );
    }
    assert!(!out.exists(), "nothing is written for a refused run");
    let base = dir.path().join("base");
    let mut m = common::untrained_lenet300();
    let b = base.to_str().unwrap();
    pare::ir::io::save(&m, &base).unwrap();
    for p in ["nan", "150", "20"] {
        fails_with(
            &["quantize", b, "--out", o, "--bits", "8", "--percentile", p],
            &["--percentile", "(50, 100]"],
        );
    }
    m.params.get_mut("fc2.bias").unwrap().data_mut()[4] = f32::NAN;
    pare::ir::io::save(&m, &base).unwrap();
    fails_with(&["eval", b], &["fc2.bias", "non-finite", "position 4"]);
}

/// A model too large for memory is refused with what it would need, before anything is
/// allocated or written.
#[test]
fn absurd_sizes_are_refused_with_the_memory_they_need() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m");
    fails_with(
        &[
            "train",
            "--model",
            "mlp",
            "--hidden",
            "1000000000",
            "--epochs",
            "1",
            "--out",
            out.to_str().unwrap(),
        ],
        &["fc1.weight", "TB of f32"],
    );
    assert!(!out.exists());
}

/// Values that would be ignored or silently changed are refused, naming the flag.
#[test]
fn flags_that_would_be_ignored_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o");
    let o = out.to_str().unwrap();
    let base = dir.path().join("base");
    let m = common::untrained_lenet300();
    pare::ir::io::save(&m, &base).unwrap();
    let b = base.to_str().unwrap();
    let structured = ["prune", b, "--out", o, "--method", "structured", "--ratio", "0.5"];
    for extra in [["--steps", "0"], ["--round-to", "0"]] {
        fails_with(
            &[&structured[..], &extra[..]].concat(),
            &["--steps and --round-to"],
        );
    }
    fails_with(
        &[
            &structured[..],
            &["--criterion", "apoz", "--calib-batches", "0"][..],
        ]
        .concat(),
        &["apoz", "--calib-batches"],
    );
    fails_with(
        &[&structured[..], &["--round-to", "100000"][..]].concat(),
        &["round_to 100000 exceeds", "the largest has 300"],
    );
    fails_with(
        &["quantize", b, "--out", o, "--bits", "8", "--act-scope", "graph"],
        &["--act-scope", "give --act-bits"],
    );
    fails_with(
        &[
            "train", "--model", "lenet300", "--hidden", "100", "--epochs", "1", "--out", o,
        ],
        &["--hidden and --dropout are for the mlp model"],
    );
    fails_with(
        &[
            "train",
            "--model",
            "lenet300",
            "--crop-padding",
            "100000",
            "--epochs",
            "1",
            "--out",
            o,
        ],
        &["crop padding 100000 exceeds the 28x28 images"],
    );
    assert!(!out.exists(), "nothing is written for a refused run");
}
