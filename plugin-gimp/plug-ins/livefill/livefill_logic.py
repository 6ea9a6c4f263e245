"""The GIMP plug-in's own editor-independent logic: what its procedures send and how it waits.

Exists so that everything that is not a GIMP call and not shared with the Krita plugin -- which
region an inpaint sends, how the canvas grows, where a result goes, how the live preview notices
changes, how a job is waited for from the plug-in's own process -- can be tested with plain
Python (``tests/gimp/test_logic.py``) without GIMP. What both plugins decide the same way
(rectangles, settings and their defaults, request building, the context rule, layer names,
error texts, finding and starting the daemon) is the shared ``livefill_plugin_core``, installed
beside this file. Nothing here imports ``gi``; the GIMP side lives in ``gimp_document.py`` and
``livefill.py``.
"""

import hashlib
import time
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import livefill_client as client
import livefill_plugin_core as core
import livefill_protocol as lp

#: How often the live preview dialog looks for changes and results (ms). GIMP 3 tells plug-ins
#: nothing when a layer changes; a look is one thumbnail fetch (a few KB) and a queue check.
LIVE_TICK_MS = 30
#: ...and once nothing changed for LIVE_IDLE_AFTER_MS, every LIVE_IDLE_TICK_MS.
LIVE_IDLE_TICK_MS = 60
LIVE_IDLE_AFTER_MS = 2000
#: Each tick fingerprints a 64-pixel thumbnail (~0.2 ms); every 10th tick, and whenever the small
#: one changed, a 256-pixel one (~2 ms) too, so edits too small to show at 64 px are still seen
#: within 0.3 s, and an idle preview costs about 1 % of the plug-in's time.
LIVE_PROBE_SIDE = 64
LIVE_FINE_PROBE_SIDE = 256
LIVE_FINE_PROBE_EVERY = 10

#: What the shared error texts say about GIMP.
GIMP = core.Editor(
    install_name="gimp",
    client_name="gimp",
    daemon_settings="the procedure's livefill-exe and model arguments",
    starts_on="every livefill procedure",
    role_words=((lp.ModelRole.INPAINT, "inpaint"), (lp.ModelRole.LIVE, "live"), (lp.ModelRole.DEFAULT, "generate")),
    model_picker="the dialog's Model list (the model-name argument)",
    next_action="livefill procedure",
)

#: The procedures' modes, the wire mode each sends, and the word its result layers are named by.
WIRE_MODES = {
    "inpaint": lp.Mode.INPAINT,
    "outpaint": lp.Mode.OUTPAINT,
    "img2img": lp.Mode.IMG2IMG,
    "txt2img": lp.Mode.TXT2IMG,
    "preview": lp.Mode.IMG2IMG,
}
MODE_LABELS = {
    "inpaint": "inpaint",
    "outpaint": "extend",
    "img2img": "img2img",
    "txt2img": "generate",
    "preview": "live preview",
}
#: Each procedure's default strength (GIMP has one strength argument per procedure).
DEFAULT_STRENGTHS = {
    "inpaint": core.DEFAULT_INPAINT_STRENGTH,
    "img2img": core.DEFAULT_IMG2IMG_STRENGTH,
    "preview": core.DEFAULT_LIVE_STRENGTH,
}


def validate(settings: core.Settings, mode: str) -> None:
    """Raises PluginError with a readable message when the settings cannot make a request."""
    core.validate(settings, WIRE_MODES[mode])


def result_name(mode: str, prompt: str, seed: int) -> str:
    """Name of a result layer, e.g. ``livefill inpaint: a red fox [seed 42]``."""
    return core.layer_name(MODE_LABELS.get(mode, mode), prompt, seed)


def plan_inpaint(drawable: core.Rect, selection: Optional[core.Rect], context: str) -> core.Rect:
    """Region (image coordinates) to send for an inpaint of ``drawable`` (its rect in image
    coordinates) with the selection bounds ``selection`` (None = no selection)."""
    if selection is None or selection.is_empty():
        raise core.PluginError("Inpaint needs a selection: select the region to fill first.")
    inside = selection.intersect(drawable)
    if inside.is_empty():
        raise core.PluginError("The selection does not overlap the active layer.")
    if context == core.CONTEXT_FULL:
        return drawable
    return core.context_region(inside, drawable)


@dataclass(frozen=True)
class CanvasGrowth:
    new_width: int
    new_height: int
    # How far the existing content moves (GIMP's resize offsets).
    shift_x: int
    shift_y: int


