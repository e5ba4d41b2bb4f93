//! Model directories, safetensors and IDX files: round trips, and errors that name the problem.

use std::collections::BTreeMap;
use std::path::Path;

use pare::data::idx::{encode_idx, parse_idx, read_idx};
use pare::ir::io::{self, encode_safetensors, load, save, ARCH_FILE, WEIGHTS_FILE};
use pare::ir::{Model, Tensor};
use pare::zoo::ZooModel;

fn lenet5() -> Model {
    Model::init(ZooModel::Lenet5.build(&[1, 28, 28], 10).unwrap(), 1).unwrap()
}

/// Saves lenet5, lets `corrupt` damage the directory, and returns the load error's text.
fn load_error(corrupt: impl FnOnce(&Path)) -> String {
    let dir = tempfile::tempdir().unwrap();
    save(&lenet5(), dir.path()).unwrap();
    corrupt(dir.path());
    load(dir.path())
        .expect_err("a damaged directory must not load")
        .to_string()
}

fn rewrite_weights(dir: &Path, edit: impl FnOnce(&mut BTreeMap<String, Tensor>)) {
    let mut t = lenet5().params;
    edit(&mut t);
    std::fs::write(dir.join(WEIGHTS_FILE), encode_safetensors(&t, None)).unwrap();
}

#[test]
fn model_directory_round_trips_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let m = lenet5();
    save(&m, dir.path()).unwrap();
    assert_eq!(load(dir.path()).unwrap(), m);
    // No temporary files are left behind by the atomic writes.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn every_zoo_arch_round_trips_through_json() {
    for zm in pare::zoo::catalog() {
        let g = zm.build(&[1, 28, 28], 10).unwrap();
        let text = io::arch_json(&g);
        assert_eq!(
            io::parse_arch(&text, Path::new("arch.json")).unwrap(),
            g,
            "{}",
            zm.label()
        );
    }
}

#[test]
fn missing_tensor_is_named() {
    let e = load_error(|d| rewrite_weights(d, |t| drop(t.remove("conv2.bias"))));
    assert!(
        e.contains("conv2.bias") && e.contains("missing") && e.contains("[50]"),
        "{e}"
    );
}

#[test]
fn wrong_shape_is_named() {
    let e = load_error(|d| {
        rewrite_weights(d, |t| {
            drop(t.insert("fc1.weight".into(), Tensor::zeros(vec![500, 799])))
        })
    });
    assert!(
        e.contains("fc1.weight") && e.contains("[500, 799]") && e.contains("[500, 800]"),
        "{e}"
    );
}

#[test]
fn extra_tensor_is_named() {
    let e =
        load_error(|d| rewrite_weights(d, |t| drop(t.insert("fc3.weight".into(), Tensor::zeros(vec![1])))));
    assert!(e.contains("fc3.weight") && e.contains("not a parameter"), "{e}");
}

#[test]
fn truncated_weights_file_is_reported() {
    let e = load_error(|d| {
        let p = d.join(WEIGHTS_FILE);
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    });
    assert!(
        e.contains(WEIGHTS_FILE) && e.contains("not a valid safetensors file"),
        "{e}"
    );
}

#[test]
fn garbage_weights_file_is_reported() {
    let e =
        load_error(|d| std::fs::write(d.join(WEIGHTS_FILE), b"\x07\x00\x00\x00\x00\x00\x00\x00{}").unwrap());
    assert!(e.contains("not a valid safetensors file"), "{e}");
}

#[test]
fn unsupported_dtype_is_named() {
    use safetensors::tensor::{Dtype, TensorView};
    let e = load_error(|d| {
        let data = vec![0u8; 50];
        let v = TensorView::new(Dtype::F8_E4M3, vec![50], &data).unwrap();
        let bytes = safetensors::serialize([("conv2.bias", v)], None).unwrap();
        std::fs::write(d.join(WEIGHTS_FILE), bytes).unwrap();
    });
    assert!(e.contains("conv2.bias") && e.contains("F8_E4M3"), "{e}");
}

