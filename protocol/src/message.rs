//! Messages exchanged between a client (editor plugin) and the daemon.
//!
//! Exists to give both directions one typed vocabulary. Field order is the wire order (bincode
//! encodes struct fields in declaration order and enum variants as a u32 index), so **never
//! reorder fields or variants**; append and bump `PROTOCOL_VERSION` instead.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Version of the byte layout; carried in every frame header and in both hellos.
pub const PROTOCOL_VERSION: u16 = 3;

/// The oldest protocol version whose peers still get a readable answer: the daemon replies to
/// their frames with an `Error { code: UnsupportedVersion }` framed in *their* version (the
/// `ErrorReply` layout is the same in versions 1, 2 and 3), so an old plugin shows "update the
/// plugin" instead of failing to decode.
pub const OLDEST_READABLE_VERSION: u16 = 1;

/// Raw 8-bit RGBA pixels, row-major, top-left origin, `width * height * 4` bytes, channel order
/// R, G, B, A, **straight (non-premultiplied) alpha**. Clients whose editor hands out BGRA
/// (Krita) swap channels before sending and after receiving.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RgbaImage {
    pub width: u32,
    pub height: u32,
    #[serde(with = "crate::byte_buf")]
    pub pixels: Vec<u8>,
}

/// 8-bit single-channel mask, `width * height` bytes: 255 = regenerate, 0 = keep, values in
/// between are partial (soft selection).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mask {
    pub width: u32,
    pub height: u32,
    #[serde(with = "crate::byte_buf")]
    pub pixels: Vec<u8>,
}

/// What a generate request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    Txt2Img,
    Img2Img,
    Inpaint,
    Outpaint,
}

/// How much of the image the model sees around a selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Context {
    /// Crop a padded region around the mask bounds and scale it to the model's native size.
    Auto,
    /// Use the whole image as is: no crop, no rescale.
    Full,
}

/// Scheduling class of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Priority {
    /// Runs in order with the other final jobs; never dropped.
    Final,
    /// Coalesced per client: a newer live request replaces a pending one and cancels a running one.
    LivePreview,
}

/// The sampler (noise scheduler) of a request; wire names as on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Sampler {
    /// Latent Consistency Model (LCM-distilled models, LCM-LoRA): 2–8 steps, guidance ≈ 1.
    Lcm,
    /// Trajectory Consistency Distillation (Hyper-SD, TCD-LoRA); `eta` is its gamma.
    Tcd,
    /// Euler (k-diffusion's Euler, EulerDiscreteScheduler).
    Euler,
    /// Euler ancestral: fresh noise at every step.
    EulerA,
    /// DPM-Solver++ 2M (second-order multistep).
    Dpmpp2m,
    /// DDIM; `eta` is its η (0 = deterministic).
    Ddim,
}

/// How the timesteps (or sigmas) of a run are spread over the training schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Spacing {
    /// `timestep_spacing = "leading"` (evenly from 0, plus `steps_offset`).
    Leading,
    /// `timestep_spacing = "trailing"` (evenly, ending at the last training timestep).
    Trailing,
    /// `timestep_spacing = "linspace"` (evenly from the first to the last training timestep).
    Linspace,
    /// Karras et al.'s sigmas (`use_karras_sigmas`); sigma-based samplers only.
    Karras,
}

/// Canvas growth for outpainting, in pixels per side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extend {
    pub left: u32,
    pub top: u32,
    pub right: u32,
    pub bottom: u32,
}

/// Client's opening message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientHello {
    pub client_name: String,
    pub protocol_version: u16,
}

/// One generation job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateRequest {
    /// Chosen by the client, unique per connection; echoed in every reply about this job.
    pub request_id: u64,
    pub mode: Mode,
    pub prompt: String,
    pub negative_prompt: String,
    /// `None` = the daemon picks a random seed (reported back in the result).
    pub seed: Option<u64>,
    /// Denoising steps (LCM: 1..=8 is typical; DPM++ 2M: 15–30).
    pub steps: u32,
    /// Guidance scale; classifier-free guidance runs only when > 1 (or as an embedding for
    /// LCM-distilled UNets).
    pub guidance: f32,
    /// img2img / inpaint strength in (0, 1]; ignored by txt2img and outpaint.
    pub strength: f32,
    /// Output size for txt2img (0 = model native); ignored by the other modes.
    pub width: u32,
    pub height: u32,
    /// Source pixels (img2img, inpaint, outpaint).
    pub image: Option<RgbaImage>,
    /// Same size as `image`; `None` with inpaint = regenerate the whole image.
    pub mask: Option<Mask>,
    /// Outpaint borders.
    pub extend: Extend,
    pub context: Context,
    /// Mask edge feather width in pixels (0 = hard edge).
    pub feather: u32,
    pub color_match: bool,
    pub priority: Priority,
    /// Send a preview image with each progress message.
    pub stream_previews: bool,
    /// `None` = the loaded model's default sampler (see `Capabilities.default_sampler`).
    pub sampler: Option<Sampler>,
    /// `None` = the model's `scheduler_config.json` (or, with `sampler: None`, the model default).
    pub spacing: Option<Spacing>,
    /// DDIM's η (default 0) or TCD's γ (default 0.3); `None` = that default. Other samplers
    /// refuse it.
    pub eta: Option<f32>,
    /// The model to run, by the name `ListModels` reports; empty = the daemon's choice for the
    /// request (an inpainting model for inpaint/outpaint, an LCM model for live previews, else
    /// its default; see `ModelInfo.roles`).
    pub model: String,
}

