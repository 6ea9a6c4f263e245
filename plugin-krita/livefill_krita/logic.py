"""What a Fill / Expand / Generate / Live job sends and where its result lands (no Krita, no Qt).

Why this module exists: the plugin's behaviour is mostly decisions (which region goes to the
daemon, with which mask and mode, at which offset the answer becomes a layer). They live here,
as plain functions over plain data, so ``tests/krita/test_logic.py`` can check them without
Krita; ``krita_document`` only reads and writes pixels and ``controller`` only sequences the
steps. What the GIMP plug-in
decides the same way (rectangles, settings, the context rule, request fields, layer names, error
texts) is in the shared ``livefill_plugin_core``; this module holds what is Krita's own: the
Fill / Expand / Generate / Live plans and cutting results to the selection (Krita has no layer
mask step, so the selection becomes the result's alpha).

Coordinates are canvas pixels at the time the job was started. Images are RGBA (straight alpha)
here: the BGRA swap happens at the Krita boundary.
"""

from dataclasses import dataclass, field, replace
from typing import Callable, Optional, Tuple

from . import pixels as px

try:
    from . import livefill_live as live
    from . import livefill_plugin_core as core
    from . import livefill_protocol as proto
except ImportError:  # development checkout: protocol/python on sys.path
    import livefill_live as live  # type: ignore[no-redef]
    import livefill_plugin_core as core  # type: ignore[no-redef]
    import livefill_protocol as proto  # type: ignore[no-redef]

Rect = core.Rect  # the plans' rectangles are the shared ones

#: What the shared error texts say about Krita.
KRITA = core.Editor(
    install_name="krita",
    client_name="krita-livefill",
    daemon_settings="the livefill docker's Daemon settings",
    starts_on="the first Fill, Expand, Generate or Live",
    model_picker="the docker's Model list",
    next_action="Fill, Expand, Generate or Live",
)
#: Largest side requested for txt2img when the daemon does not say.
DEFAULT_MAX_SIDE = 2048
#: Live previews of a whole layer larger than this (longer side, px) are sent scaled down to it
#: and their result scaled back up with Qt (the shared rule: ``livefill_live.LIVE_SEND_MAX_SIDE``;
#: a module attribute so tests can lower it).
LIVE_MAX_SIDE = live.LIVE_SEND_MAX_SIDE

KIND_FILL = "fill"
KIND_EXPAND = "expand"
KIND_GENERATE = "generate"
KIND_LIVE = "live"

@dataclass
class Sides:
    """Which canvas sides Expand grows, and by how much."""

    amount: int = core.DEFAULT_EXTEND_BORDER
    left: bool = False
    top: bool = False
    right: bool = True
    bottom: bool = False

    def extend(self) -> Tuple[int, int, int, int]:
        a = max(0, int(self.amount))
        return (a if self.left else 0, a if self.top else 0, a if self.right else 0, a if self.bottom else 0)

    def any(self) -> bool:
        return self.amount > 0 and (self.left or self.top or self.right or self.bottom)


@dataclass
class Plan:
    """One job, decided before any pixel is read.

    ``region``: the canvas rectangle whose pixels are sent (None for txt2img).
    ``target``: where the result may land (selection bounds, or the whole canvas).
    ``mask_region_mask``: filled in once read: the selection mask over ``region`` (or ``target``
    for txt2img), 255 = replace; None = no selection.
    """

    kind: str
    mode: "proto.Mode"
    canvas: Rect
    target: Rect
    region: Optional[Rect] = None
    has_selection: bool = False
    extend: Tuple[int, int, int, int] = (0, 0, 0, 0)
    width: int = 0
    height: int = 0
    mask: Optional[bytes] = field(default=None, repr=False)
    prompt: str = ""
    #: Size ``region`` is sent at when that is smaller than the region (live previews of large
    #: layers); None = sent as is.
    sent: Optional[Tuple[int, int]] = None

    def sent_size(self) -> Tuple[int, int]:
        assert self.region is not None
        return self.sent if self.sent is not None else (self.region.width, self.region.height)


@dataclass
class Placement:
    """Where a result goes: ``rect`` in canvas coordinates (after ``resize``, if any), RGBA pixels."""

    rect: Rect
    pixels: bytes = field(repr=False)
    #: Canvas resize to apply first, as Krita's ``Document.resizeImage(x, y, w, h)`` arguments.
    resize: Optional[Tuple[int, int, int, int]] = None


class PlanError(Exception):
    """A job cannot start (nothing to do, empty selection, ...); the text is for the artist."""


