//! The Latent Consistency Model scheduler, with the math of diffusers' `LCMScheduler`.
//!
//! Exists because LCM (distilled models or LCM-LoRA) denoises in 2–4 steps. Timesteps come from a
//! 50-step "original" DDIM-like schedule (`original_inference_steps`), spaced evenly; each step
//! predicts the clean sample with boundary-condition scalings `c_skip`/`c_out`, then re-noises it
//! to the next timestep with fresh noise (except after the last step).
//!
//! Strength (img2img / inpaint) follows diffusers' img2img and inpaint pipelines, which plan the
//! full-strength schedule and then keep its tail: `init = min(floor(steps × strength), steps)`,
//! the last `init` timesteps run. livefill keeps at least one step (diffusers raises instead).

use super::Scheduler;
use super::schedule::{alphas_cumprod, consistency_timesteps, ddpm_add_noise, kept_steps};
use crate::onnx::configs::{PredictionType, SchedulerConfig};

/// LCM planned for one job.
#[derive(Debug, Clone)]
pub struct LcmScheduler {
    config: SchedulerConfig,
    alphas_cumprod: Vec<f64>,
    final_alpha_cumprod: f64,
    timesteps: Vec<f64>,
}

impl LcmScheduler {
    /// Plan `steps` steps (1..=`original_inference_steps`, checked by `scheduler::plan`) at
    /// `strength` (1.0 = from pure noise).
    pub fn new(config: &SchedulerConfig, steps: usize, strength: f32) -> Self {
        let alphas_cumprod = alphas_cumprod(config);
        let final_alpha_cumprod = if config.set_alpha_to_one {
            1.0
        } else {
            alphas_cumprod[0]
        };
        let full = consistency_timesteps(config, steps);
        let keep = kept_steps(steps, strength);
        Self {
            config: config.clone(),
            alphas_cumprod,
            final_alpha_cumprod,
            timesteps: full[steps - keep..].to_vec(),
        }
    }

    fn alpha(&self, timestep: f64) -> f64 {
        if timestep >= 0.0 {
            self.alphas_cumprod[timestep as usize]
        } else {
            self.final_alpha_cumprod
        }
    }

    /// diffusers' `get_scalings_for_boundary_condition_discrete` (sigma_data = 0.5).
    fn boundary_scalings(&self, timestep: f64) -> (f64, f64) {
        let sigma_data = 0.5f64;
        let scaled = timestep * self.config.timestep_scaling;
        let c_skip = sigma_data * sigma_data / (scaled * scaled + sigma_data * sigma_data);
        let c_out = scaled / (scaled * scaled + sigma_data * sigma_data).sqrt();
        (c_skip, c_out)
    }
}

impl Scheduler for LcmScheduler {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn add_noise(&self, original: &[f32], noise: &[f32], index: usize) -> Vec<f32> {
        ddpm_add_noise(original, noise, self.alpha(self.timesteps[index]))
    }

    fn needs_noise(&self, index: usize) -> bool {
        index + 1 < self.timesteps.len()
    }

    fn step(
        &mut self,
        index: usize,
        model_output: &[f32],
        sample: &[f32],
        noise: Option<&[f32]>,
    ) -> Vec<f32> {
        let t = self.timesteps[index];
        let prev_t = self.timesteps.get(index + 1).copied().unwrap_or(t);
        let alpha_t = self.alpha(t);
        let alpha_prev = self.alpha(prev_t);
        let (c_skip, c_out) = self.boundary_scalings(t);
        let (sqrt_a, sqrt_b) = (alpha_t.sqrt(), (1.0 - alpha_t).sqrt());
        let prediction = self.config.prediction_type.get();
        let clip = self
            .config
            .clip_sample
            .unwrap_or(false)
            .then_some(self.config.clip_sample_range);
        let denoised = sample.iter().zip(model_output).map(|(&x, &e)| {
            let (x, e) = (x as f64, e as f64);
            let mut x0 = match prediction {
                PredictionType::Sample => e,
                PredictionType::VPrediction => sqrt_a * x - sqrt_b * e,
                PredictionType::Epsilon => (x - sqrt_b * e) / sqrt_a,
            };
            if let Some(range) = clip {
                x0 = x0.clamp(-range, range);
            }
            c_out * x0 + c_skip * x
        });
        match noise.filter(|_| self.needs_noise(index)) {
            Some(noise) => {
                let (a, b) = (alpha_prev.sqrt(), (1.0 - alpha_prev).sqrt());
                denoised
                    .zip(noise)
                    .map(|(d, &n)| (a * d + b * n as f64) as f32)
                    .collect()
            }
            None => denoised.map(|d| d as f32).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(steps: usize, strength: f32) -> Vec<f64> {
        LcmScheduler::new(&SchedulerConfig::default(), steps, strength).timesteps
    }

    #[test]
    fn four_step_schedule_matches_diffusers() {
        assert_eq!(plan(4, 1.0), vec![999.0, 759.0, 499.0, 259.0]);
        assert_eq!(plan(2, 1.0), vec![999.0, 499.0]);
        assert_eq!(plan(1, 1.0), vec![999.0]);
    }

    #[test]
    fn strength_keeps_the_tail() {
        assert_eq!(plan(4, 0.5), vec![499.0, 259.0]);
        assert_eq!(plan(4, 0.6), vec![499.0, 259.0]);
        assert_eq!(plan(3, 0.8), vec![679.0, 339.0]);
        // diffusers would refuse zero steps; livefill runs one.
        assert_eq!(plan(4, 0.1), vec![259.0]);
    }

    #[test]
    fn last_step_returns_denoised_without_noise() {
        let mut s = LcmScheduler::new(&SchedulerConfig::default(), 2, 1.0);
        assert!(s.needs_noise(0));
        assert!(!s.needs_noise(1));
        let out = s.step(1, &[0.0], &[1.0], None);
        let alpha = s.alpha(499.0);
        let (c_skip, c_out) = s.boundary_scalings(499.0);
        let expected = c_out * (1.0 / alpha.sqrt()) + c_skip;
        assert!((out[0] as f64 - expected).abs() < 1e-6);
    }
}
