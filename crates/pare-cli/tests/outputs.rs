//! No command writes into what it reads: an output directory that is an input, lies inside
//! one or contains one is refused before anything runs, and the input stays byte for byte.

mod common;

use common::{fails_with, snapshot};

#[test]
fn an_output_directory_overlapping_an_input_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    let model = common::untrained_lenet300();
    pare::ir::io::save(&model, &base).unwrap();
    let recipe = tmp.path().join("r.toml");
    std::fs::write(
        &recipe,
        format!(
            "[model]\ndir = \"{}\"\n[[stage]]\n[stage.quantize]\nbits = 8\n",
            base.display()
        ),
    )
    .unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("train-images-idx3-ubyte.gz"), b"not read").unwrap();
    let before = snapshot(tmp.path());
    let b = base.to_str().unwrap();
    let inside = base.join("sub");
    let inside = inside.to_str().unwrap();
    let dotted = format!("{b}/../base");
    let parent = tmp.path().to_str().unwrap();
    let d = data.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "train", "--model", "lenet300", "--epochs", "1", "--data", d, "--out", d,
            ],
            "is the input",
        ),
        (vec!["lottery", "--data", d, "--out", d], "is the input"),
        (
            vec!["supermask", "--data", d, "--out", parent],
            "contains the input",
        ),
        (
            vec!["prune", b, "--out", b, "--method", "structured", "--ratio", "0.5"],
            "is the input",
        ),
        (
            vec![
                "prune",
                b,
                "--out",
                &dotted,
                "--method",
                "unstructured",
                "--ratio",
                "0.5",
            ],
            "is the input",
        ),
        (
            vec!["prune", b, "--out", inside, "--method", "structured"],
            "lies inside the input",
        ),
        (
            vec!["prune", b, "--out", parent, "--method", "structured"],
            "contains the input",
        ),
        (vec!["quantize", b, "--out", b, "--bits", "8"], "is the input"),
        (vec!["sensitivity", b, "--out", inside], "lies inside the input"),
        (common::kd_args(b, b), "is the input"),
        (
            vec!["compress", "--recipe", recipe.to_str().unwrap(), "--out", b],
            "is the input",
        ),
        (
            vec!["compress", "--recipe", recipe.to_str().unwrap(), "--out", parent],
            "contains the input",
        ),
    ];
    for (args, relation) in cases {
        fails_with(&args, &["output directory", relation, "nothing was written"]);
        assert_eq!(snapshot(tmp.path()), before, "{args:?} changed the files");
    }
}

/// One run per output directory: a live owner's lock refuses a second run; a lock left by a
/// process that no longer runs is reported and taken over, with the temporary files such a
/// run leaves; the lock is gone after the run.
#[test]
fn an_output_directory_is_locked_while_a_run_writes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    pare::ir::io::save(&common::untrained_lenet300(), &base).unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let lock = out.join(".pare.lock");
    // This test's own process is alive.
    std::fs::write(&lock, std::process::id().to_string()).unwrap();
    let (b, o) = (base.to_str().unwrap(), out.to_str().unwrap());
    let quantize = ["quantize", b, "--out", o, "--bits", "8"];
    fails_with(
        &quantize,
        &["is in use by pare process", &std::process::id().to_string()],
    );
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        1,
        "nothing but the lock"
    );
    // A pid past Linux's largest possible one: no such process.
    std::fs::write(&lock, "4194305").unwrap();
    // And a temporary file a killed save left behind.
    let leftover = out.join(".model.pare.4194305.tmp");
    std::fs::write(&leftover, b"partial").unwrap();
    let run = common::pare(&quantize);
    assert!(run.status.success(), "{}", common::stderr(&run));
    assert!(
        common::stderr(&run).contains("4194305, which no longer runs"),
        "{}",
        common::stderr(&run)
    );
    assert!(!lock.exists(), "the lock is released");
    assert!(!leftover.exists(), "the killed run's temporary file is removed");
    assert!(out.join("model.pare").is_file());
}

/// A write past the file-size limit (`ulimit -f`) is an error naming the file, with exit code
/// 1, not a silent death by SIGXFSZ; no temporary file is left and nothing half-written takes
/// the output's name.
#[test]
fn a_file_size_limit_is_an_error_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    pare::ir::io::save(&common::untrained_lenet300(), &base).unwrap();
    let out = tmp.path().join("out");
    // 64 blocks (32-64 KB, by the shell's block size): the 8-bit model takes about 270 KB.
    let run = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -f 64 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_pare"))
        .args([
            "quantize",
            base.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--bits",
            "8",
        ])
        .output()
        .unwrap();
    let e = common::stderr(&run);
    assert_eq!(run.status.code(), Some(1), "{e}");
    // The first file past the limit is the quantize stage's saved weights.
    assert!(
        e.contains(&format!("{}/", out.display())) && e.contains("weights.safetensors: File too large"),
        "{e}"
    );
    assert!(!e.contains("panicked"), "{e}");
    let left: Vec<String> = if out.exists() {
        common::snapshot(&out).into_keys().collect()
    } else {
        Vec::new()
    };
    assert!(
        !left
            .iter()
            .any(|n| n.ends_with(".tmp") || n.ends_with("model.pare") || n.ends_with(".pare.lock")),
        "{left:?}"
    );
}
