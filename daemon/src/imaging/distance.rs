//! Exact Euclidean distance transform (Felzenszwalb & Huttenlocher's lower envelope of
//! parabolas), used to build feathered masks.
//!
//! Exists because a feather computed from the true distance to the nearest unselected pixel is
//! round at corners, exact at any radius, and by construction zero on every unselected pixel;
//! the transform is separable and linear in the pixel count, so it stays cheap on large layers.

use super::rect::Rect;
use super::transpose::transpose;

/// Squared distance used for "no zero pixel on this line / in this region".
pub(crate) const FAR: f32 = f32::INFINITY;

/// Squared Euclidean distance from each pixel of `region` to the nearest pixel of `region`
/// whose value in `pixels` (a `width`-wide single-channel buffer) is 0, row-major over `region`.
/// Distances of `cap` or more, and pixels with no zero pixel in the region, get [`FAR`]
/// (dropping far row distances early leaves few parabolas per column: much faster inside large
/// selections). `region` must lie inside the buffer.
pub(crate) fn squared_distance_to_zero(
    pixels: &[u8],
    width: usize,
    region: Rect,
    cap: f32,
) -> Vec<f32> {
    let (rw, rh) = (region.width as usize, region.height as usize);
    let (x0, y0) = (region.x as usize, region.y as usize);
    let mut out = vec![FAR; rw * rh];
    let mut scratch = Envelope::with_capacity(rw.max(rh));
    let mut line = vec![0f64; rw.max(rh)];
    let mut result = vec![0f64; rw.max(rh)];
    for (y, row) in out.chunks_exact_mut(rw).enumerate() {
        let src = &pixels[(y0 + y) * width + x0..][..rw];
        for (f, &v) in line.iter_mut().zip(src) {
            *f = if v == 0 { 0.0 } else { f64::INFINITY };
        }
        scratch.transform(&line[..rw], &mut result[..rw]);
        for (o, &d) in row.iter_mut().zip(&result[..rw]) {
            *o = capped(d, cap);
        }
    }
    let mut columns = transpose(&out, rw, rh);
    for column in columns.chunks_exact_mut(rh) {
        for (f, &d) in line.iter_mut().zip(column.iter()) {
            *f = f64::from(d);
        }
        scratch.transform(&line[..rh], &mut result[..rh]);
        for (o, &d) in column.iter_mut().zip(&result[..rh]) {
            *o = capped(d, cap);
        }
    }
    transpose(&columns, rh, rw)
}

fn capped(d: f64, cap: f32) -> f32 {
    let d = d as f32;
    if d < cap { d } else { FAR }
}

/// Scratch for the 1-D transform: the parabolas of the lower envelope and their boundaries.
struct Envelope {
    /// Positions of the parabolas' vertices.
    sites: Vec<usize>,
    /// `bounds[k]` = where parabola `k` starts to be the lowest.
    bounds: Vec<f64>,
}

impl Envelope {
    fn with_capacity(n: usize) -> Self {
        Self {
            sites: Vec::with_capacity(n),
            bounds: Vec::with_capacity(n + 1),
        }
    }

    /// `out[q] = min over p of (q - p)^2 + f[p]`; infinite `f[p]` are left out of the envelope,
    /// so a line without any finite value yields infinity everywhere.
    fn transform(&mut self, f: &[f64], out: &mut [f64]) {
        self.build(f);
        if self.sites.is_empty() {
            out.fill(f64::INFINITY);
            return;
        }
        let mut k = 0;
        for (q, o) in out.iter_mut().enumerate() {
            while k + 1 < self.sites.len() && self.bounds[k + 1] < q as f64 {
                k += 1;
            }
            let p = self.sites[k];
            let d = q as f64 - p as f64;
            *o = d * d + f[p];
        }
    }

    /// Builds the lower envelope of the parabolas rooted at the finite values of `f`.
    fn build(&mut self, f: &[f64]) {
        self.sites.clear();
        self.bounds.clear();
        for (q, &fq) in f.iter().enumerate().filter(|(_, v)| v.is_finite()) {
            let mut s = f64::NEG_INFINITY;
            while let Some(&p) = self.sites.last() {
                s = intersection(f, p, q, fq);
                if s > *self.bounds.last().expect("one bound per site") {
                    break;
                }
                self.sites.pop();
                self.bounds.pop();
                s = f64::NEG_INFINITY;
            }
            self.sites.push(q);
            self.bounds.push(s);
        }
    }
}

/// Where the parabola rooted at `q` (value `fq`) becomes lower than the one rooted at `p < q`.
fn intersection(f: &[f64], p: usize, q: usize, fq: f64) -> f64 {
    let (pf, qf) = (p as f64, q as f64);
    ((fq + qf * qf) - (f[p] + pf * pf)) / (2.0 * (qf - pf))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brute_force(pixels: &[u8], w: usize, region: Rect) -> Vec<f32> {
        let (rw, rh) = (region.width as usize, region.height as usize);
        let (x0, y0) = (region.x as usize, region.y as usize);
        let mut out = vec![FAR; rw * rh];
        for y in 0..rh {
            for x in 0..rw {
                for yy in 0..rh {
                    for xx in 0..rw {
                        if pixels[(y0 + yy) * w + x0 + xx] == 0 {
                            let d = (x as f32 - xx as f32).powi(2) + (y as f32 - yy as f32).powi(2);
                            out[y * rw + x] = out[y * rw + x].min(d);
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn matches_brute_force() {
        let (w, h) = (17, 13);
        let mut s = 7u32;
        let pixels: Vec<u8> = (0..w * h)
            .map(|_| {
                s = s.wrapping_mul(1_103_515_245).wrapping_add(12345);
                // Mostly selected, a few holes.
                if (s >> 16).is_multiple_of(9) { 0 } else { 200 }
            })
            .collect();
        for region in [Rect::of_size(w as u32, h as u32), Rect::new(3, 2, 9, 8)] {
            assert_eq!(
                squared_distance_to_zero(&pixels, w, region, FAR),
                brute_force(&pixels, w, region)
            );
        }
    }

    #[test]
    fn no_zero_pixel_means_far() {
        let pixels = vec![255u8; 12];
        let d = squared_distance_to_zero(&pixels, 4, Rect::of_size(4, 3), FAR);
        assert!(d.iter().all(|v| *v == FAR));
    }

    #[test]
    fn single_hole_gives_squared_distances() {
        let mut pixels = vec![255u8; 25];
        pixels[12] = 0; // centre of 5x5
        let d = squared_distance_to_zero(&pixels, 5, Rect::of_size(5, 5), FAR);
        assert_eq!(d[12], 0.0);
        assert_eq!(d[0], 8.0);
        assert_eq!(d[2], 4.0);
        assert_eq!(d[13], 1.0);
        let capped = squared_distance_to_zero(&pixels, 5, Rect::of_size(5, 5), 5.0);
        assert_eq!(capped[0], FAR);
        assert_eq!(capped[2], 4.0);
    }
}
