//! The `.pare` decoder, fuzzed through the file's structure: the mutator takes the file apart
//! (preamble, deflated JSON header, tensor payload, CRC-32), mutates the inflated header text or
//! the payload, then deflates the header again, rewrites its length and recomputes the
//! checksum. So mutated files get past the checksum and the deflate stream and reach the header
//! checks and the tensor decoders, and every crash is a valid-looking file that `pare eval`
//! reproduces.
#![no_main]

use std::io::{Read, Write};

use flate2::read::DeflateDecoder;
use flate2::write::DeflateEncoder;
use libfuzzer_sys::{fuzz_mutator, fuzz_target, fuzzer_mutate};
use pare::codec::file::{CHECKSUM, MAGIC, PREAMBLE, VERSION};

fuzz_target!(|data: &[u8]| {
    let _ = pare::fuzz::Target::Pare.run(data);
});

/// A `.pare` file taken apart: the inflated header JSON and the payload behind it.
struct Parts {
    header: Vec<u8>,
    payload: Vec<u8>,
}

fn split(file: &[u8]) -> Option<Parts> {
    if file.len() < PREAMBLE + CHECKSUM || &file[..4] != MAGIC {
        return None;
    }
    let hlen = u32::from_le_bytes(file[6..10].try_into().ok()?) as usize;
    let body = &file[..file.len() - CHECKSUM];
    let deflated = body.get(PREAMBLE..PREAMBLE.checked_add(hlen)?)?;
    let mut header = Vec::new();
    DeflateDecoder::new(deflated)
        .take(1 << 20)
        .read_to_end(&mut header)
        .ok()?;
    Some(Parts {
        header,
        payload: body[PREAMBLE + hlen..].to_vec(),
    })
}

fn assemble(p: &Parts) -> Vec<u8> {
    let mut z = DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(&p.header).expect("deflate into memory");
    let deflated = z.finish().expect("deflate into memory");
    let mut out = Vec::with_capacity(PREAMBLE + deflated.len() + p.payload.len() + CHECKSUM);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(deflated.len() as u32).to_le_bytes());
    out.extend_from_slice(&deflated);
    out.extend_from_slice(&p.payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// libFuzzer's own byte mutations on one part, which may grow by up to half again plus 64.
fn mutate(part: &mut Vec<u8>) {
    let len = part.len();
    part.resize(len + len / 2 + 64, 0);
    let cap = part.len();
    let n = fuzzer_mutate(part, len, cap);
    part.truncate(n);
}

/// Writes a correct checksum over `file`'s body.
fn reseal(file: &mut [u8]) {
    if file.len() >= CHECKSUM {
        let end = file.len() - CHECKSUM;
        let crc = crc32fast::hash(&file[..end]);
        file[end..].copy_from_slice(&crc.to_le_bytes());
    }
}

fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    if let Some(mut parts) = split(&data[..size]) {
        // Mostly the header (shapes, encodings, lengths), often the payload (codes, tables).
        match seed % 8 {
            0..=4 => mutate(&mut parts.header),
            5 | 6 => mutate(&mut parts.payload),
            _ => {
                mutate(&mut parts.header);
                mutate(&mut parts.payload);
            }
        }
        let file = assemble(&parts);
        if file.len() <= max_size {
            data[..file.len()].copy_from_slice(&file);
            return file.len();
        }
    }
    let n = fuzzer_mutate(data, size, max_size);
    reseal(&mut data[..n]);
    n
});