# ------------------------------------------------------------------------------------------------
# Planning
# ------------------------------------------------------------------------------------------------


def plan_fill(canvas: Rect, selection: Optional[Rect], prompt: str = "", live: bool = False) -> Plan:
    """Fill: inpaint the selection (with context around it), or img2img the whole canvas."""
    kind = KIND_LIVE if live else KIND_FILL
    if selection is not None:
        sel = selection.intersect(canvas)
        if sel.is_empty():
            raise PlanError("The selection lies outside the canvas.")
        return Plan(kind, proto.Mode.INPAINT, canvas, target=sel, region=core.context_region(sel, canvas),
                    has_selection=True, prompt=prompt)
    sent = live_send_size(canvas.width, canvas.height) if live else None
    return Plan(kind, proto.Mode.IMG2IMG, canvas, target=canvas, region=canvas, prompt=prompt, sent=sent)


def live_send_size(w: int, h: int, limit: Optional[int] = None) -> Optional[Tuple[int, int]]:
    """The size a ``w`` x ``h`` live layer is sent at (``livefill_live.live_send_size`` with
    this module's ``LIVE_MAX_SIDE`` as the default limit)."""
    return live.live_send_size(w, h, LIVE_MAX_SIDE if limit is None else limit)


def plan_expand(canvas: Rect, sides: Sides, prompt: str = "") -> Plan:
    """Expand: send the canvas, ask for ``sides`` more pixels around it."""
    if not sides.any():
        raise PlanError("Choose at least one side and a size above 0 to expand.")
    left, top, right, bottom = sides.extend()
    target = Rect(0, 0, canvas.width + left + right, canvas.height + top + bottom)
    return Plan(KIND_EXPAND, proto.Mode.OUTPAINT, canvas, target=target, region=canvas,
                extend=(left, top, right, bottom), prompt=prompt)


