"""End-to-end tests of the livefill Krita plugin, run inside real Krita by ``kritarunner``.

Why this exists: the plugin's value is in what it does to real Krita documents (layer offsets,
masks, canvas growth, live preview layer), which only real Krita can confirm. This module drives
the plugin's own ``Controller`` (the code behind the docker's buttons) against a daemon and
writes every check to a JSON file, because kritarunner's exit code does not reflect failures.

Run (see run_krita_tests.sh):
    QT_QPA_PLATFORM=offscreen PYTHONPATH=<pykrita dir>:<this dir> kritarunner -s krita_e2e -f main

Environment:
    LIVEFILL_TEST_RESULTS  JSON output path (required)
    LIVEFILL_TEST_DAEMON   "real" (livefill serve on the tiny fixtures) or "fake" (tests/standin_daemon.py)
    LIVEFILL_SOCKET        socket the daemon listens on
    LIVEFILL_BIN, LIVEFILL_MODEL  what the plugin starts when nothing listens (real mode)
    LIVEFILL_TEST_RESTART  command line (shell) that starts the daemon again, for the reconnect test
    LIVEFILL_KRITA_TESTS   comma-separated test names (e.g. test_daemon_killed) to run only those
    LIVEFILL_TEST_SEVERAL  "1": the real daemon serves tiny-sd and tiny-sd-inpaint (test_models_real)
"""

import hashlib
import json
import math
import os
import signal
import socket
import struct
import subprocess
import time
import traceback

# The installed plugin's copy of the shared core (settings, layer names), as the plugin uses it.
from livefill_krita import livefill_plugin_core as core

RESULTS = os.environ.get("LIVEFILL_TEST_RESULTS", "/tmp/livefill-krita-results.json")
DAEMON = os.environ.get("LIVEFILL_TEST_DAEMON", "fake")
W, H = 200, 150
SEL = (60, 40, 64, 48)  # x, y, w, h of the elliptic selection's bounds
JOB_TIMEOUT = float(os.environ.get("LIVEFILL_TEST_JOB_TIMEOUT", "300"))

checks = []
state = {"done": False, "daemon": DAEMON, "checks": checks, "timings": {}}


def save():
    tmp = RESULTS + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f, indent=1, default=str)
    os.replace(tmp, RESULTS)


def check(name, ok, detail=""):
    checks.append({"name": name, "ok": bool(ok), "detail": str(detail)[:2000]})
    save()
    return ok


def pump(seconds=0.0):
    from PyQt5.QtCore import QCoreApplication, QEventLoop

    end = time.monotonic() + seconds
    while True:
        QCoreApplication.processEvents(QEventLoop.AllEvents, 20)
        if time.monotonic() >= end:
            return
        time.sleep(0.005)


def wait_until(pred, timeout):
    from PyQt5.QtCore import QCoreApplication, QEventLoop

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        QCoreApplication.processEvents(QEventLoop.AllEvents, 20)
        if pred():
            return True
        time.sleep(0.005)
    return pred()


# ------------------------------------------------------------------------------------------------
# Document set-up and pixel helpers
# ------------------------------------------------------------------------------------------------


def pattern(w, h):
    """A BGRA pattern where every pixel differs from its neighbours (so misplacement shows)."""
    out = bytearray(w * h * 4)
    for y in range(h):
        for x in range(w):
            i = (y * w + x) * 4
            out[i] = (x * 7 + y * 3) & 255
            out[i + 1] = (x * 2 + y * 5) & 255
            out[i + 2] = (x * 11 + y * 13) & 255
            out[i + 3] = 255
    return bytes(out)


def ellipse_mask(w, h):
    """An elliptic 8-bit mask with soft (128) rim pixels."""
    out = bytearray(w * h)
    cx, cy, rx, ry = (w - 1) / 2.0, (h - 1) / 2.0, w / 2.0, h / 2.0
    for y in range(h):
        for x in range(w):
            d = ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2
            out[y * w + x] = 255 if d <= 0.85 else (128 if d <= 1.0 else 0)
    return bytes(out)


def make_document():
    from krita import Krita

    app = Krita.instance()
    doc = app.createDocument(W, H, "livefill-test", "RGBA", "U8", "", 72.0)
    layer = doc.createNode("painted", "paintlayer")
    doc.rootNode().addChildNode(layer, None)
    layer.setPixelData(pattern(W, H), 0, 0, W, H)
    doc.refreshProjection()
    doc.waitForDone()
    return doc, layer


def select_ellipse(doc):
    from krita import Selection

    x, y, w, h = SEL
    sel = Selection()
    sel.setPixelData(ellipse_mask(w, h), x, y, w, h)
    doc.setSelection(sel)


def projection(doc):
    doc.refreshProjection()
    doc.waitForDone()
    return bytes(doc.pixelData(0, 0, doc.width(), doc.height()))


def full_mask(doc):
    sel = doc.selection()
    if sel is None:
        return bytes(doc.width() * doc.height())
    return bytes(sel.pixelData(0, 0, doc.width(), doc.height()))


def bounds(node):
    b = node.bounds()
    return (b.x(), b.y(), b.width(), b.height())


def diff_outside(before, after, mask):
    """Pixels that changed where the mask is 0."""
    bad = 0
    first = None
    for i, m in enumerate(mask):
        if m == 0 and before[i * 4:i * 4 + 4] != after[i * 4:i * 4 + 4]:
            bad += 1
            if first is None:
                first = i
    return bad, first


