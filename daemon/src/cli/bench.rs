//! `livefill bench`: time the engine in process (and, optionally, a running daemon end to end).
//!
//! Exists to measure what livefill costs per request: each mode runs `--warmup` times, then
//! `--iterations` times, and the per-stage times the engine records (`GenerateOutput.timings`)
//! are summarised as p50/p95 next to the end-to-end wall time of `Engine::run`. "inside ORT Run"
//! is the engine's `onnxruntime` timing: wall time inside ONNX Runtime's `Run` calls alone, so
//! "livefill overhead" (end to end minus that) is everything livefill itself does — tensor
//! packing and f16/f32 conversion around each call, pre/post-processing of user pixels, the
//! scheduler, noise, compositing. "model stages (sum)" (text encode, VAE encode, UNet, VAE decode,
//! each with its packing) is shown beside it. With `--socket` the same
//! requests also go to a running `livefill serve`, timed from the request frame written to the
//! result frame read. `tests/bench/run_bench.sh` compares the JSON (`--json`) with diffusers and
//! optimum's ONNX Runtime pipelines run by `tests/bench/bench_python.py` on the same work.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use livefill_protocol::{Context, GenerateRequest, Mask, Mode, Priority, RgbaImage};
use serde_json::{Value, json};

use super::generate::{EngineArgs, read_rgba};
use super::sampler_args::{SamplerArgs, announced_defaults};
use crate::cli::output::outln;
use crate::client::DaemonClient;
use crate::engine::Engine;
use crate::generator::{CancelToken, ImageGenerator};
use crate::noise::SeededNoise;
use crate::pipelines::Latents;
use crate::request::{ONNXRUNTIME_STAGE, default_request};
use crate::scheduler::ModelDefaults;

/// Longest wait for one reply of the daemon (a whole request at the largest size on a CPU).
const SOCKET_TIMEOUT: Duration = Duration::from_secs(600);

/// What a benchmark run does per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchMode {
    /// Text to image at `--size`.
    Txt2img,
    /// Image to image, `--strength` (default 0.6: 2 of 4 steps run).
    Img2img,
    /// Inpaint a centred square (half the side) at strength 1: every step runs, full VAE.
    Inpaint,
    /// Live preview: img2img at `--live-strength` with live priority; the input changes every
    /// iteration (as while painting), so the VAE-latent cache never hits.
    Live,
}

impl BenchMode {
    fn name(self) -> &'static str {
        match self {
            BenchMode::Txt2img => "txt2img",
            BenchMode::Img2img => "img2img",
            BenchMode::Inpaint => "inpaint",
            BenchMode::Live => "live",
        }
    }
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Modes to time, comma separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "txt2img,img2img,inpaint,live"
    )]
    pub modes: Vec<BenchMode>,
    /// Square image / model side in pixels, a multiple of 64 (default: the model's native size).
    #[arg(long)]
    pub size: Option<u32>,
    /// Input image for img2img/inpaint/live instead of the synthetic gradient (the model then
    /// runs at its size rounded up to 64).
    #[arg(long)]
    pub image: Option<PathBuf>,
    #[command(flatten)]
    pub sampling: SamplerArgs,
    /// img2img strength.
    #[arg(long, default_value_t = 0.6)]
    pub strength: f32,
    /// Live-preview strength (0.5 with 4 steps = 2 UNet passes).
    #[arg(long, default_value_t = 0.5)]
    pub live_strength: f32,
    #[arg(long, default_value = "a photograph of a red door in a stone wall")]
    pub prompt: String,
    /// Use a new prompt every iteration, so the text encoder runs each time (as diffusers does)
    /// instead of hitting livefill's prompt-embedding cache.
    #[arg(long)]
    pub fresh_prompts: bool,
    /// Put the work in an N×N layer with automatic context, as the plugins send it: inpaint a
    /// centred `--size`² selection, img2img / live the whole layer (scaled to the model and
    /// back). Times the pixel work on large layers (crop, resize, feather, colour match,
    /// composite) and, with `--socket`, their transfer.
    #[arg(long)]
    pub layer: Option<u32>,
    /// Timed runs per mode.
    #[arg(long, default_value_t = 10)]
    pub iterations: usize,
    /// Untimed runs per mode before the timed ones.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Also time the same requests through a running `livefill serve` at this socket.
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// Skip the in-process runs (with `--socket`: time only the daemon).
    #[arg(long)]
    pub socket_only: bool,
    /// Write every sample and summary as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Stages that are ONNX Runtime calls (plus their tensor packing).
