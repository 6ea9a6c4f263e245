//! The optional TAESD decoder and encoder (`taesd_decoder/`, `taesd_encoder/`: diffusers'
//! `AutoencoderTiny`).
//!
//! `tests/reference/make_fixtures.py` adds a tiny random-weight one to tiny-sd and records
//! diffusers' `AutoencoderTiny.decode` of fixed latents (`reference/taesd/`) and
//! `AutoencoderTiny.encode` of the reference image (`reference/taesd_encoder/`). Here livefill's
//! `Components::preview` must match the decode (PSNR ≥ 40 dB on 8-bit pixels) and
//! `Components::encode_for` the encode, and the engine must use TAESD for live-preview encodes,
//! decodes and step previews but the full VAE for final jobs.

use std::path::Path;

use livefill::engine::{Engine, EngineOptions};
use livefill::generator::{CancelToken, GenerateOutput, ImageGenerator, StepProgress};
use livefill::imaging::{ContextOptions, plan_context};
use livefill::npy;
use livefill::onnx::model_dir::ModelDir;
use livefill::pipelines::{Components, Latents, ModelImage, Timings};
use livefill::request::default_request;
use livefill_protocol::{GenerateRequest, Mode, Priority, RgbaImage};
use reference_support::{fixtures, psnr, runtime, runtime_options, to_u8_hwc};
use serde::Deserialize;

mod reference_support;

#[derive(Debug, Deserialize)]
struct TaesdCase {
    model: String,
    latents: String,
    expected: String,
    width: usize,
    height: usize,
}

