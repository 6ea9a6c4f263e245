//! DPM-Solver++ 2M, with the math of diffusers' `DPMSolverMultistepScheduler` (its defaults:
//! `algorithm_type = "dpmsolver++"`, `solver_order = 2`, `solver_type = "midpoint"`,
//! `lower_order_final`, `final_sigmas_type = "zero"`).
//!
//! Exists as the quality sampler for ordinary (not distilled) models: a second-order multistep
//! solver in log-SNR time λ = ln(α/σ) on the data prediction x̂₀, good in 15–30 steps, usually
//! with Karras sigmas. The first step, and the last (its next σ is 0), are first order; with
//! fewer than 15 steps the one before last is second order as usual (`lower_order_final`).
//! The sample stays in the DDPM scale (initial noise σ = 1, no model-input scaling); σ here is
//! `√((1−ᾱ)/ᾱ)` with α_t = 1/√(σ²+1), σ_t = σ·α_t. Timesteps come from `timestep_spacing` over
//! `steps + 1` points; with Karras sigmas they span the whole training σ range (unlike Euler's)
//! and are rounded back to integer timesteps.

use super::schedule::{
    alphas_cumprod, karras, kept_steps, log_sigmas, np_arange_down, np_linspace, np_round,
    sigma_to_t, train_sigmas,
};
use super::{Scheduler, Spread};
use crate::onnx::configs::{PredictionType, SchedulerConfig, TimestepSpacing};

/// DPM-Solver++ 2M planned for one job.
#[derive(Debug, Clone)]
pub struct DpmSolverScheduler {
    prediction: PredictionType,
    full_timesteps: Vec<f64>,
    /// σ of each planned timestep, then 0.
    sigmas: Vec<f32>,
    begin: usize,
    /// x̂₀ of the previous step (the multistep history).
    previous: Option<Vec<f64>>,
}

impl DpmSolverScheduler {
    pub fn new(config: &SchedulerConfig, spread: Spread, steps: usize, strength: f32) -> Self {
        let train = config.num_train_timesteps;
        // `lambda_min_clipped` = −∞: the last usable timestep is `train`.
        let last = train;
        let mut timesteps: Vec<f64> = match spread.spacing {
            TimestepSpacing::Linspace => {
                let mut t: Vec<f64> = np_linspace(0.0, (last - 1) as f64, steps + 1)
                    .into_iter()
                    .map(np_round)
                    .rev()
                    .collect();
                t.pop();
                t
            }
            TimestepSpacing::Leading => {
                let ratio = last / (steps + 1);
                let offset = config.steps_offset.unwrap_or(0);
                (1..=steps)
                    .rev()
                    .map(|i| (i * ratio + offset) as f64)
                    .collect()
            }
            TimestepSpacing::Trailing => np_arange_down(last as f64, train as f64 / steps as f64)
                .into_iter()
                .map(|t| np_round(t) - 1.0)
                .collect(),
        };
        let base = train_sigmas(&alphas_cumprod(config));
        let mut sigmas: Vec<f32> = if spread.karras {
            let logs = log_sigmas(&base);
            let karras = karras(base[0] as f64, base[train - 1] as f64, steps);
            timesteps = karras
                .iter()
                .map(|&s| np_round(sigma_to_t(s, &logs)))
                .collect();
            karras.into_iter().map(|s| s as f32).collect()
        } else {
            timesteps.iter().map(|&t| base[t as usize]).collect()
        };
        sigmas.push(0.0);
        Self {
            prediction: config.prediction_type.get(),
            full_timesteps: timesteps,
            sigmas,
            begin: steps - kept_steps(steps, strength),
            previous: None,
        }
    }

    /// σ at absolute position `i` of the full plan.
    fn sigma(&self, i: usize) -> f64 {
        self.sigmas[i] as f64
    }

    /// (α_t, σ_t, λ) of σ.
    fn alpha_sigma_lambda(sigma: f64) -> (f64, f64, f64) {
        let alpha = 1.0 / (sigma * sigma + 1.0).sqrt();
        let sigma_t = sigma * alpha;
        (alpha, sigma_t, alpha.ln() - sigma_t.ln())
    }

    /// The data prediction x̂₀ (`convert_model_output`, dpmsolver++).
    fn data_prediction(&self, sigma: f64, sample: &[f32], output: &[f32]) -> Vec<f64> {
        let (alpha_t, sigma_t, _) = Self::alpha_sigma_lambda(sigma);
        sample
            .iter()
            .zip(output)
            .map(|(&x, &m)| {
                let (x, m) = (x as f64, m as f64);
                match self.prediction {
                    PredictionType::Epsilon => (x - sigma_t * m) / alpha_t,
                    PredictionType::Sample => m,
                    PredictionType::VPrediction => alpha_t * x - sigma_t * m,
                }
            })
            .collect()
    }
}

impl Scheduler for DpmSolverScheduler {
    fn timesteps(&self) -> &[f64] {
        &self.full_timesteps[self.begin..]
    }

