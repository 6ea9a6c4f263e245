"""Every GIMP call of the livefill plug-in that touches an image: reading pixels and the
selection, adding result layers, resizing the canvas, undo groups, progress and messages.

Exists so the rest of the plug-in deals in plain rectangles and bytes (``livefill_logic`` and the
shared ``livefill_plugin_core``), and so
GIMP API details (Gegl formats, layer offsets, undo) are decided in one place.

Pixel formats: layers are read and written as ``R'G'B'A u8`` (non-linear sRGB, straight alpha:
exactly the wire format) and the selection as ``Y u8`` (GIMP stores the selection as linear
coverage, so the linear read returns it unchanged); Gegl converts from and to whatever precision
the image really has. Reads outside a drawable come back transparent (``AbyssPolicy.NONE``).
"""

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
gi.require_version("GdkPixbuf", "2.0")
from gi.repository import GdkPixbuf, Gegl, Gimp, GLib  # noqa: E402

from livefill_plugin_core import Rect  # noqa: E402

RGBA_FORMAT = "R'G'B'A u8"
MASK_FORMAT = "Y u8"


def image_rect(image) -> Rect:
    return Rect(0, 0, image.get_width(), image.get_height())


def drawable_rect(drawable) -> Rect:
    """The drawable's area in image coordinates (layer offsets applied)."""
    _ok, ox, oy = drawable.get_offsets()
    return Rect(ox, oy, drawable.get_width(), drawable.get_height())


def selection_bounds(image):
    """Bounds of the selection in image coordinates, or None when nothing is selected."""
    if Gimp.Selection.is_empty(image):
        return None
    # GIMP 3.0 returns (success, non_empty, x1, y1, x2, y2); x2/y2 are exclusive.
    _success, non_empty, x1, y1, x2, y2 = Gimp.Selection.bounds(image)
    if not non_empty:
        return None
    return Rect(x1, y1, x2 - x1, y2 - y1)


def _gegl_rect(rect: Rect):
    return Gegl.Rectangle.new(rect.x, rect.y, rect.width, rect.height)


def read_rgba(drawable, rect: Rect, scale: float = 1.0, size=None) -> bytes:
    """RGBA u8 pixels of ``drawable`` inside ``rect`` (image coordinates). With ``scale`` < 1 the
    area is read downscaled by GEGL (from the core's mipmaps) to ``size`` (default: the rect's
    size times ``scale``, rounded down)."""
    dr = drawable_rect(drawable)
    local = rect.translate(-dr.x, -dr.y)
    buf = drawable.get_buffer()
    if scale != 1.0:
        w, h = size or (max(1, int(local.width * scale)), max(1, int(local.height * scale)))
        area = Rect(int(local.x * scale), int(local.y * scale), w, h)
        return bytes(buf.get(_gegl_rect(area), scale, RGBA_FORMAT, Gegl.AbyssPolicy.NONE))
    return bytes(buf.get(_gegl_rect(local), 1.0, RGBA_FORMAT, Gegl.AbyssPolicy.NONE))


def change_probe(drawable, size: int = 256) -> bytes:
    """Small, cheap summary of the drawable's pixels (GIMP's own thumbnail, computed in the core,
    so only a few KB cross the wire) used by the live preview to notice edits."""
    data, w, h, bpp = drawable.get_thumbnail_data(size, size)
    return bytes(data.get_data()) + bytes((w & 0xFF, w >> 8, h & 0xFF, h >> 8, bpp))


def read_selection(image, rect: Rect) -> bytes:
    """Selection coverage (0 = not selected, 255 = selected) inside ``rect`` (image coordinates)."""
    buf = image.get_selection().get_buffer()
    return bytes(buf.get(_gegl_rect(rect), 1.0, MASK_FORMAT, Gegl.AbyssPolicy.NONE))


def read_visible(image, rect: Rect) -> bytes:
    """RGBA u8 of the visible composite inside ``rect`` (image coordinates). Works on a throwaway
    duplicate of the image, so the artist's image is not touched."""
    dup = image.duplicate()
    try:
        dup.undo_disable()
        merged = dup.merge_visible_layers(Gimp.MergeType.CLIP_TO_IMAGE)
        if merged is None:
            return bytes(rect.width * rect.height * 4)
        return read_rgba(merged, rect)
    finally:
        dup.delete()


def source_pixels(image, drawable, rect: Rect, sample_merged: bool) -> bytes:
    if sample_merged:
        return read_visible(image, rect)
    return read_rgba(drawable, rect)


class UndoGroup:
    """``with UndoGroup(image):`` -- everything inside undoes as one step."""

    def __init__(self, image):
        self.image = image

    def __enter__(self):
        self.image.undo_group_start()
        return self

    def __exit__(self, *exc):
        self.image.undo_group_end()
        return False


