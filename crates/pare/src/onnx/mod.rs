//! ONNX files: a pare model exported for any ONNX runtime, and ONNX models (from `torch.onnx`
//! or elsewhere) imported as pare models, so that every compression method works on them.
//!
//! The protobuf messages are declared in [`proto`] (prost, no `protoc`); [`export`] writes a
//! model as opset-17 standard ops, [`import`] reads opset 13 and newer into the IR. A model
//! exported and imported again has the same nodes, names and outputs, except where ONNX has no
//! op of pare's (multi-head attention, hashed layers and pare's sign come back as the standard
//! ops they were written as).

mod consts;
pub mod export;
pub mod import;
pub mod proto;

use std::path::Path;

use prost::Message;

use crate::error::{Error, Result};
use crate::ir::graph::{DType, INPUT};
use crate::ir::io::write_atomic;
use crate::ir::{Model, Tensor};
pub use export::{to_onnx, to_onnx_with, Int8Form, Options};
pub use import::from_onnx;
use proto::ModelProto;

/// The model as the bytes of an `.onnx` file.
pub fn encode(model: &Model) -> Result<Vec<u8>> {
    Ok(to_onnx(model)?.encode_to_vec())
}

/// Writes the model to `path` as ONNX (atomically: a temporary file, then a rename).
pub fn save(model: &Model, path: &Path, options: Options) -> Result<()> {
    write_atomic(path, &to_onnx_with(model, options)?.encode_to_vec())
}

/// Parses the bytes of an ONNX file (`path` names it in errors).
pub fn decode(bytes: &[u8], path: &Path) -> Result<ModelProto> {
    ModelProto::decode(bytes).map_err(|e| Error::Onnx {
        path: path.to_path_buf(),
        reason: format!("not a valid ONNX protobuf ({e}); the file may be truncated or not an ONNX model"),
    })
}

/// Reads and imports an ONNX model file.
pub fn load(path: &Path) -> Result<Model> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    from_onnx(&decode(&bytes, path)?, path)
}

/// A serialized `TensorProto` (an ONNX test case's `input_0.pb`, `output_0.pb`) as a tensor;
/// integer tensors are converted to f32.
pub fn read_tensor(bytes: &[u8], path: &Path) -> Result<Tensor> {
    let fail = |reason: String| Error::Onnx {
        path: path.to_path_buf(),
        reason,
    };
    let t = proto::TensorProto::decode(bytes).map_err(|e| fail(format!("not a TensorProto ({e})")))?;
    let c = consts::from_proto(&t).map_err(|e| fail(format!("tensor '{}': {e}", t.name)))?;
    let data = c.floats().expect("a tensor read from a file holds numbers only");
    Ok(Tensor::from_vec(c.shape().to_vec(), data))
}

/// Writes one input batch and the model's outputs on it in the layout of ONNX's own test
/// cases, `dir/test_data_set_0/input_0.pb` and `output_{k}.pb` (serialized `TensorProto`s
/// named like the graph's input and outputs), which `onnx_check.py` in bench/ and ONNX's
/// backend test runners read.
/// An input of integer ids (`DType::Index`) is written as INT64, as the exported graph reads it.
pub fn write_test_data(dir: &Path, dtype: DType, input: &Tensor, outputs: &[(String, Tensor)]) -> Result<()> {
    let set = dir.join("test_data_set_0");
    std::fs::create_dir_all(&set).map_err(|e| Error::io(&set, e))?;
    let write = |file: String, name: &str, t: &Tensor| {
        let proto = export::f32_tensor(name, t.shape(), t.data());
        write_atomic(&set.join(file), &proto.encode_to_vec())
    };
    if dtype == DType::Index {
        let ids: Vec<i64> = input.data().iter().map(|&v| v as i64).collect();
        let proto = export::i64_tensor(INPUT, input.shape(), &ids);
        write_atomic(&set.join("input_0.pb"), &proto.encode_to_vec())?;
    } else {
        write("input_0.pb".into(), INPUT, input)?;
    }
    for (k, (name, t)) in outputs.iter().enumerate() {
        write(format!("output_{k}.pb"), name, t)?;
    }
    Ok(())
}
