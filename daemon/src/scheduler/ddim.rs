//! DDIM, with the math of diffusers' `DDIMScheduler`.
//!
//! Exists as the classic deterministic sampler (η = 0) and its stochastic family (η > 0 adds
//! noise of `η·σ_t` at every step, drawn at every step as diffusers does). Each step predicts
//! x̂₀ and ε, then moves to the previous timestep `t − T/n` (diffusers' rule, whatever the
//! spacing; past 0 it uses `final_alpha_cumprod`). `clip_sample` defaults to on for DDIM when
//! the config does not say (diffusers' DDIM default); Stable Diffusion configs turn it off.

use super::schedule::{
    alphas_cumprod, ddpm_add_noise, kept_steps, leading, np_linspace, np_round, trailing,
};
use super::{Scheduler, Spread};
use crate::onnx::configs::{PredictionType, SchedulerConfig, TimestepSpacing};

/// DDIM planned for one job.
#[derive(Debug, Clone)]
pub struct DdimScheduler {
    prediction: PredictionType,
    alphas_cumprod: Vec<f64>,
    final_alpha_cumprod: f64,
    clip: Option<f64>,
    eta: f32,
    /// `T // n`: the distance to the previous timestep.
    stride: i64,
    timesteps: Vec<f64>,
}

impl DdimScheduler {
    pub fn new(
        config: &SchedulerConfig,
        spread: Spread,
        steps: usize,
        strength: f32,
        eta: f32,
    ) -> Self {
        let train = config.num_train_timesteps;
        let full: Vec<f64> = match spread.spacing {
            TimestepSpacing::Linspace => np_linspace(0.0, (train - 1) as f64, steps)
                .into_iter()
                .map(np_round)
                .rev()
                .collect(),
            TimestepSpacing::Leading => leading(train, steps, config.steps_offset.unwrap_or(0)),
            TimestepSpacing::Trailing => trailing(train, steps),
        };
        let alphas_cumprod = alphas_cumprod(config);
        let final_alpha_cumprod = if config.set_alpha_to_one {
            1.0
        } else {
            alphas_cumprod[0]
        };
        let keep = kept_steps(steps, strength);
        Self {
            prediction: config.prediction_type.get(),
            alphas_cumprod,
            final_alpha_cumprod,
            clip: config
                .clip_sample
                .unwrap_or(true)
                .then_some(config.clip_sample_range),
            eta,
            stride: (train / steps) as i64,
            timesteps: full[steps - keep..].to_vec(),
        }
    }

    fn alpha(&self, timestep: i64) -> f64 {
        if timestep >= 0 {
            self.alphas_cumprod[timestep as usize]
        } else {
            self.final_alpha_cumprod
        }
    }
}

impl Scheduler for DdimScheduler {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn add_noise(&self, original: &[f32], noise: &[f32], index: usize) -> Vec<f32> {
        ddpm_add_noise(original, noise, self.alpha(self.timesteps[index] as i64))
    }

    fn needs_noise(&self, _index: usize) -> bool {
        self.eta > 0.0
    }

    fn step(
        &mut self,
        index: usize,
        model_output: &[f32],
        sample: &[f32],
        noise: Option<&[f32]>,
    ) -> Vec<f32> {
        let t = self.timesteps[index] as i64;
        let alpha_t = self.alpha(t);
        let alpha_prev = self.alpha(t - self.stride);
        let (sqrt_a, sqrt_b) = (alpha_t.sqrt(), (1.0 - alpha_t).sqrt());
        let variance = (1.0 - alpha_prev) / (1.0 - alpha_t) * (1.0 - alpha_t / alpha_prev);
        let std_dev = self.eta as f64 * variance.sqrt();
        let direction = (1.0 - alpha_prev - std_dev * std_dev).max(0.0).sqrt();
        let noise = noise.filter(|_| self.eta > 0.0);
        (0..sample.len())
            .map(|i| {
                let (x, m) = (sample[i] as f64, model_output[i] as f64);
                let (mut x0, eps) = match self.prediction {
                    PredictionType::Epsilon => ((x - sqrt_b * m) / sqrt_a, m),
                    PredictionType::Sample => (m, (x - sqrt_a * m) / sqrt_b),
                    PredictionType::VPrediction => {
                        (sqrt_a * x - sqrt_b * m, sqrt_a * m + sqrt_b * x)
                    }
                };
                if let Some(range) = self.clip {
                    x0 = x0.clamp(-range, range);
                }
                let mut prev = alpha_prev.sqrt() * x0 + direction * eps;
                if let Some(noise) = noise {
                    prev += std_dev * noise[i] as f64;
                }
                prev as f32
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sd() -> SchedulerConfig {
        serde_json::from_str(
            r#"{"_class_name": "PNDMScheduler", "beta_start": 0.00085, "beta_end": 0.012,
                "beta_schedule": "scaled_linear", "steps_offset": 1, "clip_sample": false,
                "timestep_spacing": "leading"}"#,
        )
        .unwrap()
    }

    fn plan(spacing: TimestepSpacing, steps: usize) -> Vec<f64> {
        let spread = Spread {
            spacing,
            karras: false,
        };
        DdimScheduler::new(&sd(), spread, steps, 1.0, 0.0).timesteps
    }

    /// `DDIMScheduler.from_config(sd, timestep_spacing=…)`, `set_timesteps(n)`: what diffusers
    /// 0.42 prints.
    #[test]
    fn plans_match_diffusers() {
        assert_eq!(
            plan(TimestepSpacing::Leading, 10),
            vec![
                901.0, 801.0, 701.0, 601.0, 501.0, 401.0, 301.0, 201.0, 101.0, 1.0
            ]
        );
        assert_eq!(
            plan(TimestepSpacing::Trailing, 4),
            vec![999.0, 749.0, 499.0, 249.0]
        );
        assert_eq!(
            plan(TimestepSpacing::Linspace, 4),
            vec![999.0, 666.0, 333.0, 0.0]
        );
        assert_eq!(
            plan(TimestepSpacing::Trailing, 3),
            vec![999.0, 666.0, 332.0]
        );
    }

    #[test]
    fn eta_zero_is_deterministic_and_clip_defaults_on() {
        let spread = Spread {
            spacing: TimestepSpacing::Leading,
            karras: false,
        };
        let s = DdimScheduler::new(&sd(), spread, 4, 1.0, 0.0);
        assert!(!s.needs_noise(0) && s.clip.is_none());
        let plain = DdimScheduler::new(&SchedulerConfig::default(), spread, 4, 1.0, 0.5);
        assert!(plain.needs_noise(3) && plain.clip == Some(1.0));
    }
}
