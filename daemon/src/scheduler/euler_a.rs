//! Euler ancestral, with the math of diffusers' `EulerAncestralDiscreteScheduler`.
//!
//! Exists as the stochastic Euler: each step goes down to `σ_down` deterministically and adds
//! fresh noise of `σ_up` (`σ_up² + σ_down² = σ_next²`), so results vary more with the seed and
//! keep changing with more steps. It draws one noise tensor at every step, the last one included
//! (where `σ_up` = 0), as diffusers does. Plan and model-input scaling are Euler's
//! (`euler::SigmaPlan`); Karras sigmas, which diffusers' class lacks, use Euler's Karras plan.

use super::euler::{SigmaPlan, denoised};
use super::{Scheduler, Spread};
use crate::onnx::configs::{PredictionType, SchedulerConfig};

/// Euler ancestral planned for one job.
#[derive(Debug, Clone)]
pub struct EulerAncestralScheduler {
    plan: SigmaPlan,
    prediction: PredictionType,
}

impl EulerAncestralScheduler {
    pub fn new(config: &SchedulerConfig, spread: Spread, steps: usize, strength: f32) -> Self {
        Self {
            plan: SigmaPlan::new(config, spread, steps, strength),
            prediction: config.prediction_type.get(),
        }
    }

    /// (σ_up, σ_down) of step `index`.
    fn split(&self, index: usize) -> (f64, f64) {
        let (from, to) = (self.plan.sigma(index), self.plan.sigma(index + 1));
        let up = (to * to * (from * from - to * to) / (from * from)).sqrt();
        let down = (to * to - up * up).max(0.0).sqrt();
        (up, down)
    }
}

impl Scheduler for EulerAncestralScheduler {
    fn timesteps(&self) -> &[f64] {
        self.plan.timesteps()
    }

    fn init_noise_sigma(&self) -> f32 {
        self.plan.init_noise_sigma
    }

    fn input_scale(&self, index: usize) -> f32 {
        self.plan.input_scale(index)
    }

    fn add_noise(&self, original: &[f32], noise: &[f32], index: usize) -> Vec<f32> {
        self.plan.add_noise(original, noise, index)
    }

    fn needs_noise(&self, _index: usize) -> bool {
        true
    }

    fn step(
        &mut self,
        index: usize,
        model_output: &[f32],
        sample: &[f32],
        noise: Option<&[f32]>,
    ) -> Vec<f32> {
        let sigma = self.plan.sigma(index);
        let (up, down) = self.split(index);
        let dt = down - sigma;
        let zeros;
        let noise = match noise {
            Some(n) => n,
            None => {
                zeros = vec![0.0; sample.len()];
                &zeros
            }
        };
        sample
            .iter()
            .zip(model_output)
            .zip(noise)
            .map(|((&x, &m), &n)| {
                let x = x as f64;
                let x0 = denoised(self.prediction, sigma, x, m as f64);
                (x + (x - x0) / sigma * dt + n as f64 * up) as f32
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::configs::TimestepSpacing;

    /// `EulerAncestralDiscreteScheduler.from_config(sd, timestep_spacing="trailing")`,
    /// `set_timesteps(4)`: diffusers 0.42 prints timesteps [999, 749, 499, 249], sigmas
    /// [14.614647, 4.081731, 1.612887, 0.693205, 0.0] and init_noise_sigma 14.614647.
    #[test]
    fn plan_matches_diffusers() {
        let sd: SchedulerConfig = serde_json::from_str(
            r#"{"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
                "steps_offset": 1, "timestep_spacing": "leading"}"#,
        )
        .unwrap();
        let spread = Spread {
            spacing: TimestepSpacing::Trailing,
            karras: false,
        };
        let s = EulerAncestralScheduler::new(&sd, spread, 4, 1.0);
        assert_eq!(s.timesteps(), &[999.0, 749.0, 499.0, 249.0]);
        let want = [14.614647, 4.081731, 1.612887, 0.693205, 0.0];
        for (i, w) in want.iter().enumerate() {
            assert!(
                (s.plan.sigma(i) - w).abs() < 1e-5,
                "σ{i} = {}",
                s.plan.sigma(i)
            );
        }
        assert!((s.init_noise_sigma() - 14.614647).abs() < 1e-5);
        assert!((s.input_scale(0) as f64 - 1.0 / (14.614647f64.powi(2) + 1.0).sqrt()).abs() < 1e-6);
    }

    #[test]
    fn the_split_keeps_the_next_noise_level_and_ends_clean() {
        let spread = Spread {
            spacing: TimestepSpacing::Trailing,
            karras: false,
        };
        let s = EulerAncestralScheduler::new(&SchedulerConfig::default(), spread, 4, 1.0);
        for i in 0..4 {
            let (up, down) = s.split(i);
            let next = s.plan.sigma(i + 1);
            assert!((up * up + down * down - next * next).abs() < 1e-9);
            assert!(s.needs_noise(i));
        }
        assert_eq!(s.split(3), (0.0, 0.0));
        // The last step (σ_next = 0) lands on the clean estimate x̂₀ = x − σ·ε, whatever the noise.
        let mut s = s;
        let out = s.step(3, &[0.5], &[2.0], Some(&[7.0]));
        let sigma = s.plan.sigma(3);
        assert!((out[0] as f64 - (2.0 - sigma * 0.5)).abs() < 1e-5);
    }
}
