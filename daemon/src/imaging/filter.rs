//! Separable neighbourhood filters on 8-bit buffers: square min/max (grey-scale morphology) and
//! box blur.
//!
//! Exists because masks need growing/shrinking and the outpaint fill needs a strong blur, on
//! layers that can be many megapixels. Both filters are separable and cost O(1) per pixel
//! whatever the radius: min/max use the van Herk / Gil-Werman block trick, the blur uses running
//! sums. Vertical passes run on a transposed copy or slide a row of sums, so they stay
//! cache-friendly. Scratch buffers are allocated once per call, never per pixel.

use super::transpose::transpose;

/// Which extreme a morphological filter keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Extreme {
    /// Dilation: each pixel becomes the largest value in its window.
    Max,
    /// Erosion: each pixel becomes the smallest value in its window.
    Min,
}

impl Extreme {
    fn pick(self, a: u8, b: u8) -> u8 {
        match self {
            Extreme::Max => a.max(b),
            Extreme::Min => a.min(b),
        }
    }

    /// The value that never wins, used to pad past the line ends (so windows are clipped).
    fn identity(self) -> u8 {
        match self {
            Extreme::Max => 0,
            Extreme::Min => u8::MAX,
        }
    }
}

/// Scratch space for one 1-D min/max pass.
#[derive(Default)]
struct ExtremeLine {
    padded: Vec<u8>,
    prefix: Vec<u8>,
    suffix: Vec<u8>,
}

impl ExtremeLine {
    /// `dst[i]` = extreme of `src[i - radius ..= i + radius]`, the window clipped to the line.
    fn run(&mut self, src: &[u8], dst: &mut [u8], radius: usize, op: Extreme) {
        let n = src.len();
        let block = 2 * radius + 1;
        let len = (n + 2 * radius).div_ceil(block) * block;
        self.padded.clear();
        self.padded.resize(len, op.identity());
        self.padded[radius..radius + n].copy_from_slice(src);
        self.prefix.resize(len, 0);
        self.suffix.resize(len, 0);
        for start in (0..len).step_by(block) {
            self.fill_block(start, block, op);
        }
        for (i, out) in dst.iter_mut().enumerate() {
            *out = op.pick(self.suffix[i], self.prefix[i + 2 * radius]);
        }
    }

    /// Running extremes from the start (prefix) and from the end (suffix) of one block.
    fn fill_block(&mut self, start: usize, block: usize, op: Extreme) {
        let end = start + block;
        self.prefix[start] = self.padded[start];
        for i in start + 1..end {
            self.prefix[i] = op.pick(self.prefix[i - 1], self.padded[i]);
        }
        self.suffix[end - 1] = self.padded[end - 1];
        for i in (start..end - 1).rev() {
            self.suffix[i] = op.pick(self.suffix[i + 1], self.padded[i]);
        }
    }
}

/// Square (Chebyshev-radius) min or max filter over a single-channel buffer, in place.
pub(crate) fn extreme_filter(
    pixels: &mut [u8],
    width: usize,
    height: usize,
    radius: usize,
    op: Extreme,
) {
    if radius == 0 || width == 0 || height == 0 {
        return;
    }
    let mut line = ExtremeLine::default();
    let mut row = vec![0u8; width.max(height)];
    rows_pass(pixels, width, radius, op, &mut line, &mut row);
    let mut columns = transpose(pixels, width, height);
    rows_pass(&mut columns, height, radius, op, &mut line, &mut row);
    pixels.copy_from_slice(&transpose(&columns, height, width));
}

/// Runs the 1-D filter over every `width`-long row of `pixels`, in place.
fn rows_pass(
    pixels: &mut [u8],
    width: usize,
    radius: usize,
    op: Extreme,
    line: &mut ExtremeLine,
    row: &mut [u8],
) {
    for dst in pixels.chunks_exact_mut(width) {
        row[..width].copy_from_slice(dst);
        line.run(&row[..width], dst, radius, op);
    }
}

/// Blurs the first three channels of an interleaved RGBA buffer with `passes` box blurs of the
/// given radius (three passes approximate a Gaussian); edges replicate; alpha is untouched.
pub(crate) fn box_blur_rgb(
    pixels: &mut [u8],
    width: usize,
    height: usize,
    radius: usize,
    passes: usize,
) {
    if radius == 0 || width == 0 || height == 0 {
        return;
    }
    let mut row = vec![0u8; width * 4];
    let mut padded = vec![0u8; (width + 2 * radius + 1) * 4];
    let mut copy = vec![0u8; pixels.len()];
    let mut sums = vec![0u32; width * 3];
    for _ in 0..passes {
        for line in pixels.chunks_exact_mut(width * 4) {
            row.copy_from_slice(line);
            blur_row(&row, line, radius, &mut padded);
        }
        copy.copy_from_slice(pixels);
        blur_columns(&copy, pixels, width, height, radius, &mut sums);
    }
}

