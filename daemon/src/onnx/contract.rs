//! The inputs each graph of a Stable Diffusion pipeline must declare.
//!
//! Exists so the contract between livefill's pipelines and a model's graphs is written once and
//! checked the same way, with the same messages, wherever a graph is looked at: by
//! `models::inspect` from the file's header (no ONNX Runtime), and by the pipelines when the
//! sessions are loaded.

use std::path::{Path, PathBuf};

use super::configs::UnetConfig;

/// What a graph declares about its inputs, whichever way it was read.
pub trait DeclaredInputs {
    fn has_input(&self, name: &str) -> bool;
    /// The input names, comma-separated, for messages.
    fn input_names(&self) -> String;
    /// The size the graph fixes for dimension `dim` of input `name` (`None`: open or absent).
    fn fixed_input_dim(&self, name: &str, dim: usize) -> Option<i64>;
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ContractError {
    #[error(
        "{path}: graph has no input named {name:?} (inputs: {available}) — not the graph this \
         component of an SD pipeline needs"
    )]
    MissingInput {
        path: PathBuf,
        name: &'static str,
        available: String,
    },
    #[error(
        "{path}: graph takes {graph} channels but unet/config.json says in_channels = {config}"
    )]
    UnetChannels {
        path: PathBuf,
        graph: i64,
        config: usize,
    },
}

fn require(
    path: &Path,
    graph: &impl DeclaredInputs,
    names: &[&'static str],
) -> Result<(), ContractError> {
    match names.iter().find(|name| !graph.has_input(name)) {
        None => Ok(()),
        Some(name) => Err(ContractError::MissingInput {
            path: path.to_path_buf(),
            name,
            available: graph.input_names(),
        }),
    }
}

/// The text encoder takes token ids.
pub fn check_text_encoder(path: &Path, graph: &impl DeclaredInputs) -> Result<(), ContractError> {
    require(path, graph, &["input_ids"])
}

/// The UNet takes latents, a timestep and text embeddings (and the guidance embedding when its
/// config says it is LCM-distilled), with as many latent channels as its config says. Returns
/// the number of input channels.
pub fn check_unet(
    path: &Path,
    graph: &impl DeclaredInputs,
    config: &UnetConfig,
) -> Result<usize, ContractError> {
    require(
        path,
        graph,
        &["sample", "timestep", "encoder_hidden_states"],
    )?;
    if config.time_cond_proj_dim.is_some() {
        require(path, graph, &["timestep_cond"])?;
    }
    match graph.fixed_input_dim("sample", 1).filter(|&c| c > 0) {
        Some(c) if c as usize != config.in_channels => Err(ContractError::UnetChannels {
            path: path.to_path_buf(),
            graph: c,
            config: config.in_channels,
        }),
        _ => Ok(config.in_channels),
    }
}

/// The VAE decoder takes latents.
pub fn check_vae_decoder(path: &Path, graph: &impl DeclaredInputs) -> Result<(), ContractError> {
    require(path, graph, &["latent_sample"])
}

/// The VAE encoder takes an image.
pub fn check_vae_encoder(path: &Path, graph: &impl DeclaredInputs) -> Result<(), ContractError> {
    require(path, graph, &["sample"])
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Inputs(Vec<(&'static str, Vec<i64>)>);

    impl DeclaredInputs for Inputs {
        fn has_input(&self, name: &str) -> bool {
            self.0.iter().any(|(n, _)| *n == name)
        }
        fn input_names(&self) -> String {
            self.0
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        }
        fn fixed_input_dim(&self, name: &str, dim: usize) -> Option<i64> {
            let (_, shape) = self.0.iter().find(|(n, _)| *n == name)?;
            shape.get(dim).copied().filter(|&d| d >= 0)
        }
    }

    fn config(in_channels: usize, distilled: bool) -> UnetConfig {
        serde_json::from_value(serde_json::json!({
            "in_channels": in_channels,
            "time_cond_proj_dim": if distilled { Some(256) } else { None },
        }))
        .unwrap()
    }

    fn unet(channels: i64) -> Inputs {
        Inputs(vec![
            ("sample", vec![-1, channels, -1, -1]),
            ("timestep", vec![-1]),
            ("encoder_hidden_states", vec![-1, 77, 768]),
        ])
    }

    #[test]
    fn a_complete_unet_passes_with_its_channels() {
        let path = Path::new("unet/model.onnx");
        assert_eq!(check_unet(path, &unet(9), &config(9, false)).unwrap(), 9);
        assert_eq!(check_unet(path, &unet(-1), &config(4, false)).unwrap(), 4);
    }

    #[test]
    fn a_missing_input_names_the_file_the_input_and_what_is_there() {
        let path = Path::new("unet/model.onnx");
        let err = check_unet(path, &unet(4), &config(4, true)).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("unet/model.onnx: graph has no input named \"timestep_cond\""));
        assert!(
            text.contains("inputs: sample, timestep, encoder_hidden_states"),
            "{text}"
        );
        let vae = Inputs(vec![("latents", vec![])]);
        assert!(check_vae_decoder(path, &vae).is_err());
    }

    #[test]
    fn channels_that_disagree_with_the_config_are_refused() {
        let err = check_unet(Path::new("u"), &unet(9), &config(4, false)).unwrap_err();
        assert!(err.to_string().contains("graph takes 9 channels"), "{err}");
    }
}
