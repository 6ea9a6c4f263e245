# Live-preview latency inside real GIMP 3 (python-fu-eval batch), against a running livefill serve.
#
# Why this exists: the Krita benchmark's twin (tests/krita/live_bench.py), so both editors' live
# previews are measured the same way. GIMP runs the live preview dialog's loop in the plug-in's
# own process; this script imports the installed plug-in's LivePreview (the class the dialog
# drives) and runs that loop itself, as GLib would: a tick every logic.LIVE_TICK_MS, while it
# paints simulated strokes into the layer through GIMP's core (a dab every 16 ms for
# LIVEFILL_BENCH_STROKE_S seconds, then single dabs 0.5 s apart). It reports change -> preview
# (from each dab to the first preview written from pixels read after it), the cost of each tick
# (what the dialog's loop is held for), bytes per frame and the daemon's stage times, as JSON in
# LIVEFILL_BENCH_OUT. Figures, never asserts (the checks only say that numbers came out).
# Older plug-ins are measured too (send and show times are taken from outside LivePreview); one
# older than livefill_live.py needs that file copied next to it.
#
# Environment: LIVEFILL_SOCKET, LIVEFILL_BENCH_OUT, LIVEFILL_BENCH_SIZES (512,1024,2048,4096),
# LIVEFILL_BENCH_STROKE_S (2), LIVEFILL_BENCH_SINGLE_DABS (10), LIVEFILL_PLUGIN_DIR (the
# installed plug-in's folder).

import json
import os
import sys
import time
import traceback

from gi.repository import Gegl, Gimp  # noqa: F401

OUT = os.environ.get("LIVEFILL_BENCH_OUT", "/tmp/livefill-gimp-live-bench.json")
SOCKET = os.environ.get("LIVEFILL_SOCKET", "")
SIZES = [int(v) for v in os.environ.get("LIVEFILL_BENCH_SIZES", "512,1024,2048,4096").split(",") if v]
STROKE_S = float(os.environ.get("LIVEFILL_BENCH_STROKE_S", "2"))
SINGLE_DABS = int(os.environ.get("LIVEFILL_BENCH_SINGLE_DABS", "10"))
PLUGIN_DIR = os.environ.get("LIVEFILL_PLUGIN_DIR", "")
DAB_MS = 16.0
RGBA = "R'G'B'A u8"

# The eval interpreter, unlike a plug-in's own process, has not loaded GEGL's operations, which
# the preview's upscaling uses.
Gegl.init(None)

sys.path.insert(0, PLUGIN_DIR)
import livefill as plugin  # noqa: E402  (the installed plug-in: LivePreview and its helpers)
import livefill_live as live  # noqa: E402  (its copy of the shared live rules)

results = {"checks": [], "results": []}


def check(name, ok, detail=""):
    results["checks"].append({"name": name, "ok": bool(ok), "detail": str(detail)})
    return ok


def save():
    with open(OUT, "w") as f:
        json.dump(results, f, indent=1)


def now_ms():
    return time.monotonic() * 1000.0


stats = live.distribution


class Config:
    """Stands in for the procedure config the dialog passes (only what LivePreview reads)."""

    def __init__(self, max_side):
        self.values = {"preview-max-side": max_side}

    def get_property(self, name):
        return self.values[name]


class Recorder:
    """Send and show times seen from outside LivePreview (works with any plug-in version)."""

    def __init__(self, preview):
        self.reads = {}  # request id -> when its pixels were read (~ sent: the plug-in reads, then sends)
        self.shown = {}
        self.in_flight = None
        conn = preview.conn
        generate = conn.generate

        def wrapped_generate(request):
            started = self.read_started
            rid = generate(request)
            self.reads[rid] = started
            self.in_flight = rid
            return rid

        conn.generate = wrapped_generate
        self.restore = lambda: setattr(conn, "generate", generate)
        request = preview._request

        def wrapped_request(settings):
            self.read_started = now_ms()
            return request(settings)

        preview._request = wrapped_request
        show = preview.show

        def wrapped_show(rect, result):
            show(rect, result)
            if self.in_flight is not None:
                self.shown[self.in_flight] = now_ms()

        preview.show = wrapped_show
        self.read_started = 0.0


def change_to_preview(changes, rec):
    reads = sorted((t, rid) for rid, t in rec.reads.items() if rid in rec.shown)
    out = []
    for c in changes:
        for t, rid in reads:
            if t >= c:
                out.append(rec.shown[rid] - c)
                break
    return out