    fn add_noise(&self, original: &[f32], noise: &[f32], index: usize) -> Vec<f32> {
        let sigma = self.sigmas[self.begin + index];
        let alpha = 1.0 / (sigma * sigma + 1.0).sqrt();
        let sigma_t = sigma * alpha;
        original
            .iter()
            .zip(noise)
            .map(|(&x, &n)| alpha * x + sigma_t * n)
            .collect()
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
        let i = self.begin + index;
        let total = self.full_timesteps.len();
        let x0 = self.data_prediction(self.sigma(i), sample, model_output);
        let (alpha_t, sigma_t, lambda_t) = Self::alpha_sigma_lambda(self.sigma(i + 1));
        let (_, sigma_s0, lambda_s0) = Self::alpha_sigma_lambda(self.sigma(i));
        let h = lambda_t - lambda_s0;
        // `final_sigmas_type = "zero"`: the last step is always first order.
        let first_order = i == total - 1 || self.previous.is_none();
        let ratio = sigma_t / sigma_s0;
        let decay = alpha_t * ((-h).exp() - 1.0);
        let out: Vec<f32> = match (&self.previous, first_order) {
            (Some(prev), false) => {
                let (_, _, lambda_s1) = Self::alpha_sigma_lambda(self.sigma(i - 1));
                let r0 = (lambda_s0 - lambda_s1) / h;
                sample
                    .iter()
                    .zip(&x0)
                    .zip(prev)
                    .map(|((&x, &m0), &m1)| {
                        let d1 = (m0 - m1) / r0;
                        (ratio * x as f64 - decay * m0 - 0.5 * decay * d1) as f32
                    })
                    .collect()
            }
            // First order (DPM-Solver++ 1 = DDIM in λ); with σ_next = 0, ratio 0 and decay −1:
            // x̂₀ itself.
            _ => sample
                .iter()
                .zip(&x0)
                .map(|(&x, &m0)| (ratio * x as f64 - decay * m0) as f32)
                .collect(),
        };
        self.previous = Some(x0);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sd() -> SchedulerConfig {
        serde_json::from_str(
            r#"{"_class_name": "PNDMScheduler", "beta_start": 0.00085, "beta_end": 0.012,
                "beta_schedule": "scaled_linear", "steps_offset": 1,
                "timestep_spacing": "leading"}"#,
        )
        .unwrap()
    }

    fn plan(spacing: TimestepSpacing, karras: bool, steps: usize) -> DpmSolverScheduler {
        DpmSolverScheduler::new(&sd(), Spread { spacing, karras }, steps, 1.0)
    }

    fn close(got: &[f32], want: &[f64]) {
        assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
        for (g, w) in got.iter().zip(want) {
            assert!(
                (*g as f64 - w).abs() <= 1e-6 * w.max(1.0),
                "{got:?} vs {want:?}"
            );
        }
    }

    /// `DPMSolverMultistepScheduler.from_config(sd, use_karras_sigmas=…, timestep_spacing=…)`,
    /// `set_timesteps(n)`: what diffusers 0.42 prints.
    #[test]
    fn plans_match_diffusers() {
        let p = plan(TimestepSpacing::Leading, true, 10);
        assert_eq!(
            p.timesteps(),
            &[
                999.0, 916.0, 815.0, 687.0, 523.0, 327.0, 146.0, 41.0, 7.0, 0.0
            ]
        );
        close(
            &p.sigmas,
            &[
                14.614647, 9.102938, 5.478401, 3.168611, 1.749423, 0.914077, 0.446921, 0.2014,
                0.081911, 0.029168, 0.0,
            ],
        );
        let p = plan(TimestepSpacing::Leading, true, 20);
        assert_eq!(
            p.timesteps(),
            &[
                999.0, 962.0, 921.0, 876.0, 827.0, 772.0, 710.0, 640.0, 561.0, 474.0, 380.0, 285.0,
                197.0, 123.0, 69.0, 35.0, 15.0, 6.0, 2.0, 0.0
            ]
        );
        let p = plan(TimestepSpacing::Leading, false, 4);
        assert_eq!(p.timesteps(), &[801.0, 601.0, 401.0, 201.0]);
        close(&p.sigmas, &[5.134433, 2.292855, 1.168216, 0.574051, 0.0]);
        let p = plan(TimestepSpacing::Linspace, false, 4);
        assert_eq!(p.timesteps(), &[999.0, 749.0, 500.0, 250.0]);
        close(&p.sigmas, &[14.614647, 4.081731, 1.61828, 0.695799, 0.0]);
        let p = plan(TimestepSpacing::Trailing, false, 4);
        assert_eq!(p.timesteps(), &[999.0, 749.0, 499.0, 249.0]);
        let p = plan(TimestepSpacing::Trailing, false, 3);
        assert_eq!(p.timesteps(), &[999.0, 666.0, 332.0]);
    }

    #[test]
    fn the_last_step_returns_the_data_prediction() {
        let mut p = plan(TimestepSpacing::Leading, true, 2);
        let _ = p.step(0, &[0.1], &[1.0], None);
        let sigma = p.sigma(1);
        let (alpha_t, sigma_t, _) = DpmSolverScheduler::alpha_sigma_lambda(sigma);
        let out = p.step(1, &[0.2], &[0.5], None);
        let want = (0.5 - sigma_t * 0.2) / alpha_t;
        assert!((out[0] as f64 - want).abs() < 1e-6, "{out:?} vs {want}");
    }
}
