//! Every subcommand that reads a model, on a set of damaged model directories and files: exit
//! code 1 with a message naming the file, never a panic, nothing written outside `--out`, the
//! inputs unchanged.

mod common;

use std::path::Path;

use common::{pare, snapshot, stderr, untrained_lenet300};

/// A one-stage recipe (8-bit quantization) starting from the model directory `model`, written
/// as `dir/r.toml`; returns its path.
fn quantize_recipe(dir: &Path, model: &str) -> String {
    let recipe = dir.join("r.toml");
    std::fs::write(
        &recipe,
        format!("[model]\ndir = \"{model}\"\n[[stage]]\n[stage.quantize]\nbits = 8\n"),
    )
    .unwrap();
    recipe.to_str().unwrap().to_string()
}

/// Runs `args` and expects a clean refusal: exit code 1, no panic, every needle in the message,
/// and every file under `root` as it was.
fn refused(case: &str, args: &[&str], needles: &[&str], root: &Path) {
    let before = snapshot(root);
    let run = pare(args);
    let e = stderr(&run);
    assert_eq!(run.status.code(), Some(1), "{case}: {args:?}: {e}");
    assert!(!e.contains("panicked"), "{case}: {args:?}: {e}");
    for n in needles {
        assert!(e.contains(n), "{case}: {args:?} should say {n}: {e}");
    }
    assert_eq!(snapshot(root), before, "{case}: {args:?} changed files");
}

#[test]
fn every_model_reading_command_refuses_damaged_models_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good");
    pare::ir::io::save(&untrained_lenet300(), &good).unwrap();
    let arch = std::fs::read_to_string(good.join("arch.json")).unwrap();
    let weights = std::fs::read(good.join("weights.safetensors")).unwrap();
    // arch.json with fc1's width (300) replaced.
    let fc1_width = |w: usize| -> Box<dyn Fn(&Path)> {
        let text = arch.replace("\"out_features\": 300", &format!("\"out_features\": {w}"));
        Box::new(move |d: &Path| std::fs::write(d.join("arch.json"), &text).unwrap())
    };
    // (directory name, what to damage, a word the error must hold)
    let damaged: Vec<(&str, Box<dyn Fn(&Path)>, &str)> = vec![
        (
            "garbage-arch",
            Box::new(|d: &Path| std::fs::write(d.join("arch.json"), "{ not json").unwrap()),
            "arch.json",
        ),
        ("zero-width", fc1_width(0), "arch.json"),
        ("huge-layer", fc1_width(1_000_000_000), "arch.json"),
        (
            "no-weights",
            Box::new(|d: &Path| std::fs::remove_file(d.join("weights.safetensors")).unwrap()),
            "weights.safetensors",
        ),
        (
            "cut-weights",
            Box::new(|d: &Path| {
                std::fs::write(d.join("weights.safetensors"), &weights[..weights.len() / 2]).unwrap()
            }),
            "weights.safetensors",
        ),
        (
            "nan-weights",
            Box::new(|d: &Path| {
                let mut m = untrained_lenet300();
                m.params.get_mut("fc1.weight").unwrap().data_mut()[0] = f32::NAN;
                pare::ir::io::save(&m, d).unwrap();
            }),
            "fc1.weight",
        ),
    ];
    for (name, damage, needle) in &damaged {
        let dir = tmp.path().join(name);
        pare::ir::io::save(&untrained_lenet300(), &dir).unwrap();
        damage(&dir);
        let d = dir.to_str().unwrap();
        let out = tmp.path().join("out");
        let o = out.to_str().unwrap();
        let r = &quantize_recipe(tmp.path(), d);
        let commands: Vec<Vec<&str>> = vec![
            vec!["eval", d],
            vec!["info", d],
            vec!["bench", "latency", d, "--reps", "1"],
            vec!["prune", d, "--out", o, "--method", "structured", "--ratio", "0.5"],
            vec![
                "prune",
                d,
                "--out",
                o,
                "--method",
                "unstructured",
                "--ratio",
                "0.5",
            ],
            vec!["sensitivity", d, "--out", o, "--samples", "100"],
            vec!["quantize", d, "--out", o, "--bits", "8"],
            common::kd_args(d, o),
            vec!["compress", "--recipe", r, "--out", o],
            vec!["factorize", d, "--rank", "8", "--out", o],
            vec!["exits", d, "--at", "relu1", "--epochs", "1", "--out", o],
            vec!["tie", d, "--blocks", "fc1,fc2", "--out", o],
            vec!["hash", d, "--factor", "8", "--out", o],
            vec!["binarize", d, "--method", "bnn", "--epochs", "1", "--out", o],
        ];
        for args in commands {
            refused(name, &args, &[needle], tmp.path());
        }
    }
}

