"""What every livefill editor plugin decides the same way, with no editor API (stdlib only).

Why this module exists: the Krita and the GIMP plugin ask the daemon for the same things and must
agree on them: rectangles, the settings and their defaults, how settings become a wire request,
how much context goes around a selection, what result layers are called, what a daemon error
means to an artist, and how the ``livefill`` executable is found and started. Each editor
adapter keeps only its editor's API calls and UI; this module is shipped beside the codec
(``livefill_protocol``) and the transport (``livefill_client``), which it imports as siblings,
and is tested once (``test_livefill_plugin_core.py``).

Values the two plugins used to disagree on, and the one chosen for both:

* Context around a selection: ``CONTEXT_PADDING_FRACTION`` = 0.5 of the selection's longer
  side per side (Krita's; GIMP sent 0.75), at least ``MIN_CONTEXT_PADDING`` = 32 px, clipped
  to the layer. This is only what is *sent*: the daemon then crops again around the mask with
  its own margin (0.25 of the longer side, at least 32 px, grown toward the model's aspect;
  ``daemon/src/imaging/context.rs``) inside what it received. The two margins do not add up;
  the plugin's must merely exceed the daemon's so the daemon is never starved of surroundings:
  0.5 leaves room for the daemon's 0.25 and its aspect growth (1.5x the longer side fits in
  2x), while sending about a third fewer pixels than 0.75.
* The executable: ``$LIVEFILL_BIN`` (Krita's, and the variable the test scripts use);
  ``$LIVEFILL_EXE`` (GIMP's) still works as a deprecated alias.
* Feather 8 px and colour match on (the daemon's own defaults, which GIMP used; Krita sent 0
  and off without offering either knob).
* Seeds are 0 .. 2**31 - 1, so every seed in a layer name fits a signed 32-bit argument
  (GIMP's procedure arguments, Qt's spin boxes) and can be typed back to reproduce a result.
* The live preview layer is ``livefill live preview``; result names shorten prompts to 40
  characters.
* Samplers: an empty ``Settings.sampler`` sends none, so the daemon runs the model's default
  (LCM on LCM models, DPM++ 2M Karras otherwise). ``PRESETS`` name what each choice is for;
  choosing one fills sampler, spacing, steps and guidance, which stay editable. Live previews
  on a model whose default is not LCM get ``live_warning``'s text: they will not be real time.
* Models: ``Settings.model`` names one model from the daemon's ``ListModels`` answer; "" is
  *Automatic*, the daemon's choice per request (``role_for``: fill/inpaint and outpaint get the
  INPAINT model, live previews the LIVE one, txt2img and final img2img the DEFAULT one, a role
  nobody has the DEFAULT one: ``model_for``). ``model_entries`` makes the editors' pickers
  (Automatic first, its label naming each action's model; every model with kind, dtype and
  whether it is resident or why its last load failed); ``check_choice`` drops a remembered choice
  the daemon no longer offers, ``falls_back_to_automatic`` says when a refused request does the
  same; ``result_status`` / ``live_status`` name the model that served a result,
  ``loading_text`` a model being loaded.
"""

import os
import random
import shutil
import sys
from dataclasses import dataclass, replace
from typing import Callable, List, Mapping, NamedTuple, Optional, Sequence, Tuple

try:
    from . import livefill_client as client
    from . import livefill_protocol as proto
except ImportError:  # installed as top-level modules (GIMP) or protocol/python on sys.path
    import livefill_client as client  # type: ignore[no-redef]
    import livefill_protocol as proto  # type: ignore[no-redef]

# ------------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------------


class PluginError(Exception):
    """A failure to show the artist as is (the message is meant to be read by a person)."""


class Cancelled(PluginError):
    """The job was cancelled (by the artist, or replaced by a newer live preview)."""


class PixelSizeError(PluginError, ValueError):
    """A pixel buffer does not hold width x height x channels bytes."""


class ExecutableNotFound(PluginError):
    """Nothing listens at the socket and no livefill executable was found to start one."""


# ------------------------------------------------------------------------------------------------
# Geometry
# ------------------------------------------------------------------------------------------------


class Rect(NamedTuple):
    """Integer rectangle in image pixels (top-left origin); empty when width or height <= 0."""

    x: int
    y: int
    width: int
    height: int

    @property
    def right(self) -> int:
        """One past the last column."""
        return self.x + self.width

    @property
    def bottom(self) -> int:
        """One past the last row."""
        return self.y + self.height

    def is_empty(self) -> bool:
        return self.width <= 0 or self.height <= 0

    def intersect(self, other: "Rect") -> "Rect":
        """The overlap; an empty rectangle at the overlap's corner when there is none."""
        x0, y0 = max(self.x, other.x), max(self.y, other.y)
        x1, y1 = min(self.right, other.right), min(self.bottom, other.bottom)
        return Rect(x0, y0, max(0, x1 - x0), max(0, y1 - y0))

    def grow(self, left: int, top: int, right: int, bottom: int) -> "Rect":
        return Rect(self.x - left, self.y - top, self.width + left + right, self.height + top + bottom)

    def translate(self, dx: int, dy: int) -> "Rect":
        return Rect(self.x + dx, self.y + dy, self.width, self.height)

    def contains(self, other: "Rect") -> bool:
        return (other.x >= self.x and other.y >= self.y
                and other.right <= self.right and other.bottom <= self.bottom)