def make_image(side):
    image = Gimp.Image.new(side, side, Gimp.ImageBaseType.RGB)
    layer = Gimp.Layer.new(image, "painted", side, side, Gimp.ImageType.RGBA_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
    image.insert_layer(layer, None, 0)
    row = bytes(b for x in range(side) for b in (60 + (x * 150) // side, 120, 200 - (x * 150) // side, 255))
    buf = layer.get_buffer()
    buf.set(Gegl.Rectangle.new(0, 0, side, side), RGBA, row * side)
    buf.flush()
    layer.update(0, 0, side, side)
    return image, layer


def bench_size(conn, side):
    image, layer = make_image(side)
    preview = plugin.LivePreview(image, layer, Config(512), conn)
    settings = plugin.core.Settings(prompt="live bench", seed=5, steps=2, strength=0.6)
    rec = Recorder(preview)
    ticks = []
    tick_ms = getattr(plugin.logic, "LIVE_TICK_MS", 400)
    next_tick = [now_ms()]
    dab = max(12, side // 40)
    color = [0]

    def dab_at(x, y):
        color[0] = (color[0] + 53) % 256
        buf = layer.get_buffer()
        buf.set(Gegl.Rectangle.new(x, y, dab, dab), RGBA, bytes((color[0], 40, 255 - color[0], 255)) * (dab * dab))
        buf.flush()
        layer.update(x, y, dab, dab)
        return now_ms()

    def run_for(ms, on_dab=None):
        """The dialog's loop: ticks every tick_ms; dabs every 16 ms when asked."""
        end = now_ms() + ms
        next_dab = now_ms()
        while now_ms() < end:
            t = now_ms()
            if on_dab is not None and t >= next_dab:
                on_dab()
                next_dab += DAB_MS
            if t >= next_tick[0]:
                s = now_ms()
                preview.poll(settings)
                ticks.append(now_ms() - s)
                next_tick[0] = s + (preview.tick_interval() if hasattr(preview, "tick_interval") else tick_ms)
            wake = min(next_tick[0], next_dab if on_dab is not None else end, end)
            time.sleep(max(0.0, (wake - now_ms()) / 1000.0))

    result = {"side": side, "tick_ms": tick_ms}
    try:
        deadline = now_ms() + 300000
        while not rec.shown and now_ms() < deadline:
            run_for(50)
        if not check("gimp bench %d: first preview" % side, rec.shown):
            return result
        run_for(300)
        changes = []
        n = int(STROKE_S * 1000 / DAB_MS)
        i = [0]

        def stroke_dab():
            k = i[0]
            if k >= n:
                return
            i[0] += 1
            changes.append(dab_at(int((side - dab) * k / max(1, n - 1)),
                                  int((side - dab) * (0.3 + 0.4 * k / max(1, n - 1)))))

        ticks.clear()
        run_for(STROKE_S * 1000 + 100, stroke_dab)
        run_for(1500)
        stroke_lat = change_to_preview(changes, rec)
        result["stroke"] = {"dabs": len(changes), "change_to_preview": stats(stroke_lat), "tick_ms": stats(ticks)}
        singles = []
        ticks.clear()
        for k in range(SINGLE_DABS):
            singles.append(dab_at(int((side - dab) * (k + 0.5) / SINGLE_DABS), side // 5))
            run_for(500)
        # Let the last dab's preview arrive: on a loaded machine a large frame takes longer than
        # the 500 ms between dabs, and a dab is only measured once a frame read after it is shown.
        run_for(3000)
        single_lat = change_to_preview(singles, rec)
        result["single"] = {"dabs": len(singles), "change_to_preview": stats(single_lat), "tick_ms": stats(ticks)}
        ticks.clear()
        t_idle = now_ms()
        run_for(3000)
        result["idle"] = {"tick_ms": stats(ticks), "busy_share_pct": round(100.0 * sum(ticks) / (now_ms() - t_idle), 2)}
        probe = []
        for _ in range(20):
            s0 = now_ms()
            preview._key(settings)
            probe.append(now_ms() - s0)
        result["change_check_ms"] = stats(probe)
        small = []
        for _ in range(20):
            s0 = now_ms()
            plugin.logic.fingerprint(plugin.doc.change_probe(layer, 64))
            small.append(now_ms() - s0)
        result["probe64_ms"] = stats(small)
        timeline = getattr(preview, "timeline", None)
        if timeline is not None:
            result["timeline"] = timeline.summary()
        check("gimp bench %d: latencies measured" % side, stroke_lat and single_lat, (len(stroke_lat), len(single_lat)))
    finally:
        rec.restore()
        if preview.pending is not None:
            try:
                conn.cancel(preview.pending)
            except Exception:
                pass
        image.delete()
    return result


def main():
    try:
        conn = plugin.logic.connect(SOCKET, "", "")
        for side in SIZES:
            results["results"].append(bench_size(conn, side))
            save()
        conn.close()
    except Exception:
        check("gimp bench: no exception", False, traceback.format_exc())
    results["done"] = True
    save()


main()