def txt2img_size(w: int, h: int, max_side: int) -> Tuple[int, int]:
    """A request size for a ``w`` x ``h`` target: multiples of 8, longer side at most ``max_side``."""
    limit = max_side if max_side > 0 else DEFAULT_MAX_SIDE
    scale = min(1.0, float(limit) / max(w, h, 1))
    rw = max(8, int(w * scale) // 8 * 8)
    rh = max(8, int(h * scale) // 8 * 8)
    return rw, rh


def plan_generate(canvas: Rect, selection: Optional[Rect], max_side: int = 0, prompt: str = "") -> Plan:
    """Generate: txt2img sized like the selection (or the canvas), landing on it."""
    target = canvas if selection is None else selection.intersect(canvas)
    if target.is_empty():
        raise PlanError("The selection lies outside the canvas.")
    w, h = txt2img_size(target.width, target.height, max_side)
    return Plan(KIND_GENERATE, proto.Mode.TXT2IMG, canvas, target=target, region=None,
                has_selection=selection is not None, width=w, height=h, prompt=prompt)


# ------------------------------------------------------------------------------------------------
# Requests
# ------------------------------------------------------------------------------------------------


def build_request(
    plan: Plan,
    settings: core.Settings,
    request_id: int,
    image_rgba: Optional[bytes],
    seed: Optional[int] = None,
    stream_previews: bool = False,
) -> "proto.GenerateRequest":
    """The wire request for ``plan``; ``image_rgba`` holds ``plan.region``'s pixels (RGBA) at
    ``plan.sent_size()``; ``seed`` replaces the settings' seed (live sessions keep one)."""
    image = None
    mask = None
    if plan.region is not None:
        w, h = plan.sent_size()
        image = (w, h, image_rgba if image_rgba is not None else b"")
        if plan.mode == proto.Mode.INPAINT and plan.mask is not None:
            mask = (plan.region.width, plan.region.height, plan.mask)
    if seed is not None:
        settings = replace(settings, seed=seed)
    return core.build_request(plan.mode, settings, request_id, image=image, mask=mask, extend=plan.extend,
                              live=plan.kind == KIND_LIVE, size=(plan.width, plan.height),
                              stream_previews=stream_previews)


# ------------------------------------------------------------------------------------------------
# Results
# ------------------------------------------------------------------------------------------------

Scaler = Callable[[bytes, int, int, int, int], bytes]


def scale_nearest(pixels: bytes, w: int, h: int, tw: int, th: int) -> bytes:
    """Nearest-neighbour resize of RGBA ``pixels`` (the Krita side uses Qt's smooth scaling)."""
    if (w, h) == (tw, th):
        return pixels
    xs = [min(w - 1, (x * w) // tw) for x in range(tw)]
    out = bytearray(tw * th * 4)
    for y in range(th):
        sy = min(h - 1, (y * h) // th)
        row = pixels[sy * w * 4:(sy + 1) * w * 4]
        line = b"".join(row[sx * 4:sx * 4 + 4] for sx in xs)
        out[y * tw * 4:(y + 1) * tw * 4] = line
    return bytes(out)


def place_result(
    plan: Plan,
    image: bytes,
    width: int,
    height: int,
    offset_x: int = 0,
    offset_y: int = 0,
    scale: Scaler = scale_nearest,
) -> Placement:
    """Turns a daemon result (RGBA, offset in the sent image's coordinates) into a layer placement.

    The result is clipped to the job's target and, with a selection, its alpha is multiplied by
    the selection mask, so no pixel outside the selection is ever covered. Expand keeps only the
    new border (the original canvas area stays transparent) and reports the canvas resize.
    """
    if len(image) != width * height * 4:
        raise ValueError("result holds %d bytes for %dx%d" % (len(image), width, height))
    if plan.kind == KIND_GENERATE:
        t = plan.target
        pixels = scale(image, width, height, t.width, t.height)
        if plan.mask is not None:
            pixels = px.multiply_alpha(pixels, plan.mask)
        return Placement(t, pixels)

    if plan.kind == KIND_EXPAND:
        left, top, right, bottom = plan.extend
        new_canvas = plan.target
        result_rect = Rect(offset_x + left, offset_y + top, width, height)
        clip = result_rect.intersect(new_canvas)
        if clip.is_empty():
            raise ValueError("the result does not overlap the expanded canvas")
        local = clip.translate(-result_rect.x, -result_rect.y)
        pixels = px.crop(image, width, height, local)
        old_area = Rect(left, top, plan.canvas.width, plan.canvas.height).translate(-clip.x, -clip.y)
        pixels = px.multiply_alpha(pixels, px.transparent_inside(clip.width, clip.height, old_area))
        return Placement(clip, pixels, resize=(-left, -top, new_canvas.width, new_canvas.height))

    # Fill and live: offsets are relative to the sent region (scaled back when it was sent smaller).
    region = plan.region
    assert region is not None
    if plan.sent is not None:
        fx, fy = region.width / float(plan.sent[0]), region.height / float(plan.sent[1])
        x0, y0 = int(round(offset_x * fx)), int(round(offset_y * fy))
        x1, y1 = int(round((offset_x + width) * fx)), int(round((offset_y + height) * fy))
        image = scale(image, width, height, x1 - x0, y1 - y0)
        offset_x, offset_y, width, height = x0, y0, x1 - x0, y1 - y0
    result_rect = Rect(region.x + offset_x, region.y + offset_y, width, height)
    clip = result_rect.intersect(plan.target)
    if clip.is_empty():
        raise ValueError("the result does not overlap the selection")
    pixels = px.crop(image, width, height, clip.translate(-result_rect.x, -result_rect.y))
    if plan.mask is not None:
        mask = px.crop(plan.mask, region.width, region.height, clip.translate(-region.x, -region.y), bpp=1)
        pixels = px.multiply_alpha(pixels, mask)
    return Placement(clip, pixels)


def uncovered_bands(old: Rect, new: Rect) -> Tuple[Rect, ...]:
    """The parts of ``old`` outside ``new`` (at most four bands), to empty before writing
    ``new`` over a layer whose pixels covered ``old``."""
    inter = old.intersect(new)
    if old.is_empty():
        return ()
    if inter.is_empty():
        return (old,)
    bands = (
        Rect(old.x, old.y, old.width, inter.y - old.y),
        Rect(old.x, inter.bottom, old.width, old.bottom - inter.bottom),
        Rect(old.x, inter.y, inter.x - old.x, inter.height),
        Rect(inter.right, inter.y, old.right - inter.right, inter.height),
    )
    return tuple(b for b in bands if not b.is_empty())


# ------------------------------------------------------------------------------------------------
# Messages
# ------------------------------------------------------------------------------------------------


def status_text(device: str, model: str, provider: str = "") -> str:
    """The docker's status line once connected; ``model`` is the daemon's default (the picker
    says which one each action uses)."""
    where = device or "unknown device"
    short = provider.replace("ExecutionProvider", "")
    if short and short.lower() not in where.lower():
        where = "%s, %s" % (where, short)
    return "Connected \u2014 %s \u2014 default model: %s" % (where, model or "none loaded")
