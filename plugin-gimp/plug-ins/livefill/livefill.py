#!/usr/bin/env python3
"""livefill for GIMP 3: fill a selection, extend the canvas, img2img a layer or generate an image
from a prompt with the local livefill daemon (Stable Diffusion + LCM), plus a live preview.

Exists as the GIMP entry point: it registers the procedures (menu Filters > livefill), shows the
dialogs and drives one job per call. Pixels and layers go through ``gimp_document``; what is
decided like in the Krita plugin (geometry, settings and defaults, requests, layer names, error
texts, finding the daemon) through the shared ``livefill_plugin_core``, the rest through
``livefill_logic``; the codec, transport and core are installed next to this file.

Every argument can be set from scripts, e.g. in python-fu::

    proc = Gimp.get_pdb().lookup_procedure('plug-in-livefill-inpaint')
    cfg = proc.create_config()
    cfg.set_property('run-mode', Gimp.RunMode.NONINTERACTIVE)
    cfg.set_property('image', image)
    cfg.set_core_object_array('drawables', [layer])
    cfg.set_property('prompt', 'a red fox')
    result = proc.run(cfg)   # result.index(0): status, 1: new layer, 2: seed, 3: model

The dialogs' Model list is filled from the daemon's ``ListModels`` answer when a dialog opens
(the plug-in connects then, starting the daemon if needed: a plug-in is its own process, so the
short wait blocks no one but this dialog); the choice is the ``model-name`` argument, remembered
with the others by GIMP ("" = Automatic: the daemon picks per action).
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gi  # noqa: E402

gi.require_version("Gimp", "3.0")
gi.require_version("GimpUi", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import GLib, GObject, Gimp, GimpUi, Gegl  # noqa: E402,F401

import gimp_document as doc  # noqa: E402
import livefill_live as live  # noqa: E402
import livefill_logic as logic  # noqa: E402
import livefill_plugin_core as core  # noqa: E402
import livefill_protocol as lp  # noqa: E402
from livefill_plugin_core import PluginError  # noqa: E402

MENU = "<Image>/Filters/livefill"
RW = GObject.ParamFlags.READWRITE

# procedure name -> (mode, menu label, blurb)
PROCEDURES = {
    "plug-in-livefill-inpaint": (
        "inpaint", "_Inpaint selection...",
        "Regenerate the selected region of the active layer from a prompt"),
    "plug-in-livefill-extend": (
        "outpaint", "_Extend canvas...",
        "Grow the canvas on any side and fill the new borders (outpainting)"),
    "plug-in-livefill-img2img": (
        "img2img", "Img2img _layer...",
        "Redraw the active layer from a prompt, keeping its composition"),
    "plug-in-livefill-generate": (
        "txt2img", "_Generate...",
        "Generate a new layer from a prompt (text to image)"),
    "plug-in-livefill-live-preview": (
        "preview", "_Live preview...",
        "While the dialog is open, keep redrawing the active layer into one preview layer"),
}

# Arguments shown in the dialogs (the connection arguments are for scripts and env only).
DIALOG_ARGS = {
    "inpaint": ["prompt", "negative-prompt", "strength", "preset", "steps", "guidance", "eta", "seed", "context",
                "feather", "color-match", "sample-merged", "mask-result"],
    "outpaint": ["prompt", "negative-prompt", "left", "top", "right", "bottom", "preset", "steps",
                 "guidance", "eta", "seed", "feather", "color-match", "sample-merged"],
    "img2img": ["prompt", "negative-prompt", "strength", "preset", "steps", "guidance", "eta", "seed",
                "sample-merged"],
    "txt2img": ["prompt", "negative-prompt", "width", "height", "preset", "steps", "guidance", "eta",
                "seed"],
    "preview": ["prompt", "negative-prompt", "strength", "preset", "steps", "guidance", "eta", "seed",
                "preview-max-side"],
}


#: The sampler presets as Gimp.Choice nicks (e.g. "quality-dpm-2m-karras") -> core preset names.
PRESET_NICKS = {
    "-".join(filter(None, "".join(ch if ch.isalnum() else "-" for ch in p.name.lower()).split("-"))): p.name
    for p in core.PRESETS
}


def _preset(config) -> "core.Preset":
    return core.preset_named(PRESET_NICKS.get(config.get_property("preset"), core.PRESETS[0].name))


def _prepare_dialog(dialog, mode, config=None):
    """Widgets that need more than the defaults: the 0..1 strength as a percent slider (GIMP's
    default increments are larger than a 0..1 range); choosing a sampler preset fills steps and
    guidance (both stay editable)."""
    if "strength" in DIALOG_ARGS[mode]:
        dialog.get_spin_scale("strength", 100.0)
    if config is not None:
        def on_preset(cfg, _pspec):
            p = _preset(cfg)
            cfg.set_property("steps", p.steps)
            cfg.set_property("guidance", p.guidance)

        config.connect("notify::preset", on_preset)


def _dump(event, **data):
    """Test hook: with LIVEFILL_DIALOG_DUMP=PATH, what the plug-in shows (the Model list, status
    lines, result messages) is appended to PATH as JSON lines, for tests/gimp to read. Unset in
    normal use."""
    path = os.environ.get("LIVEFILL_DIALOG_DUMP", "")
    if path:
        import json

        with open(path, "a") as f:
            f.write(json.dumps(dict(data, event=event, procedure=_CURRENT["procedure"])) + "\n")


#: The procedure being run (for ``_dump``).
_CURRENT = {"procedure": ""}


def _tell(run_mode, text):
    """A result's one-line message: in GIMP's status bar (interactive runs; scripts get the
    return values)."""
    _dump("message", text=text)
    if run_mode == Gimp.RunMode.INTERACTIVE:
        Gimp.message(text)


def _dialog_connection(config):
    """(connection, None) for a dialog about to open (starting the daemon if needed), or (None,
    the reason) when there is no daemon: the dialog still opens, its Model list unfilled."""
    try:
        return _connect(config), None
    except PluginError as e:
        return None, str(e)


def _add_model_picker(dialog, config, conn, connect_error):
    """The Model list at the top of ``dialog``, bound to the ``model-name`` argument: Automatic
    and the daemon's models (the shared ``model_entries``). A remembered model the daemon no
    longer offers falls back to Automatic, which a line under the list says. Returns the models
    listed (None when the daemon could not be asked)."""
    gi.require_version("Gtk", "3.0")
    from gi.repository import Gtk

    models, note = None, connect_error and "Models not listed: %s" % connect_error
    if conn is not None:
        try:
            models = conn.list_models(timeout=core.CONNECT_TIMEOUT_S)
        except Exception as e:  # the job itself will say what is wrong with the daemon
            note = "Models not listed: %s" % e
    choice = config.get_property("model-name") or core.AUTOMATIC
    if models is not None:
        choice, note = core.check_choice(choice, models)
        config.set_property("model-name", choice)
    entries = core.model_entries(models, choice, logic.GIMP)
    store = Gtk.ListStore(str, str)
    for entry in entries:
        store.append([entry.name, entry.label])
    combo = GimpUi.prop_string_combo_box_new(config, "model-name", store, 0, 1)
    combo.set_tooltip_text("Which model serves this action; Automatic lets the daemon choose "
                           "(an inpainting model to inpaint and extend, an LCM model for live previews, "
                           "else its default)")
    row = Gtk.Box(orientation=Gtk.Orientation.HORIZONTAL, spacing=6)
    label = Gtk.Label(label="Model")
    row.pack_start(label, False, False, 0)
    row.pack_start(combo, True, True, 0)
    area = dialog.get_content_area()
    area.pack_start(row, False, False, 4)
    area.reorder_child(row, 0)
    row.show_all()
    if note:
        line = Gtk.Label(label=note)
        line.set_xalign(0.0)
        line.set_line_wrap(True)
        area.pack_start(line, False, False, 2)
        area.reorder_child(line, 1)
        line.show()
    _dump("picker", labels=[e.label for e in entries], names=[e.name for e in entries],
          active=config.get_property("model-name"), note=note or "")
    return models


def _auto_respond(dialog):
    """Test hook: with LIVEFILL_DIALOG_AUTORESPOND=ok:MS (or cancel:MS) the dialog answers itself
    after MS milliseconds, so the interactive paths can run unattended (tests/gimp); with
    LIVEFILL_DIALOG_SHOT=DIR too, it first saves a picture of itself there (<procedure>.png).
    Unset in normal use."""
    spec = os.environ.get("LIVEFILL_DIALOG_AUTORESPOND", "")
    if not spec:
        return
    gi.require_version("Gtk", "3.0")
    gi.require_version("Gdk", "3.0")
    from gi.repository import Gdk, Gtk

    answer, _, ms = spec.partition(":")
    response = Gtk.ResponseType.OK if answer == "ok" else Gtk.ResponseType.CANCEL
    shots = os.environ.get("LIVEFILL_DIALOG_SHOT", "")

    def respond():
        window = dialog.get_window()
        if shots and window is not None:
            shot = Gdk.pixbuf_get_from_window(window, 0, 0, window.get_width(), window.get_height())
            if shot is not None:
                shot.savev(os.path.join(shots, _CURRENT["procedure"] + ".png"), "png", [], [])
        dialog.response(response)
        return False

    GLib.timeout_add(int(ms or "500"), respond)
    # LIVEFILL_DIALOG_SET=PROPERTY=VALUE@MS: the artist changes a string setting (the Model list)
    # MS milliseconds in.
    change = os.environ.get("LIVEFILL_DIALOG_SET", "")
    if change:
        assignment, _, at = change.rpartition("@")
        name, _, value = assignment.partition("=")

        def set_property():
            dialog.get_property("config").set_property(name, value)
            return False

        GLib.timeout_add(int(at), set_property)


def _error(procedure, status, text):
    err = GLib.Error.new_literal(Gimp.PlugIn.error_quark(), text, 0)
    return procedure.new_return_values(status, err)


def _success(procedure, layer, seed, model=""):
    values = procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())
    values.remove(1)
    values.insert(1, GObject.Value(Gimp.Layer, layer))
    values.remove(2)
    seed = int(seed) if seed is not None and 0 <= seed <= core.MAX_SEED else -1
    values.insert(2, GObject.Value(GObject.TYPE_INT, seed))
    values.remove(3)
    values.insert(3, GObject.Value(GObject.TYPE_STRING, model or ""))
    return values


def _add_arguments(procedure, mode):
    p = procedure
    p.add_string_argument("prompt", "_Prompt", "What to paint", "", RW)
    p.add_string_argument("negative-prompt", "_Negative prompt", "What to avoid", "", RW)
    if mode in ("inpaint", "img2img", "preview"):
        default = logic.DEFAULT_STRENGTHS[mode]
        p.add_double_argument("strength", "Stren_gth",
                              "How much to change (1 = ignore the old pixels)",
                              core.MIN_STRENGTH, 1.0, default, RW)
    else:
        p.add_double_argument("strength", "Stren_gth", "Unused by this mode", core.MIN_STRENGTH, 1.0, 1.0, RW)
    p.add_int_argument("steps", "St_eps", "Denoising steps (LCM: 1-8; DPM++ 2M: 15-30)", core.MIN_STEPS, core.MAX_STEPS,
                       core.DEFAULT_STEPS, RW)
    p.add_double_argument("guidance", "G_uidance", "Guidance scale", 0.0, 30.0,
                          core.DEFAULT_GUIDANCE, RW)
    presets = Gimp.Choice.new()
    for i, (nick, name) in enumerate(PRESET_NICKS.items()):
        presets.add(nick, i, name, core.preset_named(name).hint)
    p.add_choice_argument("preset", "S_ampler", "Sampler preset (sets steps and guidance)",
                          presets, next(iter(PRESET_NICKS)), RW)
    p.add_double_argument("eta", "Eta", "DDIM's eta / TCD's gamma (-1 = the sampler's default)",
                          -1.0, 1.0, -1.0, RW)
    p.add_int_argument("seed", "See_d", "Random seed (-1 = pick one; the layer name shows it)",
                       -1, core.MAX_SEED, -1, RW)
    context = Gimp.Choice.new()
    context.add("auto", 0, "Around the selection",
                "Crop around the selection and work at the model's native size")
    context.add("full", 1, "Whole layer", "Send the whole layer as is")
    p.add_choice_argument("context", "Conte_xt", "How much of the layer the model sees",
                          context, core.CONTEXT_AUTO, RW)
    p.add_int_argument("feather", "_Feather", "Mask edge softening in pixels", 0, 256,
                       core.DEFAULT_FEATHER, RW)
    p.add_boolean_argument("color-match", "_Match colors",
                           "Match the result's colors to the surroundings", core.DEFAULT_COLOR_MATCH, RW)
    p.add_boolean_argument("sample-merged", "Use _visible image",
                           "Send what is visible instead of the active layer alone", False, RW)
    p.add_boolean_argument("mask-result", "Mask result _with selection",
                           "Give the new layer a layer mask made from the selection", True, RW)
    # Mnemonics are unique per dialog (GIMP warns otherwise; O, C, R, S belong to its buttons).
    for side, label in (("left", "_Left"), ("top", "_Top"), ("right", "R_ight"),
                        ("bottom", "_Bottom")):
        p.add_int_argument(side, label, "Border to add on the %s side" % side,
                           0, 4096, core.DEFAULT_EXTEND_BORDER if mode == "outpaint" else 0, RW)
    p.add_int_argument("width", "_Width", "Output width (0 = model native)", 0, 8192, 0, RW)
    p.add_int_argument("height", "_Height", "Output height (0 = model native)", 0, 8192, 0, RW)
    p.add_int_argument("preview-max-side", "Preview si_ze",
                       "Longest side the live preview works at (0 = full size)", 0, 8192,
                       live.LIVE_SEND_MAX_SIDE, RW)
    # Connection (scripts, tests; the dialog uses the environment / defaults).
    p.add_string_argument("socket", "Socket",
                          "Daemon socket ('' = $LIVEFILL_SOCKET or the default)", "", RW)
    p.add_string_argument("livefill-exe", "livefill executable",
                          "Used to start the daemon when it is not running "
                          "('' = $LIVEFILL_BIN, the deprecated $LIVEFILL_EXE, or livefill on PATH)",
                          "", RW)
    p.add_string_argument("model", "Model folder",
                          "Model folder for a daemon started by the plug-in "
                          "('' = $LIVEFILL_MODEL)", "", RW)
    p.add_string_argument("model-name", "Model",
                          "The model to use, by its name in the daemon's list ('' = Automatic: the daemon "
                          "picks per action: an inpainting model to inpaint and extend, an LCM model for "
                          "live previews, else its default)", core.AUTOMATIC, RW)
    p.add_double_argument("timeout", "Timeout", "Seconds to wait for a result", 1.0, 86400.0,
                          core.DEFAULT_TIMEOUT_S, RW)
    p.add_layer_return_value("layer", "Layer", "The new layer", True, RW)
    p.add_int_return_value("seed", "Seed", "The seed used", -1, core.MAX_SEED, -1, RW)
    p.add_string_return_value("model", "Model", "The model that made the result", "", RW)


def _settings(config, mode, session_seed=None) -> core.Settings:
    """Settings from the procedure config. A random seed (-1) is drawn here, or taken from
    ``session_seed`` (the live preview keeps one seed while its dialog is open)."""
    g = config.get_property
    seed = g("seed")
    if seed < 0 and session_seed is not None:
        seed = session_seed
    return core.Settings(
        prompt=g("prompt") or "",
        negative_prompt=g("negative-prompt") or "",
        seed=core.pick_seed(seed),
        steps=g("steps"),
        guidance=g("guidance"),
        strength=g("strength"),
        context=g("context") or core.CONTEXT_AUTO,
        source=core.SOURCE_IMAGE if g("sample-merged") else core.SOURCE_LAYER,
        feather=g("feather"),
        color_match=g("color-match"),
        sampler=_preset(config).sampler,
        spacing=_preset(config).spacing,
        eta=None if g("eta") < 0 else g("eta"),
        model=g("model-name") or core.AUTOMATIC,
    )


# --------------------------------------------------------------------------------------------
# Talking to the daemon


def _connect(config):
    """A connected DaemonConnection; starts the daemon first when it is not running."""
    g = config.get_property
    return logic.connect(g("socket"), g("livefill-exe"), g("model"))


def _run_job(conn, request, timeout, label):
    doc.progress_start("livefill: %s..." % label)
    state = {"last": 0.0}

    def on_progress(step, total):
        # Called on this (the plug-in's main) thread by logic.run_job.
        frac = step / float(total) if total else 0.0
        if frac != state["last"]:
            state["last"] = frac
            doc.progress(frac, "livefill: %s (step %d/%d)" % (label, step, total))

    def on_loading(text):
        _dump("status", text=text)
        doc.progress(0.0, "livefill: %s" % text)

    try:
        return logic.run_job(conn, request, on_progress, timeout, on_model_loading=on_loading)
    finally:
        doc.progress_end()


# --------------------------------------------------------------------------------------------
# The procedures


def _do_inpaint(image, drawable, config, settings, conn, timeout):
    dr = doc.drawable_rect(drawable)
    sent = logic.plan_inpaint(dr, doc.selection_bounds(image), settings.context)
    rgba = doc.source_pixels(image, drawable, sent, settings.source == core.SOURCE_IMAGE)
    mask = doc.read_selection(image, sent)
    if logic.mask_is_empty(mask):
        raise PluginError("The selection is empty where it overlaps the active layer.")
    request = core.build_request(lp.Mode.INPAINT, settings, image=(sent.width, sent.height, rgba),
                                 mask=(sent.width, sent.height, mask))
    result = _run_job(conn, request, timeout, "inpainting")
    x, y = logic.result_position(sent, result.offset_x, result.offset_y)
    with doc.UndoGroup(image):
        layer = doc.add_result_layer(
            image, drawable, logic.result_name("inpaint", settings.prompt, result.seed), x, y,
            result.image.width, result.image.height, result.image.pixels,
            mask_with_selection=config.get_property("mask-result"))
    return layer, result


def _do_extend(image, drawable, config, settings, conn, timeout):
    g = config.get_property
    growth = logic.extend_canvas(image.get_width(), image.get_height(),
                                 g("left"), g("top"), g("right"), g("bottom"))
    sent = doc.image_rect(image)
    rgba = doc.source_pixels(image, drawable, sent, settings.source == core.SOURCE_IMAGE)
    request = core.build_request(lp.Mode.OUTPAINT, settings, image=(sent.width, sent.height, rgba),
                                 extend=(g("left"), g("top"), g("right"), g("bottom")))
    result = _run_job(conn, request, timeout, "extending the canvas")
    # After the resize the sent image's origin sits at (shift_x, shift_y).
    moved = sent.translate(growth.shift_x, growth.shift_y)
    x, y = logic.result_position(moved, result.offset_x, result.offset_y)
    with doc.UndoGroup(image):
        doc.resize_canvas(image, growth.new_width, growth.new_height, growth.shift_x,
                          growth.shift_y)
        layer = doc.add_result_layer(
            image, drawable, logic.result_name("outpaint", settings.prompt, result.seed), x, y,
            result.image.width, result.image.height, result.image.pixels)
    return layer, result


def _do_img2img(image, drawable, config, settings, conn, timeout):
    sent = doc.drawable_rect(drawable)
    rgba = doc.source_pixels(image, drawable, sent, settings.source == core.SOURCE_IMAGE)
    request = core.build_request(lp.Mode.IMG2IMG, settings, image=(sent.width, sent.height, rgba))
    result = _run_job(conn, request, timeout, "img2img")
    x, y = logic.result_position(sent, result.offset_x, result.offset_y)
    with doc.UndoGroup(image):
        layer = doc.add_result_layer(
            image, drawable, logic.result_name("img2img", settings.prompt, result.seed), x, y,
            result.image.width, result.image.height, result.image.pixels)
    return layer, result


def _do_generate(image, drawable, config, settings, conn, timeout):
    size = (config.get_property("width"), config.get_property("height"))
    request = core.build_request(lp.Mode.TXT2IMG, settings, size=size)
    result = _run_job(conn, request, timeout, "generating")
    name = logic.result_name("txt2img", settings.prompt, result.seed)
    if image is None:  # run without an open image: the result becomes a new image
        image, layer = doc.new_image(name, result.image.width, result.image.height,
                                     result.image.pixels)
        return layer, result
    sel = doc.selection_bounds(image)
    x, y = (sel.x, sel.y) if sel is not None else (0, 0)
    with doc.UndoGroup(image):
        layer = doc.add_result_layer(
            image, drawable, name, x, y,
            result.image.width, result.image.height, result.image.pixels)
    return layer, result


def _do_preview_once(image, drawable, config, settings, conn, timeout):
    """Non-interactive live preview: one live-priority img2img written into the preview layer."""
    preview = LivePreview(image, drawable, config, conn)
    result = preview.run_once(settings, timeout)
    preview.layer.set_lock_content(False)  # nothing watches it after this call
    return preview.layer, result


ACTIONS = {
    "inpaint": _do_inpaint,
    "outpaint": _do_extend,
    "img2img": _do_img2img,
    "txt2img": _do_generate,
    "preview": _do_preview_once,
}


# --------------------------------------------------------------------------------------------
# Live preview


class LivePreview:
    """Keeps one preview layer in sync with img2img of the active layer.

    GIMP 3 tells plug-ins nothing when a drawable changes, so ``poll`` runs every
    ``logic.LIVE_TICK_MS`` and notices edits through GIMP's thumbnails of the layer (computed in
    the core from its mipmaps; a few KB cross the wire). A change is sent at once as a
    live-priority img2img read at ``preview-max-side`` (the shared ``livefill_live`` rule), one
    request in flight at a time, the newest change sent the moment its result is in. Results
    are written into the preview layer directly (no undo step per update); creating the layer
    is the only undo step until the dialog closes. The preview never becomes the active layer
    and its content is locked, so the artist's brush cannot land in it. Every frame's moments go
    to ``timeline`` (read by ``tests/gimp/gimp_live_bench.py``)."""

    def __init__(self, image, drawable, config, conn):
        self.image = image
        self.drawable = drawable
        self.config = config
        self.conn = conn
        self.layer = None
        self.pending = None  # request id in flight
        self.pending_rect = None
        self.last_key = None
        self.last_seed = None
        self.last_model = ""
        self.pending_model = ""
        self.timeline = live.LiveTimeline()
        self._frame = None
        self._ticks = 0
        self._coarse = None
        self._fine = None
        self._last_change = live.now_ms()

    def tick_interval(self) -> int:
        """How long until the next ``poll`` (ms): quick while the artist works, slower once the
        layer has been still for a while (an idle preview should cost next to nothing)."""
        if self.pending is not None or live.now_ms() - self._last_change < logic.LIVE_IDLE_AFTER_MS:
            return logic.LIVE_TICK_MS
        return logic.LIVE_IDLE_TICK_MS

    def _max_side(self) -> int:
        return self.config.get_property("preview-max-side")

    def _key(self, settings):
        """What a preview depends on: the layer's thumbnails (see ``logic.LIVE_PROBE_SIDE``),
        its area, the settings."""
        rect = doc.drawable_rect(self.drawable)
        coarse = logic.fingerprint(doc.change_probe(self.drawable, logic.LIVE_PROBE_SIDE))
        self._ticks += 1
        if coarse != self._coarse or self._fine is None or self._ticks % logic.LIVE_FINE_PROBE_EVERY == 0:
            self._fine = logic.fingerprint(doc.change_probe(self.drawable, logic.LIVE_FINE_PROBE_SIDE))
        self._coarse = coarse
        return (coarse, self._fine, rect, repr(settings), self._max_side())

    def _request(self, settings):
        rect = doc.drawable_rect(self.drawable)
        w, h = live.live_send_size(rect.width, rect.height, self._max_side()) or (rect.width, rect.height)
        rgba = doc.read_rgba(self.drawable, rect, w / float(rect.width), (w, h))
        return rect, core.build_request(lp.Mode.IMG2IMG, settings, image=(w, h, rgba), live=True)

    def show(self, rect, result):
        """Writes ``result`` (an img2img of the possibly downscaled layer) into the preview layer,
        creating it above the source layer on first use; the artist's layer stays active."""
        if self.layer is None or not self.layer.is_valid():
            self.layer = doc.find_layer(self.image, core.PREVIEW_LAYER_NAME)
        if self.layer is None or not self.layer.is_valid():
            with doc.UndoGroup(self.image):
                self.layer = doc.add_result_layer(
                    self.image, self.drawable, core.PREVIEW_LAYER_NAME, rect.x, rect.y,
                    rect.width, rect.height, bytes(rect.width * rect.height * 4))
            doc.keep_selected(self.image, self.drawable)
        elif doc.drawable_rect(self.layer) != rect:  # the source layer moved or was resized
            with doc.UndoGroup(self.image):
                if (self.layer.get_width(), self.layer.get_height()) != (rect.width, rect.height):
                    self.layer.resize(rect.width, rect.height, 0, 0)
                self.layer.set_offsets(rect.x, rect.y)
        with doc.unlocked_content(self.layer):
            doc.write_scaled(self.layer, result.image.width, result.image.height,
                             result.image.pixels, rect.width, rect.height)
        self.last_seed = result.seed
        self.last_model = result.model
        doc.flush()

    def run_once(self, settings, timeout):
        rect, request = self._request(settings)
        result = _run_job(self.conn, request, timeout, "live preview")
        self.show(rect, result)
        return result

    def poll(self, settings):
        """One tick of the interactive loop: collects a finished result, sends a new request
        when the source or the settings changed. Returns a status line for the dialog."""
        status = None
        if self.pending is not None:
            loading = []
            outcome = logic.poll_job(self.conn, self.pending, self.pending_model, loading.append)
            if loading:
                status = loading[-1]
            if outcome is not None:
                kind, payload = outcome
                self.pending = None
                frame, self._frame = self._frame, None
                if kind == "result":
                    if frame is not None:
                        frame.result = live.now_ms()
                        frame.bytes_received = len(payload.image.pixels)
                        frame.daemon = {t.stage: t.millis for t in payload.timings}
                    self.show(self.pending_rect, payload)
                    if frame is not None:
                        frame.shown = live.now_ms()
                        frame.outcome = "shown"
                    status = core.live_status(payload.seed, payload.model)
                    self.last_model = payload.model
                elif kind == "superseded":
                    pass
                else:
                    status = "Error: %s" % payload
        if self.pending is not None:
            # One request in flight at a time: edits made meanwhile are picked up as soon as it
            # is done, so a continuous stroke still gets previews (the daemon would otherwise
            # cancel the running live request for each newer one).
            return status
        seen = live.now_ms()
        key = self._key(settings)
        if key != self.last_key:
            self._last_change = seen
            frame = live.LiveFrame(changed=seen, read_started=live.now_ms())
            try:
                rect, request = self._request(settings)
            except PluginError as e:
                return "Error: %s" % e
            self.pending = self.conn.generate(request)
            self.pending_model = request.model
            frame.request_id = self.pending
            frame.sent = live.now_ms()
            frame.bytes_sent = len(request.image.pixels)
            self._frame = self.timeline.add(frame)
            self.pending_rect = rect
            self.last_key = key
            status = "Working..."
        return status


