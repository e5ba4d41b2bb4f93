//! ONNX's own operator test cases (Debian's `libonnx-testdata`, installed by scripts/setup.sh):
//! every node case whose ops pare imports, its inputs after the first made initializers (pare
//! models have one runtime input; the others are weights), is imported and run on the case's
//! first input by the native engine (and its main output by the training engine). An imported
//! case must give the recorded outputs; a case pare refuses must be refused naming the node,
//! tensor or opset (batch-axis moves, attributes pare does not model), and at least a floor of
//! cases must import, so coverage cannot silently shrink.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pare::ir::Tensor;
use pare::onnx::import::SUPPORTED;
use pare::onnx::proto::{ModelProto, TensorProto};
use prost::Message;

/// Where the node cases are: `$PARE_ONNX_TESTDATA`, else the Debian package's folder.
fn cases_dir() -> PathBuf {
    std::env::var_os("PARE_ONNX_TESTDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/share/libonnx-testdata/data/node"))
}

enum Outcome {
    Passed,
    Refused(String),
    Wrong(String),
    Skipped,
}

fn read_proto(path: &Path) -> TensorProto {
    TensorProto::decode(&std::fs::read(path).unwrap()[..]).unwrap()
}

/// One case: `Skipped` when an op is not pare's or the first input is not f32 with a batch
/// axis; `Wrong` when an imported case computes something else.
fn run_case(dir: &Path) -> Outcome {
    let model_path = dir.join("model.onnx");
    let mut proto = ModelProto::decode(&std::fs::read(&model_path).unwrap()[..]).unwrap();
    let data = dir.join("test_data_set_0");
    let Some(graph) = proto.graph.as_mut() else {
        return Outcome::Skipped;
    };
    if graph
        .node
        .iter()
        .any(|n| !SUPPORTED.contains(&n.op_type.as_str()))
    {
        return Outcome::Skipped;
    }
    let given: Vec<String> = graph.input.iter().map(|i| i.name.clone()).collect();
    if given.is_empty() || !data.join("input_0.pb").is_file() {
        return Outcome::Skipped;
    }
    let x_path = data.join("input_0.pb");
    let x_bytes = std::fs::read(&x_path).unwrap();
    let x = TensorProto::decode(&x_bytes[..]).unwrap();
    if x.data_type != pare::onnx::proto::data_type::FLOAT || x.dims.len() < 2 {
        return Outcome::Skipped;
    }
    // Inputs after the first become initializers under their own names.
    for (k, name) in given.iter().enumerate().skip(1) {
        let p = data.join(format!("input_{k}.pb"));
        if !p.is_file() {
            return Outcome::Skipped;
        }
        let mut t = read_proto(&p);
        t.name = name.clone();
        graph.initializer.push(t);
    }
    graph.input.truncate(1);
    let model = match pare::onnx::from_onnx(&proto, &model_path) {
        Ok(m) => m,
        Err(e) => return Outcome::Refused(e.to_string()),
    };
    let input = pare::onnx::read_tensor(&x_bytes, &x_path).unwrap();
    let outputs = match pare::native::compile(&model).and_then(|p| p.run_all(&input)) {
        Ok(o) => o,
        Err(e) => return Outcome::Wrong(format!("imported but does not run: {e}")),
    };
    // The training engine computes the main output too.
    let trained = match pare::exec::infer(&model, &input, &pare::ir::Reparams::new(), &[]) {
        Ok(o) => o.output,
        Err(e) => return Outcome::Wrong(format!("runs natively but not in the training engine: {e}")),
    };
    let both = outputs.iter().enumerate().chain(std::iter::once((0, &trained)));
    for (k, got) in both {
        let p = data.join(format!("output_{k}.pb"));
        let want: Tensor = pare::onnx::read_tensor(&std::fs::read(&p).unwrap(), &p).unwrap();
        if got.shape() != want.shape() {
            let (g, w) = (got.shape(), want.shape());
            return Outcome::Wrong(format!("output {k} of shape {g:?}, expected {w:?}"));
        }
        let scale = want.data().iter().fold(1f32, |m, v| m.max(v.abs()));
        let d = got.max_abs_diff(&want);
        if d > 1e-4 * scale {
            return Outcome::Wrong(format!("output {k} differs by {d} (scale {scale})"));
        }
    }
    Outcome::Passed
}

#[test]
fn onnx_node_cases_of_the_ops_pare_imports_give_their_outputs() {
    let root = cases_dir();
    let entries = std::fs::read_dir(&root).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run scripts/setup.sh (Debian package libonnx-testdata) or set PARE_ONNX_TESTDATA",
            root.display()
        )
    });
    let mut dirs: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("model.onnx").is_file())
        .collect();
    dirs.sort();
    let (mut passed, mut refused, mut wrong) = (vec![], BTreeMap::new(), vec![]);
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        match run_case(dir) {
            Outcome::Passed => passed.push(name),
            Outcome::Refused(why) => {
                refused.insert(name, why);
            }
            Outcome::Wrong(why) => wrong.push(format!("{name}: {why}")),
            Outcome::Skipped => {}
        }
    }
    println!(
        "{} node cases give ONNX's outputs: {}",
        passed.len(),
        passed.join(" ")
    );
    for (name, why) in &refused {
        println!("refused {name}: {}", why.lines().last().unwrap_or(""));
    }
    assert!(
        wrong.is_empty(),
        "imported, computing something else:\n{}",
        wrong.join("\n")
    );
    for (name, why) in &refused {
        let names_it = ["node '", "initializer '", "graph output '", "opset "]
            .iter()
            .any(|k| why.contains(k));
        assert!(
            names_it,
            "{name}: a refusal names the node, tensor or opset: {why}"
        );
    }
    assert!(
        passed.len() >= FLOOR,
        "only {} node cases import and pass",
        passed.len()
    );
}

/// The number of node cases that passed when this test was written (libonnx-testdata 1.12).
const FLOOR: usize = 83;
