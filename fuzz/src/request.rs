//! The `request` target: `livefill::request::validate` on generate requests, and the scheduler
//! plan of every request it accepts.
//!
//! Exists because a request's fields come straight from a plugin's frame: the daemon decodes it
//! and validates it against the model before queueing, and the engine then relies on what
//! validation promised (pixel buffers of the stated size, sizes within the limit, a sampler plan
//! that exists). The input is a client frame (the golden frames seed it); when it does not decode
//! to a `Generate`, the request is built field by field from the bytes with `arbitrary`, biased
//! towards the limits. An accepted request must satisfy every promise and plan and run its
//! scheduler on small latents without a panic or a non-finite value.

use std::sync::OnceLock;

use arbitrary::{Result, Unstructured};
use livefill::generator::GeneratorInfo;
use livefill::onnx::configs::SchedulerConfig;
use livefill::request::{
    DEFAULT_MAX_IMAGE_SIDE, MAX_FEATHER, MAX_GUIDANCE, MAX_PROMPT_BYTES, MAX_STEPS,
    default_request, sampler_choice, validate,
};
use livefill::scheduler::{self, ModelDefaults};
use livefill_protocol::{
    ClientMessage, Context, DEFAULT_MAX_PAYLOAD, Extend, GenerateRequest, Mask, Mode, Priority,
    RgbaImage, Sampler, Spacing, read_client_frame,
};

/// The daemon's size limits the target validates against.
const MAX_SIDES: [u32; 4] = [64, 512, DEFAULT_MAX_IMAGE_SIDE, u32::MAX];
const MODES: [Mode; 4] = [Mode::Txt2Img, Mode::Img2Img, Mode::Inpaint, Mode::Outpaint];
/// Largest pixel buffer built from the input (the sizes it claims can be far larger).
const MAX_BUILT_PIXELS: usize = 1 << 16;
/// Latent values per scheduler run.
const LATENT_LEN: usize = 4;

pub fn request(data: &[u8]) {
    let decoded = match read_client_frame(&mut &data[..], DEFAULT_MAX_PAYLOAD) {
        Ok(Some(ClientMessage::Generate(request))) => Some(request),
        _ => None,
    };
    let models = models();
    match decoded {
        Some(request) => {
            for model in &models {
                for max_side in MAX_SIDES {
                    check(&request, model, max_side);
                }
            }
        }
        None => {
            let mut u = Unstructured::new(data);
            if let Ok((request, model, max_side)) = built(&mut u) {
                check(&request, &models[model], max_side);
            }
        }
    }
}

/// Two fixed models: the LCM fixture (every mode) and an ordinary one without inpainting.
fn models() -> [GeneratorInfo; 2] {
    [
        GeneratorInfo::stand_in("tiny-sd", MODES.to_vec(), ModelDefaults::LCM),
        GeneratorInfo::stand_in(
            "quality",
            vec![Mode::Txt2Img, Mode::Img2Img],
            ModelDefaults::QUALITY,
        ),
    ]
}

/// The fixture's scheduler config, parsed once.
fn scheduler_config() -> &'static SchedulerConfig {
    static CONFIG: OnceLock<SchedulerConfig> = OnceLock::new();
    CONFIG.get_or_init(|| {
        serde_json::from_str(include_str!(
            "../../tests/fixtures/tiny-sd/scheduler/scheduler_config.json"
        ))
        .expect("the fixture's scheduler config parses")
    })
}

fn check(request: &GenerateRequest, model: &GeneratorInfo, max_side: u32) {
    match validate(request, model, max_side) {
        Err(e) => {
            let _ = (e.code(), e.to_string());
        }
        Ok(()) => accepted(request, model, max_side),
    }
}

