//! Every subcommand that reads a model, on a set of damaged model directories and files: exit
//! code 1 with a message naming the file, never a panic, nothing written outside `--out`, the
//! inputs unchanged.

mod common;

use std::path::Path;

use common::{pare, snapshot, stderr, untrained_lenet300};

#[test]
fn every_model_reading_command_refuses_damaged_models_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good");
    pare::ir::io::save(&untrained_lenet300(), &good).unwrap();
    let arch = std::fs::read_to_string(good.join("arch.json")).unwrap();
    let weights = std::fs::read(good.join("weights.safetensors")).unwrap();
    // (directory name, what to damage, a word the error must hold)
    let damaged: Vec<(&str, Box<dyn Fn(&Path)>, &str)> = vec![
        (
            "garbage-arch",
            Box::new(|d: &Path| std::fs::write(d.join("arch.json"), "{ not json").unwrap()),
            "arch.json",
        ),
        (
            "zero-width",
            Box::new(|d: &Path| {
                std::fs::write(
                    d.join("arch.json"),
                    arch.replace("\"out_features\": 300", "\"out_features\": 0"),
                )
                .unwrap()
            }),
            "arch.json",
        ),
        (
            "huge-layer",
            Box::new(|d: &Path| {
                std::fs::write(
                    d.join("arch.json"),
                    arch.replace("\"out_features\": 300", "\"out_features\": 1000000000"),
                )
                .unwrap()
            }),
            "arch.json",
        ),
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
        let recipe = tmp.path().join("r.toml");
        std::fs::write(
            &recipe,
            format!("[model]\ndir = \"{d}\"\n[[stage]]\n[stage.quantize]\nbits = 8\n"),
        )
        .unwrap();
        let r = recipe.to_str().unwrap();
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
            vec![
                "distill",
                "--teacher",
                d,
                "--student",
                "lenet300",
                "--method",
                "kd",
                "--epochs",
                "1",
                "--out",
                o,
            ],
            vec!["compress", "--recipe", r, "--out", o],
        ];
        let before = snapshot(tmp.path());
        for args in commands {
            let run = pare(&args);
            let e = stderr(&run);
            assert_eq!(run.status.code(), Some(1), "{name}: {args:?}: {e}");
            assert!(!e.contains("panicked"), "{name}: {args:?}: {e}");
            assert!(e.contains(needle), "{name}: {args:?} should name {needle}: {e}");
            assert_eq!(snapshot(tmp.path()), before, "{name}: {args:?} changed files");
        }
    }
}
