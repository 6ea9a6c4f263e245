"""Plain-Python tests of the GIMP plug-in's editor-independent logic (no GIMP needed).

Exists to pin the geometry (what is sent, where results land), request building, daemon lookup
and the job loop (progress, errors, timeout, cancel) cheaply; the GIMP side is covered by
run_gimp_tests.sh in real GIMP 3. Run: python3 -m unittest tests/gimp/test_logic.py -v
"""

import os
import random
import stat
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "plugin-gimp", "plug-ins", "livefill"))
sys.path.insert(0, os.path.join(ROOT, "protocol", "python"))
sys.path.insert(0, HERE)

import livefill_client  # noqa: E402
import livefill_logic as logic  # noqa: E402
import livefill_protocol as lp  # noqa: E402
import standin_server  # noqa: E402
from livefill_logic import LivefillError, Rect  # noqa: E402


class GeometryTests(unittest.TestCase):
    def test_rect_ops(self):
        r = Rect(10, 20, 30, 40)
        self.assertEqual((r.right, r.bottom), (40, 60))
        self.assertEqual(r.intersect(Rect(0, 0, 15, 25)), Rect(10, 20, 5, 5))
        self.assertTrue(r.intersect(Rect(100, 100, 5, 5)).is_empty())
        self.assertEqual(r.translate(-10, 5), Rect(0, 25, 30, 40))
        self.assertEqual(r.grow(1, 2, 3, 4), Rect(9, 18, 34, 46))

    def test_padded_crop_clipped_to_layer(self):
        layer = Rect(16, 12, 64, 48)
        sel = Rect(30, 20, 24, 16)
        self.assertEqual(logic.padded_crop(sel, layer), Rect(16, 12, 64, 48))
        big = Rect(0, 0, 4000, 3000)
        crop = logic.padded_crop(Rect(1000, 1000, 100, 50), big)
        self.assertEqual(crop, Rect(925, 925, 250, 200))  # pad = 0.75 * 100 = 75
        crop = logic.padded_crop(Rect(1000, 1000, 10, 10), big)
        self.assertEqual(crop, Rect(968, 968, 74, 74))  # min pad 32

    def test_plan_inpaint(self):
        layer = Rect(16, 12, 64, 48)
        with self.assertRaisesRegex(LivefillError, "selection"):
            logic.plan_inpaint(layer, None, "auto")
        with self.assertRaisesRegex(LivefillError, "overlap"):
            logic.plan_inpaint(layer, Rect(85, 65, 8, 8), "auto")
        self.assertEqual(logic.plan_inpaint(layer, Rect(30, 20, 8, 8), "full"), layer)
        # A selection sticking out of the layer only counts where it overlaps.
        big = Rect(0, 0, 1000, 1000)
        self.assertEqual(logic.plan_inpaint(big, Rect(-50, -50, 100, 100), "auto"),
                         Rect(0, 0, 88, 88))

    def test_extend_canvas(self):
        g = logic.extend_canvas(96, 80, 16, 8, 0, 24)
        self.assertEqual((g.new_width, g.new_height, g.shift_x, g.shift_y), (112, 112, 16, 8))
        with self.assertRaises(LivefillError):
            logic.extend_canvas(96, 80, 0, 0, 0, 0)
        with self.assertRaises(LivefillError):
            logic.extend_canvas(96, 80, -1, 0, 0, 4)

    def test_result_position(self):
        sent = Rect(16, 12, 64, 48)
        self.assertEqual(logic.result_position(sent, 0, 0), (16, 12))
        self.assertEqual(logic.result_position(Rect(16, 8, 96, 80), -16, -8), (0, 0))

    def test_preview_scale(self):
        self.assertEqual(logic.preview_scale(100, 50, 512), 1.0)
        self.assertEqual(logic.preview_scale(1024, 512, 512), 0.5)
        self.assertEqual(logic.preview_scale(1024, 512, 0), 1.0)
        self.assertEqual(logic.scaled_size(1024, 511, 0.5), (512, 255))


