"""Everything livefill does to a Krita document, behind one small API.

Why this module exists: it is the only module that touches Krita's scripting API (``krita``), so
Krita-version quirks live in one place and everything else stays testable without Krita. It
reads the selection (bounds and 8-bit mask), the current layer's or the visible image's pixels,
creates and updates paint layers at an offset, resizes the canvas, and stores settings.

Pixels cross this boundary as RGBA (straight alpha, the wire format); Krita's 8-bit RGBA colour
space stores BGRA, so the swap happens here. Only 8-bit RGBA documents are supported.
"""

from typing import Optional, Tuple

from krita import Krita
from PyQt5.QtCore import Qt
from PyQt5.QtGui import QImage

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


def read_pixels(doc, node, rect: Rect, source: str) -> bytes:
    """RGBA pixels of ``rect``: from ``node`` (SOURCE_LAYER) or the visible image (SOURCE_IMAGE)."""
    if source == core.SOURCE_IMAGE:
        doc.waitForDone()
        data = doc.pixelData(rect.x, rect.y, rect.width, rect.height)
    else:
        if node is None:
            raise DocumentError("Select a layer first.")
        if node.type() not in READABLE_TYPES:
            raise DocumentError("The current layer (%s) has no pixels to read; select a paint layer."
                                % node.type())
        if node.colorModel() != "RGBA" or node.colorDepth() != "U8":
            raise DocumentError("The current layer is not 8-bit RGBA.")
        data = node.pixelData(rect.x, rect.y, rect.width, rect.height)
    data = bytes(data)
    if len(data) != rect.width * rect.height * 4:
        raise DocumentError("Krita returned %d bytes for a %dx%d area." % (len(data), rect.width, rect.height))
    return proto.bgra_to_rgba(data)


def layer_checksum(doc, node, rect: Rect, with_selection: bool) -> int:
    """A cheap fingerprint of ``node``'s pixels (and the selection) in ``rect``, for live mode."""
    from . import pixels as px

    parts = [bytes(node.pixelData(rect.x, rect.y, rect.width, rect.height))]
    if with_selection:
        sel = doc.selection()
        if sel is not None:
            parts.append(bytes(sel.pixelData(rect.x, rect.y, rect.width, rect.height)))
    return px.checksum(*parts)


def scale_rgba(pixels: bytes, w: int, h: int, tw: int, th: int) -> bytes:
    """Smoothly resizes RGBA pixels with Qt (straight alpha kept)."""
    if (w, h) == (tw, th):
        return pixels
    src = QImage(pixels, w, h, w * 4, QImage.Format_RGBA8888)
    dst = src.scaled(tw, th, Qt.IgnoreAspectRatio, Qt.SmoothTransformation)
    dst = dst.convertToFormat(QImage.Format_RGBA8888)
    stride = dst.bytesPerLine()
    ptr = dst.constBits()
    ptr.setsize(stride * th)
    raw = bytes(ptr)
    if stride == tw * 4:
        return raw
    return b"".join(raw[y * stride:y * stride + tw * 4] for y in range(th))


# ------------------------------------------------------------------------------------------------
# Layers
# ------------------------------------------------------------------------------------------------


def add_layer(doc, name: str, rect: Rect, rgba: bytes, above=None):
    """Creates a paint layer named ``name`` holding ``rgba`` at ``rect``; returns the node.

    The layer goes right above ``above`` (in the same group) or at the top of the stack.
    """
    node = doc.createNode(name, "paintlayer")
    if above is not None and above.parentNode() is not None:
        parent = above.parentNode()
        parent.addChildNode(node, above)
    else:
        doc.rootNode().addChildNode(node, None)
    write_layer(doc, node, rect, rgba)
    return node


def write_layer(doc, node, rect: Rect, rgba: bytes, clear: bool = False) -> None:
    """Writes ``rgba`` into ``node`` at ``rect``; with ``clear``, empties the layer first."""
    if clear:
        b = node.bounds()
        if b.width() > 0 and b.height() > 0:
            node.setPixelData(bytes(b.width() * b.height() * 4), b.x(), b.y(), b.width(), b.height())
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
