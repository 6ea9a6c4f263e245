//! Blending generated pixels back over the original.
//!
//! Exists because the only pixels a generation may change are the selected ones: wherever the
//! blend alpha is 0 the original bytes (colour *and* alpha) are copied untouched, so pixels
//! outside the selection stay bit-identical. The alpha is crop-sized: the caller crops the
//! request's mask with `ContextPlan::crop_mask` and feathers it (`mask::feather`, inward, so it
//! is 0 wherever the mask is 0).
//!
//! **What the daemon returns: the crop and its offset** ([`composite_crop`]). The plugin places
//! the smaller layer at `(crop.x, crop.y)`; outside the selection it matches the original
//! exactly, so the placed layer is seamless, and the reply is far smaller than the whole image.
//! [`composite`] builds the whole image for callers that need it (tests, the CLI).
//!
//! **Alpha**: the model only paints opaque RGB, so the generated pixel's own alpha is ignored
//! and the outcome follows an [`AlphaPolicy`]. Blending is done premultiplied, so a transparent
//! original contributes no colour (no dark fringes at feathered edges) and, where alpha is 255,
//! the generated colour is taken exactly.

use livefill_protocol::{Mask, RgbaImage};

use super::crop::crop_bytes;
use super::error::{ImagingError, check_size, validate_mask, validate_rgba};
use super::rect::Rect;

/// What the alpha channel of a regenerated pixel becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AlphaPolicy {
    /// Generated pixels are opaque: inside the selection alpha rises toward 255 with the blend
    /// (opaque originals stay opaque, transparent areas get filled). For inpaint and outpaint.
    #[default]
    Fill,
    /// The original alpha is kept and only the colour changes: a cut-out keeps its silhouette.
    /// For img2img of a layer.
    Preserve,
}

/// An image and where its top-left pixel lies in the coordinates of the request's image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedImage {
    pub image: RgbaImage,
    pub offset_x: i32,
    pub offset_y: i32,
}

/// The crop region of `original` with `generated_crop` blended in by the crop-sized `alpha`,
/// placed at the crop's offset (what the daemon returns).
pub fn composite_crop(
    original: &RgbaImage,
    generated_crop: &RgbaImage,
    crop: Rect,
    alpha: &Mask,
    policy: AlphaPolicy,
) -> Result<PlacedImage, ImagingError> {
    check_inputs(original, generated_crop, crop, alpha)?;
    let mut pixels = crop_bytes(&original.pixels, original.width, 4, crop);
    let row_len = crop.width as usize * 4;
    blend_rows(&mut pixels, row_len, 0, generated_crop, alpha, policy);
    Ok(PlacedImage {
        image: RgbaImage {
            width: crop.width,
            height: crop.height,
            pixels,
        },
        offset_x: crop.x,
        offset_y: crop.y,
    })
}

/// [`composite_crop`] with an alpha that is 255 everywhere (img2img of a whole layer), without
/// building, feathering and reading one: the generated colour, with the alpha `policy` gives.
/// For a large layer this is one pass over the pixels instead of four.
pub fn replace_crop(
    original: &RgbaImage,
    mut generated_crop: RgbaImage,
    crop: Rect,
    policy: AlphaPolicy,
) -> Result<PlacedImage, ImagingError> {
    check_crop(original, &generated_crop, crop)?;
    let row_len = crop.width as usize * 4;
    let stride = original.width as usize * 4;
    let first = crop.y as usize * stride + crop.x as usize * 4;
    for (y, row) in generated_crop.pixels.chunks_exact_mut(row_len).enumerate() {
        let source = &original.pixels[first + y * stride..][..row_len];
        for (d, o) in row.chunks_exact_mut(4).zip(source.chunks_exact(4)) {
            d[3] = match policy {
                AlphaPolicy::Fill => u8::MAX,
                AlphaPolicy::Preserve => o[3],
            };
        }
    }
    Ok(PlacedImage {
        image: generated_crop,
        offset_x: crop.x,
        offset_y: crop.y,
    })
}

/// The whole of `original` with `generated_crop` blended into `crop` by the crop-sized `alpha`.
pub fn composite(
    original: &RgbaImage,
    generated_crop: &RgbaImage,
    crop: Rect,
    alpha: &Mask,
    policy: AlphaPolicy,
) -> Result<RgbaImage, ImagingError> {
    check_inputs(original, generated_crop, crop, alpha)?;
    let mut out = original.clone();
    let stride = original.width as usize * 4;
    let first = crop.y as usize * stride + crop.x as usize * 4;
    blend_rows(
        &mut out.pixels,
        stride,
        first,
        generated_crop,
        alpha,
        policy,
    );
    Ok(out)
}

