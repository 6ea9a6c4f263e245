"""Everything livefill does to a Krita document, behind one small API.

Why this module exists: it is the only module that touches Krita's scripting API (``krita``), so
Krita-version quirks live in one place and everything else stays testable without Krita. It
reads the selection (bounds and 8-bit mask), the current layer's or the visible image's pixels,
creates and updates paint layers at an offset, resizes the canvas, and stores settings.

Pixels cross this boundary as RGBA (straight alpha, the wire format); Krita's 8-bit RGBA colour
space stores BGRA, so the swap happens here. Only 8-bit RGBA documents are supported.
"""

import math
from typing import Optional, Tuple

from krita import Krita
from PyQt5.QtCore import QRectF, Qt
from PyQt5.QtGui import QImage, QPainter

try:
    from . import livefill_plugin_core as core
    from . import livefill_protocol as proto
except ImportError:  # development checkout: protocol/python on sys.path
    import livefill_plugin_core as core  # type: ignore[no-redef]
    import livefill_protocol as proto  # type: ignore[no-redef]

Rect = core.Rect

SETTINGS_GROUP = "livefill"
#: Layer types whose pixels can be read as a source.
READABLE_TYPES = ("paintlayer", "grouplayer", "vectorlayer", "filelayer", "filllayer", "clonelayer")


class DocumentError(Exception):
    """The document cannot be used as asked; the text is for the artist."""


# ------------------------------------------------------------------------------------------------
# Finding things
# ------------------------------------------------------------------------------------------------


def active_document():
    """The document of the active view, or None."""
    return Krita.instance().activeDocument()


def active_layer(doc):
    """The document's current layer (None without a view, e.g. in kritarunner)."""
    return doc.activeNode() if doc is not None else None


def check_supported(doc) -> None:
    """Raises DocumentError unless ``doc`` is an 8-bit RGBA document."""
    if doc is None:
        raise DocumentError("Open or create a document first.")
    if doc.colorModel() != "RGBA" or doc.colorDepth() != "U8":
        raise DocumentError(
            "livefill works on 8-bit RGB/Alpha documents; this one is %s/%s "
            "(Image \u2192 Convert Image Color Space)." % (doc.colorModel(), doc.colorDepth())
        )


def canvas_rect(doc) -> Rect:
    return Rect(0, 0, doc.width(), doc.height())


def find_node(doc, unique_id):
    """The node with ``unique_id`` (a QUuid) in ``doc``, or None if it was deleted.

    Walks the tree instead of using ``Document.nodeByUniqueID``: in Krita 5.1 that returns a
    node typed as a plain QObject, which ``addChildNode`` then rejects.
    """
    if doc is None or unique_id is None:
        return None
    stack = list(doc.rootNode().childNodes())
    while stack:
        node = stack.pop()
        if node.uniqueId() == unique_id:
            return node
        stack.extend(node.childNodes())
    return None


def is_same_document(a, b) -> bool:
    if a is None or b is None:
        return False
    try:
        return a == b or a.rootNode().uniqueId() == b.rootNode().uniqueId()
    except Exception:
        return False


def document_is_open(doc) -> bool:
    return any(is_same_document(doc, d) for d in Krita.instance().documents())


# ------------------------------------------------------------------------------------------------
# Selection
# ------------------------------------------------------------------------------------------------


def selection_bounds(doc) -> Optional[Rect]:
    """The selection's bounding box in canvas pixels, or None when nothing is selected."""
    sel = doc.selection()
    if sel is None:
        return None
    rect = Rect(sel.x(), sel.y(), sel.width(), sel.height())
    if rect.is_empty():
        return None
    return rect


def selection_mask(doc, rect: Rect) -> bytes:
    """The selection over ``rect``: one byte per pixel, 255 = selected, 0 = not."""
    sel = doc.selection()
    if sel is None:
        return b"\xff" * (rect.width * rect.height)
    data = bytes(sel.pixelData(rect.x, rect.y, rect.width, rect.height))
    if len(data) != rect.width * rect.height:
        raise DocumentError("Krita returned an unexpected selection buffer (%d bytes)." % len(data))
    return data


# ------------------------------------------------------------------------------------------------
# Pixels
# ------------------------------------------------------------------------------------------------


def check_readable(node) -> None:
    """Raises DocumentError unless ``node`` is a layer with 8-bit RGBA pixels to read."""
    if node is None:
        raise DocumentError("Select a layer first.")
    if node.type() not in READABLE_TYPES:
        raise DocumentError("The current layer (%s) has no pixels to read; select a paint layer." % node.type())
    if node.colorModel() != "RGBA" or node.colorDepth() != "U8":
        raise DocumentError("The current layer is not 8-bit RGBA.")


def read_pixels(doc, node, rect: Rect, source: str) -> bytes:
    """RGBA pixels of ``rect``: from ``node`` (SOURCE_LAYER) or the visible image (SOURCE_IMAGE)."""
    if source == core.SOURCE_IMAGE:
        doc.waitForDone()
        data = doc.pixelData(rect.x, rect.y, rect.width, rect.height)
    else:
        check_readable(node)
        data = node.pixelData(rect.x, rect.y, rect.width, rect.height)
    data = bytes(data)
    if len(data) != rect.width * rect.height * 4:
        raise DocumentError("Krita returned %d bytes for a %dx%d area." % (len(data), rect.width, rect.height))
    return proto.bgra_to_rgba(data)


