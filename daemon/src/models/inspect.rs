//! What kind of model a folder holds, read cheaply from its configs and ONNX headers.
//!
//! Exists for `models list`, `doctor` and the daemon's model list: UNet channels (4 = text-to-image,
//! 9 = inpainting), LCM-distilled (a `timestep_cond` guidance embedding) or plain / LCM-LoRA-fused,
//! fp16 or fp32, TAESD previews, size on disk — and a full structural check of every graph (files
//! present, not truncated, inputs the pipeline needs), all without ONNX Runtime.

use std::path::{Path, PathBuf};

use crate::onnx::configs::ModelDirError;
use crate::onnx::model_dir::ModelDir;

use crate::onnx::contract::{self, ContractError};
use crate::onnx::header::{self, ElemType, GraphSignature, OnnxInfoError};
use crate::onnx::legacy_layout::Layout;

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error(transparent)]
    Layout(#[from] ModelDirError),
    #[error(transparent)]
    Onnx(#[from] OnnxInfoError),
    #[error(transparent)]
    Contract(#[from] ContractError),
    #[error("{path}: {problem}")]
    Graph { path: PathBuf, problem: String },
}

/// A checked model folder, described.
#[derive(Debug, Clone)]
pub struct ModelSummary {
    pub root: PathBuf,
    pub name: String,
    /// UNet input channels as the graph declares them (config value when the graph leaves it open).
    pub unet_in_channels: usize,
    /// The UNet takes a `timestep_cond` guidance embedding (LCM-distilled, e.g. LCM Dreamshaper).
    pub lcm_distilled: bool,
    /// The UNet's working precision: "fp16" or "fp32".
    pub dtype: String,
    pub taesd: bool,
    /// TAESD's encoder too (live frames' image latents).
    pub taesd_encoder: bool,
    /// A VAE encoder is present (img2img / inpaint / outpaint possible).
    pub vae_encoder: bool,
    /// Native image side in pixels.
    pub native_side: u32,
    /// Bytes of every graph (with external data).
    pub bytes: u64,
    /// The scheduler config names LCMScheduler.
    pub lcm_scheduler: bool,
    /// Which exporter wrote the folder.
    pub layout: Layout,
    /// The VAE encoder draws random numbers (diffusers' legacy export returns a *sample* of the
    /// latent distribution): img2img, inpaint and outpaint differ from run to run for one seed.
    pub encoder_samples: bool,
}

impl ModelSummary {
    /// e.g. "9-ch inpainting UNet, LCM-LoRA fused / plain, fp16, TAESD".
    pub fn kind(&self) -> String {
        let mut parts = vec![
            unet_kind(self.unet_in_channels, self.lcm_distilled),
            self.dtype.clone(),
        ];
        if self.taesd_encoder {
            parts.push("TAESD (decoder + encoder)".into());
        } else if self.taesd {
            parts.push("TAESD".into());
        }
        if !self.vae_encoder {
            parts.push("no VAE encoder (txt2img only)".into());
        }
        if self.layout == Layout::DiffusersLegacy {
            parts.push(self.layout.describe().into());
        }
        if self.encoder_samples {
            parts.push("VAE encoder samples: img2img/inpaint not reproducible for a seed".into());
        }
        parts.join(", ")
    }

    /// The wire description the daemon sends for `ListModels`.
    pub fn to_model_info(&self, loaded: bool) -> livefill_protocol::ModelInfo {
        livefill_protocol::ModelInfo {
            unet_in_channels: self.unet_in_channels as u32,
            lcm_distilled: self.lcm_distilled,
            dtype: self.dtype.clone(),
            taesd: self.taesd,
            loaded,
            weight_bytes: self.bytes,
            ..livefill_protocol::ModelInfo::new(&self.name, self.root.display().to_string())
        }
    }
}

/// "9-ch inpainting UNet, LCM-distilled", "4-ch UNet, plain or LCM-LoRA fused": what the UNet
/// is, from its input channels and its guidance embedding (for `models list` and, from a
/// daemon's `ListModels`, `livefill status`).
pub fn unet_kind(unet_in_channels: usize, lcm_distilled: bool) -> String {
    let unet = match unet_in_channels {
        9 => "9-ch inpainting UNet".to_string(),
        n => format!("{n}-ch UNet"),
    };
    let distill = if lcm_distilled {
        "LCM-distilled"
    } else {
        "plain or LCM-LoRA fused"
    };
    format!("{unet}, {distill}")
}

fn graph_err(path: &Path, problem: String) -> InspectError {
    InspectError::Graph {
        path: path.to_path_buf(),
        problem,
    }
}

/// Open the folder, check every graph's file and inputs, and describe it.
pub fn inspect(root: &Path) -> Result<ModelSummary, InspectError> {
    let dir = ModelDir::open(root)?;
    let mut bytes = 0u64;
    let mut read = |path: &Path| -> Result<GraphSignature, InspectError> {
        let sig = header::inspect(path)?;
        bytes += header::size_on_disk(path, &sig);
        Ok(sig)
    };
    let text = read(&dir.text_encoder)?;
    contract::check_text_encoder(&dir.text_encoder, &text)?;
    let unet = read(&dir.unet)?;
    let unet_in_channels = contract::check_unet(&dir.unet, &unet, &dir.unet_config)?;
    let lcm_distilled = dir.unet_config.time_cond_proj_dim.is_some();
    let vae = read(&dir.vae_decoder)?;
    contract::check_vae_decoder(&dir.vae_decoder, &vae)?;
    let encoder_samples = match &dir.vae_encoder {
        Some(enc) => {
            let sig = read(enc)?;
            contract::check_vae_encoder(enc, &sig)?;
            !sig.random_ops.is_empty()
        }
        None => false,
    };
    if let Some(encoder) = &dir.taesd_encoder {
        let sig = read(encoder)?;
        contract::check_vae_encoder(encoder, &sig)?;
    }
    if let Some(taesd) = &dir.taesd_decoder {
        let sig = read(taesd)?;
        if sig.inputs.is_empty() {
            return Err(graph_err(taesd, "graph has no inputs".into()));
        }
    }
    let dtype = match unet.float_type() {
        Some(ElemType::Float16) => "fp16".to_string(),
        Some(ElemType::Float32) | None => "fp32".to_string(),
        Some(other) => other.name(),
    };
    let (side, _) = dir.native_size();
    Ok(ModelSummary {
        root: dir.root.clone(),
        name: dir.name.clone(),
        unet_in_channels,
        lcm_distilled,
        dtype,
        taesd: dir.taesd_decoder.is_some(),
        taesd_encoder: dir.taesd_encoder.is_some(),
        vae_encoder: dir.vae_encoder.is_some(),
        native_side: side,
        bytes,
        lcm_scheduler: dir.scheduler_config.class_name == "LCMScheduler",
        layout: dir.layout,
        encoder_samples,
    })
}

/// "1.9 GiB", "512 KiB", …
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}
