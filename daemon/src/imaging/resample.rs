//! Separable resampling with precomputed filter weights.
//!
//! Exists because resizing is on the hot path of every Auto-context job (crop to model size and
//! back, up to many megapixels), and a general-purpose resizer that walks columns of row-major
//! data is several times slower than needed. Here each axis gets its taps and weights computed
//! once; the horizontal pass walks rows, the vertical pass adds whole weighted rows into one
//! accumulator row, and the 8-bit output is written row by row, so the only large scratch is
//! one `f32` image of (source height x target width). Large images are split into bands of rows
//! filtered on several threads (each row is computed alone, so the bytes do not depend on the
//! thread count).

use std::f32::consts::PI;

/// Reconstruction filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kernel {
    /// Bilinear (tent), support 1.
    Triangle,
    /// Catmull-Rom cubic (B = 0, C = 0.5), support 2.
    CatmullRom,
    /// Lanczos windowed sinc, support 3.
    Lanczos3,
}

impl Kernel {
    fn support(self) -> f32 {
        match self {
            Kernel::Triangle => 1.0,
            Kernel::CatmullRom => 2.0,
            Kernel::Lanczos3 => 3.0,
        }
    }

    fn eval(self, x: f32) -> f32 {
        let x = x.abs();
        match self {
            Kernel::Triangle => (1.0 - x).max(0.0),
            Kernel::CatmullRom if x < 1.0 => (1.5 * x - 2.5) * x * x + 1.0,
            Kernel::CatmullRom if x < 2.0 => ((-0.5 * x + 2.5) * x - 4.0) * x + 2.0,
            Kernel::CatmullRom => 0.0,
            Kernel::Lanczos3 if x < 3.0 => sinc(x) * sinc(x / 3.0),
            Kernel::Lanczos3 => 0.0,
        }
    }
}

fn sinc(x: f32) -> f32 {
    if x < 1e-6 {
        return 1.0;
    }
    let px = PI * x;
    px.sin() / px
}

/// Taps of one axis: output `i` reads `len[i]` source indices from `start[i]`, with the
/// weights at `weights[offset[i]..]`. Taps past the edges are folded onto the edge pixel.
struct AxisWeights {
    start: Vec<usize>,
    len: Vec<usize>,
    offset: Vec<usize>,
    weights: Vec<f32>,
}

impl AxisWeights {
    fn new(src: usize, dst: usize, kernel: Kernel) -> Self {
        let ratio = src as f32 / dst as f32;
        let stretch = ratio.max(1.0);
        let reach = kernel.support() * stretch;
        let mut this = Self {
            start: Vec::with_capacity(dst),
            len: Vec::with_capacity(dst),
            offset: Vec::with_capacity(dst),
            weights: Vec::new(),
        };
        let mut raw = Vec::new();
        for i in 0..dst {
            let centre = (i as f32 + 0.5) * ratio;
            let lo = (centre - reach).floor() as isize;
            let hi = (centre + reach).ceil() as isize;
            raw.clear();
            raw.extend((lo..=hi).map(|j| (j, kernel.eval((j as f32 + 0.5 - centre) / stretch))));
            this.push_folded(&raw, src);
        }
        this
    }

    /// Clamps the taps into `0..src`, merges duplicates, normalises and stores them.
    fn push_folded(&mut self, raw: &[(isize, f32)], src: usize) {
        let last = src as isize - 1;
        let first = raw[0].0.clamp(0, last) as usize;
        let end = raw[raw.len() - 1].0.clamp(0, last) as usize;
        let offset = self.weights.len();
        self.weights.resize(offset + end - first + 1, 0.0);
        for &(j, w) in raw {
            self.weights[offset + j.clamp(0, last) as usize - first] += w;
        }
        let sum: f32 = self.weights[offset..].iter().sum();
        if sum.abs() > f32::EPSILON {
            self.weights[offset..].iter_mut().for_each(|w| *w /= sum);
        }
        self.start.push(first);
        self.len.push(end - first + 1);
        self.offset.push(offset);
    }

    fn taps(&self, i: usize) -> (usize, &[f32]) {
        (
            self.start[i],
            &self.weights[self.offset[i]..][..self.len[i]],
        )
    }
}

/// Resamples an interleaved 8-bit buffer of `channels` channels from `from` to `to` (width,
/// height). With `premultiply` (4 channels only) colour is weighted by alpha while filtering.
pub(crate) fn resample(
    src: &[u8],
    from: (usize, usize),
    channels: usize,
    to: (usize, usize),
    kernel: Kernel,
    premultiply: bool,
) -> Vec<u8> {
    // The horizontal pass reads every source sample, the vertical one writes every target one.
    let threads = threads_for((from.0 * from.1).max(to.0 * to.1) * channels);
    resample_on(threads, src, from, channels, to, kernel, premultiply)
}

