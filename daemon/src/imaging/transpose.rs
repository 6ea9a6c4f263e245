//! Cache-blocked transpose of a row-major buffer.
//!
//! Exists so separable filters can run their vertical pass as a horizontal one: gathering a
//! column of a multi-megapixel buffer touches a new cache line per pixel, while a blocked
//! transpose, a row pass and a transpose back stay in cache and cost a few ms.

/// Side of the square tiles copied at a time.
const BLOCK: usize = 32;

/// `src` is `width` x `height`, row-major; the result is `height` x `width`, row-major.
pub(crate) fn transpose<T: Copy + Default>(src: &[T], width: usize, height: usize) -> Vec<T> {
    let mut dst = vec![T::default(); src.len()];
    for by in (0..height).step_by(BLOCK) {
        for bx in (0..width).step_by(BLOCK) {
            for y in by..(by + BLOCK).min(height) {
                let row = &src[y * width..(y + 1) * width];
                for x in bx..(bx + BLOCK).min(width) {
                    dst[x * height + y] = row[x];
                }
            }
        }
    }
    dst
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transposes_odd_sizes_and_round_trips() {
        for (w, h) in [(1, 1), (3, 5), (33, 70), (64, 1)] {
            let src: Vec<u32> = (0..(w * h) as u32).collect();
            let t = transpose(&src, w, h);
            for y in 0..h {
                for x in 0..w {
                    assert_eq!(t[x * h + y], src[y * w + x]);
                }
            }
            assert_eq!(transpose(&t, h, w), src);
        }
    }
}
