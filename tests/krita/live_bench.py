"""Live-preview latency inside real Krita (kritarunner), against a running ``livefill serve``.

Why this exists: "real time" is judged by how fast a stroke shows up in the editor, and most of
that time can be the plugin's, not the model's. This drives the installed livefill plugin's own
controller in Krita: for each layer size it turns Live on, waits for the first preview, then
paints simulated strokes (a dab every 16 ms for ``LIVEFILL_BENCH_STROKE_S`` seconds, written
into the layer with Krita's API, each announced to the controller as the canvas event filter
would) and single dabs (one every 0.5 s), and measures from Krita's event loop:

* change -> preview: from each dab to the first preview written from pixels read after it;
* the plugin's own frame timeline (``livefill_live``): change -> sent, sent -> result,
  result -> pixels written, bytes per frame, the daemon's stage times;
* UI-thread stalls: lateness of a 4 ms heartbeat timer (everything that held Krita's UI thread,
  the simulated dabs included), and the duration of each livefill callback on it;
* idle cost: livefill's UI-thread time while Live watches an unchanged layer.

It measures the plugin it finds (older plugins without a timeline still get change -> preview
and the stalls; one older than ``livefill_live.py`` needs that file copied next to it), prints a table and writes JSON to ``LIVEFILL_BENCH_OUT``. Figures, never
asserts: ``check_results.py`` only checks that every size produced numbers.

Environment: LIVEFILL_SOCKET, LIVEFILL_BIN, LIVEFILL_MODEL (the daemon the plugin connects to or
starts), LIVEFILL_BENCH_SIZES (default 512,1024,2048,4096), LIVEFILL_BENCH_STROKE_S (2),
LIVEFILL_BENCH_SINGLE_DABS (10), LIVEFILL_BENCH_IDLE_S (3), LIVEFILL_BENCH_OUT,
LIVEFILL_TEST_RESULTS (check list for check_results.py).
"""

import json
import os
import sys
import time
import traceback

from krita import Krita
from PyQt5.QtCore import QEventLoop, Qt, QTimer
from PyQt5.QtWidgets import QApplication

# The installed plugin's copy of the shared live rules (percentiles as the plugin reports them).
from livefill_krita import livefill_live as live

RESULTS = os.environ.get("LIVEFILL_TEST_RESULTS", "/tmp/livefill-live-bench-checks.json")
OUT = os.environ.get("LIVEFILL_BENCH_OUT", "/tmp/livefill-live-bench.json")
SIZES = [int(v) for v in os.environ.get("LIVEFILL_BENCH_SIZES", "512,1024,2048,4096").split(",") if v]
STROKE_S = float(os.environ.get("LIVEFILL_BENCH_STROKE_S", "2"))
SINGLE_DABS = int(os.environ.get("LIVEFILL_BENCH_SINGLE_DABS", "10"))
IDLE_S = float(os.environ.get("LIVEFILL_BENCH_IDLE_S", "3"))
DAB_MS = 16
HEARTBEAT_MS = 4

state = {"checks": [], "done": False}


def now_ms():
    return time.monotonic() * 1000.0


def save():
    with open(RESULTS + ".tmp", "w") as f:
        json.dump(state, f, indent=1, default=str)
    os.replace(RESULTS + ".tmp", RESULTS)


def check(name, ok, detail=""):
    state["checks"].append({"name": name, "ok": bool(ok), "detail": str(detail)[:2000]})
    save()
    return ok


stats = live.distribution


def spin(ms, on_tick=None, tick_ms=DAB_MS):
    """Runs Krita's event loop for ``ms`` with a heartbeat; calls ``on_tick`` every ``tick_ms``.
    Returns the heartbeat's lateness values (ms)."""
    loop = QEventLoop()
    late = []
    last = [now_ms()]

    def beat():
        t = now_ms()
        late.append(max(0.0, t - last[0] - HEARTBEAT_MS))
        last[0] = t

    heart = QTimer()
    heart.setTimerType(Qt.PreciseTimer)
    heart.timeout.connect(beat)
    heart.start(HEARTBEAT_MS)
    ticker = None
    if on_tick is not None:
        ticker = QTimer()
        ticker.setTimerType(Qt.PreciseTimer)
        ticker.timeout.connect(on_tick)
        ticker.start(tick_ms)
    QTimer.singleShot(int(ms), loop.quit)
    loop.exec_()
    heart.stop()
    if ticker is not None:
        ticker.stop()
    return late


def wait_until(pred, timeout_s):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if pred():
            return True
        QApplication.processEvents(QEventLoop.AllEvents, 20)
        time.sleep(0.002)
    return pred()


