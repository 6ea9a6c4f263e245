//! Euler (Karras et al.'s Algorithm 2 without churn), with the math of diffusers'
//! `EulerDiscreteScheduler`.
//!
//! Exists as the plain first-order sampler on sigmas: the sample lives at noise level σ (x + σε),
//! the UNet sees it scaled by `1/√(σ²+1)`, and each step follows the ODE
//! `x ← x + (x − x̂₀)/σ · (σ_next − σ)`. Timesteps follow `timestep_spacing`; their sigmas are
//! interpolated from the training ones; with Karras sigmas the σ range of that spacing is
//! re-spread with ρ = 7 and mapped back to (fractional) timesteps. The initial noise is scaled by
//! σ_max (`linspace`/`trailing`) or `√(σ_max²+1)` (`leading`). Turbo / Lightning models use it
//! with `trailing` spacing. The plan (`SigmaPlan`) is shared with Euler ancestral.

use super::schedule::{
    alphas_cumprod, interp, karras, kept_steps, leading, log_sigmas, np_linspace, sigma_to_t,
    trailing, train_sigmas,
};
use super::{Scheduler, Spread};
use crate::onnx::configs::{PredictionType, SchedulerConfig, TimestepSpacing};

/// The timesteps and sigmas of Euler-family samplers, with the strength tail.
#[derive(Debug, Clone)]
pub struct SigmaPlan {
    /// All planned timesteps (full strength), as float32 values.
    full_timesteps: Vec<f64>,
    /// σ for each planned timestep, then 0.
    pub sigmas: Vec<f32>,
    /// First step that runs (diffusers' `begin_index`).
    pub begin: usize,
    pub init_noise_sigma: f32,
}

impl SigmaPlan {
    /// `set_timesteps(steps)` of EulerDiscreteScheduler (and EulerAncestral, without Karras),
    /// then the pipelines' strength rule.
    pub fn new(config: &SchedulerConfig, spread: Spread, steps: usize, strength: f32) -> Self {
        let train = config.num_train_timesteps;
        let mut timesteps: Vec<f64> = match spread.spacing {
            TimestepSpacing::Linspace => np_linspace(0.0, (train - 1) as f64, steps)
                .into_iter()
                .rev()
                .map(|t| t as f32 as f64)
                .collect(),
            TimestepSpacing::Leading => leading(train, steps, config.steps_offset.unwrap_or(0)),
            TimestepSpacing::Trailing => trailing(train, steps),
        };
        let base = train_sigmas(&alphas_cumprod(config));
        let mut sigmas: Vec<f64> = timesteps.iter().map(|&t| interp(t, &base)).collect();
        if spread.karras {
            let logs = log_sigmas(&base);
            sigmas = karras(sigmas[sigmas.len() - 1], sigmas[0], steps);
            timesteps = sigmas
                .iter()
                .map(|&s| sigma_to_t(s, &logs) as f32 as f64)
                .collect();
        }
        let mut sigmas: Vec<f32> = sigmas.into_iter().map(|s| s as f32).collect();
        sigmas.push(0.0);
        let max = sigmas.iter().copied().fold(0.0f32, f32::max);
        let init_noise_sigma = match spread.spacing {
            TimestepSpacing::Linspace | TimestepSpacing::Trailing => max,
            TimestepSpacing::Leading => (max * max + 1.0).sqrt(),
        };
        Self {
            full_timesteps: timesteps,
            sigmas,
            begin: steps - kept_steps(steps, strength),
            init_noise_sigma,
        }
    }

    /// The timesteps that run.
    pub fn timesteps(&self) -> &[f64] {
        &self.full_timesteps[self.begin..]
    }

    /// σ before step `index` of the run (`index == len`: 0, the end).
    pub fn sigma(&self, index: usize) -> f64 {
        self.sigmas[self.begin + index] as f64
    }

    /// `x + σ·ε` at step `index` (diffusers' sigma-schedule `add_noise`, in f32).
    pub fn add_noise(&self, original: &[f32], noise: &[f32], index: usize) -> Vec<f32> {
        let sigma = self.sigmas[self.begin + index];
        original
            .iter()
            .zip(noise)
            .map(|(&x, &n)| x + n * sigma)
            .collect()
    }

    /// `1/√(σ²+1)` at step `index` (`scale_model_input`).
    pub fn input_scale(&self, index: usize) -> f32 {
        let sigma = self.sigmas[self.begin + index];
        1.0 / (sigma * sigma + 1.0).sqrt()
    }
}

/// x̂₀ from the model output at noise level σ (Euler's `pred_original_sample`).
pub fn denoised(prediction: PredictionType, sigma: f64, sample: f64, output: f64) -> f64 {
    match prediction {
        PredictionType::Epsilon => sample - sigma * output,
        PredictionType::VPrediction => {
            output * (-sigma / (sigma * sigma + 1.0).sqrt()) + sample / (sigma * sigma + 1.0)
        }
        PredictionType::Sample => output,
    }
}

/// Euler planned for one job.
#[derive(Debug, Clone)]
pub struct EulerScheduler {
    plan: SigmaPlan,
    prediction: PredictionType,
}

