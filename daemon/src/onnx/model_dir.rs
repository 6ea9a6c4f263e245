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
//! taesd_encoder/model.onnx                      (optional: live frames' image latents)
//! ```
//!
//! diffusers' legacy converter writes the same folders without the component `config.json`s
//! (external weights in `weights.pb`, an optional `safety_checker/` that livefill ignores):
//! `legacy_layout` recovers what the configs would have said.

use std::path::{Path, PathBuf};

use super::configs::{
    ConfigEnum, ConfigValue, ModelDirError, SchedulerConfig, UnetConfig, VaeConfig, read_json,
};
use super::legacy_layout::{self, Layout, ModelIndex};

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
    pub taesd_encoder: Option<PathBuf>,
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
        let taesd_encoder = Some(root.join("taesd_encoder/model.onnx")).filter(|p| p.is_file());
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
        let unet_config = component_config(&root.join("unet/config.json"), layout, || {
            legacy_layout::unet_config(&unet, &index)
        })?;
        let vae_config = component_config(&root.join("vae_decoder/config.json"), layout, || {
            legacy_layout::vae_config(&vae_decoder)
        })?;
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
            taesd_encoder,
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
        if let Some(spacing) = &sched.timestep_spacing {
            check_supported(&sched_path, spacing)?;
        }
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

/// A component's `config.json`; in the legacy layout, which has none, what `recover` reads from
/// the graphs instead.
fn component_config<T: for<'de> serde::Deserialize<'de>>(
    path: &Path,
    layout: Layout,
    recover: impl FnOnce() -> Result<T, ModelDirError>,
) -> Result<T, ModelDirError> {
    match layout {
        Layout::DiffusersLegacy if !path.is_file() => recover(),
        _ => read_json(path),
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
