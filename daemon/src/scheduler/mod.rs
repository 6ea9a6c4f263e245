//! Noise schedulers (samplers): the timestep plan and the update rule of the denoising loop.
//!
//! Exists so pipelines drive any sampler through one trait (as candle's and pykeio/diffusers'
//! schedulers do), and so a request's choice of sampler and spacing becomes a planned scheduler
//! in one place (`plan`). One file per sampler, each with the math of its diffusers class as
//! `from_config(<the model's scheduler_config.json>)` builds it: `lcm` (LCMScheduler), `tcd`
//! (TCDScheduler), `euler` (EulerDiscreteScheduler), `euler_a` (EulerAncestralDiscreteScheduler),
//! `dpmpp_2m` (DPMSolverMultistepScheduler, DPM-Solver++ 2M), `ddim` (DDIMScheduler); `schedule`
//! holds the arithmetic they share. Strength (img2img / inpaint) is diffusers' pipelines' rule
//! for all of them: plan the full-strength schedule, run its last `floor(steps × strength)`
//! steps (at least one), starting from the image noised to the first of them.
//!
//! Not supported (diffusers' defaults are used, whatever the config says): `trained_betas`,
//! `rescale_betas_zero_snr`, `thresholding`, `interpolation_type`, `final_sigmas_type`,
//! `solver_order` / `algorithm_type` other than 2 / `dpmsolver++`, and the exponential, beta or
//! Lu-lambda sigmas.

pub mod ddim;
pub mod dpmpp_2m;
pub mod euler;
pub mod euler_a;
pub mod lcm;
pub mod schedule;
pub mod tcd;

pub use ddim::DdimScheduler;
pub use dpmpp_2m::DpmSolverScheduler;
pub use euler::EulerScheduler;
pub use euler_a::EulerAncestralScheduler;
pub use lcm::LcmScheduler;
pub use livefill_protocol::{Sampler, Spacing};
pub use tcd::TcdScheduler;

use crate::onnx::configs::{SchedulerConfig, TimestepSpacing};

/// A sampler planned for one job.
pub trait Scheduler: Send {
    /// The model timesteps this job runs, in order (fractional for Euler's Karras sigmas, as
    /// diffusers feeds them to the UNet).
    fn timesteps(&self) -> &[f64];

    /// Factor applied to the initial noise when starting from pure noise.
    fn init_noise_sigma(&self) -> f32 {
        1.0
    }

    /// The factor diffusers' `scale_model_input` applies to the sample before the UNet call of
    /// step `index` (`1/√(σ²+1)` for Euler; 1 for the others).
    fn input_scale(&self, _index: usize) -> f32 {
        1.0
    }

    /// Forward diffusion: `original` noised to the level of step `index` of this plan (index 0:
    /// the start of an img2img run; after step `i`, `i + 1`).
    fn add_noise(&self, original: &[f32], noise: &[f32], index: usize) -> Vec<f32>;

    /// Whether step `index` (into `timesteps()`) draws fresh noise.
    fn needs_noise(&self, index: usize) -> bool;

    /// One update: the model's output at step `index` turns `sample` into the next sample.
    /// `noise` must be present exactly when `needs_noise(index)`. Steps run in order, once each
    /// (multistep samplers keep earlier outputs).
    fn step(
        &mut self,
        index: usize,
        model_output: &[f32],
        sample: &[f32],
        noise: Option<&[f32]>,
    ) -> Vec<f32>;
}

/// A request's sampler, resolved against the model: which one, its spacing (`None` = the
/// model's `scheduler_config.json`) and its η / γ (`None` = the sampler's default).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplerChoice {
    pub sampler: Sampler,
    pub spacing: Option<Spacing>,
    pub eta: Option<f32>,
}

/// DDIM's default η: deterministic.
pub const DEFAULT_DDIM_ETA: f32 = 0.0;
/// TCD's default γ (diffusers' `TCDScheduler.step(eta=0.3)`).
pub const DEFAULT_TCD_GAMMA: f32 = 0.3;

impl SamplerChoice {
    /// The sampler with the model config's spacing and its default η.
    pub fn new(sampler: Sampler) -> Self {
        Self {
            sampler,
            spacing: None,
            eta: None,
        }
    }

    /// η for DDIM, γ for TCD (0 for the others, which have none).
    pub fn eta(&self) -> f32 {
        match self.sampler {
            Sampler::Ddim => self.eta.unwrap_or(DEFAULT_DDIM_ETA),
            Sampler::Tcd => self.eta.unwrap_or(DEFAULT_TCD_GAMMA),
            _ => 0.0,
        }
    }
}

