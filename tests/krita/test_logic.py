"""Plain-Python tests of the Krita plugin's Krita-free modules (pixels, logic).

Why this exists: plans, offsets and masks decide whether a result lands in the right place;
these run in milliseconds with any Python 3.8+, no Krita needed. What the plugin shares with the
GIMP plug-in (rectangles, settings, request fields, the context rule, layer names, error texts)
is tested once, in ``protocol/python/test_livefill_plugin_core.py``.

Run: python3 -m unittest tests/krita/test_logic.py   (from the repository root)
"""

import os
import sys
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "plugin-krita"))
sys.path.insert(0, os.path.join(ROOT, "protocol", "python"))

import livefill_plugin_core as core  # noqa: E402
import livefill_protocol as proto  # noqa: E402
from livefill_krita import logic  # noqa: E402
from livefill_krita import pixels as px  # noqa: E402

Rect = core.Rect

CANVAS = Rect(0, 0, 200, 150)


def rgba(w, h, color=(10, 20, 30, 255)):
    return bytes(color) * (w * h)


def pixel(buf, w, x, y):
    i = (y * w + x) * 4
    return tuple(buf[i:i + 4])


class PixelsTest(unittest.TestCase):
    def test_crop_and_paste_roundtrip(self):
        w, h = 7, 5
        buf = bytes(i % 251 for i in range(w * h * 4))
        part = px.crop(buf, w, h, Rect(2, 1, 3, 2))
        self.assertEqual(part[:4], buf[(1 * w + 2) * 4:(1 * w + 2) * 4 + 4])
        out = bytearray(w * h * 4)
        px.paste(out, w, h, part, Rect(2, 1, 3, 2))
        self.assertEqual(px.crop(bytes(out), w, h, Rect(2, 1, 3, 2)), part)

    def test_crop_outside_is_transparent(self):
        buf = rgba(4, 4)
        part = px.crop(buf, 4, 4, Rect(-2, -2, 4, 4))
        self.assertEqual(pixel(part, 4, 0, 0), (0, 0, 0, 0))
        self.assertEqual(pixel(part, 4, 3, 3), (10, 20, 30, 255))

    def test_multiply_alpha_binary_and_soft(self):
        buf = rgba(4, 1, (100, 110, 120, 200))
        out = px.multiply_alpha(buf, bytes((0, 255, 0, 255)))
        self.assertEqual(pixel(out, 4, 0, 0), (0, 0, 0, 0))  # fully masked pixels zeroed entirely
        self.assertEqual(pixel(out, 4, 1, 0), (100, 110, 120, 200))
        soft = px.multiply_alpha(buf, bytes((128, 255, 0, 64)))
        self.assertEqual(pixel(soft, 4, 0, 0), (100, 110, 120, 100))
        self.assertEqual(pixel(soft, 4, 3, 0), (100, 110, 120, 50))
        self.assertEqual(pixel(soft, 4, 2, 0), (0, 0, 0, 0))
        with self.assertRaises(ValueError):
            px.multiply_alpha(buf, bytes(3))

    def test_transparent_inside_and_bounds(self):
        m = px.transparent_inside(6, 4, Rect(1, 1, 3, 2))
        self.assertEqual(m[0:6], b"\xff" * 6)
        self.assertEqual(m[6:12], b"\xff\x00\x00\x00\xff\xff")
        buf = px.multiply_alpha(rgba(6, 4), px.transparent_inside(6, 4, Rect(0, 0, 6, 4)))
        self.assertIsNone(px.opaque_bounds(buf, 6, 4))
        img = bytearray(6 * 4 * 4)
        img[(2 * 6 + 3) * 4 + 3] = 255
        img[(1 * 6 + 1) * 4 + 3] = 9
        self.assertEqual(px.opaque_bounds(bytes(img), 6, 4), Rect(1, 1, 3, 2))

    def test_checksum_sees_changes(self):
        a = rgba(8, 8)
        b = bytearray(a)
        b[100] ^= 1
        self.assertNotEqual(px.checksum(a), px.checksum(bytes(b)))
        self.assertEqual(px.checksum(a, b"x"), px.checksum(a, b"x"))

    def test_bgra_swap_roundtrip(self):
        bgra = bytes((1, 2, 3, 4, 5, 6, 7, 8))
        rgba_ = proto.bgra_to_rgba(bgra)
        self.assertEqual(rgba_, bytes((3, 2, 1, 4, 7, 6, 5, 8)))
        self.assertEqual(proto.rgba_to_bgra(rgba_), bgra)


