//! The CIFAR-10 binary format (`cifar-10-batches-bin`): records of one label byte and a 32x32
//! image as three 1,024-byte planes (red, green, blue); `data_batch_1.bin` to
//! `data_batch_5.bin` are the training set, `test_batch.bin` the test set.

use std::path::{Path, PathBuf};

use super::dataset::InMemory;
use super::prep::Prep;
use super::source::Splits;
use crate::error::{Error, Result};

const SIDE: usize = 32;
const PIXELS: usize = 3 * SIDE * SIDE;
const RECORD: usize = 1 + PIXELS;
const CLASSES: usize = 10;

/// The folder holding the batches: `dir` itself or its `cifar-10-batches-bin`.
pub fn batches_dir(dir: &Path) -> Option<PathBuf> {
    [dir.to_path_buf(), dir.join("cifar-10-batches-bin")]
        .into_iter()
        .find(|d| d.join("test_batch.bin").is_file())
}

/// One batch file's images (prepared) and labels.
fn read_batch(path: &Path, prep: &Prep, images: &mut Vec<f32>, labels: &mut Vec<u32>) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if bytes.is_empty() || !bytes.len().is_multiple_of(RECORD) {
        return Err(Error::Data(format!(
            "{}: {} bytes is not a whole number of CIFAR-10 records ({RECORD} bytes: a label, then 3x32x32 pixels)",
            path.display(),
            bytes.len()
        )));
    }
    for (k, r) in bytes.chunks_exact(RECORD).enumerate() {
        if r[0] as usize >= CLASSES {
            return Err(Error::Data(format!(
                "{}: record {k} has label {}, CIFAR-10 has {CLASSES} classes",
                path.display(),
                r[0]
            )));
        }
        labels.push(r[0] as u32);
        let pixels: Vec<f32> = r[1..].iter().map(|&b| b as f32 / 255.0).collect();
        images.extend(prep.apply(&pixels, 3, [SIDE, SIDE])?);
    }
    Ok(())
}

/// Both splits from the batches in `dir`.
pub fn load(dir: &Path, prep: &Prep) -> Result<Splits> {
    let [h, w] = prep.output_size([SIDE, SIDE])?;
    let set = |files: Vec<PathBuf>| -> Result<InMemory> {
        let (mut images, mut labels) = (vec![], vec![]);
        for f in &files {
            read_batch(f, prep, &mut images, &mut labels)?;
        }
        InMemory::new(vec![3, h, w], CLASSES, images, labels)
    };
    let train: Vec<PathBuf> = (1..=5).map(|k| dir.join(format!("data_batch_{k}.bin"))).collect();
    if let Some(missing) = train.iter().find(|f| !f.is_file()) {
        return Err(Error::Data(format!(
            "{}: missing (a CIFAR-10 binary folder holds data_batch_1.bin to data_batch_5.bin and test_batch.bin)",
            missing.display()
        )));
    }
    Ok(Splits {
        train: set(train)?,
        test: set(vec![dir.join("test_batch.bin")])?,
    })
}