const ORT_STAGES: [&str; 6] = [
    "text_encode",
    "vae_encode",
    "taesd_encode",
    "unet",
    "vae_decode",
    "taesd_decode",
];
/// Stages in report order.
const STAGES: [&str; 6] = [
    "text_encode",
    "preprocess",
    "vae_encode",
    "unet",
    "vae_decode",
    "postprocess",
];

/// p50/p95 (linear interpolation between closest ranks, as numpy's default), mean, min, max.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub p50: f64,
    pub p95: f64,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

/// Percentile `q` in [0, 100] of `sorted` (ascending), numpy's "linear" method.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let rank = q / 100.0 * (n - 1) as f64;
            let lo = rank.floor() as usize;
            let hi = rank.ceil() as usize;
            sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
        }
    }
}

pub fn summarize(samples: &[f64]) -> Summary {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    Summary {
        p50: percentile(&sorted, 50.0),
        p95: percentile(&sorted, 95.0),
        mean: sorted.iter().sum::<f64>() / sorted.len().max(1) as f64,
        min: sorted.first().copied().unwrap_or(f64::NAN),
        max: sorted.last().copied().unwrap_or(f64::NAN),
        n: sorted.len(),
    }
}

fn summary_json(samples: &[f64]) -> Value {
    let s = summarize(samples);
    json!({
        "p50": s.p50, "p95": s.p95, "mean": s.mean, "min": s.min, "max": s.max, "n": s.n,
        "samples": samples,
    })
}

/// The synthetic input: a colour gradient with a sine pattern (the same formula as
/// `tests/bench/bench_python.py`), opaque.
pub fn synthetic_image(width: u32, height: u32) -> RgbaImage {
    let mut pixels = Vec::with_capacity(width as usize * height as usize * 4);
    for y in 0..height {
        for x in 0..width {
            let r = x as f32 * 255.0 / (width.max(2) - 1) as f32;
            let g = y as f32 * 255.0 / (height.max(2) - 1) as f32;
            let b = 127.5 + 127.5 * ((x + y) as f32 / 9.0).sin();
            pixels.extend_from_slice(&[r.round() as u8, g.round() as u8, b.round() as u8, 255]);
        }
    }
    RgbaImage {
        width,
        height,
        pixels,
    }
}

/// White (regenerate) centred rectangle covering half of each side.
pub fn centre_mask(width: u32, height: u32) -> Mask {
    centred_rect(width, height, width / 2, height / 2)
}

/// White (regenerate) centred `w`×`h` rectangle in a `width`×`height` mask.
fn centred_rect(width: u32, height: u32, w: u32, h: u32) -> Mask {
    let (x0, y0) = ((width - w) / 2, (height - h) / 2);
    let mut pixels = vec![0u8; width as usize * height as usize];
    for y in y0..y0 + h {
        for x in x0..x0 + w {
            pixels[(y * width + x) as usize] = 255;
        }
    }
    Mask {
        width,
        height,
        pixels,
    }
}

/// The request one iteration of `mode` sends.
fn build_request(
    args: &BenchArgs,
    defaults: &ModelDefaults,
    mode: BenchMode,
    base: &RgbaImage,
    size: u32,
    iteration: usize,
) -> GenerateRequest {
    let wire_mode = match mode {
        BenchMode::Txt2img => Mode::Txt2Img,
        BenchMode::Img2img | BenchMode::Live => Mode::Img2Img,
        BenchMode::Inpaint => Mode::Inpaint,
    };
    let mut request = default_request(wire_mode);
    request.request_id = iteration as u64 + 1;
    request.prompt = if args.fresh_prompts {
        // Unique per mode too: a prompt seen by an earlier mode would hit the cache.
        format!("{} #{}-{iteration}", args.prompt, mode.name())
    } else {
        args.prompt.clone()
    };
    args.sampling.apply(&mut request, defaults);
    request.seed = Some(iteration as u64);
    // Full context: the model runs at the image size (rounded up to 64), nothing is resampled;
    // in a --layer, automatic context as the plugins ask.
    request.context = if args.layer.is_some() {
        Context::Auto
    } else {
        Context::Full
    };
    match mode {
        BenchMode::Txt2img => {
            request.width = size;
            request.height = size;
        }
        BenchMode::Img2img => {
            request.strength = args.strength;
            request.image = Some(base.clone());
        }
        BenchMode::Inpaint => {
            request.strength = 1.0;
            request.image = Some(base.clone());
            request.mask = Some(match args.layer {
                Some(_) => centred_rect(base.width, base.height, size, size),
                None => centre_mask(base.width, base.height),
            });
        }
        BenchMode::Live => {
            request.strength = args.live_strength;
            request.priority = Priority::LivePreview;
            let mut image = base.clone();
            // A different stroke every iteration: the live latent cache must miss.
            let n = image.pixels.len() / 4;
            for k in 0..16 {
                let p = (iteration * 7919 + k * 104_729) % n;
                image.pixels[p * 4] = image.pixels[p * 4].wrapping_add(97);
            }
            request.image = Some(image);
        }
    }
    request
}

