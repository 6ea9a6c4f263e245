//! `livefill generate`: run one request through the engine in process, without a daemon.
//!
//! Exists for scripting, for checking a model, and for parity with diffusers (`--noise` takes
//! the exact noise diffusers used).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use livefill_protocol::{Context, Extend, Mask, Mode, RgbaImage};

use super::runtime_args::RuntimeArgs;
use super::sampler_args::SamplerArgs;
use crate::engine::{Engine, EngineOptions};
use crate::generator::CancelToken;
use crate::generator::ImageGenerator;
use crate::models::locate;
use crate::noise::{FileNoise, NoiseSource, SeededNoise, random_seed};
use crate::paths::ProcessEnv;
use crate::request::default_request;

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
        Ok(EngineOptions {
            model: locate::resolve_model(&self.model, &ProcessEnv)?,
            runtime: self.runtime.options()?,
            max_image_side: self.max_image_side,
        })
    }
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub engine: EngineArgs,
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

pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    let mode = match args.mode {
        ModeArg::Txt2img => Mode::Txt2Img,
        ModeArg::Img2img => Mode::Img2Img,
        ModeArg::Inpaint => Mode::Inpaint,
        ModeArg::Outpaint => Mode::Outpaint,
    };
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
    if mode != Mode::Txt2Img && request.image.is_none() {
        bail!("--mode {:?} needs --image", args.mode);
    }
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
    let mut engine = Engine::load(&args.engine.engine_options()?)?;
    let defaults = engine.info().sampling;
    args.sampling.apply(&mut request, &defaults);
    eprintln!("sampler: {}", args.sampling.describe(&defaults));
    let span = tracing::info_span!("job", mode = ?request.mode, seed);
    let _entered = span.enter();
    let output = engine.run(&request, seed, noise, &CancelToken::new(), &mut |p| {
        eprintln!("step {}/{}", p.step, p.total_steps);
    })?;
    let full = flatten(
        request.image.as_ref(),
        &output.image,
        output.offset_x,
        output.offset_y,
    );
    write_png(&args.out, &full)?;
    println!(
        "wrote {} ({}×{}, seed {seed}; {})",
        args.out.display(),
        full.width,
        full.height,
        super::format_timings(&output.timings)
    );
    if let Some(left) = file_noise.map(|f| f.remaining()).filter(|&n| n > 0) {
        eprintln!("warning: {left} entries of --noise were not used by this sampler");
    }
    Ok(())
}