class Recorder:
    """What the controller did, seen from outside (works with any plugin version)."""

    def __init__(self, controller):
        self.controller = controller
        self.sent = {}  # request id -> UI-thread time of link.send
        self.shown = {}  # request id -> time job_done reported a preview node
        link = controller.link
        self._send = link.send

        def send(msg):
            rid = getattr(msg, "request_id", None)
            if rid is not None and getattr(msg, "image", None) is not None:
                self.sent.setdefault(rid, now_ms())
            return self._send(msg)

        link.send = send
        controller.job_done.connect(self._done)

    def _done(self, rid, kind, node):
        if kind == "live" and node is not None:
            self.shown[rid] = now_ms()

    def read_times(self):
        """request id -> when its pixels were read: the plugin's timeline when it has one, else
        the send time (older plugins read right before sending, on the UI thread)."""
        timeline = getattr(self.controller, "timeline", None)
        out = dict(self.sent)
        if timeline is not None:
            for f in list(timeline.frames):
                if f.request_id and f.read_started:
                    out[f.request_id] = f.read_started
        return out


def change_to_preview(changes, rec):
    """For each change time: the first shown preview whose pixels were read after it."""
    reads = sorted((t, rid) for rid, t in rec.read_times().items() if rid in rec.shown)
    out = []
    for c in changes:
        for t, rid in reads:
            if t >= c:
                out.append(rec.shown[rid] - c)
                break
    return out


def ui_slices(controller, since):
    timeline = getattr(controller, "timeline", None)
    if timeline is None:
        return None
    return [d for (_, start, d) in list(timeline.ui_slices) if start >= since]


def ui_slices_by_name(controller, since):
    """The longest UI-thread slice of each livefill callback, to see which one stalls."""
    out = {}
    for name, start, d in list(getattr(controller, "timeline").ui_slices):
        if start >= since:
            out[name] = round(max(out.get(name, 0.0), d), 2)
    return out