#: Context sent around a selection, per side, as a fraction of the selection's longer side.
CONTEXT_PADDING_FRACTION = 0.5
#: ...but at least this many pixels per side.
MIN_CONTEXT_PADDING = 32


def context_region(selection: Rect, limit: Rect) -> Rect:
    """What an inpaint with automatic context sends: ``selection`` grown on every side by
    ``max(MIN_CONTEXT_PADDING, CONTEXT_PADDING_FRACTION * longer side)``, clipped to ``limit``
    (the layer or canvas). See the module docs for how this relates to the daemon's own crop."""
    longer = max(selection.width, selection.height)
    # Halves round up, as the daemon's f64::round does for its own margin.
    pad = max(MIN_CONTEXT_PADDING, int(CONTEXT_PADDING_FRACTION * longer + 0.5))
    return selection.grow(pad, pad, pad, pad).intersect(limit)


# ------------------------------------------------------------------------------------------------
# Settings and their defaults
# ------------------------------------------------------------------------------------------------

DEFAULT_STEPS = 4
MIN_STEPS = 1
MAX_STEPS = 100
DEFAULT_GUIDANCE = 1.0
#: Strength per action, for editors with a strength per action (GIMP's procedures).
DEFAULT_INPAINT_STRENGTH = 1.0
DEFAULT_IMG2IMG_STRENGTH = 0.6
DEFAULT_LIVE_STRENGTH = 0.5
#: Strength for an editor with one strength knob for every action (Krita's docker).
DEFAULT_STRENGTH = 0.75
MIN_STRENGTH = 0.01
DEFAULT_FEATHER = 8
DEFAULT_COLOR_MATCH = True
#: Pixels an outpaint (Krita's Expand, GIMP's Extend canvas) adds on each chosen side.
DEFAULT_EXTEND_BORDER = 64
#: How long a blocking caller waits for a result before cancelling it (seconds).
DEFAULT_TIMEOUT_S = 600.0
MAX_SEED = 2**31 - 1

CONTEXT_AUTO = "auto"
CONTEXT_FULL = "full"
#: Where the sent pixels come from: the active layer, or the visible (composited) image.
SOURCE_LAYER = "layer"
SOURCE_IMAGE = "image"


@dataclass
class Settings:
    """What the artist chose, independent of the button or procedure that carries it."""

    prompt: str = ""
    negative_prompt: str = ""
    strength: float = DEFAULT_STRENGTH
    steps: int = DEFAULT_STEPS
    guidance: float = DEFAULT_GUIDANCE
    #: None = random (see ``pick_seed``).
    seed: Optional[int] = None
    context: str = CONTEXT_AUTO
    source: str = SOURCE_LAYER
    feather: int = DEFAULT_FEATHER
    color_match: bool = DEFAULT_COLOR_MATCH
    #: A sampler name (``proto.Sampler.wire_name``: lcm, tcd, euler, euler_a, dpmpp_2m, ddim);
    #: "" = the model's default.
    sampler: str = ""
    #: leading, trailing, linspace or karras; "" = the model's scheduler config.
    spacing: str = ""
    #: DDIM's eta / TCD's gamma; None = the daemon's default (0 / 0.3). Sent only to those two.
    eta: Optional[float] = None
    #: The model by its ``ListModels`` name; ``AUTOMATIC`` ("") = the daemon picks per request
    #: (see ``model_for``).
    model: str = ""


@dataclass(frozen=True)
class Preset:
    """A named sampler choice with the steps and guidance that suit it."""

    name: str
    sampler: str
    spacing: str
    steps: int
    guidance: float
    hint: str


#: What the plugins offer, named for what each is for (the first: let the model decide).
PRESETS = (
    Preset("Model default", "", "", DEFAULT_STEPS, DEFAULT_GUIDANCE,
           "The model's own sampler: LCM for LCM models, DPM++ 2M Karras otherwise."),
    Preset("Real-time (LCM)", "lcm", "", 4, 1.0,
           "LCM-distilled models and LCM-LoRAs: 2-8 steps, guidance 1-2. Live previews."),
    Preset("Quality (DPM++ 2M Karras)", "dpmpp_2m", "karras", 20, 7.0,
           "Ordinary Stable Diffusion models: 15-30 steps, guidance 5-8. Not real time."),
    Preset("Hyper/TCD", "tcd", "", 4, 1.0,
           "TCD and Hyper-SD models or LoRAs: 2-8 steps, guidance 1; gamma (eta) 0.3."),
    Preset("Turbo/Lightning (Euler, trailing)", "euler", "trailing", 4, 1.0,
           "SD-Turbo / SDXL-Lightning style models: 1-8 steps, guidance 0-1."),
)


