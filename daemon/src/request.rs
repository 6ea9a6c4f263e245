//! What a valid generate request is: livefill's defaults, its limits, and the one validation.
//!
//! Exists so every way in — the socket (checked before a job is queued), the CLI and in-process
//! callers (checked by the engine before any work) — refuses a bad request with the same error
//! code and the same message naming the field. It knows only the wire types and the loaded
//! model's capabilities (`generator::GeneratorInfo`), so the server can use it without reaching
//! into the engine.

use livefill_protocol::{
    Context, Extend, GenerateRequest, Mask, Mode, Priority, RgbaImage, Sampler, Spacing,
};

use crate::generator::{GenerateError, GeneratorInfo};
use crate::scheduler::SamplerChoice;

/// Longest accepted prompt, in bytes.
pub const MAX_PROMPT_BYTES: usize = 4096;
/// Most accepted denoising steps.
pub const MAX_STEPS: u32 = 50;
/// Largest accepted guidance scale.
pub const MAX_GUIDANCE: f32 = 30.0;
/// Widest accepted mask feather, in pixels.
pub const MAX_FEATHER: u32 = 1024;
/// Largest image side (width or height) a daemon accepts unless told otherwise (`--max-image-side`).
pub const DEFAULT_MAX_IMAGE_SIDE: u32 = 8192;
/// The timing entry holding the time spent inside ONNX Runtime's `Run` during a job (a part of
/// the model stages; see PROTOCOL.md).
pub const ONNXRUNTIME_STAGE: &str = "onnxruntime";

/// A request with livefill's defaults (the model's sampler, 4 steps, guidance 1, strength 0.6,
/// auto context); callers that know the model take its steps and guidance from
/// [`GeneratorInfo::sampling`] (`ModelDefaults::steps_and_guidance`).
pub fn default_request(mode: Mode) -> GenerateRequest {
    GenerateRequest {
        request_id: 0,
        mode,
        prompt: String::new(),
        negative_prompt: String::new(),
        seed: None,
        steps: 4,
        guidance: 1.0,
        strength: if mode == Mode::Img2Img { 0.6 } else { 1.0 },
        width: 0,
        height: 0,
        image: None,
        mask: None,
        extend: Extend::default(),
        context: Context::Auto,
        feather: 8,
        color_match: true,
        priority: Priority::Final,
        stream_previews: false,
        sampler: None,
        spacing: None,
        eta: None,
        model: String::new(),
    }
}

/// The sampler a (valid) request runs on this model: the one it names, else the model's default
/// with that default's spacing (DPM++ 2M Karras on ordinary models) unless it names a spacing.
pub fn sampler_choice(request: &GenerateRequest, model: &GeneratorInfo) -> SamplerChoice {
    match request.sampler {
        Some(sampler) => SamplerChoice {
            sampler,
            spacing: request.spacing,
            eta: request.eta,
        },
        None => SamplerChoice {
            spacing: request.spacing.or(model.sampling.choice.spacing),
            eta: request.eta,
            ..model.sampling.choice
        },
    }
}

fn invalid(message: impl Into<String>) -> GenerateError {
    GenerateError::InvalidRequest(message.into())
}

/// Check every field before any work, against the model that would run it and the largest side
/// allowed: a bad request gets the error code and a message naming the field.
pub fn validate(
    request: &GenerateRequest,
    model: &GeneratorInfo,
    max_side: u32,
) -> Result<(), GenerateError> {
    check_mode(request.mode, model)?;
    check_sizes(request, max_side)?;
    check_parameters(request)?;
    check_sampler(sampler_choice(request, model))?;
    let needs_image = request.mode != Mode::Txt2Img;
    match &request.image {
        None if needs_image => return Err(invalid(format!("{:?} needs an image", request.mode))),
        Some(image) => validate_image(image)?,
        None => {}
    }
    if let (Some(mask), Some(image)) = (&request.mask, &request.image) {
        validate_mask(mask, image)?;
    }
    if request.mode == Mode::Outpaint {
        check_outpaint(request, max_side)?;
    }
    Ok(())
}

