//! `pare compress` and `pare quantize` end to end on the real data set: the file decodes to the
//! evaluated model, resume skips finished stages, and bad recipes and files fail clearly.

mod common;

use common::{fails_with, ok, trained};

const RECIPE: &str = r#"
[model]
zoo = "lenet300"

[[stage]]
train.train = { epochs = 1, lr = 0.01 }

[[stage]]
[stage.prune]
layers = { fc1 = 0.9, fc2 = 0.9, fc3 = 0.7 }
prune_epochs = 1
train = { epochs = 1, lr = 0.01 }

[[stage]]
[stage.cluster]
bits = 4
train = { epochs = 1, lr = 0.0001 }
"#;

fn json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn compress_writes_a_file_that_evaluates_like_the_last_stage_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("r.toml");
    std::fs::write(&recipe, RECIPE).unwrap();
    let out = dir.path().join("out");
    let (r, o) = (recipe.to_str().unwrap(), out.to_str().unwrap());
    let text = ok(&["compress", "--recipe", r, "--out", o]);
    assert!(text.contains("Compression ratio"), "{text}");
    let report = json(&out.join("report.json"));
    let ratio = report["ratio"].as_f64().unwrap();
    assert!(ratio > 20.0, "ratio {ratio}");
    let stages = report["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 4);
    let last = stages[3]["accuracy"].as_f64().unwrap();
    assert_eq!(report["file_accuracy"].as_f64().unwrap(), last);
    assert!(last > 0.75, "accuracy {last}");
    // Every byte of the file is in the accounting.
    let file = out.join("model.pare");
    let size = std::fs::metadata(&file).unwrap().len();
    assert_eq!(report["file_bytes"].as_u64().unwrap(), size);
    // The file evaluates by itself to the same accuracy and shows its sparsity.
    let eval = ok(&["eval", file.to_str().unwrap(), "--json"]);
    let acc = serde_json::from_str::<serde_json::Value>(&eval).unwrap()["accuracy"]
        .as_f64()
        .unwrap();
    assert!((acc - last).abs() < 1e-6, "{acc} vs {last}");
    assert!(ok(&["info", file.to_str().unwrap()]).contains("fc1"));
    let lat = ok(&["bench", "latency", file.to_str().unwrap(), "--reps", "2"]);
    assert!(lat.contains("266,200 MACs"), "{lat}");
    // A resumed run reuses every finished stage and writes the same file.
    let again = ok(&["compress", "--recipe", r, "--out", o, "--resume"]);
    assert!(!again.contains("== stage"), "no stage should run again: {again}");
    assert_eq!(std::fs::metadata(&file).unwrap().len(), size);
    // A corrupt file is a clear error naming it.
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[100] ^= 1;
    let bad = dir.path().join("bad.pare");
    std::fs::write(&bad, &bytes).unwrap();
    fails_with(&["eval", bad.to_str().unwrap()], &["bad.pare", "checksum"]);
}

