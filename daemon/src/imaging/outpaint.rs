//! Canvas extension for outpainting.
//!
//! Exists because the model needs something plausible under the mask of the new border: flat
//! grey or black pulls the result toward that colour (especially with fewer steps or strength
//! below 1), while an edge continuation keeps the new area's colours and lighting consistent.
//! The border is first filled by replicating the nearest edge pixel, which gives streaks, then
//! blurred strongly (three box passes ≈ a Gaussian, radius scaled to the border width) and
//! mixed with a little of the image's mean colour, so the model gets soft, matching colour
//! fields rather than streaks. The original pixels are copied untouched. Border alpha is 255.
//!
//! **Mask**: 255 on the whole new border. With `overlap > 0` it also reaches `overlap` pixels
//! into the original along each *extended* side, falling off linearly from 255 at the seam
//! toward 0, so the composite blends across the seam instead of butting against it. That mask
//! is already soft: binarize it (`threshold = 0`) for the model's mask input, and use it as the
//! composite alpha as is, without `feather`, which would fade the border's outer side into the
//! blurred fill instead of into the original.

use livefill_protocol::{Extend, Mask, RgbaImage};

use super::error::{ImagingError, check_side, validate_rgba};
use super::filter::box_blur_rgb;

/// A sensible default for [`extend_canvas`]'s `overlap`.
pub const DEFAULT_OUTPAINT_OVERLAP: u32 = 8;
/// Share of the image's mean colour mixed into the blurred border fill.
const MEAN_MIX: f32 = 0.15;

/// The extended canvas, its regenerate mask, and where the canvas lies relative to the input
/// image (`-left`, `-top`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtendedCanvas {
    pub image: RgbaImage,
    pub mask: Mask,
    pub offset_x: i32,
    pub offset_y: i32,
}

/// Grows `image` by `extend` on each side (see the module docs for the fill and the mask).
pub fn extend_canvas(
    image: &RgbaImage,
    extend: Extend,
    overlap: u32,
) -> Result<ExtendedCanvas, ImagingError> {
    validate_rgba(image, "image")?;
    let width = u64::from(image.width) + u64::from(extend.left) + u64::from(extend.right);
    let height = u64::from(image.height) + u64::from(extend.top) + u64::from(extend.bottom);
    check_side("extended canvas", width, height)?;
    let (width, height) = (width as u32, height as u32);
    let mut canvas = replicate_edges(image, extend, width, height);
    fill_border(&mut canvas, image, extend);
    let mask = border_mask(image, extend, width, height, overlap);
    Ok(ExtendedCanvas {
        image: canvas,
        mask,
        offset_x: -(extend.left as i32),
        offset_y: -(extend.top as i32),
    })
}

/// The canvas with the original at (`left`, `top`) and every other pixel a copy of the
/// nearest original pixel.
fn replicate_edges(image: &RgbaImage, extend: Extend, width: u32, height: u32) -> RgbaImage {
    let (w, h) = (image.width as usize, image.height as usize);
    let stride = width as usize * 4;
    let mut pixels = Vec::with_capacity(stride * height as usize);
    for row in image.pixels.chunks_exact(w * 4) {
        for _ in 0..extend.left {
            pixels.extend_from_slice(&row[..4]);
        }
        pixels.extend_from_slice(row);
        for _ in 0..extend.right {
            pixels.extend_from_slice(&row[(w - 1) * 4..]);
        }
    }
    let top_row = pixels[..stride].to_vec();
    let bottom_row = pixels[(h - 1) * stride..].to_vec();
    let mut out = Vec::with_capacity(stride * height as usize);
    for _ in 0..extend.top {
        out.extend_from_slice(&top_row);
    }
    out.extend_from_slice(&pixels);
    for _ in 0..extend.bottom {
        out.extend_from_slice(&bottom_row);
    }
    RgbaImage {
        width,
        height,
        pixels: out,
    }
}

/// Replaces the border of `canvas` with a blurred copy of itself mixed with the mean colour,
/// opaque; pixels of the original keep their bytes.
fn fill_border(canvas: &mut RgbaImage, image: &RgbaImage, extend: Extend) {
    let widest = [extend.left, extend.top, extend.right, extend.bottom]
        .into_iter()
        .max()
        .unwrap_or(0);
    if widest == 0 {
        return;
    }
    let (w, h) = (canvas.width as usize, canvas.height as usize);
    let mut blurred = canvas.pixels.clone();
    let radius = (widest as usize / 3).clamp(2, 128);
    box_blur_rgb(&mut blurred, w, h, radius, 3);
    let mean = mean_colour(image);
    let (left, top) = (extend.left as usize, extend.top as usize);
    let (right, bottom) = (left + image.width as usize, top + image.height as usize);
    for y in 0..h {
        for x in 0..w {
            if (left..right).contains(&x) && (top..bottom).contains(&y) {
                continue;
            }
            let i = (y * w + x) * 4;
            for c in 0..3 {
                let v = f32::from(blurred[i + c]) * (1.0 - MEAN_MIX) + mean[c] * MEAN_MIX;
                canvas.pixels[i + c] = v.round() as u8;
            }
            canvas.pixels[i + 3] = u8::MAX;
        }
    }
}

