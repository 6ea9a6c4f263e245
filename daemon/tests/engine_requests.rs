//! Request-level behaviour of the engine on the tiny fixture models: the user's pixels outside
//! the selection come back bit-identical, offsets and sizes are right for every mode, seeds
//! reproduce, and bad requests and cancellation give the right error codes.

use std::path::Path;

use livefill::engine::{Engine, EngineOptions};
use livefill::generator::{CancelToken, GenerateError, GenerateOutput, ImageGenerator};
use livefill::onnx::runtime::{DeviceRequest, RuntimeOptions};
use livefill::pipelines::unet_buffers::MAX_CAPTURED_GRAPHS;
use livefill::request::{ONNXRUNTIME_STAGE, default_request};
use livefill_protocol::{Extend, GenerateRequest, Mask, Mode, RgbaImage};

fn engine(model: &str) -> Engine {
    let model = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(model);
    Engine::load(&EngineOptions {
        model,
        runtime: RuntimeOptions {
            device: DeviceRequest::Cpu,
            intra_threads: Some(1),
            ..Default::default()
        },
        max_image_side: 4096,
    })
    .expect("engine on the tiny fixture")
}

/// A 200×150 picture with some structure and a half-transparent corner.
fn picture() -> RgbaImage {
    let (w, h) = (200u32, 150u32);
    let mut pixels = Vec::with_capacity((w * h * 4) as usize);
    for y in 0..h {
        for x in 0..w {
            let alpha = if x < 20 && y < 20 { 128 } else { 255 };
            pixels.extend_from_slice(&[
                (x * 255 / w) as u8,
                (y * 255 / h) as u8,
                ((x ^ y) & 0xff) as u8,
                alpha,
            ]);
        }
    }
    RgbaImage {
        width: w,
        height: h,
        pixels,
    }
}

/// An elliptical selection around (120, 70).
fn selection(image: &RgbaImage) -> Mask {
    let mut pixels = Vec::with_capacity((image.width * image.height) as usize);
    for y in 0..image.height as i64 {
        for x in 0..image.width as i64 {
            let (dx, dy) = ((x - 120) as f64 / 30.0, (y - 70) as f64 / 22.0);
            pixels.push(if dx * dx + dy * dy <= 1.0 { 255 } else { 0 });
        }
    }
    Mask {
        width: image.width,
        height: image.height,
        pixels,
    }
}

fn run(
    engine: &mut Engine,
    request: &GenerateRequest,
    seed: u64,
) -> Result<GenerateOutput, GenerateError> {
    engine.generate(request, seed, &CancelToken::new(), &mut |_| {})
}

fn inpaint_request(image: &RgbaImage, mask: &Mask) -> GenerateRequest {
    let mut request = default_request(Mode::Inpaint);
    request.prompt = "a red door".into();
    request.image = Some(image.clone());
    request.mask = Some(mask.clone());
    request
}

/// Every pixel of the returned crop where the mask is 0 equals the original bytes.
fn assert_outside_mask_untouched(original: &RgbaImage, mask: &Mask, out: &GenerateOutput) {
    let (ox, oy) = (out.offset_x, out.offset_y);
    assert!(
        ox >= 0 && oy >= 0,
        "inpaint result must lie inside the image"
    );
    assert!(
        ox as u32 + out.image.width <= original.width
            && oy as u32 + out.image.height <= original.height
    );
    let mut changed_inside = 0;
    for y in 0..out.image.height {
        for x in 0..out.image.width {
            let (ix, iy) = (x + ox as u32, y + oy as u32);
            let src = ((iy * original.width + ix) * 4) as usize;
            let dst = ((y * out.image.width + x) * 4) as usize;
            let m = mask.pixels[(iy * original.width + ix) as usize];
            let (a, b) = (
                &original.pixels[src..src + 4],
                &out.image.pixels[dst..dst + 4],
            );
            if m == 0 {
                assert_eq!(a, b, "pixel ({ix}, {iy}) outside the mask changed");
            } else if a != b {
                changed_inside += 1;
            }
        }
    }
    assert!(changed_inside > 0, "nothing inside the selection changed");
}

#[test]
fn inpaint_keeps_every_pixel_outside_the_mask_with_4_and_9_channel_unets() {
    let image = picture();
    let mask = selection(&image);
    for model in ["tiny-sd", "tiny-sd-inpaint"] {
        let mut engine = engine(model);
        for strength in [1.0, 0.6] {
            let mut request = inpaint_request(&image, &mask);
            request.strength = strength;
            let out = run(&mut engine, &request, 7).unwrap();
            assert_outside_mask_untouched(&image, &mask, &out);
        }
    }
}