/// What the engine relies on once `validate` said yes.
fn accepted(r: &GenerateRequest, model: &GeneratorInfo, max_side: u32) {
    assert!(model.modes.contains(&r.mode), "mode {:?}", r.mode);
    assert!(r.prompt.len() <= MAX_PROMPT_BYTES && r.negative_prompt.len() <= MAX_PROMPT_BYTES);
    assert!((1..=MAX_STEPS).contains(&r.steps), "steps {}", r.steps);
    assert!(
        (0.0..=MAX_GUIDANCE).contains(&r.guidance),
        "guidance {}",
        r.guidance
    );
    assert!(
        r.strength > 0.0 && r.strength <= 1.0,
        "strength {}",
        r.strength
    );
    assert!(r.feather <= MAX_FEATHER);
    assert!(r.width <= max_side && r.height <= max_side);
    if r.mode != Mode::Txt2Img {
        let image = r
            .image
            .as_ref()
            .expect("an image for every mode but txt2img");
        assert!(image.width > 0 && image.height > 0);
        assert!(image.width <= max_side && image.height <= max_side);
        assert!(
            image.is_well_formed(),
            "{}×{} image",
            image.width,
            image.height
        );
        if let Some(mask) = &r.mask {
            assert_eq!((mask.width, mask.height), (image.width, image.height));
            assert!(mask.is_well_formed());
        }
        if r.mode == Mode::Outpaint {
            let e = r.extend;
            assert!(e != Extend::default(), "outpaint without a border");
            let w = u64::from(image.width) + u64::from(e.left) + u64::from(e.right);
            let h = u64::from(image.height) + u64::from(e.top) + u64::from(e.bottom);
            assert!(w <= u64::from(max_side) && h <= u64::from(max_side));
        }
    }
    run_scheduler(r, model);
}

/// Plans the request's sampler as the pipelines do and runs every step on small latents.
fn run_scheduler(r: &GenerateRequest, model: &GeneratorInfo) {
    let choice = sampler_choice(r, model);
    let mut plan = scheduler::plan(scheduler_config(), &choice, r.steps as usize, r.strength)
        .unwrap_or_else(|e| panic!("validate accepted {choice:?} that the scheduler refuses: {e}"));
    let steps = plan.timesteps().len();
    assert!(steps >= 1, "an accepted request runs at least one step");
    assert!(plan.timesteps().iter().all(|t| t.is_finite()));
    let noise = [0.5f32; LATENT_LEN];
    let mut sample = plan.add_noise(&[0.25; LATENT_LEN], &noise, 0);
    for index in 0..steps {
        let scaled: Vec<f32> = sample.iter().map(|v| v * plan.input_scale(index)).collect();
        let fresh = plan.needs_noise(index).then_some(&noise[..]);
        sample = plan.step(index, &scaled, &sample, fresh);
        assert!(
            sample.iter().all(|v| v.is_finite()),
            "{choice:?}, {steps} steps at strength {}: step {index} gave {sample:?}",
            r.strength
        );
    }
}