class SettingsTests(unittest.TestCase):
    def test_layer_name(self):
        self.assertEqual(logic.layer_name("inpaint", "a  red\nfox", 42),
                         "livefill inpaint: a red fox [seed 42]")
        self.assertEqual(logic.layer_name("txt2img", "", 1), "livefill generate: (no prompt) [seed 1]")
        long = logic.layer_name("img2img", "x" * 200, 3)
        self.assertLess(len(long), 90)
        self.assertIn("\u2026", long)

    def test_seeds(self):
        self.assertEqual(logic.effective_seed(7), 7)
        s = logic.effective_seed(-1, random.Random(1))
        self.assertTrue(0 <= s <= logic.MAX_SEED)
        self.assertIsNone(logic.seed_or_none(-1))
        self.assertEqual(logic.seed_or_none(5), 5)

    def test_validate(self):
        logic.validate(logic.Settings(prompt="x"), "txt2img")
        with self.assertRaisesRegex(LivefillError, "prompt"):
            logic.validate(logic.Settings(prompt="  "), "txt2img")
        logic.validate(logic.Settings(prompt=""), "inpaint")  # inpaint may go without a prompt
        with self.assertRaisesRegex(LivefillError, "Strength"):
            logic.validate(logic.Settings(strength=0.0), "img2img")
        with self.assertRaisesRegex(LivefillError, "Steps"):
            logic.validate(logic.Settings(steps=0), "img2img")
        with self.assertRaisesRegex(LivefillError, "Context"):
            logic.validate(logic.Settings(context="huge"), "inpaint")

    def test_resolve_socket(self):
        self.assertEqual(logic.resolve_socket(" /a.sock ", {}, lambda: "/d"), "/a.sock")
        self.assertEqual(logic.resolve_socket("", {"LIVEFILL_SOCKET": "/e.sock"}, lambda: "/d"), "/e.sock")
        self.assertEqual(logic.resolve_socket("", {"LIVEFILL_SOCKET": ""}, lambda: "/d"), "/d")

    def test_resolve_executable(self):
        self.assertEqual(logic.resolve_executable("/x/livefill", {}, lambda n: None), "/x/livefill")
        self.assertEqual(logic.resolve_executable("", {"LIVEFILL_EXE": "/y"}, lambda n: None), "/y")
        self.assertEqual(logic.resolve_executable("", {}, lambda n: "/usr/bin/" + n), "/usr/bin/livefill")
        self.assertIsNone(logic.resolve_executable("", {}, lambda n: None))

    def test_daemon_args(self):
        self.assertEqual(logic.daemon_args("/m"), ["--model", "/m"])
        self.assertEqual(logic.daemon_args("", {"LIVEFILL_MODEL": "/n"}), ["--model", "/n"])
        self.assertEqual(logic.daemon_args("", {}), [])


class RequestTests(unittest.TestCase):
    def roundtrip(self, req):
        return lp.decode_client_frame(lp.encode_client_message(req))

    def test_inpaint_request(self):
        s = logic.Settings(prompt="fox", negative_prompt="blur", seed=42, steps=3, guidance=1.5,
                           strength=0.8, context="full", feather=4, color_match=False)
        req = logic.build_request("inpaint", s, image=(2, 1, bytes(8)), mask=(2, 1, b"\x00\xff"))
        back = self.roundtrip(req)
        self.assertEqual(back.mode, lp.Mode.INPAINT)
        self.assertEqual(back.seed, 42)
        self.assertEqual(back.context, lp.Context.FULL)
        self.assertEqual(back.mask.pixels, b"\x00\xff")
        self.assertEqual(back.priority, lp.Priority.FINAL)
        self.assertEqual((back.width, back.height), (0, 0))
        self.assertAlmostEqual(back.strength, 0.8, places=5)

    def test_outpaint_and_txt2img_and_live(self):
        req = logic.build_request("outpaint", logic.Settings(seed=1), image=(1, 1, bytes(4)),
                                  extend=(1, 2, 3, 4))
        self.assertEqual(self.roundtrip(req).extend, lp.Extend(1, 2, 3, 4))
        req = logic.build_request("txt2img", logic.Settings(prompt="p", width=128, height=64))
        back = self.roundtrip(req)
        self.assertEqual((back.width, back.height, back.image), (128, 64, None))
        self.assertIsNone(back.seed)
        req = logic.build_request("img2img", logic.Settings(), image=(1, 1, bytes(4)), live=True)
        self.assertEqual(req.priority, lp.Priority.LIVE_PREVIEW)

    def test_pixel_size_checked(self):
        with self.assertRaisesRegex(LivefillError, "expected 8 bytes"):
            logic.build_request("img2img", logic.Settings(), image=(2, 1, bytes(7)))


