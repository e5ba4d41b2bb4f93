//! The compressed model file: every encoding round-trips to exactly the evaluated values, every
//! byte is accounted for, and corrupt, truncated or foreign input is an error, never a panic.

use std::collections::BTreeMap;

use pare::codec::{self, Encoding, Plan};
use pare::ir::{Model, Reparam, Reparams, WeightQuant};
use pare::quant::{bake, CentroidInit, Sharing};
use proptest::prelude::*;

mod common;
use common::toy_model;

/// The toy model with a pruned, clustered fc layer.
fn shared_model() -> Model {
    let mut m = toy_model(1);
    let w = m.params.get_mut("fc.weight").unwrap();
    w.data_mut().iter_mut().enumerate().for_each(|(i, v)| {
        if i % 7 != 0 {
            *v = 0.0
        }
    });
    let bits = BTreeMap::from([("fc.weight".to_string(), 4u32), ("conv.weight".to_string(), 3)]);
    Sharing::cluster(&mut m, &bits, CentroidInit::Linear, 0).unwrap();
    m
}

fn same_values(a: &Model, b: &Model) {
    assert_eq!(a.graph, b.graph);
    for (k, t) in &a.params {
        assert_eq!(t.shape(), b.params[k].shape(), "{k}");
        // == on f32: exact values (a -0.0 decodes as 0.0, which compares equal).
        assert!(
            t.data().iter().zip(b.params[k].data()).all(|(x, y)| x == y),
            "{k} differs"
        );
    }
}

#[test]
fn every_encoding_round_trips_exactly_and_accounts_for_every_byte() {
    let m = shared_model();
    for huffman in [false, true] {
        let plans: Vec<Plan> = vec![
            Plan::new(),
            Plan::from([
                ("fc.weight".into(), Encoding::Sparse { gap_bits: 3, huffman }),
                ("conv.weight".into(), Encoding::Shared { huffman }),
            ]),
            Plan::from([
                ("fc.weight".into(), Encoding::Shared { huffman }),
                ("conv.weight".into(), Encoding::Sparse { gap_bits: 1, huffman }),
            ]),
        ];
        for plan in plans {
            let (bytes, acct) = codec::encode(&m, &plan).unwrap();
            assert_eq!(acct.total(), bytes.len());
            same_values(&codec::decode(&bytes).unwrap(), &m);
        }
    }
    // Uniform codes decode to the values the fake quantizer computed.
    let float = toy_model(3);
    for (bits, per_channel, symmetric) in [
        (8, true, true),
        (4, false, false),
        (2, true, false),
        (16, false, true),
    ] {
        let q = WeightQuant {
            bits,
            per_channel,
            symmetric,
        };
        let reparams = Reparams::from([
            ("fc.weight".to_string(), vec![Reparam::FakeQuant(q)]),
            ("conv.weight".to_string(), vec![Reparam::FakeQuant(q)]),
        ]);
        let enc = Encoding::Uniform {
            bits,
            per_channel,
            symmetric,
            huffman: true,
        };
        let plan = Plan::from([("fc.weight".into(), enc), ("conv.weight".into(), enc)]);
        let (bytes, acct) = codec::encode(&float, &plan).unwrap();
        assert_eq!(acct.total(), bytes.len());
        let back = codec::decode(&bytes).unwrap();
        same_values(&back, &bake(&float, &reparams));
        // Codes of up to 8 bits stay codes: i8 for symmetric grids, u8 with zero points else.
        let held = match (bits, symmetric) {
            (16, _) => "f32".to_string(),
            (b, true) => format!("int{b}"),
            (b, false) => format!("uint{b}"),
        };
        assert_eq!(back.params["fc.weight"].store().dtype(), held);
    }
}

#[test]
fn f16_rounds_to_nearest_takes_two_bytes_and_decodes_as_held() {
    let mut m = toy_model(2);
    let exact = [0.5f32, -1.25, 65504.0, 0.0];
    let fc = m.params.get_mut("fc.weight").unwrap();
    fc.data_mut()[..4].copy_from_slice(&exact);
    let plan = Plan::from([("fc.weight".into(), Encoding::F16)]);
    let (bytes, acct) = codec::encode(&m, &plan).unwrap();
    assert_eq!(acct.total(), bytes.len());
    let n = m.params["fc.weight"].len();
    let fc_bytes = acct.tensors.iter().find(|t| t.name == "fc.weight").unwrap();
    assert_eq!(fc_bytes.values, 2 * n);
    let back = codec::decode(&bytes).unwrap();
    let (held, want) = (&back.params["fc.weight"], &m.params["fc.weight"]);
    assert_eq!(held.store().dtype(), "f16");
    assert_eq!(held.data()[..4], exact, "f16 values are kept exactly");
    for (h, w) in held.data().iter().zip(want.data()) {
        // Round to nearest: within half a step of f16's 11-bit significand.
        assert!(
            (h - w).abs() <= w.abs() * 2f32.powi(-11) + 2f32.powi(-25),
            "{h} for {w}"
        );
    }
    // Every other tensor is as it was.
    assert_eq!(back.params["conv.weight"], m.params["conv.weight"]);
    m.params.get_mut("fc.weight").unwrap().data_mut()[5] = 70000.0;
    let e = codec::encode(&m, &plan).unwrap_err().to_string();
    assert!(e.contains("fc.weight") && e.contains("range of f16"), "{e}");
}