def preset_named(name: str) -> Preset:
    for preset in PRESETS:
        if preset.name == name:
            return preset
    raise PluginError("Unknown preset %r." % (name,))


def apply_preset(settings: Settings, name: str) -> Settings:
    """``settings`` with the preset's sampler, spacing, steps and guidance (eta back to the
    sampler's default)."""
    p = preset_named(name)
    return replace(settings, sampler=p.sampler, spacing=p.spacing, steps=p.steps,
                   guidance=p.guidance, eta=None)


def preset_of(settings: Settings) -> str:
    """The name of the preset whose sampler and spacing ``settings`` use ("" for none)."""
    for preset in PRESETS:
        if (preset.sampler, preset.spacing) == (settings.sampler, settings.spacing):
            return preset.name
    return ""


def live_warning(capabilities: Optional["proto.Capabilities"], settings: Settings,
                 models: Optional[Sequence["proto.ModelInfo"]] = None, default_model: str = "") -> Optional[str]:
    """What to tell the artist who starts a live preview on a model that is not LCM-distilled
    (its default sampler is not LCM), or with a sampler that needs many steps; None when live
    previews can be real time (or the daemon did not say). Live's model is the chosen one or,
    with ``models`` listed, the LIVE one (``model_for``); its listing's default sampler speaks for
    it. Without a listing, ``capabilities`` (the hello's, describing the daemon's
    ``default_model``) speak for the default model only; another one is not judged."""
    if capabilities is None:
        return None
    live = (settings.model or "").strip()
    if not live and models:
        info = model_for(models, proto.ModelRole.LIVE)
        live = info.name if info is not None else ""
    judged = _live_model_defaults(live, capabilities, models, default_model)
    if judged is not None and judged[0] != proto.Sampler.LCM:
        return ("This model is not an LCM model (its default sampler is %s, %d steps): live previews "
                "will not be real time. Use an LCM model (or one with an LCM-LoRA fused) for live "
                "painting." % (judged[0].wire_name, judged[1]))
    if settings.sampler not in ("", "lcm", "tcd") or settings.steps > 8:
        return ("Live previews with %s and %d steps will not be real time: the Real-time (LCM) "
                "preset runs 4 steps." % (settings.sampler or "lcm", settings.steps))
    return None


def _live_model_defaults(live: str, capabilities: "proto.Capabilities",
                         models: Optional[Sequence["proto.ModelInfo"]],
                         default_model: str) -> Optional[Tuple["proto.Sampler", int]]:
    """The default sampler and steps of ``live`` (Live's model, "" = the daemon's default): from
    its listing, else from the hello's ``capabilities`` when it is the default model; None when
    nothing describes it."""
    listed = next((m for m in models or () if m.name == live), None) if live else None
    if listed is not None:
        return listed.default_sampler, listed.default_steps
    if not live or not default_model or live == default_model:
        return capabilities.default_sampler, capabilities.default_steps
    return None


def validate(settings: Settings, mode: "proto.Mode") -> None:
    """Raises PluginError with a readable message when ``settings`` cannot make a ``mode``
    request (for editors whose inputs are not already range-limited by their widgets)."""
    if mode == proto.Mode.TXT2IMG and not settings.prompt.strip():
        raise PluginError("Generate needs a prompt.")
    if not MIN_STEPS <= settings.steps <= MAX_STEPS:
        raise PluginError("Steps must be between %d and %d (got %s)." % (MIN_STEPS, MAX_STEPS, settings.steps))
    if settings.guidance < 0:
        raise PluginError("Guidance must not be negative (got %s)." % settings.guidance)
    if mode in (proto.Mode.IMG2IMG, proto.Mode.INPAINT) and not 0.0 < settings.strength <= 1.0:
        raise PluginError("Strength must be in (0, 1] (got %s)." % settings.strength)
    if settings.context not in (CONTEXT_AUTO, CONTEXT_FULL):
        raise PluginError("Context must be 'auto' or 'full' (got %r)." % (settings.context,))
    if settings.feather < 0:
        raise PluginError("Feather must not be negative.")
    try:
        sampler = proto.Sampler.from_name(settings.sampler) if settings.sampler else None
        spacing = proto.Spacing.from_name(settings.spacing) if settings.spacing else None
    except ValueError as e:
        raise PluginError(str(e).capitalize() + ".") from None
    if spacing is not None and sampler in (proto.Sampler.LCM, proto.Sampler.TCD):
        raise PluginError("Spacing does not apply to %s." % sampler.wire_name)
    if settings.eta is not None and not 0.0 <= settings.eta <= 1.0:
        raise PluginError("Eta must be between 0 and 1 (got %s)." % settings.eta)


def pick_seed(seed: Optional[int], rng: Optional[random.Random] = None) -> int:
    """The seed to send: ``seed`` itself, or for None (or a negative value) one drawn here, so
    the seed of every result is known up front and fits in ``0 .. MAX_SEED``."""
    if seed is not None and seed >= 0:
        return int(seed)
    return (rng or random.SystemRandom()).randint(0, MAX_SEED)


