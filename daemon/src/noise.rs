//! Where the Gaussian noise of a job comes from.
//!
//! Exists to make results reproducible: a seed always yields the same noise on every device,
//! because it is drawn on the CPU with livefill's own generator (xoshiro256++ seeded through
//! splitmix64, Box–Muller for normals). For parity with diffusers the noise can instead come from
//! a `.npy` file of shape `[k, 4, H/8, W/8]`: entry 0 is the initial noise, entries 1.. the noise
//! LCM injects after each step but the last, in order.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::npy::NpyArray;

/// A source of standard-normal latent noise.
pub trait NoiseSource: Send {
    /// The next noise tensor with `len` elements (C order of `[1, C, h, w]`).
    fn next(&mut self, len: usize) -> Result<Vec<f32>, NoiseError>;
}

#[derive(Debug, thiserror::Error)]
pub enum NoiseError {
    #[error("the noise file has {available} entries but the job needs more")]
    Exhausted { available: usize },
    #[error("noise entries have {entry} values but the latents need {needed}")]
    Shape { entry: usize, needed: usize },
}

/// Seeded noise.
pub struct SeededNoise {
    state: [u64; 4],
    spare: Option<f32>,
}

impl SeededNoise {
    pub fn new(seed: u64) -> Self {
        let mut sm = seed;
        let mut next = || {
            sm = sm.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = sm;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Self {
            state: [next(), next(), next(), next()],
            spare: None,
        }
    }

    fn next_u64(&mut self) -> u64 {
        let s = &mut self.state;
        let result = (s[0].wrapping_add(s[3])).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in (0, 1].
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f32 {
        if let Some(v) = self.spare.take() {
            return v;
        }
        let (u1, u2) = (self.uniform(), self.uniform());
        let radius = (-2.0 * u1.ln()).sqrt();
        let angle = std::f64::consts::TAU * u2;
        self.spare = Some((radius * angle.sin()) as f32);
        (radius * angle.cos()) as f32
    }
}

impl NoiseSource for SeededNoise {
    fn next(&mut self, len: usize) -> Result<Vec<f32>, NoiseError> {
        Ok((0..len).map(|_| self.normal()).collect())
    }
}

/// Noise read from a file, entry by entry.
pub struct FileNoise {
    array: NpyArray,
    used: usize,
}

impl FileNoise {
    pub fn new(array: NpyArray) -> Self {
        Self { array, used: 0 }
    }

    fn entries(&self) -> usize {
        self.array.shape.first().copied().unwrap_or(0)
    }

    /// Entries not drawn yet (a run that matches the file's maker leaves none).
    pub fn remaining(&self) -> usize {
        self.entries().saturating_sub(self.used)
    }
}

impl NoiseSource for FileNoise {
    fn next(&mut self, len: usize) -> Result<Vec<f32>, NoiseError> {
        let entries = self.entries();
        if self.used >= entries {
            return Err(NoiseError::Exhausted { available: entries });
        }
        let entry = self.array.data.len() / entries.max(1);
        if entry != len {
            return Err(NoiseError::Shape { entry, needed: len });
        }
        let start = self.used * entry;
        self.used += 1;
        Ok(self.array.data[start..start + entry].to_vec())
    }
}

/// A seed for requests that did not bring one (socket or command line): clock, process id and a counter, mixed (no RNG
/// crate needed, and two requests in the same nanosecond still differ).
pub fn random_seed() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut x =
        nanos ^ (u64::from(std::process::id()) << 32) ^ count.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    // splitmix64 finaliser
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_noise_is_reproducible_and_normal() {
        let a = SeededNoise::new(42).next(10_000).unwrap();
        let b = SeededNoise::new(42).next(10_000).unwrap();
        assert_eq!(a, b);
        let mean = a.iter().map(|&v| v as f64).sum::<f64>() / a.len() as f64;
        let var = a.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / a.len() as f64;
        assert!(mean.abs() < 0.05, "mean {mean}");
        assert!((var - 1.0).abs() < 0.05, "var {var}");
        assert_ne!(a, SeededNoise::new(43).next(10_000).unwrap());
    }

    #[test]
    fn file_noise_hands_out_entries_in_order() {
        let array = NpyArray {
            shape: vec![2, 1, 1, 2],
            data: vec![1.0, 2.0, 3.0, 4.0],
        };
        let mut noise = FileNoise::new(array);
        assert_eq!(noise.next(2).unwrap(), vec![1.0, 2.0]);
        assert_eq!(noise.next(2).unwrap(), vec![3.0, 4.0]);
        assert!(noise.next(2).is_err());
    }
}