/// Everything a client can send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ClientMessage {
    Hello(ClientHello),
    Generate(GenerateRequest),
    Cancel { request_id: u64 },
    Status,
    ListModels,
    Shutdown,
}

/// What the daemon can do with its loaded model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Capabilities {
    pub modes: Vec<Mode>,
    /// The UNet takes 9 input channels (a dedicated inpainting model).
    pub inpainting_unet: bool,
    /// A TAESD decoder is loaded for fast step previews.
    pub taesd_previews: bool,
    /// Largest accepted image side in pixels.
    pub max_image_side: u32,
    /// Largest accepted frame payload in bytes.
    pub max_frame_bytes: u64,
    /// What a request with `sampler: None` runs: `Lcm` for LCM models, `Dpmpp2m` otherwise.
    pub default_sampler: Sampler,
    /// The spacing that goes with it (`Karras` for DPM++ 2M; `None` = the model's config).
    pub default_spacing: Option<Spacing>,
    /// Steps and guidance that suit the default sampler on this model (4 / 1 for LCM, 20 / 7).
    pub default_steps: u32,
    pub default_guidance: f32,
}

/// Daemon's answer to `ClientHello`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DaemonHello {
    pub daemon_version: String,
    pub protocol_version: u16,
    /// e.g. "NVIDIA H100 (cuda:0)" or "cpu".
    pub device: String,
    /// Execution provider every session really got, e.g. "CUDAExecutionProvider".
    pub execution_provider: String,
    /// Model name (folder name or hub id); empty when none is loaded.
    pub model: String,
    pub native_width: u32,
    pub native_height: u32,
    pub capabilities: Capabilities,
}

/// Time spent in one stage of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageTiming {
    /// e.g. "text_encode", "vae_encode", "unet", "vae_decode", "preprocess", "postprocess".
    pub stage: String,
    pub millis: f32,
}

/// A finished job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateResult {
    pub request_id: u64,
    /// Result pixels (RGBA, straight alpha).
    pub image: RgbaImage,
    /// Where `image`'s top-left corner lies in the coordinates of the sent image (negative for
    /// outpaint borders above/left of it).
    pub offset_x: i32,
    pub offset_y: i32,
    pub seed: u64,
    pub timings: Vec<StageTiming>,
    /// The model that produced the result (its `ListModels` name).
    pub model: String,
}

/// Machine-readable error class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// Bad magic, truncated body, undecodable payload.
    BadFrame,
    UnsupportedVersion,
    FrameTooLarge,
    InvalidRequest,
    ImageTooLarge,
    MaskSizeMismatch,
    NoModel,
    OutOfMemory,
    Cancelled,
    ShuttingDown,
    Internal,
    /// The request's model could not be loaded (the message names the file and what to do).
    ModelLoadFailed,
    /// The client has as many unfinished final jobs queued as the daemon takes from one client.
    QueueFull,
    /// The daemon serves as many clients as it takes; the connection is closed.
    TooManyConnections,
}

/// A failed request (or a connection-level problem when `request_id` is `None`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub request_id: Option<u64>,
    pub code: ErrorCode,
    pub message: String,
}

/// What the daemon is doing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonStatus {
    pub model: String,
    pub device: String,
    pub execution_provider: String,
    pub queued_jobs: u32,
    /// Request id of the job on the GPU, if any.
    pub running_request: Option<u64>,
    pub connected_clients: u32,
    pub jobs_completed: u64,
    pub uptime_ms: u64,
    /// Bytes of model weights resident now (files shared by several models counted once).
    pub resident_bytes: u64,
    /// The memory budget for resident models in bytes; 0 = the budget is a model count.
    pub budget_bytes: u64,
    /// The most models kept resident at once; 0 = the budget is in bytes.
    pub max_resident_models: u32,
    /// The model being loaded now, empty when none.
    pub loading_model: String,
}

/// What the daemon runs a model for when a request names none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ModelRole {
    /// Every request without a more specific choice (txt2img, img2img final jobs).
    Default,
    /// Inpaint and outpaint requests.
    Inpaint,
    /// Live previews.
    Live,
}

