//! Pixel work around the diffusion model: pure functions on 8-bit RGBA images and masks.
//!
//! Exists so the engine only ever sees model-sized tensors and the plugins only ever get back
//! pixels they can place directly. A typical inpaint job:
//!
//! 1. [`mask_bounds`] of the request's mask, then [`plan_context`] picks the crop and model
//!    size ([`ContextPlan`]); [`ContextPlan::image_to_model`] / [`ContextPlan::mask_to_model`]
//!    produce model-sized inputs, [`rgba_to_nchw`] / [`mask_to_nchw`] the tensors.
//! 2. The engine's output goes back through [`nchw_to_rgba`] and [`ContextPlan::model_to_crop`].
//! 3. Optionally [`color_match`] against the original crop, then [`feather`] the crop's mask
//!    ([`ContextPlan::crop_mask`]) and [`composite_crop`]: the daemon replies with that crop and
//!    its offset; outside the mask it is bit-identical to the original.
//!
//! Outpaint starts with [`extend_canvas`] and treats the extended canvas as the image (its mask
//! is already soft: use it directly as the blend alpha, binarized for the model); the reply's
//! offset is the crop's offset plus the canvas offset. Every function validates its buffers
//! and reports an [`ImagingError`] instead of panicking.

mod color_match;
mod composite;
mod context;
mod convert;
mod crop;
mod distance;
mod error;
mod filter;
mod mask;
mod outpaint;
mod rect;
mod resample;
mod resize;
mod transpose;

pub use color_match::{ColorMatchOptions, color_match};
pub use composite::{AlphaPolicy, PlacedImage, composite, composite_crop, replace_crop};
pub use context::{ContextOptions, ContextPlan, ModelFit, plan_context};
pub use convert::{
    PixelRange, mask_to_nchw, model_to_rgba, nchw_to_rgba, rgba_to_model, rgba_to_nchw,
};
pub use crop::{extract_crop, extract_mask_crop, pad_edges, pad_mask_edges};
pub use error::{ImagingError, MAX_SIDE, validate_mask, validate_rgba};
pub use mask::{binarize, dilate, erode, feather, mask_bounds};
pub use outpaint::{DEFAULT_OUTPAINT_OVERLAP, ExtendedCanvas, extend_canvas};
pub use rect::Rect;
pub use resize::{resize_mask, resize_rgba};
