//! Selection masks: bounds, binarize, grow/shrink, and the feathered blend alpha.
//!
//! Exists because the request's mask (255 = regenerate) drives three different things: where to
//! crop (its bounds), what the model is told to repaint (a hard, possibly grown mask), and how
//! the result is blended back (a feathered alpha). Resizing masks lives in `resize`.
//!
//! **Feather direction: inward.** [`feather`] fades the alpha from 0 at the selection's edge to
//! the full mask value `px` pixels inside it, so every pixel whose mask is 0 keeps alpha 0 and
//! the composite leaves it bit-identical. The ramp is a smoothstep of the exact Euclidean
//! distance to the nearest unselected pixel (round at corners, no seams in the blend). The image
//! border is not an edge: a selection touching the border stays solid there, since there is
//! nothing beyond it to blend with. Selections thinner than the feather never reach full
//! strength (a 1-px line with `px = 8` gets a faint alpha), which matches editors' feathering.

use livefill_protocol::Mask;

use super::distance::squared_distance_to_zero;
use super::error::{ImagingError, validate_mask};
use super::filter::{Extreme, extreme_filter};
use super::rect::Rect;

/// The smallest rectangle holding every pixel > 0; `None` when the mask is all zero.
pub fn mask_bounds(mask: &Mask) -> Result<Option<Rect>, ImagingError> {
    validate_mask(mask, "mask")?;
    let w = mask.width as usize;
    let mut rows = mask
        .pixels
        .chunks_exact(w)
        .enumerate()
        .filter_map(|(y, row)| {
            let first = row.iter().position(|&v| v > 0)?;
            let last = row.iter().rposition(|&v| v > 0)?;
            Some((y, first, last))
        });
    let Some((top, mut left, mut right)) = rows.next() else {
        return Ok(None);
    };
    let mut bottom = top;
    for (y, first, last) in rows {
        bottom = y;
        left = left.min(first);
        right = right.max(last);
    }
    Ok(Some(Rect::from_edges(
        left as i64,
        top as i64,
        right as i64 + 1,
        bottom as i64 + 1,
    )))
}

/// Makes the mask hard, in place: values above `threshold` become 255, the rest 0
/// (`threshold = 0` selects every touched pixel; 127 is diffusers' 0.5 cut).
pub fn binarize(mask: &mut Mask, threshold: u8) {
    for v in &mut mask.pixels {
        *v = if *v > threshold { u8::MAX } else { 0 };
    }
}

/// Grows the selection by `radius` pixels (square neighbourhood: each pixel takes the largest
/// value within `radius` columns and rows). Soft values spread unchanged.
pub fn dilate(mask: &Mask, radius: u32) -> Result<Mask, ImagingError> {
    morph(mask, radius, Extreme::Max)
}

/// Shrinks the selection by `radius` pixels (square neighbourhood minimum); the image border
/// does not erode the selection.
pub fn erode(mask: &Mask, radius: u32) -> Result<Mask, ImagingError> {
    morph(mask, radius, Extreme::Min)
}

fn morph(mask: &Mask, radius: u32, op: Extreme) -> Result<Mask, ImagingError> {
    validate_mask(mask, "mask")?;
    let mut out = mask.clone();
    let (w, h) = (mask.width as usize, mask.height as usize);
    extreme_filter(&mut out.pixels, w, h, radius as usize, op);
    Ok(out)
}

/// The blend alpha for compositing: the mask with its edge faded inward over `px` pixels (see
/// the module docs). Never exceeds the mask, and is 0 wherever the mask is 0; `px = 0` returns
/// the mask unchanged.
pub fn feather(mask: &Mask, px: u32) -> Result<Mask, ImagingError> {
    let mut out = mask.clone();
    let Some(bounds) = mask_bounds(mask)? else {
        return Ok(out);
    };
    // No unselected pixel (e.g. img2img's all-255 mask): there is no edge to fade.
    if px == 0 || !mask.pixels.contains(&0) {
        return Ok(out);
    }
    // A zero pixel farther than `px + 1` from the bounds cannot shorten any distance below the
    // ramp's end, so the transform only needs this region.
    let region = bounds
        .expand(px + 1)
        .clamp_to(mask.width, mask.height)
        .expect("bounds lie inside the mask");
    let limit = px as f32 + 1.0;
    let dist = squared_distance_to_zero(&mask.pixels, mask.width as usize, region, limit * limit);
    apply_ramp(&mut out, &dist, region, bounds, px);
    Ok(out)
}

