//! The component configs of a model folder, parsed once into typed values.
//!
//! Exists so the fields the pipelines and schedulers need from `unet/config.json`,
//! `vae_decoder/config.json` and `scheduler/scheduler_config.json` have one definition, with
//! their defaults and the config strings (β schedule, prediction type) as enums, whether they
//! were read from the files (`model_dir`) or recovered from the graphs (`legacy_layout`).

use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ModelDirError {
    #[error("model folder {0} does not exist")]
    Missing(PathBuf),
    #[error("{path}: missing (expected in the optimum ONNX layout: {what})")]
    MissingFile { path: PathBuf, what: &'static str },
    #[error("{path}: could not read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: invalid JSON: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path}: {problem}")]
    Invalid { path: PathBuf, problem: String },
}

/// `unet/config.json` fields the pipelines need.
#[derive(Debug, Clone, Deserialize)]
pub struct UnetConfig {
    #[serde(default = "default_in_channels")]
    pub in_channels: usize,
    #[serde(default = "default_sample_size")]
    pub sample_size: usize,
    #[serde(default)]
    pub time_cond_proj_dim: Option<usize>,
}

fn default_in_channels() -> usize {
    4
}
fn default_sample_size() -> usize {
    64
}

/// `vae_decoder/config.json` fields the pipelines need.
#[derive(Debug, Clone, Deserialize)]
pub struct VaeConfig {
    #[serde(default = "default_scaling_factor")]
    pub scaling_factor: f32,
    #[serde(default = "default_latent_channels")]
    pub latent_channels: usize,
    #[serde(default = "default_blocks")]
    pub block_out_channels: Vec<usize>,
}

fn default_scaling_factor() -> f32 {
    0.18215
}
fn default_latent_channels() -> usize {
    4
}
fn default_blocks() -> Vec<usize> {
    vec![128, 256, 512, 512]
}

impl Default for VaeConfig {
    fn default() -> Self {
        serde_json::from_str("{}").expect("all fields have defaults")
    }
}

impl VaeConfig {
    /// Pixels per latent cell (8 for SD).
    pub fn scale_factor(&self) -> usize {
        1 << self.block_out_channels.len().saturating_sub(1)
    }
}

/// How β grows over the training timesteps (`beta_schedule`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BetaSchedule {
    Linear,
    /// Linear in √β (Stable Diffusion's schedule).
    #[default]
    ScaledLinear,
}

/// What the UNet predicts (`prediction_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PredictionType {
    /// The noise ε.
    #[default]
    Epsilon,
    /// v = α·ε − σ·x₀.
    VPrediction,
    /// The clean sample x₀.
    Sample,
}

/// A config string with a fixed set of meanings, parsed once when the folder is opened.
pub trait ConfigEnum: Sized + Copy + Default {
    /// The field's name in the config file, for errors.
    const FIELD: &'static str;
    fn parse(text: &str) -> Option<Self>;
}

impl ConfigEnum for BetaSchedule {
    const FIELD: &'static str = "beta_schedule";
    fn parse(text: &str) -> Option<Self> {
        match text {
            "linear" => Some(Self::Linear),
            "scaled_linear" => Some(Self::ScaledLinear),
            _ => None,
        }
    }
}

impl ConfigEnum for PredictionType {
    const FIELD: &'static str = "prediction_type";
    fn parse(text: &str) -> Option<Self> {
        match text {
            "epsilon" => Some(Self::Epsilon),
            "v_prediction" => Some(Self::VPrediction),
            "sample" => Some(Self::Sample),
            _ => None,
        }
    }
}

/// How inference timesteps are spread over the training ones (`timestep_spacing`; Karras sigmas
/// are the separate `use_karras_sigmas`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestepSpacing {
    /// Evenly from 0, plus `steps_offset`.
    #[default]
    Leading,
    /// Evenly, ending at the last training timestep.
    Trailing,
    /// Evenly from the first to the last training timestep.
    Linspace,
}

impl ConfigEnum for TimestepSpacing {
    const FIELD: &'static str = "timestep_spacing";
    fn parse(text: &str) -> Option<Self> {
        match text {
            "leading" => Some(Self::Leading),
            "trailing" => Some(Self::Trailing),
            "linspace" => Some(Self::Linspace),
            _ => None,
        }
    }
}

/// A parsed config enum, or the string it could not be parsed from (reported by
/// `ModelDir::open` with the file's path, rather than as a bare JSON error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigValue<T> {
    Known(T),
    Unsupported(String),
}

impl<T: ConfigEnum> ConfigValue<T> {
    /// The parsed value; the default for an unsupported one (which `ModelDir::open` refuses).
    pub fn get(&self) -> T {
        match self {
            Self::Known(v) => *v,
            Self::Unsupported(_) => T::default(),
        }
    }
}

impl<T: ConfigEnum> Default for ConfigValue<T> {
    fn default() -> Self {
        Self::Known(T::default())
    }
}

impl<'de, T: ConfigEnum> Deserialize<'de> for ConfigValue<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok(T::parse(&text).map_or(Self::Unsupported(text), Self::Known))
    }
}

/// `scheduler/scheduler_config.json`: the fields of the supported samplers (others are ignored).
///
/// The optional fields are those whose default differs between diffusers' schedulers: absent,
/// each sampler takes its own default, as diffusers' `from_config` does (`timestep_spacing`:
/// `leading` for LCM/TCD/DDIM, `linspace` for Euler/DPM; `clip_sample`: on for DDIM only).
#[derive(Debug, Clone, Deserialize)]
pub struct SchedulerConfig {
    #[serde(rename = "_class_name", default)]
    pub class_name: String,
    #[serde(default = "default_train_steps")]
    pub num_train_timesteps: usize,
    #[serde(default = "default_beta_start")]
    pub beta_start: f64,
    #[serde(default = "default_beta_end")]
    pub beta_end: f64,
    #[serde(default)]
    pub beta_schedule: ConfigValue<BetaSchedule>,
    #[serde(default = "default_original_steps")]
    pub original_inference_steps: usize,
    #[serde(default = "default_timestep_scaling")]
    pub timestep_scaling: f64,
    #[serde(default)]
    pub prediction_type: ConfigValue<PredictionType>,
    #[serde(default = "default_true")]
    pub set_alpha_to_one: bool,
    #[serde(default)]
    pub clip_sample: Option<bool>,
    #[serde(default = "default_clip_range")]
    pub clip_sample_range: f64,
    #[serde(default)]
    pub timestep_spacing: Option<ConfigValue<TimestepSpacing>>,
    #[serde(default)]
    pub steps_offset: Option<usize>,
    #[serde(default)]
    pub use_karras_sigmas: Option<bool>,
}

fn default_train_steps() -> usize {
    1000
}
fn default_beta_start() -> f64 {
    0.00085
}
fn default_beta_end() -> f64 {
    0.012
}
fn default_original_steps() -> usize {
    50
}
fn default_timestep_scaling() -> f64 {
    10.0
}
fn default_true() -> bool {
    true
}
fn default_clip_range() -> f64 {
    1.0
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        serde_json::from_str("{}").expect("all fields have defaults")
    }
}

/// Read and parse a JSON file with errors naming the file.
pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, ModelDirError> {
    let text = std::fs::read_to_string(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            ModelDirError::MissingFile {
                path: path.to_path_buf(),
                what: "a component config",
            }
        } else {
            ModelDirError::Read {
                path: path.to_path_buf(),
                source,
            }
        }
    })?;
    serde_json::from_str(&text).map_err(|source| ModelDirError::Json {
        path: path.to_path_buf(),
        source,
    })
}