# ------------------------------------------------------------------------------------------------
# Requests
# ------------------------------------------------------------------------------------------------

#: (width, height, bytes): RGBA pixels (4 bytes each) or a gray mask (1 byte each).
Pixels = Tuple[int, int, bytes]
NO_EXTEND = (0, 0, 0, 0)


def check_pixels(pixels: Pixels, channels: int, what: str) -> bytes:
    """The bytes of ``pixels`` when they hold exactly width x height x ``channels``."""
    width, height, data = pixels
    expected = width * height * channels
    if len(data) != expected:
        raise PixelSizeError("%s: expected %d bytes for %dx%d, got %d."
                             % (what, expected, width, height, len(data)))
    return bytes(data)


def build_request(
    mode: "proto.Mode",
    settings: Settings,
    request_id: int = 0,
    image: Optional[Pixels] = None,
    mask: Optional[Pixels] = None,
    extend: Tuple[int, int, int, int] = NO_EXTEND,
    live: bool = False,
    size: Tuple[int, int] = (0, 0),
    stream_previews: bool = False,
) -> "proto.GenerateRequest":
    """The wire request: ``image`` (RGBA) and ``mask`` (gray) as sent, ``extend`` = left, top,
    right, bottom (outpaint), ``size`` = txt2img width, height (0 = the model's native size),
    ``live`` = live-preview priority, ``stream_previews`` = a preview image with each step. Steps, strength and feather are clamped to what the daemon
    accepts; ``settings.seed`` None lets the daemon pick."""
    rgba = proto.RgbaImage(image[0], image[1], check_pixels(image, 4, "image")) if image is not None else None
    gray = proto.Mask(mask[0], mask[1], check_pixels(mask, 1, "mask")) if mask is not None else None
    left, top, right, bottom = extend
    is_txt2img = mode == proto.Mode.TXT2IMG
    sampler = proto.Sampler.from_name(settings.sampler) if settings.sampler else None
    return proto.GenerateRequest(
        request_id=request_id,
        mode=mode,
        prompt=settings.prompt,
        negative_prompt=settings.negative_prompt,
        seed=None if settings.seed is None or settings.seed < 0 else int(settings.seed),
        steps=max(MIN_STEPS, int(settings.steps)),
        guidance=float(settings.guidance),
        strength=min(1.0, max(MIN_STRENGTH, float(settings.strength))),
        width=int(size[0]) if is_txt2img else 0,
        height=int(size[1]) if is_txt2img else 0,
        image=rgba,
        mask=gray,
        extend=proto.Extend(left, top, right, bottom),
        context=proto.Context.FULL if settings.context == CONTEXT_FULL else proto.Context.AUTO,
        feather=max(0, int(settings.feather)),
        color_match=bool(settings.color_match),
        priority=proto.Priority.LIVE_PREVIEW if live else proto.Priority.FINAL,
        stream_previews=bool(stream_previews),
        sampler=sampler,
        spacing=proto.Spacing.from_name(settings.spacing) if settings.spacing else None,
        eta=float(settings.eta) if settings.eta is not None and settings.sampler in _ETA_SAMPLERS else None,
        model=(settings.model or AUTOMATIC).strip(),
    )


#: The samplers that take an eta (DDIM's eta, TCD's gamma).
_ETA_SAMPLERS = ("ddim", "tcd")


# ------------------------------------------------------------------------------------------------
# Layer names
# ------------------------------------------------------------------------------------------------

#: Prefix of every layer livefill creates (live mode never watches these).
LAYER_PREFIX = "livefill"
#: The one layer a live preview draws into.
PREVIEW_LAYER_NAME = "livefill live preview"
#: Longest prompt text kept in a layer name.
PROMPT_IN_NAME_LIMIT = 40


def short_prompt(prompt: str, limit: int = PROMPT_IN_NAME_LIMIT) -> str:
    """``prompt`` on one line, cut to ``limit`` characters with an ellipsis."""
    text = " ".join(prompt.split())
    if not text:
        return "(no prompt)"
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "\u2026"
    return text


def layer_name(action: str, prompt: str, seed: Optional[int]) -> str:
    """A result layer's name, e.g. ``livefill fill: a red fox [seed 42]`` (``action`` is the
    editor's word for what made it)."""
    seed_text = "" if seed is None else " [seed %d]" % seed
    return "%s %s: %s%s" % (LAYER_PREFIX, action, short_prompt(prompt), seed_text)


def is_livefill_layer(name: str) -> bool:
    return name == PREVIEW_LAYER_NAME or name.startswith(LAYER_PREFIX + " ")


