//! Resampling of RGBA images and masks between crop size and model size.
//!
//! Exists because Auto context scales the crop to the model's native area and the generated
//! pixels back again, and both directions need a filter that neither blurs nor rings much:
//! Lanczos3 when shrinking, Catmull-Rom when enlarging (sharper than bilinear, less ringing than
//! Lanczos on upscales), Triangle (bilinear) for masks so their edges stay monotone. Images with
//! any non-opaque pixel are resampled premultiplied (in `f32`), so the invisible colour of
//! transparent pixels cannot bleed into visible neighbours.

use image::imageops::{self, FilterType};
use image::{ImageBuffer, Luma, Rgba};
use livefill_protocol::{Mask, RgbaImage};

use super::error::{ImagingError, check_side, validate_mask, validate_rgba};

/// Resamples an RGBA image to `width` x `height` (see the module docs for the filters).
pub fn resize_rgba(image: &RgbaImage, width: u32, height: u32) -> Result<RgbaImage, ImagingError> {
    validate_rgba(image, "image")?;
    check_side("resize target", width.into(), height.into())?;
    if (image.width, image.height) == (width, height) {
        return Ok(image.clone());
    }
    let filter = image_filter(image.width, image.height, width, height);
    let pixels = if image.pixels.chunks_exact(4).all(|p| p[3] == u8::MAX) {
        resize_opaque(image, width, height, filter)
    } else {
        resize_premultiplied(image, width, height, filter)
    };
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
    let view: ImageBuffer<Luma<u8>, &[u8]> =
        ImageBuffer::from_raw(mask.width, mask.height, mask.pixels.as_slice())
            .expect("validated length");
    let out = imageops::resize(&view, width, height, FilterType::Triangle);
    Ok(Mask {
        width,
        height,
        pixels: out.into_raw(),
    })
}

/// Lanczos3 when no side grows, Catmull-Rom otherwise.
fn image_filter(from_w: u32, from_h: u32, to_w: u32, to_h: u32) -> FilterType {
    if to_w <= from_w && to_h <= from_h {
        FilterType::Lanczos3
    } else {
        FilterType::CatmullRom
    }
}

fn resize_opaque(image: &RgbaImage, width: u32, height: u32, filter: FilterType) -> Vec<u8> {
    let view: ImageBuffer<Rgba<u8>, &[u8]> =
        ImageBuffer::from_raw(image.width, image.height, image.pixels.as_slice())
            .expect("validated length");
    imageops::resize(&view, width, height, filter).into_raw()
}

fn resize_premultiplied(image: &RgbaImage, width: u32, height: u32, filter: FilterType) -> Vec<u8> {
    let mut floats = Vec::with_capacity(image.pixels.len());
    for p in image.pixels.chunks_exact(4) {
        let a = f32::from(p[3]) / 255.0;
        floats.extend_from_slice(&[
            f32::from(p[0]) * a,
            f32::from(p[1]) * a,
            f32::from(p[2]) * a,
            a,
        ]);
    }
    let src: ImageBuffer<Rgba<f32>, Vec<f32>> =
        ImageBuffer::from_raw(image.width, image.height, floats).expect("sized above");
    let out = imageops::resize(&src, width, height, filter).into_raw();
    let mut pixels = Vec::with_capacity(out.len());
    for p in out.chunks_exact(4) {
        pixels.extend_from_slice(&unpremultiply(p));
    }
    pixels
}

/// Premultiplied `[r*a, g*a, b*a, a]` (colour in 0..=255, alpha in 0..=1) back to straight u8.
fn unpremultiply(p: &[f32]) -> [u8; 4] {
    let a = p[3].clamp(0.0, 1.0);
    let alpha = (a * 255.0).round() as u8;
    if alpha == 0 {
        return [0, 0, 0, 0];
    }
    let channel = |v: f32| (v / a).round().clamp(0.0, 255.0) as u8;
    [channel(p[0]), channel(p[1]), channel(p[2]), alpha]
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
