"""Editor-independent logic of the livefill GIMP plug-in.

Exists so that everything that is not a GIMP call -- which pixels to send, where the result goes,
how layers are named, how settings become a wire request, how a job is waited for, where the
daemon is -- can be tested with plain Python (``tests/gimp/test_logic.py``) without GIMP.
Nothing here imports ``gi``; the GIMP side lives in ``gimp_document.py`` and ``livefill.py``.
"""

import hashlib
import os
import shutil
import sys
import time
from dataclasses import dataclass
from typing import Callable, Optional

# Default values shared by the procedures' arguments and the tests.
DEFAULT_STEPS = 4
DEFAULT_GUIDANCE = 1.0
DEFAULT_INPAINT_STRENGTH = 1.0
DEFAULT_IMG2IMG_STRENGTH = 0.6
DEFAULT_PREVIEW_STRENGTH = 0.5
DEFAULT_FEATHER = 8
DEFAULT_TIMEOUT_S = 600.0
CLIENT_NAME = "gimp"

# Environment variables the plug-in reads (an empty value counts as unset).
ENV_SOCKET = "LIVEFILL_SOCKET"
ENV_EXE = "LIVEFILL_EXE"
ENV_MODEL = "LIVEFILL_MODEL"

MODE_LABELS = {
    "inpaint": "inpaint",
    "outpaint": "extend",
    "img2img": "img2img",
    "txt2img": "generate",
    "preview": "live preview",
}


class LivefillError(Exception):
    """A failure to report to the artist as is (the message is meant to be read by a person)."""


class Cancelled(LivefillError):
    """The artist cancelled the job."""


@dataclass(frozen=True)
class Rect:
    """Axis-aligned rectangle in integer pixel coordinates; empty when width or height <= 0."""

    x: int
    y: int
    width: int
    height: int

    @property
    def right(self) -> int:
        return self.x + self.width

    @property
    def bottom(self) -> int:
        return self.y + self.height

    def is_empty(self) -> bool:
        return self.width <= 0 or self.height <= 0

    def intersect(self, other: "Rect") -> "Rect":
        x0, y0 = max(self.x, other.x), max(self.y, other.y)
        x1, y1 = min(self.right, other.right), min(self.bottom, other.bottom)
        return Rect(x0, y0, max(0, x1 - x0), max(0, y1 - y0))

    def translate(self, dx: int, dy: int) -> "Rect":
        return Rect(self.x + dx, self.y + dy, self.width, self.height)

    def grow(self, left: int, top: int, right: int, bottom: int) -> "Rect":
        return Rect(self.x - left, self.y - top, self.width + left + right, self.height + top + bottom)


@dataclass
class Settings:
    """What the artist chose, independent of the procedure that carries it."""

    prompt: str = ""
    negative_prompt: str = ""
    seed: int = -1  # -1 (any negative value) = let the daemon pick
    steps: int = DEFAULT_STEPS
    guidance: float = DEFAULT_GUIDANCE
    strength: float = DEFAULT_INPAINT_STRENGTH
    context: str = "auto"  # "auto" | "full"
    feather: int = DEFAULT_FEATHER
    color_match: bool = True
    width: int = 0  # txt2img only; 0 = model native
    height: int = 0


def validate(settings: Settings, mode: str) -> None:
    """Raises LivefillError with a readable message when the settings cannot make a request."""
    if mode == "txt2img" and not settings.prompt.strip():
        raise LivefillError("Generate needs a prompt.")
    if not 1 <= settings.steps <= 100:
        raise LivefillError(f"Steps must be between 1 and 100 (got {settings.steps}).")
    if settings.guidance < 0:
        raise LivefillError(f"Guidance must not be negative (got {settings.guidance}).")
    if mode in ("img2img", "inpaint", "preview") and not 0.0 < settings.strength <= 1.0:
        raise LivefillError(f"Strength must be in (0, 1] (got {settings.strength}).")
    if settings.context not in ("auto", "full"):
        raise LivefillError(f"Context must be 'auto' or 'full' (got {settings.context!r}).")
    if settings.feather < 0:
        raise LivefillError("Feather must not be negative.")
    if settings.width < 0 or settings.height < 0:
        raise LivefillError("Width and height must not be negative.")


