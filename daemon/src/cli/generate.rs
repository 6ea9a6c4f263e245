//! `livefill generate`: run one request through the engine in process, without a daemon, or
//! (`--socket`, `--daemon`) through a running daemon (`generate_remote.rs`).
//!
//! Exists for scripting, for checking a model, and for parity with diffusers (`--noise` takes
//! the exact noise diffusers used). Both ways build the request from the same flags and write
//! the same files and lines, so a daemon — local or forwarded from another machine — can be
//! checked against the in-process run byte for byte.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use livefill_protocol::{
    Context, Extend, GenerateRequest, Mask, Mode, RgbaImage, default_socket_path,
};

use super::runtime_args::RuntimeArgs;
use super::sampler_args::SamplerArgs;
use crate::cli::output::outln;
use crate::client::JobUpdate;
use crate::engine::{Engine, EngineOptions};
use crate::generator::{CancelToken, GenerateOutput, ImageGenerator};
use crate::models::locate;
use crate::noise::{FileNoise, NoiseSource, SeededNoise, random_seed};
use crate::paths::ProcessEnv;
use crate::request::{DEFAULT_MAX_IMAGE_SIDE, default_request};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ModeArg {
    Txt2img,
    Img2img,
    Inpaint,
    Outpaint,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ContextArg {
    Auto,
    Full,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

/// Common engine options shared by the commands that load a model.
#[derive(Debug, Clone, Args)]
pub struct EngineArgs {
    /// Model folder (optimum's or diffusers' legacy ONNX layout), or the name of a model fetched
    /// with `livefill models fetch` (e.g. lcm-dreamshaper-v7).
    #[arg(long)]
    pub model: PathBuf,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    /// Largest accepted image side in pixels.
    #[arg(long, default_value_t = 8192)]
    pub max_image_side: u32,
}

impl EngineArgs {
    pub fn engine_options(&self) -> anyhow::Result<EngineOptions> {
        engine_options(&self.model, &self.runtime, self.max_image_side)
    }
}

/// The engine for `model` (a folder or a fetched model's name) with these runtime flags.
fn engine_options(
    model: &Path,
    runtime: &RuntimeArgs,
    max_image_side: u32,
) -> anyhow::Result<EngineOptions> {
    Ok(EngineOptions {
        model: locate::resolve_model(model, &ProcessEnv)?,
        runtime: runtime.options()?,
        max_image_side,
    })
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// In process: a model folder (optimum's or diffusers' legacy ONNX layout) or the name of a
    /// model fetched with `livefill models fetch`. With --socket or --daemon: the name of a model
    /// the daemon serves (`livefill status` lists them; default: the daemon's choice).
    #[arg(long, required_unless_present_any = ["socket", "daemon"])]
    pub model: Option<PathBuf>,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    /// Largest accepted image side in pixels (in process; a daemon has its own).
    #[arg(long, default_value_t = DEFAULT_MAX_IMAGE_SIDE)]
    pub max_image_side: u32,
    /// Send the request to the daemon at this socket instead of loading the model here (a
    /// local daemon, or one on another machine forwarded with `ssh -L`).
    #[arg(long, conflicts_with = "daemon")]
    pub socket: Option<PathBuf>,
    /// Send the request to the daemon at the default socket (as `livefill status` finds it).
    #[arg(long)]
    pub daemon: bool,
    #[arg(long, value_enum)]
    pub mode: ModeArg,
    #[arg(long, default_value = "")]
    pub prompt: String,
    #[arg(long, default_value = "")]
    pub negative: String,
    /// Input image (PNG or any format the `image` crate reads).
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// Mask image: white = regenerate.
    #[arg(long)]
    pub mask: Option<PathBuf>,
    #[arg(long)]
    pub strength: Option<f32>,
    #[command(flatten)]
    pub sampling: SamplerArgs,
    /// Seed (default: random, printed).
    #[arg(long)]
    pub seed: Option<u64>,
    #[arg(long)]
    pub width: Option<u32>,
    #[arg(long)]
    pub height: Option<u32>,
    /// Outpaint borders: LEFT,TOP,RIGHT,BOTTOM in pixels.
    #[arg(long, value_parser = parse_extend)]
    pub extend: Option<Extend>,
    #[arg(long, value_enum, default_value = "auto")]
    pub context: ContextArg,
    /// Mask edge feather in pixels (0 = hard edge).
    #[arg(long, default_value_t = 8)]
    pub feather: u32,
    #[arg(long, value_enum, default_value = "on")]
    pub color_match: OnOff,
    /// float32 .npy [k, 4, H/8, W/8]: entry 0 = the initial noise, then the fresh noise the
    /// sampler draws, in order (lcm and tcd: one per step but the last; euler_a: one per step;
    /// ddim with eta > 0: one per step; euler, dpmpp_2m, ddim: none).
    #[arg(long)]
    pub noise: Option<PathBuf>,
    /// Where to write the result PNG (the full image, result composited in place).
    #[arg(long)]
    pub out: PathBuf,
}

fn parse_extend(text: &str) -> Result<Extend, String> {
    let parts: Vec<u32> = text
        .split(',')
        .map(|p| {
            p.trim()
                .parse::<u32>()
                .map_err(|_| format!("bad number {p:?}"))
        })
        .collect::<Result<_, _>>()?;
    match parts.as_slice() {
        [left, top, right, bottom] => Ok(Extend {
            left: *left,
            top: *top,
            right: *right,
            bottom: *bottom,
        }),
        _ => Err("expected LEFT,TOP,RIGHT,BOTTOM".into()),
    }
}

/// Read any image as straight-alpha RGBA.
pub fn read_rgba(path: &Path) -> anyhow::Result<RgbaImage> {
    let img = image::open(path).with_context(|| format!("reading image {}", path.display()))?;
    let rgba = img.to_rgba8();
    Ok(RgbaImage {
        width: rgba.width(),
        height: rgba.height(),
        pixels: rgba.into_raw(),
    })
}

/// Read a mask: its luminance (white = regenerate).
pub fn read_mask(path: &Path) -> anyhow::Result<Mask> {
    let img = image::open(path).with_context(|| format!("reading mask {}", path.display()))?;
    let luma = img.to_luma8();
    Ok(Mask {
        width: luma.width(),
        height: luma.height(),
        pixels: luma.into_raw(),
    })
}

/// Write RGBA pixels as PNG.
pub fn write_png(path: &Path, image: &RgbaImage) -> anyhow::Result<()> {
    let buffer = image::RgbaImage::from_raw(image.width, image.height, image.pixels.clone())
        .context("result buffer has the wrong size")?;
    buffer
        .save(path)
        .with_context(|| format!("writing {}", path.display()))
}

/// Paste `layer` at its offset onto a canvas covering both it and `base` (outpaint grows it).
pub fn flatten(
    base: Option<&RgbaImage>,
    layer: &RgbaImage,
    offset_x: i32,
    offset_y: i32,
) -> RgbaImage {
    let Some(base) = base else {
        return layer.clone();
    };
    let left = offset_x.min(0);
    let top = offset_y.min(0);
    let right = (base.width as i32).max(offset_x + layer.width as i32);
    let bottom = (base.height as i32).max(offset_y + layer.height as i32);
    let (w, h) = ((right - left) as usize, (bottom - top) as usize);
    let mut pixels = vec![0u8; w * h * 4];
    let mut paste = |img: &RgbaImage, x0: i32, y0: i32| {
        let row = img.width as usize * 4;
        for y in 0..img.height as usize {
            let dst = ((y0 - top) as usize + y) * w * 4 + (x0 - left) as usize * 4;
            pixels[dst..dst + row].copy_from_slice(&img.pixels[y * row..(y + 1) * row]);
        }
    };
    paste(base, 0, 0);
    paste(layer, offset_x, offset_y);
    RgbaImage {
        width: w as u32,
        height: h as u32,
        pixels,
    }
}

/// The request the flags describe, without the sampler fields (they need the model's defaults)
/// and the seed.
pub(crate) fn build_request(args: &GenerateArgs) -> anyhow::Result<GenerateRequest> {
    let mode = match args.mode {
        ModeArg::Txt2img => Mode::Txt2Img,
        ModeArg::Img2img => Mode::Img2Img,
        ModeArg::Inpaint => Mode::Inpaint,
        ModeArg::Outpaint => Mode::Outpaint,
    };
    if mode != Mode::Txt2Img && args.image.is_none() {
        bail!("--mode {:?} needs --image", args.mode);
    }
    let mut request = default_request(mode);
    request.prompt = args.prompt.clone();
    request.negative_prompt = args.negative.clone();
    if let Some(strength) = args.strength {
        request.strength = strength;
    }
    request.width = args.width.unwrap_or(0);
    request.height = args.height.unwrap_or(0);
    request.image = args.image.as_deref().map(read_rgba).transpose()?;
    request.mask = args.mask.as_deref().map(read_mask).transpose()?;
    request.extend = args.extend.unwrap_or_default();
    request.context = match args.context {
        ContextArg::Auto => Context::Auto,
        ContextArg::Full => Context::Full,
    };
    request.feather = args.feather;
    request.color_match = matches!(args.color_match, OnOff::On);
    Ok(request)
}

/// Writes the result composited onto the request's image to `--out` and prints what was
/// written (one line, the same for the in-process run and a daemon's).
pub(crate) fn write_result(
    args: &GenerateArgs,
    request: &GenerateRequest,
    output: &GenerateOutput,
) -> anyhow::Result<()> {
    let full = flatten(
        request.image.as_ref(),
        &output.image,
        output.offset_x,
        output.offset_y,
    );
    write_png(&args.out, &full)?;
    outln!(
        "wrote {} ({}×{}, seed {}, model {}; {})",
        args.out.display(),
        full.width,
        full.height,
        output.seed,
        output.model,
        super::format_timings(&output.timings)
    );
    Ok(())
}

/// The daemon this run goes to (`--socket`, or the default socket with `--daemon`), if any.
fn daemon_socket(args: &GenerateArgs) -> Option<PathBuf> {
    match (&args.socket, args.daemon) {
        (Some(socket), _) => Some(socket.clone()),
        (None, true) => Some(default_socket_path()),
        (None, false) => None,
    }
}

pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    match daemon_socket(&args) {
        Some(socket) => super::generate_remote::run(&args, &socket),
        None => run_in_process(&args),
    }
}

fn run_in_process(args: &GenerateArgs) -> anyhow::Result<()> {
    let model = args
        .model
        .as_deref()
        .context("--model is needed to run in process (or pass --socket / --daemon)")?;
    let mut request = build_request(args)?;
    let seed = args.seed.unwrap_or_else(random_seed);
    let mut file_noise = match &args.noise {
        Some(path) => Some(FileNoise::new(crate::npy::read_f32(path)?)),
        None => None,
    };
    let mut seeded = SeededNoise::new(seed);
    let noise: &mut dyn NoiseSource = match file_noise.as_mut() {
        Some(file) => file,
        None => &mut seeded,
    };
    let mut engine = Engine::load(&engine_options(model, &args.runtime, args.max_image_side)?)?;
    let defaults = engine.info().sampling;
    args.sampling.apply(&mut request, &defaults);
    eprintln!("sampler: {}", args.sampling.describe(&defaults));
    let span = tracing::info_span!("job", mode = ?request.mode, seed);
    let _entered = span.enter();
    let output = engine.run(&request, seed, noise, &CancelToken::new(), &mut |p| {
        let step = JobUpdate::Step {
            step: p.step,
            total_steps: p.total_steps,
        };
        eprintln!("{}", super::describe_update(&step));
    })?;
    write_result(args, &request, &output)?;
    if let Some(left) = file_noise.map(|f| f.remaining()).filter(|&n| n > 0) {
        eprintln!("warning: {left} entries of --noise were not used by this sampler");
    }
    Ok(())
}
