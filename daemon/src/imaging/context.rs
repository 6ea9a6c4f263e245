//! Choosing what part of the image the model sees, at what size, and moving pixels between
//! image space and model space.
//!
//! Exists because Stable Diffusion works best near its native resolution and only on sizes that
//! divide into its latent grid, while users select arbitrary regions of arbitrary layers.
//!
//! * **Auto**: the mask bounds (the whole image when there is no mask) are padded by
//!   `max(min_padding, padding_fraction * longer side)`, grown toward the model's native aspect
//!   ratio and to at least half the native size per side where the image allows (small
//!   selections get more surroundings instead of a huge enlargement), then clamped into the
//!   image, staying centred on the selection. The model size is that crop scaled so its area is
//!   about the native area, enlarged at most `max_upscale` times (only images smaller than half
//!   the native size hit that cap), its longer side at most twice the native longer side
//!   (extreme strips), each side rounded to the nearest `multiple` (at least one `multiple`).
//!   The crop is resized to the model size and the result resized back ([`ModelFit::Resize`]).
//! * **Full**: the crop is the whole image and nothing is rescaled. The model size is the image
//!   size rounded *up* to `multiple`; the image is padded on the right/bottom by replicating its
//!   last column/row and the padding is cut off the result ([`ModelFit::Pad`]).
//!
//! `multiple` defaults to 64, not the VAE's 8: with 8 the latent can be odd-sized and the
//! UNet's down/up-sampling path (three factor-2 steps) then fails to line up in exported graphs.

use livefill_protocol::{Context, Mask, RgbaImage};

use super::crop::{extract_crop, extract_mask_crop, pad_edges, pad_mask_edges};
use super::error::{ImagingError, check_side, check_size, validate_rgba};
use super::rect::Rect;
use super::resize::{resize_mask, resize_rgba};

/// Auto context never shrinks its crop below this fraction of the native size per side, where
/// the image is large enough.
const MIN_CONTEXT_FRACTION: f64 = 0.5;

/// Tunables of [`plan_context`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ContextOptions {
    /// Least padding around the mask bounds, in image pixels.
    pub min_padding: u32,
    /// Padding as a fraction of the longer side of the mask bounds.
    pub padding_fraction: f32,
    /// Model sides are multiples of this.
    pub multiple: u32,
    /// Largest factor by which a crop is enlarged on its way to the model.
    pub max_upscale: f32,
}

impl Default for ContextOptions {
    fn default() -> Self {
        Self {
            min_padding: 32,
            padding_fraction: 0.25,
            multiple: 64,
            max_upscale: 4.0,
        }
    }
}

/// How the crop becomes model-sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelFit {
    /// Resampled to the model size and back (Auto).
    Resize,
    /// Edge-replicate padded on the right/bottom, the padding cut off afterwards (Full).
    Pad,
}

/// Where to crop and what size the model runs at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextPlan {
    /// In image coordinates, always inside the image and never empty.
    pub crop: Rect,
    pub model_width: u32,
    pub model_height: u32,
    pub fit: ModelFit,
}

/// Plans the crop and model size for an `image_width` x `image_height` image (see the module
/// docs). `mask_bounds` outside the image are clamped into it; `None` (or nothing left after
/// clamping) means the whole image. `native` is the model's native (width, height).
pub fn plan_context(
    image_width: u32,
    image_height: u32,
    mask_bounds: Option<Rect>,
    native: (u32, u32),
    context: Context,
    options: &ContextOptions,
) -> Result<ContextPlan, ImagingError> {
    check_side("image", image_width.into(), image_height.into())?;
    check_side("native size", native.0.into(), native.1.into())?;
    let multiple = options.multiple.max(1);
    match context {
        Context::Full => Ok(ContextPlan {
            crop: Rect::of_size(image_width, image_height),
            model_width: image_width.div_ceil(multiple) * multiple,
            model_height: image_height.div_ceil(multiple) * multiple,
            fit: ModelFit::Pad,
        }),
        Context::Auto => {
            let bounds = mask_bounds
                .and_then(|b| b.clamp_to(image_width, image_height))
                .unwrap_or(Rect::of_size(image_width, image_height));
            let crop = auto_crop(image_width, image_height, bounds, native, options);
            let (model_width, model_height) = model_size(crop, native, options, multiple);
            Ok(ContextPlan {
                crop,
                model_width,
                model_height,
                fit: ModelFit::Resize,
            })
        }
    }
}

