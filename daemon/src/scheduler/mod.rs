//! Noise schedulers: the timestep plan and the update rule of the denoising loop.
//!
//! Exists so pipelines drive any sampler through one trait (as candle's and pykeio/diffusers'
//! schedulers do); livefill ships the LCM scheduler, the one that makes 2–4 steps enough.

pub mod lcm;

pub use lcm::LcmScheduler;

/// A sampler planned for one job.
pub trait Scheduler: Send {
    /// The training timesteps this job runs, in order.
    fn timesteps(&self) -> &[i64];

    /// Factor applied to the initial noise when starting from pure noise.
    fn init_noise_sigma(&self) -> f32 {
        1.0
    }

    /// Forward diffusion: `original` noised to `timestep`.
    fn add_noise(&self, original: &[f32], noise: &[f32], timestep: i64) -> Vec<f32>;

    /// Whether step `index` (into `timesteps()`) injects fresh noise into its result.
    fn needs_noise(&self, index: usize) -> bool;

    /// One update: the model's output at step `index` turns `sample` into the next sample.
    /// `noise` must be present exactly when `needs_noise(index)`.
    fn step(
        &self,
        index: usize,
        model_output: &[f32],
        sample: &[f32],
        noise: Option<&[f32]>,
    ) -> Vec<f32>;
}
