"""Pixel-buffer operations on plain ``bytes`` (no Krita, no Qt).

Why this module exists: results from the daemon must be cut to the selection before they become a
layer (so pixels outside the selection can never change), cropped, and checksummed for live mode.
Doing it here, on bytes, keeps it testable without Krita. Every operation works on whole rows or
strided slices (done in C by CPython); the only per-pixel Python loop is the soft-mask multiply,
used only when a mask has values other than 0 and 255.

Buffers are row-major, top-left origin: 4 bytes per pixel for colour (RGBA or BGRA, the functions
here do not care which, except that the 4th byte is alpha), 1 byte per pixel for masks.
"""

import zlib
from typing import Optional, Tuple

try:
    from .livefill_plugin_core import Rect
except ImportError:  # development checkout: protocol/python on sys.path
    from livefill_plugin_core import Rect  # type: ignore[no-redef]

#: _MUL[m][a] = round(a * m / 255): the soft-mask multiply as a table lookup.
_MUL = [bytes((a * m + 127) // 255 for a in range(256)) for m in range(256)]
#: Maps 0 -> 0 and every other byte to 255.
_NONZERO_TO_FF = bytes([0] + [255] * 255)


def crop(buf: bytes, width: int, height: int, rect: Rect, bpp: int = 4) -> bytes:
    """The part of ``buf`` (``width`` x ``height``, ``bpp`` bytes per pixel) inside ``rect``.

    ``rect`` is in the buffer's coordinates; parts of it outside the buffer come out as zeros.
    """
    if len(buf) != width * height * bpp:
        raise ValueError("buffer holds %d bytes, expected %d" % (len(buf), width * height * bpp))
    out = bytearray(rect.width * rect.height * bpp)
    inter = rect.intersect(Rect(0, 0, width, height))
    if inter.is_empty():
        return bytes(out)
    row = inter.width * bpp
    for y in range(inter.y, inter.y + inter.height):
        src = (y * width + inter.x) * bpp
        dst = ((y - rect.y) * rect.width + (inter.x - rect.x)) * bpp
        out[dst:dst + row] = buf[src:src + row]
    return bytes(out)


def paste(dst: bytearray, dst_width: int, dst_height: int, src: bytes, src_rect: Rect, bpp: int = 4) -> None:
    """Copies ``src`` (sized like ``src_rect``) into ``dst`` at ``src_rect``'s position (clipped)."""
    inter = src_rect.intersect(Rect(0, 0, dst_width, dst_height))
    if inter.is_empty():
        return
    row = inter.width * bpp
    for y in range(inter.y, inter.y + inter.height):
        s = ((y - src_rect.y) * src_rect.width + (inter.x - src_rect.x)) * bpp
        d = (y * dst_width + inter.x) * bpp
        dst[d:d + row] = src[s:s + row]


def is_binary_mask(mask: bytes) -> bool:
    """Whether every byte of ``mask`` is 0 or 255 (a hard selection)."""
    return not mask.translate(None, b"\x00\xff")


def multiply_alpha(pixels: bytes, mask: bytes) -> bytes:
    """``pixels`` (4 bytes per pixel, alpha last) with alpha scaled by ``mask`` (1 byte per pixel).

    Pixels that end up fully transparent are zeroed entirely, so Krita sees them as empty (its
    layer bounds then hug the visible part).
    """
    n = len(mask)
    if len(pixels) != n * 4:
        raise ValueError("pixel buffer of %d bytes does not match a mask of %d pixels" % (len(pixels), n))
    alpha = pixels[3::4]
    if is_binary_mask(mask):
        new_alpha = (int.from_bytes(alpha, "little") & int.from_bytes(mask, "little")).to_bytes(n, "little")
    else:
        mul = _MUL
        new_alpha = bytes(mul[m][a] for a, m in zip(alpha, mask))
    keep = new_alpha.translate(_NONZERO_TO_FF)
    keep4 = bytearray(n * 4)
    for c in range(4):
        keep4[c::4] = keep
    out = (int.from_bytes(pixels, "little") & int.from_bytes(keep4, "little")).to_bytes(n * 4, "little")
    out = bytearray(out)
    out[3::4] = new_alpha
    return bytes(out)


def transparent_inside(width: int, height: int, hole: Rect) -> bytes:
    """A ``width`` x ``height`` mask that is 255 everywhere except 0 inside ``hole``.

    Used for Expand: the outpainted layer keeps only the new border, never the original area.
    """
    row_full = b"\xff" * width
    out = bytearray(row_full * height)
    inter = hole.intersect(Rect(0, 0, width, height))
    if not inter.is_empty():
        zeros = bytes(inter.width)
        for y in range(inter.y, inter.y + inter.height):
            start = y * width + inter.x
            out[start:start + inter.width] = zeros
    return bytes(out)


def opaque_bounds(pixels: bytes, width: int, height: int) -> Optional[Rect]:
    """Bounding box of the pixels whose alpha is not 0, or None when all are transparent."""
    alpha = pixels[3::4]
    top = None
    bottom = -1
    left = width
    right = -1
    empty_row = bytes(width)
    for y in range(height):
        row = alpha[y * width:(y + 1) * width]
        if row == empty_row:
            continue
        if top is None:
            top = y
        bottom = y
        stripped = row.lstrip(b"\x00")
        left = min(left, width - len(stripped))
        right = max(right, len(row.rstrip(b"\x00")) - 1)
    if top is None:
        return None
    return Rect(left, top, right - left + 1, bottom - top + 1)


def checksum(*parts: bytes) -> int:
    """A cheap change detector over several buffers (CRC-32, chained)."""
    value = 0
    for part in parts:
        value = zlib.crc32(part, value)
    return value


def solid(width: int, height: int, color: Tuple[int, int, int, int]) -> bytes:
    """A ``width`` x ``height`` buffer filled with one 4-byte pixel."""
    return bytes(color) * (width * height)
