//! Numerical parity with diffusers.
//!
//! `tests/reference/make_fixtures.py` ran diffusers' own pipelines (CPU, fp32) on tiny
//! random-weight models and recorded, for fixed noise, the decoded images: with LCMScheduler
//! (the fixtures' own scheduler), and with every other sampler made by `from_config` of the
//! model's scheduler config, as diffusers users switch samplers (`sampler`, `spacing`, `eta` in
//! `cases.json`). Here livefill runs the same ONNX graphs with the same noise and must match
//! them: PSNR ≥ 40 dB on 8-bit pixels, and the same timesteps and token ids.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use livefill::generator::CancelToken;
use livefill::noise::FileNoise;
use livefill::npy;
use livefill::onnx::model_dir::ModelDir;
use livefill::onnx::runtime::Runtime;
use livefill::pipelines::{self, Components, DenoiseRun, ModelImage, SamplingParams, Timings};
use livefill::scheduler::{self, Sampler, SamplerChoice, Spacing};
use reference_support::{fixtures, psnr, runtime, to_u8_hwc};
use serde::Deserialize;

mod reference_support;

#[derive(Debug, Deserialize)]
struct Case {
    name: String,
    model: String,
    mode: String,
    prompt: String,
    negative_prompt: Option<String>,
    steps: usize,
    guidance: f32,
    strength: Option<f32>,
    width: usize,
    height: usize,
    image: Option<String>,
    mask: Option<String>,
    noise: String,
    /// diffusers' image as float32 `[H, W, 3]` in [0, 1]; the sampler cases keep only
    /// `expected_png` (its 8-bit rounding), so that the committed files stay small.
    expected: Option<String>,
    expected_png: String,
    timesteps: Vec<f64>,
    token_ids: Option<Vec<i64>>,
    /// livefill's sampler name; absent = `lcm` (the fixtures' LCMScheduler).
    #[serde(default)]
    sampler: Option<String>,
    #[serde(default)]
    spacing: Option<String>,
    #[serde(default)]
    eta: Option<f32>,
}

impl Case {
    fn choice(&self) -> SamplerChoice {
        let sampler = self.sampler.as_deref().unwrap_or("lcm");
        SamplerChoice {
            sampler: Sampler::from_name(sampler).expect("sampler name"),
            spacing: self
                .spacing
                .as_deref()
                .map(|s| Spacing::from_name(s).expect("spacing name")),
            eta: self.eta,
        }
    }
}

fn load_png_rgb(path: &Path) -> ModelImage {
    let img = image::open(path).expect("input png").to_rgb8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut data = vec![0.0f32; 3 * w * h];
    for (i, p) in img.pixels().enumerate() {
        for c in 0..3 {
            data[c * w * h + i] = p.0[c] as f32 / 255.0 * 2.0 - 1.0;
        }
    }
    ModelImage {
        height: h,
        width: w,
        data,
    }
}

fn load_mask(path: &Path) -> Vec<u8> {
    image::open(path).expect("mask png").to_luma8().into_raw()
}

/// How a run departs from its case, for the negative controls.
#[derive(Clone, Copy, PartialEq)]
enum Spoil {
    None,
    /// The noise entries reversed.
    Noise,
    /// Another spacing than the case's (the timestep check is skipped).
    Spacing(Spacing),
}

fn run_case(components: &mut Components, case: &Case, dir: &Path, spoil: Spoil) -> f64 {
    let perturb_noise = spoil == Spoil::Noise;
    let mut noise = npy::read_f32(&dir.join(&case.noise)).expect("noise npy");
    if perturb_noise {
        noise.data.reverse();
    }
    let mut noise = FileNoise::new(noise);
    let negative = case.negative_prompt.clone().unwrap_or_default();
    let conditioning = pipelines::condition(
        components,
        &case.prompt,
        &negative,
        case.guidance,
        &mut pipelines::encode_uncached,
    )
    .expect("conditioning");
    let mut choice = case.choice();
    if let Spoil::Spacing(spacing) = spoil {
        choice.spacing = Some(spacing);
    }
    let params = SamplingParams {
        steps: case.steps,
        guidance: case.guidance,
        strength: case.strength.unwrap_or(1.0),
        sampler: choice,
        live: false,
    };
    let planned = scheduler::plan(
        &components.dir.scheduler_config,
        &choice,
        params.steps,
        params.strength,
    )
    .unwrap();
    if !matches!(spoil, Spoil::Spacing(_)) {
        let ours = planned.timesteps();
        assert_eq!(ours.len(), case.timesteps.len(), "{}: timesteps", case.name);
        for (a, b) in ours.iter().zip(&case.timesteps) {
            assert!(
                (a - b).abs() <= 1e-3,
                "{}: timesteps {ours:?} vs diffusers {:?}",
                case.name,
                case.timesteps
            );
        }
    }
    if let Some(ids) = &case.token_ids {
        let ours = components.tokenizer.encode(&case.prompt).unwrap();
        assert_eq!(&ours, ids, "{}: token ids", case.name);
    }
    let cancel = CancelToken::new();
    let mut timings = Timings::default();
    let run = DenoiseRun {
        components,
        conditioning: &conditioning,
        params,
        noise: &mut noise,
        cancel: &cancel,
        timings: &mut timings,
        on_step: Box::new(|_, _, _, _| {}),
    };
    let output = match case.mode.as_str() {
        "txt2img" => pipelines::txt2img::txt2img(run, case.width, case.height),
        "img2img" => {
            let image = load_png_rgb(&dir.join(case.image.as_ref().unwrap()));
            pipelines::img2img::img2img(run, &image, None).map(|(image, _)| image)
        }
        "inpaint" => {
            let image = load_png_rgb(&dir.join(case.image.as_ref().unwrap()));
            let mask = load_mask(&dir.join(case.mask.as_ref().unwrap()));
            pipelines::inpaint::inpaint(run, &image, &mask)
        }
        other => panic!("unknown mode {other}"),
    }
    .unwrap_or_else(|e| panic!("{}: {e}", case.name));
    // `--noise` contract: the initial noise, then every draw of the sampler, nothing left over.
    assert_eq!(noise.remaining(), 0, "{}: noise entries left", case.name);
    let expected = match &case.expected {
        Some(npy_path) => {
            let expected = npy::read_f32(&dir.join(npy_path)).expect("expected npy");
            assert_eq!(
                expected.shape,
                vec![case.height, case.width, 3],
                "{}: expected shape",
                case.name
            );
            expected.data
        }
        None => {
            let png = image::open(dir.join(&case.expected_png))
                .expect("expected png")
                .to_rgb8();
            assert_eq!(
                (png.width() as usize, png.height() as usize),
                (case.width, case.height),
                "{}: expected size",
                case.name
            );
            png.into_raw().iter().map(|&v| v as f32 / 255.0).collect()
        }
    };
    psnr(&to_u8_hwc(&output), &expected)
}

