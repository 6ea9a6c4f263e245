//! One validated generate request, from wire pixels to wire pixels.
//!
//! Exists to keep the per-mode pixel flow in one place: how each mode uses the user's image and
//! mask (context crop, model size, outpaint canvas), and how the model's output comes back
//! (resize, colour match, feathered composite that leaves every pixel outside the mask
//! bit-identical). Validation is `crate::request`; the denoising itself is `pipelines`.

use std::time::Instant;

use livefill_protocol::{Context, GenerateRequest, Mask, Mode, Priority, RgbaImage, StageTiming};

use crate::generator::{CancelToken, GenerateError, GenerateOutput, StepProgress};
use crate::imaging::{self, AlphaPolicy, ContextOptions, ContextPlan, Rect};
use crate::noise::NoiseSource;
use crate::pipelines::{
    self, Components, DenoiseRun, Latents, ModelImage, PipelineError, SamplingParams,
    TextEmbedding, Timings,
};

use super::live_cache::{LiveLatentCache, fingerprint};
use super::text_cache::TextCache;
use crate::request::ONNXRUNTIME_STAGE;
use crate::scheduler::SamplerChoice;

/// Everything one job borrows from the engine.
pub struct RequestRun<'a> {
    /// The request's sampler, resolved against the model.
    pub sampler: SamplerChoice,
    pub components: &'a mut Components,
    pub text_cache: &'a mut TextCache,
    pub live_cache: &'a mut LiveLatentCache,
    pub noise: &'a mut dyn NoiseSource,
    pub cancel: &'a CancelToken,
    pub on_step: &'a mut dyn FnMut(StepProgress),
}

impl From<PipelineError> for GenerateError {
    fn from(e: PipelineError) -> Self {
        match e {
            PipelineError::Cancelled => GenerateError::Cancelled,
            PipelineError::Invalid(m) => GenerateError::InvalidRequest(m),
            PipelineError::Schedule(e) => GenerateError::InvalidRequest(e.to_string()),
            PipelineError::Onnx(e) if is_out_of_memory(&e.to_string()) => {
                GenerateError::OutOfMemory(e.to_string())
            }
            other => GenerateError::Internal(other.to_string()),
        }
    }
}

impl From<imaging::ImagingError> for GenerateError {
    fn from(e: imaging::ImagingError) -> Self {
        GenerateError::InvalidRequest(e.to_string())
    }
}

fn is_out_of_memory(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("out of memory")
        || m.contains("failed to allocate")
        || m.contains("cudaerrormemoryallocation")
}

