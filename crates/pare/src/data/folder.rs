//! Image folders in torchvision's `ImageFolder` layout: one subfolder per class, named for it,
//! holding PNG, JPEG or BMP files. `DIR/train/` and `DIR/test/` (or `DIR/val/`) are the two
//! splits; a `DIR` of class folders alone is split by holding out every tenth image of each
//! class (in file-name order) as the test set.
//!
//! Classes are the training split's folder names in sorted order (label 0 first, as
//! torchvision numbers them). Files with other extensions are skipped, as torchvision skips
//! them. A set is grayscale (1 channel) when every image is, else RGB (3 channels; alpha is
//! dropped, gray images repeated over the three).

use std::path::{Path, PathBuf};

use image::DynamicImage;
use rayon::prelude::*;

use super::dataset::{Dataset, InMemory};
use super::prep::Prep;
use super::source::Splits;
use crate::error::{Error, Result};

const EXTENSIONS: [&str; 4] = ["png", "jpg", "jpeg", "bmp"];

/// The split folders of `dir`: `(train, test)`, or `None` when `dir` holds class folders.
pub fn split_dirs(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let train = dir.join("train");
    let test = ["test", "val"].iter().map(|s| dir.join(s)).find(|d| d.is_dir())?;
    train.is_dir().then_some((train, test))
}

/// Whether `dir` looks like an image folder (split folders, or class folders holding images).
pub fn is_image_folder(dir: &Path) -> bool {
    split_dirs(dir).is_some()
        || subdirs(dir)
            .is_ok_and(|d| !d.is_empty() && d.iter().any(|c| images_in(c).is_ok_and(|f| !f.is_empty())))
}

fn subdirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let p = e.map_err(|e| Error::io(dir, e))?.path();
        let hidden = p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if p.is_dir() && !hidden {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

fn images_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let p = e.map_err(|e| Error::io(dir, e))?.path();
        let ext = p.extension().map(|x| x.to_string_lossy().to_ascii_lowercase());
        if p.is_file() && ext.is_some_and(|x| EXTENSIONS.contains(&x.as_str())) {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

/// Every image of a split with its class, classes given (the training split's names).
fn list(dir: &Path, classes: &[String]) -> Result<Vec<(PathBuf, u32)>> {
    let mut out = vec![];
    for sub in subdirs(dir)? {
        let name = sub
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Some(label) = classes.iter().position(|c| *c == name) else {
            return Err(Error::Data(format!(
                "{}: class folder '{name}' is not a class of the training split ({})",
                sub.display(),
                classes.join(", ")
            )));
        };
        let files = images_in(&sub)?;
        if files.is_empty() {
            return Err(Error::Data(format!(
                "{}: class folder holds no image ({})",
                sub.display(),
                EXTENSIONS.join(", ")
            )));
        }
        out.extend(files.into_iter().map(|f| (f, label as u32)));
    }
    Ok(out)
}

fn class_names(dir: &Path) -> Result<Vec<String>> {
    let names: Vec<String> = subdirs(dir)?
        .iter()
        .map(|d| {
            d.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .collect();
    if names.len() < 2 {
        return Err(Error::Data(format!(
            "{}: {} class folder(s); an image folder holds one subfolder per class (at least two), \
             or train/ and test/ (or val/) folders that do",
            dir.display(),
            names.len()
        )));
    }
    Ok(names)
}

/// Decodes every file (in parallel), checks one size for all unless resized, and makes the set.
fn decode(
    files: &[(PathBuf, u32)],
    classes: usize,
    prep: &Prep,
    channels: Option<usize>,
) -> Result<InMemory> {
    let images: Vec<DynamicImage> = files
        .par_iter()
        .map(|(f, _)| {
            image::open(f).map_err(|e| Error::Data(format!("{}: unreadable image: {e}", f.display())))
        })
        .collect::<Result<_>>()?;
    let channels = channels.unwrap_or_else(|| {
        if images.iter().all(|i| !i.color().has_color()) {
            1
        } else {
            3
        }
    });
    let size = |i: &DynamicImage| [i.height() as usize, i.width() as usize];
    let first = size(&images[0]);
    if prep.resize.is_none() {
        if let Some(k) = images.iter().position(|i| size(i) != first) {
            let [h, w] = size(&images[k]);
            return Err(Error::Data(format!(
                "{}: image is {h}x{w}, {} is {}x{}; give --resize H,W to bring every image to one size",
                files[k].0.display(),
                files[0].0.display(),
                first[0],
                first[1]
            )));
        }
    }
    let [oh, ow] = prep.output_size(prep.resize.unwrap_or(first))?;
    let pixels: Vec<Vec<f32>> = images
        .par_iter()
        .map(|img| {
            let [h, w] = size(img);
            let chw: Vec<f32> = if channels == 1 {
                img.to_luma32f().into_raw()
            } else {
                let rgb = img.to_rgb32f().into_raw();
                (0..3)
                    .flat_map(|c| rgb.iter().skip(c).step_by(3).copied().collect::<Vec<_>>())
                    .collect()
            };
            prep.apply(&chw, channels, [h, w])
        })
        .collect::<Result<_>>()?;
    let labels = files.iter().map(|(_, l)| *l).collect();
    InMemory::new(vec![channels, oh, ow], classes, pixels.concat(), labels)
}

/// Both splits of an image folder.
pub fn load(dir: &Path, prep: &Prep) -> Result<Splits> {
    let (train_files, test_files, classes) = match split_dirs(dir) {
        Some((train, test)) => {
            let classes = class_names(&train)?;
            (list(&train, &classes)?, list(&test, &classes)?, classes)
        }
        None => {
            let classes = class_names(dir)?;
            let all = list(dir, &classes)?;
            // Every tenth image of each class (its files in name order) is held out.
            let mut seen = vec![0usize; classes.len()];
            let (mut train, mut test) = (vec![], vec![]);
            for (f, l) in all {
                let k = &mut seen[l as usize];
                if *k % 10 == 9 { &mut test } else { &mut train }.push((f, l));
                *k += 1;
            }
            if test.is_empty() {
                return Err(Error::Data(format!(
                    "{}: too few images to hold out a test set (every tenth of each class); add train/ and test/ folders",
                    dir.display()
                )));
            }
            (train, test, classes)
        }
    };
    let train = decode(&train_files, classes.len(), prep, None)?;
    let test = decode(&test_files, classes.len(), prep, Some(train.sample_shape()[0]))?;
    if train.sample_shape() != test.sample_shape() {
        return Err(Error::Data(format!(
            "{}: test images are {:?}, the training images {:?}; give --resize H,W",
            dir.display(),
            &test.sample_shape()[1..],
            &train.sample_shape()[1..]
        )));
    }
    Ok(Splits { train, test })
}