/// [`resample`] on `threads` threads.
fn resample_on(
    threads: usize,
    src: &[u8],
    from: (usize, usize),
    channels: usize,
    to: (usize, usize),
    kernel: Kernel,
    premultiply: bool,
) -> Vec<u8> {
    let ((sw, sh), (dw, dh)) = (from, to);
    let horizontal = AxisWeights::new(sw, dw, kernel);
    let vertical = AxisWeights::new(sh, dh, kernel);
    let mut rows = vec![0f32; sh * dw * channels];
    in_bands(&mut rows, dw * channels, threads, |first, band| {
        let mut line = vec![0f32; sw * channels];
        let src_rows = src[first * sw * channels..].chunks_exact(sw * channels);
        for (src_row, dst_row) in src_rows.zip(band.chunks_exact_mut(dw * channels)) {
            load_row(src_row, &mut line, channels, premultiply);
            filter_row(&line, dst_row, channels, &horizontal);
        }
    });
    let mut out = vec![0u8; dw * dh * channels];
    in_bands(&mut out, dw * channels, threads, |first, band| {
        let mut acc = vec![0f32; dw * channels];
        for (i, out_row) in band.chunks_exact_mut(dw * channels).enumerate() {
            acc.fill(0.0);
            let (start, weights) = vertical.taps(first + i);
            for (k, &w) in weights.iter().enumerate() {
                let row = &rows[(start + k) * dw * channels..][..dw * channels];
                acc.iter_mut().zip(row).for_each(|(a, &v)| *a += w * v);
            }
            store_row(&acc, out_row, channels, premultiply);
        }
    });
    out
}

/// Threads worth using for `samples` values read or written: one below ~1 M, else up to 8 (or
/// what the machine has).
fn threads_for(samples: usize) -> usize {
    const PER_THREAD: usize = 1 << 20;
    let available = std::thread::available_parallelism().map_or(1, |n| n.get());
    (samples / PER_THREAD).clamp(1, available.min(8))
}

/// Runs `work(first_row, band)` over `threads` bands of whole rows of `data` (rows of `row_len`).
fn in_bands<T: Send>(
    data: &mut [T],
    row_len: usize,
    threads: usize,
    work: impl Fn(usize, &mut [T]) + Sync,
) {
    let rows = data.len() / row_len.max(1);
    if threads <= 1 || rows < 2 {
        work(0, data);
        return;
    }
    let per_band = rows.div_ceil(threads);
    std::thread::scope(|scope| {
        for (index, band) in data.chunks_mut(per_band * row_len).enumerate() {
            let work = &work;
            scope.spawn(move || work(index * per_band, band));
        }
    });
}

/// Bytes to `f32`, colour multiplied by alpha / 255 when premultiplying.
fn load_row(src: &[u8], dst: &mut [f32], channels: usize, premultiply: bool) {
    dst.iter_mut()
        .zip(src)
        .for_each(|(d, &s)| *d = f32::from(s));
    if premultiply {
        for px in dst.chunks_exact_mut(channels) {
            let a = px[3] / 255.0;
            px[..3].iter_mut().for_each(|v| *v *= a);
        }
    }
}

fn filter_row(src: &[f32], dst: &mut [f32], channels: usize, weights: &AxisWeights) {
    if channels == 4 {
        return filter_row_rgba(src, dst, weights);
    }
    for (x, out) in dst.chunks_exact_mut(channels).enumerate() {
        let (start, taps) = weights.taps(x);
        out.fill(0.0);
        let pixels = src[start * channels..].chunks_exact(channels);
        for (px, &w) in pixels.zip(taps) {
            out.iter_mut().zip(px).for_each(|(o, &v)| *o += w * v);
        }
    }
}

/// [`filter_row`] for 4 channels, with the accumulator in registers.
fn filter_row_rgba(src: &[f32], dst: &mut [f32], weights: &AxisWeights) {
    for (x, out) in dst.chunks_exact_mut(4).enumerate() {
        let (start, taps) = weights.taps(x);
        let mut acc = [0f32; 4];
        for (px, &w) in src[start * 4..].chunks_exact(4).zip(taps) {
            for c in 0..4 {
                acc[c] += w * px[c];
            }
        }
        out.copy_from_slice(&acc);
    }
}