/// Scales each selected pixel of `bounds` by the smoothstep of its distance over `px + 1`.
fn apply_ramp(out: &mut Mask, dist: &[f32], region: Rect, bounds: Rect, px: u32) {
    let w = out.width as usize;
    let limit = px as f32 + 1.0;
    let limit_sq = limit * limit;
    let (dx, dy) = (
        (bounds.x - region.x) as usize,
        (bounds.y - region.y) as usize,
    );
    for y in 0..bounds.height as usize {
        let row = &mut out.pixels[(bounds.y as usize + y) * w + bounds.x as usize..];
        let drow = &dist[(dy + y) * region.width as usize + dx..];
        for (v, &d2) in row[..bounds.width as usize].iter_mut().zip(drow) {
            if *v == 0 || d2 >= limit_sq {
                continue;
            }
            let t = d2.sqrt() / limit;
            let s = t * t * (3.0 - 2.0 * t);
            *v = (f32::from(*v) * s).round() as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask_from(w: u32, h: u32, f: impl Fn(u32, u32) -> u8) -> Mask {
        let pixels = (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .map(|(x, y)| f(x, y));
        Mask {
            width: w,
            height: h,
            pixels: pixels.collect(),
        }
    }

    fn disc(w: u32, h: u32, cx: f32, cy: f32, r: f32) -> Mask {
        mask_from(w, h, |x, y| {
            let d = ((x as f32 - cx).powi(2) + (y as f32 - cy).powi(2)).sqrt();
            if d <= r { 255 } else { 0 }
        })
    }

    #[test]
    fn bounds_of_pixels_above_zero() {
        let m = mask_from(10, 8, |x, y| {
            u8::from((2..5).contains(&x) && (3..7).contains(&y))
        });
        assert_eq!(mask_bounds(&m).unwrap(), Some(Rect::new(2, 3, 3, 4)));
        let empty = mask_from(4, 4, |_, _| 0);
        assert_eq!(mask_bounds(&empty).unwrap(), None);
        let bad = Mask {
            width: 4,
            height: 4,
            pixels: vec![0; 3],
        };
        assert!(mask_bounds(&bad).is_err());
    }

    #[test]
    fn binarize_thresholds() {
        let mut m = mask_from(4, 1, |x, _| [0, 1, 127, 128][x as usize]);
        binarize(&mut m, 127);
        assert_eq!(m.pixels, [0, 0, 0, 255]);
        let mut m = mask_from(3, 1, |x, _| [0, 1, 200][x as usize]);
        binarize(&mut m, 0);
        assert_eq!(m.pixels, [0, 255, 255]);
    }

    #[test]
    fn dilate_then_erode_restores_a_square() {
        let m = mask_from(20, 20, |x, y| {
            if (8..12).contains(&x) && (8..12).contains(&y) {
                255
            } else {
                0
            }
        });
        let grown = dilate(&m, 3).unwrap();
        assert_eq!(mask_bounds(&grown).unwrap(), Some(Rect::new(5, 5, 10, 10)));
        assert_eq!(erode(&grown, 3).unwrap(), m);
    }

    #[test]
    fn feather_is_zero_outside_and_never_above_the_mask() {
        let m = disc(64, 48, 30.0, 20.0, 15.0);
        for px in [1, 4, 10, 40] {
            let f = feather(&m, px).unwrap();
            for (o, v) in m.pixels.iter().zip(&f.pixels) {
                assert!(*v <= *o);
                if *o == 0 {
                    assert_eq!(*v, 0);
                }
            }
        }
    }

    #[test]
    fn feather_ramps_inward() {
        // Left half selected: the ramp rises from the edge at x = 32 to full at 32 + px.
        let m = mask_from(64, 4, |x, _| if x >= 32 { 255 } else { 0 });
        let f = feather(&m, 8).unwrap();
        let row: Vec<u8> = f.pixels[..64].to_vec();
        assert_eq!(row[31], 0);
        assert!(row[32] > 0 && row[32] < 20, "{}", row[32]);
        assert!(row[32..41].windows(2).all(|p| p[0] < p[1]), "{row:?}");
        assert!(row[41..].iter().all(|&v| v == 255));
    }

    #[test]
    fn feather_keeps_soft_values_and_border_selections() {
        // Whole mask selected at 128: no unselected pixel, so nothing changes.
        let soft = mask_from(8, 8, |_, _| 128);
        assert_eq!(feather(&soft, 5).unwrap(), soft);
        // Right edge touching the border stays solid there.
        let m = mask_from(32, 4, |x, _| if x >= 16 { 255 } else { 0 });
        let f = feather(&m, 4).unwrap();
        assert_eq!(f.pixels[31], 255);
        assert_eq!(feather(&m, 0).unwrap(), m);
    }
}
