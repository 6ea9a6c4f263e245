//! Text to image: pure noise → LCM loop → decode.

use crate::generator::CancelToken;
use crate::noise::NoiseSource;
use crate::scheduler::{LcmScheduler, Scheduler};

use super::denoise;
use super::{
    Components, Conditioning, Latents, ModelImage, PipelineError, SamplingParams, StepCallback,
    Timings,
};

/// Generate a `width`×`height` image (multiples of the VAE scale).
#[allow(clippy::too_many_arguments)]
pub fn txt2img(
    components: &mut Components,
    conditioning: &Conditioning,
    width: usize,
    height: usize,
    params: SamplingParams,
    noise: &mut dyn NoiseSource,
    cancel: &CancelToken,
    timings: &mut Timings,
    on_step: &mut StepCallback<'_>,
) -> Result<ModelImage, PipelineError> {
    let scale = components.vae_scale();
    let scheduler = LcmScheduler::new(&components.dir.scheduler_config, params.steps, 1.0)?;
    let (h, w) = (height / scale, width / scale);
    let channels = components.latent_channels();
    let sigma = scheduler.init_noise_sigma();
    let start = Latents {
        channels,
        height: h,
        width: w,
        data: noise
            .next(channels * h * w)?
            .into_iter()
            .map(|v| v * sigma)
            .collect(),
    };
    if components.dir.is_inpainting_unet() {
        // A 9-channel UNet needs a mask and a masked image: everything is masked.
        let blank = ModelImage {
            height,
            width,
            data: vec![0.0; 3 * height * width],
        };
        let guide = super::inpaint::channel_guide(components, &blank, &vec![1.0; h * w], timings)?;
        let guide = super::InpaintGuide::Channels {
            mask_and_masked: &guide,
        };
        let latents = denoise(
            components,
            start,
            &scheduler,
            conditioning,
            Some(&guide),
            noise,
            cancel,
            timings,
            on_step,
        )?;
        return components.decode_for(&latents, params.fast_decode, timings);
    }
    let latents = denoise(
        components,
        start,
        &scheduler,
        conditioning,
        None,
        noise,
        cancel,
        timings,
        on_step,
    )?;
    components.decode_for(&latents, params.fast_decode, timings)
}
