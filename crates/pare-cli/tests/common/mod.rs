//! Helpers shared by the CLI test files: run the binary, read its output, expect failures.

use std::path::Path;
use std::process::{Command, Output};

pub fn pare(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pare"))
        .args(args)
        .output()
        .expect("run pare")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `pare` and returns its stdout, failing the test with stderr when it fails.
#[allow(dead_code)] // not every test file uses every helper
pub fn ok(args: &[&str]) -> String {
    let o = pare(args);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    stdout(&o)
}

/// Expects exit code 1 and a message on stderr containing every needle, without a panic.
#[allow(dead_code)] // not every test file uses every helper
pub fn fails_with(args: &[&str], needles: &[&str]) {
    let o = pare(args);
    assert_eq!(o.status.code(), Some(1), "{args:?} should fail: {}", stdout(&o));
    let e = stderr(&o);
    for n in needles {
        assert!(e.contains(n), "stderr of {args:?} should mention '{n}': {e}");
    }
    assert!(!e.contains("panicked"), "{e}");
}

/// Trains lenet300 for one epoch into `dir/base` and returns that path.
#[allow(dead_code)]
pub fn trained(dir: &Path) -> String {
    let base = dir.join("base");
    ok(&[
        "train",
        "--model",
        "lenet300",
        "--epochs",
        "1",
        "--out",
        base.to_str().unwrap(),
    ]);
    base.to_str().unwrap().to_string()
}

/// An untrained lenet300 (seed 0): enough for commands that fail before they train.
#[allow(dead_code)]
pub fn untrained_lenet300() -> pare::ir::Model {
    pare::ir::Model::init(pare::zoo::ZooModel::Lenet300.build(&[1, 28, 28], 10).unwrap(), 0).unwrap()
}

/// Every file under `dir` with its bytes: what a refused command must leave unchanged.
#[allow(dead_code)]
pub fn snapshot(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.display().to_string(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// `pare distill` by Hinton KD for one epoch from `teacher` into a lenet300 student at `out`.
#[allow(dead_code)]
pub fn kd_args<'a>(teacher: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "distill",
        "--teacher",
        teacher,
        "--student",
        "lenet300",
        "--method",
        "kd",
        "--epochs",
        "1",
        "--out",
        out,
    ]
}