#[test]
fn quantize_ptq_and_qat_report_their_accuracy() {
    let dir = tempfile::tempdir().unwrap();
    let base = trained(dir.path());
    let ptq = dir.path().join("ptq");
    let text = ok(&[
        "quantize",
        &base,
        "--out",
        ptq.to_str().unwrap(),
        "--bits",
        "8",
        "--act-bits",
        "8",
        "--observer",
        "kl",
    ]);
    assert!(text.contains("activations 8 bits"), "{text}");
    let r = json(&ptq.join("report.json"));
    let (start, after) = (
        r["stages"][0]["accuracy"].as_f64().unwrap(),
        r["file_accuracy"].as_f64().unwrap(),
    );
    assert!(
        (start - after).abs() < 0.01,
        "8-bit PTQ moved accuracy {start} -> {after}"
    );
    // 7-bit weights under 8-bit activations run on the native engine's integer kernels, with
    // the accuracy the training engine gave the file.
    let int8 = dir.path().join("int8");
    ok(&[
        "quantize",
        &base,
        "--out",
        int8.to_str().unwrap(),
        "--bits",
        "7",
        "--act-bits",
        "8",
    ]);
    let file_acc = json(&int8.join("report.json"))["file_accuracy"].as_f64().unwrap();
    let native = ok(&[
        "eval",
        int8.join("model.pare").to_str().unwrap(),
        "--native",
        "--json",
    ]);
    let n: serde_json::Value = serde_json::from_str(&native).unwrap();
    assert!(
        (n["accuracy"].as_f64().unwrap() - file_acc).abs() < 2e-3,
        "{native} vs {file_acc}"
    );
    let kernels = n["layer_kernels"].as_object().unwrap();
    assert!(
        !kernels.is_empty() && kernels.keys().all(|k| k.contains("int8")),
        "{native}"
    );
    let qat = dir.path().join("qat");
    ok(&[
        "quantize",
        &base,
        "--out",
        qat.to_str().unwrap(),
        "--bits",
        "3",
        "--qat-epochs",
        "1",
        "--huffman",
    ]);
    let r = json(&qat.join("report.json"));
    assert!(r["ratio"].as_f64().unwrap() > 8.0);
    let rejected = dir.path().join("rejected");
    let rejected = rejected.to_str().unwrap();
    fails_with(
        &["quantize", &base, "--out", rejected, "--bits", "1"],
        &["--bits 1", "2..=16"],
    );
    fails_with(
        &["quantize", &base, "--out", rejected, "--act-bits", "17"],
        &["--act-bits 17"],
    );
}

#[test]
fn bad_recipes_fail_before_any_work_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o");
    let head = "[model]\nzoo = \"lenet300\"\n[[stage]]\n";
    let no_training = "train = { epochs = 0, lr = 0.1 }\n";
    // (file name, what follows the first `[[stage]]`, what the error must say)
    let cases: [(&str, String, &[&str]); 7] = [
        (
            "typo.toml",
            "[stage.cluster]\nbits = 4\nint = \"linear\"\n".into(),
            &["typo.toml", "line 6", "unknown field `int`"],
        ),
        (
            "layer.toml",
            "[stage.prune]\nlayers = { fc9 = 0.5 }\ntrain = { epochs = 1, lr = 0.1 }\n".into(),
            &["stage 1 (prune)", "fc9"],
        ),
        (
            "order.toml",
            "cluster.bits = 4\n[[stage]]\nquantize.bits = 8\n".into(),
            &["stage 2 (quantize)", "already encoded"],
        ),
        (
            "late.toml",
            format!("quantize.bits = 8\n[[stage]]\n[stage.structured]\nratio = 0.5\n{no_training}"),
            &["stage 2 (structured)", "before the quantize stage"],
        ),
        (
            "unknown.toml",
            format!("[stage.structured]\nratio = 0.5\nexclude = [\"fc7\"]\n{no_training}"),
            &["stage 1 (structured)", "fc7"],
        ),
        (
            "output.toml",
            format!("[stage.structured]\nlayers = {{ fc3 = 0.5 }}\n{no_training}"),
            &["stage 1 (structured)", "fc3", "no prunable channels"],
        ),
        (
            "criterion.toml",
            format!("[stage.structured]\ncriterion = \"l3\"\n{no_training}"),
            &["criterion.toml", "line 5", "l3"],
        ),
    ];
    for (name, body, needles) in cases {
        let recipe = dir.path().join(name);
        std::fs::write(&recipe, format!("{head}{body}")).unwrap();
        fails_with(
            &[
                "compress",
                "--recipe",
                recipe.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ],
            needles,
        );
    }
    assert!(!out.exists(), "nothing may be written for a rejected recipe");
}

