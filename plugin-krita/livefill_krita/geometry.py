"""Integer rectangles in canvas pixel coordinates (no Krita, no Qt).

Why this module exists: every livefill operation is a small amount of rectangle arithmetic (the
region sent around a selection, where a result lands, how much the canvas grows), and getting an
offset wrong silently misplaces a layer. Keeping it in one tiny pure module makes it testable.
"""

from typing import NamedTuple


class Rect(NamedTuple):
    x: int
    y: int
    w: int
    h: int

    @property
    def right(self) -> int:
        """One past the last column."""
        return self.x + self.w

    @property
    def bottom(self) -> int:
        """One past the last row."""
        return self.y + self.h

    def empty(self) -> bool:
        return self.w <= 0 or self.h <= 0

    def intersect(self, other: "Rect") -> "Rect":
        x0 = max(self.x, other.x)
        y0 = max(self.y, other.y)
        x1 = min(self.right, other.right)
        y1 = min(self.bottom, other.bottom)
        if x1 <= x0 or y1 <= y0:
            return Rect(x0, y0, 0, 0)
        return Rect(x0, y0, x1 - x0, y1 - y0)

    def grow(self, left: int, top: int, right: int, bottom: int) -> "Rect":
        return Rect(self.x - left, self.y - top, self.w + left + right, self.h + top + bottom)

    def translate(self, dx: int, dy: int) -> "Rect":
        return Rect(self.x + dx, self.y + dy, self.w, self.h)

    def contains(self, other: "Rect") -> bool:
        return (
            other.x >= self.x
            and other.y >= self.y
            and other.right <= self.right
            and other.bottom <= self.bottom
        )
