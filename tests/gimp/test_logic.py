"""Plain-Python tests of the GIMP plug-in's own editor-independent logic (no GIMP needed).

Exists to pin what is the GIMP plug-in's own (the inpaint region, canvas growth, where results
land, live-preview scaling, result names, the blocking job loop with progress, errors, timeout
and cancel) cheaply; what it shares with the Krita plugin is tested once in
``protocol/python/test_livefill_plugin_core.py``, and the GIMP side is covered by
run_gimp_tests.sh in real GIMP 3. Run: python3 -m unittest tests/gimp/test_logic.py -v
"""

import os
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "plugin-gimp", "plug-ins", "livefill"))
sys.path.insert(0, os.path.join(ROOT, "protocol", "python"))
sys.path.insert(0, os.path.join(ROOT, "tests"))

import livefill_logic as logic  # noqa: E402
import livefill_plugin_core as core  # noqa: E402
import livefill_protocol as lp  # noqa: E402
import standin_daemon as standin  # noqa: E402
from livefill_plugin_core import PluginError, Rect  # noqa: E402


class GeometryTests(unittest.TestCase):
    def test_plan_inpaint(self):
        layer = Rect(16, 12, 64, 48)
        with self.assertRaisesRegex(PluginError, "selection"):
            logic.plan_inpaint(layer, None, "auto")
        with self.assertRaisesRegex(PluginError, "overlap"):
            logic.plan_inpaint(layer, Rect(85, 65, 8, 8), "auto")
        self.assertEqual(logic.plan_inpaint(layer, Rect(30, 20, 8, 8), "full"), layer)
        # A selection sticking out of the layer only counts where it overlaps.
        big = Rect(0, 0, 1000, 1000)
        self.assertEqual(logic.plan_inpaint(big, Rect(-50, -50, 100, 100), "auto"),
                         Rect(0, 0, 82, 82))
        self.assertEqual(logic.plan_inpaint(big, Rect(400, 400, 100, 50), "auto"),
                         core.context_region(Rect(400, 400, 100, 50), big))

    def test_extend_canvas(self):
        g = logic.extend_canvas(96, 80, 16, 8, 0, 24)
        self.assertEqual((g.new_width, g.new_height, g.shift_x, g.shift_y), (112, 112, 16, 8))
        with self.assertRaises(PluginError):
            logic.extend_canvas(96, 80, 0, 0, 0, 0)
        with self.assertRaises(PluginError):
            logic.extend_canvas(96, 80, -1, 0, 0, 4)

    def test_result_position(self):
        sent = Rect(16, 12, 64, 48)
        self.assertEqual(logic.result_position(sent, 0, 0), (16, 12))
        self.assertEqual(logic.result_position(Rect(16, 8, 96, 80), -16, -8), (0, 0))

    def test_live_tick_is_frequent(self):
        # The live preview reacts within a tick; the old 400 ms tick was most of its latency.
        self.assertLessEqual(logic.LIVE_TICK_MS, 50)


class ProcedureTests(unittest.TestCase):
    def test_result_names_use_the_menu_words(self):
        self.assertEqual(logic.result_name("inpaint", "a  red\nfox", 42), "livefill inpaint: a red fox [seed 42]")
        self.assertEqual(logic.result_name("txt2img", "", 1), "livefill generate: (no prompt) [seed 1]")
        self.assertEqual(logic.result_name("outpaint", "x", 2), "livefill extend: x [seed 2]")
        self.assertTrue(core.is_livefill_layer(logic.result_name("preview", "p", 3)))

    def test_validate_per_procedure(self):
        logic.validate(core.Settings(prompt="x"), "txt2img")
        with self.assertRaisesRegex(PluginError, "prompt"):
            logic.validate(core.Settings(prompt="  "), "txt2img")
        with self.assertRaisesRegex(PluginError, "Strength"):
            logic.validate(core.Settings(strength=0.0), "preview")
        for mode in logic.WIRE_MODES:
            logic.validate(core.Settings(prompt="x"), mode)

    def test_strength_defaults(self):
        self.assertEqual(logic.DEFAULT_STRENGTHS, {"inpaint": 1.0, "img2img": 0.6, "preview": 0.5})

    def test_error_texts_point_to_the_arguments(self):
        self.assertIn("model arguments", core.error_text(lp.ErrorCode.NO_MODEL, "", logic.GIMP))
        self.assertIn("install-plugin gimp", core.error_text(lp.ErrorCode.UNSUPPORTED_VERSION, "", logic.GIMP))