class PlanTest(unittest.TestCase):
    def test_fill_with_selection_sends_context(self):
        plan = logic.plan_fill(CANVAS, Rect(60, 40, 64, 48), "a fox")
        self.assertEqual(plan.mode, proto.Mode.INPAINT)
        self.assertEqual(plan.target, Rect(60, 40, 64, 48))
        self.assertEqual(plan.region, Rect(28, 8, 128, 112))  # 32 px (half of 64) each side
        self.assertEqual(plan.region, core.context_region(plan.target, CANVAS))
        self.assertTrue(CANVAS.contains(plan.region))
        near_edge = logic.plan_fill(CANVAS, Rect(0, 140, 300, 20))
        self.assertEqual(near_edge.target, Rect(0, 140, 200, 10))
        self.assertTrue(CANVAS.contains(near_edge.region))

    def test_fill_without_selection_is_img2img_of_the_canvas(self):
        plan = logic.plan_fill(CANVAS, None)
        self.assertEqual(plan.mode, proto.Mode.IMG2IMG)
        self.assertEqual((plan.region, plan.target), (CANVAS, CANVAS))
        self.assertFalse(plan.has_selection)

    def test_fill_selection_outside_canvas(self):
        with self.assertRaises(logic.PlanError):
            logic.plan_fill(CANVAS, Rect(300, 300, 10, 10))

    def test_expand(self):
        plan = logic.plan_expand(CANVAS, logic.Sides(32, left=True, top=False, right=True, bottom=True))
        self.assertEqual(plan.mode, proto.Mode.OUTPAINT)
        self.assertEqual(plan.extend, (32, 0, 32, 32))
        self.assertEqual(plan.target, Rect(0, 0, 264, 182))
        with self.assertRaises(logic.PlanError):
            logic.plan_expand(CANVAS, logic.Sides(32, False, False, False, False))
        with self.assertRaises(logic.PlanError):
            logic.plan_expand(CANVAS, logic.Sides(0, True, True, True, True))

    def test_generate_size(self):
        plan = logic.plan_generate(CANVAS, Rect(10, 10, 101, 67))
        self.assertEqual((plan.width, plan.height), (96, 64))
        self.assertEqual(plan.target, Rect(10, 10, 101, 67))
        self.assertEqual(logic.txt2img_size(4000, 3000, 1024), (1024, 768))
        self.assertEqual(logic.txt2img_size(3, 3, 0), (8, 8))