#[test]
fn full_context_and_hard_edges_also_keep_outside_pixels() {
    let image = picture();
    let mask = selection(&image);
    let mut engine = engine("tiny-sd");
    let mut request = inpaint_request(&image, &mask);
    request.context = livefill_protocol::Context::Full;
    request.feather = 0;
    request.color_match = false;
    let out = run(&mut engine, &request, 3).unwrap();
    assert_outside_mask_untouched(&image, &mask, &out);
}

#[test]
fn seeds_reproduce_and_differ() {
    let image = picture();
    let mask = selection(&image);
    let mut engine = engine("tiny-sd");
    let request = inpaint_request(&image, &mask);
    let a = run(&mut engine, &request, 11).unwrap();
    let b = run(&mut engine, &request, 11).unwrap();
    let c = run(&mut engine, &request, 12).unwrap();
    assert_eq!(a.image, b.image);
    assert_eq!(a.seed, 11);
    assert_ne!(a.image, c.image);
}

#[test]
fn outpaint_returns_the_grown_canvas_at_a_negative_offset() {
    let image = picture();
    let mut engine = engine("tiny-sd");
    let mut request = default_request(Mode::Outpaint);
    request.image = Some(image.clone());
    request.extend = Extend {
        left: 16,
        top: 0,
        right: 40,
        bottom: 24,
    };
    let out = run(&mut engine, &request, 5).unwrap();
    assert_eq!((out.offset_x, out.offset_y), (-16, 0));
    assert_eq!((out.image.width, out.image.height), (200 + 56, 150 + 24));
    // The border is filled with opaque pixels.
    let corner = ((out.image.height - 1) * out.image.width + out.image.width - 1) as usize * 4;
    assert_eq!(out.image.pixels[corner + 3], 255);
}

#[test]
fn txt2img_and_img2img_sizes() {
    let mut engine = engine("tiny-sd");
    let mut request = default_request(Mode::Txt2Img);
    request.width = 100;
    request.height = 70;
    let out = run(&mut engine, &request, 1).unwrap();
    assert_eq!(
        (
            out.image.width,
            out.image.height,
            out.offset_x,
            out.offset_y
        ),
        (100, 70, 0, 0)
    );

    let image = picture();
    let mut request = default_request(Mode::Img2Img);
    request.image = Some(image.clone());
    request.strength = 0.5;
    let out = run(&mut engine, &request, 1).unwrap();
    assert_eq!(
        (out.image.width, out.image.height),
        (image.width, image.height)
    );
    assert_ne!(out.image.pixels, image.pixels);
    // img2img keeps the layer's alpha.
    assert_eq!(out.image.pixels[3], 128);
}

#[test]
fn bad_requests_get_codes() {
    use livefill_protocol::ErrorCode;
    let image = picture();
    let mask = selection(&image);
    let mut engine = engine("tiny-sd");
    let mut nan = inpaint_request(&image, &mask);
    nan.guidance = f32::NAN;
    assert_eq!(
        run(&mut engine, &nan, 1).unwrap_err().code(),
        ErrorCode::InvalidRequest
    );
    let mut wrong_mask = inpaint_request(&image, &mask);
    wrong_mask.mask = Some(Mask {
        width: 10,
        height: 10,
        pixels: vec![255; 100],
    });
    assert_eq!(
        run(&mut engine, &wrong_mask, 1).unwrap_err().code(),
        ErrorCode::MaskSizeMismatch
    );
    let mut short = inpaint_request(&image, &mask);
    short.image.as_mut().unwrap().pixels.truncate(10);
    assert_eq!(
        run(&mut engine, &short, 1).unwrap_err().code(),
        ErrorCode::InvalidRequest
    );
    let mut empty = inpaint_request(&image, &mask);
    empty.mask.as_mut().unwrap().pixels.fill(0);
    assert_eq!(
        run(&mut engine, &empty, 1).unwrap_err().code(),
        ErrorCode::InvalidRequest
    );
    let mut steps = inpaint_request(&image, &mask);
    steps.steps = 0;
    assert_eq!(
        run(&mut engine, &steps, 1).unwrap_err().code(),
        ErrorCode::InvalidRequest
    );
}

#[test]
fn a_cancelled_job_stops_with_cancelled() {
    let image = picture();
    let mask = selection(&image);
    let mut engine = engine("tiny-sd");
    let cancel = CancelToken::new();
    let mut steps_seen = 0;
    let result = engine.generate(&inpaint_request(&image, &mask), 1, &cancel, &mut |p| {
        steps_seen = p.step;
        cancel.cancel();
    });
    assert!(matches!(result, Err(GenerateError::Cancelled)));
    assert_eq!(steps_seen, 1, "stops at the next step boundary");
}