class JobTests(unittest.TestCase):
    """run_job / poll_job / connect against the stand-in daemon over a real socket."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="livefill-gimp-logic-")
        cls.path = os.path.join(cls.tmp, "standin.sock")
        cls.daemon = standin.StandinDaemon(cls.path).start()

    @classmethod
    def tearDownClass(cls):
        cls.daemon.stop()

    def setUp(self):
        self.conn = logic.connect(self.path, "", "")

    def tearDown(self):
        self.conn.close()

    def test_inpaint_job_with_progress(self):
        seen = []
        mask = bytes([0, 255, 0, 255])
        req = core.build_request(lp.Mode.INPAINT, core.Settings(seed=5, steps=3),
                                 image=(2, 2, bytes(range(16))), mask=(2, 2, mask))
        res = logic.run_job(self.conn, req, lambda s, t: seen.append((s, t)), timeout=10)
        self.assertEqual(seen, [(1, 3), (2, 3), (3, 3)])
        self.assertEqual((res.image.width, res.image.height, res.offset_x, res.offset_y, res.seed),
                         (2, 2, 0, 0, 5))
        self.assertEqual(res.image.pixels[0:4], bytes(range(4)))  # unselected pixel kept
        self.assertEqual(res.image.pixels[8:12], bytes(range(8, 12)))
        self.assertEqual(res.image.pixels[4:8], standin.FILL)

    def test_outpaint_offsets(self):
        req = core.build_request(lp.Mode.OUTPAINT, core.Settings(), image=(2, 2, bytes(16)),
                                 extend=(3, 1, 0, 2))
        res = logic.run_job(self.conn, req, timeout=10)
        self.assertEqual((res.image.width, res.image.height, res.offset_x, res.offset_y),
                         (5, 5, -3, -1))

    def test_daemon_error_is_readable(self):
        req = core.build_request(lp.Mode.TXT2IMG, core.Settings(prompt="__error__"))
        with self.assertRaisesRegex(PluginError, "stand-in refuses"):
            logic.run_job(self.conn, req, timeout=10)

    def test_timeout_cancels(self):
        req = core.build_request(lp.Mode.TXT2IMG, core.Settings(prompt="__none__"))
        t0 = time.monotonic()
        with self.assertRaisesRegex(PluginError, "did not finish"):
            logic.run_job(self.conn, req, timeout=0.5)
        self.assertLess(time.monotonic() - t0, 3)

    def test_should_cancel(self):
        req = core.build_request(lp.Mode.TXT2IMG, core.Settings(prompt="__slow__", steps=20))
        t0 = time.monotonic()
        with self.assertRaises(core.Cancelled):
            logic.run_job(self.conn, req, should_cancel=lambda: time.monotonic() - t0 > 0.4)

    def test_cancel_reported_by_daemon(self):
        req = core.build_request(lp.Mode.TXT2IMG, core.Settings(prompt="__slow__", steps=20))
        rid = self.conn.generate(req)
        self.conn.cancel(rid)
        deadline = time.monotonic() + 10
        outcome = None
        while outcome is None and time.monotonic() < deadline:
            outcome = logic.poll_job(self.conn, rid)
            time.sleep(0.05)
        self.assertEqual(outcome, ("superseded", None))

    def test_a_daemon_gone_mid_job_is_said_plainly(self):
        # "__drop__": the stand-in accepts the job, then the connection ends (a daemon that
        # crashed or was killed mid-job looks the same from here).
        conn = logic.connect(self.path, "", "")
        self.addCleanup(conn.close)
        req = core.build_request(lp.Mode.TXT2IMG, core.Settings(prompt="__drop__"))
        with self.assertRaises(PluginError) as cm:
            logic.run_job(conn, req, timeout=10)
        self.assertNotIsInstance(cm.exception, core.Cancelled)
        text = str(cm.exception)
        self.assertTrue(text.startswith("The livefill daemon stopped while working on the generate request: it "
                                        "crashed or was killed"), text)
        self.assertIn("Nothing was added to your image. The next livefill procedure starts it again.", text)

    def test_request_words(self):
        settings = core.Settings(prompt="p")
        words = [logic.request_word(core.build_request(lp.Mode.INPAINT, settings, image=(1, 1, bytes(4)),
                                                       mask=(1, 1, b"\xff"))),
                 logic.request_word(core.build_request(lp.Mode.OUTPAINT, settings, image=(1, 1, bytes(4)))),
                 logic.request_word(core.build_request(lp.Mode.IMG2IMG, settings, image=(1, 1, bytes(4)))),
                 logic.request_word(core.build_request(lp.Mode.TXT2IMG, settings)),
                 logic.request_word(core.build_request(lp.Mode.IMG2IMG, settings, image=(1, 1, bytes(4)), live=True))]
        self.assertEqual(words, ["inpaint", "extend", "img2img", "generate", "live preview"])

    def test_poll_job(self):
        req = core.build_request(lp.Mode.TXT2IMG, core.Settings(prompt="p", steps=1))
        rid = self.conn.generate(req)
        deadline = time.monotonic() + 10
        outcome = None
        while outcome is None and time.monotonic() < deadline:
            outcome = logic.poll_job(self.conn, rid)
            time.sleep(0.02)
        self.assertEqual(outcome[0], "result")
        self.assertEqual((outcome[1].image.width, outcome[1].image.height), (standin.NATIVE, standin.NATIVE))


class ModelJobTests(unittest.TestCase):
    """run_job / poll_job with the stand-in's several models: loading is reported with the shared
    text, model errors name the model."""

    def setUp(self):
        tmp = tempfile.mkdtemp(prefix="livefill-gimp-models-")
        path = os.path.join(tmp, "standin.sock")
        self.daemon = standin.StandinDaemon(path, models=standin.SEVERAL, broken=standin.SEVERAL_BROKEN).start()
        self.addCleanup(self.daemon.stop)
        self.conn = logic.connect(path, "", "")
        self.addCleanup(self.conn.close)

    def test_run_job_reports_loading(self):
        loading = []
        req = core.build_request(lp.Mode.TXT2IMG, core.Settings(prompt="p", steps=1, model="dreamshaper-8"))
        res = logic.run_job(self.conn, req, timeout=10, on_model_loading=loading.append)
        self.assertEqual(res.model, "dreamshaper-8")
        self.assertEqual(len(loading), len(standin.LOAD_COMPONENTS))
        self.assertTrue(all(t.startswith("Loading model dreamshaper-8: ") for t in loading), loading)

    def test_model_errors_name_the_model(self):
        req = core.build_request(lp.Mode.TXT2IMG, core.Settings(prompt="p", model="broken-model"))
        with self.assertRaisesRegex(PluginError, "broken-model.*could not be loaded.*truncated"):
            logic.run_job(self.conn, req, timeout=10)
        req = core.build_request(lp.Mode.TXT2IMG, core.Settings(prompt="p", model="gone"))
        rid = self.conn.generate(req)
        deadline = time.monotonic() + 10
        outcome = None
        while outcome is None and time.monotonic() < deadline:
            outcome = logic.poll_job(self.conn, rid, "gone")
            time.sleep(0.02)
        self.assertEqual(outcome[0], "error")
        self.assertIn("no model named \u201cgone\u201d", outcome[1])

    def test_poll_job_reports_loading(self):
        req = core.build_request(lp.Mode.IMG2IMG, core.Settings(steps=1), image=(1, 1, bytes(4)), live=True)
        rid = self.conn.generate(req)
        loading = []
        deadline = time.monotonic() + 10
        outcome = None
        while outcome is None and time.monotonic() < deadline:
            outcome = logic.poll_job(self.conn, rid, "", loading.append)
            time.sleep(0.02)
        self.assertEqual((outcome[0], outcome[1].model), ("result", "lcm-dreamshaper"))
        self.assertIn("Loading model lcm-dreamshaper: unet (3/5)\u2026", loading)


if __name__ == "__main__":
    unittest.main()