/// Horizontal box blur of one RGBA row; `padded` is scratch of `(len + 2 * radius + 1) * 4`.
fn blur_row(src: &[u8], dst: &mut [u8], radius: usize, padded: &mut [u8]) {
    let n = src.len() / 4;
    let (first, last) = (&src[..4], &src[(n - 1) * 4..]);
    let (head, rest) = padded.split_at_mut(radius * 4);
    let (middle, tail) = rest.split_at_mut(n * 4);
    head.chunks_exact_mut(4)
        .for_each(|p| p.copy_from_slice(first));
    middle.copy_from_slice(src);
    tail.chunks_exact_mut(4)
        .for_each(|p| p.copy_from_slice(last));
    let window = (2 * radius + 1) as u32;
    let mut sum = [0u32; 3];
    for px in padded[..window as usize * 4].chunks_exact(4) {
        (0..3).for_each(|c| sum[c] += u32::from(px[c]));
    }
    for (x, out) in dst.chunks_exact_mut(4).enumerate() {
        for c in 0..3 {
            out[c] = ((sum[c] + window / 2) / window) as u8;
            sum[c] = sum[c] + u32::from(padded[(x + 2 * radius + 1) * 4 + c])
                - u32::from(padded[x * 4 + c]);
        }
    }
}

/// Vertical box blur of an RGBA buffer from `src` into `dst`, sliding one row of sums down.
fn blur_columns(
    src: &[u8],
    dst: &mut [u8],
    width: usize,
    height: usize,
    radius: usize,
    sums: &mut [u32],
) {
    let stride = width * 4;
    let row = |y: isize| {
        let y = y.clamp(0, height as isize - 1) as usize;
        &src[y * stride..(y + 1) * stride]
    };
    let r = radius as isize;
    sums.fill(0);
    for y in -r..=r {
        add_row(sums, row(y), 1);
    }
    let window = (2 * radius + 1) as u32;
    for (y, out) in dst.chunks_exact_mut(stride).enumerate() {
        for (px, sum) in out.chunks_exact_mut(4).zip(sums.chunks_exact(3)) {
            for c in 0..3 {
                px[c] = ((sum[c] + window / 2) / window) as u8;
            }
        }
        let y = y as isize;
        add_row(sums, row(y + r + 1), 1);
        add_row(sums, row(y - r), -1);
    }
}

/// Adds (`sign` = 1) or subtracts (`sign` = -1) a row's RGB values to per-column sums.
fn add_row(sums: &mut [u32], row: &[u8], sign: i32) {
    for (sum, px) in sums.chunks_exact_mut(3).zip(row.chunks_exact(4)) {
        for c in 0..3 {
            sum[c] = sum[c].wrapping_add_signed(sign * i32::from(px[c]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference: the extreme of the clipped square window, computed naively.
    fn naive(pixels: &[u8], w: usize, h: usize, r: usize, op: Extreme) -> Vec<u8> {
        let mut out = vec![0; pixels.len()];
        for y in 0..h {
            for x in 0..w {
                let mut v = op.identity();
                for yy in y.saturating_sub(r)..(y + r + 1).min(h) {
                    for xx in x.saturating_sub(r)..(x + r + 1).min(w) {
                        v = op.pick(v, pixels[yy * w + xx]);
                    }
                }
                out[y * w + x] = v;
            }
        }
        out
    }

    fn pseudo_random(n: usize, seed: u32) -> Vec<u8> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (s >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn min_and_max_match_the_naive_filter() {
        for (w, h, r) in [(7, 5, 1), (13, 9, 2), (4, 11, 6), (1, 1, 3), (20, 3, 4)] {
            let src = pseudo_random(w * h, (w * 31 + h) as u32);
            for op in [Extreme::Max, Extreme::Min] {
                let mut got = src.clone();
                extreme_filter(&mut got, w, h, r, op);
                assert_eq!(got, naive(&src, w, h, r, op), "{w}x{h} r={r} {op:?}");
            }
        }
    }

    #[test]
    fn box_blur_keeps_flat_areas_and_alpha() {
        let (w, h) = (9, 7);
        let mut px: Vec<u8> = (0..w * h).flat_map(|_| [40, 120, 200, 77]).collect();
        box_blur_rgb(&mut px, w, h, 3, 3);
        assert!(px.chunks_exact(4).all(|p| p == [40, 120, 200, 77]));
    }

    #[test]
    fn box_blur_averages_a_single_row() {
        // One bright pixel in the middle of a 5x1 line, radius 1, one pass: spread over 3 pixels.
        let mut px = vec![0u8; 5 * 4];
        px[2 * 4] = 90;
        box_blur_rgb(&mut px, 5, 1, 1, 1);
        let reds: Vec<u8> = px.chunks_exact(4).map(|p| p[0]).collect();
        assert_eq!(reds, [0, 30, 30, 30, 0]);
    }
}
