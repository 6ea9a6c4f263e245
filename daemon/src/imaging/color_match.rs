//! Colour matching of the generated region to its surroundings.
//!
//! Exists because diffusion (and the VAE round trip) drifts colours slightly: a repainted
//! region can come out a little warmer, darker or flatter than the untouched pixels around it,
//! which shows as a seam even with a feathered blend. The drift is measured where it can be
//! seen directly: in a ring just outside the mask, where the generated crop is the model's
//! reconstruction of pixels the original still has. Per channel of YCbCr (luma and two chroma
//! axes, so brightness and tint are corrected independently) the ring's mean and standard
//! deviation in the generated crop are mapped onto those of the original, and that map is
//! applied, at partial strength, to the generated pixels inside the mask. Contrast gains are
//! clamped to 0.5..=2 and skipped on flat rings, so a uniform ring cannot blow up noise.
//! Without a usable ring (mask covers everything, or the ring is transparent) it does nothing.

use livefill_protocol::{Mask, RgbaImage};

use super::error::{ImagingError, check_size, validate_mask, validate_rgba};
use super::filter::{Extreme, extreme_filter};

/// Fewer ring pixels than this give statistics too noisy to act on.
const MIN_RING_PIXELS: u64 = 16;
/// Below this standard deviation (in 0..=255 units) a ring channel counts as flat.
const FLAT_STD: f64 = 2.0;

/// Tunables of [`color_match`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ColorMatchOptions {
    /// Width of the measuring ring outside the mask, in pixels.
    pub ring_width: u32,
    /// 0 = no change, 1 = full correction.
    pub strength: f32,
}

impl Default for ColorMatchOptions {
    fn default() -> Self {
        Self {
            ring_width: 12,
            strength: 0.8,
        }
    }
}

/// Corrects the colours of `generated` where `mask` > 0 toward `original`, measured in the ring
/// around the mask (all three crop-sized). Returns whether a correction was applied.
pub fn color_match(
    original: &RgbaImage,
    generated: &mut RgbaImage,
    mask: &Mask,
    options: &ColorMatchOptions,
) -> Result<bool, ImagingError> {
    validate_rgba(original, "original crop")?;
    validate_rgba(generated, "generated crop")?;
    validate_mask(mask, "mask")?;
    let size = (original.width, original.height);
    check_size("generated crop", size, (generated.width, generated.height))?;
    check_size("mask", size, (mask.width, mask.height))?;
    if options.ring_width == 0 || options.strength <= 0.0 {
        return Ok(false);
    }
    let ring = ring_of(mask, options.ring_width);
    let (orig_stats, gen_stats) = ring_stats(original, generated, &ring);
    if orig_stats.count < MIN_RING_PIXELS {
        return Ok(false);
    }
    let map = correction(&orig_stats, &gen_stats, options.strength.min(1.0));
    for (px, &m) in generated.pixels.chunks_exact_mut(4).zip(&mask.pixels) {
        if m > 0 {
            map.apply(px);
        }
    }
    Ok(true)
}

/// 1 on pixels outside the mask within `width` pixels (square neighbourhood) of it, else 0.
fn ring_of(mask: &Mask, width: u32) -> Vec<u8> {
    let mut ring: Vec<u8> = mask.pixels.iter().map(|&v| u8::from(v > 0)).collect();
    let (w, h) = (mask.width as usize, mask.height as usize);
    extreme_filter(&mut ring, w, h, width as usize, Extreme::Max);
    for (r, &m) in ring.iter_mut().zip(&mask.pixels) {
        if m > 0 {
            *r = 0;
        }
    }
    ring
}

/// Running sums of YCbCr values and their squares.
#[derive(Debug, Default)]
struct Stats {
    sum: [f64; 3],
    sum_sq: [f64; 3],
    count: u64,
}

impl Stats {
    fn add(&mut self, ycc: [f64; 3]) {
        for ((sum, sum_sq), v) in self.sum.iter_mut().zip(&mut self.sum_sq).zip(ycc) {
            *sum += v;
            *sum_sq += v * v;
        }
        self.count += 1;
    }

    fn mean(&self, c: usize) -> f64 {
        self.sum[c] / self.count as f64
    }

    fn std(&self, c: usize) -> f64 {
        let mean = self.mean(c);
        (self.sum_sq[c] / self.count as f64 - mean * mean)
            .max(0.0)
            .sqrt()
    }
}

