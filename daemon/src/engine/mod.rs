//! The inference engine: one loaded Stable Diffusion model serving generate requests.
//!
//! Exists to turn a wire `GenerateRequest` into pixels: it validates the request (`request`),
//! prepares the user's pixels (`imaging`: context crop, masks, outpaint canvas), runs the mode's
//! pipeline (`pipelines`) at model resolution, and brings the result back (resize, colour match,
//! composite) so that pixels outside the mask are the user's original bytes (`request_flow`).
//! Prompt embeddings (`text_cache`) and a live preview's image latents (`live_cache`) are kept
//! between jobs. It implements `generator::ImageGenerator`, the trait the job queue drives.

pub mod live_cache;
pub mod loader;
pub mod request_flow;
pub mod text_cache;

use std::path::PathBuf;
use std::time::Instant;

use livefill_protocol::{GenerateRequest, Mode};

use crate::generator::{
    CancelToken, GenerateError, GenerateOutput, GeneratorInfo, ImageGenerator, StepProgress,
};
use crate::noise::{NoiseSource, SeededNoise};
use crate::onnx::configs::ModelDirError;
use crate::onnx::model_dir::ModelDir;
use crate::onnx::runtime::{self, Runtime, RuntimeError, RuntimeOptions};
use crate::pipelines::shared::SharedParts;
use crate::pipelines::{Components, PipelineError};
use crate::request::{self, default_request};
use crate::scheduler::ModelDefaults;
use live_cache::LiveLatentCache;
use request_flow::RequestRun;

/// How to bring the engine up.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub model: PathBuf,
    pub runtime: RuntimeOptions,
    /// Largest accepted image side (width or height) in pixels.
    pub max_image_side: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    ModelDir(#[from] ModelDirError),
    #[error("loading model {model}: {source}")]
    Load {
        model: PathBuf,
        #[source]
        source: PipelineError,
    },
    #[error("warm-up run failed: {0}")]
    WarmUp(String),
}

/// A model resident on its device.
pub struct Engine {
    pub runtime: Runtime,
    pub components: Components,
    text_cache: text_cache::TextCache,
    live_cache: LiveLatentCache,
    max_image_side: u32,
    /// What the loaded model can do, read once at load (every request is validated against it).
    info: GeneratorInfo,
    pub load_time: std::time::Duration,
}

impl Engine {
    /// Load ONNX Runtime and every graph of the model.
    pub fn load(options: &EngineOptions) -> Result<Self, EngineError> {
        Self::load_sharing(
            options,
            &std::sync::Mutex::new(SharedParts::default()),
            &mut |_, _, _| {},
        )
    }

    /// Load ONNX Runtime and every graph of the model, taking byte-identical parts from `shared`
    /// (see [`Components::load_sharing`], which also says what `on_part` gets).
    pub fn load_sharing(
        options: &EngineOptions,
        shared: &std::sync::Mutex<SharedParts>,
        on_part: &mut dyn FnMut(u32, u32, &str),
    ) -> Result<Self, EngineError> {
        let start = Instant::now();
        let runtime = runtime::init_runtime(&options.runtime)?;
        let dir = ModelDir::open(&options.model)?;
        let components =
            Components::load_sharing(&runtime, dir, shared, on_part).map_err(|source| {
                EngineError::Load {
                    model: options.model.clone(),
                    source,
                }
            })?;
        let load_time = start.elapsed();
        tracing::info!(
            model = %options.model.display(),
            device = %runtime.device.describe(),
            provider = runtime.device.provider_name(),
            load_ms = load_time.as_millis() as u64,
            "model loaded"
        );
        let info = describe(&runtime, &components);
        Ok(Self {
            info,
            runtime,
            components,
            text_cache: text_cache::TextCache::new(32),
            live_cache: LiveLatentCache::default(),
            max_image_side: options.max_image_side,
            load_time,
        })
    }

    /// Run every graph once at native size so the first real job is not slow (cuDNN algorithm
    /// search, memory arenas).
    pub fn warm_up(&mut self) -> Result<(), EngineError> {
        let start = Instant::now();
        let (w, h) = self.components.dir.native_size();
        let mut request = default_request(Mode::Txt2Img);
        request.steps = 1;
        request.width = w;
        request.height = h;
        let mut noise = SeededNoise::new(0);
        let modes: &[Mode] = if self.components.vae_encoder.is_some() {
            &[Mode::Txt2Img, Mode::Img2Img]
        } else {
            &[Mode::Txt2Img]
        };
        for &mode in modes {
            request.mode = mode;
            if mode == Mode::Img2Img {
                request.image = Some(livefill_protocol::RgbaImage {
                    width: w,
                    height: h,
                    pixels: vec![128; (w * h * 4) as usize],
                });
                request.strength = 1.0;
            }
            self.run(&request, 0, &mut noise, &CancelToken::new(), &mut |_| {})
                .map_err(|e| EngineError::WarmUp(e.to_string()))?;
        }
        self.live_cache = LiveLatentCache::default();
        tracing::info!(ms = start.elapsed().as_millis() as u64, "warm-up done");
        Ok(())
    }

    /// Run a request with noise from `noise` (seeded, or a file for parity checks).
    pub fn run(
        &mut self,
        request: &GenerateRequest,
        seed: u64,
        noise: &mut dyn NoiseSource,
        cancel: &CancelToken,
        on_step: &mut dyn FnMut(StepProgress),
    ) -> Result<GenerateOutput, GenerateError> {
        request::validate(request, &self.info, self.max_image_side)?;
        let mut job = RequestRun {
            sampler: request::sampler_choice(request, &self.info),
            components: &mut self.components,
            text_cache: &mut self.text_cache,
            live_cache: &mut self.live_cache,
            noise,
            cancel,
            on_step,
        };
        job.run(request, seed)
    }
}

/// What a loaded model can do, for the daemon's hello and status and for request validation.
fn describe(runtime: &Runtime, components: &Components) -> GeneratorInfo {
    describe_dir(
        &components.dir,
        &runtime.device.describe(),
        runtime.device.provider_name(),
    )
}

/// What the model of a checked folder can do, known without loading it (a daemon validates
/// requests for models it has not loaded yet against this).
pub fn describe_dir(dir: &ModelDir, device: &str, execution_provider: &str) -> GeneratorInfo {
    let (w, h) = dir.native_size();
    let modes = if dir.vae_encoder.is_some() {
        vec![Mode::Txt2Img, Mode::Img2Img, Mode::Inpaint, Mode::Outpaint]
    } else {
        vec![Mode::Txt2Img]
    };
    GeneratorInfo {
        model: dir.name.clone(),
        device: device.to_string(),
        execution_provider: execution_provider.to_string(),
        native_width: w,
        native_height: h,
        modes,
        inpainting_unet: dir.is_inpainting_unet(),
        taesd_previews: dir.taesd_decoder.is_some(),
        sampling: ModelDefaults::for_model(
            &dir.scheduler_config,
            dir.unet_config.time_cond_proj_dim.is_some(),
        ),
    }
}

impl ImageGenerator for Engine {
    fn info(&self) -> GeneratorInfo {
        self.info.clone()
    }

    fn generate(
        &mut self,
        request: &GenerateRequest,
        seed: u64,
        cancel: &CancelToken,
        on_step: &mut dyn FnMut(StepProgress),
    ) -> Result<GenerateOutput, GenerateError> {
        let mut noise = SeededNoise::new(seed);
        self.run(request, seed, &mut noise, cancel, on_step)
    }
}
