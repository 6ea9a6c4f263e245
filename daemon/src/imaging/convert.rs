//! Conversions between 8-bit RGBA and the model's `f32` NCHW tensors.
//!
//! Exists to pin down, in one place, the exact numeric conventions of diffusers, so the daemon
//! produces the same bytes as the reference pipeline:
//! * in: `v / 255` then `2x - 1` (diffusers' `VaeImageProcessor.normalize`), RGB only: alpha
//!   never reaches the model, `composite` handles it;
//! * out: `(x / 2 + 0.5).clamp(0, 1)` (`denormalize`), then `(x * 255).round()` with numpy's
//!   round-half-to-even (`numpy_to_pil`), alpha 255.
//!
//! Masks go in as `v / 255` in `[0, 1]` (binarize first if the model wants a hard mask). The
//! loops walk flat slices plane by plane; nothing is allocated per pixel.

use livefill_protocol::{Mask, RgbaImage};
use ndarray::{Array4, ArrayView4, s};

use super::error::{ImagingError, check_side, validate_mask, validate_rgba};

/// Value range of a tensor holding image data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PixelRange {
    /// `[-1, 1]`: VAE input and output.
    #[default]
    SignedUnit,
    /// `[0, 1]`: e.g. a raw TAESD decoder's output.
    Unit,
}

/// The image's RGB as a `[1, 3, height, width]` tensor in `[-1, 1]`; alpha is dropped.
pub fn rgba_to_nchw(image: &RgbaImage) -> Result<Array4<f32>, ImagingError> {
    validate_rgba(image, "image")?;
    let (w, h) = (image.width as usize, image.height as usize);
    Ok(Array4::from_shape_vec((1, 3, h, w), rgba_to_model(image)).expect("sized by rgba_to_model"))
}

/// The image's RGB as flat `[3, height, width]` planes in `[-1, 1]`, `3 * width * height`
/// values; alpha is dropped. Pixels missing from a short buffer become 0.0 (validate first).
pub fn rgba_to_model(image: &RgbaImage) -> Vec<f32> {
    let n = image.width as usize * image.height as usize;
    let mut data = vec![0f32; 3 * n];
    let (r, rest) = data.split_at_mut(n);
    let (g, b) = rest.split_at_mut(n);
    let pixels = image.pixels.chunks_exact(4).take(n);
    for (i, p) in pixels.enumerate() {
        r[i] = normalize(p[0]);
        g[i] = normalize(p[1]);
        b[i] = normalize(p[2]);
    }
    data
}

/// Flat `[3, height, width]` planes in `[-1, 1]` (extra trailing values ignored) to opaque
/// RGBA; values missing from a short buffer read as 0.0, i.e. mid grey.
pub fn model_to_rgba(data: &[f32], width: u32, height: u32) -> RgbaImage {
    let n = width as usize * height as usize;
    let plane = |c: usize| data.get(c * n..).unwrap_or(&[]);
    let (r, g, b) = (plane(0), plane(1), plane(2));
    let at = |p: &[f32], i: usize| p.get(i).copied().unwrap_or(0.0);
    let mut pixels = vec![u8::MAX; n * 4];
    for (i, p) in pixels.chunks_exact_mut(4).enumerate() {
        p[0] = to_u8(at(r, i), PixelRange::SignedUnit);
        p[1] = to_u8(at(g, i), PixelRange::SignedUnit);
        p[2] = to_u8(at(b, i), PixelRange::SignedUnit);
    }
    RgbaImage {
        width,
        height,
        pixels,
    }
}

/// The mask as a `[1, 1, height, width]` tensor in `[0, 1]`.
pub fn mask_to_nchw(mask: &Mask) -> Result<Array4<f32>, ImagingError> {
    validate_mask(mask, "mask")?;
    let (w, h) = (mask.width as usize, mask.height as usize);
    let data = mask.pixels.iter().map(|&v| f32::from(v) / 255.0).collect();
    Ok(Array4::from_shape_vec((1, 1, h, w), data).expect("sized above"))
}

/// The first image of an `[n, c >= 3, height, width]` tensor as opaque RGBA (channels past
/// the third are ignored).
pub fn nchw_to_rgba(tensor: ArrayView4<f32>, range: PixelRange) -> Result<RgbaImage, ImagingError> {
    let shape = tensor.shape().to_vec();
    let [n, c, h, w] = [shape[0], shape[1], shape[2], shape[3]];
    if n == 0 || c < 3 {
        return Err(ImagingError::TensorShape { shape });
    }
    check_side("tensor image", h as u64, w as u64)?;
    let rgb = tensor.slice(s![0, 0..3, .., ..]);
    let rgb = rgb.as_standard_layout();
    let planes = rgb.as_slice().expect("standard layout");
    let (r, rest) = planes.split_at(w * h);
    let (g, b) = rest.split_at(w * h);
    let mut pixels = vec![u8::MAX; w * h * 4];
    for (i, p) in pixels.chunks_exact_mut(4).enumerate() {
        p[0] = to_u8(r[i], range);
        p[1] = to_u8(g[i], range);
        p[2] = to_u8(b[i], range);
    }
    Ok(RgbaImage {
        width: w as u32,
        height: h as u32,
        pixels,
    })
}

