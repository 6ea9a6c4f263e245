//! The seam between the job system and the inference engine.
//!
//! Exists so the server and job queue (`server`, `jobs`) depend on two small traits rather than
//! on ONNX Runtime: [`ImageGenerator`] (one resident model running jobs; the real one is
//! `engine::Engine`) and [`GeneratorLoader`] (brings a model folder up as an `ImageGenerator`;
//! the real one is `engine::EngineLoader`, which loads byte-identical graphs once). Tests of the
//! queue and of model residency may use stand-ins, but end-to-end tests always run the real
//! engine on the tiny fixture models.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use livefill_protocol::{ErrorCode, GenerateRequest, Mode, RgbaImage, StageTiming};

use crate::scheduler::ModelDefaults;

/// Shared flag checked by the engine at every step boundary.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// One denoising step finished.
#[derive(Debug, Clone)]
pub struct StepProgress {
    pub step: u32,
    pub total_steps: u32,
    /// Present only when the caller asked for previews.
    pub preview: Option<RgbaImage>,
}

/// A finished generation, in the coordinates of the request's image.
#[derive(Debug, Clone)]
pub struct GenerateOutput {
    pub image: RgbaImage,
    pub offset_x: i32,
    pub offset_y: i32,
    pub seed: u64,
    pub timings: Vec<StageTiming>,
    /// The name of the model that ran it.
    pub model: String,
}

/// Why a generation did not finish.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("cancelled")]
    Cancelled,
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("image too large: {0}")]
    ImageTooLarge(String),
    #[error("mask size does not match the image: {0}")]
    MaskSizeMismatch(String),
    #[error(
        "not enough memory on the device for this request (make the image or selection smaller, \
         or keep fewer models resident with --max-resident): {0}"
    )]
    OutOfMemory(String),
    #[error("{0}")]
    Internal(String),
}

impl GenerateError {
    /// The wire code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            GenerateError::Cancelled => ErrorCode::Cancelled,
            GenerateError::InvalidRequest(_) => ErrorCode::InvalidRequest,
            GenerateError::ImageTooLarge(_) => ErrorCode::ImageTooLarge,
            GenerateError::MaskSizeMismatch(_) => ErrorCode::MaskSizeMismatch,
            GenerateError::OutOfMemory(_) => ErrorCode::OutOfMemory,
            GenerateError::Internal(_) => ErrorCode::Internal,
        }
    }
}

/// What the loaded model is, for the daemon's hello and status.
#[derive(Debug, Clone)]
pub struct GeneratorInfo {
    pub model: String,
    pub device: String,
    pub execution_provider: String,
    pub native_width: u32,
    pub native_height: u32,
    pub modes: Vec<Mode>,
    pub inpainting_unet: bool,
    pub taesd_previews: bool,
    /// The sampler, steps and guidance of a request that names no sampler.
    pub sampling: ModelDefaults,
}

impl GeneratorInfo {
    /// A model known only by what request validation looks at (its name, modes and sampler
    /// defaults): 64×64 on the CPU, no inpainting UNet, no TAESD. For tests and fuzzing.
    pub fn stand_in(model: &str, modes: Vec<Mode>, sampling: ModelDefaults) -> Self {
        Self {
            model: model.into(),
            device: "cpu".into(),
            execution_provider: "CPUExecutionProvider".into(),
            native_width: 64,
            native_height: 64,
            modes,
            inpainting_unet: false,
            taesd_previews: false,
            sampling,
        }
    }
}

/// Something that turns a request into pixels, one job at a time.
pub trait ImageGenerator: Send + 'static {
    fn info(&self) -> GeneratorInfo;

    /// Run one job to completion. `seed` is already resolved (never random here).
    /// Must check `cancel` at every step boundary and return `GenerateError::Cancelled` then.
    fn generate(
        &mut self,
        request: &GenerateRequest,
        seed: u64,
        cancel: &CancelToken,
        on_step: &mut dyn FnMut(StepProgress),
    ) -> Result<GenerateOutput, GenerateError>;
}

/// One step of loading a model: `step` of `total` components done, `component` next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadStep {
    pub step: u32,
    pub total: u32,
    pub component: String,
}

/// Brings model folders up as generators, off the job thread (jobs on resident models go on
/// while one loads).
pub trait GeneratorLoader: Send + Sync + 'static {
    /// Load the model at `path` and warm it up, reporting each component. The error names the
    /// file and what to do.
    fn load(
        &self,
        path: &Path,
        on_step: &mut dyn FnMut(LoadStep),
    ) -> Result<Box<dyn ImageGenerator>, String>;

    /// Bytes of the resident model at `path` that are shared with another resident model
    /// (byte-identical graphs loaded once); 0 when nothing is shared.
    fn shared_bytes(&self, _path: &Path) -> u64 {
        0
    }

    /// Bytes saved by sharing across every resident model (what counting each model's weight
    /// files in full overstates).
    fn shared_savings(&self) -> u64 {
        0
    }
}
