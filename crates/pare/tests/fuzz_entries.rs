//! The fuzz targets' entry points (`pare::fuzz`), run here on stable Rust within the test
//! suite: every seed is accepted, and damaged seeds end in an error, never a panic. The long
//! coverage-guided runs are cargo-fuzz's (fuzz/README.md); this is their bounded companion.

use pare::fuzz::{seeds, Target};
use proptest::prelude::*;

#[test]
fn every_target_has_seeds_and_accepts_them() {
    let seeds = seeds().unwrap();
    for t in Target::ALL {
        let mine: Vec<_> = seeds.iter().filter(|(s, _, _)| *s == t).collect();
        assert!(!mine.is_empty(), "{} has no seed", t.name());
        for (_, name, bytes) in mine {
            t.run(bytes)
                .unwrap_or_else(|e| panic!("{}: seed {name} refused: {e}", t.name()));
        }
    }
}

/// Writes the seeds into `fuzz/seeds/<target>/`, the fuzzers' starting corpora (the
/// structure-aware `.pare` target starts from the same files as the plain one). Run after a
/// format changes: `cargo test --release -p pare --test fuzz_entries -- --ignored write_seeds`.
#[test]
#[ignore = "writes fuzz/seeds; run by hand after a format changes"]
fn write_seeds() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds");
    for (target, name, bytes) in seeds().unwrap() {
        let mut names = vec![target.name()];
        if target == Target::Pare {
            names.push("pare_structured");
        }
        for t in names {
            let dir = root.join(t);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(&name), &bytes).unwrap();
        }
    }
}

/// One edit of a file's bytes, as a careless tool or a fuzzer makes them.
#[derive(Clone, Debug)]
enum Edit {
    /// XOR one byte (position taken modulo the length).
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    /// Overwrite four bytes with a boundary value, little-endian (lengths, counts, offsets).
    Boundary(usize, u32),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(p, m)| Edit::Flip(p, m)),
        any::<usize>().prop_map(Edit::Truncate),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8)).prop_map(|(p, b)| Edit::Insert(p, b)),
        (
            any::<usize>(),
            prop::sample::select(vec![0u32, 1, 0xff, 0xffff, 0x7fff_ffff, 0x8000_0000, u32::MAX])
        )
            .prop_map(|(p, v)| Edit::Boundary(p, v)),
    ]
}

fn apply(bytes: &mut Vec<u8>, e: &Edit) {
    let at = |p: usize, len: usize| if len == 0 { 0 } else { p % len };
    match e {
        Edit::Flip(p, m) if !bytes.is_empty() => {
            let i = at(*p, bytes.len());
            bytes[i] ^= m;
        }
        Edit::Flip(..) => {}
        Edit::Truncate(p) => bytes.truncate(at(*p, bytes.len())),
        Edit::Insert(p, b) => {
            let i = at(*p, bytes.len() + 1);
            bytes.splice(i..i, b.iter().copied());
        }
        Edit::Boundary(p, v) => {
            let i = at(*p, bytes.len().saturating_sub(3));
            for (k, b) in v.to_le_bytes().iter().enumerate() {
                if let Some(x) = bytes.get_mut(i + k) {
                    *x = *b;
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Any target, any of its seeds, one to four edits: the entry point returns (`Ok` or a
    /// reported error) and does not panic.
    #[test]
    fn damaged_files_are_errors_not_panics(
        pick in any::<prop::sample::Index>(),
        edits in prop::collection::vec(edit(), 1..5),
    ) {
        let seeds = seeds().unwrap();
        let (t, _, bytes) = &seeds[pick.index(seeds.len())];
        let mut bytes = bytes.clone();
        edits.iter().for_each(|e| apply(&mut bytes, e));
        let _ = t.run(&bytes);
    }

    /// The `.pare` checksum covers every byte: any single flip is refused.
    #[test]
    fn a_flipped_byte_of_a_pare_file_is_refused(p in any::<usize>(), m in 1..=255u8) {
        for (t, name, bytes) in seeds().unwrap() {
            if t != Target::Pare {
                continue;
            }
            let mut bytes = bytes;
            apply(&mut bytes, &Edit::Flip(p, m));
            prop_assert!(pare::codec::decode(&bytes).is_err(), "{name} with a flipped byte decoded");
        }
    }
}