#[test]
fn live_preview_reuses_the_latents_of_an_unchanged_image() {
    let image = picture();
    let mut engine = engine("tiny-sd");
    let mut request = default_request(Mode::Img2Img);
    request.image = Some(image.clone());
    request.priority = livefill_protocol::Priority::LivePreview;
    // (tiny-sd has a TAESD encoder: live frames encode with it)
    let encoded = |out: &GenerateOutput| {
        out.timings
            .iter()
            .any(|t| t.stage == "vae_encode" || t.stage == "taesd_encode")
    };
    let first = run(&mut engine, &request, 1).unwrap();
    let second = run(&mut engine, &request, 2).unwrap();
    assert!(encoded(&first), "the first live frame encodes the image");
    assert!(!encoded(&second), "an unchanged image reuses its latents");
    request.image.as_mut().unwrap().pixels[4000] ^= 0xff;
    let third = run(&mut engine, &request, 3).unwrap();
    assert!(encoded(&third), "a changed image is encoded again");
}

#[test]
fn txt2img_on_an_inpainting_unet_is_sized_and_reproducible() {
    let mut engine = engine("tiny-sd-inpaint");
    let mut request = default_request(Mode::Txt2Img);
    request.prompt = "a fox".into();
    request.width = 96;
    request.height = 64;
    let a = run(&mut engine, &request, 9).unwrap();
    let b = run(&mut engine, &request, 9).unwrap();
    assert_eq!((a.image.width, a.image.height), (96, 64));
    assert_eq!(a.image, b.image);
    assert_ne!(a.image, run(&mut engine, &request, 10).unwrap().image);
}

#[test]
fn onnxruntime_time_is_reported_as_a_part_of_the_model_stages() {
    let image = picture();
    let mut engine = engine("tiny-sd");
    // Twice: the second job must report only its own time, not the first job's too.
    for _ in 0..2 {
        let out = run(&mut engine, &inpaint_request(&image, &selection(&image)), 5).unwrap();
        let ort = out
            .timings
            .last()
            .filter(|t| t.stage == ONNXRUNTIME_STAGE)
            .expect("an onnxruntime entry, last")
            .millis;
        let models: f32 = out
            .timings
            .iter()
            .filter(|t| {
                ["text_encode", "vae_encode", "unet", "vae_decode"].contains(&t.stage.as_str())
            })
            .map(|t| t.millis)
            .sum();
        assert!(ort > 0.0, "ONNX Runtime ran");
        assert!(
            ort <= models,
            "inside Run ({ort} ms) ≤ the model stages ({models} ms)"
        );
    }
}

/// The UNet's input/output buffers are kept per shape and reused by later jobs: a job must get
/// the same pixels whatever ran before it (no prompt, latents or size left over), and only a few
/// shapes are kept.
#[test]
fn unet_buffers_reused_across_jobs_leave_nothing_behind() {
    let mut engine = engine("tiny-sd");
    let txt2img = |prompt: &str, side: u32| {
        let mut request = default_request(Mode::Txt2Img);
        request.prompt = prompt.into();
        request.width = side;
        request.height = side;
        request
    };
    let first = run(&mut engine, &txt2img("a red fox", 64), 3).unwrap();
    let other_prompt = run(&mut engine, &txt2img("a blue bird", 64), 3).unwrap();
    run(&mut engine, &txt2img("a red fox", 96), 3).unwrap();
    let again = run(&mut engine, &txt2img("a red fox", 64), 3).unwrap();
    assert_ne!(
        first.image, other_prompt.image,
        "the prompt reaches the UNet"
    );
    assert_eq!(first.image, again.image, "same request, same pixels");
    for side in [32, 40, 48, 56, 72, 80] {
        run(&mut engine, &txt2img("a red fox", side), 3).unwrap();
    }
    let (captured, kept) = engine.components.unet_buffer_counts();
    assert_eq!(captured, 0, "no CUDA graphs on CPU");
    assert!((1..=4).contains(&kept), "{kept} shapes kept");
    assert_eq!(
        run(&mut engine, &txt2img("a red fox", 64), 3)
            .unwrap()
            .image,
        first.image,
        "buffers evicted and made again give the same pixels"
    );
}