# ------------------------------------------------------------------------------------------------
# Error texts
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Editor:
    """The words an error text needs about the editor it is shown in."""

    #: ``livefill install-plugin <install_name>``.
    install_name: str
    #: Sent in the handshake (the daemon logs it).
    client_name: str
    #: Where the artist sets the livefill executable and the model folder.
    daemon_settings: str
    #: What starts the daemon when it is not running.
    starts_on: str
    #: The editor's word for the actions the daemon serves with each model role when the model
    #: choice is Automatic, in the order the Automatic entry names them (outpaint goes with
    #: inpaint, a final img2img with txt2img: ``role_for``).
    role_words: Tuple[Tuple["proto.ModelRole", str], ...] = (
        (proto.ModelRole.INPAINT, "fill"), (proto.ModelRole.LIVE, "live"), (proto.ModelRole.DEFAULT, "generate"))
    #: Where the artist picks the model.
    model_picker: str = "the Model list"
    #: The editor's word for its actions after "The next ...", said when the daemon is gone and
    #: the next one starts it again.
    next_action: str = "action"


_ERROR_TEXT = {
    "MODEL_LOAD_FAILED": "The daemon could not load its model",
    "NO_MODEL": "The daemon has no model loaded. Set the model folder in {settings} (or start the "
    "daemon with `livefill serve --model DIR`).",
    "OUT_OF_MEMORY": "Out of memory on the daemon's device. Try a smaller selection or image, or "
    "fewer steps, or close other programs using the GPU.",
    "IMAGE_TOO_LARGE": "The image sent is larger than the daemon accepts. Use a smaller layer or selection.",
    "FRAME_TOO_LARGE": "The image sent is larger than the daemon accepts. Use a smaller layer or selection.",
    "UNSUPPORTED_VERSION": "The daemon speaks another protocol version. Reinstall the plugin with "
    "`livefill install-plugin {install}` from the same livefill build.",
    "CANCELLED": "Cancelled.",
    "SHUTTING_DOWN": "The daemon is shutting down.",
    "MASK_SIZE_MISMATCH": "Internal error: the mask does not match the image (please report).",
    "INVALID_REQUEST": "The daemon rejected the request",
    "BAD_FRAME": "The daemon could not read the request (please report)",
    "INTERNAL": "The daemon failed",
}
#: Codes whose daemon message is appended to the text (it says what exactly went wrong).
_WITH_DAEMON_MESSAGE = ("INVALID_REQUEST", "BAD_FRAME", "INTERNAL", "IMAGE_TOO_LARGE", "MODEL_LOAD_FAILED")


def error_text(code: "proto.ErrorCode", message: str, editor: Editor, model: str = "") -> str:
    """An artist-facing sentence for an ``ErrorReply`` to a request that named ``model`` (""
    = Automatic). A named model the daemon does not know (NO_MODEL) or cannot load
    (MODEL_LOAD_FAILED, whose daemon message names the file and the fix) gets its own text;
    after the first, a plugin that remembers the choice goes back to Automatic and says so
    (``falls_back_to_automatic``, ``BACK_TO_AUTOMATIC``)."""
    name = getattr(code, "name", str(code))
    model = (model or "").strip()
    if model and name == "NO_MODEL":
        return ("The daemon offers no model named \u201c%s\u201d (any more): pick one it lists in %s, "
                "or Automatic." % (model, editor.model_picker))
    if model and name == "MODEL_LOAD_FAILED":
        base = "The model \u201c%s\u201d could not be loaded" % model
        detail = (": %s" % message.rstrip(".")) if message else ""
        return "%s%s. Pick another model (or Automatic) in %s." % (base, detail, editor.model_picker)
    base = _ERROR_TEXT.get(name, "Error %s" % name).format(
        settings=editor.daemon_settings, install=editor.install_name)
    if message and name in _WITH_DAEMON_MESSAGE:
        return "%s: %s" % (base.rstrip("."), message)
    return base


#: Said when a remembered model choice was dropped (``check_choice``, ``falls_back_to_automatic``).
BACK_TO_AUTOMATIC = "The model choice is back to Automatic."


def falls_back_to_automatic(code: "proto.ErrorCode", model: str) -> bool:
    """Whether an error about a request that named ``model`` means the plugin's model choice goes
    back to Automatic: the daemon does not offer that model (any more). A model that failed to
    load stays chosen (its files may be fixed; the picker shows its ``load_error``)."""
    return bool((model or "").strip()) and code == proto.ErrorCode.NO_MODEL


def job_error(exc: BaseException, editor: Editor, model: str = "", what: str = "") -> PluginError:
    """The PluginError (Cancelled for a cancelled or replaced job) for a failure raised by
    ``livefill_client`` while waiting for a job that named ``model``; ``what`` is the editor's
    word for the job (``connection_end_text``)."""
    if isinstance(exc, client.DaemonError):
        if exc.code == proto.ErrorCode.CANCELLED:
            return Cancelled("The job was cancelled.")
        return PluginError(error_text(exc.code, exc.message, editor, model))
    if isinstance(exc, client.SupersededError):
        return Cancelled("The preview was replaced by a newer one.")
    if isinstance(exc, client.ConnectionClosed):
        return PluginError(connection_end_text(exc.__cause__, editor, what))
    return PluginError(str(exc))


