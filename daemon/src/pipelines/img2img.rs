//! Image to image: the image's latents noised to the first kept step → sampler loop → decode.
//!
//! Strength picks how many of the planned steps run (see `scheduler`), on sigma schedules too.

use super::{DenoiseRun, Latents, ModelImage, PipelineError, denoise};

/// Re-imagine `image` (`[3, H, W]` in [-1, 1], H and W multiples of the VAE scale), starting
/// from `cached_latents` when the caller kept this image's latents from an earlier run. Returns
/// the image and the image's latents (none on a 9-channel UNet, which runs it as an inpaint).
pub fn img2img(
    mut run: DenoiseRun<'_>,
    image: &ModelImage,
    cached_latents: Option<Latents>,
) -> Result<(ModelImage, Option<Latents>), PipelineError> {
    if run.components.dir.is_inpainting_unet() {
        let mask = vec![255u8; image.height * image.width];
        let out = super::inpaint::inpaint(run, image, &mask)?;
        return Ok((out, None));
    }
    let mut scheduler = run.plan()?;
    let image_latents = match cached_latents {
        Some(latents) => latents,
        None => run
            .components
            .encode_for(image, run.params.live, run.timings)?,
    };
    let initial = run.noise.next(image_latents.data.len())?;
    let start = Latents {
        data: scheduler.add_noise(&image_latents.data, &initial, 0),
        ..image_latents.clone()
    };
    let latents = denoise(&mut run, start, scheduler.as_mut(), None)?;
    let decoded = run.decode(&latents)?;
    Ok((decoded, Some(image_latents)))
}
