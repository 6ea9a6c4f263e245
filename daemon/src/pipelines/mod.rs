//! Diffusion pipelines by mode, at model resolution, in diffusers' order.
//!
//! Exists to keep the denoising math (prompt encoding, latent preparation, the sampler loop,
//! inpaint blending, decoding) apart from pixel work on user images (`imaging`) and from request
//! handling (`engine`). Each mode has its own file; they share `denoise` below.
//!
//! Order per job, as diffusers' pipelines do it: encode prompt (and negative prompt for CFG) →
//! plan timesteps (strength) → prepare latents (noise, or the image's latents noised to the first
//! timestep) → for each timestep: UNet (+ guidance) → scheduler step (→ inpaint blend) → decode.

pub mod components;
pub mod img2img;
pub mod inpaint;
pub mod shared;
pub mod txt2img;
pub mod unet_buffers;

use std::time::Duration;

pub use components::{Components, Conditioning, Latents, ModelImage, TextEmbedding};

use crate::generator::CancelToken;
use crate::noise::{NoiseError, NoiseSource};
use crate::onnx::contract::ContractError;
use crate::onnx::session::OnnxError;
use crate::scheduler::{self, SamplerChoice, ScheduleError, Scheduler};
use crate::tokenizer::TokenizerError;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Onnx(#[from] OnnxError),
    #[error(transparent)]
    Contract(#[from] ContractError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    Noise(#[from] NoiseError),
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    #[error("model: {0}")]
    Model(String),
    #[error("invalid input: {0}")]
    Invalid(String),
    #[error("cancelled")]
    Cancelled,
}

/// Per-stage wall-clock times of one job, in the order first seen.
#[derive(Debug, Clone, Default)]
pub struct Timings(pub Vec<(String, Duration)>);

impl Timings {
    pub fn add(&mut self, stage: &str, elapsed: Duration) {
        match self.0.iter_mut().find(|(s, _)| s == stage) {
            Some((_, total)) => *total += elapsed,
            None => self.0.push((stage.to_string(), elapsed)),
        }
    }
    pub fn get(&self, stage: &str) -> Option<Duration> {
        self.0.iter().find(|(s, _)| s == stage).map(|(_, d)| *d)
    }
}

/// Shared parameters of a denoising run.
#[derive(Debug, Clone, Copy)]
pub struct SamplingParams {
    pub steps: usize,
    pub guidance: f32,
    pub strength: f32,
    /// The sampler, resolved against the model (`request::sampler_choice`).
    pub sampler: SamplerChoice,
    /// A live preview: decode with TAESD when the model has one (the full VAE otherwise), and
    /// capture the UNet's run as a CUDA graph where the session allows it.
    pub live: bool,
}

/// Called after every step with (step, total, latents, the model — for previews).
pub type StepCallback<'a> = dyn FnMut(usize, usize, &Latents, &mut Components) + 'a;

/// One denoising run: the model and everything a mode's pipeline shares with the others; each
/// mode adds only its own inputs (size, image, mask).
pub struct DenoiseRun<'a> {
    pub components: &'a mut Components,
    pub conditioning: &'a Conditioning,
    pub params: SamplingParams,
    pub noise: &'a mut dyn NoiseSource,
    pub cancel: &'a CancelToken,
    pub timings: &'a mut Timings,
    pub on_step: Box<StepCallback<'a>>,
}

impl DenoiseRun<'_> {
    /// The scheduler planned for this run's sampler, steps and strength.
    fn plan(&self) -> Result<Box<dyn Scheduler>, PipelineError> {
        Ok(scheduler::plan(
            &self.components.dir.scheduler_config,
            &self.params.sampler,
            self.params.steps,
            self.params.strength,
        )?)
    }

    /// Decode the final latents (TAESD for live previews when the model has it).
    fn decode(&mut self, latents: &Latents) -> Result<ModelImage, PipelineError> {
        self.components
            .decode_for(latents, self.params.live, self.timings)
    }
}

/// Extra inputs of a job running on a 9-channel inpainting UNet, or blending for a 4-channel one.
pub enum InpaintGuide<'a> {
    /// 9-channel UNet: mask + masked-image latents appended to the UNet input.
    Channels { mask_and_masked: &'a Latents },
    /// 4-channel UNet: after each step, keep the image's latents (noised to the next timestep)
    /// where the latent mask is 0 (diffusers' StableDiffusionInpaintPipeline).
    Blend {
        image_latents: &'a Latents,
        mask: &'a [f32],
        initial_noise: &'a [f32],
    },
}

