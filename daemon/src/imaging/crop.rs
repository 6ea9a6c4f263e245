//! Cutting rectangles out of images and masks, and edge-replicating padding.
//!
//! Exists because both context modes move pixels between image space and model space by plain
//! copies: Auto cuts the context rectangle out before resizing, Full pads the whole image up to
//! the model's size multiple by replicating its last column/row (so the model sees no artificial
//! border) and cuts the padding off the result again.

use livefill_protocol::{Mask, RgbaImage};

use super::error::{ImagingError, check_side, validate_mask, validate_rgba};
use super::rect::Rect;

/// Copies `rect` (which must lie inside the image) out of an RGBA image.
pub fn extract_crop(image: &RgbaImage, rect: Rect) -> Result<RgbaImage, ImagingError> {
    validate_rgba(image, "image")?;
    check_inside(rect, image.width, image.height)?;
    Ok(RgbaImage {
        width: rect.width,
        height: rect.height,
        pixels: crop_bytes(&image.pixels, image.width, 4, rect),
    })
}

/// Copies `rect` (which must lie inside the mask) out of a mask.
pub fn extract_mask_crop(mask: &Mask, rect: Rect) -> Result<Mask, ImagingError> {
    validate_mask(mask, "mask")?;
    check_inside(rect, mask.width, mask.height)?;
    Ok(Mask {
        width: rect.width,
        height: rect.height,
        pixels: crop_bytes(&mask.pixels, mask.width, 1, rect),
    })
}

/// Grows an RGBA image to `width` x `height` (each at least the current size) by replicating
/// its last column to the right and its last row downward.
pub fn pad_edges(image: &RgbaImage, width: u32, height: u32) -> Result<RgbaImage, ImagingError> {
    validate_rgba(image, "image")?;
    check_growth(image.width, image.height, width, height)?;
    Ok(RgbaImage {
        width,
        height,
        pixels: pad_bytes(
            &image.pixels,
            (image.width, image.height),
            4,
            (width, height),
        ),
    })
}

/// Mask counterpart of [`pad_edges`].
pub fn pad_mask_edges(mask: &Mask, width: u32, height: u32) -> Result<Mask, ImagingError> {
    validate_mask(mask, "mask")?;
    check_growth(mask.width, mask.height, width, height)?;
    Ok(Mask {
        width,
        height,
        pixels: pad_bytes(&mask.pixels, (mask.width, mask.height), 1, (width, height)),
    })
}

fn check_inside(rect: Rect, width: u32, height: u32) -> Result<(), ImagingError> {
    if rect.is_empty() || !rect.fits_in(width, height) {
        return Err(ImagingError::RectOutside {
            rect,
            width,
            height,
        });
    }
    Ok(())
}

fn check_growth(w: u32, h: u32, width: u32, height: u32) -> Result<(), ImagingError> {
    check_side("padded size", width.into(), height.into())?;
    if width < w || height < h {
        return Err(ImagingError::SizeMismatch {
            what: "padded size (smaller than the image)",
            expected_width: w,
            expected_height: h,
            actual_width: width,
            actual_height: height,
        });
    }
    Ok(())
}

/// Row-by-row copy of `rect` out of a `width`-wide buffer of `channels` bytes per pixel.
pub(crate) fn crop_bytes(pixels: &[u8], width: u32, channels: usize, rect: Rect) -> Vec<u8> {
    let stride = width as usize * channels;
    let row_len = rect.width as usize * channels;
    let x0 = rect.x as usize * channels;
    let mut out = Vec::with_capacity(row_len * rect.height as usize);
    for y in rect.y as usize..rect.bottom() as usize {
        out.extend_from_slice(&pixels[y * stride + x0..][..row_len]);
    }
    out
}

/// Edge-replicating growth of a buffer from `from` to `to` (both width, height).
fn pad_bytes(pixels: &[u8], from: (u32, u32), channels: usize, to: (u32, u32)) -> Vec<u8> {
    let (fw, fh) = (from.0 as usize, from.1 as usize);
    let (tw, th) = (to.0 as usize, to.1 as usize);
    let mut out = Vec::with_capacity(tw * th * channels);
    for row in pixels.chunks_exact(fw * channels) {
        out.extend_from_slice(row);
        let last = &row[(fw - 1) * channels..];
        for _ in fw..tw {
            out.extend_from_slice(last);
        }
    }
    let row_len = tw * channels;
    for _ in fh..th {
        out.extend_from_within((fh - 1) * row_len..fh * row_len);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbered(w: u32, h: u32) -> RgbaImage {
        RgbaImage {
            width: w,
            height: h,
            pixels: (0..w * h).flat_map(|i| [i as u8, 0, 0, 255]).collect(),
        }
    }

    #[test]
    fn crops_the_right_pixels() {
        let img = numbered(5, 4);
        let c = extract_crop(&img, Rect::new(1, 2, 3, 2)).unwrap();
        let reds: Vec<u8> = c.pixels.chunks_exact(4).map(|p| p[0]).collect();
        assert_eq!(reds, [11, 12, 13, 16, 17, 18]);
        assert!(extract_crop(&img, Rect::new(3, 0, 3, 1)).is_err());
        assert!(extract_crop(&img, Rect::new(-1, 0, 2, 1)).is_err());
        assert!(extract_crop(&img, Rect::new(0, 0, 0, 1)).is_err());
    }

    #[test]
    fn mask_crop_matches_image_crop() {
        let m = Mask {
            width: 5,
            height: 4,
            pixels: (0..20).collect(),
        };
        let c = extract_mask_crop(&m, Rect::new(1, 2, 3, 2)).unwrap();
        assert_eq!(c.pixels, [11, 12, 13, 16, 17, 18]);
    }

    #[test]
    fn pads_by_replicating_edges_and_cuts_back() {
        let img = numbered(3, 2);
        let padded = pad_edges(&img, 5, 4).unwrap();
        let reds: Vec<u8> = padded.pixels.chunks_exact(4).map(|p| p[0]).collect();
        assert_eq!(
            reds,
            [0, 1, 2, 2, 2, 3, 4, 5, 5, 5, 3, 4, 5, 5, 5, 3, 4, 5, 5, 5]
        );
        assert_eq!(extract_crop(&padded, Rect::of_size(3, 2)).unwrap(), img);
        assert!(pad_edges(&img, 2, 4).is_err());
        let m = Mask {
            width: 2,
            height: 1,
            pixels: vec![7, 9],
        };
        assert_eq!(pad_mask_edges(&m, 3, 2).unwrap().pixels, [7, 9, 9, 7, 9, 9]);
    }
}