#[test]
fn sparse_huffman_is_smaller_than_dense_f32_and_the_best_layout_is_chosen() {
    let m = shared_model();
    let t = &m.params["fc.weight"];
    let (enc, size) = codec::smallest_codebook_encoding("fc.weight", t, true).unwrap();
    let plan = Plan::from([("fc.weight".into(), enc)]);
    let (_, acct) = codec::encode(&m, &plan).unwrap();
    let fc = acct.tensors.iter().find(|t| t.name == "fc.weight").unwrap();
    assert_eq!(fc.total(), size);
    // Under one byte per weight, codebook and index included (f32 takes four).
    assert!(size < t.len(), "{size} bytes for {} weights", t.len());
}

#[test]
fn impossible_plans_are_clear_errors() {
    let m = toy_model(1);
    let e = codec::encode(&m, &Plan::from([("nope".into(), Encoding::F32)])).unwrap_err();
    assert!(e.to_string().contains("nope"), "{e}");
    // A float layer has far more distinct values than a small codebook... but fewer than
    // 65536 here, so it encodes; a bad gap width does not.
    let e = codec::encode(
        &m,
        &Plan::from([(
            "fc.weight".into(),
            Encoding::Sparse {
                gap_bits: 0,
                huffman: true,
            },
        )]),
    )
    .unwrap_err();
    assert!(e.to_string().contains("gap_bits"), "{e}");
}

#[test]
fn corrupt_truncated_and_foreign_files_are_errors() {
    let m = shared_model();
    let plan = Plan::from([(
        "fc.weight".into(),
        Encoding::Sparse {
            gap_bits: 3,
            huffman: true,
        },
    )]);
    let (bytes, _) = codec::encode(&m, &plan).unwrap();
    for cut in 0..bytes.len() {
        assert!(codec::decode(&bytes[..cut]).is_err(), "truncated at {cut}");
    }
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0x5a;
        assert!(codec::decode(&b).is_err(), "flipped byte {i}");
    }
    let mut v2 = bytes.clone();
    v2[4] = 2;
    assert!(codec::decode(&v2).unwrap_err().contains("version 2"));
    assert!(codec::decode(b"PK\x03\x04 not a model at all")
        .unwrap_err()
        .contains("magic"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.pare");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let e = codec::read(&path).unwrap_err().to_string();
    assert!(e.contains("m.pare") && e.contains("checksum"), "{e}");
}

/// A constant 2048x2048 layer codes to a few hundred bytes (a one-value codebook, zero-bit indices);
/// a file that small may not make the decoder allocate its 4M parameters (the memory-bomb
/// class: a few hundred bytes declaring gigabytes).
#[test]
fn a_small_file_cannot_declare_more_parameters_than_it_could_hold() {
    let mut b = pare::ir::GraphBuilder::new(vec![2048]);
    b.then("fc", pare::ir::graph::ops::linear(2048, 2048));
    let mut m = Model::init(b.finish().unwrap(), 0).unwrap();
    m.params.get_mut("fc.weight").unwrap().data_mut().fill(0.5);
    m.params.get_mut("fc.bias").unwrap().data_mut().fill(0.0);
    let plan = Plan::from([
        ("fc.weight".into(), Encoding::Shared { huffman: false }),
        ("fc.bias".into(), Encoding::Shared { huffman: false }),
    ]);
    let (bytes, _) = codec::encode(&m, &plan).unwrap();
    assert!(bytes.len() < 1000, "{} bytes", bytes.len());
    let e = codec::decode(&bytes).unwrap_err();
    assert!(e.contains("more than a file of"), "{e}");
    // The same layer with its real values is a file that large, and decodes.
    let m = Model::init(m.graph.clone(), 0).unwrap();
    let (bytes, _) = codec::encode(&m, &Plan::new()).unwrap();
    same_values(&codec::decode(&bytes).unwrap(), &m);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Behind the checksum, the parser itself must survive arbitrary damage (what the fuzz
    /// target in fuzz/ explores further).
    #[test]
    fn the_parser_never_panics_on_damaged_bodies(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let m = shared_model();
        let plan = Plan::from([
            ("fc.weight".into(), Encoding::Sparse { gap_bits: 3, huffman: true }),
            ("conv.weight".into(), Encoding::Uniform { bits: 4, per_channel: true, symmetric: false, huffman: true }),
        ]);
        let (bytes, _) = codec::encode(&m, &plan).unwrap();
        let mut body = bytes[..bytes.len() - 4].to_vec();
        for (i, v) in edits {
            let i = i.index(body.len());
            body[i] = v;
        }
        let end = body.len() - cut.index(body.len() / 4 + 1);
        let _ = codec::file::decode_body(&body[..end]);
    }
}
