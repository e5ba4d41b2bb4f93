//! `pare export` and `pare import` end to end on the real Fashion-MNIST set: an exported file
//! evaluates like its model directory, imports back to the same accuracy, writes its test case;
//! `--normalize` and bad ONNX files give clear errors.

mod common;

use common::{fails_with, ok};

#[test]
fn export_import_and_eval_agree_on_the_test_set() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let (file, test, back) = (p("l5.onnx"), p("l5-test"), p("back"));
    let out = ok(&[
        "export",
        "--zoo",
        "lenet5",
        "--seed",
        "2",
        "--onnx",
        &file,
        "--test-data",
        &test,
        "--test-batch",
        "3",
    ]);
    assert!(out.contains("opset 17"), "{out}");
    for f in ["input_0.pb", "output_0.pb"] {
        assert!(
            dir.path().join("l5-test/test_data_set_0").join(f).is_file(),
            "{f}"
        );
    }
    ok(&["import", &file, "--out", &back]);
    // The zoo model normalizes by Fashion-MNIST's statistics; the file and the imported
    // directory carry them, so all three read raw pixels alike.
    let on_file = ok(&["eval", &file]);
    let on_dir = ok(&["eval", &back]);
    assert!(on_file.starts_with("accuracy "), "{on_file}");
    assert_eq!(on_file, on_dir);
    fails_with(
        &["import", &file, "--out", &p("twice"), "--normalize", "0.5,0.25"],
        &["normalizes its input itself", "twice"],
    );
}

#[test]
fn import_normalize_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let raw = p("raw.onnx");
    // A model with no input normalization exports a file without it.
    let m = common::untrained_lenet300();
    assert_eq!(m.graph.input.normalize, Default::default());
    pare::ir::io::save(&m, &dir.path().join("m")).unwrap();
    ok(&["export", &p("m"), "--onnx", &raw]);
    let out = ok(&["import", &raw, "--out", &p("n"), "--normalize", "0.25,0.5"]);
    assert!(out.contains("normalized by mean 0.25 std 0.5"), "{out}");
    for (bad, says) in [
        ("0.5", "means then deviations"),
        ("0.5,0", "normalize.std must be positive numbers"),
        ("nan,0.5", "normalize.mean must be finite numbers"),
        ("0.1,0.2,0.3", "means then deviations"),
        ("0.1,0.2,0.3,0.4", "not an image of 2 channels"),
    ] {
        fails_with(&["import", &raw, "--out", &p("bad"), "--normalize", bad], &[says]);
    }
}

/// An RGB model imported with torchvision's per-channel statistics: three means, then three
/// deviations.
#[test]
fn import_takes_per_channel_statistics() {
    use pare::ir::graph::ops::conv;
    use pare::ir::{GraphBuilder, Model, Op};
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let mut b = GraphBuilder::new(vec![3, 8, 8]);
    b.then("conv", conv(3, 4, 3, 1, 1, true));
    b.then("pool", Op::GlobalAvgPool);
    b.then("flat", Op::Flatten);
    let m = Model::init(b.finish().unwrap(), 1).unwrap();
    pare::ir::io::save(&m, &dir.path().join("m")).unwrap();
    ok(&["export", &p("m"), "--onnx", &p("rgb.onnx")]);
    let stats = "0.485,0.456,0.406,0.229,0.224,0.225";
    let out = ok(&["import", &p("rgb.onnx"), "--out", &p("n"), "--normalize", stats]);
    assert!(
        out.contains("mean [0.485, 0.456, 0.406] std [0.229, 0.224, 0.225]"),
        "{out}"
    );
    let n = pare::ir::io::load(&dir.path().join("n")).unwrap();
    assert_eq!(n.graph.input.normalize.mean, [0.485, 0.456, 0.406]);
}

#[test]
fn a_damaged_onnx_file_names_itself() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cut.onnx");
    let f = file.to_str().unwrap();
    ok(&["export", "--zoo", "lenet300", "--onnx", f]);
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    let out = dir.path().join("m");
    fails_with(&["import", f, "--out", out.to_str().unwrap()], &["cut.onnx"]);
    fails_with(&["eval", f], &["cut.onnx"]);
}

#[test]
fn int8_exports_count_their_integer_layers() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let base = common::trained(dir.path());
    ok(&[
        "quantize",
        &base,
        "--bits",
        "8",
        "--act-bits",
        "8",
        "--out",
        &p("q"),
    ]);
    // fc1 and fc2 read 8-bit quantizers and feed the next one; fc3 writes the logits.
    let qdq = ok(&["export", &p("q/model"), "--onnx", &p("qdq.onnx"), "--qdq"]);
    assert!(qdq.contains("2 layers with int8 weights (QDQ)"), "{qdq}");
    let int = ok(&["export", &p("q/model"), "--onnx", &p("int.onnx"), "--integer-ops"]);
    assert!(int.contains("2 layers as integer ops"), "{int}");
}