/// A model the daemon serves (resident or loaded on first use).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// The name requests use (`GenerateRequest.model`).
    pub name: String,
    pub path: String,
    pub unet_in_channels: u32,
    pub lcm_distilled: bool,
    /// "fp16" or "fp32".
    pub dtype: String,
    pub taesd: bool,
    /// Resident now (its graphs are loaded on the device).
    pub loaded: bool,
    /// The request kinds this model serves when a request names no model.
    pub roles: Vec<ModelRole>,
    /// Bytes of its weight files (the memory it takes when resident).
    pub weight_bytes: u64,
    /// Of those, bytes shared with another resident model (byte-identical files loaded once).
    pub shared_bytes: u64,
    /// Why its last load failed; empty when it did not.
    pub load_error: String,
    /// What a request naming this model and no sampler runs (as `Capabilities.default_*` for
    /// the default model).
    pub default_sampler: Sampler,
    pub default_spacing: Option<Spacing>,
    pub default_steps: u32,
    pub default_guidance: f32,
}

/// Everything the daemon can send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DaemonMessage {
    Hello(DaemonHello),
    Accepted {
        request_id: u64,
        queue_position: u32,
    },
    Progress {
        request_id: u64,
        step: u32,
        total_steps: u32,
        preview: Option<RgbaImage>,
    },
    Result(GenerateResult),
    Error(ErrorReply),
    Superseded {
        request_id: u64,
        by_request_id: u64,
    },
    Status(DaemonStatus),
    Models(Vec<ModelInfo>),
    ShuttingDown,
    /// The request's model is being loaded (first use, or after it was unloaded): one message
    /// per component as loading moves on, before `Progress`.
    ModelLoading {
        request_id: u64,
        model: String,
        /// Components loaded so far (0 = starting) of `total_steps`.
        step: u32,
        total_steps: u32,
        /// What is being loaded now, e.g. "unet".
        component: String,
    },
}

impl RgbaImage {
    pub fn new(width: u32, height: u32, pixels: Vec<u8>) -> Self {
        Self {
            width,
            height,
            pixels,
        }
    }

    /// `width * height * 4`, the only valid `pixels.len()` (`u64::MAX` for sizes beyond it,
    /// which no buffer has: the sides come from the peer).
    pub fn expected_len(&self) -> u64 {
        (u64::from(self.width) * u64::from(self.height)).saturating_mul(4)
    }

    /// Whether `pixels` holds exactly `width * height * 4` bytes.
    pub fn is_well_formed(&self) -> bool {
        self.pixels.len() as u64 == self.expected_len()
    }
}

impl Mask {
    pub fn new(width: u32, height: u32, pixels: Vec<u8>) -> Self {
        Self {
            width,
            height,
            pixels,
        }
    }

    /// `width * height`, the only valid `pixels.len()`.
    pub fn expected_len(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }

    /// Whether `pixels` holds exactly `width * height` bytes.
    pub fn is_well_formed(&self) -> bool {
        self.pixels.len() as u64 == self.expected_len()
    }
}

impl Sampler {
    /// Every sampler, in wire order.
    pub const ALL: [Sampler; 6] = [
        Sampler::Lcm,
        Sampler::Tcd,
        Sampler::Euler,
        Sampler::EulerA,
        Sampler::Dpmpp2m,
        Sampler::Ddim,
    ];

    /// The name used on the command line, in plugins and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Sampler::Lcm => "lcm",
            Sampler::Tcd => "tcd",
            Sampler::Euler => "euler",
            Sampler::EulerA => "euler_a",
            Sampler::Dpmpp2m => "dpmpp_2m",
            Sampler::Ddim => "ddim",
        }
    }

    /// The sampler named `name` (as [`Sampler::as_str`] writes it).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Whether the sampler works on sigmas (and so can take Karras sigmas).
    pub fn is_sigma_based(self) -> bool {
        matches!(self, Sampler::Euler | Sampler::EulerA | Sampler::Dpmpp2m)
    }
}

impl fmt::Display for Sampler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Spacing {
    /// Every spacing, in wire order.
    pub const ALL: [Spacing; 4] = [
        Spacing::Leading,
        Spacing::Trailing,
        Spacing::Linspace,
        Spacing::Karras,
    ];