#: Bytes per band when scaling and writing a large preview. PyQt holds Python's GIL inside every
#: Qt call (Krita's own calls release it), so big images are read, scaled and written one band at
#: a time: no single call keeps the UI thread's Python (the canvas event filter included) waiting
#: for more than a few milliseconds.
BAND_BYTES = 1 << 20


def _qimage_bytes(img: QImage) -> bytes:
    """The pixels of a 32-bit ``img`` as tightly packed rows."""
    w, h = img.width(), img.height()
    stride = img.bytesPerLine()
    ptr = img.constBits()
    ptr.setsize(stride * h)
    raw = bytes(ptr)
    if stride == w * 4:
        return raw
    return b"".join(raw[y * stride:y * stride + w * 4] for y in range(h))


def _output_band_rows(width: int, height: int, out_height: int) -> int:
    """Output rows per band when ``height`` rows scale to ``out_height``: a multiple of the
    smallest output run that maps onto whole source rows (so banded scaling equals scaling
    the whole image), about ``BAND_BYTES`` of source each; approximate when no such run is
    small enough."""
    g = math.gcd(height, out_height)
    out_run, src_run = out_height // g, height // g
    src_run_bytes = src_run * width * 4
    if src_run_bytes <= 4 * BAND_BYTES:
        return out_run * max(1, BAND_BYTES // src_run_bytes)
    return max(1, int(BAND_BYTES / (width * 4) / (height / float(out_height))))


def read_live_frame(doc, node, region: Rect, send_size: Optional[Tuple[int, int]]) -> bytes:
    """RGBA pixels of ``node`` over ``region``, scaled smoothly to ``send_size`` when given.

    Reads the layer's projection, not its paint device: while a stroke is in progress Krita
    paints most brushes into a temporary target that reaches the paint device only when the
    stroke ends, so only the projection shows the stroke as it grows (and it includes the
    layer's masks, i.e. what the layer looks like). Safe off the UI thread. Read and scaled in
    horizontal bands (``BAND_BYTES`` of layer
    each): Krita's reads release Python's GIL but PyQt's ``QImage`` calls hold it, so no single
    call keeps the UI thread waiting long. The BGRA to RGBA swap is Qt's, never a Python loop.
    (``Node.thumbnail`` would be cheaper but maps the layer's own bounds, not the canvas.)
    """
    tw, th = send_size if send_size is not None else (region.width, region.height)
    rows = _output_band_rows(region.width, region.height, th)
    fy = region.height / float(th)
    out = []
    for oy in range(0, th, rows):
        n = min(rows, th - oy)
        sy0 = int(round(oy * fy))
        sy1 = min(region.height, max(sy0 + 1, int(round((oy + n) * fy))))
        data = bytes(node.projectionPixelData(region.x, region.y + sy0, region.width, sy1 - sy0))
        if len(data) != region.width * (sy1 - sy0) * 4:
            raise DocumentError("Krita returned %d bytes for a %dx%d area." % (len(data), region.width, sy1 - sy0))
        img = QImage(data, region.width, sy1 - sy0, region.width * 4, QImage.Format_ARGB32)
        if (tw, n) != (region.width, sy1 - sy0):
            img = img.scaled(tw, n, Qt.IgnoreAspectRatio, Qt.SmoothTransformation)
        out.append(_qimage_bytes(img.convertToFormat(QImage.Format_RGBA8888)))
    return b"".join(out)




def write_scaled(node, rect: Rect, rgba: bytes, w: int, h: int, clear: Tuple[Rect, ...] = ()) -> None:
    """Scales RGBA pixels (``w`` x ``h``) smoothly onto ``rect`` of ``node`` as Krita's BGRA,
    band by band (see ``BAND_BYTES``), after emptying ``clear``; no canvas refresh
    (``refresh``). Safe off the UI thread. Opaque pixels (the usual live frame) skip the
    premultiplied-to-straight conversion, which is the identity for alpha 255."""
    for r in clear:
        if not r.is_empty():
            node.setPixelData(bytes(r.width * r.height * 4), r.x, r.y, r.width, r.height)
    opaque = rgba[3::4].count(255) == w * h
    src = QImage(rgba, w, h, w * 4, QImage.Format_RGBA8888).convertToFormat(QImage.Format_ARGB32_Premultiplied)
    rows = max(1, BAND_BYTES // max(1, rect.width * 4))
    fy = h / float(rect.height)
    # Each band is drawn with a few source rows of overlap beyond its edges (clipped away), so
    # the filter sees the same neighbours as for the whole image: no seams between bands.
    margin = int(math.ceil(2.0 / fy)) + 1
    for y in range(0, rect.height, rows):
        n = min(rows, rect.height - y)
        top, bottom = min(margin, y), min(margin, rect.height - y - n)
        band = QImage(rect.width, n, QImage.Format_ARGB32_Premultiplied)
        band.fill(0)
        painter = QPainter(band)
        painter.setRenderHint(QPainter.SmoothPixmapTransform, (w, h) != (rect.width, rect.height))
        painter.setCompositionMode(QPainter.CompositionMode_Source)
        painter.drawImage(QRectF(0, -top, rect.width, n + top + bottom), src,
                          QRectF(0, (y - top) * fy, w, (n + top + bottom) * fy))
        painter.end()
        if not opaque:
            band = band.convertToFormat(QImage.Format_ARGB32)
        node.setPixelData(_qimage_bytes(band), rect.x, rect.y + y, rect.width, n)


def write_bgra(node, rect: Rect, bgra: bytes, clear: Tuple[Rect, ...] = ()) -> None:
    """Writes Krita-ordered pixels into ``node`` at ``rect`` in bands after emptying ``clear``;
    no canvas refresh. Safe off the UI thread."""
    for r in clear:
        if not r.is_empty():
            node.setPixelData(bytes(r.width * r.height * 4), r.x, r.y, r.width, r.height)
    row = rect.width * 4
    rows = max(1, BAND_BYTES // max(1, row))
    view = memoryview(bgra)
    for y in range(0, rect.height, rows):
        n = min(rows, rect.height - y)
        node.setPixelData(view[y * row:(y + n) * row].tobytes(), rect.x, rect.y + y, rect.width, n)


def refresh(doc) -> None:
    """Recomposites the image so the canvas shows what was written (waits for Krita). UI thread
    only: on a worker it can deadlock against a ``waitForDone`` on the UI thread."""
    doc.refreshProjection()


def scale_rgba(pixels: bytes, w: int, h: int, tw: int, th: int) -> bytes:
    """Smoothly resizes RGBA pixels with Qt (straight alpha kept)."""
    if (w, h) == (tw, th):
        return pixels
    src = QImage(pixels, w, h, w * 4, QImage.Format_RGBA8888)
    dst = src.scaled(tw, th, Qt.IgnoreAspectRatio, Qt.SmoothTransformation)
    return _qimage_bytes(dst.convertToFormat(QImage.Format_RGBA8888))


# ------------------------------------------------------------------------------------------------
# Layers
# ------------------------------------------------------------------------------------------------


def add_layer(doc, name: str, rect: Rect, rgba: bytes, above=None):
    """Creates a paint layer named ``name`` holding ``rgba`` at ``rect``; returns the node.

    The layer goes right above ``above`` (in the same group) or at the top of the stack.
    """
    node = add_empty_layer(doc, name, above)
    write_layer(doc, node, rect, rgba)
    return node


def add_empty_layer(doc, name: str, above=None):
    """Creates an empty paint layer named ``name`` right above ``above`` (or on top)."""
    node = doc.createNode(name, "paintlayer")
    if above is not None and above.parentNode() is not None:
        above.parentNode().addChildNode(node, above)
    else:
        doc.rootNode().addChildNode(node, None)
    return node


def write_layer(doc, node, rect: Rect, rgba: bytes) -> None:
    """Writes ``rgba`` into ``node`` at ``rect`` and refreshes the canvas."""
    node.setPixelData(proto.rgba_to_bgra(rgba), rect.x, rect.y, rect.width, rect.height)
    doc.refreshProjection()


def layer_bounds(node) -> Rect:
    b = node.bounds()
    return Rect(b.x(), b.y(), b.width(), b.height())


def rename(node, name: str) -> None:
    node.setName(name)


def set_active(doc, node) -> None:
    try:
        doc.setActiveNode(node)
    except Exception:
        pass


def is_active(doc, node) -> bool:
    """Whether ``node`` is the document's current layer (False without a view)."""
    try:
        current = doc.activeNode()
        return current is not None and node is not None and current.uniqueId() == node.uniqueId()
    except Exception:
        return False


def set_locked(node, locked: bool) -> None:
    """Locks ``node`` against painting (livefill's own writes still work: they bypass tools)."""
    node.setLocked(locked)



# ------------------------------------------------------------------------------------------------
# Canvas
# ------------------------------------------------------------------------------------------------


def resize_canvas(doc, x: int, y: int, w: int, h: int) -> None:
    """Grows/shrinks the canvas to ``(x, y, w, h)`` in current canvas coordinates (negative x/y
    add room left/top). Layers keep their pixels; the step is undoable (Image \u2192 Resize Canvas)."""
    doc.resizeImage(x, y, w, h)
    doc.waitForDone()


# ------------------------------------------------------------------------------------------------
# Settings (kritarc, group [livefill])
# ------------------------------------------------------------------------------------------------


def read_setting(key: str, default: str = "") -> str:
    value = Krita.instance().readSetting(SETTINGS_GROUP, key, default)
    return default if value is None else str(value)


def write_setting(key: str, value: str) -> None:
    Krita.instance().writeSetting(SETTINGS_GROUP, key, str(value))


def target(doc=None, node=None) -> Tuple[object, object]:
    """``(doc, node)``: the given ones, else the active document and its current layer."""
    doc = doc or active_document()
    if node is None and doc is not None:
        node = active_layer(doc)
    return doc, node