/// Alpha-weighted mean RGB of an image (plain mean when it is fully transparent).
fn mean_colour(image: &RgbaImage) -> [f32; 3] {
    let (mut sum, mut weight) = ([0f64; 3], 0f64);
    let mut plain = [0f64; 3];
    for p in image.pixels.chunks_exact(4) {
        let a = f64::from(p[3]);
        for c in 0..3 {
            sum[c] += f64::from(p[c]) * a;
            plain[c] += f64::from(p[c]);
        }
        weight += a;
    }
    let n = (image.pixels.len() / 4) as f64;
    if weight > 0.0 {
        sum.map(|s| (s / weight) as f32)
    } else {
        plain.map(|s| (s / n) as f32)
    }
}

/// 255 on the border; a linear ramp `overlap` pixels into the original on extended sides.
fn border_mask(image: &RgbaImage, extend: Extend, width: u32, height: u32, overlap: u32) -> Mask {
    let (left, top) = (extend.left as usize, extend.top as usize);
    let (w, h) = (image.width as usize, image.height as usize);
    let ramp = |k: usize| -> u8 {
        if (k as u32) >= overlap {
            return 0;
        }
        let v = 255.0 * (overlap - k as u32) as f32 / (overlap + 1) as f32;
        v.round() as u8
    };
    let side = |extended: u32, k: usize| if extended > 0 { ramp(k) } else { 0 };
    let mut pixels = vec![u8::MAX; width as usize * height as usize];
    for y in 0..h {
        let row = &mut pixels[(top + y) * width as usize + left..][..w];
        let vertical = side(extend.top, y).max(side(extend.bottom, h - 1 - y));
        for (x, v) in row.iter_mut().enumerate() {
            let horizontal = side(extend.left, x).max(side(extend.right, w - 1 - x));
            *v = vertical.max(horizontal);
        }
    }
    Mask {
        width,
        height,
        pixels,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: u32, h: u32) -> RgbaImage {
        let pixels = (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .flat_map(|(x, y)| {
                [
                    (x * 255 / w) as u8,
                    (y * 255 / h) as u8,
                    90,
                    200 + (x % 50) as u8,
                ]
            });
        RgbaImage {
            width: w,
            height: h,
            pixels: pixels.collect(),
        }
    }

    fn ext(left: u32, top: u32, right: u32, bottom: u32) -> Extend {
        Extend {
            left,
            top,
            right,
            bottom,
        }
    }

    #[test]
    fn canvas_size_offset_and_original_placement_are_exact() {
        let img = gradient(30, 20);
        let e = ext(7, 3, 11, 5);
        let out = extend_canvas(&img, e, 4).unwrap();
        assert_eq!((out.image.width, out.image.height), (48, 28));
        assert_eq!((out.mask.width, out.mask.height), (48, 28));
        assert_eq!((out.offset_x, out.offset_y), (-7, -3));
        for y in 0..20usize {
            let src = &img.pixels[y * 30 * 4..][..30 * 4];
            let dst = &out.image.pixels[((y + 3) * 48 + 7) * 4..][..30 * 4];
            assert_eq!(src, dst, "row {y}");
        }
    }

    #[test]
    fn mask_covers_border_and_ramps_into_extended_sides_only() {
        let img = gradient(30, 20);
        let out = extend_canvas(&img, ext(6, 0, 0, 0), 4).unwrap();
        let at = |x: usize, y: usize| out.mask.pixels[y * 36 + x];
        assert!((0..20).all(|y| (0..6).all(|x| at(x, y) == 255)));
        assert_eq!(
            [at(6, 5), at(7, 5), at(8, 5), at(9, 5), at(10, 5)],
            [204, 153, 102, 51, 0]
        );
        // Top, right and bottom were not extended: no ramp there.
        assert_eq!(at(20, 0), 0);
        assert_eq!(at(35, 10), 0);
        assert_eq!(at(20, 19), 0);
        let hard = extend_canvas(&img, ext(6, 0, 0, 0), 0).unwrap();
        assert!(
            hard.mask
                .pixels
                .iter()
                .enumerate()
                .all(|(i, &v)| (v == 255) == (i % 36 < 6))
        );
    }

    #[test]
    fn border_is_opaque_soft_and_not_grey() {
        // Half red, half blue image: the border must carry those colours, not a flat fill.
        let mut img = gradient(40, 40);
        for (i, p) in img.pixels.chunks_exact_mut(4).enumerate() {
            let red = (i % 40) < 20;
            p.copy_from_slice(&if red {
                [220, 20, 20, 255]
            } else {
                [20, 20, 220, 255]
            });
        }
        let out = extend_canvas(&img, ext(0, 30, 0, 0), 0).unwrap();
        let px = |x: usize, y: usize| &out.image.pixels[(y * 40 + x) * 4..][..4];
        assert_eq!(px(0, 0)[3], 255);
        assert!(px(2, 5)[0] > 150 && px(2, 5)[2] < 80, "{:?}", px(2, 5));
        assert!(px(37, 5)[2] > 150 && px(37, 5)[0] < 80, "{:?}", px(37, 5));
        // Soft transition in the middle rather than a hard step.
        let mid = px(20, 5)[0];
        assert!(mid > 60 && mid < 190, "{mid}");
    }

    #[test]
    fn no_extension_is_the_identity() {
        let img = gradient(5, 4);
        let out = extend_canvas(&img, Extend::default(), 8).unwrap();
        assert_eq!(out.image, img);
        assert!(out.mask.pixels.iter().all(|&v| v == 0));
        assert_eq!((out.offset_x, out.offset_y), (0, 0));
    }
}