class RequestTest(unittest.TestCase):
    def settings(self, **kw):
        base = dict(prompt="a fox", negative_prompt="blurry", strength=0.6, steps=3, guidance=1.5, seed=None)
        base.update(kw)
        return core.Settings(**base)

    def test_inpaint_request_roundtrips_through_the_codec(self):
        plan = logic.plan_fill(CANVAS, Rect(60, 40, 64, 48), "a fox")
        r = plan.region
        plan.mask = bytes(r.width * r.height)
        req = logic.build_request(plan, self.settings(seed=5), 17, rgba(r.width, r.height))
        self.assertEqual(req.request_id, 17)
        self.assertEqual(req.mode, proto.Mode.INPAINT)
        self.assertEqual((req.image.width, req.image.height), (r.width, r.height))
        self.assertEqual((req.mask.width, req.mask.height), (r.width, r.height))
        self.assertEqual(req.priority, proto.Priority.FINAL)
        self.assertEqual((req.seed, req.steps, req.strength), (5, 3, 0.6))
        frame = proto.encode_client_message(req)
        back = proto.decode_client_frame(frame)
        self.assertEqual(back.mask.pixels, req.mask.pixels)
        self.assertEqual(back.prompt, "a fox")
        self.assertEqual(back.negative_prompt, "blurry")

    def test_live_request_priority_and_seed(self):
        plan = logic.plan_fill(CANVAS, None, live=True)
        req = logic.build_request(plan, self.settings(), 1, rgba(200, 150), seed=99)
        self.assertEqual(req.priority, proto.Priority.LIVE_PREVIEW)
        self.assertEqual(req.seed, 99)
        self.assertIsNone(req.mask)

    def test_txt2img_and_outpaint_requests(self):
        gen = logic.plan_generate(CANVAS, None)
        req = logic.build_request(gen, self.settings(), 2, None)
        self.assertIsNone(req.image)
        self.assertEqual((req.width, req.height), (200, 144))
        exp = logic.plan_expand(CANVAS, logic.Sides(16, left=True, top=True, right=False, bottom=False))
        req = logic.build_request(exp, self.settings(), 3, rgba(200, 150))
        self.assertEqual((req.extend.left, req.extend.top, req.extend.right, req.extend.bottom), (16, 16, 0, 0))
        with self.assertRaises(ValueError):
            logic.build_request(exp, self.settings(), 4, rgba(10, 10))

    def test_clamps(self):
        plan = logic.plan_fill(CANVAS, None)
        req = logic.build_request(plan, self.settings(strength=5.0, steps=0), 1, rgba(200, 150))
        self.assertEqual((req.strength, req.steps), (1.0, 1))

    def test_plugin_defaults_reach_the_wire(self):
        plan = logic.plan_fill(CANVAS, None)
        req = logic.build_request(plan, core.Settings(), 1, rgba(200, 150))
        self.assertEqual((req.feather, req.color_match), (core.DEFAULT_FEATHER, core.DEFAULT_COLOR_MATCH))
        self.assertAlmostEqual(req.strength, core.DEFAULT_STRENGTH)


class UncoveredBandsTest(unittest.TestCase):
    def test_bands_cover_exactly_the_old_area_outside_the_new(self):
        old, new = Rect(0, 0, 100, 80), Rect(20, 10, 50, 40)
        bands = logic.uncovered_bands(old, new)
        covered = set()
        for b in bands:
            cells = {(x, y) for x in range(b.x, b.right) for y in range(b.y, b.bottom)}
            self.assertFalse(cells & covered, "bands overlap")
            covered |= cells
        expected = {(x, y) for x in range(100) for y in range(80)} - {
            (x, y) for x in range(20, 70) for y in range(10, 50)}
        self.assertEqual(covered, expected)

    def test_nothing_to_clear_when_the_new_rect_covers_the_old(self):
        self.assertEqual(logic.uncovered_bands(Rect(5, 5, 10, 10), Rect(0, 0, 64, 64)), ())
        self.assertEqual(logic.uncovered_bands(Rect(0, 0, 0, 0), Rect(0, 0, 64, 64)), ())
        self.assertEqual(logic.uncovered_bands(Rect(0, 0, 8, 8), Rect(50, 50, 8, 8)), (Rect(0, 0, 8, 8),))