/// An IDX file's bytes (unsigned bytes).
fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 8, dims.len() as u8];
    dims.iter().for_each(|d| out.extend_from_slice(&d.to_be_bytes()));
    out.extend_from_slice(data);
    out
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(bytes).unwrap();
    z.finish().unwrap()
}

const TRAIN_IMAGES: &str = "train-images-idx3-ubyte.gz";
const TRAIN_LABELS: &str = "train-labels-idx1-ubyte.gz";
const TEST_IMAGES: &str = "t10k-images-idx3-ubyte.gz";
const TEST_LABELS: &str = "t10k-labels-idx1-ubyte.gz";

/// A valid Fashion-MNIST-shaped directory of `n` 28x28 images per split.
fn write_data(dir: &Path, n: u32) {
    std::fs::create_dir_all(dir).unwrap();
    let pixels: Vec<u8> = (0..n * 784).map(|i| (i % 251) as u8).collect();
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    for (images, lbl) in [(TRAIN_IMAGES, TRAIN_LABELS), (TEST_IMAGES, TEST_LABELS)] {
        std::fs::write(dir.join(images), gz(&idx(&[n, 28, 28], &pixels))).unwrap();
        std::fs::write(dir.join(lbl), gz(&idx(&[n], &labels))).unwrap();
    }
}

/// Every subcommand that reads the data set, on damaged data directories: exit code 1 with a
/// message naming the file, before any training, nothing written, the inputs unchanged.
#[test]
fn every_data_reading_command_refuses_damaged_data_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    pare::ir::io::save(&untrained_lenet300(), &model).unwrap();
    let m = model.to_str().unwrap();
    let labels: Vec<u8> = (0..20u8).map(|i| i % 10).collect();
    // (directory name, file to replace, its new bytes, words the error must hold)
    let damaged: Vec<(&str, &str, Vec<u8>, Vec<&str>)> = vec![
        (
            "cut-gzip",
            TRAIN_IMAGES,
            {
                let z = gz(&idx(&[20, 28, 28], &[7; 20 * 784]));
                z[..z.len() / 2].to_vec()
            },
            vec![TRAIN_IMAGES, "gzip"],
        ),
        (
            "bad-magic",
            TRAIN_LABELS,
            gz(&[1, 2, 3, 4, 0, 0, 0, 20]),
            vec![TRAIN_LABELS, "magic"],
        ),
        (
            "huge-declared",
            TRAIN_IMAGES,
            gz(&idx(&[1 << 30, 1 << 30, 28], &[0; 64])),
            vec![TRAIN_IMAGES],
        ),
        (
            "label-count",
            TRAIN_LABELS,
            gz(&idx(&[19], &labels[..19])),
            vec![TRAIN_LABELS, "[20]"],
        ),
        (
            "label-range",
            TEST_LABELS,
            gz(&idx(&[20], &[200; 20])),
            vec![TEST_LABELS, "label 200"],
        ),
        (
            "other-size",
            TEST_IMAGES,
            gz(&idx(&[20, 32, 32], &[1; 20 * 1024])),
            vec![TEST_IMAGES, "[1, 32, 32]"],
        ),
        (
            "empty-test",
            TEST_IMAGES,
            gz(&idx(&[0, 28, 28], &[])),
            vec![TEST_IMAGES, "no images"],
        ),
        (
            "trailing",
            TRAIN_LABELS,
            gz(&[idx(&[20], &labels), vec![9; 5]].concat()),
            vec![TRAIN_LABELS],
        ),
    ];
    for (name, file, bytes, needles) in &damaged {
        let data = tmp.path().join(name);
        write_data(&data, 20);
        if *name == "empty-test" {
            std::fs::write(data.join(TEST_LABELS), gz(&idx(&[0], &[]))).unwrap();
        }
        std::fs::write(data.join(file), bytes).unwrap();
        let d = data.to_str().unwrap();
        let out = tmp.path().join("out");
        let o = out.to_str().unwrap();
        let r = &quantize_recipe(tmp.path(), m);
        let commands: Vec<Vec<&str>> = vec![
            vec![
                "train", "--model", "lenet300", "--epochs", "1", "--data", d, "--out", o,
            ],
            vec!["eval", m, "--data", d],
            vec![
                "prune",
                m,
                "--out",
                o,
                "--method",
                "unstructured",
                "--ratio",
                "0.5",
                "--data",
                d,
            ],
            vec![
                "prune",
                m,
                "--out",
                o,
                "--method",
                "structured",
                "--ratio",
                "0.5",
                "--data",
                d,
            ],
            vec!["sensitivity", m, "--out", o, "--samples", "10", "--data", d],
            vec!["quantize", m, "--out", o, "--bits", "8", "--data", d],
            [common::kd_args(m, o), vec!["--data", d]].concat(),
            vec!["compress", "--recipe", r, "--out", o, "--data", d],
            vec!["factorize", m, "--rank", "8", "--out", o, "--data", d],
            vec!["hash", m, "--factor", "8", "--out", o, "--data", d],
            vec![
                "binarize", m, "--method", "bnn", "--epochs", "1", "--out", o, "--data", d,
            ],
            vec![
                "exits", m, "--at", "relu1", "--epochs", "1", "--out", o, "--data", d,
            ],
            vec![
                "lottery", "--rounds", "1", "--epochs", "1", "--out", o, "--data", d,
            ],
            vec!["supermask", "--epochs", "1", "--out", o, "--data", d],
            vec!["bench", "train", "--model", "lenet300", "--data", d],
        ];
        for args in commands {
            refused(name, &args, needles, tmp.path());
        }
    }
}