class JobTests(unittest.TestCase):
    """run_job / poll_job / connect_or_start against the stand-in daemon over a real socket."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="livefill-gimp-logic-")
        cls.path = os.path.join(cls.tmp, "standin.sock")
        cls.srv = standin_server.listen(cls.path)
        threading.Thread(target=standin_server.accept_loop, args=(cls.srv,), daemon=True).start()

    @classmethod
    def tearDownClass(cls):
        cls.srv.close()

    def setUp(self):
        self.conn = logic.connect_or_start(livefill_client, self.path, None, [])

    def tearDown(self):
        self.conn.close()

    def test_inpaint_job_with_progress(self):
        seen = []
        mask = bytes([0, 255, 0, 255])
        req = logic.build_request("inpaint", logic.Settings(seed=5, steps=3),
                                  image=(2, 2, bytes(range(16))), mask=(2, 2, mask))
        res = logic.run_job(self.conn, req, lambda s, t: seen.append((s, t)), timeout=10)
        self.assertEqual(seen, [(1, 3), (2, 3), (3, 3)])
        self.assertEqual((res.image.width, res.image.height, res.offset_x, res.offset_y, res.seed),
                         (2, 2, 0, 0, 5))
        self.assertEqual(res.image.pixels[0:4], bytes(range(4)))  # unselected pixel kept
        self.assertEqual(res.image.pixels[4:8], bytes(standin_server.FILL))

    def test_outpaint_offsets(self):
        req = logic.build_request("outpaint", logic.Settings(), image=(2, 2, bytes(16)),
                                  extend=(3, 1, 0, 2))
        res = logic.run_job(self.conn, req, timeout=10)
        self.assertEqual((res.image.width, res.image.height, res.offset_x, res.offset_y),
                         (5, 5, -3, -1))

    def test_daemon_error_is_readable(self):
        req = logic.build_request("txt2img", logic.Settings(prompt="__error__"))
        with self.assertRaisesRegex(LivefillError, "stand-in refuses"):
            logic.run_job(self.conn, req, timeout=10)

    def test_timeout_cancels(self):
        req = logic.build_request("txt2img", logic.Settings(prompt="__none__"))
        t0 = time.monotonic()
        with self.assertRaisesRegex(LivefillError, "did not finish"):
            logic.run_job(self.conn, req, timeout=0.5)
        self.assertLess(time.monotonic() - t0, 3)

    def test_should_cancel(self):
        req = logic.build_request("txt2img", logic.Settings(prompt="__slow__", steps=20))
        t0 = time.monotonic()
        with self.assertRaises(logic.Cancelled):
            logic.run_job(self.conn, req, should_cancel=lambda: time.monotonic() - t0 > 0.4)

    def test_cancel_reported_by_daemon(self):
        req = logic.build_request("txt2img", logic.Settings(prompt="__slow__", steps=20))
        rid = self.conn.generate(req)
        self.conn.cancel(rid)
        deadline = time.monotonic() + 10
        outcome = None
        while outcome is None and time.monotonic() < deadline:
            outcome = logic.poll_job(self.conn, rid)
            time.sleep(0.05)
        self.assertEqual(outcome, ("superseded", None))

    def test_poll_job(self):
        req = logic.build_request("txt2img", logic.Settings(prompt="p", steps=1))
        rid = self.conn.generate(req)
        deadline = time.monotonic() + 10
        outcome = None
        while outcome is None and time.monotonic() < deadline:
            outcome = logic.poll_job(self.conn, rid)
            time.sleep(0.02)
        self.assertEqual(outcome[0], "result")
        self.assertEqual((outcome[1].image.width, outcome[1].image.height), (64, 64))


class ConnectTests(unittest.TestCase):
    def test_no_daemon_no_executable(self):
        with tempfile.TemporaryDirectory() as d:
            with self.assertRaisesRegex(LivefillError, "not running.*LIVEFILL_EXE"):
                logic.connect_or_start(livefill_client, os.path.join(d, "none.sock"), None, [])

    def test_bad_executable(self):
        with tempfile.TemporaryDirectory() as d:
            with self.assertRaisesRegex(LivefillError, "Could not start"):
                logic.connect_or_start(livefill_client, os.path.join(d, "none.sock"),
                                       os.path.join(d, "no-such-livefill"), [])

    def test_starts_the_daemon(self):
        # A fake "livefill" that runs the stand-in as "livefill serve --socket PATH".
        with tempfile.TemporaryDirectory() as d:
            exe = os.path.join(d, "livefill")
            with open(exe, "w") as f:
                f.write("#!/bin/sh\nexec %s %s \"$@\"\n" % (
                    sys.executable, os.path.join(HERE, "standin_server.py")))
            os.chmod(exe, os.stat(exe).st_mode | stat.S_IEXEC)
            path = os.path.join(d, "started.sock")
            conn = logic.connect_or_start(livefill_client, path, exe, ["--model", "/m"], 30)
            try:
                self.assertEqual(conn.hello.daemon_version, "standin")
                conn.shutdown_daemon()
            finally:
                conn.close()


if __name__ == "__main__":
    unittest.main()