/// Padded, aspect-grown, clamped crop centred on `bounds` (which lies inside the image).
fn auto_crop(
    image_width: u32,
    image_height: u32,
    bounds: Rect,
    native: (u32, u32),
    options: &ContextOptions,
) -> Rect {
    let (bw, bh) = (f64::from(bounds.width), f64::from(bounds.height));
    let pad = (f64::from(options.padding_fraction) * bw.max(bh))
        .round()
        .max(f64::from(options.min_padding));
    let (mut w, mut h) = (bw + 2.0 * pad, bh + 2.0 * pad);
    let aspect = f64::from(native.0) / f64::from(native.1);
    if w / h < aspect {
        w = h * aspect;
    } else {
        h = w / aspect;
    }
    w = w.max(f64::from(native.0) * MIN_CONTEXT_FRACTION);
    h = h.max(f64::from(native.1) * MIN_CONTEXT_FRACTION);
    let width = (w.ceil() as u32).clamp(bounds.width, image_width);
    let height = (h.ceil() as u32).clamp(bounds.height, image_height);
    let x = centred_start(bounds.x, bounds.width, width, image_width);
    let y = centred_start(bounds.y, bounds.height, height, image_height);
    Rect::new(x, y, width, height)
}

/// Start of a span of `len` centred on `start .. start + inner`, shifted into `0 .. limit`.
/// Requires `inner <= len <= limit`; the result still covers the inner span.
fn centred_start(start: i32, inner: u32, len: u32, limit: u32) -> i32 {
    let centred = i64::from(start) - i64::from(len - inner) / 2;
    centred.clamp(0, i64::from(limit - len)) as i32
}

/// The crop scaled to about the native area, within the upscale and side caps, rounded.
fn model_size(
    crop: Rect,
    native: (u32, u32),
    options: &ContextOptions,
    multiple: u32,
) -> (u32, u32) {
    let (cw, ch) = (f64::from(crop.width), f64::from(crop.height));
    let native_area = f64::from(native.0) * f64::from(native.1);
    let mut scale = (native_area / (cw * ch))
        .sqrt()
        .min(f64::from(options.max_upscale.max(1.0)));
    let max_side = 2.0 * f64::from(native.0.max(native.1));
    scale = scale.min(max_side / cw.max(ch));
    let round = |v: f64| {
        let m = f64::from(multiple);
        ((v / m).round().max(1.0) * m) as u32
    };
    (round(cw * scale), round(ch * scale))
}

impl ContextPlan {
    /// The crop of `image` at model size, ready for conversion to the model's input.
    pub fn image_to_model(&self, image: &RgbaImage) -> Result<RgbaImage, ImagingError> {
        // A crop of the whole image (live previews of a layer) is the image itself: no copy.
        let whole = self.crop == Rect::of_size(image.width, image.height);
        let copy;
        let crop = if whole {
            image
        } else {
            copy = extract_crop(image, self.crop)?;
            &copy
        };
        match self.fit {
            ModelFit::Resize => resize_rgba(crop, self.model_width, self.model_height),
            ModelFit::Pad => pad_edges(crop, self.model_width, self.model_height),
        }
    }

    /// The crop of an image-sized `mask` at model size (for an inpainting UNet's mask input).
    pub fn mask_to_model(&self, mask: &Mask) -> Result<Mask, ImagingError> {
        let crop = self.crop_mask(mask)?;
        match self.fit {
            ModelFit::Resize => resize_mask(&crop, self.model_width, self.model_height),
            ModelFit::Pad => pad_mask_edges(&crop, self.model_width, self.model_height),
        }
    }

    /// The crop of an image-sized `mask` at crop size (what `composite` blends with).
    pub fn crop_mask(&self, mask: &Mask) -> Result<Mask, ImagingError> {
        extract_mask_crop(mask, self.crop)
    }