def _live_dialog(procedure, config, image, drawable):
    """Interactive live preview. OK keeps the preview layer (renamed like a result layer),
    Cancel removes it."""
    gi.require_version("Gtk", "3.0")
    from gi.repository import Gtk

    conn = _connect(config)
    preview = LivePreview(image, drawable, config, conn)
    dialog = GimpUi.ProcedureDialog(procedure=procedure, config=config,
                                    title="livefill live preview")
    _prepare_dialog(dialog, "preview", config)
    dialog.fill(DIALOG_ARGS["preview"])
    models = _add_model_picker(dialog, config, conn, None)
    session_seed = core.pick_seed(None)
    # The warning follows the dialog: another model or sampler picked while it is open.
    def warning_for(settings):
        return core.live_warning(conn.hello.capabilities, settings, models, conn.hello.model)

    shown = {"warning": warning_for(_settings(config, "preview")), "line": ""}
    _dump("warning", text=shown["warning"] or "")
    status = Gtk.Label(label=shown["warning"] or "Starting...")
    status.set_xalign(0.0)
    dialog.get_content_area().pack_end(status, False, False, 4)
    status.show()

    def tick():
        warning = shown["warning"]
        try:
            with preview.timeline.ui_slice("live: tick"):
                settings = _settings(config, "preview", session_seed)
                warning = warning_for(settings)
                line = preview.poll(settings)
        except Exception as e:  # keep the dialog alive, show what went wrong
            line = "Error: %s" % e
        if line:
            _dump("status", text=line)
            shown["line"] = line
        if warning != shown["warning"]:
            _dump("warning", text=warning or "")
            shown["warning"] = warning
        text = "\n".join(t for t in (warning, shown["line"]) if t) or "Starting..."
        if status.get_text() != text:
            status.set_text(text)
        return True

    source_id = [0]

    def tick_and_rearm():
        tick()
        source_id[0] = GLib.timeout_add(preview.tick_interval(), tick_and_rearm)
        return False

    source_id[0] = GLib.timeout_add(logic.LIVE_TICK_MS, tick_and_rearm)
    _auto_respond(dialog)
    try:
        keep = dialog.run()
    finally:
        GLib.source_remove(source_id[0])
        dialog.destroy()
        if preview.pending is not None:
            try:
                conn.cancel(preview.pending)
            except Exception:
                pass
        conn.close()
    layer = preview.layer
    if layer is not None and layer.is_valid():
        layer.set_lock_content(False)  # locked only while the dialog watches the layer
        if keep:
            layer.set_name(logic.result_name("preview", config.get_property("prompt"),
                                            preview.last_seed if preview.last_seed is not None
                                            else -1))
        else:
            image.remove_layer(layer)
            layer = None
    doc.flush()
    if not keep:
        return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
    return _success(procedure, layer, preview.last_seed, preview.last_model)