impl RequestRun<'_> {
    /// Run the request; `seed` is reported back in the output.
    pub fn run(
        &mut self,
        request: &GenerateRequest,
        seed: u64,
    ) -> Result<GenerateOutput, GenerateError> {
        let mut timings = Timings::default();
        self.components.take_onnxruntime_time(); // not this job's
        let conditioning = self.conditioning(request, &mut timings)?;
        let placed = match request.mode {
            Mode::Txt2Img => self.txt2img(request, &conditioning, &mut timings)?,
            Mode::Img2Img => self.img2img(request, &conditioning, &mut timings)?,
            Mode::Inpaint => {
                let image = request.image.as_ref().expect("validated");
                let mask = request.mask.clone().unwrap_or_else(|| full_mask(image));
                self.inpaint(request, image, &mask, &conditioning, &mut timings)?
            }
            Mode::Outpaint => self.outpaint(request, &conditioning, &mut timings)?,
        };
        timings.add(ONNXRUNTIME_STAGE, self.components.take_onnxruntime_time());
        Ok(GenerateOutput {
            image: placed.image,
            offset_x: placed.offset_x,
            offset_y: placed.offset_y,
            seed,
            model: self.components.dir.name.clone(),
            timings: timings
                .0
                .iter()
                .map(|(stage, d)| StageTiming {
                    stage: stage.clone(),
                    millis: d.as_secs_f32() * 1000.0,
                })
                .collect(),
        })
    }

    fn conditioning(
        &mut self,
        request: &GenerateRequest,
        timings: &mut Timings,
    ) -> Result<pipelines::Conditioning, GenerateError> {
        let cache = &mut *self.text_cache;
        let start = Instant::now();
        let mut encode =
            |components: &mut Components, prompt: &str| -> Result<TextEmbedding, PipelineError> {
                if let Some(hit) = cache.get(prompt) {
                    return Ok(hit);
                }
                let embedding = components.encode_text(prompt)?;
                cache.insert(prompt, embedding.clone());
                Ok(embedding)
            };
        let conditioning = pipelines::condition(
            self.components,
            &request.prompt,
            &request.negative_prompt,
            request.guidance,
            &mut encode,
        )?;
        timings.add("text_encode", start.elapsed());
        Ok(conditioning)
    }

    /// The pipeline's view of this job, denoising at `strength`.
    fn denoise_run<'s>(
        &'s mut self,
        request: &GenerateRequest,
        conditioning: &'s pipelines::Conditioning,
        strength: f32,
        timings: &'s mut Timings,
    ) -> DenoiseRun<'s> {
        DenoiseRun {
            components: self.components,
            conditioning,
            params: SamplingParams {
                steps: request.steps as usize,
                guidance: request.guidance,
                strength,
                sampler: self.sampler,
                live: request.priority == Priority::LivePreview,
            },
            noise: self.noise,
            cancel: self.cancel,
            timings,
            on_step: Box::new(progress(&mut *self.on_step, request.stream_previews)),
        }
    }

    fn txt2img(
        &mut self,
        request: &GenerateRequest,
        conditioning: &pipelines::Conditioning,
        timings: &mut Timings,
    ) -> Result<imaging::PlacedImage, GenerateError> {
        let (nw, nh) = self.components.dir.native_size();
        // The UNet halves the latent three times: model sides are multiples of 64 px; other
        // requested sizes are generated slightly larger and cut to size.
        let round = |v: u32, native: u32| {
            let v = if v == 0 { native } else { v };
            (v.div_ceil(64) * 64) as usize
        };
        let fixed_size = self.components.fixed_image_size();
        let (width, height) = match fixed_size {
            // A UNet with a fixed size generates at that size; the result is resized below.
            Some((w, h)) => (w as usize, h as usize),
            None => (round(request.width, nw), round(request.height, nh)),
        };
        let run = self.denoise_run(request, conditioning, 1.0, timings);
        let image = pipelines::txt2img::txt2img(run, width, height)?;
        let start = Instant::now();
        let mut rgba = model_to_rgba(&image)?;
        // Requested sizes that are not multiples of 8 are cut to size.
        let (rw, rh) = (
            if request.width == 0 {
                width as u32
            } else {
                request.width
            },
            if request.height == 0 {
                height as u32
            } else {
                request.height
            },
        );
        if (rw, rh) != (width as u32, height as u32) {
            rgba = match fixed_size {
                Some(_) => imaging::resize_rgba(&rgba, rw, rh)?,
                None => imaging::extract_crop(&rgba, Rect::of_size(rw, rh))?,
            };
        }
        timings.add("postprocess", start.elapsed());
        Ok(imaging::PlacedImage {
            image: rgba,
            offset_x: 0,
            offset_y: 0,
        })
    }

    fn img2img(
        &mut self,
        request: &GenerateRequest,
        conditioning: &pipelines::Conditioning,
        timings: &mut Timings,
    ) -> Result<imaging::PlacedImage, GenerateError> {
        let image = request.image.as_ref().expect("validated");
        let start = Instant::now();
        let plan = self.plan(image, None, request.context)?;
        let model_rgba = plan.image_to_model(image)?;
        let model_image = to_model_image(&model_rgba)?;
        timings.add("preprocess", start.elapsed());
        let live = request.priority == Priority::LivePreview;
        let key = (
            fingerprint(&model_image.data),
            model_image.width,
            model_image.height,
        );
        let cached = if live {
            self.live_cache.take(key)
        } else {
            None
        };
        let run = self.denoise_run(request, conditioning, request.strength, timings);
        let (generated, latents) = pipelines::img2img::img2img(run, &model_image, cached)?;
        if let (true, Some(latents)) = (live, latents) {
            self.live_cache.store(key, latents);
        }
        let start = Instant::now();
        let generated = model_to_rgba(&generated)?;
        let back = plan.model_to_crop(&generated)?;
        let placed = match &request.mask {
            // The whole layer changes: nothing to feather or blend.
            None => imaging::replace_crop(image, back, plan.crop, AlphaPolicy::Preserve)?,
            Some(mask) => {
                let alpha = imaging::feather(&plan.crop_mask(mask)?, request.feather)?;
                imaging::composite_crop(image, &back, plan.crop, &alpha, AlphaPolicy::Preserve)?
            }
        };
        timings.add("postprocess", start.elapsed());
        Ok(placed)
    }

    fn inpaint(
        &mut self,
        request: &GenerateRequest,
        image: &RgbaImage,
        mask: &Mask,
        conditioning: &pipelines::Conditioning,
        timings: &mut Timings,
    ) -> Result<imaging::PlacedImage, GenerateError> {
        let start = Instant::now();
        let bounds = imaging::mask_bounds(mask)?;
        let Some(bounds) = bounds else {
            return Err(GenerateError::InvalidRequest(
                "the mask is empty: nothing is selected to regenerate".into(),
            ));
        };
        let plan = self.plan(image, Some(bounds), request.context)?;
        let model_rgba = plan.image_to_model(image)?;
        let model_mask = plan.mask_to_model(mask)?;
        let model_image = to_model_image(&model_rgba)?;
        timings.add("preprocess", start.elapsed());
        let run = self.denoise_run(request, conditioning, request.strength, timings);
        let generated = pipelines::inpaint::inpaint(run, &model_image, &model_mask.pixels)?;
        let start = Instant::now();
        let generated = model_to_rgba(&generated)?;
        let mut back = plan.model_to_crop(&generated)?;
        let crop_mask = plan.crop_mask(mask)?;
        if request.color_match {
            let original_crop = imaging::extract_crop(image, plan.crop)?;
            imaging::color_match(
                &original_crop,
                &mut back,
                &crop_mask,
                &imaging::ColorMatchOptions::default(),
            )?;
        }
        let alpha = imaging::feather(&crop_mask, request.feather)?;
        let placed = imaging::composite_crop(image, &back, plan.crop, &alpha, AlphaPolicy::Fill)?;
        timings.add("postprocess", start.elapsed());
        Ok(placed)
    }

    fn outpaint(
        &mut self,
        request: &GenerateRequest,
        conditioning: &pipelines::Conditioning,
        timings: &mut Timings,
    ) -> Result<imaging::PlacedImage, GenerateError> {
        let image = request.image.as_ref().expect("validated");
        let start = Instant::now();
        let extended =
            imaging::extend_canvas(image, request.extend, imaging::DEFAULT_OUTPAINT_OVERLAP)?;
        timings.add("preprocess", start.elapsed());
        // The canvas mask already ramps into the original over the overlap: a wider feather
        // would blend the generated border with the blurred initial fill.
        let inner = GenerateRequest {
            feather: request.feather.min(imaging::DEFAULT_OUTPAINT_OVERLAP),
            ..request.clone()
        };
        let mut placed = self.inpaint(
            &inner,
            &extended.image,
            &extended.mask,
            conditioning,
            timings,
        )?;
        placed.offset_x += extended.offset_x;
        placed.offset_y += extended.offset_y;
        Ok(placed)
    }

    fn plan(
        &self,
        image: &RgbaImage,
        bounds: Option<Rect>,
        context: Context,
    ) -> Result<ContextPlan, GenerateError> {
        let plan = imaging::plan_context(
            image.width,
            image.height,
            bounds,
            self.components.dir.native_size(),
            context,
            &ContextOptions::default(),
        )?;
        // A UNet with a fixed size takes exactly that size: the crop is resampled to it (and
        // the result back to the crop) whatever size the plan chose.
        Ok(match self.components.fixed_image_size() {
            Some((w, h)) if (plan.model_width, plan.model_height) != (w, h) => ContextPlan {
                model_width: w,
                model_height: h,
                fit: imaging::ModelFit::Resize,
                ..plan
            },
            _ => plan,
        })
    }
}