fn check_inputs(
    original: &RgbaImage,
    generated_crop: &RgbaImage,
    crop: Rect,
    alpha: &Mask,
) -> Result<(), ImagingError> {
    check_crop(original, generated_crop, crop)?;
    validate_mask(alpha, "blend alpha")?;
    check_size(
        "blend alpha",
        (crop.width, crop.height),
        (alpha.width, alpha.height),
    )
}

/// `original` and `generated_crop` are valid, `crop` lies inside `original` and has
/// `generated_crop`'s size.
fn check_crop(
    original: &RgbaImage,
    generated_crop: &RgbaImage,
    crop: Rect,
) -> Result<(), ImagingError> {
    validate_rgba(original, "original image")?;
    validate_rgba(generated_crop, "generated crop")?;
    if crop.is_empty() || !crop.fits_in(original.width, original.height) {
        return Err(ImagingError::RectOutside {
            rect: crop,
            width: original.width,
            height: original.height,
        });
    }
    check_size(
        "generated crop",
        (crop.width, crop.height),
        (generated_crop.width, generated_crop.height),
    )
}

/// Blends crop-sized `generated` into `dst`, whose crop rows start at `first` and are `stride`
/// bytes apart.
fn blend_rows(
    dst: &mut [u8],
    stride: usize,
    first: usize,
    generated: &RgbaImage,
    alpha: &Mask,
    policy: AlphaPolicy,
) {
    let w = generated.width as usize;
    let gen_rows = generated.pixels.chunks_exact(w * 4);
    let alpha_rows = alpha.pixels.chunks_exact(w);
    for (y, (gen_row, alpha_row)) in gen_rows.zip(alpha_rows).enumerate() {
        let start = first + y * stride;
        blend_row(&mut dst[start..start + w * 4], gen_row, alpha_row, policy);
    }
}

fn blend_row(dst: &mut [u8], generated: &[u8], alpha: &[u8], policy: AlphaPolicy) {
    let pixels = dst.chunks_exact_mut(4).zip(generated.chunks_exact(4));
    for ((d, g), &a) in pixels.zip(alpha) {
        if a == 0 {
            continue;
        }
        if a == u8::MAX {
            let alpha = match policy {
                AlphaPolicy::Fill => u8::MAX,
                AlphaPolicy::Preserve => d[3],
            };
            d.copy_from_slice(&[g[0], g[1], g[2], alpha]);
            continue;
        }
        let blended = blend_pixel([d[0], d[1], d[2], d[3]], [g[0], g[1], g[2]], a, policy);
        d.copy_from_slice(&blended);
    }
}