/// Samples of one mode, in milliseconds.
#[derive(Default)]
struct ModeSamples {
    e2e: Vec<f64>,
    stages: Vec<(String, Vec<f64>)>,
    unet_per_step: Vec<f64>,
    /// Inside ONNX Runtime's `Run` (the engine's `onnxruntime` timing).
    ort: Vec<f64>,
    overhead: Vec<f64>,
    overhead_percent: Vec<f64>,
    model_stages: Vec<f64>,
    steps_run: usize,
}

impl ModeSamples {
    fn stage(&mut self, name: &str) -> &mut Vec<f64> {
        if let Some(i) = self.stages.iter().position(|(s, _)| s == name) {
            return &mut self.stages[i].1;
        }
        self.stages.push((name.to_string(), Vec::new()));
        &mut self.stages.last_mut().expect("pushed").1
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn run_mode_in_process(
    engine: &mut Engine,
    args: &BenchArgs,
    mode: BenchMode,
    base: &RgbaImage,
    size: u32,
) -> anyhow::Result<ModeSamples> {
    let mut samples = ModeSamples::default();
    let cancel = CancelToken::new();
    let defaults = engine.info().sampling;
    for i in 0..args.warmup + args.iterations {
        let request = build_request(args, &defaults, mode, base, size, i);
        let mut noise = SeededNoise::new(i as u64);
        let mut steps = 0usize;
        let start = Instant::now();
        let output = engine
            .run(&request, i as u64, &mut noise, &cancel, &mut |p| {
                steps = p.total_steps as usize;
            })
            .with_context(|| format!("{} iteration {i}", mode.name()))?;
        let e2e = ms(start.elapsed());
        if i < args.warmup {
            continue;
        }
        samples.steps_run = steps;
        samples.e2e.push(e2e);
        let mut model_stages = 0.0;
        let mut ort_run = None;
        for t in &output.timings {
            let v = t.millis as f64;
            if t.stage == ONNXRUNTIME_STAGE {
                ort_run = Some(v);
                continue;
            }
            samples.stage(&t.stage).push(v);
            if ORT_STAGES.contains(&t.stage.as_str()) {
                model_stages += v;
            }
            if t.stage == "unet" && steps > 0 {
                samples.unet_per_step.push(v / steps as f64);
            }
        }
        let ort_run = ort_run.context("the engine reported no onnxruntime time")?;
        samples.model_stages.push(model_stages);
        samples.ort.push(ort_run);
        samples.overhead.push(e2e - ort_run);
        samples.overhead_percent.push(100.0 * (e2e - ort_run) / e2e);
    }
    Ok(samples)
}

/// Text encoder on a prompt never seen before (tokenizer + ONNX Runtime), measured directly.
fn time_text_encode_first(engine: &mut Engine, args: &BenchArgs) -> anyhow::Result<Vec<f64>> {
    let mut out = Vec::new();
    for i in 0..args.warmup + args.iterations {
        let prompt = format!("{} (uncached {i})", args.prompt);
        let start = Instant::now();
        engine.components.encode_text(&prompt)?;
        if i >= args.warmup {
            out.push(ms(start.elapsed()));
        }
    }
    Ok(out)
}

/// TAESD decode of latents at the bench size, when the model has `taesd_decoder/`.
fn time_taesd(engine: &mut Engine, args: &BenchArgs, size: u32) -> anyhow::Result<Vec<f64>> {
    let scale = engine.components.vae_scale();
    let channels = engine.components.latent_channels();
    let side = size as usize / scale;
    let mut latents = Latents::zeros(channels, side, side);
    let mut noise = SeededNoise::new(7);
    latents.data = crate::noise::NoiseSource::next(&mut noise, latents.data.len())?;
    let mut out = Vec::new();
    for i in 0..args.warmup + args.iterations {
        let start = Instant::now();
        engine.components.preview(&latents)?;
        if i >= args.warmup {
            out.push(ms(start.elapsed()));
        }
    }
    Ok(out)
}

/// The same requests through a running daemon: request frame written → result frame read.
fn run_mode_socket(
    client: &mut DaemonClient,
    args: &BenchArgs,
    mode: BenchMode,
    base: &RgbaImage,
    size: u32,
    next_id: &mut u64,
) -> anyhow::Result<Vec<f64>> {
    let mut out = Vec::new();
    let defaults = announced_defaults(&client.hello.capabilities);
    for i in 0..args.warmup + args.iterations {
        let mut request = build_request(args, &defaults, mode, base, size, i);
        *next_id += 1;
        request.request_id = *next_id;
        let start = Instant::now();
        client.generate(&request, |_| {})?;
        if i >= args.warmup {
            out.push(ms(start.elapsed()));
        }
    }
    Ok(out)
}

/// A client of the daemon at `path`, and what its hello says (for the report).
fn connect(path: &std::path::Path) -> anyhow::Result<(DaemonClient, Value)> {
    let client = DaemonClient::connect(path, "livefill-bench", SOCKET_TIMEOUT)?;
    let hello = &client.hello;
    let info = json!({
        "daemon_version": hello.daemon_version,
        "device": hello.device,
        "execution_provider": hello.execution_provider,
        "model": hello.model,
    });
    Ok((client, info))
}

fn print_row(label: &str, samples: &[f64]) {
    print_row_in(label, samples, "ms");
}

fn print_row_in(label: &str, samples: &[f64], unit: &str) {
    if samples.is_empty() {
        return;
    }
    let s = summarize(samples);
    outln!(
        "  {label:<28} p50 {:>10.2} {unit:<2}   p95 {:>10.2} {unit:<2}   (min {:.2}, max {:.2}, n {})",
        s.p50,
        s.p95,
        s.min,
        s.max,
        s.n
    );
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.iterations == 0 {
        bail!("--iterations must be at least 1");
    }
    if args.socket_only && args.socket.is_none() {
        bail!("--socket-only needs --socket");
    }
    let options = args.engine.engine_options()?;
    let mut report = serde_json::Map::new();
    report.insert("implementation".into(), json!("livefill"));
    report.insert(
        "model".into(),
        json!(args.engine.model.display().to_string()),
    );
    report.insert("strength".into(), json!(args.strength));
    report.insert("live_strength".into(), json!(args.live_strength));
    report.insert("iterations".into(), json!(args.iterations));
    report.insert("warmup".into(), json!(args.warmup));
    report.insert("threads".into(), json!(args.engine.runtime.threads));
    report.insert("fresh_prompts".into(), json!(args.fresh_prompts));

    let mut engine = if args.socket_only {
        None
    } else {
        Some(Engine::load(&options)?)
    };
    let defaults = engine
        .as_ref()
        .map_or(ModelDefaults::default(), |e| e.info().sampling);
    let (steps, guidance) = args.sampling.budget(&defaults);
    report.insert("steps".into(), json!(steps));
    report.insert("guidance".into(), json!(guidance));
    report.insert("sampler".into(), json!(args.sampling.describe(&defaults)));
    let native = engine
        .as_ref()
        .map(|e| e.components.dir.native_size().0)
        .unwrap_or(512);
    let size = args.size.unwrap_or(native);
    if size == 0 || !size.is_multiple_of(64) {
        bail!("--size must be a positive multiple of 64, got {size}");
    }
    let base = match (&args.image, args.layer) {
        (Some(_), Some(_)) => bail!("--layer makes its own N×N layer: leave out --image"),
        (Some(path), None) => read_rgba(path)?,
        (None, Some(layer)) if layer < size => {
            bail!("--layer {layer} is smaller than the --size {size} selection")
        }
        (None, Some(layer)) => synthetic_image(layer, layer),
        (None, None) => synthetic_image(size, size),
    };
    report.insert("size".into(), json!(size));
    report.insert("image".into(), json!([base.width, base.height]));

    let mut modes_json = serde_json::Map::new();
    if let Some(engine) = engine.as_mut() {
        outln!(
            "livefill bench: {} on {} ({}, ONNX Runtime {}), loaded in {:.1} s; {size}×{size}, \
             {}, {} warm-up + {} timed runs per mode, prompts {}",
            args.engine.model.display(),
            engine.runtime.device.describe(),
            engine.runtime.device.provider_name(),
            engine.runtime.version,
            engine.load_time.as_secs_f64(),
            args.sampling.describe(&defaults),
            args.warmup,
            args.iterations,
            if args.fresh_prompts {
                "fresh (text encoder runs every time)"
            } else {
                "repeated (embedding cache hits)"
            }
        );
        report.insert("device".into(), json!(engine.runtime.device.describe()));
        report.insert(
            "execution_provider".into(),
            json!(engine.runtime.device.provider_name()),
        );
        report.insert("ort_version".into(), json!(engine.runtime.version));
        report.insert("load_ms".into(), json!(ms(engine.load_time)));
        let first = time_text_encode_first(engine, &args)?;
        outln!("text encoder, new prompt (tokenize + ONNX Runtime):");
        print_row("text_encode (first)", &first);
        report.insert("text_encode_first_ms".into(), summary_json(&first));
        if engine.components.taesd_decoder.is_some() {
            let taesd = time_taesd(engine, &args, size)?;
            outln!("TAESD decoder at {size}×{size} (Components::preview):");
            print_row("taesd_decode", &taesd);
            report.insert("taesd_decode_ms".into(), summary_json(&taesd));
        }
        for &mode in &args.modes {
            let samples = run_mode_in_process(engine, &args, mode, &base, size)?;
            outln!("{} ({} UNet steps):", mode.name(), samples.steps_run);
            let cached = if args.fresh_prompts {
                "text_encode (first)"
            } else {
                "text_encode (cached)"
            };
            let mut stages_json = serde_json::Map::new();
            for stage in STAGES {
                if let Some((_, v)) = samples.stages.iter().find(|(s, _)| s == stage) {
                    let label = if stage == "text_encode" {
                        cached
                    } else {
                        stage
                    };
                    print_row(label, v);
                    if stage == "unet" {
                        print_row("unet per step", &samples.unet_per_step);
                    }
                    stages_json.insert(stage.to_string(), summary_json(v));
                }
            }
            for (stage, v) in &samples.stages {
                if !STAGES.contains(&stage.as_str()) {
                    print_row(stage, v);
                    stages_json.insert(stage.clone(), summary_json(v));
                }
            }
            print_row("model stages (sum)", &samples.model_stages);
            print_row("inside ORT Run", &samples.ort);
            print_row("livefill overhead", &samples.overhead);
            print_row_in("overhead, % of end to end", &samples.overhead_percent, "%");
            print_row("end to end", &samples.e2e);
            modes_json.insert(
                mode.name().to_string(),
                json!({
                    "unet_steps": samples.steps_run,
                    "e2e_ms": summary_json(&samples.e2e),
                    "model_stages_ms": summary_json(&samples.model_stages),
                    "ort_run_ms": summary_json(&samples.ort),
                    "overhead_ms": summary_json(&samples.overhead),
                    "overhead_percent": summary_json(&samples.overhead_percent),
                    "unet_per_step_ms": summary_json(&samples.unet_per_step),
                    "stages_ms": Value::Object(stages_json),
                }),
            );
        }
    }
    report.insert("modes".into(), Value::Object(modes_json));

    if let Some(path) = &args.socket {
        let (mut client, info) = connect(path)?;
        outln!("daemon at {} ({info}):", path.display());
        let mut socket_json = serde_json::Map::new();
        let mut next_id = 0;
        for &mode in &args.modes {
            let samples = run_mode_socket(&mut client, &args, mode, &base, size, &mut next_id)?;
            print_row(&format!("{} via socket", mode.name()), &samples);
            socket_json.insert(mode.name().to_string(), summary_json(&samples));
        }
        report.insert(
            "socket".into(),
            json!({ "daemon": info, "modes": Value::Object(socket_json) }),
        );
    }

    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&Value::Object(report))?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_match_numpy_linear() {
        let v = [1.0, 2.0, 3.0, 4.0, 10.0];
        let s = summarize(&v);
        assert_eq!(s.p50, 3.0);
        // numpy.percentile([1,2,3,4,10], 95) = 4 + 0.8 * 6
        assert!((s.p95 - 8.8).abs() < 1e-12);
        assert_eq!(percentile(&[5.0], 95.0), 5.0);
    }

    #[test]
    fn mask_covers_the_centre_quarter() {
        let m = centre_mask(64, 64);
        assert_eq!(m.pixels.iter().filter(|&&p| p == 255).count(), 32 * 32);
        assert_eq!(m.pixels[0], 0);
        assert_eq!(m.pixels[32 * 64 + 32], 255);
    }
}
