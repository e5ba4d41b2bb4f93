//! Fashion-MNIST from IDX files: `--data DIR`, else `$PARE_DATA`, else the Debian package
//! `dataset-fashion-mnist` at `/usr/share/datasets/fashion-mnist`.

use std::path::{Path, PathBuf};

use super::dataset::{Dataset, InMemory};
use super::idx::{read_idx, IdxArray};
use crate::error::{Error, Result};
use crate::ir::Normalize;

/// Where the Debian package installs the set.
pub const DEFAULT_DIR: &str = "/usr/share/datasets/fashion-mnist";
/// Environment variable that overrides the default directory.
pub const ENV_VAR: &str = "PARE_DATA";

/// The class names, in label order.
pub const CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

pub use super::source::Splits;

/// The directory to read: the explicit one, else `$PARE_DATA`, else [`DEFAULT_DIR`].
pub fn resolve_dir(explicit: Option<&Path>) -> PathBuf {
    explicit
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os(ENV_VAR).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DIR))
}

fn find(dir: &Path, stem: &str) -> Result<PathBuf> {
    for name in [format!("{stem}.gz"), stem.to_string()] {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(Error::Data(format!(
        "{}: no {stem}.gz or {stem} (install the Debian package dataset-fashion-mnist, \
         or pass --data DIR / set {ENV_VAR} to a directory with the IDX files)",
        dir.display()
    )))
}

fn load_pair(dir: &Path, images: &str, labels: &str) -> Result<InMemory> {
    let ip = find(dir, images)?;
    let lp = find(dir, labels)?;
    pair(read_idx(&ip)?, &ip, read_idx(&lp)?, &lp)
}

/// Images `[N, H, W]` and labels `[N]` (each with the file it came from) as a data set.
pub fn pair(im: IdxArray, ip: &Path, lb: IdxArray, lp: &Path) -> Result<InMemory> {
    if im.dims.len() != 3 {
        return Err(Error::Idx {
            path: ip.to_path_buf(),
            reason: format!("images must have 3 dimensions [N, H, W], got {:?}", im.dims),
        });
    }
    if lb.dims.len() != 1 || lb.dims[0] != im.dims[0] {
        return Err(Error::Idx {
            path: lp.to_path_buf(),
            reason: format!(
                "labels have dims {:?}, expected [{}] to match the images",
                lb.dims, im.dims[0]
            ),
        });
    }
    let pixels = im.data.iter().map(|&b| b as f32 / 255.0).collect();
    let labels = lb.data.iter().map(|&b| b as u32).collect();
    InMemory::new(vec![1, im.dims[1], im.dims[2]], 10, pixels, labels)
        .map_err(|e| Error::Data(format!("{}: {e}", lp.display())))
}

/// Loads both splits from `dir` (gzipped or raw IDX files with the standard names).
///
/// # Errors
/// Besides unreadable files: an empty split, or test images of another size than the training
/// images, named by file, so that no run trains fully and then fails (or reports an accuracy
/// on nothing) at the end.
pub fn load(dir: &Path) -> Result<Splits> {
    let train = load_pair(dir, "train-images-idx3-ubyte", "train-labels-idx1-ubyte")?;
    let test = load_pair(dir, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")?;
    for (set, stem) in [
        (&train, "train-images-idx3-ubyte"),
        (&test, "t10k-images-idx3-ubyte"),
    ] {
        if set.is_empty() {
            return Err(Error::Data(format!(
                "{}: holds no images",
                find(dir, stem)?.display()
            )));
        }
    }
    if train.sample_shape() != test.sample_shape() {
        return Err(Error::Data(format!(
            "{}: test images are {:?}, the training images {:?}",
            find(dir, "t10k-images-idx3-ubyte")?.display(),
            test.sample_shape(),
            train.sample_shape()
        )));
    }
    Ok(Splits { train, test })
}

/// Mean and standard deviation of every pixel of a set: the normalization a model trained on
/// it should record (Fashion-MNIST's training set gives about 0.286 / 0.353).
pub fn pixel_stats(set: &dyn Dataset) -> Normalize {
    let (mut s, mut s2, mut n) = (0f64, 0f64, 0f64);
    for i in 0..set.len() {
        for &v in set.image(i) {
            s += v as f64;
            s2 += (v as f64) * (v as f64);
            n += 1.0;
        }
    }
    let mean = s / n.max(1.0);
    let var = (s2 / n.max(1.0) - mean * mean).max(1e-12);
    Normalize::scalar(mean as f32, var.sqrt() as f32)
}