/// One pixel: `original` toward the opaque generated colour by `a` / 255.
fn blend_pixel(original: [u8; 4], generated: [u8; 3], a: u8, policy: AlphaPolicy) -> [u8; 4] {
    let t = f32::from(a) / 255.0;
    let to_u8 = |v: f32| v.round().clamp(0.0, 255.0) as u8;
    match policy {
        AlphaPolicy::Preserve => {
            let mix = |o: u8, g: u8| to_u8(f32::from(o) + (f32::from(g) - f32::from(o)) * t);
            let [r, gr, b] = [0, 1, 2].map(|c| mix(original[c], generated[c]));
            [r, gr, b, original[3]]
        }
        AlphaPolicy::Fill => {
            let oa = f32::from(original[3]) / 255.0;
            let out_a = oa + (1.0 - oa) * t;
            let keep = (1.0 - t) * oa / out_a;
            let mix = |o: u8, g: u8| to_u8(f32::from(o) * keep + f32::from(g) * (t / out_a));
            let [r, gr, b] = [0, 1, 2].map(|c| mix(original[c], generated[c]));
            [r, gr, b, to_u8(out_a * 255.0)]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(w: u32, h: u32, f: impl Fn(u32, u32) -> [u8; 4]) -> RgbaImage {
        let pixels = (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .flat_map(|(x, y)| f(x, y));
        RgbaImage {
            width: w,
            height: h,
            pixels: pixels.collect(),
        }
    }

    fn mask(w: u32, h: u32, f: impl Fn(u32, u32) -> u8) -> Mask {
        let pixels = (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .map(|(x, y)| f(x, y));
        Mask {
            width: w,
            height: h,
            pixels: pixels.collect(),
        }
    }

    #[test]
    fn replace_crop_equals_composite_crop_with_a_full_alpha() {
        let original = noisy(23, 17);
        let generated = image(9, 7, |x, y| {
            [(x * 20) as u8, (y * 30) as u8, 77, (x + y) as u8]
        });
        let crop = Rect::new(5, 6, 9, 7);
        let full = mask(9, 7, |_, _| 255);
        for policy in [AlphaPolicy::Fill, AlphaPolicy::Preserve] {
            let blended = composite_crop(&original, &generated, crop, &full, policy).unwrap();
            let replaced = replace_crop(&original, generated.clone(), crop, policy).unwrap();
            assert_eq!(replaced, blended, "{policy:?}");
        }
        assert!(
            replace_crop(
                &original,
                generated,
                Rect::new(20, 0, 9, 7),
                AlphaPolicy::Fill
            )
            .is_err()
        );
    }

    /// A noisy original with varied alpha, so "identical" really means bit-identical.
    fn noisy(w: u32, h: u32) -> RgbaImage {
        image(w, h, |x, y| {
            let v = x
                .wrapping_mul(2_654_435_761)
                .wrapping_add(y.wrapping_mul(40_503));
            [
                (v >> 3) as u8,
                (v >> 11) as u8,
                (v >> 19) as u8,
                (v >> 5) as u8 | 1,
            ]
        })
    }

    #[test]
    fn unmasked_pixels_are_bit_identical() {
        let original = noisy(40, 30);
        let crop = Rect::new(5, 7, 20, 16);
        let generated = image(20, 16, |_, _| [1, 2, 3, 255]);
        // A soft ring-shaped alpha with zeros inside and outside.
        let alpha = mask(20, 16, |x, y| {
            let d = (x as i32 - 10).abs().max((y as i32 - 8).abs());
            [0, 0, 255, 200, 90, 30, 0, 0, 0, 0, 0][d as usize]
        });
        for policy in [AlphaPolicy::Fill, AlphaPolicy::Preserve] {
            let full = composite(&original, &generated, crop, &alpha, policy).unwrap();
            let placed = composite_crop(&original, &generated, crop, &alpha, policy).unwrap();
            assert_eq!((placed.offset_x, placed.offset_y), (5, 7));
            for y in 0..30 {
                for x in 0..40 {
                    let i = ((y * 40 + x) * 4) as usize;
                    let inside = crop.contains_point(x.into(), y.into());
                    let a = if inside {
                        alpha.pixels[((y - 7) * 20 + (x - 5)) as usize]
                    } else {
                        0
                    };
                    if a == 0 {
                        assert_eq!(full.pixels[i..i + 4], original.pixels[i..i + 4]);
                    }
                    if inside {
                        let j = (((y - 7) * 20 + (x - 5)) * 4) as usize;
                        assert_eq!(placed.image.pixels[j..j + 4], full.pixels[i..i + 4]);
                    }
                }
            }
        }
    }

    #[test]
    fn full_alpha_takes_the_generated_colour() {
        let original = image(4, 4, |_, _| [200, 10, 10, 120]);
        let generated = image(2, 2, |_, _| [5, 6, 7, 0]);
        let alpha = mask(2, 2, |_, _| 255);
        let crop = Rect::new(1, 1, 2, 2);
        let fill = composite(&original, &generated, crop, &alpha, AlphaPolicy::Fill).unwrap();
        assert_eq!(fill.pixels[(5 * 4)..(5 * 4 + 4)], [5, 6, 7, 255]);
        let keep = composite(&original, &generated, crop, &alpha, AlphaPolicy::Preserve).unwrap();
        assert_eq!(keep.pixels[(5 * 4)..(5 * 4 + 4)], [5, 6, 7, 120]);
    }

    #[test]
    fn partial_alpha_blends_linearly_over_opaque() {
        let original = image(1, 1, |_, _| [0, 100, 255, 255]);
        let generated = image(1, 1, |_, _| [255, 200, 0, 255]);
        let alpha = mask(1, 1, |_, _| 51); // 20 %
        let crop = Rect::of_size(1, 1);
        for policy in [AlphaPolicy::Fill, AlphaPolicy::Preserve] {
            let out = composite(&original, &generated, crop, &alpha, policy).unwrap();
            assert_eq!(out.pixels, [51, 120, 204, 255]);
        }
    }

    #[test]
    fn transparent_original_gets_generated_colour_without_fringe() {
        let original = image(1, 1, |_, _| [0, 0, 0, 0]);
        let generated = image(1, 1, |_, _| [250, 120, 30, 255]);
        let alpha = mask(1, 1, |_, _| 64);
        let out = composite(
            &original,
            &generated,
            Rect::of_size(1, 1),
            &alpha,
            AlphaPolicy::Fill,
        )
        .unwrap();
        assert_eq!(out.pixels, [250, 120, 30, 64]);
    }

    #[test]
    fn rejects_mismatched_sizes() {
        let original = noisy(10, 10);
        let generated = image(4, 4, |_, _| [0; 4]);
        let alpha = mask(4, 4, |_, _| 255);
        let policy = AlphaPolicy::Fill;
        assert!(composite(&original, &generated, Rect::new(8, 8, 4, 4), &alpha, policy).is_err());
        let small = mask(3, 4, |_, _| 255);
        assert!(composite(&original, &generated, Rect::new(0, 0, 4, 4), &small, policy).is_err());
        assert!(
            composite_crop(&original, &generated, Rect::new(0, 0, 4, 4), &alpha, policy).is_ok()
        );
    }
}
