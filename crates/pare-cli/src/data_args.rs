//! `--data`, `--resize` and `--center-crop`: which data set a command reads and how its images
//! are prepared, shared by every command that trains or evaluates.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use pare::data::{fashion, Prep, Splits};

#[derive(Args, Clone, Debug, Default)]
pub struct DataArgs {
    /// Data set: a folder of IDX files, a CIFAR-10 binary folder, an image folder (train/ and
    /// test/ with one subfolder per class, or class subfolders), an .npz archive or a folder of
    /// x_train.npy .. y_test.npy [default: $PARE_DATA, else /usr/share/datasets/fashion-mnist].
    #[arg(long, value_name = "PATH")]
    pub data: Option<PathBuf>,
    /// Resize every image to H,W (one number: square) when it is loaded (bilinear).
    #[arg(long, value_name = "H[,W]", value_delimiter = ',')]
    pub resize: Option<Vec<usize>>,
    /// Then keep the center H,W (one number: square) of every image.
    #[arg(long, value_name = "H[,W]", value_delimiter = ',')]
    pub center_crop: Option<Vec<usize>>,
}

/// `[h]` or `[h, w]` as a size.
fn size(v: &Option<Vec<usize>>, flag: &str) -> Result<Option<[usize; 2]>> {
    match v.as_deref() {
        None => Ok(None),
        Some(&[s]) if s > 0 => Ok(Some([s, s])),
        Some(&[h, w]) if h > 0 && w > 0 => Ok(Some([h, w])),
        Some(other) => bail!("{flag} {other:?}: give H,W (or one size), both positive"),
    }
}

impl DataArgs {
    /// The data set's path: --data, else $PARE_DATA, else the Debian package's folder.
    pub fn path(&self) -> PathBuf {
        fashion::resolve_dir(self.data.as_deref())
    }

    pub fn prep(&self) -> Result<Prep> {
        Ok(Prep {
            resize: size(&self.resize, "--resize")?,
            crop: size(&self.center_crop, "--center-crop")?,
        })
    }

    /// Both splits, prepared.
    pub fn load(&self) -> Result<Splits> {
        let path = self.path();
        pare::data::load(&path, &self.prep()?)
            .with_context(|| format!("loading the data set {}", path.display()))
    }
}
