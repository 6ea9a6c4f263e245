//! Text to image: pure noise → LCM loop → decode (9-channel UNets: an inpaint of a blank
//! image with everything masked).

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
    if components.dir.is_inpainting_unet() {
        // A 9-channel UNet generates from scratch as an inpaint of a blank image with
        // everything masked, at strength 1 (the same draws from `noise`, in the same order).
        let blank = ModelImage {
            height,
            width,
            data: vec![0.0; 3 * height * width],
        };
        let everything = vec![255u8; height * width];
        let params = SamplingParams {
            strength: 1.0,
            ..params
        };
        return super::inpaint::inpaint(
            components,
            conditioning,
            &blank,
            &everything,
            params,
            noise,
            cancel,
            timings,
            on_step,
        );
    }
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
    let latents = denoise(
        components,
        start,
        &scheduler,
        conditioning,
        None,
        params.live,
        noise,
        cancel,
        timings,
        on_step,
    )?;
    components.decode_for(&latents, params.live, timings)
}