def _layer_type(image):
    if image.get_base_type() == Gimp.ImageBaseType.GRAY:
        return Gimp.ImageType.GRAYA_IMAGE
    return Gimp.ImageType.RGBA_IMAGE


def _insert_above(image, layer, drawable):
    """Inserts ``layer`` right above ``drawable`` (or at the top when it is not a layer)."""
    target = drawable
    if target is not None and target.is_layer_mask():
        target = Gimp.Layer.from_mask(target)
    if target is not None and target.is_layer():
        image.insert_layer(layer, target.get_parent(), image.get_item_position(target))
    else:
        image.insert_layer(layer, None, 0)


def write_pixels(layer, width: int, height: int, rgba: bytes, at=(0, 0)) -> None:
    buf = layer.get_buffer()
    buf.set(Gegl.Rectangle.new(at[0], at[1], width, height), RGBA_FORMAT, rgba)
    buf.flush()
    layer.update(at[0], at[1], width, height)


def write_scaled(layer, width: int, height: int, rgba: bytes, target_width: int,
                 target_height: int) -> None:
    """Writes ``rgba`` (width x height) into ``layer`` stretched to target_width x target_height
    (used by the live preview, which works on a downscaled copy of the layer). Scaled bilinearly
    by GdkPixbuf in this process, then sent to GIMP in one buffer write: a GEGL scale graph
    writing into the layer's buffer took several times longer (BENCHMARKS.md)."""
    if (width, height) == (target_width, target_height):
        write_pixels(layer, width, height, rgba)
        return
    src = GdkPixbuf.Pixbuf.new_from_bytes(GLib.Bytes.new(rgba), GdkPixbuf.Colorspace.RGB, True, 8,
                                          width, height, width * 4)
    scaled = src.scale_simple(target_width, target_height, GdkPixbuf.InterpType.BILINEAR)
    stride = scaled.get_rowstride()
    data = scaled.get_pixels()
    row = target_width * 4
    if stride != row:
        data = b"".join(data[y * stride:y * stride + row] for y in range(target_height))
    write_pixels(layer, target_width, target_height, data)


def add_result_layer(image, above, name: str, x: int, y: int, width: int, height: int, rgba: bytes,
                     mask_with_selection: bool = False):
    """A new layer holding ``rgba`` with its top-left corner at image coordinates (x, y), inserted
    above ``above``. Never modifies an existing layer. With ``mask_with_selection`` the layer gets a
    layer mask made from the current selection (the artist can edit or drop it)."""
    layer = Gimp.Layer.new(image, name, width, height, _layer_type(image), 100.0,
                           Gimp.LayerMode.NORMAL)
    _insert_above(image, layer, above)
    layer.set_offsets(x, y)
    write_pixels(layer, width, height, rgba)
    if mask_with_selection and not Gimp.Selection.is_empty(image):
        mask = layer.create_mask(Gimp.AddMaskType.SELECTION)
        layer.add_mask(mask)
    return layer


def new_image(name: str, width: int, height: int, rgba: bytes):
    """A new RGB image holding ``rgba`` as its only layer; returns (image, layer)."""
    image = Gimp.Image.new(width, height, Gimp.ImageBaseType.RGB)
    image.undo_disable()  # a fresh image has nothing to undo to
    layer = add_result_layer(image, None, name, 0, 0, width, height, rgba)
    image.undo_enable()
    return image, layer


def show_image(image) -> None:
    Gimp.Display.new(image)


def keep_selected(image, drawable) -> None:
    """Makes ``drawable`` the selected (active) layer again: inserting a layer selects it."""
    if drawable is not None and drawable.is_valid():
        image.set_selected_layers([drawable])


class unlocked_content:  # noqa: N801 (used like a function: ``with unlocked_content(layer):``)
    """Lets livefill write into a layer whose content is locked against the artist's tools (the
    live preview), locking it again afterwards."""

    def __init__(self, layer):
        self.layer = layer

    def __enter__(self):
        self.layer.set_lock_content(False)
        return self

    def __exit__(self, *exc):
        if self.layer.is_valid():
            self.layer.set_lock_content(True)
        return False


def find_layer(image, name: str):
    for layer in image.get_layers():
        if layer.get_name() == name:
            return layer
    return None


def resize_canvas(image, new_width: int, new_height: int, shift_x: int, shift_y: int) -> None:
    """Undoable canvas resize; existing layers move by (shift_x, shift_y) and keep their size."""
    if not image.resize(new_width, new_height, shift_x, shift_y):
        raise RuntimeError("GIMP refused to resize the canvas")


def progress_start(text: str) -> None:
    Gimp.progress_init(text)


def progress(fraction: float, text: str = None) -> None:
    if text:
        Gimp.progress_set_text(text)
    Gimp.progress_update(max(0.0, min(1.0, fraction)))


def progress_pulse() -> None:
    Gimp.progress_pulse()


def progress_end() -> None:
    Gimp.progress_end()


def flush() -> None:
    Gimp.displays_flush()
