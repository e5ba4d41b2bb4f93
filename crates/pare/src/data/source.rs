//! Where a data set comes from: `--data PATH` names a folder of IDX files (Fashion-MNIST,
//! MNIST), a CIFAR-10 binary folder, an image folder (torchvision's `ImageFolder` layout), an
//! `.npz` archive or a folder of `.npy` arrays. The format is recognised from what the path
//! holds; every format gives the same [`Splits`] of images in [0, 1], prepared by [`Prep`].

use std::path::Path;

use super::dataset::{Dataset, InMemory};
use super::prep::Prep;
use super::{cifar, fashion, folder, npz};
use crate::error::{Error, Result};

/// The training and test sets.
pub struct Splits {
    pub train: InMemory,
    pub test: InMemory,
}

/// The formats `--data` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// IDX files with the MNIST names (gzipped or raw).
    Idx,
    /// CIFAR-10's binary batches.
    Cifar10,
    /// One subfolder per class (inside train/ and test/ or val/, or directly).
    ImageFolder,
    /// `x_train`, `y_train`, `x_test`, `y_test` in an `.npz` archive or as `.npy` files.
    Numpy,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Idx => "IDX",
            Format::Cifar10 => "CIFAR-10 binary",
            Format::ImageFolder => "image folder",
            Format::Numpy => "NumPy arrays",
        }
    }
}

/// The format of `path`, or an error that lists what pare looks for.
pub fn detect(path: &Path) -> Result<Format> {
    if !path.exists() {
        return Err(Error::Data(format!(
            "{}: no such file or directory (install the Debian package dataset-fashion-mnist, \
             or pass --data PATH / set {} to a data set)",
            path.display(),
            fashion::ENV_VAR
        )));
    }
    if path.is_file() {
        return match path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()) {
            Some(e) if e == "npz" => Ok(Format::Numpy),
            _ => Err(Error::Data(format!(
                "{}: a data set file must be an .npz archive (x_train, y_train, x_test, y_test)",
                path.display()
            ))),
        };
    }
    let has = |name: &str| path.join(name).is_file() || path.join(format!("{name}.gz")).is_file();
    if has("train-images-idx3-ubyte") {
        Ok(Format::Idx)
    } else if cifar::batches_dir(path).is_some() {
        Ok(Format::Cifar10)
    } else if path.join("x_train.npy").is_file() {
        Ok(Format::Numpy)
    } else if folder::is_image_folder(path) {
        Ok(Format::ImageFolder)
    } else {
        Err(Error::Data(format!(
            "{}: no data set found: expected IDX files (train-images-idx3-ubyte[.gz], ..., \
             as the Debian package dataset-fashion-mnist installs), CIFAR-10 batches \
             (data_batch_1.bin .. test_batch.bin), x_train.npy .. y_test.npy, or an image folder \
             (train/ and test/ with one subfolder per class, or class subfolders)",
            path.display()
        )))
    }
}

/// Both splits of the data set at `path`, every image prepared by `prep`.
///
/// # Errors
/// Besides unreadable files: an empty split, or test images of another shape than the
/// training images, named by path, so that no run trains fully and then fails at the end.
pub fn load(path: &Path, prep: &Prep) -> Result<Splits> {
    let splits = match detect(path)? {
        Format::Idx => {
            let s = fashion::load(path)?;
            if prep.is_identity() {
                s
            } else {
                Splits {
                    train: prepared(&s.train, prep)?,
                    test: prepared(&s.test, prep)?,
                }
            }
        }
        Format::Cifar10 => cifar::load(&cifar::batches_dir(path).expect("detected"), prep)?,
        Format::ImageFolder => folder::load(path, prep)?,
        Format::Numpy => npz::load(path, prep)?,
    };
    for (set, name) in [(&splits.train, "training"), (&splits.test, "test")] {
        if set.is_empty() {
            return Err(Error::Data(format!(
                "{}: the {name} split holds no images",
                path.display()
            )));
        }
    }
    if splits.train.sample_shape() != splits.test.sample_shape() {
        return Err(Error::Data(format!(
            "{}: test images are {:?}, the training images {:?}",
            path.display(),
            splits.test.sample_shape(),
            splits.train.sample_shape()
        )));
    }
    Ok(splits)
}

/// A loaded set with every image prepared.
fn prepared(set: &InMemory, prep: &Prep) -> Result<InMemory> {
    let shape = set.sample_shape();
    let (c, hw) = (shape[0], [shape[1], shape[2]]);
    let [oh, ow] = prep.output_size(hw)?;
    let mut images = Vec::with_capacity(set.len() * c * oh * ow);
    let mut labels = Vec::with_capacity(set.len());
    for i in 0..set.len() {
        images.extend(prep.apply(set.image(i), c, hw)?);
        labels.push(set.label(i));
    }
    InMemory::new(vec![c, oh, ow], set.num_classes(), images, labels)
}
