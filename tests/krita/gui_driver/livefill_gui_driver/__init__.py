"""Test-only Krita plugin: drives the livefill docker in a real Krita window under Xvfb.

Why this exists: kritarunner has no main window, so the docker itself (widgets, button clicks,
the plugin being found and enabled by Krita from its pykrita folder) can only be exercised in the
real GUI. Installed next to livefill_krita by run_krita_tests.sh, it opens a document, shows the
livefill docker, clicks Fill and Expand, checks Undo reverts the canvas resize, turns Live on and
paints real brush strokes on the canvas widget (mouse events through Krita's input manager, as a
mouse would) to check that the strokes land in the artist's layer, never in the preview, and that
the current layer stays the artist's; then writes $LIVEFILL_GUI_RESULTS and waits for the runner
to take a screenshot ($LIVEFILL_GUI_SHOT_DONE) before quitting Krita.

``$LIVEFILL_GUI_PHASE`` picks what it drives: ``main`` (the above, with the picker showing the
daemon's model), ``models`` (against the stand-in's several models, recording what it got in
``$LIVEFILL_STANDIN_RECORD``: the picker's labels, Automatic and a chosen model on the wire and in
the status line, a broken model's error, a screenshot with the picker open) and ``restart``
(Krita started again on the same profile: the chosen model is still chosen and sent).
"""

import json
import os
import time
import traceback

import zlib

from krita import Extension, Krita, Selection
from PyQt5.QtCore import QEvent, QPoint, Qt, QTimer
from PyQt5.QtGui import QMouseEvent
from PyQt5.QtWidgets import QApplication, QWidget

CANVAS_CLASSES = ("KisOpenGLCanvas2", "KisQPainterCanvas")
LIVE_FRAMES = 10

PHASE = os.environ.get("LIVEFILL_GUI_PHASE", "main")
#: What the models phase leaves chosen, for the restart phase to find.
REMEMBERED_MODEL = "dreamshaper-8"
#: The stand-in's SEVERAL models as the picker must label them (written out here, not taken from
#: the plugin core, so a wrong label there shows).
SEVERAL_LABELS = [
    "Automatic (fill: sd-inpaint, live: lcm-dreamshaper, generate: sd15-plain)",
    "sd15-plain (plain, fp16, resident)",
    "sd-inpaint (inpainting, fp16, not loaded)",
    "lcm-dreamshaper (LCM, fp32, not loaded)",
    "dreamshaper-8 (plain, fp16, not loaded)",
    "broken-model (plain, fp32, not loaded)",
]
RESULTS = os.environ.get("LIVEFILL_GUI_RESULTS", "")
SHOT_READY = os.environ.get("LIVEFILL_GUI_SHOT_READY", "")
SHOT_DONE = os.environ.get("LIVEFILL_GUI_SHOT_DONE", "")
W, H = 640, 420

state = {"checks": [], "done": False}


def save():
    if RESULTS:
        with open(RESULTS + ".tmp", "w") as f:
            json.dump(state, f, indent=1, default=str)
        os.replace(RESULTS + ".tmp", RESULTS)


def check(name, ok, detail=""):
    state["checks"].append({"name": name, "ok": bool(ok), "detail": str(detail)[:2000]})
    save()
    return ok


