//! The noise-schedule arithmetic every sampler shares, computed as diffusers computes it.
//!
//! Exists so the six samplers agree on the β schedule, ᾱ (`alphas_cumprod`), the σ of each
//! training timestep, numpy's spacing and rounding rules, Karras sigmas and the σ → t
//! interpolation, and so each sampler file holds only its own plan and update rule. Where
//! diffusers works in torch float32 (β, ᾱ, the training σ, their logarithms) this works in
//! `f32`; where it works in numpy float64 (spacing, interpolation, Karras) in `f64`, so plans
//! match diffusers' to the last bit or nearly.

use crate::onnx::configs::{BetaSchedule, SchedulerConfig};

/// β schedule → cumulative products of α (ᾱ), as torch float32 computes them.
pub fn alphas_cumprod(config: &SchedulerConfig) -> Vec<f64> {
    let n = config.num_train_timesteps;
    let betas: Vec<f32> = match config.beta_schedule.get() {
        BetaSchedule::Linear => torch_linspace(config.beta_start as f32, config.beta_end as f32, n),
        BetaSchedule::ScaledLinear => torch_linspace(
            (config.beta_start as f32).sqrt(),
            (config.beta_end as f32).sqrt(),
            n,
        )
        .into_iter()
        .map(|b| b * b)
        .collect(),
    };
    // torch's CPU `cumprod` accumulates float32 input in double: each ᾱ is the exact running
    // product of the float32 α, rounded to float32.
    let mut product = 1.0f64;
    betas
        .iter()
        .map(|b| {
            product *= (1.0 - b) as f64;
            product as f32 as f64
        })
        .collect()
}

/// `torch.linspace` in float32 (it computes the second half from the end, for symmetry).
fn torch_linspace(start: f32, end: f32, n: usize) -> Vec<f32> {
    if n == 1 {
        return vec![start];
    }
    let step = (end - start) / (n - 1) as f32;
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

/// `numpy.linspace(start, stop, n)` (float64, endpoint included).
pub fn np_linspace(start: f64, stop: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![start];
    }
    let step = (stop - start) / (n - 1) as f64;
    let mut out: Vec<f64> = (0..n).map(|i| i as f64 * step + start).collect();
    out[n - 1] = stop;
    out
}

/// `numpy.arange(start, 0, -step)` for a positive float `step`.
pub fn np_arange_down(start: f64, step: f64) -> Vec<f64> {
    let len = (start / step).ceil().max(0.0) as usize;
    (0..len).map(|i| start - i as f64 * step).collect()
}

/// numpy's `round` (half to even).
pub fn np_round(x: f64) -> f64 {
    x.round_ties_even()
}

/// "leading" spacing, as Euler and DDIM compute it: `arange(n) · (T // n)`, reversed, plus
/// `steps_offset`.
pub fn leading(train: usize, steps: usize, offset: usize) -> Vec<f64> {
    let ratio = train / steps;
    (0..steps)
        .rev()
        .map(|i| (i * ratio + offset) as f64)
        .collect()
}

/// "trailing" spacing: `round(arange(T, 0, −T/n)) − 1`.
pub fn trailing(train: usize, steps: usize) -> Vec<f64> {
    np_arange_down(train as f64, train as f64 / steps as f64)
        .into_iter()
        .map(|t| np_round(t) - 1.0)
        .collect()
}

/// σ of every training timestep, `√((1 − ᾱ)/ᾱ)`, in float32 as diffusers has them.
pub fn train_sigmas(alphas_cumprod: &[f64]) -> Vec<f32> {
    alphas_cumprod
        .iter()
        .map(|&a| {
            let a = a as f32;
            ((1.0 - a) / a).sqrt()
        })
        .collect()
}

/// `numpy.interp(t, arange(len), sigmas)`.
pub fn interp(t: f64, sigmas: &[f32]) -> f64 {
    let last = sigmas.len() - 1;
    if t <= 0.0 {
        return sigmas[0] as f64;
    }
    if t >= last as f64 {
        return sigmas[last] as f64;
    }
    let low = t.floor() as usize;
    let frac = t - low as f64;
    let (a, b) = (sigmas[low] as f64, sigmas[low + 1] as f64);
    // numpy: slope · (x − xp[j]) + fp[j]
    (b - a) * frac + a
}