def connection_end_text(reason: Optional[BaseException], editor: Editor, what: Optional[str] = None) -> str:
    """Why an established connection to the daemon ended, as the artist reads it (never a bare
    ``[Errno 104] Connection reset by peer``). ``reason`` is ``DaemonConnection.closed_reason``:
    None, an ``OSError`` or ``proto.Truncated`` (the stream ended or was reset, maybe mid-frame:
    the daemon crashed or was killed, or the connection was cut), ``client.DaemonShutDown`` (it
    said it was shutting down), a connection-level ``client.DaemonError`` or another
    ``proto.ProtocolError``. ``what`` is the
    editor's word for the job that was in flight ("Fill", "generate"; "" = a job it has no word
    for), None when none was; with a job the text says that nothing was added to the image (no
    editor places a result before it arrives). Both say that the next action starts the daemon
    again, and where a daemon started by a plugin logs."""
    request = ("the %s request" % what if what else "the request") if what is not None else ""
    working = " while working on " + request if request else ""
    unchanged = " Nothing was added to your image." if request else ""
    again = " The next %s starts it again." % editor.next_action
    if isinstance(reason, client.DaemonShutDown):
        before = " before it finished " + request if request else ""
        return "The livefill daemon shut down%s.%s%s" % (before, unchanged, again)
    if isinstance(reason, client.DaemonError):
        said = error_text(reason.code, reason.message, editor)
        return "The livefill daemon ended the connection%s: %s%s%s" % (
            working, said, "" if said.endswith(".") else ".", unchanged)
    if isinstance(reason, proto.ProtocolError) and not isinstance(reason, proto.Truncated):
        return ("The connection to the livefill daemon was closed%s: its reply could not be read (%s). Reinstall the "
                "plugin with `livefill install-plugin %s` from the same livefill build.%s"
                % (working, reason, editor.install_name, unchanged))
    return ("The livefill daemon stopped%s: it crashed or was killed, or the connection to it was cut.%s%s If it "
            "keeps stopping, see the daemon's log (%s for a daemon a plugin started)."
            % (working, unchanged, again, client.daemon_log_path()))


def describe_connect_error(exc: BaseException, editor: Editor, started: bool, socket_path: str = "") -> str:
    """An artist-facing explanation of why there is no daemon connection (``started``: the
    attempt was allowed to start the daemon)."""
    where = " at %s" % socket_path if socket_path else ""
    if isinstance(exc, ExecutableNotFound):
        return ("The livefill daemon is not running (nothing%s) and could not be started: the livefill "
                "executable was not found. Install livefill or set its path in %s or in $%s (and the "
                "model folder in $%s), or start it with `livefill serve --model DIR`."
                % (where, editor.daemon_settings, ENV_BIN, ENV_MODEL))
    if isinstance(exc, client.DaemonStartError):
        text = str(exc)
        if text.startswith("cannot start"):
            return ("The livefill daemon is not running and could not be started (%s). Install livefill "
                    "or set its path in %s." % (text.split(":", 1)[-1].strip(), editor.daemon_settings))
        return "The livefill daemon did not start: %s" % text
    if isinstance(exc, client.DaemonError):
        return error_text(exc.code, exc.message, editor)
    if isinstance(exc, client.ClosedBeforeHello):
        return ("Something at %s accepted the connection but closed it before the livefill daemon answered: the "
                "daemon behind that socket is not running. For a socket forwarded over ssh, start it on the other "
                "machine (`livefill serve`) or check the tunnel; a daemon that is running says in its log why it "
                "refused the connection." % (exc.socket_path or socket_path))
    if isinstance(exc, proto.UnsupportedVersion):
        return ("The daemon speaks protocol version %d, this plugin %d: reinstall the plugin with "
                "`livefill install-plugin %s`." % (exc.got, exc.supported, editor.install_name))
    if isinstance(exc, (FileNotFoundError, ConnectionRefusedError)) and not started:
        return "No livefill daemon is running (it starts on %s)." % editor.starts_on
    return "Cannot reach the livefill daemon%s: %s" % (where, exc)


# ------------------------------------------------------------------------------------------------
# Models: the picker, the Automatic choice, what the status line says about them
# ------------------------------------------------------------------------------------------------

#: The model choice that lets the daemon pick per request (``GenerateRequest.model`` "").
AUTOMATIC = ""
KIND_INPAINTING = "inpainting"
KIND_LCM = "LCM"
KIND_PLAIN = "plain"
#: Longest ``load_error`` text kept in a picker label (the whole text is in its tooltip).
LOAD_ERROR_IN_LABEL_LIMIT = 60


def model_kind(info: "proto.ModelInfo") -> str:
    """``KIND_INPAINTING`` (a 9-channel UNet), ``KIND_LCM`` (LCM-distilled) or ``KIND_PLAIN``."""
    if info.unet_in_channels == 9:
        return KIND_INPAINTING
    if info.lcm_distilled:
        return KIND_LCM
    return KIND_PLAIN


