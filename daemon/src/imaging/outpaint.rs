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

use super::crop::crop_bytes;
use super::error::{ImagingError, check_side, validate_rgba};
use super::filter::box_blur_rgb;
use super::rect::Rect;

/// A sensible default for [`extend_canvas`]'s `overlap`.
pub const DEFAULT_OUTPAINT_OVERLAP: u32 = 8;
/// Share of the image's mean colour mixed into the blurred border fill.
const MEAN_MIX: f32 = 0.15;
/// Box blur passes over the border (three approximate a Gaussian).
const BLUR_PASSES: usize = 3;

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
    let (top, left) = (extend.top as usize, extend.left as usize);
    let stride = width as usize * 4;
    let mut pixels = vec![0u8; stride * height as usize];
    let rows = pixels[top * stride..].chunks_exact_mut(stride);
    for (dst, src) in rows.zip(image.pixels.chunks_exact(w * 4)) {
        let (head, rest) = dst.split_at_mut(left * 4);
        let (middle, tail) = rest.split_at_mut(w * 4);
        middle.copy_from_slice(src);
        head.chunks_exact_mut(4)
            .for_each(|p| p.copy_from_slice(&src[..4]));
        tail.chunks_exact_mut(4)
            .for_each(|p| p.copy_from_slice(&src[(w - 1) * 4..]));
    }
    for y in 0..top {
        pixels.copy_within(top * stride..(top + 1) * stride, y * stride);
    }
    let last = top + h - 1;
    for y in last + 1..height as usize {
        pixels.copy_within(last * stride..(last + 1) * stride, y * stride);
    }
    RgbaImage {
        width,
        height,
        pixels,
    }
}

/// Replaces the border of `canvas` with a blurred copy of itself mixed with the mean colour,
/// opaque; pixels of the original keep their bytes.
///
/// Each extended side is blurred as its own strip reaching `BLUR_PASSES * radius` pixels into
/// the original: the blur cannot see farther, so the strips give exactly what blurring the
/// whole canvas would, at a fraction of the cost on large images.
fn fill_border(canvas: &mut RgbaImage, image: &RgbaImage, extend: Extend) {
    let sides = [extend.left, extend.top, extend.right, extend.bottom];
    let widest = sides.into_iter().max().unwrap_or(0);
    if widest == 0 {
        return;
    }
    let radius = (widest / 3).clamp(2, 128);
    let reach = BLUR_PASSES as u32 * radius;
    let original = Rect::new(
        extend.left as i32,
        extend.top as i32,
        image.width,
        image.height,
    );
    let mean = mean_colour(image);
    // Blur every strip before writing any: strips overlap at the corners and must all read
    // the replicated canvas.
    let strips = border_strips(canvas.width, canvas.height, original, extend, reach);
    let blurred: Vec<Vec<u8>> = strips
        .iter()
        .map(|(strip, _)| {
            let mut pixels = crop_bytes(&canvas.pixels, canvas.width, 4, *strip);
            let (sw, sh) = (strip.width as usize, strip.height as usize);
            box_blur_rgb(&mut pixels, sw, sh, radius as usize, BLUR_PASSES);
            pixels
        })
        .collect();
    for ((strip, side), pixels) in strips.iter().zip(&blurred) {
        write_border(canvas, pixels, *strip, *side, mean);
    }
}

/// For each extended side: the strip to blur (the side's border plus `reach` pixels of the
/// original, clamped) and the side's border itself, which is all that strip may write.
fn border_strips(
    width: u32,
    height: u32,
    original: Rect,
    extend: Extend,
    reach: u32,
) -> Vec<(Rect, Rect)> {
    let (w, h) = (i64::from(width), i64::from(height));
    let (x0, y0) = (i64::from(original.x), i64::from(original.y));
    let (x1, y1) = (original.right(), original.bottom());
    let reach = i64::from(reach);
    let sides = [
        (
            extend.left,
            Rect::from_edges(0, 0, x0, h),
            Rect::from_edges(0, 0, x0 + reach, h),
        ),
        (
            extend.top,
            Rect::from_edges(0, 0, w, y0),
            Rect::from_edges(0, 0, w, y0 + reach),
        ),
        (
            extend.right,
            Rect::from_edges(x1, 0, w, h),
            Rect::from_edges(x1 - reach, 0, w, h),
        ),
        (
            extend.bottom,
            Rect::from_edges(0, y1, w, h),
            Rect::from_edges(0, y1 - reach, w, h),
        ),
    ];
    sides
        .into_iter()
        .filter(|(amount, _, _)| *amount > 0)
        .filter_map(|(_, side, strip)| Some((strip.clamp_to(width, height)?, side)))
        .collect()
}

/// Writes the blurred, mean-mixed, opaque pixels of `strip` that lie in `side` (a part of the
/// border, inside the strip).
fn write_border(canvas: &mut RgbaImage, blurred: &[u8], strip: Rect, side: Rect, mean: [f32; 3]) {
    let stride = canvas.width as usize * 4;
    let strip_stride = strip.width as usize * 4;
    let (dx, dy) = ((side.x - strip.x) as usize, (side.y - strip.y) as usize);
    let row_len = side.width as usize * 4;
    for y in 0..side.height as usize {
        let src = &blurred[(dy + y) * strip_stride + dx * 4..][..row_len];
        let start = (side.y as usize + y) * stride + side.x as usize * 4;
        let dst = &mut canvas.pixels[start..start + row_len];
        for (d, b) in dst.chunks_exact_mut(4).zip(src.chunks_exact(4)) {
            for c in 0..3 {
                d[c] = (f32::from(b[c]) * (1.0 - MEAN_MIX) + mean[c] * MEAN_MIX).round() as u8;
            }
            d[3] = u8::MAX;
        }
    }
}

/// Alpha-weighted mean RGB of an image (plain mean when it is fully transparent).
fn mean_colour(image: &RgbaImage) -> [f32; 3] {
    let (mut weighted, mut plain, mut weight) = ([0u64; 3], [0u64; 3], 0u64);
    for p in image.pixels.chunks_exact(4) {
        let a = u64::from(p[3]);
        for c in 0..3 {
            weighted[c] += u64::from(p[c]) * a;
            plain[c] += u64::from(p[c]);
        }
        weight += a;
    }
    if weight > 0 {
        weighted.map(|s| (s as f64 / weight as f64) as f32)
    } else {
        let n = (image.pixels.len() / 4) as f64;
        plain.map(|s| (s as f64 / n) as f32)
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
    fn strips_match_blurring_the_whole_canvas() {
        let img = gradient(50, 40);
        let e = ext(9, 0, 20, 13);
        let out = extend_canvas(&img, e, 0).unwrap();
        // Reference: blur the whole replicated canvas.
        let mut whole = replicate_edges(&img, e, 79, 53);
        let radius = 20 / 3;
        box_blur_rgb(&mut whole.pixels, 79, 53, radius, BLUR_PASSES);
        let mean = mean_colour(&img);
        let original = Rect::new(9, 0, 50, 40);
        let mut expected = replicate_edges(&img, e, 79, 53);
        let whole_canvas = Rect::of_size(79, 53);
        for (_, side) in border_strips(79, 53, original, e, 0) {
            write_border(&mut expected, &whole.pixels, whole_canvas, side, mean);
        }
        let first_difference = out
            .image
            .pixels
            .chunks_exact(4)
            .zip(expected.pixels.chunks_exact(4))
            .enumerate()
            .find(|(_, (a, b))| a != b)
            .map(|(i, (a, b))| (i % 79, i / 79, a.to_vec(), b.to_vec()));
        assert_eq!(first_difference, None);
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