/// `v` clamped to 0..=255 and rounded half away from zero: the same byte as
/// `v.round().clamp(0.0, 255.0) as u8` for every `f32`, without a call to libm's `roundf` (the
/// baseline x86-64 target has no rounding instruction), which is most of a large resize's time.
fn round_byte(v: f32) -> u8 {
    let v = v.clamp(0.0, 255.0); // NaN stays NaN and becomes 0 below, as before
    let whole = v as u8;
    if v - f32::from(whole) >= 0.5 {
        whole + 1
    } else {
        whole
    }
}

/// `f32` back to bytes (rounded, clamped), dividing colour by alpha when premultiplied.
fn store_row(src: &[f32], dst: &mut [u8], channels: usize, premultiply: bool) {
    let byte = round_byte;
    if !premultiply {
        dst.iter_mut().zip(src).for_each(|(d, &s)| *d = byte(s));
        return;
    }
    for (d, s) in dst
        .chunks_exact_mut(channels)
        .zip(src.chunks_exact(channels))
    {
        let alpha = byte(s[3]);
        if alpha == 0 {
            d.fill(0);
            continue;
        }
        let scale = 255.0 / s[3].clamp(1.0, 255.0);
        for c in 0..3 {
            d[c] = byte(s[c] * scale);
        }
        d[3] = alpha;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_are_normalised_and_inside_the_source() {
        for (src, dst) in [(10, 3), (3, 10), (7, 7), (1, 5), (512, 4096)] {
            for kernel in [Kernel::Triangle, Kernel::CatmullRom, Kernel::Lanczos3] {
                let w = AxisWeights::new(src, dst, kernel);
                for i in 0..dst {
                    let (start, taps) = w.taps(i);
                    assert!(start + taps.len() <= src);
                    let sum: f32 = taps.iter().sum();
                    assert!((sum - 1.0).abs() < 1e-4, "{src}->{dst} {kernel:?}: {sum}");
                }
            }
        }
    }

    #[test]
    fn linear_ramps_survive_in_the_interior() {
        // A horizontal ramp 0, 4, 8, ... is linear; symmetric kernels keep it linear.
        let (w, h) = (60usize, 3usize);
        let src: Vec<u8> = (0..h).flat_map(|_| (0..w).map(|x| (x * 4) as u8)).collect();
        for kernel in [Kernel::Triangle, Kernel::CatmullRom, Kernel::Lanczos3] {
            for dw in [30usize, 120] {
                let out = resample(&src, (w, h), 1, (dw, h), kernel, false);
                let ratio = w as f32 / dw as f32;
                for x in dw / 6..dw - dw / 6 {
                    let ideal = ((x as f32 + 0.5) * ratio - 0.5) * 4.0;
                    let got = f32::from(out[dw + x]);
                    assert!(
                        (got - ideal).abs() <= 1.0,
                        "{kernel:?} {dw} x={x}: {got} vs {ideal}"
                    );
                }
            }
        }
    }

    #[test]
    fn round_byte_matches_round_then_clamp() {
        let reference = |v: f32| v.round().clamp(0.0, 255.0) as u8;
        let special = [
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            -0.0,
            0.5,
            0.49999997,
            254.5,
            255.49998,
            255.5,
            -0.5,
            1e9,
        ];
        for v in special {
            assert_eq!(round_byte(v), reference(v), "{v}");
        }
        // Every f32 from -2 to 258 in steps of 1/1024, and each one's neighbours.
        for i in -2048..=258 * 1024 {
            let v = i as f32 / 1024.0;
            for w in [
                v,
                f32::from_bits(v.to_bits() + 1),
                f32::from_bits(v.to_bits().max(1) - 1),
            ] {
                assert_eq!(round_byte(w), reference(w), "{w}");
            }
        }
    }

    #[test]
    fn bands_on_several_threads_give_the_same_bytes() {
        let (sw, sh) = (300usize, 200usize);
        let src: Vec<u8> = (0..sw * sh * 4).map(|i| (i * 37 % 251) as u8).collect();
        for (to, kernel) in [
            ((1500, 1100), Kernel::CatmullRom),
            ((70, 45), Kernel::Lanczos3),
        ] {
            let one = resample_on(1, &src, (sw, sh), 4, to, kernel, true);
            for threads in [2, 3, 8] {
                let banded = resample_on(threads, &src, (sw, sh), 4, to, kernel, true);
                assert!(banded == one, "{threads} threads differ from one ({to:?})");
            }
        }
        assert_eq!(threads_for(1000), 1, "small images stay on one thread");
    }

    #[test]
    fn triangle_halving_averages_neighbours() {
        let src = [0u8, 100, 200, 200];
        let out = resample(&src, (4, 1), 1, (2, 1), Kernel::Triangle, false);
        // Tent of reach 2 around 1.0 and 3.0 with edge folding.
        assert_eq!(out, [63, 188]);
    }
}