# --------------------------------------------------------------------------------------------


def run(procedure, run_mode, image, drawables, config, data):
    mode = PROCEDURES[procedure.get_name()][0]
    if len(drawables) != 1 and mode != "txt2img":
        return _error(procedure, Gimp.PDBStatusType.CALLING_ERROR,
                      "livefill works on exactly one layer; select one layer.")
    drawable = drawables[0] if drawables else None
    if drawable is not None and drawable.is_layer_mask():
        drawable = Gimp.Layer.from_mask(drawable)  # work on the mask's layer, not the mask
    if image is None and mode != "txt2img":
        return _error(procedure, Gimp.PDBStatusType.CALLING_ERROR,
                      "livefill: open an image first.")
    Gegl.init(None)

    _CURRENT["procedure"] = procedure.get_name()
    conn = None
    if run_mode == Gimp.RunMode.INTERACTIVE:
        GimpUi.init("livefill")
        if mode == "preview":
            try:
                return _live_dialog(procedure, config, image, drawable)
            except PluginError as e:
                return _error(procedure, Gimp.PDBStatusType.EXECUTION_ERROR, "livefill: %s" % e)
        conn, connect_error = _dialog_connection(config)
        dialog = GimpUi.ProcedureDialog(procedure=procedure, config=config)
        _prepare_dialog(dialog, mode, config)
        dialog.fill(DIALOG_ARGS[mode])
        _add_model_picker(dialog, config, conn, connect_error)
        _auto_respond(dialog)
        ok = dialog.run()
        dialog.destroy()
        if not ok:
            if conn is not None:
                conn.close()
            return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())

    settings = _settings(config, mode)
    started = time.monotonic()
    try:
        logic.validate(settings, mode)
        if conn is None or conn.is_closed:
            conn = _connect(config)
        layer, result = ACTIONS[mode](image, drawable, config, settings, conn,
                                      config.get_property("timeout"))
    except core.Cancelled as e:
        return _error(procedure, Gimp.PDBStatusType.CANCEL, str(e))
    # GIMP shows a returned error message to the artist (interactive runs) and hands it to the
    # caller (scripts), so errors are only returned, not also shown with Gimp.message.
    except PluginError as e:
        return _error(procedure, Gimp.PDBStatusType.EXECUTION_ERROR, "livefill: %s" % e)
    except Exception as e:  # unexpected: still tell the artist rather than crash silently
        import traceback

        traceback.print_exc()
        return _error(procedure, Gimp.PDBStatusType.EXECUTION_ERROR, "livefill failed: %r" % e)
    finally:
        if conn is not None:
            conn.close()
    if image is None and run_mode == Gimp.RunMode.INTERACTIVE:
        doc.show_image(layer.get_image())  # Generate without an open image made a new one
    doc.flush()
    total_ms = result.total_millis()
    _tell(run_mode, "livefill: " + core.result_status(
        layer.get_name(), total_ms / 1000.0 if total_ms else time.monotonic() - started, result.model))
    return _success(procedure, layer, result.seed, result.model)


class Livefill(Gimp.PlugIn):
    def do_query_procedures(self):
        return list(PROCEDURES)

    def do_set_i18n(self, name):
        return False

    def do_create_procedure(self, name):
        mode, label, blurb = PROCEDURES[name]
        procedure = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, run, None)
        procedure.set_image_types("RGB*, GRAY*")
        if mode == "txt2img":
            procedure.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.ALWAYS)
        else:
            procedure.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE)
        procedure.set_menu_label(label)
        procedure.add_menu_path(MENU)
        procedure.set_documentation(blurb, blurb + " (livefill daemon, Stable Diffusion + LCM).",
                                    name)
        procedure.set_attribution("livefill", "livefill", "2025")
        _add_arguments(procedure, mode)
        return procedure


if __name__ == "__main__":
    Gimp.main(Livefill.__gtype__, sys.argv)
