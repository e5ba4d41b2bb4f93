//! Models trained in PyTorch and saved with `safetensors.torch.save_file` load into pare and
//! give PyTorch's logits (reference/lenet5_golden.py and reference/vit_golden.py made the files).

use std::path::Path;

use pare::ir::io::{bind_params, read_safetensors};
use pare::ir::{Model, Reparams, Tensor};
use pare::zoo::ZooModel;

/// The model of `file` (its state_dict bound to the zoo graph), its input and PyTorch's logits.
fn golden(file: &str, zoo: ZooModel) -> (Model, Tensor, Tensor) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/reference")
        .join(file);
    let (mut tensors, _) = read_safetensors(&path).unwrap();
    let input = tensors.remove("golden.input").unwrap();
    let expected = tensors.remove("golden.logits").unwrap();
    let graph = zoo.build(&[1, 28, 28], 10).unwrap();
    (bind_params(graph, tensors, &path).unwrap(), input, expected)
}

fn assert_logits(got: &Tensor, want: &Tensor, what: &str) {
    assert_eq!(got.shape(), &[8, 10], "{what}");
    let diff = got.max_abs_diff(want);
    assert!(diff < 1e-4, "{what}: max |pare - pytorch| = {diff}");
}

#[test]
fn pytorch_lenet5_loads_and_matches_logits() {
    let (model, input, expected) = golden("lenet5_golden.safetensors", ZooModel::Lenet5);
    let out = pare::exec::infer(&model, &input, &Reparams::new(), &[]).unwrap();
    assert_logits(&out.output, &expected, "lenet5");
}

#[test]
fn pytorch_vit_loads_and_matches_logits_in_both_engines() {
    let (model, input, expected) = golden("vit_golden.safetensors", ZooModel::Vit);
    let out = pare::exec::infer(&model, &input, &Reparams::new(), &[]).unwrap();
    assert_logits(&out.output, &expected, "vit, training engine");
    let native = pare::native::infer(&model, &input).unwrap();
    assert_logits(&native, &expected, "vit, native engine");
}
