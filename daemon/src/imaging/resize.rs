//! Resampling of RGBA images and masks between crop size and model size.
//!
//! Exists because Auto context scales the crop to the model's native area and the generated
//! pixels back again, and both directions need a filter that neither blurs nor rings much:
//! Lanczos3 when shrinking, Catmull-Rom when enlarging (sharper than bilinear, less ringing than
//! Lanczos on upscales), Triangle (bilinear) for masks so their edges stay monotone. Images with
//! any non-opaque pixel are resampled premultiplied, so the invisible colour of
//! transparent pixels cannot bleed into visible neighbours. The filtering itself is
//! `resample`'s.

use livefill_protocol::{Mask, RgbaImage};

use super::error::{ImagingError, check_side, validate_mask, validate_rgba};
use super::resample::{Kernel, resample};

/// Resamples an RGBA image to `width` x `height` (see the module docs for the filters).
pub fn resize_rgba(image: &RgbaImage, width: u32, height: u32) -> Result<RgbaImage, ImagingError> {
    validate_rgba(image, "image")?;
    check_side("resize target", width.into(), height.into())?;
    if (image.width, image.height) == (width, height) {
        return Ok(image.clone());
    }
    let kernel = image_kernel(image.width, image.height, width, height);
    let translucent = image.pixels.chunks_exact(4).any(|p| p[3] != u8::MAX);
    let pixels = resample(
        &image.pixels,
        (image.width as usize, image.height as usize),
        4,
        (width as usize, height as usize),
        kernel,
        translucent,
    );
    Ok(RgbaImage {
        width,
        height,
        pixels,
    })
}

/// Resamples a mask to `width` x `height` with a bilinear (Triangle) filter.
pub fn resize_mask(mask: &Mask, width: u32, height: u32) -> Result<Mask, ImagingError> {
    validate_mask(mask, "mask")?;
    check_side("resize target", width.into(), height.into())?;
    if (mask.width, mask.height) == (width, height) {
        return Ok(mask.clone());
    }
    let pixels = resample(
        &mask.pixels,
        (mask.width as usize, mask.height as usize),
        1,
        (width as usize, height as usize),
        Kernel::Triangle,
        false,
    );
    Ok(Mask {
        width,
        height,
        pixels,
    })
}

/// Lanczos3 when no side grows, Catmull-Rom otherwise.
fn image_kernel(from_w: u32, from_h: u32, to_w: u32, to_h: u32) -> Kernel {
    if to_w <= from_w && to_h <= from_h {
        Kernel::Lanczos3
    } else {
        Kernel::CatmullRom
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(w: u32, h: u32, px: [u8; 4]) -> RgbaImage {
        RgbaImage {
            width: w,
            height: h,
            pixels: px.repeat((w * h) as usize),
        }
    }

    #[test]
    fn flat_images_stay_flat_both_ways() {
        let img = flat(40, 30, [10, 100, 250, 255]);
        for (w, h) in [(16, 12), (96, 72), (40, 30)] {
            let out = resize_rgba(&img, w, h).unwrap();
            assert_eq!((out.width, out.height), (w, h));
            assert!(out.pixels.chunks_exact(4).all(|p| p == [10, 100, 250, 255]));
        }
    }

    #[test]
    fn transparent_colour_does_not_bleed() {
        // Left half opaque red, right half transparent "green" that must never show up.
        let mut img = flat(16, 4, [0, 255, 0, 0]);
        for (i, p) in img.pixels.chunks_exact_mut(4).enumerate() {
            if i % 16 < 8 {
                p.copy_from_slice(&[255, 0, 0, 255]);
            }
        }
        let out = resize_rgba(&img, 8, 2).unwrap();
        for p in out.pixels.chunks_exact(4).filter(|p| p[3] > 0) {
            assert!(p[1] <= 2, "green bled into {p:?}");
        }
    }

    #[test]
    fn mask_resize_keeps_values_in_range_and_size() {
        let mask = Mask {
            width: 4,
            height: 4,
            pixels: (0..16).map(|i| if i % 4 < 2 { 255 } else { 0 }).collect(),
        };
        let big = resize_mask(&mask, 16, 16).unwrap();
        assert_eq!(big.pixels.len(), 256);
        assert_eq!(big.pixels[0], 255);
        assert_eq!(big.pixels[15], 0);
        assert!(resize_mask(&mask, 0, 4).is_err());
    }
}
