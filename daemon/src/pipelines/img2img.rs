//! Image to image: the image's latents noised to the first kept timestep → LCM loop → decode.
//!
//! Strength picks how many of the planned timesteps run (see `scheduler::lcm`).

use crate::generator::CancelToken;
use crate::noise::NoiseSource;
use crate::scheduler::{LcmScheduler, Scheduler};

use super::{
    Components, Conditioning, Latents, ModelImage, PipelineError, SamplingParams, StepCallback,
    Timings,
};
use super::{components::timed, denoise};

/// Re-imagine `image` (`[3, H, W]` in [-1, 1], H and W multiples of the VAE scale).
#[allow(clippy::too_many_arguments)]
pub fn img2img(
    components: &mut Components,
    conditioning: &Conditioning,
    image: &ModelImage,
    params: SamplingParams,
    noise: &mut dyn NoiseSource,
    cancel: &CancelToken,
    timings: &mut Timings,
    on_step: &mut StepCallback<'_>,
    cached_latents: Option<Latents>,
) -> Result<(ModelImage, Latents), PipelineError> {
    if components.dir.is_inpainting_unet() {
        let mask = vec![255u8; image.height * image.width];
        let out = super::inpaint::inpaint(
            components,
            conditioning,
            image,
            &mask,
            params,
            noise,
            cancel,
            timings,
            on_step,
        )?;
        return Ok((out, Latents::zeros(0, 0, 0)));
    }
    let scheduler = LcmScheduler::new(
        &components.dir.scheduler_config,
        params.steps,
        params.strength,
    )?;
    let image_latents = match cached_latents {
        Some(latents) => latents,
        None => timed(timings, "vae_encode", || components.encode_image(image))?,
    };
    let initial = noise.next(image_latents.data.len())?;
    let start = Latents {
        data: scheduler.add_noise(&image_latents.data, &initial, scheduler.timesteps()[0]),
        ..image_latents.clone()
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
    let decoded = components.decode_for(&latents, params.live, timings)?;
    Ok((decoded, image_latents))
}