/// A model whose one parameter is a table of integers added to its input (as a checkpoint's
/// index buffer would be read), saved by "PyTorch" with `dtype` bytes.
fn integer_table(dir: &Path, dtype: safetensors::tensor::Dtype, bytes: &[u8]) {
    use pare::ir::op::Parameter;
    use pare::ir::{GraphBuilder, Op, INPUT};
    let mut b = GraphBuilder::new(vec![6]);
    b.add("ids", Op::Parameter(Parameter { shape: vec![6] }), &[]);
    b.add("sum", Op::Add, &[INPUT, "ids"]);
    std::fs::write(dir.join(ARCH_FILE), io::arch_json(&b.finish().unwrap())).unwrap();
    let v = safetensors::tensor::TensorView::new(dtype, vec![1, 6], bytes).unwrap();
    std::fs::write(
        dir.join(WEIGHTS_FILE),
        safetensors::serialize([("ids", v)], None).unwrap(),
    )
    .unwrap();
}

#[test]
fn integer_tensors_load_as_i32_run_exactly_and_save_as_i32() {
    use safetensors::tensor::Dtype;
    let want = [0i64, 1, -5, 16_777_216, i32::MAX as i64, i32::MIN as i64];
    let dir = tempfile::tempdir().unwrap();
    let le = |v: &[i64]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
    integer_table(dir.path(), Dtype::I64, &le(&want));
    let m = load(dir.path()).unwrap();
    assert_eq!(m.params["ids"].store().dtype(), "i32");
    assert_eq!(m.params["ids"].zero_count(), 1);
    // Read as f32 where used: exact up to 2^24.
    let x = Tensor::from_vec(vec![1, 6], vec![0.5; 6]);
    let y = pare::exec::infer(&m, &x, &pare::ir::Reparams::new(), &[])
        .unwrap()
        .output;
    assert_eq!(&y.data()[..4], &[0.5, 1.5, -4.5, 16_777_216.5f32]);
    // Saved back as I32, loaded back as i32, equal.
    let out = tempfile::tempdir().unwrap();
    save(&m, out.path()).unwrap();
    let bytes = std::fs::read(out.path().join(WEIGHTS_FILE)).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.tensor("ids").unwrap().dtype(), Dtype::I32);
    let again = load(out.path()).unwrap();
    assert_eq!(again.params["ids"].store(), m.params["ids"].store());

    // Every integer width and booleans read as their values.
    let cases: [(Dtype, Vec<u8>, [f32; 6]); 4] = [
        (
            Dtype::BOOL,
            vec![0, 1, 1, 0, 0, 1],
            [0.0, 1.0, 1.0, 0.0, 0.0, 1.0],
        ),
        (
            Dtype::I8,
            [-128i8, -1, 0, 1, 2, 127].iter().map(|&x| x as u8).collect(),
            [-128.0, -1.0, 0.0, 1.0, 2.0, 127.0],
        ),
        (
            Dtype::U16,
            [0u16, 1, 2, 3, 4, 65535]
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect(),
            [0.0, 1.0, 2.0, 3.0, 4.0, 65535.0],
        ),
        (
            Dtype::U64,
            [0u64, 1, 2, 3, 4, 5]
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect(),
            [0.0, 1.0, 2.0, 3.0, 4.0, 5.0],
        ),
    ];
    for (dtype, bytes, values) in cases {
        integer_table(dir.path(), dtype, &bytes);
        let m = load(dir.path()).unwrap();
        assert_eq!(m.params["ids"].store().dtype(), "i32", "{dtype:?}");
        assert_eq!(m.params["ids"].data(), &values, "{dtype:?}");
    }

    // A value past i32 is refused, naming the tensor, the value and its position.
    for (dtype, bytes) in [
        (Dtype::I64, le(&[0, 0, 0, 1 << 31, 0, 0])),
        (
            Dtype::U64,
            [0u64, 0, 0, u64::MAX, 0, 0]
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect(),
        ),
        (
            Dtype::U32,
            [0u32, 0, 0, u32::MAX, 0, 0]
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect(),
        ),
    ] {
        integer_table(dir.path(), dtype, &bytes);
        let e = load(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("ids") && e.contains("flat position 3") && e.contains("i32 range"),
            "{dtype:?}: {e}"
        );
    }
}