fn reference_case() -> TaesdCase {
    let path = fixtures().join("reference/taesd/case.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("taesd case.json")).unwrap()
}

fn load_latents(path: &Path) -> Latents {
    let array = npy::read_f32(path).expect("latents npy");
    let [1, channels, height, width] = array.shape[..] else {
        panic!("latents shape {:?}", array.shape)
    };
    Latents {
        channels,
        height,
        width,
        data: array.data,
    }
}

#[test]
fn taesd_preview_matches_diffusers_autoencoder_tiny() {
    let case = reference_case();
    let dir = fixtures().join("reference");
    let runtime = runtime();
    let model = ModelDir::open(&fixtures().join(&case.model)).expect("model dir");
    let mut components = Components::load(&runtime, model).expect("load model");
    assert!(
        components.taesd_decoder.is_some(),
        "{} has taesd_decoder/model.onnx",
        case.model
    );

    let latents = load_latents(&dir.join(&case.latents));
    let expected = npy::read_f32(&dir.join(&case.expected)).expect("expected npy");
    assert_eq!(expected.shape, vec![case.height, case.width, 3]);
    assert_eq!(
        (case.width, case.height),
        (latents.width * 8, latents.height * 8),
        "TAESD upsamples 8x"
    );

    let preview = components.preview(&latents).expect("taesd preview");
    assert_eq!((preview.width, preview.height), (case.width, case.height));
    let score = psnr(&to_u8_hwc(&preview), &expected.data);
    println!("taesd preview vs diffusers: PSNR {score:.2} dB");
    assert!(score >= 40.0, "TAESD preview PSNR {score:.2} dB < 40 dB");

    // Negative control: other latents through the same graph fail the bar.
    let mut other = latents;
    other.data.reverse();
    let preview = components.preview(&other).expect("taesd preview");
    let score = psnr(&to_u8_hwc(&preview), &expected.data);
    assert!(score < 30.0, "reversed latents still scored {score:.2} dB");
}

#[derive(Debug, Deserialize)]
struct TaesdEncoderCase {
    model: String,
    image: String,
    expected: String,
}

#[test]
fn taesd_encoder_matches_diffusers_autoencoder_tiny() {
    let dir = fixtures().join("reference");
    let case: TaesdEncoderCase = serde_json::from_str(
        &std::fs::read_to_string(dir.join("taesd_encoder/case.json")).expect("case.json"),
    )
    .unwrap();
    let model = ModelDir::open(&fixtures().join(&case.model)).expect("model dir");
    let mut components = Components::load(&runtime(), model).expect("load model");
    assert!(
        components.taesd_encoder.is_some(),
        "{} has taesd_encoder/",
        case.model
    );
    let image = image::open(dir.join(&case.image)).expect("image").to_rgb8();
    let (w, h) = image.dimensions();
    let mut data = vec![0f32; 3 * (w * h) as usize];
    for (i, pixel) in image.pixels().enumerate() {
        for c in 0..3 {
            data[c * (w * h) as usize + i] = pixel[c] as f32 / 127.5 - 1.0;
        }
    }
    let image = ModelImage {
        width: w as usize,
        height: h as usize,
        data,
    };
    let expected = npy::read_f32(&dir.join(&case.expected)).expect("latents npy");
    let mut timings = Timings::default();
    let latents = components
        .encode_for(&image, true, &mut timings)
        .expect("taesd encode");
    assert!(timings.get("taesd_encode").is_some(), "{timings:?}");
    assert_eq!(
        expected.shape,
        vec![1, latents.channels, latents.height, latents.width]
    );
    let worst = latents
        .data
        .iter()
        .zip(&expected.data)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    let scale = expected.data.iter().map(|v| v.abs()).fold(0f32, f32::max);
    println!("taesd encoder vs diffusers: max |diff| {worst:.2e} (max |latent| {scale:.2})");
    assert!(worst <= 1e-4 * scale.max(1.0), "max |diff| {worst:.2e}");
    // Final jobs keep the VAE: another encoder, other latents.
    let vae = components
        .encode_for(&image, false, &mut timings)
        .expect("vae encode");
    assert!(timings.get("vae_encode").is_some(), "{timings:?}");
    assert_ne!(vae.data, latents.data);
}

fn engine() -> Engine {
    Engine::load(&EngineOptions {
        model: fixtures().join("tiny-sd"),
        runtime: runtime_options(),
        max_image_side: 4096,
    })
    .expect("engine on tiny-sd")
}

/// A 200×150 picture with some structure.
fn picture() -> RgbaImage {
    let (w, h) = (200u32, 150u32);
    let mut pixels = Vec::with_capacity((w * h * 4) as usize);
    for y in 0..h {
        for x in 0..w {
            pixels.extend_from_slice(&[
                (x * 255 / w) as u8,
                (y * 255 / h) as u8,
                ((x ^ y) & 0xff) as u8,
                255,
            ]);
        }
    }
    RgbaImage {
        width: w,
        height: h,
        pixels,
    }
}

fn img2img_request(image: &RgbaImage, priority: Priority) -> GenerateRequest {
    let mut request = default_request(Mode::Img2Img);
    request.prompt = "a lighthouse at dusk".into();
    request.image = Some(image.clone());
    request.priority = priority;
    request
}

fn run(
    engine: &mut Engine,
    request: &GenerateRequest,
    seed: u64,
) -> (GenerateOutput, Vec<StepProgress>) {
    let mut steps = Vec::new();
    let out = engine
        .generate(request, seed, &CancelToken::new(), &mut |p| steps.push(p))
        .expect("generate");
    (out, steps)
}

fn stages(out: &GenerateOutput) -> Vec<&str> {
    out.timings.iter().map(|t| t.stage.as_str()).collect()
}

#[test]
fn engine_encodes_and_decodes_live_previews_with_taesd_and_final_jobs_with_the_vae() {
    let image = picture();
    let mut engine = engine();
    assert!(engine.components.taesd_decoder.is_some());
    assert!(
        engine.info().taesd_previews,
        "hello advertises TAESD previews"
    );

    let live = img2img_request(&image, Priority::LivePreview);
    let (live_out, live_steps) = run(&mut engine, &live, 5);
    let live_stages = stages(&live_out);
    assert!(live_stages.contains(&"taesd_decode"), "{live_stages:?}");
    assert!(!live_stages.contains(&"vae_decode"), "{live_stages:?}");
    assert!(live_stages.contains(&"taesd_encode"), "{live_stages:?}");
    assert!(!live_stages.contains(&"vae_encode"), "{live_stages:?}");
    assert_eq!(
        (live_out.image.width, live_out.image.height),
        (image.width, image.height)
    );
    assert!(
        live_steps.iter().all(|p| p.preview.is_none()),
        "no previews unless asked"
    );

    let final_request = img2img_request(&image, Priority::Final);
    let (final_out, _) = run(&mut engine, &final_request, 5);
    let final_stages = stages(&final_out);
    assert!(final_stages.contains(&"vae_decode"), "{final_stages:?}");
    assert!(!final_stages.contains(&"taesd_decode"), "{final_stages:?}");
    assert!(final_stages.contains(&"vae_encode"), "{final_stages:?}");
    assert!(!final_stages.contains(&"taesd_encode"), "{final_stages:?}");
    assert_eq!(
        (final_out.image.width, final_out.image.height),
        (image.width, image.height)
    );
    assert_ne!(
        live_out.image.pixels, final_out.image.pixels,
        "TAESD and the VAE are different decoders"
    );
}

#[test]
fn streamed_step_previews_are_taesd_images_at_model_resolution() {
    let image = picture();
    let mut engine = engine();
    let mut request = img2img_request(&image, Priority::Final);
    request.stream_previews = true;
    let plan = plan_context(
        image.width,
        image.height,
        None,
        engine.components.dir.native_size(),
        request.context,
        &ContextOptions::default(),
    )
    .expect("plan");
    let (latent_w, latent_h) = (plan.model_width / 8, plan.model_height / 8);

    let (out, steps) = run(&mut engine, &request, 9);
    assert!(!steps.is_empty(), "img2img ran no steps");
    let total = steps[0].total_steps;
    assert_eq!(
        steps.iter().map(|p| p.step).collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>()
    );
    for p in &steps {
        let preview = p
            .preview
            .as_ref()
            .unwrap_or_else(|| panic!("step {} has no preview", p.step));
        // TAESD upsamples 8x; the linear fallback would be at latent resolution.
        assert_eq!(
            (preview.width, preview.height),
            (latent_w * 8, latent_h * 8),
            "step {} preview",
            p.step
        );
        assert_eq!(
            preview.pixels.len(),
            (preview.width * preview.height * 4) as usize
        );
    }
    assert_eq!(
        (out.image.width, out.image.height),
        (image.width, image.height)
    );
}