fn check_mode(mode: Mode, model: &GeneratorInfo) -> Result<(), GenerateError> {
    if model.modes.contains(&mode) {
        return Ok(());
    }
    Err(invalid(format!(
        "mode {mode:?} is not available with model {} (available: {:?})",
        model.model, model.modes
    )))
}

/// The image and the requested output size against the daemon's limit.
fn check_sizes(request: &GenerateRequest, max_side: u32) -> Result<(), GenerateError> {
    let too_large = |w: u32, h: u32| w > max_side || h > max_side;
    if let Some(image) = &request.image
        && too_large(image.width, image.height)
    {
        return Err(GenerateError::ImageTooLarge(format!(
            "image {}×{} exceeds the daemon's limit of {max_side} px per side",
            image.width, image.height
        )));
    }
    if too_large(request.width, request.height) {
        return Err(GenerateError::ImageTooLarge(format!(
            "output {}×{} exceeds the daemon's limit of {max_side} px per side",
            request.width, request.height
        )));
    }
    Ok(())
}

fn check_parameters(request: &GenerateRequest) -> Result<(), GenerateError> {
    if request.prompt.len() > MAX_PROMPT_BYTES || request.negative_prompt.len() > MAX_PROMPT_BYTES {
        return Err(invalid(format!(
            "prompt longer than {MAX_PROMPT_BYTES} bytes"
        )));
    }
    if request.steps == 0 || request.steps > MAX_STEPS {
        return Err(invalid(format!(
            "steps must be 1..={MAX_STEPS}, got {}",
            request.steps
        )));
    }
    if !request.guidance.is_finite() || !(0.0..=MAX_GUIDANCE).contains(&request.guidance) {
        return Err(invalid(format!(
            "guidance must be a number in 0..={MAX_GUIDANCE}, got {}",
            request.guidance
        )));
    }
    if !(request.strength.is_finite() && request.strength > 0.0 && request.strength <= 1.0) {
        return Err(invalid(format!(
            "strength must be in (0, 1], got {}",
            request.strength
        )));
    }
    if request.feather > MAX_FEATHER {
        return Err(invalid(format!("feather above {MAX_FEATHER} px")));
    }
    Ok(())
}

/// The sampler's own limits: spacing only where it applies (LCM and TCD plan their own
/// timesteps; Karras sigmas need a sigma-based sampler), η only for DDIM (η) and TCD (γ), in
/// [0, 1].
fn check_sampler(choice: SamplerChoice) -> Result<(), GenerateError> {
    let sampler = choice.sampler;
    match choice.spacing {
        Some(spacing) if matches!(sampler, Sampler::Lcm | Sampler::Tcd) => {
            return Err(invalid(format!(
                "spacing {spacing} does not apply to sampler {sampler}, which picks its timesteps \
                 from the model's original_inference_steps schedule"
            )));
        }
        Some(Spacing::Karras) if !sampler.is_sigma_based() => {
            return Err(invalid(format!(
                "spacing karras needs a sigma-based sampler (euler, euler_a, dpmpp_2m), not {sampler}"
            )));
        }
        _ => {}
    }
    if let Some(eta) = choice.eta {
        let name = match sampler {
            Sampler::Ddim => "eta",
            Sampler::Tcd => "eta (TCD's gamma)",
            _ => {
                return Err(invalid(format!(
                    "eta applies to the ddim and tcd samplers, not {sampler}"
                )));
            }
        };
        if !(eta.is_finite() && (0.0..=1.0).contains(&eta)) {
            return Err(invalid(format!("{name} must be in [0, 1], got {eta}")));
        }
    }
    Ok(())
}

fn check_outpaint(request: &GenerateRequest, max_side: u32) -> Result<(), GenerateError> {
    let e = request.extend;
    if e == Extend::default() {
        return Err(invalid("outpaint needs at least one border to extend"));
    }
    let image = request.image.as_ref().expect("outpaint has an image");
    let (w, h) = (
        image.width as u64 + e.left as u64 + e.right as u64,
        image.height as u64 + e.top as u64 + e.bottom as u64,
    );
    if w > max_side as u64 || h > max_side as u64 {
        return Err(GenerateError::ImageTooLarge(format!(
            "extended canvas {w}×{h} exceeds the daemon's limit of {max_side} px per side"
        )));
    }
    Ok(())
}

