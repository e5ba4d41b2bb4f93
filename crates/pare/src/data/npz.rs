//! NumPy arrays: an `.npz` archive, or a folder of `.npy` files, holding `x_train`, `y_train`,
//! `x_test` and `y_test` (the names Keras' data sets use). Images are `[N, H, W]` (one
//! channel), `[N, H, W, C]` (channels last, Keras) or `[N, C, H, W]` (PyTorch) with C = 1 or 3;
//! `uint8` pixels are divided by 255, floats taken as they are. Labels are integers `[N]`.

use std::io::Read;
use std::path::Path;

use npyz::npz::NpzArchive;
use npyz::{DType, NpyFile};

use super::dataset::InMemory;
use super::prep::Prep;
use super::source::Splits;
use crate::error::{Error, Result};

/// Labels above this are refused (a classifier with that many outputs is a mistake).
const MAX_CLASSES: usize = 100_000;

/// The names of the four arrays.
const NAMES: [&str; 4] = ["x_train", "y_train", "x_test", "y_test"];

/// An array's shape and values.
struct Array {
    shape: Vec<usize>,
    values: Vec<f64>,
    /// Whether the values were `uint8` (pixels in 0..=255).
    bytes: bool,
}

fn read<R: Read>(npy: NpyFile<R>, what: &str) -> Result<Array> {
    let bad = |reason: String| Error::Data(format!("{what}: {reason}"));
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&n| n <= crate::ir::graph::MAX_ELEMENTS * 4)
        .ok_or_else(|| bad(format!("shape {shape:?} is too large")))?;
    let type_str = match npy.dtype() {
        DType::Plain(t) => t.to_string(),
        other => return Err(bad(format!("dtype {other:?} is not a plain number type"))),
    };
    let io = |e: std::io::Error| bad(format!("unreadable values: {e}"));
    // Every element type as f64 (exact for the pixel and label types data sets use).
    macro_rules! as_f64 {
        ($t:ty) => {
            npy.into_vec::<$t>()
                .map_err(io)?
                .into_iter()
                .map(|v| v as f64)
                .collect()
        };
    }
    let (values, bytes): (Vec<f64>, bool) = match type_str.trim_start_matches(['<', '|', '=']) {
        "u1" => (as_f64!(u8), true),
        "i1" => (as_f64!(i8), false),
        "i2" => (as_f64!(i16), false),
        "u2" => (as_f64!(u16), false),
        "i4" => (as_f64!(i32), false),
        "u4" => (as_f64!(u32), false),
        "i8" => (as_f64!(i64), false),
        "u8" => (as_f64!(u64), false),
        "f4" => (as_f64!(f32), false),
        "f8" => (as_f64!(f64), false),
        other => {
            return Err(bad(format!(
                "dtype '{other}': pare reads integer and float arrays"
            )))
        }
    };
    if values.len() != n {
        return Err(bad(format!("holds {} values for shape {shape:?}", values.len())));
    }
    Ok(Array { shape, values, bytes })
}

/// Images and labels as a set: the layout read from the shape, pixels prepared.
fn pair(x: Array, y: Array, xname: &str, yname: &str, classes: usize, prep: &Prep) -> Result<InMemory> {
    let bad = |what: &str, reason: String| Error::Data(format!("{what}: {reason}"));
    let (n, c, h, w, channels_last) = match x.shape[..] {
        [n, h, w] => (n, 1, h, w, false),
        [n, h, w, c] if c == 1 || c == 3 => (n, c, h, w, true),
        [n, c, h, w] if c == 1 || c == 3 => (n, c, h, w, false),
        _ => {
            return Err(bad(
                xname,
                format!(
                    "images of shape {:?}: expected [N, H, W], [N, H, W, C] or [N, C, H, W] with C = 1 or 3",
                    x.shape
                ),
            ))
        }
    };
    if y.shape != [n] {
        return Err(bad(
            yname,
            format!("labels of shape {:?} for {n} images", y.shape),
        ));
    }
    let labels = y
        .values
        .iter()
        .map(|&v| {
            (v.fract() == 0.0 && v >= 0.0 && (v as usize) < classes)
                .then_some(v as u32)
                .ok_or_else(|| bad(yname, format!("label {v} is not a class id in 0..{classes}")))
        })
        .collect::<Result<Vec<u32>>>()?;
    let [oh, ow] = prep.output_size([h, w])?;
    let scale = if x.bytes { 1.0 / 255.0 } else { 1.0 };
    let per = c * h * w;
    let mut images = Vec::with_capacity(n * c * oh * ow);
    let mut chw = vec![0f32; per];
    for img in x.values.chunks(per) {
        for (k, v) in chw.iter_mut().enumerate() {
            // k indexes [C, H, W]; channels-last sources hold [H, W, C].
            let src = if channels_last {
                (k % (h * w)) * c + k / (h * w)
            } else {
                k
            };
            *v = (img[src] * scale) as f32;
        }
        images.extend(prep.apply(&chw, c, [h, w])?);
    }
    InMemory::new(vec![c, oh, ow], classes, images, labels).map_err(|e| bad(xname, e.to_string()))
}

/// Both splits from an `.npz` archive or a folder of `{name}.npy` files.
pub fn load(path: &Path, prep: &Prep) -> Result<Splits> {
    let mut arrays = vec![];
    if path.is_dir() {
        for name in NAMES {
            let file = path.join(format!("{name}.npy"));
            let f = std::fs::File::open(&file).map_err(|e| Error::io(&file, e))?;
            let what = file.display().to_string();
            let npy = NpyFile::new(std::io::BufReader::new(f))
                .map_err(|e| Error::Data(format!("{what}: not a .npy file: {e}")))?;
            arrays.push((what.clone(), read(npy, &what)?));
        }
    } else {
        let mut npz = NpzArchive::open(path)
            .map_err(|e| Error::Data(format!("{}: not an .npz archive: {e}", path.display())))?;
        for name in NAMES {
            let what = format!("{}: array '{name}'", path.display());
            let npy = npz
                .by_name(name)
                .map_err(|e| Error::Data(format!("{what}: {e}")))?
                .ok_or_else(|| {
                    Error::Data(format!(
                        "{what} is missing (an .npz data set holds {})",
                        NAMES.join(", ")
                    ))
                })?;
            arrays.push((what.clone(), read(npy, &what)?));
        }
    }
    let mut it = arrays.into_iter();
    let mut next = || it.next().expect("four arrays");
    let ((xn, x), (yn, y), (xtn, xt), (ytn, yt)) = (next(), next(), next(), next());
    let top = y.values.iter().chain(&yt.values).fold(0f64, |m, &v| m.max(v));
    if top >= MAX_CLASSES as f64 {
        return Err(Error::Data(format!(
            "{yn}: label {top}: pare takes at most {MAX_CLASSES} classes"
        )));
    }
    let classes = top as usize + 1;
    let train = pair(x, y, &xn, &yn, classes, prep)?;
    let test = pair(xt, yt, &xtn, &ytn, classes, prep)?;
    Ok(Splits { train, test })
}