def model_label(info: "proto.ModelInfo") -> str:
    """A picker label, e.g. ``sd-inpaint (inpainting, fp16, resident)``; a model whose last load
    failed says so with its ``load_error``: ``sd-broken (plain, fp32, failed: unet/model.onnx is
    truncated)``."""
    parts = [model_kind(info)]
    if info.dtype:
        parts.append(info.dtype)
    if info.load_error:
        parts.append("failed: " + short_prompt(info.load_error, LOAD_ERROR_IN_LABEL_LIMIT))
    else:
        parts.append("resident" if info.loaded else "not loaded")
    return "%s (%s)" % (info.name, ", ".join(parts))


def role_for(mode: "proto.Mode", live: bool = False) -> "proto.ModelRole":
    """The role of the model an Automatic request of ``mode`` is served with: a live preview the
    LIVE model, inpaint and outpaint the INPAINT model, txt2img and a final img2img the DEFAULT."""
    if live:
        return proto.ModelRole.LIVE
    if mode in (proto.Mode.INPAINT, proto.Mode.OUTPAINT):
        return proto.ModelRole.INPAINT
    return proto.ModelRole.DEFAULT


def model_for(models: Sequence["proto.ModelInfo"], role: "proto.ModelRole") -> Optional["proto.ModelInfo"]:
    """The model the daemon runs ``role``'s requests on when they name none: the one listed with
    that role, else the one with the DEFAULT role (the daemon's fallback), else the only model
    when it lists one (a daemon that names no roles), else None."""
    for wanted in (role, proto.ModelRole.DEFAULT):
        for info in models:
            if wanted in info.roles:
                return info
    return models[0] if len(models) == 1 else None


def automatic_label(models: Optional[Sequence["proto.ModelInfo"]], editor: Editor) -> str:
    """The Automatic entry's label, naming the model each action gets, e.g. ``Automatic (fill:
    sd-inpaint, live/generate: lcm-dreamshaper)`` (actions served by the same model share one
    name; one model for all: ``Automatic (standin)``); before the daemon answered:
    ``Automatic (the daemon's choice)``."""
    groups: List[Tuple[str, List[str]]] = []
    for role, word in editor.role_words:
        info = model_for(models or (), role)
        name = info.name if info is not None else "?"
        for model, words in groups:
            if model == name:
                words.append(word)
                break
        else:
            groups.append((name, [word]))
    if not models or all(model == "?" for model, _ in groups):
        return "Automatic (the daemon's choice)"
    if len(groups) == 1:
        return "Automatic (%s)" % groups[0][0]
    return "Automatic (%s)" % ", ".join("%s: %s" % ("/".join(words), model) for model, words in groups)


@dataclass(frozen=True)
class ModelEntry:
    """One line of a model picker: ``name`` goes into ``Settings.model`` ("" = Automatic)."""

    name: str
    label: str
    tooltip: str
    #: Its last load failed (``ModelInfo.load_error``).
    broken: bool = False


def model_entries(models: Optional[Sequence["proto.ModelInfo"]], choice: str, editor: Editor) -> List[ModelEntry]:
    """The picker's lines: Automatic, then every model the daemon listed, in its order. A
    ``choice`` the list lacks is kept as a last line while the list is not known yet (None: the
    daemon has not answered), so a remembered choice shows before the first connection; once it
    is known, ``check_choice`` decides what becomes of it."""
    entries = [ModelEntry(AUTOMATIC, automatic_label(models, editor),
                          "The daemon picks the model for each action (an inpainting model to fill, an LCM "
                          "model for live previews, else its default).")]
    for info in models or ():
        tip = "%s: %s UNet, %s, %s" % (info.name, model_kind(info), info.dtype or "?", info.path)
        if info.load_error:
            tip += "\nLast load failed: %s" % info.load_error
        entries.append(ModelEntry(info.name, model_label(info), tip, bool(info.load_error)))
    choice = (choice or "").strip()
    if choice and models is None:
        entries.append(ModelEntry(choice, "%s (remembered; not listed yet)" % choice,
                                  "The model chosen last time; the list comes from the daemon once connected."))
    return entries


def check_choice(choice: str, models: Sequence["proto.ModelInfo"]) -> Tuple[str, Optional[str]]:
    """The model choice to keep once the daemon listed ``models``: ``choice`` itself when listed
    (or Automatic), else Automatic with a sentence saying so."""
    choice = (choice or "").strip()
    if not choice or any(info.name == choice for info in models):
        return choice, None
    return AUTOMATIC, "The model \u201c%s\u201d is no longer offered by the daemon. %s" % (choice, BACK_TO_AUTOMATIC)


def _served_by(model: str) -> str:
    return ", model %s" % model if model else ""


def result_status(layer: str, seconds: float, model: str) -> str:
    """The status line after a result became ``layer``, naming the model that served it
    (``GenerateResult.model``): ``Added layer “livefill fill: fox [seed 7]” (1.2 s, model
    sd-inpaint).``"""
    return "Added layer \u201c%s\u201d (%.1f s%s)." % (layer, seconds, _served_by(model))


def live_status(seed: int, model: str) -> str:
    """The status line after a live frame was shown: ``Live preview updated (seed 5, model lcm).``"""
    return "Live preview updated (seed %d%s)." % (seed, _served_by(model))