MAX_SEED = 2**31 - 1  # GIMP's int arguments are 32-bit


def effective_seed(seed: int, rng=None) -> int:
    """The seed to send: the argument, or for -1 (any negative value) a random one picked here,
    so that every result's seed fits a GIMP int argument and can be typed back to reproduce it."""
    if seed is not None and seed >= 0:
        return int(seed)
    import random

    return (rng or random.SystemRandom()).randint(0, MAX_SEED)


def seed_or_none(seed: int) -> Optional[int]:
    """Procedure seed argument (-1 = random) to the wire's optional seed."""
    return None if seed is None or seed < 0 else int(seed)


def layer_name(mode: str, prompt: str, seed: int, max_prompt: int = 48) -> str:
    """Name of a result layer, e.g. ``livefill inpaint: a red fox [seed 42]``."""
    label = MODE_LABELS.get(mode, mode)
    text = " ".join(prompt.split())
    if len(text) > max_prompt:
        text = text[: max_prompt - 1].rstrip() + "\u2026"
    if not text:
        text = "(no prompt)"
    return f"livefill {label}: {text} [seed {seed}]"


PREVIEW_LAYER_NAME = "livefill live preview"


def padded_crop(selection: Rect, limit: Rect, pad_ratio: float = 0.75, min_pad: int = 32) -> Rect:
    """Region to send for an inpaint with automatic context: the selection bounds grown on every
    side by ``max(min_pad, pad_ratio * max(width, height))``, clipped to ``limit`` (the drawable).

    The daemon crops and rescales once more around the mask; sending a margin gives it the
    surroundings to match while keeping the frame small for large layers."""
    pad = max(min_pad, int(round(pad_ratio * max(selection.width, selection.height))))
    return selection.grow(pad, pad, pad, pad).intersect(limit)


def plan_inpaint(drawable: Rect, selection: Optional[Rect], context: str) -> Rect:
    """Region (image coordinates) to send for an inpaint of ``drawable`` (its rect in image
    coordinates) with the selection bounds ``selection`` (None = no selection)."""
    if selection is None or selection.is_empty():
        raise LivefillError("Inpaint needs a selection: select the region to fill first.")
    inside = selection.intersect(drawable)
    if inside.is_empty():
        raise LivefillError("The selection does not overlap the active layer.")
    if context == "full":
        return drawable
    return padded_crop(inside, drawable)


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
            raise LivefillError(f"Border '{name}' must not be negative (got {v}).")
    if left + top + right + bottom == 0:
        raise LivefillError("Extend canvas needs at least one border larger than 0.")
    return CanvasGrowth(width + left + right, height + top + bottom, left, top)


def result_position(sent: Rect, offset_x: int, offset_y: int) -> tuple:
    """Image coordinates of a result's top-left corner, given the sent region (image
    coordinates) and the result's offset in the sent image's coordinates."""
    return sent.x + int(offset_x), sent.y + int(offset_y)


def check_pixels(data: bytes, width: int, height: int, channels: int, what: str) -> bytes:
    expected = width * height * channels
    if len(data) != expected:
        raise LivefillError(f"{what}: expected {expected} bytes for {width}x{height}, got {len(data)}.")
    return bytes(data)


def mask_is_empty(mask: bytes) -> bool:
    return not any(mask)