def changed_inside(before, after, mask):
    return sum(1 for i, m in enumerate(mask) if m == 255 and before[i * 4:i * 4 + 4] != after[i * 4:i * 4 + 4])


def layer_names(doc):
    return [n.name() for n in doc.rootNode().childNodes()]


# ------------------------------------------------------------------------------------------------
# Jobs
# ------------------------------------------------------------------------------------------------


class Recorder:
    def __init__(self, controller):
        self.done = {}
        self.messages = []
        controller.job_done.connect(self._done)
        controller.message.connect(self.messages.append)

    def _done(self, rid, kind, node):
        self.done[rid] = (kind, node)


def run_job(name, controller, rec, start):
    t0 = time.monotonic()
    rid = start()
    if not check(name + ": request started", rid is not None, rec.messages[-3:]):
        return None
    finished = wait_until(lambda: rid in rec.done, JOB_TIMEOUT)
    state["timings"][name] = round(time.monotonic() - t0, 3)
    if not check(name + ": finished", finished, "messages: %s" % rec.messages[-5:]):
        return None
    node = rec.done[rid][1]
    check(name + ": produced a layer", node is not None, "messages: %s" % rec.messages[-5:])
    return node


def test_fill(doc, layer, controller, rec, logic):
    select_ellipse(doc)
    mask = full_mask(doc)
    layer_before = bytes(layer.pixelData(0, 0, W, H))
    proj_before = projection(doc)
    names_before = layer_names(doc)
    controller.settings = core.Settings(prompt="a red fox", seed=7, steps=2, strength=0.8)
    node = run_job("fill", controller, rec, controller.fill)
    if node is None:
        return
    check("fill: new layer name has prompt and seed", node.name() == "livefill fill: a red fox [seed 7]", node.name())
    check("fill: one layer added", len(layer_names(doc)) == len(names_before) + 1, layer_names(doc))
    check("fill: layer sits on the selection bounds", bounds(node) == SEL, bounds(node))
    check("fill: placed right above the source layer",
          layer_names(doc).index(node.name()) == layer_names(doc).index("painted") + 1, layer_names(doc))
    check("fill: source layer unchanged", bytes(layer.pixelData(0, 0, W, H)) == layer_before)
    proj_after = projection(doc)
    bad, first = diff_outside(proj_before, proj_after, mask)
    check("fill: composite unchanged outside the selection", bad == 0, "%d pixels, first %s" % (bad, first))
    inside = changed_inside(proj_before, proj_after, mask)
    check("fill: composite changed inside the selection", inside > 0, "%d pixels" % inside)
    if DAEMON == "fake":
        px = bytes(node.pixelData(SEL[0] + SEL[2] // 2, SEL[1] + SEL[3] // 2, 1, 1))
        check("fill: stand-in FILL colour (magenta) arrives as BGRA", px == bytes((255, 0, 255, 255)), px.hex())


def test_fill_from_visible_image(doc, layer, controller, rec, logic):
    """Read from = visible image: the composite is sent; the result still lands in a new layer."""
    select_ellipse(doc)
    mask = full_mask(doc)
    proj_before = projection(doc)
    layer_before = bytes(layer.pixelData(0, 0, W, H))
    controller.settings = core.Settings(prompt="from the image", seed=21, steps=2, strength=0.7,
                                         source=core.SOURCE_IMAGE)
    node = run_job("fill (visible image)", controller, rec, controller.fill)
    if node is None:
        return
    check("fill (visible image): layer on the selection bounds", bounds(node) == SEL, bounds(node))
    check("fill (visible image): source layer unchanged", bytes(layer.pixelData(0, 0, W, H)) == layer_before)
    bad, first = diff_outside(proj_before, projection(doc), mask)
    check("fill (visible image): composite unchanged outside the selection", bad == 0, "%d pixels" % bad)
    node.setVisible(False)
    doc.refreshProjection()


def test_fill_without_selection(doc, layer, controller, rec, logic):
    doc.setSelection(None)
    layer_before = bytes(layer.pixelData(0, 0, W, H))
    controller.settings = core.Settings(prompt="oil painting", seed=11, steps=2, strength=0.5)
    node = run_job("img2img", controller, rec, controller.fill)
    if node is None:
        return
    check("img2img: layer covers the canvas", bounds(node) == (0, 0, W, H), bounds(node))
    check("img2img: source layer unchanged", bytes(layer.pixelData(0, 0, W, H)) == layer_before)
    check("img2img: layer name", node.name() == "livefill fill: oil painting [seed 11]", node.name())
    node.setVisible(False)
    doc.refreshProjection()


def test_generate(doc, layer, controller, rec, logic):
    select_ellipse(doc)
    mask = full_mask(doc)
    proj_before = projection(doc)
    controller.settings = core.Settings(prompt="a blue bird", seed=3, steps=2)
    node = run_job("generate", controller, rec, controller.generate)
    if node is None:
        return
    check("generate: layer on the selection bounds", bounds(node) == SEL, bounds(node))
    bad, first = diff_outside(proj_before, projection(doc), mask)
    check("generate: composite unchanged outside the selection", bad == 0, "%d pixels, first %s" % (bad, first))
    node.setVisible(False)
    doc.refreshProjection()


def test_expand(doc, layer, controller, rec, logic):
    doc.setSelection(None)
    layer_before = bytes(layer.pixelData(0, 0, W, H))
    proj_before = projection(doc)
    controller.settings = core.Settings(prompt="more landscape", seed=5, steps=2)
    sides = logic.Sides(amount=32, left=True, top=True, right=True, bottom=False)
    node = run_job("expand", controller, rec, lambda: controller.expand(sides))
    if node is None:
        return
    nw, nh = W + 64, H + 32
    check("expand: canvas grew", (doc.width(), doc.height()) == (nw, nh), (doc.width(), doc.height()))
    check("expand: source layer moved with the canvas", bounds(layer) == (32, 32, W, H), bounds(layer))
    check("expand: source layer pixels unchanged", bytes(layer.pixelData(32, 32, W, H)) == layer_before)
    check("expand: border layer covers the new canvas", bounds(node) == (0, 0, nw, nh), bounds(node))
    inner = bytes(node.pixelData(32, 32, W, H))
    check("expand: border layer transparent over the old canvas", inner == bytes(W * H * 4))
    border = bytes(node.pixelData(0, 0, nw, 32))
    check("expand: border layer opaque in the new strip", border[3::4] == b"\xff" * (nw * 32))
    doc.refreshProjection()
    doc.waitForDone()
    proj_after = bytes(doc.pixelData(32, 32, W, H))
    check("expand: old canvas area of the composite unchanged", proj_after == proj_before)
    check("expand: layer name", node.name().startswith("livefill expand: more landscape"), node.name())


def test_live(doc, layer, controller, rec, logic):
    select_ellipse(doc)
    controller.settings = core.Settings(prompt="live sketch", seed=9, steps=2, strength=0.6)
    live_done = lambda: [k for k, (kind, n) in rec.done.items() if kind == "live" and n is not None]  # noqa: E731
    before = len(live_done())
    controller.set_live(True)
    check("live: turned on", controller.live, rec.messages[-3:])
    ok = wait_until(lambda: len(live_done()) > before, JOB_TIMEOUT)
    check("live: first preview", ok, rec.messages[-5:])
    previews = [n for n in doc.rootNode().childNodes() if n.name() == core.PREVIEW_LAYER_NAME]
    check("live: one preview layer", len(previews) == 1, layer_names(doc))
    if previews:
        b = bounds(previews[0])
        check("live: preview on the selection bounds", b == SEL, b)
    # Paint on the watched layer: the watcher must notice and send again.
    n_before = len(live_done())
    x, y, w, h = SEL
    layer.setPixelData(bytes((0, 0, 0, 255)) * (10 * 10), x + 20, y + 15, 10, 10)
    ok = wait_until(lambda: len(live_done()) > n_before, JOB_TIMEOUT)
    check("live: change triggers a new preview", ok, rec.messages[-5:])
    previews = [n for n in doc.rootNode().childNodes() if n.name() == core.PREVIEW_LAYER_NAME]
    check("live: still one reused preview layer", len(previews) == 1, layer_names(doc))
    node = controller.apply_preview()
    check("live: apply keeps the preview as a layer", node is not None and node.name().startswith("livefill live: live sketch"),
          node.name() if node is not None else None)
    check("live: apply stops live mode", not controller.live)
    previews = [n for n in doc.rootNode().childNodes() if n.name() == core.PREVIEW_LAYER_NAME]
    check("live: no preview layer left after apply", len(previews) == 0, layer_names(doc))


def test_live_large_layer(doc, layer, controller, rec, logic):
    """A layer larger than LIVE_MAX_SIDE (lowered here so the test canvas counts as large) is sent
    scaled down; the preview still covers the whole canvas."""
    doc.setSelection(None)
    saved_limit, logic.LIVE_MAX_SIDE = logic.LIVE_MAX_SIDE, 96
    sent = []
    link_send = controller.link.send
    controller.link.send = lambda req: (sent.append(req), link_send(req))[1]
    try:
        controller.settings = core.Settings(prompt="live large", seed=4, steps=2, strength=0.6)
        live_done = lambda: [k for k, (kind, n) in rec.done.items() if kind == "live" and n is not None]  # noqa: E731
        before = len(live_done())
        controller.set_live(True)
        ok = wait_until(lambda: len(live_done()) > before, JOB_TIMEOUT)
        check("live large: preview arrives", ok, rec.messages[-5:])
        sizes = [(r.image.width, r.image.height) for r in sent if r.image is not None]
        check("live large: layer sent scaled down", sizes and all(sz == logic.live_send_size(W, H, 96) for sz in sizes),
              sizes)
        previews = [n for n in doc.rootNode().childNodes() if n.name() == core.PREVIEW_LAYER_NAME]
        check("live large: preview covers the canvas", len(previews) == 1 and bounds(previews[0]) == (0, 0, W, H),
              [bounds(n) for n in previews])
        node = controller.apply_preview()
        check("live large: applied as a full-size layer", node is not None and bounds(node) == (0, 0, W, H),
              bounds(node) if node is not None else None)
        if node is not None:
            node.setVisible(False)
            doc.refreshProjection()
    finally:
        logic.LIVE_MAX_SIDE = saved_limit
        controller.link.send = link_send
        if controller.live:
            controller.set_live(False)


def test_live_step_previews(doc, layer, controller, rec, logic):
    """When frames are slower than strokes (forced here), whole-layer live frames ask for step
    previews and show the first one before the frame's result is written."""
    from livefill_krita import controller as controller_module

    doc.setSelection(None)
    saved = controller_module.LIVE_STEP_PREVIEW_MS
    controller_module.LIVE_STEP_PREVIEW_MS = -1.0
    controller._live_frame_ms = 0.0
    sent = []
    link_send = controller.link.send
    controller.link.send = lambda req: (sent.append(req), link_send(req))[1]
    try:
        controller.settings = core.Settings(prompt="live steps", seed=6, steps=3, strength=0.7)
        controller.timeline.clear()
        controller.set_live(True)
        ok = wait_until(lambda: any(f.outcome == "shown" for f in controller.timeline.frames), JOB_TIMEOUT)
        check("live steps: a frame is shown", ok, rec.messages[-5:])
        asked = [r for r in sent if getattr(r, "image", None) is not None]
        check("live steps: the frame asked for step previews", asked and all(r.stream_previews for r in asked),
              [r.stream_previews for r in asked])
        frames = [f for f in controller.timeline.frames if f.outcome == "shown"]
        check("live steps: a step preview reached the layer before the frame's result",
              frames and frames[0].step_shown and frames[0].step_shown <= frames[0].shown,
              [(f.step_shown, f.result, f.shown) for f in frames])
    finally:
        controller_module.LIVE_STEP_PREVIEW_MS = saved
        controller._live_frame_ms = None
        controller.link.send = link_send
        if controller.live:
            controller.set_live(False)
        for n in doc.rootNode().childNodes():
            if n.name() == core.PREVIEW_LAYER_NAME:
                n.remove()


def test_errors(doc, layer, controller, rec, logic):
    if DAEMON != "fake":
        return
    select_ellipse(doc)
    for prompt, needle in (("__no_model__", "no model"), ("__oom__", "Out of memory")):
        controller.settings = core.Settings(prompt=prompt, seed=1, steps=1)
        rid = controller.fill()
        wait_until(lambda: rid in rec.done, 30)
        check("errors: %s explained" % prompt, any(needle.lower() in m.lower() for m in rec.messages[-3:]),
              rec.messages[-3:])


def test_cancel(doc, layer, controller, rec, logic):
    if DAEMON != "fake":
        return
    select_ellipse(doc)
    names = layer_names(doc)
    progress = []
    controller.progress.connect(lambda step, total: progress.append((step, total)))
    controller.settings = core.Settings(prompt="__slow__", seed=1, steps=4)
    rid = controller.fill()
    busy = wait_until(lambda: any(s > 0 for s, _ in progress), 10)
    check("cancel: progress reported while running", busy, progress[-3:])
    t0 = time.monotonic()
    controller.cancel()
    ended = wait_until(lambda: rid in rec.done, 10)
    check("cancel: job ends quickly", ended and time.monotonic() - t0 < 5, rec.messages[-3:])
    check("cancel: no layer added", layer_names(doc) == names, layer_names(doc))
    check("cancel: says so", any("cancel" in m.lower() for m in rec.messages[-2:]), rec.messages[-2:])
    check("cancel: progress bar reset", progress and progress[-1] == (0, 0), progress[-2:])


def recorded(prompt):
    """What the stand-in got for requests with ``prompt`` ($LIVEFILL_STANDIN_RECORD, one JSON line
    per generate request)."""
    path = os.environ.get("LIVEFILL_STANDIN_RECORD", "")
    if not path or not os.path.exists(path):
        return []
    with open(path) as f:
        return [r for r in (json.loads(line) for line in f if line.strip()) if r["prompt"] == prompt]


def test_status_names_the_model(doc, layer, controller, rec, logic):
    """Every daemon: the status line after a result names the model that produced it."""
    select_ellipse(doc)
    controller.settings = core.Settings(prompt="which model", seed=12, steps=1)
    node = run_job("model in status", controller, rec, controller.fill)
    served = controller.link.hello.model if DAEMON == "real" else "sd-inpaint"
    check("model in status: the line names the model that served the fill",
          node is not None and ("model %s)" % served) in rec.messages[-1], rec.messages[-3:])
    if node is not None:
        node.setVisible(False)
        doc.refreshProjection()


def test_models(doc, layer, controller, rec, logic):
    """Against the stand-in's several models (LIVEFILL_STANDIN_MODELS=several): the list arrives
    after connecting, the chosen model (or "" for Automatic) is sent with every action, loading
    and broken models are reported, an unknown one falls back to Automatic."""
    if DAEMON != "fake":
        return
    if not os.environ.get("LIVEFILL_STANDIN_RECORD"):
        check("models: the run records the stand-in's requests", False, "LIVEFILL_STANDIN_RECORD unset")
        return
    got = wait_until(lambda: controller.models is not None, 30)
    names = [m.name for m in controller.models or []]
    check("models: ListModels answered after connecting", got and names ==
          ["sd15-plain", "sd-inpaint", "lcm-dreamshaper", "dreamshaper-8", "broken-model"], names)
    seen_lists = []
    controller.models_changed.connect(seen_lists.append)
    fallbacks = []
    controller.model_fallback.connect(fallbacks.append)
    made = []

    def run(action, prompt, model, start):
        controller.settings = core.Settings(prompt=prompt, seed=31, steps=1, model=model)
        node = run_job("models: " + action, controller, rec, start)
        if node is not None:
            made.append(node)
        sent = recorded(prompt)
        check("models: %s sent model %r" % (action, model), [r["model"] for r in sent] == [model], sent)
        return node

    select_ellipse(doc)
    run("fill, Automatic", "auto fill", "", controller.fill)
    check("models: Automatic fill served by the inpainting model (status line)",
          "model sd-inpaint)" in rec.messages[-1], rec.messages[-2:])
    n = len(rec.messages)
    run("fill, chosen", "chosen fill", "dreamshaper-8", controller.fill)
    check("models: status names the chosen model", "model dreamshaper-8)" in rec.messages[-1], rec.messages[-1:])
    check("models: the status line said the model was loading (first use)",
          any(m.startswith("Loading model dreamshaper-8: ") for m in rec.messages[n:]), rec.messages[n:])
    ok = wait_until(lambda: any(any(m.name == "dreamshaper-8" and m.loaded for m in ms) for ms in seen_lists), 10)
    check("models: the list is asked again once a model got loaded", ok, len(seen_lists))
    run("generate, chosen", "chosen generate", "sd15-plain", controller.generate)
    doc.setSelection(None)
    run("expand, chosen", "chosen expand", "sd-inpaint",
        lambda: controller.expand(logic.Sides(amount=8, left=False, top=False, right=False, bottom=True)))
    # Live: its frames carry the choice too.
    controller.settings = core.Settings(prompt="chosen live", seed=31, steps=1, strength=0.5, model="sd15-plain")
    done_live = lambda: [k for k, (kind, nd) in rec.done.items() if kind == "live" and nd is not None]  # noqa: E731
    before = len(done_live())
    controller.set_live(True)
    ok = wait_until(lambda: len(done_live()) > before, JOB_TIMEOUT)
    controller.set_live(False)
    sent = recorded("chosen live")
    check("models: live frames sent the chosen model",
          ok and sent and all(r["model"] == "sd15-plain" and r["live"] for r in sent), sent)
    check("models: the live status names the model", any("model sd15-plain)" in m for m in rec.messages[-4:]),
          rec.messages[-4:])
    for node in doc.rootNode().childNodes():
        if node.name() == core.PREVIEW_LAYER_NAME:
            node.remove()
    # A broken model: its load error is shown, and the list is asked again (it lists the error).
    select_ellipse(doc)
    seen_lists.clear()
    controller.settings = core.Settings(prompt="broken fill", seed=31, steps=1, model="broken-model")
    rid = controller.fill()
    wait_until(lambda: rid in rec.done, 30)
    text = rec.messages[-1] if rec.messages else ""
    check("models: a broken model's load error is shown",
          "\u201cbroken-model\u201d could not be loaded" in text and "unet/model.onnx is truncated" in text, text)
    check("models: a broken model stays chosen", controller.settings.model == "broken-model", controller.settings)
    ok = wait_until(lambda: any(any(m.name == "broken-model" and m.load_error for m in ms) for ms in seen_lists), 10)
    check("models: after the failure the list carries its load_error", ok, seen_lists[-1:])
    # A model the daemon does not offer (a remembered choice gone since): back to Automatic.
    controller.settings = core.Settings(prompt="gone fill", seed=31, steps=1, model="retired-model")
    rid = controller.fill()
    wait_until(lambda: rid in rec.done, 30)
    text = rec.messages[-1] if rec.messages else ""
    check("models: an unknown model is explained", "no model named \u201cretired-model\u201d" in text, text)
    check("models: ... and the choice falls back to Automatic",
          controller.settings.model == "" and fallbacks and core.BACK_TO_AUTOMATIC in fallbacks[-1],
          (controller.settings.model, fallbacks))
    for node in made:
        node.setVisible(False)
    doc.refreshProjection()


def test_models_real(doc, layer, controller, rec, logic):
    """Against a real ``livefill serve --model tiny-sd --model tiny-sd-inpaint``
    (LIVEFILL_TEST_SEVERAL=1): the daemon's own list with its roles, Automatic picking the
    inpainting model for Fill and the plain one for Live, a chosen model honoured, the first use
    of a model not yet resident reported as loading, residency shown in the picker's labels."""
    if DAEMON != "real" or os.environ.get("LIVEFILL_TEST_SEVERAL") != "1":
        return
    controller.link.connect_daemon(start=False)  # the list comes with the connection
    got = wait_until(lambda: controller.models is not None, 60)
    models = {m.name: m for m in controller.models or []}
    check("real models: ListModels lists both fixtures", got and sorted(models) == ["tiny-sd", "tiny-sd-inpaint"],
          sorted(models))
    if sorted(models) != ["tiny-sd", "tiny-sd-inpaint"]:
        return
    import livefill_krita.livefill_protocol as proto

    check("real models: the first --model is the default and serves Live; the 9-channel one inpaints",
          proto.ModelRole.DEFAULT in models["tiny-sd"].roles and proto.ModelRole.LIVE in models["tiny-sd"].roles
          and models["tiny-sd-inpaint"].roles == [proto.ModelRole.INPAINT]
          and models["tiny-sd-inpaint"].unet_in_channels == 9,
          {n: (m.roles, m.unet_in_channels) for n, m in models.items()})
    check("real models: only the default is resident at start",
          models["tiny-sd"].loaded and not models["tiny-sd-inpaint"].loaded,
          {n: m.loaded for n, m in models.items()})
    labels = [e.label for e in core.model_entries(controller.models, core.AUTOMATIC, logic.KRITA)]
    check("real models: the picker's Automatic entry names each action's model",
          labels and labels[0].startswith("Automatic (fill: tiny-sd-inpaint"), labels)
    lists = []
    controller.models_changed.connect(lists.append)
    made = []

    def fill(prompt, model):
        select_ellipse(doc)
        controller.settings = core.Settings(prompt=prompt, seed=21, steps=2, strength=0.8, model=model)
        n = len(rec.messages)
        node = run_job("real models: " + prompt, controller, rec, controller.fill)
        if node is not None:
            made.append(node)
        return node, rec.messages[n:]

    node, said = fill("automatic fill", core.AUTOMATIC)
    check("real models: Automatic Fill is served by the inpainting model",
          node is not None and "model tiny-sd-inpaint)" in said[-1], said[-2:])
    check("real models: its first use was reported as loading",
          any(m.startswith("Loading model tiny-sd-inpaint: ") for m in said), said)
    ok = wait_until(lambda: any(any(m.name == "tiny-sd-inpaint" and m.loaded for m in ms) for ms in lists), 20)
    check("real models: the list is asked again and shows it resident", ok, lists[-1:])
    node, said = fill("chosen fill", "tiny-sd")
    check("real models: a chosen model serves the Fill", node is not None and "model tiny-sd)" in said[-1], said[-2:])
    controller.settings = core.Settings(prompt="automatic live", seed=21, steps=2, strength=0.6)
    live_done = lambda: [k for k, (kind, n) in rec.done.items() if kind == "live" and n is not None]  # noqa: E731
    before, n = len(live_done()), len(rec.messages)
    controller.set_live(True)
    ok = wait_until(lambda: len(live_done()) > before, JOB_TIMEOUT)
    controller.set_live(False)
    check("real models: Automatic Live is served by the plain model",
          ok and any("model tiny-sd)" in m for m in rec.messages[n:]), rec.messages[n:][-3:])
    for child in doc.rootNode().childNodes():
        if child.name() == core.PREVIEW_LAYER_NAME:
            child.remove()
    for node in made:
        node.setVisible(False)
    doc.refreshProjection()


def test_reconnect(doc, layer, controller, rec, logic):
    """The daemon goes away; the next Fill must bring it back (plugin restarts it) and work."""
    lf = controller.link
    conn = lf.conn
    if not check("reconnect: connected before", conn is not None and lf.is_connected, lf.state):
        return
    restart = os.environ.get("LIVEFILL_TEST_RESTART", "")
    import livefill_krita.livefill_protocol as proto

    lists = []
    controller.models_changed.connect(lists.append)
    conn.send(proto.Shutdown())
    gone = wait_until(lambda: not lf.is_connected, 60)
    check("reconnect: noticed the daemon went away", gone, lf.state)
    if restart:
        # External restart: the plugin must reconnect by itself.
        time.sleep(0.5)
        subprocess.Popen(restart, shell=True, start_new_session=True)
        back = wait_until(lambda: lf.is_connected, 180)
        check("reconnect: reconnected after an external restart", back, lf.last_error)
        check("reconnect: the model list is asked for again on the new connection",
              wait_until(lambda: len(lists) > 0, 30), len(lists))
        conn2 = lf.conn
        if back:
            conn2.send(proto.Shutdown())
            wait_until(lambda: not lf.is_connected, 60)
    # No daemon at all now: a button press starts it (LIVEFILL_BIN / fake start command).
    select_ellipse(doc)
    controller.settings = core.Settings(prompt="after restart", seed=2, steps=2)
    node = run_job("reconnect: fill after restart", controller, rec, controller.fill)
    check("reconnect: result placed", node is not None and bounds(node) == SEL,
          bounds(node) if node is not None else rec.messages[-5:])


def daemon_pid(controller):
    """The pid of the process at the other end of the plugin's own connection (Linux
    SO_PEERCRED): the daemon it talks to, however it was started."""
    conn = controller.link.conn
    creds = conn._sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[0]


def document_state(doc):
    """The canvas size and every layer's name, type, bounds and a checksum of its pixels (the
    global selection's mask node, which Krita adds with a selection, is not a layer)."""
    w, h = doc.width(), doc.height()
    return (w, h), [(n.name(), n.type(), bounds(n), hashlib.sha256(bytes(n.pixelData(0, 0, w, h))).hexdigest())
                    for n in doc.rootNode().childNodes() if n.type() != "selectionmask"]


def test_daemon_killed(doc, layer, controller, rec, logic):
    """The daemon is killed (SIGKILL) while it works on a long Generate: the job ends, the message
    is the shared core's sentence (not an errno), the document is exactly as before (no result
    layer, no empty one), and the next Fill starts the daemon again (auto-start) and places its
    layer."""
    lf = controller.link
    lf.connect_daemon(start=True)  # (connected already after the tests before this one)
    if not check("killed: connected before", wait_until(lambda: lf.is_connected, 180), lf.state):
        return
    pid = daemon_pid(controller)
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            cmdline = f.read().decode("utf-8", "replace").split("\0")
    except OSError as e:
        cmdline = [str(e)]
    if not check("killed: the connection's peer is the daemon on the test's socket",
                 "serve" in cmdline and os.environ.get("LIVEFILL_SOCKET", "?") in cmdline, (pid, cmdline)):
        return
    doc.setSelection(None)
    before = document_state(doc)
    painted = hashlib.sha256(bytes(layer.pixelData(*bounds(layer)))).hexdigest()
    states, progress = [], []
    on_state = lambda state, text: states.append(text)  # noqa: E731
    on_progress = lambda step, total: progress.append((step, total))  # noqa: E731
    controller.connection_changed.connect(on_state)
    controller.progress.connect(on_progress)
    try:
        # Long enough to be killed mid-way: 50 steps over the whole canvas on the tiny model
        # (seconds), or the stand-in's slow prompt (100 steps of 0.1 s).
        prompt = "__slow__" if DAEMON == "fake" else "a long job"
        controller.settings = core.Settings(prompt=prompt, seed=13, steps=50)
        rid = controller.generate()
        if not check("killed: the long Generate started", rid is not None, rec.messages[-3:]):
            return
        running = wait_until(lambda: any(step >= 1 for step, _ in progress) or rid in rec.done, JOB_TIMEOUT)
        if not check("killed: the daemon is working on it (a step reported, not finished)",
                     running and rid not in rec.done, (progress[-3:], rec.messages[-3:])):
            return
        os.kill(pid, signal.SIGKILL)
        ended = wait_until(lambda: rid in rec.done, 60)
        check("killed: the job ends (no hang)", ended, rec.messages[-3:])
        check("killed: no layer from the job", ended and rec.done[rid][1] is None, rec.done.get(rid))
        text = rec.messages[-1] if rec.messages else ""
        check("killed: the message says the daemon stopped while working on the Generate",
              text.startswith("The livefill daemon stopped while working on the Generate request: it crashed or "
                              "was killed") and "Nothing was added to your image." in text
              and "The next Fill, Expand, Generate or Live starts it again." in text, rec.messages[-3:])
        check("killed: ... in words, not an errno", "Errno" not in text and "reset by peer" not in text, text)
        check("killed: the status line says the daemon stopped",
              any(t.startswith("The livefill daemon stopped: it crashed or was killed") for t in states), states)
        check("killed: the progress bar is reset", progress and progress[-1] == (0, 0), progress[-2:])
        check("killed: every layer, its pixels and the canvas are as before", document_state(doc) == before,
              (before, document_state(doc)))
        check("killed: the painted layer's pixels are unchanged (checksum)",
              hashlib.sha256(bytes(layer.pixelData(*bounds(layer)))).hexdigest() == painted)
        check("killed: no layer of the job left behind (empty or half-written)",
              core.layer_name(logic.KIND_GENERATE, prompt, 13) not in layer_names(doc)
              and core.PREVIEW_LAYER_NAME not in layer_names(doc), layer_names(doc))
    finally:
        controller.connection_changed.disconnect(on_state)
        controller.progress.disconnect(on_progress)
    # The next action starts the daemon again (LIVEFILL_BIN) and works.
    select_ellipse(doc)
    controller.settings = core.Settings(prompt="after the crash", seed=14, steps=2)
    node = run_job("killed: the next Fill", controller, rec, controller.fill)
    check("killed: the next Fill placed its layer on the selection", node is not None and bounds(node) == SEL,
          bounds(node) if node is not None else rec.messages[-5:])
    check("killed: ... served by a daemon started again", lf.is_connected and daemon_pid(controller) != pid,
          lf.state)
    (size, layers) = document_state(doc)
    check("killed: ... and the layers from before are untouched",
          size == before[0] and [entry for entry in layers if node is None or entry[0] != node.name()] == before[1],
          (before, (size, layers)))
    if node is not None:
        node.setVisible(False)
        doc.refreshProjection()


def test_no_daemon(doc, layer, controller, rec, logic):
    """No daemon and no livefill executable: a clear message, no hanging job."""
    from livefill_krita.controller import Controller

    c2 = Controller()
    c2.configure("/nonexistent/livefill", "", os.path.join(os.path.dirname(RESULTS), "nobody.sock"))
    c2.target_provider = lambda: (doc, layer)
    rec2 = Recorder(c2)
    c2.settings = core.Settings(prompt="nothing", seed=1, steps=1)
    rid = c2.fill()
    wait_until(lambda: rid in rec2.done, 30)
    check("no daemon: job ends", rid in rec2.done, rec2.messages)
    check("no daemon: message says it could not be started",
          any("could not be started" in m for m in rec2.messages), rec2.messages)
    c2.shutdown()


def test_krita_scaler():
    from livefill_krita import krita_document as kd

    src = bytes((10, 20, 30, 255)) * (4 * 4)
    out = kd.scale_rgba(src, 4, 4, 8, 6)
    check("qt scaler: size and colour", len(out) == 8 * 6 * 4 and out[:4] == bytes((10, 20, 30, 255)), out[:8].hex())


def test_banded_live_pixels():
    """Live frames are read, scaled and written in bands (PyQt holds the GIL in Qt calls): the
    bands must give the same pixels as scaling the whole image at once, or the preview shows seams.
    Bands are made small here so every image has many; 200x150 -> 96x72 has no short exact run
    of rows at that band size, so it takes the approximate banding (close, not equal)."""
    from krita import Krita
    from PyQt5.QtCore import Qt
    from PyQt5.QtGui import QImage

    from livefill_krita import krita_document as kd

    saved = kd.BAND_BYTES
    kd.BAND_BYTES = 4096
    try:
        for (big_w, big_h, small_w, small_h) in ((200, 150, 96, 72), (300, 240, 100, 80), (150, 450, 40, 120)):
            doc = Krita.instance().createDocument(big_w, big_h, "bands", "RGBA", "U8", "", 72.0)
            node = doc.createNode("l", "paintlayer")
            doc.rootNode().addChildNode(node, None)
            stripes = b"".join(bytes(((x * 37) % 256, (x * 11 + y) % 256, 90, 255) if (y // 7) % 2 else (0, 0, 0, 255))
                               for y in range(big_h) for x in range(big_w))
            node.setPixelData(stripes, 0, 0, big_w, big_h)
            got = kd.read_live_frame(doc, node, core.Rect(0, 0, big_w, big_h), (small_w, small_h))
            ref = kd._qimage_bytes(QImage(stripes, big_w, big_h, big_w * 4, QImage.Format_ARGB32).scaled(
                small_w, small_h, Qt.IgnoreAspectRatio, Qt.SmoothTransformation).convertToFormat(QImage.Format_RGBA8888))
            exact = kd._output_band_rows(big_w, big_h, small_h) % (small_h // math.gcd(big_h, small_h)) == 0
            mean_diff = sum(abs(a - b) for a, b in zip(got, ref)) / float(len(ref))
            if exact:
                check("banded read %dx%d -> %dx%d equals one whole-image scale" % (big_w, big_h, small_w, small_h),
                      got == ref, sum(a != b for a, b in zip(got, ref)))
            else:
                check("approximate banded read %dx%d -> %dx%d is close to one whole-image scale" % (
                    big_w, big_h, small_w, small_h), len(got) == len(ref) and mean_diff < 3.0, mean_diff)
            kd.write_scaled(node, core.Rect(0, 0, big_w, big_h), got, small_w, small_h)
            banded = bytes(node.pixelData(0, 0, big_w, big_h))
            kd.BAND_BYTES = 1 << 40
            kd.write_scaled(node, core.Rect(0, 0, big_w, big_h), got, small_w, small_h)
            whole = bytes(node.pixelData(0, 0, big_w, big_h))
            kd.BAND_BYTES = 4096
            check("banded write %dx%d -> %dx%d equals one whole-image draw" % (small_w, small_h, big_w, big_h),
                  banded == whole, sum(a != b for a, b in zip(banded, whole)))
            doc.setModified(False)
            doc.close()
    finally:
        kd.BAND_BYTES = saved


def stop_daemon(controller):
    """Asks the daemon the plugin started (or reconnected to) to exit."""
    import livefill_krita.livefill_protocol as proto

    conn = controller.link.conn
    if conn is not None and not conn.is_closed:
        try:
            conn.send(proto.Shutdown())
        except Exception:
            pass
        wait_until(lambda: conn.is_closed, 10)


def _excepthook(kind, value, tb):
    # Krita's own hook opens a modal dialog, which would hang a headless run: record instead.
    check("no uncaught exception in a Qt slot", False, "".join(traceback.format_exception(kind, value, tb)))


def main(*_args):
    import sys

    sys.excepthook = _excepthook
    try:
        from krita import Krita

        state["krita_version"] = Krita.instance().version()
        save()
        from livefill_krita import logic
        from livefill_krita.controller import Controller

        test_krita_scaler()
        test_banded_live_pixels()
        doc, layer = make_document()
        controller = Controller()
        controller.configure(os.environ.get("LIVEFILL_BIN", ""), os.environ.get("LIVEFILL_MODEL", ""),
                             os.environ.get("LIVEFILL_SOCKET", ""))
        controller.target_provider = lambda: (doc, layer)
        rec = Recorder(controller)
        tests = (test_fill, test_fill_from_visible_image, test_fill_without_selection, test_generate, test_live,
                 test_live_large_layer, test_live_step_previews, test_errors, test_cancel, test_expand,
                 test_status_names_the_model, test_models, test_models_real, test_reconnect, test_daemon_killed, test_no_daemon)
        only = [name.strip() for name in os.environ.get("LIVEFILL_KRITA_TESTS", "").split(",") if name.strip()]
        if only:
            tests = tuple(t for t in tests if t.__name__ in only)
            state["only"] = [t.__name__ for t in tests]
        for test in tests:
            t0 = time.monotonic()
            try:
                test(doc, layer, controller, rec, logic)
            except Exception:
                check(test.__name__ + ": no exception", False, traceback.format_exc())
            state["timings"][test.__name__] = round(time.monotonic() - t0, 3)
            save()
        state["messages"] = rec.messages
        stop_daemon(controller)
        controller.shutdown()
        doc.setModified(False)
        doc.close()
    except Exception:
        check("harness: no exception", False, traceback.format_exc())
    state["done"] = True
    save()