/// Damaged recipes: exit code 1 with the recipe's path and the field (and line where TOML
/// has one), before any stage runs and before the data is read.
#[test]
fn damaged_recipes_are_refused_before_any_stage() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    pare::ir::io::save(&untrained_lenet300(), &model).unwrap();
    let m = model.to_str().unwrap();
    let good = std::fs::read_to_string(quantize_recipe(tmp.path(), m)).unwrap();
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        ("not-toml", "[model\n".into(), vec!["line 1"]),
        (
            "unknown-key",
            good.replace("bits = 8", "bits = 8\nbitz = 4"),
            vec!["bitz"],
        ),
        ("bits-range", good.replace("bits = 8", "bits = 20"), vec!["bits"]),
        (
            "nan-decay",
            good.replace(
                "[stage.quantize]\nbits = 8",
                "[stage.train]\ntrain = { epochs = 1, lr = 0.1, weight_decay = nan }",
            ),
            vec!["weight_decay"],
        ),
        (
            "file-escape",
            format!("{good}[encode]\nfile = \"../x.pare\"\n"),
            vec!["file", "plain file name"],
        ),
        (
            "no-model",
            good.replace(m, "/nonexistent/model"),
            vec!["/nonexistent/model"],
        ),
        (
            "layer",
            good.replace(
                "[stage.quantize]\nbits = 8",
                "[stage.prune]\nlayers = { fc9 = 0.5 }\ntrain = { epochs = 1, lr = 0.1 }",
            ),
            vec!["fc9"],
        ),
        (
            "teacher",
            good.replace(
                "[stage.quantize]\nbits = 8",
                "[stage.distill]\nteacher = \"/nonexistent/t\"\ntrain = { epochs = 1, lr = 0.1 }",
            ),
            vec!["/nonexistent/t"],
        ),
        (
            "huge-int",
            good.replace("bits = 8", "bits = 99999999999999999999999"),
            vec!["bits"],
        ),
    ];
    let data = tmp.path().join("data");
    write_data(&data, 20);
    for (name, text, needles) in &cases {
        let recipe = tmp.path().join(format!("{name}.toml"));
        std::fs::write(&recipe, text).unwrap();
        let out = tmp.path().join("out");
        let args = [
            "compress",
            "--recipe",
            recipe.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
        ];
        let file = format!("{name}.toml");
        let needles: Vec<&str> = needles.iter().copied().chain([file.as_str()]).collect();
        refused(name, &args, &needles, tmp.path());
    }
}
