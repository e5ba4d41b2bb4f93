//! One-layer models for `pare bench gemm`: a `[k] -> [n]` Linear layer in each weight form the
//! native engine runs, so that a kernel is timed as a layer of a compiled plan (input packing
//! and all), interleaved with the f32 layer by [`super::latencies_ms`].

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};
use crate::ir::op::{FakeQuant, Linear};
use crate::ir::{GraphBuilder, Model, Op, Scheme};

/// The weight form of a benchmarked layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmDtype {
    F32,
    /// `alpha * sign(w)` rows behind a sign of the input: the XNOR-popcount kernel.
    Binary,
    /// 7-bit per-row codes behind an 8-bit quantizer of the input: the u8 x i8 kernel.
    Int8,
    /// 4-bit per-row codes behind an 8-bit quantizer: the same kernel, with the codes held two
    /// to a byte where the CPU's path reads them so (512-bit VNNI).
    Int4,
}

impl GemmDtype {
    pub fn parse(s: &str) -> Result<GemmDtype> {
        match s {
            "f32" => Ok(GemmDtype::F32),
            "binary" => Ok(GemmDtype::Binary),
            "int8" => Ok(GemmDtype::Int8),
            "int4" => Ok(GemmDtype::Int4),
            other => Err(Error::Config(format!(
                "gemm dtype '{other}': expected f32, int8, int4 or binary"
            ))),
        }
    }
}

/// A model computing one `[k] -> [n]` Linear layer (no bias) in `dtype`, weights drawn from
/// `seed`.
pub fn gemm_layer(dtype: GemmDtype, k: usize, n: usize, seed: u64) -> Result<Model> {
    if k == 0 || n == 0 {
        return Err(Error::Config(format!(
            "gemm needs positive sizes, got k {k}, n {n}"
        )));
    }
    let mut b = GraphBuilder::new(vec![k]);
    match dtype {
        GemmDtype::Binary => {
            b.then("sign", Op::Sign);
        }
        GemmDtype::Int8 | GemmDtype::Int4 => {
            // 8-bit codes of [-4, 4] (the time does not depend on the range).
            let p = Scheme {
                bits: 8,
                symmetric: false,
            }
            .params(-4.0, 4.0);
            b.then(
                "q",
                Op::FakeQuant(FakeQuant {
                    bits: 8,
                    symmetric: false,
                    scale: p.scale,
                    zero_point: p.zero_point,
                }),
            );
        }
        GemmDtype::F32 => {}
    }
    b.then(
        "fc",
        Op::Linear(Linear {
            in_features: k,
            out_features: n,
            bias: false,
        }),
    );
    let mut m = Model::init(b.finish()?, seed)?;
    if dtype == GemmDtype::Binary {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let w = m.params.get_mut("fc.weight").expect("a Linear weight");
        for row in w.data_mut().chunks_mut(k) {
            let alpha: f32 = rng.random_range(0.01..0.1);
            row.iter_mut()
                .for_each(|v| *v = if *v >= 0.0 { alpha } else { -alpha });
        }
    }
    if matches!(dtype, GemmDtype::Int8 | GemmDtype::Int4) {
        let bits = [(
            "fc.weight".to_string(),
            if dtype == GemmDtype::Int4 { 4 } else { 7 },
        )]
        .into();
        m = crate::ir::reparam::bake(&m, &crate::quant::weight_reparams(&m, &bits, true, true, false));
    }
    Ok(m)
}