def fingerprint(data: bytes) -> str:
    """Cheap content hash used by the live preview to notice that the layer changed."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def preview_scale(width: int, height: int, max_side: int) -> float:
    """Scale (<= 1) at which a live preview reads a layer so its longest side fits max_side."""
    longest = max(width, height)
    if max_side <= 0 or longest <= max_side:
        return 1.0
    return max_side / float(longest)


def scaled_size(width: int, height: int, scale: float) -> tuple:
    return max(1, int(width * scale)), max(1, int(height * scale))


# --------------------------------------------------------------------------------------------
# Daemon location


def _env(name: str, environ=None) -> str:
    environ = os.environ if environ is None else environ
    return (environ.get(name) or "").strip()


def resolve_socket(argument: str, environ=None, default: Optional[Callable[[], str]] = None) -> str:
    """Socket path: the procedure argument, else $LIVEFILL_SOCKET, else the shared default."""
    if argument and argument.strip():
        return argument.strip()
    env = _env(ENV_SOCKET, environ)
    if env:
        return env
    if default is None:
        import livefill_client

        default = livefill_client.default_socket_path
    return str(default())


def resolve_executable(argument: str, environ=None, which=shutil.which) -> Optional[str]:
    """The livefill binary used to start the daemon when it is not running: the procedure
    argument, else $LIVEFILL_EXE, else ``livefill`` on PATH, else None."""
    for candidate in (argument.strip() if argument else "", _env(ENV_EXE, environ)):
        if candidate:
            return candidate
    names = ["livefill.exe", "livefill"] if sys.platform == "win32" else ["livefill"]
    for name in names:
        found = which(name)
        if found:
            return found
    return None


def daemon_args(model: str, environ=None) -> list:
    """Extra arguments for ``livefill serve`` (the socket is added by ensure_daemon)."""
    model = (model or "").strip() or _env(ENV_MODEL, environ)
    return ["--model", model] if model else []


# --------------------------------------------------------------------------------------------
# Requests and jobs (use the shared codec; imported lazily so the geometry above needs nothing)


def build_request(
    mode: str,
    settings: Settings,
    request_id: int = 0,
    image: Optional[tuple] = None,  # (width, height, rgba bytes)
    mask: Optional[tuple] = None,  # (width, height, gray bytes)
    extend: tuple = (0, 0, 0, 0),  # left, top, right, bottom
    live: bool = False,
):
    """A ``livefill_protocol.GenerateRequest`` for ``mode`` ('txt2img', 'img2img', 'inpaint',
    'outpaint')."""
    import livefill_protocol as lp

    wire_mode = {
        "txt2img": lp.Mode.TXT2IMG,
        "img2img": lp.Mode.IMG2IMG,
        "inpaint": lp.Mode.INPAINT,
        "outpaint": lp.Mode.OUTPAINT,
    }[mode]
    rgba = None
    if image is not None:
        w, h, px = image
        rgba = lp.RgbaImage(width=w, height=h, pixels=check_pixels(px, w, h, 4, "image"))
    wire_mask = None
    if mask is not None:
        w, h, px = mask
        wire_mask = lp.Mask(width=w, height=h, pixels=check_pixels(px, w, h, 1, "mask"))
    left, top, right, bottom = extend
    return lp.GenerateRequest(
        request_id=request_id,
        mode=wire_mode,
        prompt=settings.prompt,
        negative_prompt=settings.negative_prompt,
        seed=seed_or_none(settings.seed),
        steps=int(settings.steps),
        guidance=float(settings.guidance),
        strength=float(settings.strength),
        width=int(settings.width) if mode == "txt2img" else 0,
        height=int(settings.height) if mode == "txt2img" else 0,
        image=rgba,
        mask=wire_mask,
        extend=lp.Extend(left=left, top=top, right=right, bottom=bottom),
        context=lp.Context.FULL if settings.context == "full" else lp.Context.AUTO,
        feather=int(settings.feather),
        color_match=bool(settings.color_match),
        priority=lp.Priority.LIVE_PREVIEW if live else lp.Priority.FINAL,
        stream_previews=False,
    )


def connect_or_start(client, socket_path: str, exe: Optional[str], args: list,
                     start_timeout: float = 180.0):
    """A handshaken ``client.DaemonConnection`` (``client`` = the shared ``livefill_client``
    module). When nothing listens at ``socket_path`` the daemon is started with ``exe`` (when
    known). Every failure becomes a LivefillError saying what to do."""
    try:
        return client.DaemonConnection.connect(socket_path, CLIENT_NAME, timeout=10.0)
    except (FileNotFoundError, ConnectionRefusedError):
        pass
    except client.DaemonError as e:
        raise LivefillError("The livefill daemon at %s refused the connection: %s" % (socket_path, e))
    except (OSError, client.LivefillError) as e:
        raise LivefillError("Cannot talk to the livefill daemon at %s: %s" % (socket_path, e))
    if exe is None:
        raise LivefillError(
            "The livefill daemon is not running (nothing at %s) and the livefill executable was "
            "not found. Start it with 'livefill serve --model DIR', or set LIVEFILL_EXE (and "
            "LIVEFILL_MODEL) so the plug-in can start it." % socket_path)
    try:
        return client.ensure_daemon(exe, args, socket_path, start_timeout, client_name=CLIENT_NAME)
    except client.LivefillError as e:
        raise LivefillError("Could not start the livefill daemon (%s serve): %s" % (exe, e))
    except OSError as e:
        raise LivefillError("Cannot talk to the livefill daemon at %s: %s" % (socket_path, e))


def _daemon_failure(client, e) -> LivefillError:
    import livefill_protocol as lp

    if isinstance(e, client.DaemonError):
        if e.code == lp.ErrorCode.CANCELLED:
            return Cancelled("The job was cancelled.")
        hints = {
            lp.ErrorCode.NO_MODEL: " (start the daemon with --model DIR)",
            lp.ErrorCode.IMAGE_TOO_LARGE: " (use a smaller layer or selection)",
            lp.ErrorCode.FRAME_TOO_LARGE: " (use a smaller layer or selection)",
            lp.ErrorCode.OUT_OF_MEMORY: " (try a smaller image)",
        }
        return LivefillError("The daemon could not do it: %s%s" % (e.message, hints.get(e.code, "")))
    if isinstance(e, client.SupersededError):
        return Cancelled("The preview was replaced by a newer one.")
    if isinstance(e, client.ConnectionClosed):
        return LivefillError("The livefill daemon closed the connection (did it exit? see its log).")
    return LivefillError(str(e))


def run_job(conn, request, on_progress: Optional[Callable[[int, int], None]] = None,
            timeout: float = DEFAULT_TIMEOUT_S, should_cancel: Optional[Callable[[], bool]] = None,
            tick: float = 0.2):
    """Sends ``request`` and blocks until its ``GenerateResult`` (returned). Progress is reported
    as ``on_progress(step, total_steps)`` on the calling thread; ``should_cancel`` is polled every
    ``tick`` seconds and, when it returns True, the job is cancelled on the daemon. Failures raise
    LivefillError (Cancelled for a cancelled job); a timeout also cancels the job."""
    import livefill_client as client

    rid = conn.generate(request)
    deadline = time.monotonic() + timeout

    def progress(p):
        if on_progress is not None:
            on_progress(p.step, p.total_steps)

    while True:
        if should_cancel is not None and should_cancel():
            _try_cancel(conn, rid)
            raise Cancelled("Cancelled.")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            _try_cancel(conn, rid)
            raise LivefillError("The daemon did not finish within %g s; the job was cancelled." % timeout)
        try:
            return conn.wait_for(rid, on_progress=progress, timeout=min(tick, remaining))
        except client.WaitTimeout:
            continue
        except client.LivefillError as e:
            raise _daemon_failure(client, e)


def _try_cancel(conn, rid) -> None:
    try:
        conn.cancel(rid)
    except Exception:
        pass


def poll_job(conn, rid):
    """Non-blocking look at a job: None while it runs, else ('result', GenerateResult),
    ('superseded', None) or ('error', message)."""
    import livefill_client as client

    try:
        return "result", conn.wait_for(rid, timeout=0)
    except client.WaitTimeout:
        return None
    except client.SupersededError:
        return "superseded", None
    except client.LivefillError as e:
        err = _daemon_failure(client, e)
        if isinstance(err, Cancelled):
            return "superseded", None
        return "error", str(err)
