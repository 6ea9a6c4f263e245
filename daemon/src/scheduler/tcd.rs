//! Trajectory Consistency Distillation, with the math of diffusers' `TCDScheduler`.
//!
//! Exists for TCD- and Hyper-SD-distilled models (and their LoRAs), which, like LCM, denoise in
//! a few steps but steer how much of each step is stochastic with γ (`eta`, default 0.3): each
//! step predicts the clean sample, moves it deterministically to the intermediate timestep
//! `s = floor((1 − γ) · t_prev)`, then re-noises it to `t_prev` with fresh noise (γ > 0, all but
//! the last step). γ = 0 is deterministic (a DDIM-like consistency step). Timesteps are LCM's:
//! evenly picked from the `original_inference_steps`-step schedule; strength keeps the tail.

use super::Scheduler;
use super::schedule::{alphas_cumprod, consistency_timesteps, ddpm_add_noise, kept_steps};
use crate::onnx::configs::{PredictionType, SchedulerConfig};

/// TCD planned for one job.
#[derive(Debug, Clone)]
pub struct TcdScheduler {
    prediction: PredictionType,
    alphas_cumprod: Vec<f64>,
    gamma: f32,
    timesteps: Vec<f64>,
}

impl TcdScheduler {
    /// Plan `steps` steps (1..=`original_inference_steps`) at `strength`, with γ = `gamma`.
    pub fn new(config: &SchedulerConfig, steps: usize, strength: f32, gamma: f32) -> Self {
        let full = consistency_timesteps(config, steps);
        let keep = kept_steps(steps, strength);
        Self {
            prediction: config.prediction_type.get(),
            alphas_cumprod: alphas_cumprod(config),
            gamma,
            timesteps: full[steps - keep..].to_vec(),
        }
    }

    fn alpha(&self, timestep: f64) -> f64 {
        self.alphas_cumprod[timestep as usize]
    }

    /// The timestep after step `index` (0 after the last one) and the intermediate `s`.
    fn targets(&self, index: usize) -> (f64, f64) {
        let prev = self.timesteps.get(index + 1).copied().unwrap_or(0.0);
        // torch: `floor((1 − γ) · prev)` on a long tensor, computed in float32.
        let factor = (1.0 - self.gamma as f64) as f32;
        let s = (factor * prev as f32).floor() as f64;
        (prev, s)
    }
}

impl Scheduler for TcdScheduler {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn add_noise(&self, original: &[f32], noise: &[f32], index: usize) -> Vec<f32> {
        ddpm_add_noise(original, noise, self.alpha(self.timesteps[index]))
    }

    fn needs_noise(&self, index: usize) -> bool {
        self.gamma > 0.0 && index + 1 < self.timesteps.len()
    }

    fn step(
        &mut self,
        index: usize,
        model_output: &[f32],
        sample: &[f32],
        noise: Option<&[f32]>,
    ) -> Vec<f32> {
        let (prev, s) = self.targets(index);
        let alpha_t = self.alpha(self.timesteps[index]);
        let alpha_prev = self.alpha(prev);
        let alpha_s = self.alpha(s);
        let (sqrt_a, sqrt_b) = (alpha_t.sqrt(), (1.0 - alpha_t).sqrt());
        let (sqrt_as, sqrt_bs) = (alpha_s.sqrt(), (1.0 - alpha_s).sqrt());
        let prediction = self.prediction;
        let noised = sample.iter().zip(model_output).map(move |(&x, &m)| {
            let (x, m) = (x as f64, m as f64);
            let (x0, eps) = match prediction {
                PredictionType::Epsilon => ((x - sqrt_b * m) / sqrt_a, m),
                PredictionType::Sample => (m, (x - sqrt_a * m) / sqrt_b),
                PredictionType::VPrediction => (sqrt_a * x - sqrt_b * m, sqrt_a * m + sqrt_b * x),
            };
            sqrt_as * x0 + sqrt_bs * eps
        });
        match noise.filter(|_| self.needs_noise(index)) {
            Some(noise) => {
                let ratio = alpha_prev / alpha_s;
                let (a, b) = (ratio.sqrt(), (1.0 - ratio).sqrt());
                noised
                    .zip(noise)
                    .map(|(d, &n)| (a * d + b * n as f64) as f32)
                    .collect()
            }
            None => noised.map(|d| d as f32).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `TCDScheduler.from_config(<SD config>)`; `set_timesteps(n)` then the pipelines' tail:
    /// diffusers 0.42 prints [999, 759, 499, 259] for 4 steps and [999, 879, 759, 639, 499, 379,
    /// 259, 139] for 8.
    #[test]
    fn timesteps_match_diffusers() {
        let c = SchedulerConfig::default();
        let plan = |n, strength| TcdScheduler::new(&c, n, strength, 0.3).timesteps;
        assert_eq!(plan(4, 1.0), vec![999.0, 759.0, 499.0, 259.0]);
        assert_eq!(
            plan(8, 1.0),
            vec![999.0, 879.0, 759.0, 639.0, 499.0, 379.0, 259.0, 139.0]
        );
        assert_eq!(plan(4, 0.6), vec![499.0, 259.0]);
    }

    /// γ = 0.3: s = floor(0.7 · t_prev) = 531, 349, 181, then 0 after the last step.
    #[test]
    fn intermediate_timesteps() {
        let s = TcdScheduler::new(&SchedulerConfig::default(), 4, 1.0, 0.3);
        let got: Vec<(f64, f64)> = (0..4).map(|i| s.targets(i)).collect();
        assert_eq!(
            got,
            vec![(759.0, 531.0), (499.0, 349.0), (259.0, 181.0), (0.0, 0.0)]
        );
        assert!(s.needs_noise(2) && !s.needs_noise(3));
        let deterministic = TcdScheduler::new(&SchedulerConfig::default(), 4, 1.0, 0.0);
        assert!(!deterministic.needs_noise(0));
    }
}