/// The reference folder and its cases.
fn reference_cases() -> (PathBuf, Vec<Case>) {
    let dir = fixtures().join("reference");
    let cases =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).expect("cases.json"))
            .unwrap();
    (dir, cases)
}

fn load_model(runtime: &Runtime, name: &str) -> Components {
    let model = ModelDir::open(&fixtures().join(name)).expect("model dir");
    Components::load(runtime, model).expect("load model")
}

#[test]
fn livefill_matches_diffusers_on_every_reference_case() {
    let (dir, cases) = reference_cases();
    assert!(cases.len() >= 8, "expected the full reference set");
    let runtime = runtime();
    let mut models: HashMap<String, Components> = HashMap::new();
    let mut failures = Vec::new();
    for case in &cases {
        let components = models
            .entry(case.model.clone())
            .or_insert_with(|| load_model(&runtime, &case.model));
        let score = run_case(components, case, &dir, Spoil::None);
        let sampler = case.sampler.as_deref().unwrap_or("lcm");
        println!(
            "{:<36} {:>8} {:>9} PSNR {:6.2} dB",
            case.name, case.mode, sampler, score
        );
        if score < 40.0 {
            failures.push(format!("{} ({score:.2} dB)", case.name));
        }
    }
    assert!(failures.is_empty(), "below 40 dB: {failures:?}");
}

/// CFG as two batch-1 UNet passes (a UNet exported with batch fixed at 1) matches diffusers as
/// the batch-2 pass does.
#[test]
fn cfg_as_two_batch1_passes_matches_diffusers() {
    let (dir, cases) = reference_cases();
    let case = cases
        .iter()
        .find(|c| c.guidance > 1.0 && c.model == "tiny-sd")
        .expect("a CFG case");
    let mut components = load_model(&runtime(), &case.model);
    components.set_unet_batch_fixed(true);
    let score = run_case(&mut components, case, &dir, Spoil::None);
    assert!(
        score >= 40.0,
        "{}: {score:.2} dB with two passes",
        case.name
    );
}

/// Negative control: the comparison must be able to fail. With the same graphs but other noise,
/// the output differs far beyond the 40 dB bar.
#[test]
fn other_noise_fails_the_parity_bar() {
    let (dir, cases) = reference_cases();
    let case = cases
        .iter()
        .find(|c| c.mode == "txt2img")
        .expect("a txt2img case");
    let mut components = load_model(&runtime(), &case.model);
    let score = run_case(&mut components, case, &dir, Spoil::Noise);
    assert!(score < 30.0, "perturbed noise still scored {score:.2} dB");
}

/// Negative control for the samplers: the same case run with another spacing than diffusers
/// used (Euler: linspace instead of the config's leading; DPM++ 2M: leading instead of Karras)
/// must fall below the 40 dB bar (these tiny random models mostly show their VAE, so a wrong
/// plan costs ~20 dB, where a right one sits far above the bar), so the sampler cases can fail.
#[test]
fn a_wrong_spacing_fails_the_parity_bar() {
    let (dir, cases) = reference_cases();
    let runtime = runtime();
    let mut components = load_model(&runtime, "tiny-sd");
    for (name, wrong) in [
        ("euler_txt2img_n5", Spacing::Linspace),
        ("dpmpp_2m_txt2img_n5", Spacing::Leading),
    ] {
        let case = cases
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("case {name}"));
        let right = run_case(&mut components, case, &dir, Spoil::None);
        let score = run_case(&mut components, case, &dir, Spoil::Spacing(wrong));
        println!("{name}: {right:.2} dB as diffusers ran it, {score:.2} dB with {wrong}");
        assert!(right >= 40.0, "{name}: {right:.2} dB");
        assert!(
            score < 40.0,
            "{name} with {wrong} still scored {score:.2} dB"
        );
    }
}