/// The CUDA-graph bookkeeping, run on the CPU: with capture marked as enabled (ONNX Runtime's CPU
/// provider ignores the `gpu_graph_id` run option), the first live shapes get captured buffers
/// for good, at most `MAX_CAPTURED_GRAPHS`, other shapes share the small uncaptured cache, and
/// every job still gets the pixels it gets without capture.
#[test]
fn live_shapes_get_captured_buffers_up_to_the_limit() {
    let mut plain = engine("tiny-sd");
    let mut capturing = engine("tiny-sd");
    capturing.components.unet.graph_capture = true;
    let live = |side: u32| {
        let mut request = default_request(Mode::Img2Img);
        request.prompt = "a quick sketch".into();
        request.priority = livefill_protocol::Priority::LivePreview;
        request.context = livefill_protocol::Context::Full;
        let mut image = picture();
        image.width = side;
        image.height = side;
        image.pixels = (0..side * side * 4).map(|i| (i * 7 % 251) as u8).collect();
        request.image = Some(image);
        request
    };
    let final_at = |side: u32| {
        let mut request = live(side);
        request.priority = livefill_protocol::Priority::Final;
        request
    };
    // A final job first: its shape is not captured...
    let first = run(&mut capturing, &final_at(64), 1).unwrap();
    assert_eq!(capturing.components.unet_buffer_counts(), (0, 1));
    assert_eq!(
        first.image,
        run(&mut plain, &final_at(64), 1).unwrap().image
    );
    // ...until a live job of that shape comes; then more live shapes, past the limit.
    // (Full context runs the model at the image size rounded up to 64: one shape per side here.)
    for (n, side) in [64, 128, 192, 256, 320, 384].into_iter().enumerate() {
        let got = run(&mut capturing, &live(side), 2).unwrap();
        assert_eq!(
            got.image,
            run(&mut plain, &live(side), 2).unwrap().image,
            "live {side}"
        );
        let (captured, _) = capturing.components.unet_buffer_counts();
        assert_eq!(
            captured,
            (n + 1).min(MAX_CAPTURED_GRAPHS as usize),
            "after live {side}"
        );
    }
    // Captured buffers are never evicted, whatever else runs.
    for side in [448, 512, 576, 640, 704] {
        run(&mut capturing, &final_at(side), 3).unwrap();
    }
    let (captured, uncaptured) = capturing.components.unet_buffer_counts();
    assert_eq!(captured, MAX_CAPTURED_GRAPHS as usize);
    assert!(uncaptured <= 4, "{uncaptured} uncaptured shapes kept");
    // A captured shape serves final jobs too, with the same pixels.
    assert_eq!(
        run(&mut capturing, &final_at(128), 4).unwrap().image,
        run(&mut plain, &final_at(128), 4).unwrap().image
    );
}

/// tiny-sd as an ordinary (non-LCM) model: the same graphs, symlinked, with Stable Diffusion's
/// PNDMScheduler config.
fn ordinary_model() -> std::path::PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tiny-sd");
    let dir = std::env::temp_dir().join(format!("livefill-ordinary-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("scheduler")).unwrap();
    for entry in std::fs::read_dir(&source).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != "scheduler" {
            std::os::unix::fs::symlink(entry.path(), dir.join(entry.file_name())).unwrap();
        }
    }
    std::fs::write(
        dir.join("scheduler/scheduler_config.json"),
        r#"{"_class_name": "PNDMScheduler", "beta_start": 0.00085, "beta_end": 0.012,
            "beta_schedule": "scaled_linear", "num_train_timesteps": 1000, "steps_offset": 1,
            "skip_prk_steps": true, "set_alpha_to_one": false, "clip_sample": false}"#,
    )
    .unwrap();
    dir
}

#[cfg(unix)]
#[test]
fn an_ordinary_model_defaults_to_dpmpp_2m_karras_and_runs_every_sampler() {
    use livefill::scheduler::{ModelDefaults, Sampler};
    let dir = ordinary_model();
    let mut engine = Engine::load(&EngineOptions {
        model: dir.clone(),
        runtime: RuntimeOptions {
            device: DeviceRequest::Cpu,
            intra_threads: Some(1),
            ..Default::default()
        },
        max_image_side: 4096,
    })
    .expect("engine on the ordinary copy");
    let defaults = engine.info().sampling;
    assert_eq!(defaults, ModelDefaults::QUALITY);
    let mut request = default_request(Mode::Txt2Img);
    request.prompt = "a lighthouse".into();
    (request.steps, request.guidance) = defaults.steps_and_guidance(None);
    let mut total = 0;
    let first = engine
        .generate(&request, 5, &CancelToken::new(), &mut |p| {
            total = p.total_steps
        })
        .expect("default sampler");
    assert_eq!(total, 20, "DPM++ 2M's 20 steps");
    let mut images = vec![first.image.pixels];
    for sampler in Sampler::ALL {
        let mut r = request.clone();
        r.sampler = Some(sampler);
        (r.steps, r.guidance) = defaults.steps_and_guidance(Some(sampler));
        let a = run(&mut engine, &r, 5).unwrap_or_else(|e| panic!("{sampler}: {e}"));
        let b = run(&mut engine, &r, 5).unwrap();
        assert_eq!(
            a.image.pixels, b.image.pixels,
            "{sampler}: same seed, same image"
        );
        images.push(a.image.pixels);
    }
    // dpmpp_2m named explicitly takes the config's spacing (leading, not Karras): another image.
    for (i, a) in images.iter().enumerate() {
        for b in &images[i + 1..] {
            assert_ne!(a, b, "two sampler runs gave the same image");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