impl EulerScheduler {
    pub fn new(config: &SchedulerConfig, spread: Spread, steps: usize, strength: f32) -> Self {
        Self {
            plan: SigmaPlan::new(config, spread, steps, strength),
            prediction: config.prediction_type.get(),
        }
    }
}

impl Scheduler for EulerScheduler {
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
        false
    }

    fn step(
        &mut self,
        index: usize,
        model_output: &[f32],
        sample: &[f32],
        _noise: Option<&[f32]>,
    ) -> Vec<f32> {
        let (sigma, next) = (self.plan.sigma(index), self.plan.sigma(index + 1));
        let dt = next - sigma;
        sample
            .iter()
            .zip(model_output)
            .map(|(&x, &m)| {
                let x = x as f64;
                let x0 = denoised(self.prediction, sigma, x, m as f64);
                (x + (x - x0) / sigma * dt) as f32
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sd() -> SchedulerConfig {
        // Stable Diffusion 1.5's scheduler config (PNDMScheduler, leading, steps_offset 1).
        serde_json::from_str(
            r#"{"_class_name": "PNDMScheduler", "beta_start": 0.00085, "beta_end": 0.012,
                "beta_schedule": "scaled_linear", "num_train_timesteps": 1000,
                "steps_offset": 1, "timestep_spacing": "leading"}"#,
        )
        .unwrap()
    }

    fn plan(spacing: TimestepSpacing, karras: bool, steps: usize) -> SigmaPlan {
        SigmaPlan::new(&sd(), Spread { spacing, karras }, steps, 1.0)
    }

    fn close(got: &[f64], want: &[f64], tol: f64) {
        assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
        for (g, w) in got.iter().zip(want) {
            assert!(
                (g - w).abs() <= tol * w.abs().max(1.0),
                "{got:?} vs {want:?}"
            );
        }
    }

    fn sigmas(p: &SigmaPlan) -> Vec<f64> {
        p.sigmas.iter().map(|&s| s as f64).collect()
    }

    /// `EulerDiscreteScheduler.from_config(sd, timestep_spacing=…, use_karras_sigmas=…)`,
    /// `set_timesteps(n)`: the timesteps, sigmas and init_noise_sigma diffusers 0.42 prints.
    #[test]
    fn plans_match_diffusers() {
        let p = plan(TimestepSpacing::Leading, false, 4);
        close(p.timesteps(), &[751.0, 501.0, 251.0, 1.0], 0.0);
        close(
            &sigmas(&p),
            &[4.116698, 1.623693, 0.698399, 0.041314, 0.0],
            1e-6,
        );
        assert!((p.init_noise_sigma - 4.236414).abs() < 1e-5);

        let p = plan(TimestepSpacing::Trailing, false, 4);
        close(p.timesteps(), &[999.0, 749.0, 499.0, 249.0], 0.0);
        close(
            &sigmas(&p),
            &[14.614647, 4.081731, 1.612887, 0.693205, 0.0],
            1e-6,
        );
        assert!((p.init_noise_sigma - 14.614647).abs() < 1e-5);
        let p = plan(TimestepSpacing::Trailing, false, 3);
        close(p.timesteps(), &[999.0, 666.0, 332.0], 0.0);

        let p = plan(TimestepSpacing::Linspace, false, 4);
        close(p.timesteps(), &[999.0, 666.0, 333.0, 0.0], 0.0);
        close(
            &sigmas(&p),
            &[14.614647, 2.918308, 0.932358, 0.029168, 0.0],
            1e-6,
        );

        let p = plan(TimestepSpacing::Leading, true, 4);
        close(
            p.timesteps(),
            &[
                751.0,
                411.4153747558594,
                69.40316009521484,
                1.0000001192092896,
            ],
            1e-6,
        );
        close(
            &sigmas(&p),
            &[4.116698, 1.208778, 0.273387, 0.041314, 0.0],
            1e-6,
        );
        assert!((p.init_noise_sigma - 4.236414).abs() < 1e-5);

        let p = plan(TimestepSpacing::Linspace, true, 5);
        close(
            p.timesteps(),
            &[
                999.0,
                785.9539794921875,
                427.4897766113281,
                58.891502380371094,
                0.0,
            ],
            1e-6,
        );
        close(
            &sigmas(&p),
            &[14.614647, 4.796544, 1.274105, 0.247952, 0.029168, 0.0],
            1e-6,
        );
    }

    #[test]
    fn strength_starts_later_and_noises_to_that_sigma() {
        let full = plan(TimestepSpacing::Leading, false, 5);
        let part = SigmaPlan::new(
            &sd(),
            Spread {
                spacing: TimestepSpacing::Leading,
                karras: false,
            },
            5,
            0.6,
        );
        assert_eq!(part.timesteps(), &full.timesteps()[2..]);
        assert_eq!(part.sigma(0), full.sigma(2));
        let noised = part.add_noise(&[1.0], &[1.0], 0);
        assert!((noised[0] as f64 - (1.0 + full.sigma(2))).abs() < 1e-6);
    }
}