#[test]
fn a_pruned_model_is_fine_tuned_by_distilling_from_the_original() {
    let dir = tempfile::tempdir().unwrap();
    let base = trained(dir.path());
    let recipe = dir.path().join("kd.toml");
    std::fs::write(
        &recipe,
        format!(
            "[model]\ndir = \"{base}\"\n[[stage]]\n[stage.prune]\nlayers = {{ fc1 = 0.9 }}\nramp = \"one_shot\"\n\
             train = {{ epochs = 1, lr = 0.01 }}\n[[stage]]\n[stage.distill]\ntemperature = 2.0\n\
             train = {{ epochs = 1, lr = 0.01 }}\n"
        ),
    )
    .unwrap();
    let out = dir.path().join("out");
    let text = ok(&[
        "compress",
        "--recipe",
        recipe.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(text.contains("KD from the starting model"), "{text}");
    let r = json(&out.join("report.json"));
    let stages = r["stages"].as_array().unwrap();
    assert_eq!(stages[2]["name"], "distill");
    // Pruned weights stay pruned through distillation.
    let kept = stages[2]["nonzero_weights"].as_u64().unwrap();
    assert_eq!(kept, stages[1]["nonzero_weights"].as_u64().unwrap());
    assert!(stages[2]["accuracy"].as_f64().unwrap() > 0.7);
}

#[test]
fn a_structured_stage_shrinks_the_model_then_distills_and_quantizes_in_one_recipe() {
    let dir = tempfile::tempdir().unwrap();
    let base = trained(dir.path());
    let recipe = dir.path().join("shrink.toml");
    std::fs::write(
        &recipe,
        format!(
            "[model]\ndir = \"{base}\"\n\
             [[stage]]\n[stage.structured]\ncriterion = \"taylor\"\nratio = 0.5\nsteps = 2\ncalib_batches = 2\n\
             train = {{ epochs = 1, lr = 0.01 }}\n\
             [[stage]]\n[stage.distill]\ntemperature = 2.0\ntrain = {{ epochs = 1, lr = 0.01 }}\n\
             [[stage]]\nquantize.bits = 8\n"
        ),
    )
    .unwrap();
    let out = dir.path().join("out");
    let (r, o) = (recipe.to_str().unwrap(), out.to_str().unwrap());
    let text = ok(&["compress", "--recipe", r, "--out", o]);
    assert!(
        text.contains("taylor: ") && text.contains("in 2 step(s)"),
        "{text}"
    );
    let report = json(&out.join("report.json"));
    let stages = report["stages"].as_array().unwrap();
    assert_eq!(stages[1]["name"], "structured");
    // Half of fc1's and fc2's neurons go (fc2 loses inputs too): about a third of the
    // starting model's weights are left, counted against the starting total.
    let kept =
        |s: &serde_json::Value| s["nonzero_weights"].as_f64().unwrap() / s["weights"].as_f64().unwrap();
    assert_eq!(stages[1]["weights"], stages[0]["weights"]);
    let k = kept(&stages[1]);
    assert!((0.45..0.55).contains(&k), "kept {k}");
    assert!(stages[1]["accuracy"].as_f64().unwrap() > 0.75, "{text}");
    // The distilled student and the file keep the smaller architecture.
    assert_eq!(stages[2]["nonzero_weights"], stages[1]["nonzero_weights"]);
    let file = out.join("model.pare");
    let info = ok(&["info", file.to_str().unwrap()]);
    let width = |layer: &str| -> usize {
        let row = info.lines().find(|l| l.starts_with(layer)).unwrap();
        let open = row.find('[').unwrap();
        row[open + 1..row.find(']').unwrap()].parse().unwrap()
    };
    // Two steps of 29.3% each, rounded per step, leave 151 of 300 and 51 of 100.
    assert_eq!((width("fc1 "), width("fc2 ")), (151, 51), "{info}");
    let acc = stages[3]["accuracy"].as_f64().unwrap();
    assert_eq!(report["file_accuracy"].as_f64().unwrap(), acc);
    // Resume reloads the smaller architecture from the saved stage and writes the same file.
    let size = std::fs::metadata(&file).unwrap().len();
    let again = ok(&["compress", "--recipe", r, "--out", o, "--resume"]);
    assert!(!again.contains("== stage"), "{again}");
    assert_eq!(std::fs::metadata(&file).unwrap().len(), size);
}
