//! What diffusers' legacy ONNX export leaves out, recovered from its graphs.
//!
//! Exists because most ONNX Stable Diffusion folders people can download (the `onnx` branch of
//! SD 1.5, `TheyCallMeHex/LCM-Dreamshaper-V7-ONNX`, the `TensorStack/*-onnx` repos) were written
//! by diffusers' legacy converter (`convert_stable_diffusion_checkpoint_to_onnx.py`, saved by
//! `OnnxStableDiffusionPipeline.save_pretrained`): `model_index.json` names `OnnxRuntimeModel`
//! components and no component folder has a `config.json`. The values livefill needs from those
//! configs come from the graphs' declared shapes where a graph fixes them, from the pipeline
//! class in `model_index.json` (inpainting or not), and otherwise are SD 1.5's.

use std::path::Path;

use serde::Deserialize;

use super::configs::{ModelDirError, UnetConfig, VaeConfig, read_json};
use super::header::{self, GraphSignature};

/// SD 1.5's latent side (512 px / 8).
const SD15_SAMPLE_SIZE: usize = 64;
/// SD 1.5's latent channels.
const SD15_LATENT_CHANNELS: usize = 4;
/// The guidance-embedding width of LCM-distilled SD 1.5 UNets (LCM Dreamshaper v7).
const LCM_TIME_COND_PROJ_DIM: usize = 256;

/// Which exporter wrote the folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// optimum (`optimum-cli export onnx`) or livefill's own exporter: one `config.json` per
    /// component.
    Optimum,
    /// diffusers' legacy converter: `OnnxRuntimeModel` components, no component configs.
    DiffusersLegacy,
}

impl Layout {
    pub fn describe(self) -> &'static str {
        match self {
            Layout::Optimum => "optimum ONNX layout",
            Layout::DiffusersLegacy => "diffusers legacy ONNX layout",
        }
    }
}

/// The parts of `model_index.json` that tell the layouts apart.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ModelIndex {
    #[serde(rename = "_class_name", default)]
    pub class_name: String,
    /// `["diffusers", "OnnxRuntimeModel"]` in the legacy layout.
    #[serde(default)]
    pub unet: Option<(Option<String>, Option<String>)>,
}

impl ModelIndex {
    /// `model_index.json` of `root`, or an empty index when the folder has none.
    pub fn read(root: &Path) -> Result<Self, ModelDirError> {
        let path = root.join("model_index.json");
        if path.is_file() {
            read_json(&path)
        } else {
            Ok(Self::default())
        }
    }

    /// The legacy converter's layout: ONNX Runtime components, or a pipeline class named Onnx….
    pub fn is_legacy(&self) -> bool {
        let unet_is_ort =
            matches!(&self.unet, Some((_, Some(class))) if class == "OnnxRuntimeModel");
        unet_is_ort || self.class_name.starts_with("Onnx")
    }

    /// The pipeline class is an inpainting one (a 9-channel UNet).
    pub fn is_inpainting(&self) -> bool {
        self.class_name.contains("Inpaint")
    }
}

/// The layout `model_index.json` describes (a folder without configs and without a legacy
/// index is a damaged optimum export, reported as such by `ModelDir::open`).
pub fn detect(index: &ModelIndex) -> Layout {
    if index.is_legacy() {
        Layout::DiffusersLegacy
    } else {
        Layout::Optimum
    }
}

fn signature(path: &Path) -> Result<GraphSignature, ModelDirError> {
    header::read_signature(path).map_err(|e| ModelDirError::Invalid {
        path: path.to_path_buf(),
        problem: format!("cannot read the graph to recover its config: {e}"),
    })
}

/// `unet/config.json` as the UNet graph (and the pipeline class) imply it.
pub fn unet_config(unet: &Path, index: &ModelIndex) -> Result<UnetConfig, ModelDirError> {
    let graph = signature(unet)?;
    let Some(sample) = graph.input("sample") else {
        return Err(ModelDirError::Invalid {
            path: unet.to_path_buf(),
            problem: format!(
                "graph has no input named \"sample\" (inputs: {}) — not an SD UNet",
                graph.input_names()
            ),
        });
    };
    let fixed = |dim: usize| sample.fixed_dim(dim).filter(|&v| v > 0).map(|v| v as usize);
    let in_channels = fixed(1).unwrap_or(if index.is_inpainting() { 9 } else { 4 });
    let time_cond_proj_dim = graph.input("timestep_cond").map(|cond| {
        cond.fixed_dim(1)
            .filter(|&v| v > 0)
            .map_or(LCM_TIME_COND_PROJ_DIM, |v| v as usize)
    });
    Ok(UnetConfig {
        in_channels,
        sample_size: fixed(2).unwrap_or(SD15_SAMPLE_SIZE),
        time_cond_proj_dim,
    })
}

/// `vae_decoder/config.json` as the decoder graph implies it (SD 1.5's scaling factor and
/// 8× scale: a graph does not tell them).
pub fn vae_config(vae_decoder: &Path) -> Result<VaeConfig, ModelDirError> {
    let graph = signature(vae_decoder)?;
    let latent_channels = graph
        .input("latent_sample")
        .and_then(|latent| latent.fixed_dim(1))
        .filter(|&v| v > 0)
        .map_or(SD15_LATENT_CHANNELS, |v| v as usize);
    Ok(VaeConfig {
        latent_channels,
        ..VaeConfig::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_legacy_index_is_recognised() {
        let legacy: ModelIndex = serde_json::from_str(
            r#"{"_class_name": "OnnxStableDiffusionInpaintPipeline",
                "unet": ["diffusers", "OnnxRuntimeModel"], "safety_checker": [null, null]}"#,
        )
        .unwrap();
        assert!(legacy.is_legacy());
        assert!(legacy.is_inpainting());
        let optimum: ModelIndex = serde_json::from_str(
            r#"{"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"]}"#,
        )
        .unwrap();
        assert!(!optimum.is_legacy());
        assert!(!optimum.is_inpainting());
    }
}
