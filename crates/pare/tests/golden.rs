//! A LeNet-5 trained in PyTorch and saved with `safetensors.torch.save_file` loads into pare and
//! gives PyTorch's logits (reference/lenet5_golden.py made the file).

use std::path::Path;

use pare::ir::io::{bind_params, read_safetensors};
use pare::ir::Reparams;
use pare::zoo::ZooModel;

#[test]
fn pytorch_lenet5_loads_and_matches_logits() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/lenet5_golden.safetensors");
    let (mut tensors, _) = read_safetensors(&path).unwrap();
    let input = tensors.remove("golden.input").unwrap();
    let expected = tensors.remove("golden.logits").unwrap();
    let graph = ZooModel::Lenet5.build(&[1, 28, 28], 10).unwrap();
    let model = bind_params(graph, tensors, &path).unwrap();
    let out = pare::exec::infer(&model, &input, &Reparams::new(), &[]).unwrap();
    assert_eq!(out.output.shape(), &[8, 10]);
    let diff = out.output.max_abs_diff(&expected);
    assert!(diff < 1e-4, "max |pare - pytorch| = {diff}");
}