/// Karras et al. (2022) sigmas between `sigma_max` and `sigma_min`, ρ = 7.
pub fn karras(sigma_min: f64, sigma_max: f64, steps: usize) -> Vec<f64> {
    let rho = 7.0f64;
    let min_inv = sigma_min.powf(1.0 / rho);
    let max_inv = sigma_max.powf(1.0 / rho);
    np_linspace(0.0, 1.0, steps)
        .into_iter()
        .map(|ramp| (max_inv + ramp * (min_inv - max_inv)).powf(rho))
        .collect()
}

/// diffusers' `_sigma_to_t`: the (fractional) training timestep of `sigma`, interpolating
/// linearly in log σ between its two neighbours.
pub fn sigma_to_t(sigma: f64, log_sigmas: &[f32]) -> f64 {
    let log_sigma = sigma.max(1e-10).ln();
    let below = log_sigmas
        .iter()
        .filter(|&&l| log_sigma - l as f64 >= 0.0)
        .count();
    let low_idx = below.saturating_sub(1).min(log_sigmas.len() - 2);
    let high_idx = low_idx + 1;
    let (low, high) = (log_sigmas[low_idx], log_sigmas[high_idx]);
    let w = ((low as f64 - log_sigma) / (low - high) as f64).clamp(0.0, 1.0);
    (1.0 - w) * low_idx as f64 + w * high_idx as f64
}

/// `ln σ` of the training sigmas, in float32 (numpy's `log` of a float32 array).
pub fn log_sigmas(sigmas: &[f32]) -> Vec<f32> {
    sigmas.iter().map(|s| s.ln()).collect()
}

/// The timesteps of the consistency samplers (LCM, TCD) at full strength: `steps` picks from a
/// `original_inference_steps`-step DDIM-like schedule, evenly (`floor(linspace(0, len, steps,
/// endpoint=False))`).
pub fn consistency_timesteps(config: &SchedulerConfig, steps: usize) -> Vec<f64> {
    let original = config.original_inference_steps;
    let k = (config.num_train_timesteps / original) as i64;
    let origin: Vec<i64> = (1..=original as i64).rev().map(|i| i * k - 1).collect();
    (0..steps)
        .map(|i| {
            let index = (i as f64 * origin.len() as f64 / steps as f64).floor() as usize;
            origin[index] as f64
        })
        .collect()
}

/// How many of `steps` planned steps run at `strength` (diffusers' img2img / inpaint
/// `get_timesteps`: `min(floor(steps · strength), steps)`); livefill keeps at least one where
/// diffusers would refuse.
pub fn kept_steps(steps: usize, strength: f32) -> usize {
    ((steps as f64 * strength as f64).floor() as usize).clamp(1, steps)
}

/// DDPM forward noising with ᾱ = `alpha`: `√ᾱ·x + √(1−ᾱ)·ε`, in f32 as diffusers' `add_noise`.
pub fn ddpm_add_noise(original: &[f32], noise: &[f32], alpha: f64) -> Vec<f32> {
    let alpha = alpha as f32;
    let (a, b) = (alpha.sqrt(), (1.0 - alpha).sqrt());
    original
        .iter()
        .zip(noise)
        .map(|(&x, &n)| a * x + b * n)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numpy_rules() {
        assert_eq!(np_round(2.5), 2.0);
        assert_eq!(np_round(3.5), 4.0);
        assert_eq!(np_linspace(0.0, 999.0, 4), vec![0.0, 333.0, 666.0, 999.0]);
        assert_eq!(
            np_arange_down(1000.0, 250.0),
            vec![1000.0, 750.0, 500.0, 250.0]
        );
        assert_eq!(trailing(1000, 4), vec![999.0, 749.0, 499.0, 249.0]);
        assert_eq!(leading(1000, 4, 1), vec![751.0, 501.0, 251.0, 1.0]);
    }

    #[test]
    fn sigma_to_t_inverts_the_training_sigmas() {
        let sigmas = train_sigmas(&alphas_cumprod(&SchedulerConfig::default()));
        let logs = log_sigmas(&sigmas);
        for t in [0usize, 1, 250, 500, 998, 999] {
            let back = sigma_to_t(sigmas[t] as f64, &logs);
            assert!((back - t as f64).abs() < 1e-3, "{t} -> {back}");
        }
        let mid = (sigmas[400] as f64 * sigmas[401] as f64).sqrt();
        assert!((sigma_to_t(mid, &logs) - 400.5).abs() < 1e-3);
    }

    #[test]
    fn karras_runs_from_max_to_min() {
        let s = karras(0.03, 14.6, 5);
        assert!((s[0] - 14.6).abs() < 1e-9 && (s[4] - 0.03).abs() < 1e-9);
        assert!(s.windows(2).all(|w| w[0] > w[1]));
    }
}