/// u8 to `[-1, 1]` exactly as diffusers computes it in `f32`.
fn normalize(v: u8) -> f32 {
    2.0 * (f32::from(v) / 255.0) - 1.0
}

/// A tensor value to u8: to `[0, 1]`, clamp, scale, round half to even (NaN becomes 0).
fn to_u8(x: f32, range: PixelRange) -> u8 {
    let unit = match range {
        PixelRange::SignedUnit => x / 2.0 + 0.5,
        PixelRange::Unit => x,
    };
    let unit = if unit.is_nan() {
        0.0
    } else {
        unit.clamp(0.0, 1.0)
    };
    (unit * 255.0).round_ties_even() as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_values() -> RgbaImage {
        // 256 pixels: every byte value on every channel, with the channels offset.
        let pixels = (0..=255u8)
            .flat_map(|v| [v, v.wrapping_add(85), v.wrapping_add(170), 255 - v])
            .collect();
        RgbaImage {
            width: 16,
            height: 16,
            pixels,
        }
    }

    #[test]
    fn round_trip_is_exact_for_every_byte() {
        let img = all_values();
        let t = rgba_to_nchw(&img).unwrap();
        assert_eq!(t.shape(), [1, 3, 16, 16]);
        assert!(t.iter().all(|v| (-1.0..=1.0).contains(v)));
        let back = nchw_to_rgba(t.view(), PixelRange::SignedUnit).unwrap();
        for (a, b) in img.pixels.chunks_exact(4).zip(back.pixels.chunks_exact(4)) {
            assert_eq!(a[..3], b[..3]);
            assert_eq!(b[3], 255);
        }
    }

    #[test]
    fn planar_layout_and_endpoints() {
        let img = RgbaImage {
            width: 2,
            height: 1,
            pixels: vec![0, 255, 0, 9, 255, 0, 0, 9],
        };
        let t = rgba_to_nchw(&img).unwrap();
        assert_eq!(
            t.iter().copied().collect::<Vec<_>>(),
            [-1.0, 1.0, 1.0, -1.0, -1.0, -1.0]
        );
    }

    #[test]
    fn output_clamps_and_rounds_like_numpy() {
        let values = [-3.0, 3.0, f32::NAN, 0.0];
        let t = Array4::from_shape_vec((1, 3, 1, 4), values.repeat(3)).unwrap();
        let img = nchw_to_rgba(t.view(), PixelRange::SignedUnit).unwrap();
        let reds: Vec<u8> = img.pixels.chunks_exact(4).map(|p| p[0]).collect();
        // 0.0 -> 0.5 * 255 = 127.5 -> 128 (half to even).
        assert_eq!(reds, [0, 255, 0, 128]);
        let unit = Array4::from_shape_vec((1, 3, 1, 2), [0.5, 1.0].repeat(3)).unwrap();
        let img = nchw_to_rgba(unit.view(), PixelRange::Unit).unwrap();
        assert_eq!([img.pixels[0], img.pixels[4]], [128, 255]);
    }

    #[test]
    fn accepts_non_standard_layouts_and_batches() {
        let img = all_values();
        let t = rgba_to_nchw(&img).unwrap();
        let mut batch = Array4::zeros((2, 4, 16, 16));
        batch
            .slice_mut(s![0, 0..3, .., ..])
            .assign(&t.slice(s![0, .., .., ..]));
        let back = nchw_to_rgba(batch.view(), PixelRange::SignedUnit).unwrap();
        let direct = nchw_to_rgba(t.view(), PixelRange::SignedUnit).unwrap();
        assert_eq!(back, direct);
        // An NHWC buffer viewed as NCHW: not in standard layout.
        let nhwc = t
            .view()
            .permuted_axes([0, 2, 3, 1])
            .as_standard_layout()
            .into_owned();
        let strided = nhwc.view().permuted_axes([0, 3, 1, 2]);
        assert!(!strided.is_standard_layout());
        assert_eq!(
            nchw_to_rgba(strided, PixelRange::SignedUnit).unwrap(),
            direct
        );
        assert!(nchw_to_rgba(Array4::zeros((1, 1, 2, 2)).view(), PixelRange::Unit).is_err());
    }

    #[test]
    fn flat_planes_round_trip() {
        let img = all_values();
        let planes = rgba_to_model(&img);
        assert_eq!(planes.len(), 3 * 256);
        assert_eq!(
            planes[..256],
            rgba_to_nchw(&img).unwrap().as_slice().unwrap()[..256]
        );
        let back = model_to_rgba(&planes, 16, 16);
        for (a, b) in img.pixels.chunks_exact(4).zip(back.pixels.chunks_exact(4)) {
            assert_eq!([a[0], a[1], a[2], 255], b);
        }
        // A short buffer cannot panic; the missing planes read as mid grey.
        let short = model_to_rgba(&planes[..256], 16, 16);
        assert_eq!(short.pixels[1..4], [128, 128, 255]);
    }

    #[test]
    fn mask_tensor_is_unit_range() {
        let m = Mask {
            width: 3,
            height: 1,
            pixels: vec![0, 51, 255],
        };
        let t = mask_to_nchw(&m).unwrap();
        assert_eq!(t.shape(), [1, 1, 1, 3]);
        assert_eq!(t.iter().copied().collect::<Vec<_>>(), [0.0, 0.2, 1.0]);
    }
}