#[test]
fn arch_errors_name_the_field() {
    let e = load_error(|d| {
        let p = d.join(ARCH_FILE);
        let t = std::fs::read_to_string(&p)
            .unwrap()
            .replacen("\"out_features\"", "\"out_feat\"", 1);
        std::fs::write(&p, t).unwrap();
    });
    assert!(e.contains(ARCH_FILE) && e.contains("out_feat"), "{e}");
    let e = load_error(|d| {
        let p = d.join(ARCH_FILE);
        let t = std::fs::read_to_string(&p)
            .unwrap()
            .replace("\"version\": 1", "\"version\": 99");
        std::fs::write(&p, t).unwrap();
    });
    assert!(e.contains("version 99"), "{e}");
    let e = load_error(|d| {
        let p = d.join(ARCH_FILE);
        let t = std::fs::read_to_string(&p)
            .unwrap()
            .replace("\"in_features\": 800", "\"in_features\": 801");
        std::fs::write(&p, t).unwrap();
    });
    assert!(e.contains("fc1") && e.contains("last axis is 801"), "{e}");
    let e = load_error(|d| std::fs::write(d.join(ARCH_FILE), "{\"format\": \"pare-arch\"").unwrap());
    assert!(e.contains(ARCH_FILE) && e.contains("EOF"), "{e}");
}

#[test]
fn missing_directory_names_the_path() {
    let e = load(Path::new("/nonexistent/model")).unwrap_err().to_string();
    assert!(e.contains("/nonexistent/model/arch.json"), "{e}");
}

#[test]
fn idx_round_trip_raw_and_gzip() {
    use std::io::Write;
    let data: Vec<u8> = (0..24).collect();
    let raw = encode_idx(&[2, 3, 4], &data);
    let a = parse_idx(&raw, Path::new("x")).unwrap();
    assert_eq!(
        (a.dims.as_slice(), a.data.as_slice()),
        (&[2, 3, 4][..], &data[..])
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.gz");
    std::fs::write(&p, gz.finish().unwrap()).unwrap();
    assert_eq!(read_idx(&p).unwrap(), a);
}

fn idx_error(bytes: &[u8], needle: &str) {
    let e = parse_idx(bytes, Path::new("data/t.idx")).unwrap_err().to_string();
    assert!(
        e.contains("data/t.idx") && e.contains(needle),
        "'{e}' should mention '{needle}'"
    );
}

#[test]
fn idx_errors_say_what_is_wrong() {
    let good = encode_idx(&[2, 3], &[1, 2, 3, 4, 5, 6]);
    idx_error(&good[..good.len() - 1], "truncated");
    idx_error(&[0x12, 0x34, 0x08, 0x01, 0, 0, 0, 1, 9], "wrong magic");
    idx_error(&[0, 0, 0x0d, 0x01, 0, 0, 0, 1, 0, 0, 0, 0], "element type 0x0d");
    idx_error(&[0, 0, 0x08, 0x03, 0, 0, 0, 1], "file ends after 8 bytes");
    idx_error(&[0, 0], "too short");
    idx_error(&[0x1f, 0x8b, 0x08, 0x00, 0x01], "gzip stream is corrupt");
}

/// NaN and infinities are refused wherever weights are read: a model directory, and a `.pare`
/// file whose f32 payload holds one; the error names the tensor and the position.
#[test]
fn non_finite_weights_are_named_on_every_load() {
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let e = load_error(|d| rewrite_weights(d, |t| t.get_mut("fc1.weight").unwrap().data_mut()[7] = bad));
        assert!(
            e.contains("fc1.weight") && e.contains("non-finite") && e.contains("position 7"),
            "{e}"
        );
        let mut m = lenet5();
        m.params.get_mut("conv1.bias").unwrap().data_mut()[3] = bad;
        let (bytes, _) = pare::codec::encode(&m, &pare::codec::Plan::new()).unwrap();
        let e = pare::codec::decode(&bytes).expect_err("a NaN weight must not decode");
        assert!(e.contains("conv1.bias") && e.contains("position 3"), "{e}");
    }
}

/// A gzip stream that inflates far past what its header declares is refused after reading the
/// declared size (it is never inflated whole); a header declaring more than 2 GiB is refused
/// before any body is read.
#[test]
fn idx_bombs_are_refused_from_their_header() {
    use std::io::Write;
    let mut body = encode_idx(&[2, 5], &[7; 10]);
    body.resize(body.len() + (64 << 20), 0);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&body).unwrap();
    let gz = gz.finish().unwrap();
    assert!(gz.len() < 1 << 20, "a small file: {} bytes", gz.len());
    idx_error(&gz, "need 10 data bytes, the file has more");
    idx_error(
        &[
            0, 0, 0x08, 0x03, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 2,
        ],
        "declare more than",
    );
    let ok = parse_idx(&encode_idx(&[2, 5], &[7; 10]), Path::new("ok.idx")).unwrap();
    assert_eq!(ok.dims, [2, 5]);
}
