//! Numbers and widths checked while a recipe is parsed (serde `try_from`), so that toml
//! reports the line and column of a bad value.

use serde::{Deserialize, Serialize};

use crate::ir::quant::SHARE_BITS;

/// A number checked while the recipe is parsed, so that toml reports the line of a bad value.
macro_rules! checked {
    ($(#[$doc:meta])* $name:ident($ty:ty, $tys:literal), |$v:ident| $ok:expr, $msg:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(try_from = $tys, into = $tys)]
        pub struct $name(pub $ty);

        impl TryFrom<$ty> for $name {
            type Error = String;
            fn try_from($v: $ty) -> std::result::Result<Self, String> {
                if $ok {
                    Ok($name($v))
                } else {
                    Err(format!($msg))
                }
            }
        }

        impl From<$name> for $ty {
            fn from(x: $name) -> $ty {
                x.0
            }
        }
    };
}

checked!(
    /// A fraction in `[0, 1)`: what may be removed from a layer.
    Fraction(f32, "f32"),
    |v| (0.0..1.0).contains(&v),
    "{v} is not a fraction in [0, 1) (a layer keeps at least one weight)"
);
checked!(
    /// A positive, finite number (learning rates, temperatures).
    Positive(f32, "f32"),
    |v| v > 0.0 && v.is_finite(),
    "{v} must be positive"
);
checked!(
    /// A bit width in `SHARE_BITS` (weight sharing) or `BITS` (uniform; checked by the stage).
    Bits(u32, "u32"),
    |v| SHARE_BITS.contains(&v),
    "{v} bits: must be in {SHARE_BITS:?}"
);
checked!(
    /// The percentile an observer clips at, in `(50, 100]` (the range keeps both tails).
    Percentile(f32, "f32"),
    |v| v > 50.0 && v <= 100.0,
    "percentile {v} must be in (50, 100]"
);
checked!(
    /// How many virtual weights share one stored value (HashedNets), 1 or more.
    HashFactor(f64, "f64"),
    |v| v >= 1.0 && v.is_finite(),
    "a hashing factor of {v} is impossible: it divides the weights, so it must be 1 or more"
);
checked!(
    /// A weight in `[0, 1]`.
    UnitFraction(f32, "f32"),
    |v| (0.0..=1.0).contains(&v),
    "{v} must be in [0, 1]"
);