    /// Brings a model-sized generated image back to crop size (resize back, or cut the padding).
    pub fn model_to_crop(&self, generated: &RgbaImage) -> Result<RgbaImage, ImagingError> {
        validate_rgba(generated, "generated image")?;
        check_size(
            "generated image",
            (self.model_width, self.model_height),
            (generated.width, generated.height),
        )?;
        match self.fit {
            ModelFit::Resize => resize_rgba(generated, self.crop.width, self.crop.height),
            ModelFit::Pad => {
                extract_crop(generated, Rect::of_size(self.crop.width, self.crop.height))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SD15: (u32, u32) = (512, 512);

    fn auto(w: u32, h: u32, bounds: Option<Rect>) -> ContextPlan {
        plan_context(
            w,
            h,
            bounds,
            SD15,
            Context::Auto,
            &ContextOptions::default(),
        )
        .unwrap()
    }

    fn assert_sane(plan: &ContextPlan, w: u32, h: u32, bounds: Option<Rect>) {
        assert!(plan.crop.fits_in(w, h), "{plan:?} not inside {w}x{h}");
        assert!(!plan.crop.is_empty());
        assert_eq!(plan.model_width % 64, 0, "{plan:?}");
        assert_eq!(plan.model_height % 64, 0, "{plan:?}");
        assert!(plan.model_width >= 64 && plan.model_height >= 64);
        if let Some(b) = bounds.and_then(|b| b.clamp_to(w, h)) {
            assert!(plan.crop.contains(&b), "{plan:?} misses {b:?}");
        }
    }

    #[test]
    fn auto_crops_stay_inside_and_hold_the_mask() {
        let cases = [
            (2000, 1500, Some(Rect::new(900, 700, 100, 80))),
            (2000, 1500, Some(Rect::new(0, 0, 30, 30))),
            (2000, 1500, Some(Rect::new(1990, 1400, 10, 100))),
            (2000, 1500, Some(Rect::new(10, 10, 1980, 1480))),
            (300, 200, Some(Rect::new(250, 150, 50, 50))),
            (4000, 100, Some(Rect::new(1000, 0, 2000, 100))),
            (64, 64, None),
            (1, 1, None),
            (777, 333, Some(Rect::new(-50, -50, 100, 100))),
            (777, 333, Some(Rect::new(5000, 5000, 10, 10))),
        ];
        for (w, h, bounds) in cases {
            let plan = auto(w, h, bounds);
            assert_sane(&plan, w, h, bounds);
            assert_eq!(plan.fit, ModelFit::Resize);
        }
    }

    #[test]
    fn small_selection_gets_native_size_and_padding() {
        let bounds = Rect::new(900, 700, 100, 80);
        let plan = auto(2000, 1500, Some(bounds));
        assert_eq!((plan.model_width, plan.model_height), (512, 512));
        // Grown to half the native size, square like the model, centred on the selection.
        assert_eq!(plan.crop, Rect::new(822, 612, 256, 256));
    }

    #[test]
    fn large_selection_is_padded_and_downscaled() {
        let plan = auto(4000, 3000, Some(Rect::new(1000, 1000, 1000, 1000)));
        // 25% padding on each side of a 1000 px square.
        assert_eq!(plan.crop, Rect::new(750, 750, 1500, 1500));
        assert_eq!((plan.model_width, plan.model_height), (512, 512));
    }

    #[test]
    fn wide_native_size_widens_the_crop() {
        let plan = plan_context(
            3000,
            3000,
            Some(Rect::new(1000, 1000, 400, 400)),
            (768, 512),
            Context::Auto,
            &ContextOptions::default(),
        )
        .unwrap();
        assert_eq!(plan.crop.height, 600);
        assert_eq!(plan.crop.width, 900);
        assert_eq!((plan.model_width, plan.model_height), (768, 512));
    }

    #[test]
    fn tiny_images_are_enlarged_at_most_max_upscale() {
        let plan = auto(100, 60, None);
        assert_eq!(plan.crop, Rect::of_size(100, 60));
        assert_eq!((plan.model_width, plan.model_height), (384, 256));
    }

    #[test]
    fn full_pads_to_the_multiple_without_rescale() {
        let opts = ContextOptions::default();
        let plan = plan_context(1000, 513, None, SD15, Context::Full, &opts).unwrap();
        assert_eq!(plan.crop, Rect::of_size(1000, 513));
        assert_eq!((plan.model_width, plan.model_height), (1024, 576));
        assert_eq!(plan.fit, ModelFit::Pad);
        let eight = ContextOptions {
            multiple: 8,
            ..opts
        };
        let plan = plan_context(1000, 513, None, SD15, Context::Full, &eight).unwrap();
        assert_eq!((plan.model_width, plan.model_height), (1000, 520));
    }

    #[test]
    fn model_round_trip_sizes() {
        let img = RgbaImage {
            width: 300,
            height: 200,
            pixels: [9, 8, 7, 255].repeat(300 * 200),
        };
        let mask = Mask {
            width: 300,
            height: 200,
            pixels: vec![255; 300 * 200],
        };
        for context in [Context::Auto, Context::Full] {
            let opts = ContextOptions::default();
            let bounds = Some(Rect::new(100, 50, 40, 40));
            let plan = plan_context(300, 200, bounds, SD15, context, &opts).unwrap();
            let model = plan.image_to_model(&img).unwrap();
            assert_eq!(
                (model.width, model.height),
                (plan.model_width, plan.model_height)
            );
            let m = plan.mask_to_model(&mask).unwrap();
            assert_eq!((m.width, m.height), (plan.model_width, plan.model_height));
            let back = plan.model_to_crop(&model).unwrap();
            assert_eq!(back, extract_crop(&img, plan.crop).unwrap());
            assert_eq!(plan.crop_mask(&mask).unwrap().width, plan.crop.width);
            assert!(plan.model_to_crop(&img).is_err());
        }
    }

    #[test]
    fn rejects_empty_sizes() {
        let opts = ContextOptions::default();
        assert!(plan_context(0, 10, None, SD15, Context::Auto, &opts).is_err());
        assert!(plan_context(10, 10, None, (0, 512), Context::Auto, &opts).is_err());
    }
}
