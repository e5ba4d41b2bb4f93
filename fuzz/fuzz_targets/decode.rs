//! The compressed-model decoder on arbitrary bytes: it must return an error, never panic,
//! overflow or allocate without bound. Two entry points: the whole file (magic, version,
//! checksum) and the body behind the checksum, which random bytes would rarely reach.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = pare::codec::decode(data);
    let _ = pare::codec::file::decode_body(data);
});
