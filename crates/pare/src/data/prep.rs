//! Image preparation when a set is loaded: resize (bilinear, as torchvision's `Resize` on
//! tensors), then a center crop, on `[C, H, W]` images with values in [0, 1].

use image::imageops::{self, FilterType};
use image::{ImageBuffer, Luma};

use crate::error::{Error, Result};

/// What every image of a set is made into when it is loaded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Prep {
    /// Height and width after resizing (aspect ratio not kept).
    pub resize: Option<[usize; 2]>,
    /// Height and width of the center crop taken after any resize.
    pub crop: Option<[usize; 2]>,
}

impl Prep {
    /// True when images are used as they are.
    pub fn is_identity(&self) -> bool {
        self.resize.is_none() && self.crop.is_none()
    }

    /// The `[H, W]` an image of `[h, w]` becomes, or an error naming what does not fit.
    pub fn output_size(&self, [h, w]: [usize; 2]) -> Result<[usize; 2]> {
        let [h, w] = self.resize.unwrap_or([h, w]);
        match self.crop {
            Some([ch, cw]) if ch > h || cw > w => Err(Error::Data(format!(
                "a {ch}x{cw} center crop does not fit {h}x{w} images (resize them first: --resize)"
            ))),
            Some(c) => Ok(c),
            None => Ok([h, w]),
        }
    }

    /// One `[C, h, w]` image (row-major planes) prepared.
    pub fn apply(&self, pixels: &[f32], channels: usize, [h, w]: [usize; 2]) -> Result<Vec<f32>> {
        if self.is_identity() {
            return Ok(pixels.to_vec());
        }
        let [oh, ow] = self.output_size([h, w])?;
        let [rh, rw] = self.resize.unwrap_or([h, w]);
        let (top, left) = ((rh - oh) / 2, (rw - ow) / 2);
        let mut out = Vec::with_capacity(channels * oh * ow);
        for plane in pixels.chunks(h * w).take(channels) {
            let resized: Vec<f32> = if [rh, rw] == [h, w] {
                plane.to_vec()
            } else {
                let img: ImageBuffer<Luma<f32>, Vec<f32>> =
                    ImageBuffer::from_raw(w as u32, h as u32, plane.to_vec()).expect("a whole plane");
                imageops::resize(&img, rw as u32, rh as u32, FilterType::Triangle).into_raw()
            };
            for y in top..top + oh {
                out.extend_from_slice(&resized[y * rw + left..y * rw + left + ow]);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_then_center_crop() {
        // A 2x2 checker upscaled to 4x4 keeps its corners; the 2x2 crop is the middle.
        let p = Prep {
            resize: Some([4, 4]),
            crop: Some([2, 2]),
        };
        let out = p.apply(&[0.0, 1.0, 1.0, 0.0], 1, [2, 2]).unwrap();
        assert_eq!(out.len(), 4);
        assert!(out.iter().all(|v| (0.0..=1.0).contains(v)));
        let crop = Prep {
            resize: None,
            crop: Some([1, 2]),
        };
        let img: Vec<f32> = (0..9).map(|v| v as f32).collect();
        assert_eq!(crop.apply(&img, 1, [3, 3]).unwrap(), vec![3.0, 4.0]);
        assert!(crop
            .apply(&img, 1, [1, 1])
            .unwrap_err()
            .to_string()
            .contains("does not fit"));
    }
}