def loading_text(msg: "proto.ModelLoading") -> str:
    """The status line while a request's model is loaded: ``Loading model sd-inpaint: unet (2/5)…``."""
    what = msg.component or "weights"
    count = " (%d/%d)" % (msg.step, msg.total_steps) if msg.total_steps else ""
    return "Loading model %s: %s%s\u2026" % (msg.model or "?", what, count)


# ------------------------------------------------------------------------------------------------
# Finding and starting the daemon
# ------------------------------------------------------------------------------------------------

ENV_SOCKET = "LIVEFILL_SOCKET"
ENV_BIN = "LIVEFILL_BIN"
#: Deprecated alias of ``ENV_BIN`` (the GIMP plug-in's old name), read when ``ENV_BIN`` is unset.
ENV_BIN_DEPRECATED = "LIVEFILL_EXE"
ENV_MODEL = "LIVEFILL_MODEL"
#: Where ``cargo install`` and ``pip``-style user installs put executables, tried after PATH.
USER_BIN_DIRS = ("~/.cargo/bin", "~/.local/bin")
#: How long connecting to a running daemon may take, and how long a started one may take to
#: accept connections (loading a model can be slow), in seconds.
CONNECT_TIMEOUT_S = 10.0
START_TIMEOUT_S = 180.0

Environ = Mapping[str, str]


def _env(name: str, environ: Optional[Environ]) -> str:
    """An environment variable's value; empty or unset = ""."""
    return ((os.environ if environ is None else environ).get(name) or "").strip()


def resolve_socket(configured: str, environ: Optional[Environ] = None,
                   default: Optional[Callable[[], str]] = None) -> str:
    """Socket path: the configured one, else ``$LIVEFILL_SOCKET``, else the daemon's default."""
    if configured and configured.strip():
        return os.path.expanduser(configured.strip())
    from_env = _env(ENV_SOCKET, environ)
    if from_env:
        return from_env
    return str((default or client.default_socket_path)())


def _is_executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def find_livefill(configured: str = "", environ: Optional[Environ] = None,
                  which: Callable[[str], Optional[str]] = shutil.which,
                  user_bin_dirs: Sequence[str] = USER_BIN_DIRS) -> Optional[str]:
    """The livefill executable to start the daemon with: the configured path, else
    ``$LIVEFILL_BIN`` (or the deprecated ``$LIVEFILL_EXE``), else ``livefill`` on PATH, else in
    ``user_bin_dirs``; None when there is none."""
    for candidate in (configured.strip() if configured else "", _env(ENV_BIN, environ),
                      _env(ENV_BIN_DEPRECATED, environ)):
        if candidate:
            return os.path.expanduser(candidate)
    names = ("livefill.exe", "livefill") if sys.platform == "win32" else ("livefill",)
    for name in names:
        found = which(name)
        if found:
            return found
    for folder in user_bin_dirs:
        for name in names:
            path = os.path.join(os.path.expanduser(folder), name)
            if _is_executable(path):
                return path
    return None


def daemon_args(model: str, environ: Optional[Environ] = None) -> list:
    """Arguments for ``livefill serve`` besides the socket: ``--model`` from the configured
    model folder, else ``$LIVEFILL_MODEL``; none (the daemon's default) without either."""
    folder = (model or "").strip() or _env(ENV_MODEL, environ)
    return ["--model", os.path.expanduser(folder)] if folder else []


def open_connection(socket_path: str, exe: Optional[str], args: Sequence[str], editor: Editor,
                    start: bool = True, start_timeout: float = START_TIMEOUT_S) -> "client.DaemonConnection":
    """A handshaken connection to the daemon at ``socket_path``. When nothing listens there and
    ``start`` is true, ``exe serve --socket socket_path args...`` is started first (blocking until
    it accepts connections: call it off the UI thread). Raises what ``livefill_client`` raises,
    or ExecutableNotFound; ``describe_connect_error`` turns any of them into a sentence."""
    if start and exe is not None:
        return client.ensure_daemon(exe, list(args), socket_path, start_timeout, client_name=editor.client_name)
    try:
        return client.connect_settled(socket_path, editor.client_name, timeout=CONNECT_TIMEOUT_S)
    except (FileNotFoundError, ConnectionRefusedError):
        if not start:
            raise
    raise ExecutableNotFound("no livefill executable to start the daemon at %s" % socket_path)


def connect_or_start(socket_path: str, exe: Optional[str], args: Sequence[str], editor: Editor,
                     start_timeout: float = START_TIMEOUT_S) -> "client.DaemonConnection":
    """``open_connection`` (starting the daemon when needed) for callers that may block; every
    failure becomes a PluginError saying what to do."""
    try:
        return open_connection(socket_path, exe, args, editor, True, start_timeout)
    except (OSError, client.LivefillError, proto.ProtocolError, ExecutableNotFound) as e:
        raise PluginError(describe_connect_error(e, editor, True, socket_path)) from e