fn validate_image(image: &RgbaImage) -> Result<(), GenerateError> {
    if image.width == 0 || image.height == 0 {
        return Err(invalid("image is empty"));
    }
    if !image.is_well_formed() {
        return Err(invalid(format!(
            "image {}×{} needs {} RGBA bytes, got {}",
            image.width,
            image.height,
            image.expected_len(),
            image.pixels.len()
        )));
    }
    Ok(())
}

fn validate_mask(mask: &Mask, image: &RgbaImage) -> Result<(), GenerateError> {
    if mask.width != image.width || mask.height != image.height {
        return Err(GenerateError::MaskSizeMismatch(format!(
            "mask is {}×{}, image {}×{}",
            mask.width, mask.height, image.width, image.height
        )));
    }
    if !mask.is_well_formed() {
        return Err(invalid(format!(
            "mask {}×{} needs {} bytes, got {}",
            mask.width,
            mask.height,
            mask.expected_len(),
            mask.pixels.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(modes: Vec<Mode>) -> GeneratorInfo {
        GeneratorInfo::stand_in("tiny", modes, crate::scheduler::ModelDefaults::QUALITY)
    }

    fn all_modes() -> GeneratorInfo {
        model(vec![
            Mode::Txt2Img,
            Mode::Img2Img,
            Mode::Inpaint,
            Mode::Outpaint,
        ])
    }

    fn with_image(mode: Mode, w: u32, h: u32) -> GenerateRequest {
        let mut r = default_request(mode);
        r.image = Some(RgbaImage {
            width: w,
            height: h,
            pixels: vec![0; (w * h * 4) as usize],
        });
        r
    }

    fn code(result: Result<(), GenerateError>) -> livefill_protocol::ErrorCode {
        result.expect_err("refused").code()
    }

    #[test]
    fn the_default_request_is_valid() {
        assert!(validate(&default_request(Mode::Txt2Img), &all_modes(), 64).is_ok());
        assert!(validate(&with_image(Mode::Img2Img, 8, 8), &all_modes(), 64).is_ok());
    }

    #[test]
    fn oversize_images_and_outputs_are_image_too_large() {
        use livefill_protocol::ErrorCode::ImageTooLarge;
        let big = with_image(Mode::Img2Img, 65, 8);
        assert_eq!(code(validate(&big, &all_modes(), 64)), ImageTooLarge);
        let mut wide = default_request(Mode::Txt2Img);
        wide.width = 65;
        assert_eq!(code(validate(&wide, &all_modes(), 64)), ImageTooLarge);
        let mut outpaint = with_image(Mode::Outpaint, 60, 8);
        outpaint.extend.right = 8;
        assert_eq!(code(validate(&outpaint, &all_modes(), 64)), ImageTooLarge);
    }

    #[test]
    fn a_mode_the_model_lacks_is_refused_by_name() {
        let err = validate(
            &with_image(Mode::Inpaint, 8, 8),
            &model(vec![Mode::Txt2Img]),
            64,
        )
        .unwrap_err();
        assert_eq!(err.code(), livefill_protocol::ErrorCode::InvalidRequest);
        assert!(
            err.to_string()
                .contains("Inpaint is not available with model tiny")
        );
    }

    #[test]
    fn each_bad_field_is_named() {
        type Spoil = fn(&mut GenerateRequest);
        let cases: [(&str, Spoil); 5] = [
            ("steps", |r| r.steps = 0),
            ("guidance", |r| r.guidance = f32::NAN),
            ("strength", |r| r.strength = 0.0),
            ("feather", |r| r.feather = MAX_FEATHER + 1),
            ("prompt", |r| r.prompt = "x".repeat(MAX_PROMPT_BYTES + 1)),
        ];
        for (field, spoil) in cases {
            let mut r = default_request(Mode::Txt2Img);
            spoil(&mut r);
            let err = validate(&r, &all_modes(), 64).unwrap_err();
            assert!(err.to_string().contains(field), "{field}: {err}");
        }
    }

    #[test]
    fn sampler_fields_are_checked_and_resolved_against_the_model() {
        type Spoil = fn(&mut GenerateRequest);
        let cases: [(&str, Spoil); 4] = [
            ("spacing trailing does not apply to sampler lcm", |r| {
                r.sampler = Some(Sampler::Lcm);
                r.spacing = Some(Spacing::Trailing);
            }),
            ("karras needs a sigma-based sampler", |r| {
                r.sampler = Some(Sampler::Ddim);
                r.spacing = Some(Spacing::Karras);
            }),
            (
                "eta applies to the ddim and tcd samplers, not dpmpp_2m",
                |r| r.eta = Some(0.5),
            ),
            ("gamma) must be in [0, 1]", |r| {
                r.sampler = Some(Sampler::Tcd);
                r.eta = Some(1.5);
            }),
        ];
        for (message, spoil) in cases {
            let mut r = default_request(Mode::Txt2Img);
            spoil(&mut r);
            let err = validate(&r, &all_modes(), 64).unwrap_err();
            assert!(err.to_string().contains(message), "{message}: {err}");
        }
        // No sampler: the model's default, DPM++ 2M Karras here; a spacing of its own wins.
        let mut r = default_request(Mode::Txt2Img);
        let choice = sampler_choice(&r, &all_modes());
        assert_eq!(
            (choice.sampler, choice.spacing),
            (Sampler::Dpmpp2m, Some(Spacing::Karras))
        );
        r.spacing = Some(Spacing::Trailing);
        assert_eq!(
            sampler_choice(&r, &all_modes()).spacing,
            Some(Spacing::Trailing)
        );
        r.sampler = Some(Sampler::Euler);
        r.spacing = None;
        let choice = sampler_choice(&r, &all_modes());
        assert_eq!((choice.sampler, choice.spacing), (Sampler::Euler, None));
        r.sampler = Some(Sampler::Ddim);
        r.eta = Some(0.4);
        assert!(validate(&r, &all_modes(), 64).is_ok());
    }

    /// Found by the `request` fuzz target: the borders were summed in u32 to see if any was
    /// set, which overflowed (a panic in debug builds; in release, borders adding up to 2^32
    /// were "no border").
    #[test]
    fn outpaint_borders_that_overflow_a_sum_are_too_large() {
        for extend in [
            Extend {
                left: u32::MAX,
                top: u32::MAX,
                right: u32::MAX,
                bottom: u32::MAX,
            },
            Extend {
                left: 1 << 31,
                right: 1 << 31,
                ..Extend::default()
            },
        ] {
            let mut r = with_image(Mode::Outpaint, 8, 8);
            r.extend = extend;
            assert_eq!(
                code(validate(&r, &all_modes(), 64)),
                livefill_protocol::ErrorCode::ImageTooLarge
            );
        }
    }

    /// Found by the `request` fuzz target: with `--max-image-side 4294967295` an image claiming
    /// u32::MAX × u32::MAX pixels overflowed the byte count (`width * height * 4` > 2^64).
    #[test]
    fn an_image_too_large_to_count_is_refused() {
        let mut r = default_request(Mode::Img2Img);
        r.image = Some(RgbaImage::new(u32::MAX, u32::MAX, vec![0; 4]));
        let err = validate(&r, &all_modes(), u32::MAX).unwrap_err();
        assert!(err.to_string().contains("RGBA bytes"), "{err}");
    }

    #[test]
    fn a_mask_of_another_size_is_a_mismatch() {
        let mut r = with_image(Mode::Inpaint, 8, 8);
        r.mask = Some(Mask {
            width: 4,
            height: 8,
            pixels: vec![255; 32],
        });
        assert_eq!(
            code(validate(&r, &all_modes(), 64)),
            livefill_protocol::ErrorCode::MaskSizeMismatch
        );
    }
}