class LiveScalingTest(unittest.TestCase):
    def test_large_live_layers_are_sent_scaled_down_and_placed_back_full_size(self):
        big = Rect(0, 0, 4096, 3000)
        plan = logic.plan_fill(big, None, live=True)
        self.assertEqual(plan.sent, (512, 375))
        req = logic.build_request(plan, core.Settings(), 1, rgba(512, 375))
        self.assertEqual((req.image.width, req.image.height), (512, 375))
        with self.assertRaises(ValueError):  # the full-size pixels are not what is sent
            logic.build_request(plan, core.Settings(), 1, rgba(4096, 3000))
        scaled = []

        def scaler(pixels, w, h, tw, th):
            scaled.append((w, h, tw, th))
            return logic.scale_nearest(pixels, w, h, tw, th)

        out = logic.place_result(plan, rgba(512, 375, (9, 8, 7, 255)), 512, 375, scale=scaler)
        self.assertEqual(out.rect, big)
        self.assertEqual(scaled, [(512, 375, 4096, 3000)])
        self.assertEqual(pixel(out.pixels, big.width, 4095, 2999), (9, 8, 7, 255))

    def test_small_layers_fills_and_selections_are_sent_as_they_are(self):
        self.assertIsNone(logic.plan_fill(CANVAS, None, live=True).sent)
        self.assertIsNone(logic.plan_fill(Rect(0, 0, 4096, 4096), None).sent)  # Fill: full quality
        self.assertIsNone(logic.plan_fill(Rect(0, 0, 4096, 4096), Rect(10, 10, 64, 64), live=True).sent)
        self.assertEqual(logic.live_send_size(2000, 500), (512, 128))
        self.assertEqual(logic.live_send_size(100, 60, limit=50), (50, 30))

    def test_scaled_result_with_an_offset_lands_scaled(self):
        plan = logic.plan_fill(Rect(0, 0, 1024, 1024), None, live=True)
        self.assertEqual(plan.sent, (512, 512))
        out = logic.place_result(plan, rgba(100, 50), 100, 50, 10, 20)
        self.assertEqual(out.rect, Rect(20, 40, 200, 100))


class PlacementTest(unittest.TestCase):
    def test_fill_result_is_cut_to_the_selection(self):
        sel = Rect(60, 40, 64, 48)
        plan = logic.plan_fill(CANVAS, sel)
        r = plan.region
        mask = bytearray(r.width * r.height)
        # Select only the left half of the selection's bounding box, soft on one column.
        for y in range(sel.y - r.y, sel.y - r.y + sel.height):
            for x in range(sel.x - r.x, sel.x - r.x + 32):
                mask[y * r.width + x] = 255
            mask[y * r.width + sel.x - r.x + 32] = 128
        plan.mask = bytes(mask)
        out = logic.place_result(plan, rgba(r.width, r.height, (200, 0, 200, 255)), r.width, r.height)
        self.assertEqual(out.rect, sel)
        self.assertIsNone(out.resize)
        self.assertEqual(pixel(out.pixels, sel.width, 0, 0), (200, 0, 200, 255))
        self.assertEqual(pixel(out.pixels, sel.width, 32, 5), (200, 0, 200, 128))
        self.assertEqual(pixel(out.pixels, sel.width, 40, 5), (0, 0, 0, 0))

    def test_fill_result_with_offset_crop(self):
        # The daemon may answer with only the part it regenerated: offset in region coordinates.
        sel = Rect(60, 40, 64, 48)
        plan = logic.plan_fill(CANVAS, sel)
        r = plan.region
        plan.mask = b"\xff" * (r.width * r.height)
        ox, oy = sel.x - r.x + 10, sel.y - r.y + 8
        out = logic.place_result(plan, rgba(20, 16), 20, 16, ox, oy)
        self.assertEqual(out.rect, Rect(70, 48, 20, 16))

    def test_fill_result_outside_the_selection_is_rejected(self):
        plan = logic.plan_fill(CANVAS, Rect(60, 40, 64, 48))
        with self.assertRaises(ValueError):
            logic.place_result(plan, rgba(4, 4), 4, 4, 0, 0)
        with self.assertRaises(ValueError):
            logic.place_result(plan, rgba(4, 4), 5, 4, 0, 0)

    def test_img2img_result_covers_the_canvas(self):
        plan = logic.plan_fill(CANVAS, None)
        out = logic.place_result(plan, rgba(200, 150), 200, 150)
        self.assertEqual(out.rect, CANVAS)
        self.assertEqual(out.pixels, rgba(200, 150))

    def test_expand_keeps_only_the_new_border(self):
        plan = logic.plan_expand(CANVAS, logic.Sides(32, left=True, top=True, right=False, bottom=False))
        nw, nh = 232, 182
        out = logic.place_result(plan, rgba(nw, nh), nw, nh, -32, -32)
        self.assertEqual(out.resize, (-32, -32, nw, nh))
        self.assertEqual(out.rect, Rect(0, 0, nw, nh))
        self.assertEqual(pixel(out.pixels, nw, 0, 0)[3], 255)
        self.assertEqual(pixel(out.pixels, nw, 31, 100)[3], 255)
        self.assertEqual(pixel(out.pixels, nw, 32, 32), (0, 0, 0, 0))
        self.assertEqual(pixel(out.pixels, nw, nw - 1, nh - 1), (0, 0, 0, 0))

    def test_generate_scales_to_the_target_and_masks(self):
        sel = Rect(10, 20, 30, 20)
        plan = logic.plan_generate(CANVAS, sel)
        mask = bytearray(b"\xff" * (30 * 20))
        mask[0] = 0
        plan.mask = bytes(mask)
        out = logic.place_result(plan, rgba(64, 64), 64, 64)
        self.assertEqual(out.rect, sel)
        self.assertEqual(len(out.pixels), 30 * 20 * 4)
        self.assertEqual(pixel(out.pixels, 30, 0, 0), (0, 0, 0, 0))
        self.assertEqual(pixel(out.pixels, 30, 1, 0), (10, 20, 30, 255))

    def test_scale_nearest(self):
        src = bytes((1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4))  # 2x2
        out = logic.scale_nearest(src, 2, 2, 4, 4)
        self.assertEqual(pixel(out, 4, 0, 0), (1, 1, 1, 1))
        self.assertEqual(pixel(out, 4, 3, 0), (2, 2, 2, 2))
        self.assertEqual(pixel(out, 4, 3, 3), (4, 4, 4, 4))