/// A request, a model index and a size limit built from the bytes.
fn built(u: &mut Unstructured<'_>) -> Result<(GenerateRequest, usize, u32)> {
    let mode = *u.choose(&MODES)?;
    let mut r = default_request(mode);
    r.request_id = u.arbitrary()?;
    r.prompt = prompt(u)?;
    r.negative_prompt = prompt(u)?;
    r.seed = u.arbitrary()?;
    r.steps = edge_u32(u, &[0, 1, 4, MAX_STEPS, MAX_STEPS + 1])?;
    r.guidance = edge_f32(u, &[0.0, 1.0, 7.5, MAX_GUIDANCE, MAX_GUIDANCE + 1e-3])?;
    r.strength = edge_f32(u, &[0.0, 1e-6, 0.01, 0.5, 1.0, 1.0 + 1e-6])?;
    r.width = edge_u32(u, &[0, 1, 63, 64, 65, 8192, 8193])?;
    r.height = edge_u32(u, &[0, 1, 63, 64, 65, 8192, 8193])?;
    if u.ratio(7, 8)? {
        let (width, height) = (side(u)?, side(u)?);
        let pixels = buffer(u, (u64::from(width) * u64::from(height)).saturating_mul(4))?;
        r.image = Some(RgbaImage {
            width,
            height,
            pixels,
        });
    }
    if u.arbitrary()? {
        let (width, height) = match (&r.image, u.ratio(3, 4)?) {
            (Some(image), true) => (image.width, image.height),
            _ => (side(u)?, side(u)?),
        };
        let pixels = buffer(u, u64::from(width) * u64::from(height))?;
        r.mask = Some(Mask::new(width, height, pixels));
    }
    let edges = [0, 1, 8, 64, 1 << 31, u32::MAX];
    r.extend = Extend {
        left: edge_u32(u, &edges)?,
        top: edge_u32(u, &edges)?,
        right: edge_u32(u, &edges)?,
        bottom: edge_u32(u, &edges)?,
    };
    r.context = *u.choose(&[Context::Auto, Context::Full])?;
    r.feather = edge_u32(u, &[0, 8, MAX_FEATHER, MAX_FEATHER + 1])?;
    r.color_match = u.arbitrary()?;
    r.priority = *u.choose(&[Priority::Final, Priority::LivePreview])?;
    r.stream_previews = u.arbitrary()?;
    r.sampler = option(u, |u| u.choose(&Sampler::ALL).copied())?;
    r.spacing = option(u, |u| u.choose(&Spacing::ALL).copied())?;
    r.eta = option(u, |u| edge_f32(u, &[0.0, 0.3, 1.0, 1.0 + 1e-6, -0.0]))?;
    r.model = u.arbitrary()?;
    let model = u.choose_index(2)?;
    let max_side = *u.choose(&MAX_SIDES)?;
    Ok((r, model, max_side))
}

/// Mostly one of `edges` (the limits), else any value.
fn edge_u32(u: &mut Unstructured<'_>, edges: &[u32]) -> Result<u32> {
    if u.ratio(3, 4)? {
        u.choose(edges).copied()
    } else {
        u.arbitrary()
    }
}

/// Mostly one of `edges` or a non-finite value, else any bit pattern.
fn edge_f32(u: &mut Unstructured<'_>, edges: &[f32]) -> Result<f32> {
    match u.int_in_range(0..=7u8)? {
        0 => u
            .choose(&[f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -1.0])
            .copied(),
        1 | 2 => Ok(f32::from_bits(u.arbitrary()?)),
        _ => u.choose(edges).copied(),
    }
}

/// A prompt: arbitrary text, or one of a length around the limit.
fn prompt(u: &mut Unstructured<'_>) -> Result<String> {
    if u.ratio(1, 8)? {
        let len = u.int_in_range(MAX_PROMPT_BYTES - 1..=MAX_PROMPT_BYTES + 1)?;
        Ok("x".repeat(len))
    } else {
        u.arbitrary()
    }
}

/// An image or mask side: small, zero, or at the limits.
fn side(u: &mut Unstructured<'_>) -> Result<u32> {
    edge_u32(u, &[0, 1, 2, 7, 8, 64, 65, 8192, 8193, u32::MAX])
}

/// A pixel buffer of `expected` bytes (if that is small) or one byte off, or short garbage.
fn buffer(u: &mut Unstructured<'_>, expected: u64) -> Result<Vec<u8>> {
    let len = match usize::try_from(expected) {
        Ok(n) if n <= MAX_BUILT_PIXELS => match u.int_in_range(0..=5u8)? {
            0 => n + 1,
            1 => n.saturating_sub(1),
            _ => n,
        },
        _ => u.int_in_range(0..=64)?,
    };
    Ok(vec![u.arbitrary::<u8>()?; len])
}

fn option<T>(
    u: &mut Unstructured<'_>,
    value: impl FnOnce(&mut Unstructured<'_>) -> Result<T>,
) -> Result<Option<T>> {
    if u.arbitrary()? {
        value(u).map(Some)
    } else {
        Ok(None)
    }
}
