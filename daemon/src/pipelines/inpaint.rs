//! Inpainting at model resolution, as diffusers' StableDiffusionInpaintPipeline.
//!
//! The pixel mask (255 = regenerate) is binarised at 50 %, and reduced to latent resolution by
//! nearest-neighbour sampling (torch `interpolate`, mode nearest: latent cell (i, j) takes pixel
//! (i·s, j·s)). 9-channel UNets get `[mask, masked-image latents]` appended to their input, the
//! masked image being the image with the masked pixels set to 0 (mid grey). 4-channel UNets
//! denoise the whole latent and, after each step, keep the image's latents noised to the next
//! timestep (clean after the last step) where the mask is 0. At strength 1 the start is pure
//! noise; below 1 it is the image's latents noised to the first kept timestep.

use super::{
    Components, DenoiseRun, InpaintGuide, Latents, ModelImage, PipelineError, Timings,
    components::timed, denoise,
};

/// Binary latent-resolution mask from an 8-bit pixel mask.
pub fn latent_mask(mask: &[u8], width: usize, height: usize, scale: usize) -> Vec<f32> {
    let (h, w) = (height / scale, width / scale);
    let mut out = Vec::with_capacity(h * w);
    for i in 0..h {
        for j in 0..w {
            let v = mask[(i * scale) * width + j * scale];
            out.push(if v as f32 / 255.0 >= 0.5 { 1.0 } else { 0.0 });
        }
    }
    out
}

/// The extra UNet channels of a 9-channel model: latent mask + masked-image latents.
pub fn channel_guide(
    components: &mut Components,
    masked_image: &ModelImage,
    latent_mask: &[f32],
    timings: &mut Timings,
) -> Result<Latents, PipelineError> {
    let masked = timed(timings, "vae_encode", || {
        components.encode_image(masked_image)
    })?;
    let mut data = latent_mask.to_vec();
    data.extend_from_slice(&masked.data);
    Ok(Latents {
        channels: 1 + masked.channels,
        height: masked.height,
        width: masked.width,
        data,
    })
}

/// Repaint the masked part of `image` (`[3, H, W]` in [-1, 1]); `mask` is H×W, 255 = repaint.
/// Returns the whole decoded image (compositing onto the original is `imaging`'s job).
pub fn inpaint(
    mut run: DenoiseRun<'_>,
    image: &ModelImage,
    mask: &[u8],
) -> Result<ModelImage, PipelineError> {
    let (width, height) = (image.width, image.height);
    if mask.len() != width * height {
        return Err(PipelineError::Invalid(format!(
            "mask has {} pixels, image {}×{}",
            mask.len(),
            width,
            height
        )));
    }
    let scale = run.components.vae_scale();
    let mut scheduler = run.plan()?;
    let lmask = latent_mask(mask, width, height, scale);
    let full_strength = run.params.strength >= 1.0;
    let nine_channels = run.components.dir.is_inpainting_unet();
    let image_latents = if nine_channels && full_strength {
        None
    } else {
        Some(
            run.components
                .encode_for(image, run.params.live, run.timings)?,
        )
    };
    let channels = run.components.latent_channels();
    let (h, w) = (height / scale, width / scale);
    let initial = run.noise.next(channels * h * w)?;
    let start = match (&image_latents, full_strength) {
        (Some(latents), false) => Latents {
            data: scheduler.add_noise(&latents.data, &initial, 0),
            ..latents.clone()
        },
        _ => Latents {
            channels,
            height: h,
            width: w,
            data: initial
                .iter()
                .map(|v| v * scheduler.init_noise_sigma())
                .collect(),
        },
    };
    let channel_inputs = if nine_channels {
        let masked_image = masked_image(image, mask);
        Some(channel_guide(
            run.components,
            &masked_image,
            &lmask,
            run.timings,
        )?)
    } else {
        None
    };
    let guide = match (&channel_inputs, &image_latents) {
        (Some(extra), _) => InpaintGuide::Channels {
            mask_and_masked: extra,
        },
        (None, Some(image_latents)) => InpaintGuide::Blend {
            image_latents,
            mask: &lmask,
            initial_noise: &initial,
        },
        (None, None) => unreachable!("4-channel UNets always encode the image"),
    };
    let latents = denoise(&mut run, start, scheduler.as_mut(), Some(&guide))?;
    run.decode(&latents)
}

/// The image with masked pixels (mask ≥ 50 %) set to 0.
fn masked_image(image: &ModelImage, mask: &[u8]) -> ModelImage {
    let plane = image.width * image.height;
    let mut data = image.data.clone();
    for (i, v) in data.iter_mut().enumerate() {
        if mask[i % plane] as f32 / 255.0 >= 0.5 {
            *v = 0.0;
        }
    }
    ModelImage {
        data,
        ..image.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latent_mask_samples_top_left_of_each_cell() {
        let mut mask = vec![0u8; 16 * 16];
        mask[8 * 16 + 8] = 255; // top-left pixel of latent cell (1, 1)
        mask[16 + 1] = 255; // inside cell (0, 0) but not its top-left
        assert_eq!(latent_mask(&mask, 16, 16, 8), vec![0.0, 0.0, 0.0, 1.0]);
    }
}