def scene():
    """A simple BGRA landscape: sky gradient, hills, sun."""
    out = bytearray(W * H * 4)
    for y in range(H):
        for x in range(W):
            i = (y * W + x) * 4
            hill = H * 0.62 + 30 * ((x / 97.0) % 2 - 1) ** 2 * (1 if (x // 97) % 2 else -1)
            if (x - 470) ** 2 + (y - 110) ** 2 < 45 ** 2:
                b, g, r = 80, 210, 250
            elif y > hill:
                b, g, r = 40, 120 + (y * 60 // H), 50
            else:
                t = y / H
                b, g, r = 235, int(170 + 60 * t), int(120 + 90 * t)
            out[i:i + 4] = bytes((b, g, r, 255))
    return bytes(out)


class Driver(Extension):
    def __init__(self, parent):
        super().__init__(parent)
        self.step_timer = None
        self.deadline = 0.0

    def setup(self):
        Krita.instance().notifier().windowCreated.connect(lambda: QTimer.singleShot(2000, self.start))

    def createActions(self, window):
        pass

    # ---- helpers -------------------------------------------------------------------------

    def docker(self):
        for dock in Krita.instance().dockers():
            if dock.objectName() == "livefill_docker":
                return dock
        return None

    def wait(self, pred, then, timeout=180.0):
        end = time.monotonic() + timeout

        def poll():
            try:
                if pred():
                    then(True)
                elif time.monotonic() > end:
                    then(False)
                else:
                    QTimer.singleShot(100, poll)
            except Exception:
                self.fail()

        QTimer.singleShot(100, poll)

    def fail(self):
        check("driver: no exception", False, traceback.format_exc())
        self.finish()

    # ---- steps ---------------------------------------------------------------------------

    def picker_labels(self):
        picker = self.dock.model_picker
        return [picker.itemText(i) for i in range(picker.count())]

    def recorded(self, prompt):
        path = os.environ.get("LIVEFILL_STANDIN_RECORD", "")
        if not path or not os.path.exists(path):
            return []
        with open(path) as f:
            return [r for r in (json.loads(line) for line in f if line.strip()) if r["prompt"] == prompt]

    def choose_model(self, name):
        """Picks ``name`` in the docker's Model list as a click on it would (index + activated)."""
        picker = self.dock.model_picker
        index = picker.findData(name)
        picker.setCurrentIndex(index)
        picker.activated.emit(index)
        return index

    def open_document(self):
        app = Krita.instance()
        window = app.activeWindow()
        check("gui: main window exists", window is not None)
        qwin = window.qwindow()
        qwin.setGeometry(0, 0, 1600, 1000)  # Xvfb has no window manager to maximise it
        doc = app.createDocument(W, H, "livefill demo", "RGBA", "U8", "", 300.0)
        layer = doc.createNode("sketch", "paintlayer")
        doc.rootNode().addChildNode(layer, None)
        layer.setPixelData(scene(), 0, 0, W, H)
        window.addView(doc)
        doc.setActiveNode(layer)
        doc.refreshProjection()
        self.doc, self.layer = doc, layer
        dock = self.docker()
        check("gui: livefill docker registered (plugin enabled and loaded)", dock is not None,
              [d.objectName() for d in app.dockers()])
        if dock is None:
            return None
        # Room for the docker in the screenshot: keep only Layers beside it on the right.
        state["dockers"] = [d.objectName() for d in app.dockers()]
        for other in app.dockers():
            if (other.objectName() not in ("KisLayerBox", "livefill_docker")
                    and qwin.dockWidgetArea(other) == Qt.RightDockWidgetArea):
                other.hide()
        dock.show()
        dock.raise_()
        self.dock = dock
        return dock

    def track_jobs(self):
        """``self.done``: request id -> (kind, node) of every job that ended."""
        self.done = {}
        self.dock.controller.job_done.connect(lambda rid, kind, node: self.done.__setitem__(rid, (kind, node)))

    def fill_and_then(self, prompt, then):
        """Clicks Fill with ``prompt`` over a selection; ``then(node)`` once the job ended."""
        sel = Selection()
        sel.select(100, 60, 120, 90, 255)
        self.doc.setSelection(sel)
        self.dock.prompt.setPlainText(prompt)
        before = set(self.done)
        self.dock.fill_button.click()

        def finished():
            new = [rid for rid in self.done if rid not in before]
            return new[0] if new else None

        self.wait(lambda: finished() is not None,
                  lambda ok: then(self.done[finished()][1] if ok else None), 60)

    # ---- models phase: the picker against the stand-in's several models -------------------

    def start_models(self):
        try:
            if self.open_document() is None:
                return self.finish()
            self.track_jobs()
            self.dock.steps.setValue(1)
            self.dock.connect_button.click()  # connect (start the stand-in) to fill the picker
            self.wait(lambda: self.dock.model_picker.count() == len(SEVERAL_LABELS), self.models_listed, 60)
        except Exception:
            self.fail()

    def models_listed(self, ok):
        try:
            labels = self.picker_labels()
            check("gui models: the picker lists Automatic and the daemon's models, with kind, dtype and residency",
                  ok and labels == SEVERAL_LABELS, labels)
            check("gui models: Automatic is chosen on a fresh profile", self.dock.model_picker.currentIndex() == 0,
                  self.dock.model_picker.currentText())
            self.fill_and_then("gui automatic", self.after_automatic)
        except Exception:
            self.fail()

    def after_automatic(self, node):
        try:
            sent = [r["model"] for r in self.recorded("gui automatic")]
            check("gui models: Automatic sends an empty model name", node is not None and sent == [""], sent)
            check("gui models: the status line names the model that served it (the inpainting one)",
                  "model sd-inpaint)" in self.dock.message.text(), self.dock.message.text())
            self.choose_model("broken-model")
            self.fill_and_then("gui broken", self.after_broken)
        except Exception:
            self.fail()

    def after_broken(self, node):
        try:
            text = self.dock.message.text()
            check("gui models: a broken model's load error is shown in the docker",
                  node is None and "could not be loaded" in text and "unet/model.onnx is truncated" in text, text)
            self.wait(lambda: any("broken-model (plain, fp32, failed: " in t for t in self.picker_labels()),
                      self.after_broken_listed, 10)
        except Exception:
            self.fail()

    def after_broken_listed(self, ok):
        try:
            check("gui models: the picker marks the broken model with its load error", ok, self.picker_labels())
            self.choose_model(REMEMBERED_MODEL)
            self.fill_and_then("gui chosen", self.after_chosen)
        except Exception:
            self.fail()

    def after_chosen(self, node):
        try:
            sent = [r["model"] for r in self.recorded("gui chosen")]
            check("gui models: the chosen model is sent", node is not None and sent == [REMEMBERED_MODEL], sent)
            check("gui models: the status line names the chosen model",
                  ("model %s)" % REMEMBERED_MODEL) in self.dock.message.text(), self.dock.message.text())
            self.wait(lambda: ("%s (plain, fp16, resident)" % REMEMBERED_MODEL) in self.picker_labels(),
                      self.after_resident, 10)
        except Exception:
            self.fail()

    def after_resident(self, ok):
        try:
            check("gui models: the picker shows the chosen model resident after its first job", ok,
                  self.picker_labels())
            # Live on the chosen plain model: the docker warns, above each live status line.
            self.doc.setSelection(None)
            self.doc.setActiveNode(self.layer)  # the fills' result layers became current
            QTimer.singleShot(500, self.start_plain_live)
        except Exception:
            self.fail()

    def start_plain_live(self):
        try:
            self.live_frames = []
            self.dock.controller.job_done.connect(
                lambda rid, kind, node: kind == "live" and node is not None and self.live_frames.append(rid))
            self.dock.live_button.setChecked(True)
            self.wait(lambda: ("model %s)" % REMEMBERED_MODEL) in self.dock.message.text(), self.after_plain_live, 60)
        except Exception:
            self.fail()

    def after_plain_live(self, ok):
        try:
            lines = self.dock.message.text().split("\n")
            check("gui models: Live on a plain model warns above its status line",
                  ok and len(lines) == 2 and "not an LCM model" in lines[0] and "Live preview updated" in lines[1],
                  lines)
            if RESULTS:  # what the artist sees: the docker with the warning (beside the results)
                self.dock.widget().grab().save(os.path.join(os.path.dirname(RESULTS), "docker-live-warning.png"))
            self.choose_model("lcm-dreamshaper")  # picked while Live runs
            self.wait(lambda: "model lcm-dreamshaper)" in self.dock.message.text(), self.after_lcm_live, 60)
        except Exception:
            self.fail()

    def after_lcm_live(self, ok):
        try:
            text = self.dock.message.text()
            check("gui models: an LCM model picked while Live runs clears the warning",
                  ok and "not an LCM model" not in text and "Live preview updated" in text, text)
            self.dock.live_button.setChecked(False)
            self.choose_model(REMEMBERED_MODEL)  # the restart phase expects it remembered
            check("gui models: with Live off, picking a plain model again warns of nothing",
                  "not an LCM model" not in self.dock.message.text(), self.dock.message.text())
            preview = self.preview_node()
            if preview is not None:
                preview.remove()
            self.dock.model_picker.showPopup()  # for the screenshot
            QTimer.singleShot(700, self.ready_for_screenshot)
        except Exception:
            self.fail()

    # ---- restart phase: Krita again on the same profile --------------------------------------

    def start_restart(self):
        try:
            if self.open_document() is None:
                return self.finish()
            self.track_jobs()
            picker = self.dock.model_picker
            check("gui restart: the chosen model is still chosen (kritarc)",
                  picker.currentData() == REMEMBERED_MODEL, (picker.currentData(), self.picker_labels()))
            self.dock.steps.setValue(1)
            self.fill_and_then("gui after restart", self.after_restart_fill)
        except Exception:
            self.fail()

    def after_restart_fill(self, node):
        try:
            sent = [r["model"] for r in self.recorded("gui after restart")]
            check("gui restart: the remembered model is sent", node is not None and sent == [REMEMBERED_MODEL], sent)
            check("gui restart: the picker was filled from the daemon and keeps the choice",
                  self.dock.model_picker.count() == len(SEVERAL_LABELS)
                  and self.dock.model_picker.currentData() == REMEMBERED_MODEL, self.picker_labels())
            self.choose_model("")
            self.fill_and_then("gui automatic again", self.after_automatic_again)
        except Exception:
            self.fail()

    def after_automatic_again(self, node):
        try:
            sent = [r["model"] for r in self.recorded("gui automatic again")]
            check("gui restart: back on Automatic, an empty model name is sent", node is not None and sent == [""],
                  sent)
            self.finish()
        except Exception:
            self.fail()

    # ---- main phase ------------------------------------------------------------------------

    def start(self):
        if PHASE == "models":
            return self.start_models()
        if PHASE == "restart":
            return self.start_restart()
        try:
            dock = self.open_document()
            if dock is None:
                return self.finish()
            doc = self.doc
            check("gui: docker has the livefill widgets", hasattr(dock, "fill_button"), type(dock).__name__)
            sel = Selection()
            sel.select(330, 60, 200, 150, 255)
            doc.setSelection(sel)
            dock.prompt.setPlainText("a hot air balloon in the sky")
            dock.random_seed.setChecked(False)
            dock.seed.setValue(1234)
            dock.steps.setValue(4)
            ctrl = dock.controller
            self.done = {}
            ctrl.job_done.connect(lambda rid, kind, node: self.done.__setitem__(kind, node))
            QTimer.singleShot(500, self.click_fill)
        except Exception:
            self.fail()

    def click_fill(self):
        try:
            self.dock.fill_button.click()
            self.wait(lambda: "fill" in self.done, self.after_fill)
        except Exception:
            self.fail()

    def after_fill(self, ok):
        try:
            node = self.done.get("fill")
            check("gui: Fill button produced a layer", ok and node is not None, self.dock.message.text())
            if node is not None:
                b = node.bounds()
                check("gui: fill layer on the selection", (b.x(), b.y(), b.width(), b.height()) == (330, 60, 200, 150),
                      (b.x(), b.y(), b.width(), b.height()))
            check("gui: status line shows the daemon", "Connected" in self.dock.status.text(), self.dock.status.text())
            ctrl = self.dock.controller
            labels = [self.dock.model_picker.itemText(i) for i in range(self.dock.model_picker.count())]
            check("gui: model picker filled from the daemon (Automatic, then its models)",
                  ctrl.models is not None and labels[:1] and labels[0].startswith("Automatic (")
                  and len(labels) == 1 + len(ctrl.models), labels)
            served = ctrl.link.hello.model if ctrl.link.hello is not None else "?"
            check("gui: the status line names the model of the result", ("model %s)" % served) in self.dock.message.text(),
                  self.dock.message.text())
            # Expand through the button, then undo until the canvas is back.
            self.doc.setSelection(None)
            for side, box in self.dock.side_boxes.items():
                box.setChecked(side == "right")
            self.dock.expand_amount.setValue(64)
            self.dock.expand_button.click()
            self.wait(lambda: "expand" in self.done, self.after_expand)
        except Exception:
            self.fail()

    def after_expand(self, ok):
        try:
            check("gui: Expand grew the canvas", ok and (self.doc.width(), self.doc.height()) == (W + 64, H),
                  (self.doc.width(), self.doc.height(), self.dock.message.text()))
            undo = Krita.instance().action("edit_undo")
            redo = Krita.instance().action("edit_redo")
            steps = 0
            while (self.doc.width(), self.doc.height()) != (W, H) and steps < 4:
                undo.trigger()
                self.doc.waitForDone()
                steps += 1
            check("gui: Undo reverts the canvas resize (%d undo steps: the new layer, then the resize)" % steps,
                  (self.doc.width(), self.doc.height()) == (W, H), (self.doc.width(), self.doc.height()))
            state["undo_steps_to_revert_expand"] = steps
            for _ in range(steps):
                redo.trigger()
                self.doc.waitForDone()
            check("gui: Redo brings the expansion back", (self.doc.width(), self.doc.height()) == (W + 64, H),
                  (self.doc.width(), self.doc.height()))
            self.doc.refreshProjection()
            zoom = Krita.instance().action("toggle_zoom_to_fit")
            if zoom is not None:
                zoom.trigger()
            QTimer.singleShot(1000, self.start_live)
        except Exception:
            self.fail()

    # ---- live mode in the real window (issue: the preview became the current layer) -------

    def canvas_widget(self):
        qwin = Krita.instance().activeWindow().qwindow()
        for widget in qwin.findChildren(QWidget):
            if widget.metaObject().className() in CANVAS_CLASSES and widget.isVisible():
                return widget
        return None

    def stroke(self, widget, y_frac, then):
        """A real brush stroke: press, 12 moves 16 ms apart, release, sent to the canvas widget
        (Krita's input manager turns them into a freehand stroke with the current brush)."""
        w, h = widget.width(), widget.height()
        points = [QPoint(int(w * (0.3 + 0.4 * i / 12.0)), int(h * y_frac)) for i in range(13)]

        def send(kind, pos, button, buttons):
            ev = QMouseEvent(kind, pos, widget.mapToGlobal(pos), button, buttons, Qt.NoModifier)
            QApplication.sendEvent(widget, ev)

        def step(i):
            try:
                if i == 0:
                    send(QEvent.MouseButtonPress, points[0], Qt.LeftButton, Qt.LeftButton)
                elif i < len(points):
                    send(QEvent.MouseMove, points[i], Qt.NoButton, Qt.LeftButton)
                else:
                    send(QEvent.MouseButtonRelease, points[-1], Qt.LeftButton, Qt.NoButton)
                    self.doc.waitForDone()
                    return then()
                QTimer.singleShot(16, lambda: step(i + 1))
            except Exception:
                self.fail()

        step(0)

    def layer_sum(self, node):
        return zlib.crc32(bytes(node.pixelData(0, 0, self.doc.width(), self.doc.height())))

    def preview_node(self):
        for node in self.doc.rootNode().childNodes():
            if node.name() == "livefill live preview":
                return node
        return None

    def current_name(self):
        node = self.doc.activeNode()
        return node.name() if node is not None else None

    def start_live(self):
        try:
            self.doc.setSelection(None)
            self.doc.setActiveNode(self.layer)
            brush = Krita.instance().action("KritaShape/KisToolBrush")
            if brush is not None:
                brush.trigger()
            self.live_frames = []
            self.dock.controller.job_done.connect(
                lambda rid, kind, node: kind == "live" and node is not None and self.live_frames.append(rid))
            self.dock.live_button.setChecked(True)
            self.wait(lambda: len(self.live_frames) >= 1, self.after_first_preview)
        except Exception:
            self.fail()

    def after_first_preview(self, ok):
        try:
            check("gui live: first preview arrives", ok, self.dock.message.text())
            if not ok:
                return self.ready_for_screenshot()
            # Krita activates a new layer asynchronously: look after it had every chance to.
            QTimer.singleShot(800, self.check_current_then_stroke)
        except Exception:
            self.fail()

    def check_current_then_stroke(self):
        try:
            preview = self.preview_node()
            check("gui live: one preview layer, locked against painting", preview is not None and preview.locked(),
                  [n.name() for n in self.doc.rootNode().childNodes()])
            check("gui live: after the first preview the current layer is still the painted one",
                  self.current_name() == "sketch", self.current_name())
            self.canvas = self.canvas_widget()
            if not check("gui live: found the canvas widget", self.canvas is not None):
                return self.ready_for_screenshot()
            self.painted_before = self.layer_sum(self.layer)
            self.strokes = 0
            self.next_stroke()
        except Exception:
            self.fail()

    def next_stroke(self):
        """Strokes until LIVE_FRAMES previews have been shown (each stroke triggers frames)."""
        try:
            if len(self.live_frames) > LIVE_FRAMES or self.strokes >= 40:
                return self.after_strokes()
            self.strokes += 1
            self.stroke(self.canvas, 0.25 + 0.5 * (self.strokes % 10) / 10.0,
                        lambda: QTimer.singleShot(150, self.next_stroke))
        except Exception:
            self.fail()

    def after_strokes(self):
        try:
            check("gui live: the strokes landed in the painted layer", self.layer_sum(self.layer) != self.painted_before,
                  "painted layer unchanged after %d strokes" % self.strokes)
            check("gui live: %d previews during the strokes" % LIVE_FRAMES, len(self.live_frames) > LIVE_FRAMES,
                  (len(self.live_frames), self.strokes))
            check("gui live: after %d frames the current layer is still the painted one" % LIVE_FRAMES,
                  self.current_name() == "sketch", self.current_name())
            state["live_strokes"] = self.strokes
            state["live_frames"] = len(self.live_frames)
            # The artist picks the preview layer and paints: the lock refuses the stroke, Live
            # says so, and the preview's pixels stay what livefill wrote.
            preview = self.preview_node()
            self.doc.setActiveNode(preview)
            QTimer.singleShot(300, self.stroke_on_preview)
        except Exception:
            self.fail()

    def stroke_on_preview(self):
        try:
            preview = self.preview_node()
            self.frames_before = len(self.live_frames)
            self.preview_before = self.layer_sum(preview)
            self.painted_before = self.layer_sum(self.layer)
            self.stroke(self.canvas, 0.5, lambda: QTimer.singleShot(1500, self.after_preview_stroke))
        except Exception:
            self.fail()

    def after_preview_stroke(self):
        try:
            preview = self.preview_node()
            check("gui live: a stroke on the selected preview does not change its pixels",
                  self.layer_sum(preview) == self.preview_before or len(self.live_frames) != self.frames_before,
                  "preview changed with no new frame")
            check("gui live: ... nor the painted layer", self.layer_sum(self.layer) == self.painted_before)
            check("gui live: Live says the preview is locked", "preview layer is locked" in self.dock.message.text(),
                  self.dock.message.text())
            self.doc.setActiveNode(self.layer)
            self.dock.live_button.setChecked(False)
            self.doc.refreshProjection()
            QTimer.singleShot(1500, self.ready_for_screenshot)
        except Exception:
            self.fail()

    def ready_for_screenshot(self):
        state["ready_for_screenshot"] = True
        save()
        if SHOT_READY:
            open(SHOT_READY, "w").close()
        self.wait(lambda: not SHOT_DONE or os.path.exists(SHOT_DONE), lambda ok: self.window_bench(), 120)

    def window_bench(self):
        """With $LIVEFILL_GUI_BENCH_SIZES: the live-latency benchmark in this window
        (tests/krita/live_bench.py, real strokes), results in $LIVEFILL_GUI_BENCH_OUT."""
        sizes = [int(v) for v in os.environ.get("LIVEFILL_GUI_BENCH_SIZES", "").split(",") if v]
        if sizes:
            try:
                import live_bench

                out = live_bench.bench_window(Krita.instance().activeWindow(), self.dock.controller, sizes)
                for c in live_bench.state["checks"]:
                    check(c["name"], c["ok"], c["detail"])
                with open(os.environ.get("LIVEFILL_GUI_BENCH_OUT", "/tmp/livefill-window-bench.json"), "w") as f:
                    json.dump({"results": out}, f, indent=1)
                print(live_bench.table(out))
            except Exception:
                check("window bench: no exception", False, traceback.format_exc())
        self.finish()

    def finish(self):
        try:
            conn = self.dock.controller.link.conn if getattr(self, "dock", None) is not None else None
            if conn is not None and not conn.is_closed:
                from livefill_krita import livefill_protocol as proto

                conn.send(proto.Shutdown())
        except Exception:
            pass
        state["done"] = True
        save()
        for doc in Krita.instance().documents():
            doc.setModified(False)
        QTimer.singleShot(500, QApplication.instance().quit)


Krita.instance().addExtension(Driver(Krita.instance()))
