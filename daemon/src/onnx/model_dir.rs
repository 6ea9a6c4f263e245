//! The on-disk model layout of an ONNX Stable Diffusion pipeline.
//!
//! Exists so every path and config value the engine needs is read and checked in one place, with
//! errors that name the file and what is wrong, before any ONNX session is created. Hugging Face
//! optimum's export (and livefill's own):
//!
//! ```text
//! model_index.json
//! text_encoder/model.onnx (+ model.onnx_data)   config.json
//! unet/model.onnx         (+ model.onnx_data)   config.json
//! vae_encoder/model.onnx                        config.json   (optional: txt2img-only models)
//! vae_decoder/model.onnx                        config.json
//! tokenizer/  tokenizer.json | vocab.json + merges.txt, special_tokens_map.json
//! scheduler/scheduler_config.json
//! taesd_decoder/model.onnx                      (optional: fast previews, see README)
//! ```
//!
//! diffusers' legacy converter writes the same folders without the component `config.json`s
//! (external weights in `weights.pb`, an optional `safety_checker/` that livefill ignores):
//! `legacy_layout` recovers what the configs would have said.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::legacy_layout::{self, Layout, ModelIndex};

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

/// A parsed config enum, or the string it could not be parsed from (reported by
/// [`ModelDir::open`] with the file's path, rather than as a bare JSON error).
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

/// `scheduler/scheduler_config.json` (LCMScheduler fields; others are ignored).
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
    pub clip_sample: bool,
    #[serde(default = "default_clip_range")]
    pub clip_sample_range: f64,
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

/// A checked model folder: every path exists and every config parsed.
#[derive(Debug, Clone)]
pub struct ModelDir {
    pub root: PathBuf,
    pub name: String,
    pub layout: Layout,
    pub text_encoder: PathBuf,
    pub unet: PathBuf,
    pub vae_encoder: Option<PathBuf>,
    pub vae_decoder: PathBuf,
    pub taesd_decoder: Option<PathBuf>,
    pub tokenizer_dir: PathBuf,
    pub unet_config: UnetConfig,
    pub vae_config: VaeConfig,
    pub scheduler_config: SchedulerConfig,
}

impl ModelDir {
    /// Check the layout and read the configs.
    pub fn open(root: &Path) -> Result<Self, ModelDirError> {
        if !root.is_dir() {
            return Err(ModelDirError::Missing(root.to_path_buf()));
        }
        let name = root
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| root.display().to_string());
        let onnx =
            |part: &str, what: &'static str| require(&root.join(part).join("model.onnx"), what);
        let text_encoder = onnx("text_encoder", "the CLIP text encoder")?;
        let unet = onnx("unet", "the denoising UNet")?;
        let vae_decoder = onnx("vae_decoder", "the VAE decoder")?;
        let vae_encoder = Some(root.join("vae_encoder/model.onnx")).filter(|p| p.is_file());
        let taesd_decoder = Some(root.join("taesd_decoder/model.onnx")).filter(|p| p.is_file());
        let tokenizer_dir = root.join("tokenizer");
        let has_tokenizer = tokenizer_dir.join("tokenizer.json").is_file()
            || (tokenizer_dir.join("vocab.json").is_file()
                && tokenizer_dir.join("merges.txt").is_file());
        if !has_tokenizer {
            return Err(ModelDirError::MissingFile {
                path: tokenizer_dir.join("vocab.json"),
                what: "the CLIP tokenizer (tokenizer.json, or vocab.json + merges.txt)",
            });
        }
        let index = ModelIndex::read(root)?;
        let layout = legacy_layout::detect(&index);
        let unet_config_path = root.join("unet/config.json");
        let unet_config = match layout {
            Layout::DiffusersLegacy if !unet_config_path.is_file() => {
                legacy_layout::unet_config(&unet, &index)?
            }
            _ => read_json(&unet_config_path)?,
        };
        let vae_config_path = root.join("vae_decoder/config.json");
        let vae_config = match layout {
            Layout::DiffusersLegacy if !vae_config_path.is_file() => {
                legacy_layout::vae_config(&vae_decoder)?
            }
            _ => read_json(&vae_config_path)?,
        };
        let scheduler_path = root.join("scheduler/scheduler_config.json");
        let scheduler_config: SchedulerConfig = if scheduler_path.is_file() {
            read_json(&scheduler_path)?
        } else {
            SchedulerConfig::default()
        };
        let dir = ModelDir {
            root: root.to_path_buf(),
            name,
            layout,
            text_encoder,
            unet,
            vae_encoder,
            vae_decoder,
            taesd_decoder,
            tokenizer_dir,
            unet_config,
            vae_config,
            scheduler_config,
        };
        dir.check_configs()?;
        Ok(dir)
    }

    fn check_configs(&self) -> Result<(), ModelDirError> {
        let unet_cfg = self.root.join("unet/config.json");
        if !matches!(self.unet_config.in_channels, 4 | 9) {
            return Err(ModelDirError::Invalid {
                path: unet_cfg,
                problem: format!(
                    "in_channels = {}: livefill supports 4 (text-to-image UNet) or 9 (inpainting UNet)",
                    self.unet_config.in_channels
                ),
            });
        }
        let sched = &self.scheduler_config;
        let sched_path = self.root.join("scheduler/scheduler_config.json");
        check_supported(&sched_path, &sched.prediction_type)?;
        check_supported(&sched_path, &sched.beta_schedule)?;
        Ok(())
    }

    /// Native image size in pixels (UNet sample size × VAE scale factor).
    pub fn native_size(&self) -> (u32, u32) {
        let side = (self.unet_config.sample_size * self.vae_config.scale_factor()) as u32;
        (side, side)
    }

    /// A 9-channel inpainting UNet.
    pub fn is_inpainting_unet(&self) -> bool {
        self.unet_config.in_channels == 9
    }
}

fn check_supported<T: ConfigEnum>(
    path: &Path,
    value: &ConfigValue<T>,
) -> Result<(), ModelDirError> {
    match value {
        ConfigValue::Known(_) => Ok(()),
        ConfigValue::Unsupported(text) => Err(ModelDirError::Invalid {
            path: path.to_path_buf(),
            problem: format!("unsupported {} {text:?}", T::FIELD),
        }),
    }
}

fn require(path: &Path, what: &'static str) -> Result<PathBuf, ModelDirError> {
    if path.is_file() {
        Ok(path.to_path_buf())
    } else {
        Err(ModelDirError::MissingFile {
            path: path.to_path_buf(),
            what,
        })
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
