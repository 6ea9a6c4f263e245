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
use crate::onnx::configs::{BetaSchedule, PredictionType, SchedulerConfig};

#[derive(Debug, thiserror::Error)]
pub enum LcmError {
    #[error("steps must be between 1 and {max} (got {got})")]
    Steps { got: usize, max: usize },
    #[error("strength must be in (0, 1] (got {0})")]
    Strength(f32),
}

/// LCM planned for one job.
#[derive(Debug, Clone)]
pub struct LcmScheduler {
    config: SchedulerConfig,
    alphas_cumprod: Vec<f64>,
    final_alpha_cumprod: f64,
    timesteps: Vec<i64>,
}

impl LcmScheduler {
    /// Plan `steps` steps at `strength` (1.0 = from pure noise).
    pub fn new(config: &SchedulerConfig, steps: usize, strength: f32) -> Result<Self, LcmError> {
        let original = config.original_inference_steps;
        if steps == 0 || steps > original {
            return Err(LcmError::Steps {
                got: steps,
                max: original,
            });
        }
        if !(strength > 0.0 && strength <= 1.0) {
            return Err(LcmError::Strength(strength));
        }
        let alphas_cumprod = alphas_cumprod(config);
        let final_alpha_cumprod = if config.set_alpha_to_one {
            1.0
        } else {
            alphas_cumprod[0]
        };
        let full = full_schedule(config, steps);
        let keep = ((steps as f64 * strength as f64).floor() as usize).clamp(1, steps);
        let timesteps = full[steps - keep..].to_vec();
        Ok(Self {
            config: config.clone(),
            alphas_cumprod,
            final_alpha_cumprod,
            timesteps,
        })
    }

    fn alpha(&self, timestep: i64) -> f64 {
        if timestep >= 0 {
            self.alphas_cumprod[timestep as usize]
        } else {
            self.final_alpha_cumprod
        }
    }

    /// diffusers' `get_scalings_for_boundary_condition_discrete` (sigma_data = 0.5).
    fn boundary_scalings(&self, timestep: i64) -> (f64, f64) {
        let sigma_data = 0.5f64;
        let scaled = timestep as f64 * self.config.timestep_scaling;
        let c_skip = sigma_data * sigma_data / (scaled * scaled + sigma_data * sigma_data);
        let c_out = scaled / (scaled * scaled + sigma_data * sigma_data).sqrt();
        (c_skip, c_out)
    }
}

/// β schedule → cumulative products of α, computed in f32 like diffusers (torch float32).
fn alphas_cumprod(config: &SchedulerConfig) -> Vec<f64> {
    let n = config.num_train_timesteps;
    let betas: Vec<f32> = match config.beta_schedule.get() {
        BetaSchedule::Linear => linspace(config.beta_start as f32, config.beta_end as f32, n),
        BetaSchedule::ScaledLinear => linspace(
            (config.beta_start as f32).sqrt(),
            (config.beta_end as f32).sqrt(),
            n,
        )
        .into_iter()
        .map(|b| b * b)
        .collect(),
    };
    let mut product = 1.0f32;
    betas
        .iter()
        .map(|b| {
            product *= 1.0 - b;
            product as f64
        })
        .collect()
}

fn linspace(start: f32, end: f32, n: usize) -> Vec<f32> {
    if n == 1 {
        return vec![start];
    }
    let step = (end - start) / (n - 1) as f32;
    // torch.linspace computes the second half from the end for symmetry.
    (0..n)
        .map(|i| {
            if i < n / 2 {
                start + step * i as f32
            } else {
                end - step * (n - 1 - i) as f32
            }
        })
        .collect()
}

/// The full-strength LCM timesteps for `steps` steps (diffusers' `set_timesteps`, strength 1).
fn full_schedule(config: &SchedulerConfig, steps: usize) -> Vec<i64> {
    let original = config.original_inference_steps;
    let k = (config.num_train_timesteps / original) as i64;
    let origin: Vec<i64> = (1..=original as i64).rev().map(|i| i * k - 1).collect();
    (0..steps)
        .map(|i| {
            let index = (i as f64 * origin.len() as f64 / steps as f64).floor() as usize;
            origin[index]
        })
        .collect()
}

impl Scheduler for LcmScheduler {
    fn timesteps(&self) -> &[i64] {
        &self.timesteps
    }

    fn add_noise(&self, original: &[f32], noise: &[f32], timestep: i64) -> Vec<f32> {
        let alpha = self.alpha(timestep);
        let (a, b) = (alpha.sqrt() as f32, (1.0 - alpha).sqrt() as f32);
        original
            .iter()
            .zip(noise)
            .map(|(&x, &n)| a * x + b * n)
            .collect()
    }

    fn needs_noise(&self, index: usize) -> bool {
        index + 1 < self.timesteps.len()
    }

    fn step(
        &self,
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

    fn plan(steps: usize, strength: f32) -> Vec<i64> {
        LcmScheduler::new(&SchedulerConfig::default(), steps, strength)
            .unwrap()
            .timesteps
    }

    #[test]
    fn four_step_schedule_matches_diffusers() {
        assert_eq!(plan(4, 1.0), vec![999, 759, 499, 259]);
        assert_eq!(plan(2, 1.0), vec![999, 499]);
        assert_eq!(plan(1, 1.0), vec![999]);
    }

    #[test]
    fn strength_keeps_the_tail() {
        assert_eq!(plan(4, 0.5), vec![499, 259]);
        assert_eq!(plan(4, 0.6), vec![499, 259]);
        assert_eq!(plan(3, 0.8), vec![679, 339]);
        // diffusers would refuse zero steps; livefill runs one.
        assert_eq!(plan(4, 0.1), vec![259]);
    }

    #[test]
    fn last_step_returns_denoised_without_noise() {
        let s = LcmScheduler::new(&SchedulerConfig::default(), 2, 1.0).unwrap();
        assert!(s.needs_noise(0));
        assert!(!s.needs_noise(1));
        let out = s.step(1, &[0.0], &[1.0], None);
        let alpha = s.alpha(499);
        let (c_skip, c_out) = s.boundary_scalings(499);
        let expected = c_out * (1.0 / alpha.sqrt()) + c_skip;
        assert!((out[0] as f64 - expected).abs() < 1e-6);
    }

    #[test]
    fn rejects_bad_parameters() {
        let c = SchedulerConfig::default();
        assert!(LcmScheduler::new(&c, 0, 1.0).is_err());
        assert!(LcmScheduler::new(&c, 51, 1.0).is_err());
        assert!(LcmScheduler::new(&c, 4, 0.0).is_err());
        assert!(LcmScheduler::new(&c, 4, f32::NAN).is_err());
    }
}