    /// The name used on the command line (and, but for `karras`, in `scheduler_config.json`).
    pub fn as_str(self) -> &'static str {
        match self {
            Spacing::Leading => "leading",
            Spacing::Trailing => "trailing",
            Spacing::Linspace => "linspace",
            Spacing::Karras => "karras",
        }
    }

    /// The spacing named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl fmt::Display for Spacing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ModelInfo {
    /// A model called `name` at `path` about which nothing else is known yet (not resident, no
    /// roles, no sizes, DPM++ 2M Karras 20 / 7 — what a model without an LCM config runs).
    pub fn new(name: impl Into<String>, path: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            path: path.into(),
            unet_in_channels: 0,
            lcm_distilled: false,
            dtype: String::new(),
            taesd: false,
            loaded: false,
            roles: Vec::new(),
            weight_bytes: 0,
            shared_bytes: 0,
            load_error: String::new(),
            default_sampler: Sampler::Dpmpp2m,
            default_spacing: Some(Spacing::Karras),
            default_steps: 20,
            default_guidance: 7.0,
        }
    }
}

impl ModelRole {
    /// Every role, in wire order.
    pub const ALL: [ModelRole; 3] = [ModelRole::Default, ModelRole::Inpaint, ModelRole::Live];

    /// The name used in messages and by `livefill status`.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelRole::Default => "default",
            ModelRole::Inpaint => "inpaint",
            ModelRole::Live => "live",
        }
    }
}

impl fmt::Display for ModelRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ClientHello {
    /// A hello speaking this crate's [`PROTOCOL_VERSION`].
    pub fn new(client_name: impl Into<String>) -> Self {
        Self {
            client_name: client_name.into(),
            protocol_version: PROTOCOL_VERSION,
        }
    }
}

impl ErrorCode {
    /// Every code, in wire order (index = variant index on the wire).
    pub const ALL: [ErrorCode; 14] = [
        ErrorCode::BadFrame,
        ErrorCode::UnsupportedVersion,
        ErrorCode::FrameTooLarge,
        ErrorCode::InvalidRequest,
        ErrorCode::ImageTooLarge,
        ErrorCode::MaskSizeMismatch,
        ErrorCode::NoModel,
        ErrorCode::OutOfMemory,
        ErrorCode::Cancelled,
        ErrorCode::ShuttingDown,
        ErrorCode::Internal,
        ErrorCode::ModelLoadFailed,
        ErrorCode::QueueFull,
        ErrorCode::TooManyConnections,
    ];

    /// Stable snake_case name, for logs and user-facing messages.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadFrame => "bad_frame",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::ImageTooLarge => "image_too_large",
            ErrorCode::MaskSizeMismatch => "mask_size_mismatch",
            ErrorCode::NoModel => "no_model",
            ErrorCode::OutOfMemory => "out_of_memory",
            ErrorCode::Cancelled => "cancelled",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::Internal => "internal",
            ErrorCode::ModelLoadFailed => "model_load_failed",
            ErrorCode::QueueFull => "queue_full",
            ErrorCode::TooManyConnections => "too_many_connections",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ErrorReply {
    /// An error about one request.
    pub fn for_request(request_id: u64, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            request_id: Some(request_id),
            code,
            message: message.into(),
        }
    }

    /// A connection-level error (`request_id: None`).
    pub fn connection(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            request_id: None,
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for ErrorReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.request_id {
            Some(id) => write!(f, "request {id}: {}: {}", self.code, self.message),
            None => write!(f, "{}: {}", self.code, self.message),
        }
    }
}

impl ClientMessage {
    /// Variant name, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientMessage::Hello(_) => "Hello",
            ClientMessage::Generate(_) => "Generate",
            ClientMessage::Cancel { .. } => "Cancel",
            ClientMessage::Status => "Status",
            ClientMessage::ListModels => "ListModels",
            ClientMessage::Shutdown => "Shutdown",
        }
    }
}

impl DaemonMessage {
    /// Variant name, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            DaemonMessage::Hello(_) => "Hello",
            DaemonMessage::Accepted { .. } => "Accepted",
            DaemonMessage::Progress { .. } => "Progress",
            DaemonMessage::Result(_) => "Result",
            DaemonMessage::Error(_) => "Error",
            DaemonMessage::Superseded { .. } => "Superseded",
            DaemonMessage::Status(_) => "Status",
            DaemonMessage::Models(_) => "Models",
            DaemonMessage::ShuttingDown => "ShuttingDown",
            DaemonMessage::ModelLoading { .. } => "ModelLoading",
        }
    }

    /// The request this message is about, if any.
    pub fn request_id(&self) -> Option<u64> {
        match self {
            DaemonMessage::Accepted { request_id, .. }
            | DaemonMessage::Progress { request_id, .. }
            | DaemonMessage::Superseded { request_id, .. }
            | DaemonMessage::ModelLoading { request_id, .. } => Some(*request_id),
            DaemonMessage::Result(r) => Some(r.request_id),
            DaemonMessage::Error(e) => e.request_id,
            DaemonMessage::Hello(_)
            | DaemonMessage::Status(_)
            | DaemonMessage::Models(_)
            | DaemonMessage::ShuttingDown => None,
        }
    }
}