/// What a model runs when a request names no sampler, and the steps and guidance that go with it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelDefaults {
    pub choice: SamplerChoice,
    pub steps: u32,
    pub guidance: f32,
}

impl ModelDefaults {
    /// LCM, 4 steps, guidance 1.
    pub const LCM: Self = Self {
        choice: SamplerChoice {
            sampler: Sampler::Lcm,
            spacing: None,
            eta: None,
        },
        steps: 4,
        guidance: 1.0,
    };
    /// DPM++ 2M with Karras sigmas, 20 steps, guidance 7.
    pub const QUALITY: Self = Self {
        choice: SamplerChoice {
            sampler: Sampler::Dpmpp2m,
            spacing: Some(Spacing::Karras),
            eta: None,
        },
        steps: 20,
        guidance: 7.0,
    };

    /// An LCM-distilled UNet (it has a guidance embedding) or an `LCMScheduler` config → LCM;
    /// any other model → DPM++ 2M Karras.
    pub fn for_model(config: &SchedulerConfig, lcm_distilled_unet: bool) -> Self {
        if lcm_distilled_unet || config.class_name == "LCMScheduler" {
            Self::LCM
        } else {
            Self::QUALITY
        }
    }

    /// Steps and guidance for a request naming `sampler` on this model: the model's own when it
    /// names none (or the model's default sampler); 4 / 1 for the consistency samplers; 20 / 7
    /// for the others.
    pub fn steps_and_guidance(&self, sampler: Option<Sampler>) -> (u32, f32) {
        match sampler {
            None => (self.steps, self.guidance),
            Some(s) if s == self.choice.sampler => (self.steps, self.guidance),
            Some(Sampler::Lcm | Sampler::Tcd) => (Self::LCM.steps, Self::LCM.guidance),
            Some(_) => (Self::QUALITY.steps, Self::QUALITY.guidance),
        }
    }
}

impl Default for ModelDefaults {
    fn default() -> Self {
        Self::LCM
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("steps must be between 1 and {max} for {sampler} (got {got})")]
    Steps {
        sampler: Sampler,
        got: usize,
        max: usize,
    },
    #[error("strength must be in (0, 1] (got {0})")]
    Strength(f32),
    #[error("{what} must be in [0, 1] (got {got})")]
    Eta { what: &'static str, got: f32 },
    #[error("spacing {spacing} does not apply to {sampler}")]
    Spacing { sampler: Sampler, spacing: Spacing },
}

/// diffusers' `timestep_spacing` and `use_karras_sigmas` for one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spread {
    pub spacing: TimestepSpacing,
    pub karras: bool,
}

/// The spread a sampler runs with: the requested spacing, else the config's (`from_config`:
/// the config's `timestep_spacing`, or the sampler's own default when the config has none;
/// `use_karras_sigmas` for Euler and DPM++). `Karras` keeps the config's `timestep_spacing`,
/// which Euler still uses for its range and initial noise.
pub fn spread(
    config: &SchedulerConfig,
    sampler: Sampler,
    requested: Option<Spacing>,
) -> Result<Spread, ScheduleError> {
    let own = match sampler {
        Sampler::Lcm | Sampler::Tcd | Sampler::Ddim => TimestepSpacing::Leading,
        Sampler::Euler | Sampler::EulerA | Sampler::Dpmpp2m => TimestepSpacing::Linspace,
    };
    let configured = config.timestep_spacing.as_ref().map_or(own, |v| v.get());
    let refuse = |spacing| ScheduleError::Spacing { sampler, spacing };
    match requested {
        None => Ok(Spread {
            spacing: configured,
            karras: matches!(sampler, Sampler::Euler | Sampler::Dpmpp2m)
                && config.use_karras_sigmas.unwrap_or(false),
        }),
        // LCM and TCD pick from their own `original_inference_steps` schedule.
        Some(spacing) if matches!(sampler, Sampler::Lcm | Sampler::Tcd) => Err(refuse(spacing)),
        Some(Spacing::Karras) if !sampler.is_sigma_based() => Err(refuse(Spacing::Karras)),
        Some(Spacing::Karras) => Ok(Spread {
            spacing: configured,
            karras: true,
        }),
        Some(spacing) => Ok(Spread {
            spacing: match spacing {
                Spacing::Leading => TimestepSpacing::Leading,
                Spacing::Trailing => TimestepSpacing::Trailing,
                Spacing::Linspace | Spacing::Karras => TimestepSpacing::Linspace,
            },
            karras: false,
        }),
    }
}