/// Statistics of the original and the generated crop over ring pixels whose original is
/// not fully transparent.
fn ring_stats(original: &RgbaImage, generated: &RgbaImage, ring: &[u8]) -> (Stats, Stats) {
    let (mut o, mut g) = (Stats::default(), Stats::default());
    let pixels = original
        .pixels
        .chunks_exact(4)
        .zip(generated.pixels.chunks_exact(4));
    for ((op, gp), &r) in pixels.zip(ring) {
        if r > 0 && op[3] > 0 {
            o.add(to_ycc(op));
            g.add(to_ycc(gp));
        }
    }
    (o, g)
}

/// The whole correction as one affine map of RGB (YCbCr is affine in RGB, and so is the
/// per-channel mean/std transfer and the strength blend).
fn correction(orig: &Stats, generated: &Stats, strength: f32) -> Affine3 {
    let mut gain = [1.0; 3];
    let mut shift = [0.0; 3];
    for c in 0..3 {
        let (so, sg) = (orig.std(c), generated.std(c));
        if so > FLAT_STD && sg > FLAT_STD {
            gain[c] = (so / sg).clamp(0.5, 2.0);
        }
        shift[c] = orig.mean(c) - gain[c] * generated.mean(c);
    }
    let s = f64::from(strength);
    let transfer = |rgb: [f64; 3]| {
        let ycc = to_ycc_f(rgb);
        let out = from_ycc([0, 1, 2].map(|c| gain[c] * ycc[c] + shift[c]));
        [0, 1, 2].map(|c| rgb[c] + s * (out[c] - rgb[c]))
    };
    Affine3::from_fn(transfer)
}

/// `out = matrix * rgb + offset`, applied to u8 pixels with rounding and clamping.
struct Affine3 {
    matrix: [[f32; 3]; 3],
    offset: [f32; 3],
}

