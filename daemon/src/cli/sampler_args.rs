//! The command-line flags that choose the sampler and its budget, shared by `generate` and
//! `bench`: `--sampler`, `--spacing`, `--eta`, `--steps`, `--guidance`.
//!
//! Exists so both commands name samplers and spacings the same way as the protocol and the
//! plugins (`Sampler::as_str`), and fill the steps and guidance a run leaves out from the model
//! (`ModelDefaults`: LCM 4 / 1, DPM++ 2M Karras 20 / 7), as the daemon's hello announces them.

use clap::Args;
use livefill_protocol::{Capabilities, GenerateRequest, Sampler, Spacing};

use crate::scheduler::{ModelDefaults, SamplerChoice};

#[derive(Debug, Clone, Args)]
pub struct SamplerArgs {
    /// lcm, tcd, euler, euler_a, dpmpp_2m or ddim (default: the model's; lcm for LCM models,
    /// dpmpp_2m with Karras sigmas for the others).
    #[arg(long, value_parser = parse_sampler)]
    pub sampler: Option<Sampler>,
    /// leading, trailing, linspace, or karras (Karras sigmas: euler, euler_a, dpmpp_2m) (default:
    /// the model's scheduler_config.json, as diffusers' from_config does).
    #[arg(long, value_parser = parse_spacing)]
    pub spacing: Option<Spacing>,
    /// DDIM's eta (default 0) or TCD's gamma (default 0.3), in [0, 1].
    #[arg(long)]
    pub eta: Option<f32>,
    /// Denoising steps (default: the model's, or the sampler's: 4 for lcm/tcd, 20 otherwise).
    #[arg(long)]
    pub steps: Option<u32>,
    /// Guidance scale (default: 1 for lcm/tcd, 7 otherwise).
    #[arg(long)]
    pub guidance: Option<f32>,
}

fn parse_sampler(text: &str) -> Result<Sampler, String> {
    Sampler::from_name(text).ok_or_else(|| {
        let names: Vec<&str> = Sampler::ALL.iter().map(|s| s.as_str()).collect();
        format!("unknown sampler {text:?} (one of {})", names.join(", "))
    })
}

fn parse_spacing(text: &str) -> Result<Spacing, String> {
    Spacing::from_name(text).ok_or_else(|| {
        let names: Vec<&str> = Spacing::ALL.iter().map(|s| s.as_str()).collect();
        format!("unknown spacing {text:?} (one of {})", names.join(", "))
    })
}

/// The model defaults a daemon announces in its hello (those of the model its hello names).
pub fn announced_defaults(caps: &Capabilities) -> ModelDefaults {
    ModelDefaults {
        choice: SamplerChoice {
            sampler: caps.default_sampler,
            spacing: caps.default_spacing,
            eta: None,
        },
        steps: caps.default_steps,
        guidance: caps.default_guidance,
    }
}

impl SamplerArgs {
    /// Steps and guidance for this run on a model with these defaults.
    pub fn budget(&self, defaults: &ModelDefaults) -> (u32, f32) {
        let (steps, guidance) = defaults.steps_and_guidance(self.sampler);
        (
            self.steps.unwrap_or(steps),
            self.guidance.unwrap_or(guidance),
        )
    }

    /// Write the sampler fields and the budget into `request`.
    pub fn apply(&self, request: &mut GenerateRequest, defaults: &ModelDefaults) {
        let (steps, guidance) = self.budget(defaults);
        request.steps = steps;
        request.guidance = guidance;
        request.sampler = self.sampler;
        request.spacing = self.spacing;
        request.eta = self.eta;
    }

    /// "dpmpp_2m karras, 20 steps, guidance 7" (what a run on a model with `defaults` does).
    pub fn describe(&self, defaults: &ModelDefaults) -> String {
        let sampler = self.sampler.unwrap_or(defaults.choice.sampler);
        let spacing = match (self.sampler, self.spacing) {
            (_, Some(spacing)) => Some(spacing),
            (None, None) => defaults.choice.spacing,
            (Some(_), None) => None,
        };
        let (steps, guidance) = self.budget(defaults);
        let spacing = spacing.map_or(String::new(), |s| format!(" {s}"));
        format!("{sampler}{spacing}, {steps} steps, guidance {guidance}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(sampler: Option<Sampler>, steps: Option<u32>) -> SamplerArgs {
        SamplerArgs {
            sampler,
            spacing: None,
            eta: None,
            steps,
            guidance: None,
        }
    }

    #[test]
    fn budget_follows_model_then_sampler_then_flags() {
        let quality = ModelDefaults::QUALITY;
        assert_eq!(args(None, None).budget(&quality), (20, 7.0));
        assert_eq!(args(Some(Sampler::Lcm), None).budget(&quality), (4, 1.0));
        assert_eq!(args(Some(Sampler::Lcm), Some(6)).budget(&quality), (6, 1.0));
        assert_eq!(
            args(None, None).describe(&quality),
            "dpmpp_2m karras, 20 steps, guidance 7"
        );
        assert_eq!(parse_sampler("euler_a"), Ok(Sampler::EulerA));
        assert!(parse_sampler("euler-a").unwrap_err().contains("dpmpp_2m"));
        assert_eq!(parse_spacing("karras"), Ok(Spacing::Karras));
    }
}