/// Plan `choice` for `steps` steps at `strength` (1.0 = from pure noise) on a model with this
/// scheduler config.
pub fn plan(
    config: &SchedulerConfig,
    choice: &SamplerChoice,
    steps: usize,
    strength: f32,
) -> Result<Box<dyn Scheduler>, ScheduleError> {
    if !(strength > 0.0 && strength <= 1.0) {
        return Err(ScheduleError::Strength(strength));
    }
    let max = match choice.sampler {
        Sampler::Lcm | Sampler::Tcd => config.original_inference_steps,
        _ => config.num_train_timesteps,
    };
    if steps == 0 || steps > max {
        return Err(ScheduleError::Steps {
            sampler: choice.sampler,
            got: steps,
            max,
        });
    }
    let eta = choice.eta();
    if !(0.0..=1.0).contains(&eta) {
        let what = if choice.sampler == Sampler::Tcd {
            "gamma"
        } else {
            "eta"
        };
        return Err(ScheduleError::Eta { what, got: eta });
    }
    let spread = spread(config, choice.sampler, choice.spacing)?;
    Ok(match choice.sampler {
        Sampler::Lcm => Box::new(LcmScheduler::new(config, steps, strength)),
        Sampler::Tcd => Box::new(TcdScheduler::new(config, steps, strength, eta)),
        Sampler::Euler => Box::new(EulerScheduler::new(config, spread, steps, strength)),
        Sampler::EulerA => Box::new(EulerAncestralScheduler::new(
            config, spread, steps, strength,
        )),
        Sampler::Dpmpp2m => Box::new(DpmSolverScheduler::new(config, spread, steps, strength)),
        Sampler::Ddim => Box::new(DdimScheduler::new(config, spread, steps, strength, eta)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> SchedulerConfig {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn defaults_follow_the_model() {
        let lcm = config(r#"{"_class_name": "LCMScheduler"}"#);
        let pndm = config(r#"{"_class_name": "PNDMScheduler"}"#);
        assert_eq!(ModelDefaults::for_model(&lcm, false), ModelDefaults::LCM);
        assert_eq!(ModelDefaults::for_model(&pndm, true), ModelDefaults::LCM);
        let quality = ModelDefaults::for_model(&pndm, false);
        assert_eq!(quality.choice.sampler, Sampler::Dpmpp2m);
        assert_eq!(quality.choice.spacing, Some(Spacing::Karras));
        assert_eq!((quality.steps, quality.guidance), (20, 7.0));
        assert_eq!(quality.steps_and_guidance(Some(Sampler::Tcd)), (4, 1.0));
        assert_eq!(
            ModelDefaults::LCM.steps_and_guidance(Some(Sampler::Euler)),
            (20, 7.0)
        );
    }

    #[test]
    fn spacing_comes_from_the_config_like_from_config() {
        let plain = config("{}");
        let trailing = config(r#"{"timestep_spacing": "trailing", "use_karras_sigmas": true}"#);
        let s = |c, sampler, req| spread(c, sampler, req).unwrap();
        assert_eq!(
            s(&plain, Sampler::Ddim, None).spacing,
            TimestepSpacing::Leading
        );
        assert_eq!(
            s(&plain, Sampler::Euler, None).spacing,
            TimestepSpacing::Linspace
        );
        assert_eq!(
            s(&trailing, Sampler::Ddim, None).spacing,
            TimestepSpacing::Trailing
        );
        assert!(s(&trailing, Sampler::Dpmpp2m, None).karras);
        assert!(!s(&trailing, Sampler::EulerA, None).karras);
        let karras = s(&plain, Sampler::Euler, Some(Spacing::Karras));
        assert_eq!(
            karras,
            Spread {
                spacing: TimestepSpacing::Linspace,
                karras: true
            }
        );
        assert!(spread(&plain, Sampler::Ddim, Some(Spacing::Karras)).is_err());
        assert!(spread(&plain, Sampler::Lcm, Some(Spacing::Trailing)).is_err());
    }

    #[test]
    fn plan_refuses_bad_parameters() {
        let c = SchedulerConfig::default();
        let lcm = SamplerChoice::new(Sampler::Lcm);
        assert!(plan(&c, &lcm, 0, 1.0).is_err());
        assert!(plan(&c, &lcm, 51, 1.0).is_err());
        assert!(plan(&c, &lcm, 4, 0.0).is_err());
        assert!(plan(&c, &lcm, 4, f32::NAN).is_err());
        let ddim = SamplerChoice {
            eta: Some(1.5),
            ..SamplerChoice::new(Sampler::Ddim)
        };
        assert!(plan(&c, &ddim, 10, 1.0).is_err());
        assert!(plan(&c, &SamplerChoice::new(Sampler::Euler), 60, 1.0).is_ok());
    }
}