def extend_canvas(width: int, height: int, left: int, top: int, right: int, bottom: int) -> CanvasGrowth:
    """New canvas size and content shift for outpainting borders (pixels per side)."""
    for name, v in (("left", left), ("top", top), ("right", right), ("bottom", bottom)):
        if v < 0:
            raise core.PluginError(f"Border '{name}' must not be negative (got {v}).")
    if left + top + right + bottom == 0:
        raise core.PluginError("Extend canvas needs at least one border larger than 0.")
    return CanvasGrowth(width + left + right, height + top + bottom, left, top)


def result_position(sent: core.Rect, offset_x: int, offset_y: int) -> Tuple[int, int]:
    """Image coordinates of a result's top-left corner, given the sent region (image
    coordinates) and the result's offset in the sent image's coordinates."""
    return sent.x + int(offset_x), sent.y + int(offset_y)


def request_word(request) -> str:
    """The word error texts use for what ``request`` asks (``MODE_LABELS``: inpaint, extend,
    img2img, generate, live preview)."""
    if request.priority == lp.Priority.LIVE_PREVIEW:
        return MODE_LABELS["preview"]
    for mode, wire in WIRE_MODES.items():
        if wire == request.mode and mode != "preview":
            return MODE_LABELS[mode]
    return ""


def mask_is_empty(mask: bytes) -> bool:
    return not any(mask)


def fingerprint(data: bytes) -> str:
    """Cheap content hash used by the live preview to notice that the layer changed."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def connect(socket: str, exe: str, model: str) -> "client.DaemonConnection":
    """A handshaken connection to the daemon (started first when it is not running) from the
    procedure's ``socket``, ``livefill-exe`` and ``model`` arguments ('' = environment and
    defaults). Every failure is a PluginError saying what to do."""
    return core.connect_or_start(core.resolve_socket(socket), core.find_livefill(exe),
                                 core.daemon_args(model), GIMP)


def run_job(conn, request, on_progress: Optional[Callable[[int, int], None]] = None,
            timeout: float = core.DEFAULT_TIMEOUT_S, should_cancel: Optional[Callable[[], bool]] = None,
            tick: float = 0.2, on_model_loading: Optional[Callable[[str], None]] = None):
    """Sends ``request`` and blocks until its ``GenerateResult`` (returned). Progress is reported
    as ``on_progress(step, total_steps)`` on the calling thread, a model being loaded for it as
    ``on_model_loading(text)`` (the shared status text); ``should_cancel`` is polled every
    ``tick`` seconds and, when it returns True, the job is cancelled on the daemon. Failures raise
    PluginError (Cancelled for a cancelled job; the model errors name ``request.model``; a daemon
    that stops meanwhile -- crashed, killed -- is said so by the shared
    ``core.connection_end_text``); a timeout also cancels the job."""
    rid = conn.generate(request)
    deadline = time.monotonic() + timeout

    def progress(p):
        if on_progress is not None:
            on_progress(p.step, p.total_steps)

    def loading(m):
        if on_model_loading is not None:
            on_model_loading(core.loading_text(m))

    while True:
        if should_cancel is not None and should_cancel():
            _try_cancel(conn, rid)
            raise core.Cancelled("Cancelled.")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            _try_cancel(conn, rid)
            raise core.PluginError("The daemon did not finish within %g s; the job was cancelled." % timeout)
        try:
            return conn.wait_for(rid, on_progress=progress, timeout=min(tick, remaining), on_model_loading=loading)
        except client.WaitTimeout:
            continue
        except client.LivefillError as e:
            raise core.job_error(e, GIMP, request.model, request_word(request))


def _try_cancel(conn, rid) -> None:
    try:
        conn.cancel(rid)
    except Exception:
        pass


def poll_job(conn, rid, model: str = "", on_model_loading: Optional[Callable[[str], None]] = None):
    """Non-blocking look at a job that named ``model``: None while it runs (a model being loaded
    for it is told to ``on_model_loading`` as the shared status text), else ('result',
    GenerateResult), ('superseded', None) or ('error', message)."""
    def loading(m):
        if on_model_loading is not None:
            on_model_loading(core.loading_text(m))

    try:
        return "result", conn.wait_for(rid, timeout=0, on_model_loading=loading)
    except client.WaitTimeout:
        return None
    except client.SupersededError:
        return "superseded", None
    except client.LivefillError as e:
        err = core.job_error(e, GIMP, model, MODE_LABELS["preview"])
        if isinstance(err, core.Cancelled):
            return "superseded", None
        return "error", str(err)