fn full_mask(image: &RgbaImage) -> Mask {
    full_mask_of(image.width, image.height)
}

fn full_mask_of(width: u32, height: u32) -> Mask {
    Mask {
        width,
        height,
        pixels: vec![255; width as usize * height as usize],
    }
}

fn to_model_image(rgba: &RgbaImage) -> Result<ModelImage, GenerateError> {
    let tensor = imaging::rgba_to_nchw(rgba)?;
    Ok(ModelImage {
        width: rgba.width as usize,
        height: rgba.height as usize,
        data: tensor.into_raw_vec_and_offset().0,
    })
}

fn model_to_rgba(image: &ModelImage) -> Result<RgbaImage, GenerateError> {
    let view = ndarray::ArrayView4::from_shape((1, 3, image.height, image.width), &image.data)
        .map_err(|e| GenerateError::Internal(format!("decoded image shape: {e}")))?;
    Ok(imaging::nchw_to_rgba(
        view,
        imaging::PixelRange::SignedUnit,
    )?)
}

/// The per-step callback: progress, plus a preview image when the client asked for one.
fn progress<'a>(
    on_step: &'a mut dyn FnMut(StepProgress),
    want_preview: bool,
) -> impl FnMut(usize, usize, &Latents, &mut Components) + 'a {
    move |step, total, latents, components| {
        let preview = want_preview
            .then(|| components.preview(latents).ok())
            .flatten()
            .and_then(|img| model_to_rgba(&img).ok());
        on_step(StepProgress {
            step: step as u32,
            total_steps: total as u32,
            preview,
        });
    }
}