impl Affine3 {
    /// Samples an affine function at the origin and the unit vectors.
    fn from_fn(f: impl Fn([f64; 3]) -> [f64; 3]) -> Self {
        let origin = f([0.0; 3]);
        let mut matrix = [[0.0; 3]; 3];
        for (col, unit) in [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
            .iter()
            .enumerate()
        {
            let v = f(*unit);
            for row in 0..3 {
                matrix[row][col] = (v[row] - origin[row]) as f32;
            }
        }
        Self {
            matrix,
            offset: origin.map(|v| v as f32),
        }
    }

    fn apply(&self, px: &mut [u8]) {
        let rgb = [f32::from(px[0]), f32::from(px[1]), f32::from(px[2])];
        for (c, row) in self.matrix.iter().enumerate() {
            let v = row[0] * rgb[0] + row[1] * rgb[1] + row[2] * rgb[2] + self.offset[c];
            px[c] = v.round().clamp(0.0, 255.0) as u8;
        }
    }
}

/// Full-range BT.601 YCbCr (chroma centred on 128) of an RGBA pixel.
fn to_ycc(px: &[u8]) -> [f64; 3] {
    to_ycc_f([f64::from(px[0]), f64::from(px[1]), f64::from(px[2])])
}

fn to_ycc_f([r, g, b]: [f64; 3]) -> [f64; 3] {
    [
        0.299 * r + 0.587 * g + 0.114 * b,
        128.0 - 0.168_736 * r - 0.331_264 * g + 0.5 * b,
        128.0 + 0.5 * r - 0.418_688 * g - 0.081_312 * b,
    ]
}

fn from_ycc([y, cb, cr]: [f64; 3]) -> [f64; 3] {
    let (cb, cr) = (cb - 128.0, cr - 128.0);
    [
        y + 1.402 * cr,
        y - 0.344_136 * cb - 0.714_136 * cr,
        y + 1.772 * cb,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A textured image: `base` colour plus a deterministic pattern of amplitude `amp`.
    fn textured(w: u32, h: u32, base: [f32; 3], amp: f32) -> RgbaImage {
        let mut pixels = Vec::with_capacity((w * h * 4) as usize);
        for y in 0..h {
            for x in 0..w {
                let t = ((x * 7 + y * 13) % 17) as f32 / 16.0 - 0.5;
                let px = base.map(|b| (b + amp * t).round().clamp(0.0, 255.0) as u8);
                pixels.extend_from_slice(&[px[0], px[1], px[2], 255]);
            }
        }
        RgbaImage {
            width: w,
            height: h,
            pixels,
        }
    }

    fn centre_mask(w: u32, h: u32, margin: u32) -> Mask {
        let inside =
            |x: u32, y: u32| x >= margin && y >= margin && x < w - margin && y < h - margin;
        Mask {
            width: w,
            height: h,
            pixels: (0..h)
                .flat_map(|y| (0..w).map(move |x| if inside(x, y) { 255 } else { 0 }))
                .collect(),
        }
    }

    fn mean_inside(img: &RgbaImage, mask: &Mask) -> [f64; 3] {
        let mut sum = [0.0; 3];
        let mut n = 0.0;
        for (p, &m) in img.pixels.chunks_exact(4).zip(&mask.pixels) {
            if m > 0 {
                for c in 0..3 {
                    sum[c] += f64::from(p[c]);
                }
                n += 1.0;
            }
        }
        sum.map(|s| s / n)
    }

    #[test]
    fn moves_the_masked_mean_toward_the_ring() {
        let original = textured(48, 48, [120.0, 100.0, 80.0], 40.0);
        // The model's output drifted: brighter and bluer everywhere, including the ring.
        let mut generated = textured(48, 48, [150.0, 110.0, 120.0], 40.0);
        let mask = centre_mask(48, 48, 12);
        let before = mean_inside(&generated, &mask);
        let options = ColorMatchOptions {
            ring_width: 8,
            strength: 1.0,
        };
        assert!(color_match(&original, &mut generated, &mask, &options).unwrap());
        let after = mean_inside(&generated, &mask);
        let target = [120.0, 100.0, 80.0];
        for c in 0..3 {
            assert!(
                (after[c] - target[c]).abs() < 3.0,
                "{after:?} vs {target:?}"
            );
            assert!((after[c] - target[c]).abs() <= (before[c] - target[c]).abs());
        }
    }

    #[test]
    fn partial_strength_moves_part_way_and_leaves_the_outside() {
        let original = textured(40, 40, [100.0, 100.0, 100.0], 30.0);
        let mut generated = textured(40, 40, [140.0, 100.0, 100.0], 30.0);
        let untouched = generated.clone();
        let mask = centre_mask(40, 40, 10);
        let options = ColorMatchOptions {
            ring_width: 6,
            strength: 0.5,
        };
        assert!(color_match(&original, &mut generated, &mask, &options).unwrap());
        let red = mean_inside(&generated, &mask)[0];
        assert!((red - 120.0).abs() < 3.0, "{red}");
        for ((a, b), &m) in generated
            .pixels
            .chunks_exact(4)
            .zip(untouched.pixels.chunks_exact(4))
            .zip(&mask.pixels)
        {
            if m == 0 {
                assert_eq!(a, b);
            }
        }
    }

    #[test]
    fn no_ring_means_no_change() {
        let original = textured(16, 16, [10.0, 20.0, 30.0], 10.0);
        let mut generated = textured(16, 16, [200.0, 20.0, 30.0], 10.0);
        let before = generated.clone();
        let full = centre_mask(16, 16, 0);
        let options = ColorMatchOptions::default();
        assert!(!color_match(&original, &mut generated, &full, &options).unwrap());
        assert_eq!(generated, before);
        let empty = Mask {
            width: 16,
            height: 16,
            pixels: vec![0; 256],
        };
        assert!(!color_match(&original, &mut generated, &empty, &options).unwrap());
        assert_eq!(generated, before);
    }

    #[test]
    fn flat_identical_ring_is_a_no_op() {
        let original = textured(32, 32, [90.0, 90.0, 90.0], 0.0);
        let mut generated = original.clone();
        let mask = centre_mask(32, 32, 8);
        assert!(
            color_match(
                &original,
                &mut generated,
                &mask,
                &ColorMatchOptions::default()
            )
            .unwrap()
        );
        assert_eq!(generated, original);
    }

    #[test]
    fn ycc_round_trips() {
        for rgb in [[0.0, 0.0, 0.0], [255.0, 255.0, 255.0], [12.0, 200.0, 99.0]] {
            let back = from_ycc(to_ycc_f(rgb));
            for c in 0..3 {
                assert!((back[c] - rgb[c]).abs() < 1e-3);
            }
        }
    }
}