def scene(side):
    """An opaque BGRA gradient layer (a painted background), built without per-pixel Python."""
    row = bytes(b for x in range(side) for b in (200 - (x * 150) // side, 120, 60 + (x * 150) // side, 255))
    return row * side


def bench_size(app, controller, proto_core, side):
    doc = app.createDocument(side, side, "livefill-bench-%d" % side, "RGBA", "U8", "", 72.0)
    layer = doc.createNode("painted", "paintlayer")
    doc.rootNode().addChildNode(layer, None)
    layer.setPixelData(scene(side), 0, 0, side, side)
    doc.refreshProjection()
    controller.target_provider = lambda: (doc, layer)
    controller.settings = proto_core.Settings(prompt="live bench", seed=5, steps=2, strength=0.6)
    rec = Recorder(controller)
    result = {"side": side}
    try:
        controller.set_live(True)
        ok = wait_until(lambda: len(rec.shown) > 0, 300)
        if not check("bench %d: first preview" % side, ok, "no preview"):
            return result
        spin(300)
        dab = max(12, side // 40)
        color = [0]

        def dab_at(x, y):
            color[0] = (color[0] + 53) % 256
            layer.setPixelData(bytes((color[0], 40, 255 - color[0], 255)) * (dab * dab), x, y, dab, dab)
            t = now_ms()
            if hasattr(controller, "live_touched"):
                controller.live_touched()  # what the canvas event filter does on a stroke event
            return t

        # Strokes: a dab every 16 ms along a diagonal.
        changes = []
        n_dabs = int(STROKE_S * 1000 / DAB_MS)
        step = [0]

        def stroke_tick():
            i = step[0]
            if i >= n_dabs:
                return
            step[0] += 1
            x = int((side - dab) * i / max(1, n_dabs - 1))
            y = int((side - dab) * (0.3 + 0.4 * i / max(1, n_dabs - 1)))
            changes.append(dab_at(x, y))

        t0 = now_ms()
        late = spin(STROKE_S * 1000 + 100, stroke_tick)
        spin(1500)  # let the last frame land
        stroke_lat = change_to_preview(changes, rec)
        result["stroke"] = {"dabs": len(changes), "change_to_preview": stats(stroke_lat),
                            "heartbeat_late": stats(late), "previews": len([r for r in rec.shown if rec.sent.get(r, 0) >= t0])}
        slices = ui_slices(controller, t0)
        if slices is not None:
            result["stroke"]["livefill_ui_ms"] = stats(slices)
            result["stroke"]["livefill_ui_max_by_callback"] = ui_slices_by_name(controller, t0)
            result["stroke"]["timeline"] = controller.timeline.summary(since=t0)

        # Single dabs, far enough apart that each gets its own frame.
        singles = []
        t1 = now_ms()
        single_late = []
        for i in range(SINGLE_DABS):
            singles.append(dab_at(int((side - dab) * (i + 0.5) / SINGLE_DABS), side // 5))
            single_late += spin(500)
        # Let the last dab's preview arrive: on a loaded machine a large frame outlasts the 500 ms
        # between dabs, and a dab is only measured once a frame read after it is shown.
        single_late += spin(3000)
        single_lat = change_to_preview(singles, rec)
        result["single"] = {"dabs": len(singles), "change_to_preview": stats(single_lat),
                            "heartbeat_late": stats(single_late)}
        slices = ui_slices(controller, t1)
        if slices is not None:
            result["single"]["livefill_ui_ms"] = stats(slices)
            result["single"]["livefill_ui_max_by_callback"] = ui_slices_by_name(controller, t1)
            result["single"]["timeline"] = controller.timeline.summary(since=t1)

        # Idle: Live on, nothing changes.
        t2 = now_ms()
        idle_late = spin(IDLE_S * 1000)
        slices = ui_slices(controller, t2)
        result["idle"] = {"seconds": IDLE_S, "heartbeat_late": stats(idle_late)}
        if slices is not None:
            result["idle"]["livefill_ui_ms_total"] = round(sum(slices), 2)
            result["idle"]["livefill_ui_share_pct"] = round(100.0 * sum(slices) / (IDLE_S * 1000.0), 3)
        check("bench %d: stroke and single-dab latencies measured" % side, stroke_lat and single_lat,
              (len(stroke_lat), len(single_lat)))
    finally:
        controller.set_live(False)
        controller.link.send = rec._send
        try:
            controller.job_done.disconnect(rec._done)
        except TypeError:
            pass
        for d in list(app.documents()):
            if d.name() == doc.name():
                d.setModified(False)
                d.close()
    return result


def table(results):
    lines = ["%6s | %-34s | %-22s | %-24s | %s" % ("side", "stroke change->preview p50/p90/max", "single p50/p90",
                                                   "heartbeat late p99/max", "livefill UI p99/max, idle %")]
    for r in results:
        s, g = r.get("stroke", {}), r.get("single", {})
        c, cs = s.get("change_to_preview", {}), g.get("change_to_preview", {})
        hb = s.get("heartbeat_late", {})
        ui = s.get("livefill_ui_ms", {})
        idle = r.get("idle", {}).get("livefill_ui_share_pct", "-")
        lines.append("%6d | %7.1f / %7.1f / %7.1f ms       | %6.1f / %6.1f ms      | %6.1f / %6.1f ms        | %s / %s, %s" % (
            r["side"], c.get("p50", 0), c.get("p90", 0), c.get("max", 0), cs.get("p50", 0), cs.get("p90", 0),
            hb.get("p99", 0), hb.get("max", 0), ui.get("p99", "-"), ui.get("max", "-"), idle))
    return "\n".join(lines)


def main(*_args):
    try:
        from livefill_krita import livefill_plugin_core as core
        from livefill_krita.controller import Controller

        app = Krita.instance()
        controller = Controller()
        controller.configure(os.environ.get("LIVEFILL_BIN", ""), os.environ.get("LIVEFILL_MODEL", ""),
                             os.environ.get("LIVEFILL_SOCKET", ""))
        results = []
        for side in SIZES:
            results.append(bench_size(app, controller, core, side))
            with open(OUT, "w") as f:
                json.dump({"plugin_has_timeline": hasattr(controller, "timeline"), "results": results}, f, indent=1)
        print(table(results))
        sys.stdout.flush()
        state["table"] = table(results)
        try:
            conn = controller.link.conn
            if conn is not None and not conn.is_closed:
                from livefill_krita import livefill_protocol as proto

                conn.send(proto.Shutdown())
        except Exception:
            pass
        controller.link.close()
    except Exception:
        check("bench: no exception", False, traceback.format_exc())
    state["done"] = True
    save()


# ------------------------------------------------------------------------------------------------
# The real window (run from the GUI test driver under Xvfb): real brush strokes, real event filter
# ------------------------------------------------------------------------------------------------


def bench_window(window, controller, sizes, stroke_s=STROKE_S, single_dabs=SINGLE_DABS):
    """Like ``bench_size`` but in Krita's main window: each size gets a document and a view, the
    strokes are mouse events sent to the canvas widget (Krita paints them with the current
    brush, the plugin's event filter sees them), so detection, Krita's own painting and the
    canvas refresh are all in the figures. A change's time is when its mouse event was sent."""
    from PyQt5.QtCore import QEvent, QPoint
    from PyQt5.QtGui import QMouseEvent
    from PyQt5.QtWidgets import QWidget

    from livefill_krita import livefill_plugin_core as core

    app = Krita.instance()
    out = []
    for side in sizes:
        doc = app.createDocument(side, side, "livefill-window-bench-%d" % side, "RGBA", "U8", "", 72.0)
        layer = doc.createNode("painted", "paintlayer")
        doc.rootNode().addChildNode(layer, None)
        layer.setPixelData(scene(side), 0, 0, side, side)
        window.addView(doc)
        doc.setActiveNode(layer)
        doc.refreshProjection()
        spin(1000)
        zoom = app.action("zoom_to_fit")
        if zoom is not None:
            zoom.trigger()
        canvas = None
        for widget in window.qwindow().findChildren(QWidget):
            if widget.metaObject().className() in ("KisOpenGLCanvas2", "KisQPainterCanvas") and widget.isVisible():
                canvas = widget
        result = {"side": side, "window": True}
        if canvas is None:
            check("window bench %d: canvas widget" % side, False)
            out.append(result)
            continue
        controller.settings = core.Settings(prompt="live bench", seed=5, steps=2, strength=0.6)
        rec = Recorder(controller)
        try:
            controller.set_live(True)
            if not check("window bench %d: first preview" % side, wait_until(lambda: len(rec.shown) > 0, 300)):
                out.append(result)
                continue
            spin(500)
            w, h = canvas.width(), canvas.height()

            def send(kind, x, y, button, buttons):
                pos = QPoint(int(x), int(y))
                QApplication.sendEvent(canvas, QMouseEvent(kind, pos, canvas.mapToGlobal(pos), button, buttons,
                                                           Qt.NoModifier))
                return now_ms()

            changes = []
            n = int(stroke_s * 1000 / DAB_MS)
            step = [0]

            def stroke_tick():
                i = step[0]
                if i > n:
                    return
                step[0] += 1
                x = w * (0.2 + 0.6 * i / max(1, n))
                y = h * (0.35 + 0.3 * i / max(1, n))
                if i == 0:
                    changes.append(send(QEvent.MouseButtonPress, x, y, Qt.LeftButton, Qt.LeftButton))
                elif i < n:
                    changes.append(send(QEvent.MouseMove, x, y, Qt.NoButton, Qt.LeftButton))
                else:
                    changes.append(send(QEvent.MouseButtonRelease, x, y, Qt.LeftButton, Qt.NoButton))

            t0 = now_ms()
            late = spin(stroke_s * 1000 + 200, stroke_tick)
            spin(1500)
            lat = change_to_preview(changes, rec)
            result["stroke"] = {"events": len(changes), "change_to_preview": stats(lat), "heartbeat_late": stats(late),
                                "livefill_ui_ms": stats(ui_slices(controller, t0)),
                                "livefill_ui_max_by_callback": ui_slices_by_name(controller, t0),
                                "timeline": controller.timeline.summary(since=t0)}
            singles, single_late = [], []
            t1 = now_ms()
            for i in range(single_dabs):
                x, y = w * (0.2 + 0.6 * (i + 0.5) / single_dabs), h * 0.25
                singles.append(send(QEvent.MouseButtonPress, x, y, Qt.LeftButton, Qt.LeftButton))
                send(QEvent.MouseButtonRelease, x, y, Qt.LeftButton, Qt.NoButton)
                single_late += spin(500)
            single_late += spin(3000)  # the last dab's preview (see bench_size)
            lat1 = change_to_preview(singles, rec)
            result["single"] = {"dabs": len(singles), "change_to_preview": stats(lat1),
                                "heartbeat_late": stats(single_late), "livefill_ui_ms": stats(ui_slices(controller, t1)),
                                "livefill_ui_max_by_callback": ui_slices_by_name(controller, t1),
                                "timeline": controller.timeline.summary(since=t1)}
            t2 = now_ms()
            idle_late = spin(3000)
            idle = ui_slices(controller, t2)
            result["idle"] = {"heartbeat_late": stats(idle_late),
                              "livefill_ui_share_pct": round(100.0 * sum(idle) / 3000.0, 3),
                              "livefill_ui_max_by_callback": ui_slices_by_name(controller, t2)}
            check("window bench %d: latencies measured" % side, lat and lat1, (len(lat), len(lat1)))
        finally:
            controller.set_live(False)
            controller.link.send = rec._send
            try:
                controller.job_done.disconnect(rec._done)
            except TypeError:
                pass
            doc.setModified(False)
        out.append(result)
    return out