class TextTest(unittest.TestCase):
    def test_layer_names_use_the_buttons_words(self):
        self.assertEqual(core.layer_name(logic.KIND_FILL, "a red fox", 42), "livefill fill: a red fox [seed 42]")
        self.assertEqual(core.layer_name(logic.KIND_LIVE, "", None), "livefill live: (no prompt)")

    def test_error_texts_point_to_the_docker(self):
        self.assertIn("docker", core.error_text(proto.ErrorCode.NO_MODEL, "", logic.KRITA))
        self.assertIn("install-plugin krita", core.error_text(proto.ErrorCode.UNSUPPORTED_VERSION, "", logic.KRITA))
        text = core.describe_connect_error(FileNotFoundError(), logic.KRITA, started=False)
        self.assertIn("Fill", text)

    def test_a_daemon_gone_mid_job_names_the_button_and_what_restarts_it(self):
        text = core.connection_end_text(ConnectionResetError(104, "Connection reset by peer"), logic.KRITA, "Fill")
        self.assertTrue(text.startswith("The livefill daemon stopped while working on the Fill request"), text)
        self.assertIn("The next Fill, Expand, Generate or Live starts it again.", text)
        self.assertNotIn("Errno", text)

    def test_status_text(self):
        text = logic.status_text("NVIDIA H100 (cuda:0)", "sd-1.5-lcm", "CUDAExecutionProvider")
        self.assertIn("NVIDIA H100", text)
        self.assertIn("default model: sd-1.5-lcm", text)
        self.assertIn("cuda", text.lower())
        self.assertIn("DirectML", logic.status_text("AMD Radeon", "m", "DmlExecutionProvider".replace("Dml", "DirectML")))
        self.assertIn("none loaded", logic.status_text("cpu", ""))


if __name__ == "__main__":
    unittest.main()
