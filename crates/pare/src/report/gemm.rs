//! One-layer models for `pare bench gemm`: a `[k] -> [n]` Linear layer in each weight form the
//! native engine runs, so that a kernel is timed as a layer of a compiled plan (input packing
//! and all), interleaved with the f32 layer by [`super::latencies_ms`].

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};
use crate::ir::{GraphBuilder, Model, Op};

/// The weight form of a benchmarked layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmDtype {
    F32,
    /// `alpha * sign(w)` rows behind a sign of the input: the XNOR-popcount kernel.
    Binary,
}

impl GemmDtype {
    pub fn parse(s: &str) -> Result<GemmDtype> {
        match s {
            "f32" => Ok(GemmDtype::F32),
            "binary" => Ok(GemmDtype::Binary),
            other => Err(Error::Config(format!(
                "gemm dtype '{other}': expected f32 or binary (the native engine has no int8 or int4 kernel)"
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
    if dtype == GemmDtype::Binary {
        b.then("sign", Op::Sign);
    }
    b.then(
        "fc",
        Op::Linear {
            in_features: k,
            out_features: n,
            bias: false,
        },
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
    Ok(m)
}
