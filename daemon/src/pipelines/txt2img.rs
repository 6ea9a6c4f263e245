//! Text to image: pure noise (× the sampler's initial σ) → sampler loop → decode (9-channel
//! UNets: an inpaint of a blank image with everything masked).

use super::{DenoiseRun, Latents, ModelImage, PipelineError, SamplingParams, denoise};

/// Generate a `width`×`height` image (multiples of the VAE scale).
pub fn txt2img(
    mut run: DenoiseRun<'_>,
    width: usize,
    height: usize,
) -> Result<ModelImage, PipelineError> {
    if run.components.dir.is_inpainting_unet() {
        // A 9-channel UNet generates from scratch as an inpaint of a blank image with
        // everything masked, at strength 1 (the same draws from `noise`, in the same order).
        let blank = ModelImage {
            height,
            width,
            data: vec![0.0; 3 * height * width],
        };
        let everything = vec![255u8; height * width];
        run.params = SamplingParams {
            strength: 1.0,
            ..run.params
        };
        return super::inpaint::inpaint(run, &blank, &everything);
    }
    let scale = run.components.vae_scale();
    let mut scheduler = run.plan()?;
    let (h, w) = (height / scale, width / scale);
    let channels = run.components.latent_channels();
    let sigma = scheduler.init_noise_sigma();
    let start = Latents {
        channels,
        height: h,
        width: w,
        data: run
            .noise
            .next(channels * h * w)?
            .into_iter()
            .map(|v| v * sigma)
            .collect(),
    };
    let latents = denoise(&mut run, start, scheduler.as_mut(), None)?;
    run.decode(&latents)
}
