//! Axis-aligned integer rectangles in pixel coordinates.
//!
//! Exists because crops, mask bounds, outpaint offsets and paste positions all need the same
//! small geometry (intersect, union, grow, clamp) and must agree on one convention: `x`/`y` is
//! the top-left pixel (may be negative, e.g. an outpaint border left of the image), `width` and
//! `height` count pixels, and the right/bottom edges are exclusive. Edge arithmetic is done in
//! `i64` so no combination of `i32` positions and `u32` sizes can overflow; results saturate.

/// A rectangle of pixels: columns `x .. x + width`, rows `y .. y + height`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Rect {
    pub x: i32,
    pub y: i32,
    pub width: u32,
    pub height: u32,
}

impl Rect {
    pub const fn new(x: i32, y: i32, width: u32, height: u32) -> Self {
        Self {
            x,
            y,
            width,
            height,
        }
    }

    /// The whole of a `width` x `height` image.
    pub const fn of_size(width: u32, height: u32) -> Self {
        Self::new(0, 0, width, height)
    }

    /// Builds a rectangle from its edges (right/bottom exclusive), saturating into range;
    /// inverted edges give an empty rectangle.
    pub fn from_edges(left: i64, top: i64, right: i64, bottom: i64) -> Self {
        let x = saturate_i32(left);
        let y = saturate_i32(top);
        let width = saturate_u32(right - i64::from(x));
        let height = saturate_u32(bottom - i64::from(y));
        Self::new(x, y, width, height)
    }

    /// First column to the right of the rectangle.
    pub fn right(&self) -> i64 {
        i64::from(self.x) + i64::from(self.width)
    }

    /// First row below the rectangle.
    pub fn bottom(&self) -> i64 {
        i64::from(self.y) + i64::from(self.height)
    }

    pub fn is_empty(&self) -> bool {
        self.width == 0 || self.height == 0
    }

    pub fn area(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }

    pub fn contains_point(&self, x: i64, y: i64) -> bool {
        x >= i64::from(self.x) && x < self.right() && y >= i64::from(self.y) && y < self.bottom()
    }

    /// Whether `other` lies entirely inside `self` (an empty `other` is inside anything).
    pub fn contains(&self, other: &Rect) -> bool {
        other.is_empty()
            || (other.x >= self.x
                && other.y >= self.y
                && other.right() <= self.right()
                && other.bottom() <= self.bottom())
    }

    /// Whether the rectangle lies inside a `width` x `height` image.
    pub fn fits_in(&self, width: u32, height: u32) -> bool {
        Rect::of_size(width, height).contains(self)
    }

    /// The overlap of two rectangles; `None` when they do not overlap.
    pub fn intersect(&self, other: &Rect) -> Option<Rect> {
        let r = Rect::from_edges(
            i64::from(self.x.max(other.x)),
            i64::from(self.y.max(other.y)),
            self.right().min(other.right()),
            self.bottom().min(other.bottom()),
        );
        (!r.is_empty()).then_some(r)
    }

    /// The smallest rectangle holding both; an empty operand is ignored.
    pub fn union(&self, other: &Rect) -> Rect {
        if self.is_empty() {
            return *other;
        }
        if other.is_empty() {
            return *self;
        }
        Rect::from_edges(
            i64::from(self.x.min(other.x)),
            i64::from(self.y.min(other.y)),
            self.right().max(other.right()),
            self.bottom().max(other.bottom()),
        )
    }

    /// Grows every side by `px` pixels.
    pub fn expand(&self, px: u32) -> Rect {
        self.expand_sides(px, px, px, px)
    }

    /// Grows each side by its own amount.
    pub fn expand_sides(&self, left: u32, top: u32, right: u32, bottom: u32) -> Rect {
        Rect::from_edges(
            i64::from(self.x) - i64::from(left),
            i64::from(self.y) - i64::from(top),
            self.right() + i64::from(right),
            self.bottom() + i64::from(bottom),
        )
    }

    /// The part of the rectangle inside a `width` x `height` image; `None` when nothing is.
    pub fn clamp_to(&self, width: u32, height: u32) -> Option<Rect> {
        self.intersect(&Rect::of_size(width, height))
    }

    /// The rectangle moved by (`dx`, `dy`), saturating at the `i32` range.
    pub fn translate(&self, dx: i32, dy: i32) -> Rect {
        Rect::new(
            self.x.saturating_add(dx),
            self.y.saturating_add(dy),
            self.width,
            self.height,
        )
    }
}

fn saturate_i32(v: i64) -> i32 {
    v.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

fn saturate_u32(v: i64) -> u32 {
    v.clamp(0, i64::from(u32::MAX)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edges_and_area() {
        let r = Rect::new(-2, 3, 5, 4);
        assert_eq!((r.right(), r.bottom(), r.area()), (3, 7, 20));
        assert!(r.contains_point(-2, 3));
        assert!(!r.contains_point(3, 3));
        assert!(Rect::new(0, 0, 0, 5).is_empty());
    }

    #[test]
    fn intersect_and_union() {
        let a = Rect::new(0, 0, 10, 10);
        let b = Rect::new(5, -5, 10, 10);
        assert_eq!(a.intersect(&b), Some(Rect::new(5, 0, 5, 5)));
        assert_eq!(a.union(&b), Rect::new(0, -5, 15, 15));
        assert_eq!(a.intersect(&Rect::new(10, 0, 3, 3)), None);
        assert_eq!(a.union(&Rect::default()), a);
        assert_eq!(Rect::default().union(&b), b);
    }

    #[test]
    fn expand_clamp_translate() {
        let r = Rect::new(2, 2, 4, 4);
        assert_eq!(r.expand(3), Rect::new(-1, -1, 10, 10));
        assert_eq!(r.expand_sides(1, 0, 2, 5), Rect::new(1, 2, 7, 9));
        assert_eq!(r.expand(3).clamp_to(8, 6), Some(Rect::new(0, 0, 8, 6)));
        assert_eq!(Rect::new(20, 20, 2, 2).clamp_to(8, 6), None);
        assert_eq!(r.translate(-5, 1), Rect::new(-3, 3, 4, 4));
        assert!(Rect::new(0, 0, 8, 6).fits_in(8, 6));
        assert!(!Rect::new(1, 0, 8, 6).fits_in(8, 6));
    }

    #[test]
    fn saturates_instead_of_overflowing() {
        let r = Rect::new(i32::MAX - 1, 0, u32::MAX, 1).expand(10);
        assert_eq!(r.x, i32::MAX - 11);
        assert_eq!(Rect::from_edges(5, 5, 2, 9).width, 0);
        assert_eq!(Rect::new(i32::MAX, 0, 1, 1).translate(5, 0).x, i32::MAX);
    }
}
