//! `pare::fuzz::Target::Onnx` on arbitrary bytes: an error or success, never a panic, an abort
//! or an unbounded allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = pare::fuzz::Target::Onnx.run(data);
});