/// The denoising loop shared by every mode: per step, the model input scaled as the sampler
/// wants it (`scale_model_input`; a 9-channel UNet's extra channels are appended unscaled, as
/// diffusers does), the UNet (+ guidance), the sampler's step with the fresh noise it draws.
pub fn denoise(
    run: &mut DenoiseRun<'_>,
    mut latents: Latents,
    scheduler: &mut dyn Scheduler,
    guide: Option<&InpaintGuide<'_>>,
) -> Result<Latents, PipelineError> {
    let timesteps = scheduler.timesteps().to_vec();
    let total = timesteps.len();
    // A 9-channel UNet's mask + masked-image latents, the same at every step.
    let extra = match guide {
        Some(InpaintGuide::Channels { mask_and_masked }) => Some(*mask_and_masked),
        _ => None,
    };
    let sample = (
        latents.channels + extra.map_or(0, |e| e.channels),
        latents.height,
        latents.width,
    );
    let (components, conditioning, live) =
        (&mut *run.components, run.conditioning, run.params.live);
    let job = components::timed(run.timings, "unet", || {
        components.prepare_unet(conditioning, sample, live)
    })?;
    for (index, &t) in timesteps.iter().enumerate() {
        if run.cancel.is_cancelled() {
            return Err(PipelineError::Cancelled);
        }
        let components = &mut *run.components;
        let scale = scheduler.input_scale(index);
        let scaled;
        let input = if scale == 1.0 {
            &latents
        } else {
            scaled = Latents {
                data: latents.data.iter().map(|v| v * scale).collect(),
                ..latents.clone()
            };
            &scaled
        };
        let predicted = components::timed(run.timings, "unet", || {
            components.predict_noise(input, extra, t, &job)
        })?;
        let step_noise = if scheduler.needs_noise(index) {
            Some(run.noise.next(latents.data.len())?)
        } else {
            None
        };
        latents.data = scheduler.step(index, &predicted, &latents.data, step_noise.as_deref());
        if let Some(InpaintGuide::Blend {
            image_latents,
            mask,
            initial_noise,
        }) = guide
        {
            blend_known_region(
                &mut latents,
                scheduler,
                index,
                image_latents,
                mask,
                initial_noise,
            );
        }
        (run.on_step)(index + 1, total, &latents, run.components);
    }
    Ok(latents)
}

fn blend_known_region(
    latents: &mut Latents,
    scheduler: &dyn Scheduler,
    index: usize,
    image_latents: &Latents,
    mask: &[f32],
    initial_noise: &[f32],
) {
    let proper = if index + 1 < scheduler.timesteps().len() {
        scheduler.add_noise(&image_latents.data, initial_noise, index + 1)
    } else {
        image_latents.data.clone()
    };
    let plane = latents.height * latents.width;
    for (i, (l, p)) in latents.data.iter_mut().zip(&proper).enumerate() {
        let m = mask[i % plane];
        *l = (1.0 - m) * p + m * *l;
    }
}

/// Prompt (and negative prompt) → conditioning, as diffusers' `encode_prompt` + guidance rules:
/// CFG runs when guidance > 1 and the UNet has no guidance embedding (`time_cond_proj_dim`).
pub fn condition(
    components: &mut Components,
    prompt: &str,
    negative: &str,
    guidance: f32,
    cache: &mut dyn FnMut(&mut Components, &str) -> Result<TextEmbedding, PipelineError>,
) -> Result<Conditioning, PipelineError> {
    let cond = cache(components, prompt)?;
    let embed_dim = components.dir.unet_config.time_cond_proj_dim;
    let uncond = if guidance > 1.0 && embed_dim.is_none() {
        Some(cache(components, negative)?)
    } else {
        None
    };
    Ok(Conditioning {
        cond,
        uncond,
        guidance,
        timestep_cond: embed_dim.map(|d| components::guidance_embedding(guidance, d)),
    })
}

/// Encode without caching.
pub fn encode_uncached(
    components: &mut Components,
    prompt: &str,
) -> Result<TextEmbedding, PipelineError> {
    components.encode_text(prompt)
}
