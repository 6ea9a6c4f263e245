"""Tests of the editor-independent plugin core (``livefill_plugin_core``), run once for both plugins.

Why this exists: geometry, the context rule, settings and their defaults, request building,
layer names, error texts and finding / starting the daemon decide what both the Krita and the
GIMP plugin send and show; they are pinned here with plain Python (plus the stand-in daemon for
connecting), so the editors' own tests only cover what is theirs. Run with
``protocol/python/run_tests.sh``.
"""

import os
import random
import stat
import sys
import tempfile
import unittest

import livefill_client as lc
import livefill_plugin_core as core
import livefill_protocol as proto

HERE = os.path.dirname(os.path.abspath(__file__))
STANDIN_DIR = os.path.join(HERE, "..", "..", "tests")
sys.path.insert(0, STANDIN_DIR)

import standin_daemon as standin  # noqa: E402

Rect = core.Rect
EDITOR = core.Editor(install_name="someeditor", client_name="core-test", daemon_settings="the test's settings",
                     starts_on="the first test", next_action="thing")


class RectTests(unittest.TestCase):
    def test_edges_and_emptiness(self):
        r = Rect(10, 20, 30, 40)
        self.assertEqual((r.right, r.bottom), (40, 60))
        self.assertFalse(r.is_empty())
        self.assertTrue(Rect(0, 0, 0, 5).is_empty())
        self.assertTrue(Rect(0, 0, 5, -1).is_empty())

    def test_intersect(self):
        self.assertEqual(Rect(10, 10, 50, 50).intersect(Rect(40, 30, 100, 10)), Rect(40, 30, 20, 10))
        self.assertEqual(Rect(10, 20, 30, 40).intersect(Rect(0, 0, 15, 25)), Rect(10, 20, 5, 5))
        self.assertTrue(Rect(0, 0, 5, 5).intersect(Rect(10, 10, 5, 5)).is_empty())

    def test_grow_translate_contains(self):
        self.assertEqual(Rect(10, 10, 5, 5).grow(1, 2, 3, 4), Rect(9, 8, 9, 11))
        self.assertEqual(Rect(1, 2, 3, 4).translate(-1, -2), Rect(0, 0, 3, 4))
        self.assertTrue(Rect(0, 0, 10, 10).contains(Rect(2, 2, 8, 8)))
        self.assertFalse(Rect(0, 0, 10, 10).contains(Rect(2, 2, 9, 8)))

    def test_is_a_tuple(self):
        x, y, width, height = Rect(1, 2, 3, 4)
        self.assertEqual((x, y, width, height), (1, 2, 3, 4))
        self.assertEqual(len({Rect(1, 2, 3, 4), Rect(1, 2, 3, 4)}), 1)


class ContextTests(unittest.TestCase):
    def test_padding_is_half_the_longer_side(self):
        big = Rect(0, 0, 4000, 3000)
        self.assertEqual(core.context_region(Rect(1000, 1000, 100, 50), big), Rect(950, 950, 200, 150))
        self.assertEqual(core.context_region(Rect(60, 40, 64, 48), Rect(0, 0, 200, 150)), Rect(28, 8, 128, 112))

    def test_padding_rounds_like_the_daemon(self):
        # Halves round up (Rust's f64::round), not to even: 0.5 * 101 = 50.5 -> 51, 51.5 -> 52.
        big = Rect(0, 0, 4000, 3000)
        self.assertEqual(core.context_region(Rect(1000, 1000, 101, 10), big).x, 949)
        self.assertEqual(core.context_region(Rect(1000, 1000, 103, 10), big).x, 948)

    def test_minimum_padding(self):
        big = Rect(0, 0, 4000, 3000)
        self.assertEqual(core.context_region(Rect(1000, 1000, 10, 10), big), Rect(968, 968, 74, 74))

    def test_clipped_to_the_limit(self):
        layer = Rect(16, 12, 64, 48)
        self.assertEqual(core.context_region(Rect(30, 20, 24, 16), layer), layer)
        region = core.context_region(Rect(0, 140, 200, 10), Rect(0, 0, 200, 150))
        self.assertTrue(Rect(0, 0, 200, 150).contains(region))
        self.assertEqual(region, Rect(0, 40, 200, 110))


class SettingsTests(unittest.TestCase):
    def test_defaults_are_the_daemons(self):
        s = core.Settings()
        self.assertEqual((s.steps, s.guidance, s.feather, s.color_match), (4, 1.0, 8, True))
        self.assertEqual((s.seed, s.context, s.source), (None, core.CONTEXT_AUTO, core.SOURCE_LAYER))

    def test_validate(self):
        core.validate(core.Settings(prompt="x"), proto.Mode.TXT2IMG)
        with self.assertRaisesRegex(core.PluginError, "prompt"):
            core.validate(core.Settings(prompt="  "), proto.Mode.TXT2IMG)
        core.validate(core.Settings(prompt=""), proto.Mode.INPAINT)  # inpaint may go without a prompt
        with self.assertRaisesRegex(core.PluginError, "Strength"):
            core.validate(core.Settings(strength=0.0), proto.Mode.IMG2IMG)
        core.validate(core.Settings(strength=0.0, prompt="x"), proto.Mode.TXT2IMG)  # unused there
        with self.assertRaisesRegex(core.PluginError, "Steps"):
            core.validate(core.Settings(steps=0), proto.Mode.IMG2IMG)
        with self.assertRaisesRegex(core.PluginError, "Guidance"):
            core.validate(core.Settings(guidance=-1), proto.Mode.IMG2IMG)
        with self.assertRaisesRegex(core.PluginError, "Context"):
            core.validate(core.Settings(context="huge"), proto.Mode.INPAINT)
        with self.assertRaisesRegex(core.PluginError, "Feather"):
            core.validate(core.Settings(feather=-1), proto.Mode.INPAINT)

    def test_pick_seed(self):
        self.assertEqual(core.pick_seed(7), 7)
        self.assertEqual(core.pick_seed(0), 0)
        a = core.pick_seed(None, random.Random(1))
        self.assertEqual(a, core.pick_seed(-1, random.Random(1)))
        self.assertTrue(0 <= a <= core.MAX_SEED)
        self.assertEqual(core.MAX_SEED, 2**31 - 1)  # fits a signed 32-bit editor argument


class SamplerTests(unittest.TestCase):
    def test_presets_fill_the_sampler_and_stay_editable(self):
        names = [p.name for p in core.PRESETS]
        for name in ("Real-time (LCM)", "Quality (DPM++ 2M Karras)", "Hyper/TCD", "Turbo/Lightning (Euler, trailing)"):
            self.assertIn(name, names)
        s = core.apply_preset(core.Settings(prompt="p", eta=0.9), "Quality (DPM++ 2M Karras)")
        self.assertEqual((s.sampler, s.spacing, s.steps, s.guidance, s.eta, s.prompt),
                         ("dpmpp_2m", "karras", 20, 7.0, None, "p"))
        self.assertEqual(core.preset_of(s), "Quality (DPM++ 2M Karras)")
        s.steps = 30  # editable: the preset is still recognised by its sampler
        self.assertEqual(core.preset_of(s), "Quality (DPM++ 2M Karras)")
        self.assertEqual(core.preset_of(core.Settings(sampler="ddim")), "")
        with self.assertRaises(core.PluginError):
            core.apply_preset(core.Settings(), "Fast")
        for p in core.PRESETS:  # every preset makes a valid request
            core.validate(core.apply_preset(core.Settings(prompt="x"), p.name), proto.Mode.TXT2IMG)

    def test_sampler_fields_reach_the_wire(self):
        s = core.apply_preset(core.Settings(), "Turbo/Lightning (Euler, trailing)")
        req = core.build_request(proto.Mode.IMG2IMG, s, image=(1, 1, bytes(4)))
        back = proto.decode_client_frame(proto.encode_client_message(req))
        self.assertEqual((back.sampler, back.spacing, back.eta), (proto.Sampler.EULER, proto.Spacing.TRAILING, None))
        default = core.build_request(proto.Mode.IMG2IMG, core.Settings(eta=0.5), image=(1, 1, bytes(4)))
        self.assertEqual((default.sampler, default.spacing, default.eta), (None, None, None))
        tcd = core.build_request(proto.Mode.IMG2IMG, core.Settings(sampler="tcd", eta=0.5), image=(1, 1, bytes(4)))
        self.assertEqual((tcd.sampler, tcd.eta), (proto.Sampler.TCD, 0.5))

    def test_validate_names_and_eta(self):
        with self.assertRaisesRegex(core.PluginError, "Unknown sampler"):
            core.validate(core.Settings(sampler="euler-a"), proto.Mode.IMG2IMG)
        with self.assertRaisesRegex(core.PluginError, "Spacing does not apply to lcm"):
            core.validate(core.Settings(sampler="lcm", spacing="karras"), proto.Mode.IMG2IMG)
        with self.assertRaisesRegex(core.PluginError, "Eta"):
            core.validate(core.Settings(sampler="ddim", eta=2.0), proto.Mode.IMG2IMG)

    def test_live_warning_on_a_model_that_is_not_lcm(self):
        lcm = proto.Capabilities(default_sampler=proto.Sampler.LCM, default_steps=4)
        quality = proto.Capabilities(default_sampler=proto.Sampler.DPMPP_2M, default_steps=20)
        self.assertIsNone(core.live_warning(lcm, core.Settings()))
        self.assertIsNone(core.live_warning(None, core.Settings()))
        self.assertIn("not be real time", core.live_warning(quality, core.Settings()))
        self.assertIn("dpmpp_2m", core.live_warning(quality, core.Settings()))
        slow = core.apply_preset(core.Settings(), "Quality (DPM++ 2M Karras)")
        self.assertIn("not be real time", core.live_warning(lcm, slow))

    def test_live_warning_follows_the_model_live_gets(self):
        # The hello (capabilities) describes the daemon's default, a plain model; Live's own model
        # (the LIVE one under Automatic, or the chosen one) is what counts.
        plain = proto.Capabilities(default_sampler=proto.Sampler.DPMPP_2M, default_steps=20)
        several = standin.SEVERAL
        self.assertIsNone(core.live_warning(plain, core.Settings(), several, "sd15-plain"))
        self.assertIsNone(core.live_warning(plain, core.Settings(model="lcm-dreamshaper"), several, "sd15-plain"))
        self.assertIn("not an LCM model",
                      core.live_warning(plain, core.Settings(model="sd15-plain"), several, "sd15-plain"))
        no_live = [m for m in several if proto.ModelRole.LIVE not in m.roles]
        self.assertIn("not an LCM model", core.live_warning(plain, core.Settings(), no_live, "sd15-plain"))
        self.assertIn("not an LCM model", core.live_warning(plain, core.Settings()))  # nothing listed

    def test_live_warning_judges_a_chosen_model_by_its_listing(self):
        # The hello describes an LCM default; the artist picks a plain fine-tune that is not the
        # default: its own listed default sampler (DPM++ 2M, 20 steps) is what Live would run.
        lcm = proto.Capabilities(default_sampler=proto.Sampler.LCM, default_steps=4)
        several = standin.SEVERAL
        warning = core.live_warning(lcm, core.Settings(model="dreamshaper-8"), several, "lcm-dreamshaper")
        self.assertIn("not an LCM model", warning)
        self.assertIn("dpmpp_2m, 20 steps", warning)
        self.assertIsNone(core.live_warning(lcm, core.Settings(model="lcm-dreamshaper"), several, "lcm-dreamshaper"))
        # A name the listing lacks (an older daemon's, a typo) is not judged.
        self.assertIsNone(core.live_warning(lcm, core.Settings(model="unlisted"), several, "lcm-dreamshaper"))


class RequestTests(unittest.TestCase):
    def roundtrip(self, req):
        return proto.decode_client_frame(proto.encode_client_message(req))

    def test_inpaint_request_roundtrips_through_the_codec(self):
        s = core.Settings(prompt="fox", negative_prompt="blur", seed=42, steps=3, guidance=1.5,
                          strength=0.8, context=core.CONTEXT_FULL, feather=4, color_match=False)
        req = core.build_request(proto.Mode.INPAINT, s, 17, image=(2, 1, bytes(8)), mask=(2, 1, b"\x00\xff"))
        back = self.roundtrip(req)
        self.assertEqual(back.request_id, 17)
        self.assertEqual(back.mode, proto.Mode.INPAINT)
        self.assertEqual((back.prompt, back.negative_prompt), ("fox", "blur"))
        self.assertEqual((back.seed, back.steps, back.feather, back.color_match), (42, 3, 4, False))
        self.assertEqual(back.context, proto.Context.FULL)
        self.assertEqual(back.mask.pixels, b"\x00\xff")
        self.assertEqual((back.image.width, back.image.height), (2, 1))
        self.assertEqual(back.priority, proto.Priority.FINAL)
        self.assertEqual((back.width, back.height), (0, 0))
        self.assertAlmostEqual(back.strength, 0.8, places=5)

    def test_outpaint_txt2img_and_live(self):
        req = core.build_request(proto.Mode.OUTPAINT, core.Settings(seed=1), image=(1, 1, bytes(4)),
                                 extend=(1, 2, 3, 4))
        self.assertEqual(self.roundtrip(req).extend, proto.Extend(1, 2, 3, 4))
        req = core.build_request(proto.Mode.TXT2IMG, core.Settings(prompt="p"), size=(128, 64))
        back = self.roundtrip(req)
        self.assertEqual((back.width, back.height, back.image), (128, 64, None))
        self.assertIsNone(back.seed)
        req = core.build_request(proto.Mode.IMG2IMG, core.Settings(), image=(1, 1, bytes(4)), size=(8, 8), live=True)
        self.assertEqual(req.priority, proto.Priority.LIVE_PREVIEW)
        self.assertEqual((req.width, req.height), (0, 0))  # a size is for txt2img only

    def test_defaults_reach_the_wire(self):
        req = core.build_request(proto.Mode.IMG2IMG, core.Settings(), image=(1, 1, bytes(4)))
        self.assertEqual((req.feather, req.color_match, req.context), (8, True, proto.Context.AUTO))

    def test_negative_seed_means_random(self):
        req = core.build_request(proto.Mode.TXT2IMG, core.Settings(prompt="p", seed=-1))
        self.assertIsNone(req.seed)

    def test_clamps(self):
        s = core.Settings(strength=5.0, steps=0, feather=-3)
        req = core.build_request(proto.Mode.IMG2IMG, s, image=(1, 1, bytes(4)))
        self.assertEqual((req.strength, req.steps, req.feather), (1.0, 1, 0))
        req = core.build_request(proto.Mode.IMG2IMG, core.Settings(strength=0.0), image=(1, 1, bytes(4)))
        self.assertAlmostEqual(req.strength, core.MIN_STRENGTH)

    def test_pixel_size_checked(self):
        with self.assertRaisesRegex(core.PluginError, "expected 8 bytes"):
            core.build_request(proto.Mode.IMG2IMG, core.Settings(), image=(2, 1, bytes(7)))
        with self.assertRaises(ValueError):
            core.build_request(proto.Mode.INPAINT, core.Settings(), image=(2, 1, bytes(8)), mask=(2, 1, bytes(1)))


def _info(name, channels=4, lcm=False, dtype="fp16", loaded=False, roles=(), load_error=""):
    return proto.ModelInfo(name, "/m/" + name, channels, lcm, dtype, False, loaded, list(roles), 0, 0, load_error)


GIMP_WORDS = core.Editor("gimp", "gimp", "x", "y", role_words=(
    (proto.ModelRole.INPAINT, "inpaint"), (proto.ModelRole.LIVE, "live"), (proto.ModelRole.DEFAULT, "generate")))
R = proto.ModelRole


class ModelTests(unittest.TestCase):
    def test_kind_and_label(self):
        self.assertEqual(core.model_kind(_info("a", channels=9, lcm=True)), "inpainting")
        self.assertEqual(core.model_kind(_info("a", lcm=True)), "LCM")
        self.assertEqual(core.model_kind(_info("a")), "plain")
        self.assertEqual(core.model_label(_info("sd-inpaint", channels=9, loaded=True)),
                         "sd-inpaint (inpainting, fp16, resident)")
        self.assertEqual(core.model_label(_info("lcm", lcm=True, dtype="fp32")), "lcm (LCM, fp32, not loaded)")
        broken = core.model_label(_info("bad", dtype="fp32", load_error="unet/model.onnx is truncated " + "x" * 80))
        self.assertTrue(broken.startswith("bad (plain, fp32, failed: unet/model.onnx is truncated"), broken)
        self.assertNotIn("not loaded", broken)
        self.assertLess(len(broken), 100)

    def test_roles_of_the_actions(self):
        self.assertEqual(core.role_for(proto.Mode.INPAINT), R.INPAINT)
        self.assertEqual(core.role_for(proto.Mode.OUTPAINT), R.INPAINT)
        self.assertEqual(core.role_for(proto.Mode.TXT2IMG), R.DEFAULT)
        self.assertEqual(core.role_for(proto.Mode.IMG2IMG), R.DEFAULT)
        self.assertEqual(core.role_for(proto.Mode.IMG2IMG, live=True), R.LIVE)
        self.assertEqual(core.role_for(proto.Mode.INPAINT, live=True), R.LIVE)

    def test_model_for_falls_back_to_the_default(self):
        models = [_info("plain", roles=[R.DEFAULT]), _info("inp", roles=[R.INPAINT])]
        self.assertEqual(core.model_for(models, R.INPAINT).name, "inp")
        self.assertEqual(core.model_for(models, R.LIVE).name, "plain")
        self.assertIsNone(core.model_for([_info("x"), _info("y")], R.LIVE))
        self.assertEqual(core.model_for([_info("only")], R.LIVE).name, "only")  # a daemon naming no roles

    def test_automatic_label_names_each_actions_model(self):
        self.assertEqual(core.automatic_label(standin.SEVERAL, EDITOR),
                         "Automatic (fill: sd-inpaint, live: lcm-dreamshaper, generate: sd15-plain)")
        self.assertEqual(core.automatic_label(standin.SEVERAL, GIMP_WORDS),
                         "Automatic (inpaint: sd-inpaint, live: lcm-dreamshaper, generate: sd15-plain)")
        shared = [_info("sd-inpaint", 9, roles=[R.INPAINT]), _info("lcm", lcm=True, roles=[R.DEFAULT, R.LIVE])]
        self.assertEqual(core.automatic_label(shared, EDITOR), "Automatic (fill: sd-inpaint, live/generate: lcm)")
        no_live = [_info("inp", 9, roles=[R.INPAINT]), _info("plain", roles=[R.DEFAULT])]
        self.assertEqual(core.automatic_label(no_live, EDITOR), "Automatic (fill: inp, live/generate: plain)")
        self.assertEqual(core.automatic_label([standin.MODEL], EDITOR), "Automatic (standin)")
        self.assertEqual(core.automatic_label(None, EDITOR), "Automatic (the daemon's choice)")
        self.assertEqual(core.automatic_label([], EDITOR), "Automatic (the daemon's choice)")

    def test_entries(self):
        entries = core.model_entries(standin.SEVERAL, "", EDITOR)
        self.assertEqual([e.name for e in entries], ["", "sd15-plain", "sd-inpaint", "lcm-dreamshaper", "dreamshaper-8",
                                                "broken-model"])
        self.assertTrue(entries[0].label.startswith("Automatic (fill: sd-inpaint"))
        self.assertEqual(entries[1].label, "sd15-plain (plain, fp16, resident)")
        self.assertEqual(entries[2].label, "sd-inpaint (inpainting, fp16, not loaded)")
        self.assertEqual(entries[3].label, "lcm-dreamshaper (LCM, fp32, not loaded)")
        self.assertFalse(any(e.broken for e in entries))
        broken = core.model_entries([_info("bad", load_error="gone")], "", EDITOR)[1]
        self.assertTrue(broken.broken)
        self.assertIn("gone", broken.tooltip)
        # A remembered choice shows before the daemon answered, not once it did.
        early = core.model_entries(None, "sd-inpaint", EDITOR)
        self.assertEqual([e.name for e in early], ["", "sd-inpaint"])
        self.assertIn("remembered", early[1].label)
        self.assertEqual([e.name for e in core.model_entries([_info("other")], "sd-inpaint", EDITOR)], ["", "other"])

    def test_check_choice(self):
        self.assertEqual(core.check_choice("sd-inpaint", standin.SEVERAL), ("sd-inpaint", None))
        self.assertEqual(core.check_choice("", standin.SEVERAL), ("", None))
        choice, note = core.check_choice("retired-model", standin.SEVERAL)
        self.assertEqual(choice, core.AUTOMATIC)
        self.assertIn("retired-model", note)
        self.assertIn("no longer offered", note)
        self.assertIn(core.BACK_TO_AUTOMATIC, note)

    def test_the_choice_reaches_the_wire(self):
        req = core.build_request(proto.Mode.INPAINT, core.Settings(model=" sd-inpaint "), image=(1, 1, bytes(4)),
                                 mask=(1, 1, b"\xff"))
        self.assertEqual(proto.decode_client_frame(proto.encode_client_message(req)).model, "sd-inpaint")
        self.assertEqual(core.build_request(proto.Mode.TXT2IMG, core.Settings(prompt="p")).model, "")

    def test_status_lines(self):
        self.assertEqual(core.result_status("livefill fill: fox [seed 7]", 1.25, "sd-inpaint"),
                         "Added layer \u201clivefill fill: fox [seed 7]\u201d (1.2 s, model sd-inpaint).")
        self.assertEqual(core.result_status("l", 2.0, ""), "Added layer \u201cl\u201d (2.0 s).")
        self.assertEqual(core.live_status(5, "lcm"), "Live preview updated (seed 5, model lcm).")
        self.assertEqual(core.loading_text(proto.ModelLoading(3, "sd-inpaint", 2, 5, "unet")),
                         "Loading model sd-inpaint: unet (2/5)\u2026")

    def test_model_errors(self):
        gone = core.error_text(proto.ErrorCode.NO_MODEL, "no model named 'x'", EDITOR, model="x")
        self.assertIn("\u201cx\u201d", gone)
        self.assertIn("Automatic", gone)
        self.assertIn(EDITOR.model_picker, gone)
        self.assertIn("no model loaded", core.error_text(proto.ErrorCode.NO_MODEL, "", EDITOR).lower())
        failed = core.error_text(proto.ErrorCode.MODEL_LOAD_FAILED, "unet/model.onnx is truncated: fetch it again",
                                 EDITOR, model="bad")
        self.assertIn("\u201cbad\u201d could not be loaded", failed)
        self.assertIn("unet/model.onnx is truncated: fetch it again", failed)
        auto = core.error_text(proto.ErrorCode.MODEL_LOAD_FAILED, "vae_decoder missing", EDITOR)
        self.assertIn("vae_decoder missing", auto)
        self.assertTrue(core.falls_back_to_automatic(proto.ErrorCode.NO_MODEL, "x"))
        self.assertFalse(core.falls_back_to_automatic(proto.ErrorCode.NO_MODEL, ""))
        self.assertFalse(core.falls_back_to_automatic(proto.ErrorCode.MODEL_LOAD_FAILED, "bad"))
        err = core.job_error(lc.DaemonError(proto.ErrorCode.MODEL_LOAD_FAILED, "file"), EDITOR, model="bad")
        self.assertIn("\u201cbad\u201d", str(err))

    def test_against_the_standin(self):
        with tempfile.TemporaryDirectory() as d:
            daemon = standin.StandinDaemon(os.path.join(d, "s.sock"), models=standin.SEVERAL,
                                           broken=standin.SEVERAL_BROKEN).start()
            self.addCleanup(daemon.stop)
            conn = core.open_connection(os.path.join(d, "s.sock"), None, [], EDITOR, start=False)
            self.addCleanup(conn.close)
            models = conn.list_models(timeout=5.0)
            labels = [e.label for e in core.model_entries(models, "", EDITOR)]
            self.assertEqual(labels[0], "Automatic (fill: sd-inpaint, live: lcm-dreamshaper, generate: sd15-plain)")
            self.assertIn("broken-model (plain, fp32, not loaded)", labels)
            served = {}
            for mode, live, chosen in ((proto.Mode.INPAINT, False, ""), (proto.Mode.IMG2IMG, True, ""),
                                       (proto.Mode.TXT2IMG, False, ""), (proto.Mode.TXT2IMG, False, "sd-inpaint")):
                req = core.build_request(mode, core.Settings(prompt="p", model=chosen), image=None if
                                         mode == proto.Mode.TXT2IMG else (1, 1, bytes(4)),
                                         mask=(1, 1, b"\xff") if mode == proto.Mode.INPAINT else None, live=live)
                served[(mode, live, chosen)] = conn.wait_for(conn.generate(req), timeout=5.0).model
                # The plugins' Automatic label names what the daemon then used.
                if not chosen:
                    self.assertEqual(served[(mode, live, chosen)],
                                     core.model_for(models, core.role_for(mode, live)).name)
            self.assertEqual(served[(proto.Mode.TXT2IMG, False, "sd-inpaint")], "sd-inpaint")
            req = core.build_request(proto.Mode.TXT2IMG, core.Settings(prompt="p", model="broken-model"))
            with self.assertRaises(lc.DaemonError) as cm:
                conn.wait_for(conn.generate(req), timeout=5.0)
            text = str(core.job_error(cm.exception, EDITOR, "broken-model"))
            self.assertIn("broken-model", text)
            self.assertIn("unet/model.onnx is truncated", text)
            broken = [e for e in core.model_entries(conn.list_models(timeout=5.0), "", EDITOR) if e.broken]
            self.assertEqual([e.name for e in broken], ["broken-model"])
            self.assertIn("failed: ", broken[0].label)


class LayerNameTests(unittest.TestCase):
    def test_names(self):
        self.assertEqual(core.layer_name("fill", "a red  fox\n", 42), "livefill fill: a red fox [seed 42]")
        self.assertEqual(core.layer_name("generate", "", 1), "livefill generate: (no prompt) [seed 1]")
        self.assertEqual(core.layer_name("live", "", None), "livefill live: (no prompt)")

    def test_long_prompts_are_cut(self):
        name = core.layer_name("img2img", "x" * 200, 3)
        self.assertIn("\u2026", name)
        self.assertEqual(len(core.short_prompt("x" * 200)), core.PROMPT_IN_NAME_LIMIT)
        self.assertEqual(core.short_prompt("y" * core.PROMPT_IN_NAME_LIMIT), "y" * core.PROMPT_IN_NAME_LIMIT)

    def test_livefill_layers(self):
        self.assertTrue(core.is_livefill_layer(core.layer_name("generate", "x" * 100, 1)))
        self.assertTrue(core.is_livefill_layer(core.PREVIEW_LAYER_NAME))
        self.assertFalse(core.is_livefill_layer("livefilling"))
        self.assertFalse(core.is_livefill_layer("Background"))


class ErrorTextTests(unittest.TestCase):
    def test_every_code_has_a_text(self):
        for code in proto.ErrorCode:
            text = core.error_text(code, "detail", EDITOR)
            self.assertTrue(text)
            self.assertNotIn("{", text)

    def test_texts_name_the_editor_and_keep_useful_details(self):
        self.assertIn("no model", core.error_text(proto.ErrorCode.NO_MODEL, "", EDITOR).lower())
        self.assertIn("the test's settings", core.error_text(proto.ErrorCode.NO_MODEL, "", EDITOR))
        self.assertIn("install-plugin someeditor", core.error_text(proto.ErrorCode.UNSUPPORTED_VERSION, "", EDITOR))
        self.assertIn("memory", core.error_text(proto.ErrorCode.OUT_OF_MEMORY, "x", EDITOR).lower())
        self.assertIn("boom", core.error_text(proto.ErrorCode.INTERNAL, "boom", EDITOR))
        self.assertNotIn("boom", core.error_text(proto.ErrorCode.OUT_OF_MEMORY, "boom", EDITOR))

    def test_job_errors(self):
        cancelled = core.job_error(lc.DaemonError(proto.ErrorCode.CANCELLED, "c"), EDITOR)
        self.assertIsInstance(cancelled, core.Cancelled)
        refused = core.job_error(lc.DaemonError(proto.ErrorCode.INVALID_REQUEST, "bad steps"), EDITOR)
        self.assertNotIsInstance(refused, core.Cancelled)
        self.assertIn("bad steps", str(refused))
        self.assertIsInstance(core.job_error(lc.SupersededError(1, 2), EDITOR), core.Cancelled)

    def test_a_daemon_gone_mid_job_is_said_plainly(self):
        for reason in (None, ConnectionResetError(104, "Connection reset by peer"), BrokenPipeError(32, "x"),
                       proto.Truncated(12, 5)):
            with self.subTest(reason=reason):
                closed = lc.ConnectionClosed("connection closed while waiting for request 3")
                closed.__cause__ = reason
                text = str(core.job_error(closed, EDITOR, what="Fill"))
                self.assertTrue(text.startswith("The livefill daemon stopped while working on the Fill request: "
                                                "it crashed or was killed"), text)
                self.assertIn("Nothing was added to your image.", text)
                self.assertIn("The next thing starts it again.", text)
                self.assertIn(lc.daemon_log_path(), text)
                self.assertNotIn("Errno", text)
                self.assertNotIn("reset by peer", text)
        self.assertIn("working on the request:", str(core.job_error(lc.ConnectionClosed(), EDITOR)))

    def test_how_a_connection_ended(self):
        idle = core.connection_end_text(None, EDITOR)
        self.assertTrue(idle.startswith("The livefill daemon stopped: it crashed or was killed"), idle)
        self.assertNotIn("Nothing was added", idle)  # no job was in flight
        self.assertIn("The next thing starts it again.", idle)
        shut = core.connection_end_text(lc.DaemonShutDown("x"), EDITOR, "generate")
        self.assertEqual(shut, "The livefill daemon shut down before it finished the generate request. Nothing was "
                               "added to your image. The next thing starts it again.")
        said = core.connection_end_text(lc.DaemonError(proto.ErrorCode.BAD_FRAME, "undecodable payload"), EDITOR, "")
        self.assertEqual(said, "The livefill daemon ended the connection while working on the request: The daemon "
                               "could not read the request (please report): undecodable payload. Nothing was added to "
                               "your image.")
        unreadable = core.connection_end_text(proto.DecodeError("bad tag 9"), EDITOR)
        self.assertIn("bad tag 9", unreadable)
        self.assertIn("install-plugin someeditor", unreadable)

    def test_connect_errors(self):
        text = core.describe_connect_error(FileNotFoundError(), EDITOR, started=False)
        self.assertIn("the first test", text)
        text = core.describe_connect_error(lc.DaemonStartError("cannot start '/x': no such file"), EDITOR, True)
        self.assertIn("could not be started (no such file)", text)
        self.assertIn("the test's settings", text)
        text = core.describe_connect_error(proto.UnsupportedVersion(9), EDITOR, True)
        self.assertIn("install-plugin someeditor", text)

    def test_a_socket_whose_daemon_is_gone(self):
        gone = lc.ClosedBeforeHello("/run/fwd.sock")
        gone.__cause__ = ConnectionResetError(104, "Connection reset by peer")
        text = core.describe_connect_error(gone, EDITOR, True, "/run/fwd.sock")
        self.assertTrue(text.startswith("Something at /run/fwd.sock accepted the connection but closed it before "
                                        "the livefill daemon answered: the daemon behind that socket is not running."),
                        text)
        self.assertIn("start it on the other machine (`livefill serve`) or check the tunnel", text)
        self.assertNotIn("Errno", text)


class FindDaemonTests(unittest.TestCase):
    def test_resolve_socket(self):
        self.assertEqual(core.resolve_socket(" /a.sock ", {}, lambda: "/d"), "/a.sock")
        self.assertEqual(core.resolve_socket("", {"LIVEFILL_SOCKET": "/e.sock"}, lambda: "/d"), "/e.sock")
        self.assertEqual(core.resolve_socket("", {"LIVEFILL_SOCKET": ""}, lambda: "/d"), "/d")

    def test_find_livefill_precedence(self):
        none = lambda name: None  # noqa: E731
        env = {"LIVEFILL_BIN": "/bin-env", "LIVEFILL_EXE": "/exe-env"}
        self.assertEqual(core.find_livefill(" /x/livefill ", env, none, ()), "/x/livefill")
        self.assertEqual(core.find_livefill("", env, none, ()), "/bin-env")
        self.assertEqual(core.find_livefill("", {"LIVEFILL_EXE": "/y"}, none, ()), "/y")  # deprecated alias
        self.assertEqual(core.find_livefill("", {"LIVEFILL_BIN": " "}, lambda n: "/usr/bin/" + n, ()),
                         "/usr/bin/livefill")
        self.assertIsNone(core.find_livefill("", {}, none, ()))

    def test_find_livefill_in_user_bin_dirs(self):
        with tempfile.TemporaryDirectory() as d:
            self.assertIsNone(core.find_livefill("", {}, lambda n: None, (d,)))
            exe = os.path.join(d, "livefill")
            with open(exe, "w") as f:
                f.write("#!/bin/sh\n")
            self.assertIsNone(core.find_livefill("", {}, lambda n: None, (d,)))  # not executable
            os.chmod(exe, 0o755)
            self.assertEqual(core.find_livefill("", {}, lambda n: None, (d,)), exe)

    def test_daemon_args(self):
        self.assertEqual(core.daemon_args(" /m "), ["--model", "/m"])
        self.assertEqual(core.daemon_args("", {"LIVEFILL_MODEL": "/n"}), ["--model", "/n"])
        self.assertEqual(core.daemon_args("", {}), [])


class ConnectTests(unittest.TestCase):
    """open_connection / connect_or_start against the stand-in daemon over a real socket."""

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)

    def path(self, name):
        return os.path.join(self.dir.name, name)

    def test_connects_to_a_running_daemon(self):
        daemon = standin.StandinDaemon(self.path("up.sock")).start()
        self.addCleanup(daemon.stop)
        conn = core.open_connection(self.path("up.sock"), None, [], EDITOR, start=False)
        self.addCleanup(conn.close)
        self.assertEqual(conn.hello, standin.hello())
        self.assertEqual(daemon.received[0].client_name, "core-test")

    def test_nothing_listening_without_start(self):
        with self.assertRaises(FileNotFoundError):
            core.open_connection(self.path("none.sock"), "/nonexistent/livefill", [], EDITOR, start=False)

    def test_no_daemon_no_executable(self):
        with self.assertRaisesRegex(core.PluginError, "not running.*could not be started.*LIVEFILL_BIN"):
            core.connect_or_start(self.path("none.sock"), None, [], EDITOR)

    def test_bad_executable(self):
        with self.assertRaisesRegex(core.PluginError, "could not be started"):
            core.connect_or_start(self.path("none.sock"), self.path("no-such-livefill"), [], EDITOR)

    def test_refused_handshake_is_explained(self):
        daemon = standin.StandinDaemon(self.path("old.sock"), refuse_version=True).start()
        self.addCleanup(daemon.stop)
        with self.assertRaisesRegex(core.PluginError, "install-plugin someeditor"):
            core.connect_or_start(self.path("old.sock"), None, [], EDITOR)

    def test_a_socket_that_drops_the_hello_is_explained_and_starts_nothing(self):
        # An ssh-forwarded socket whose remote daemon stopped: the connection is accepted, then
        # reset (hello unread) or ended (hello read). The executable must not be started.
        marker = self.path("started")
        exe = self.path("livefill-marker")
        with open(exe, "w") as f:
            f.write("#!/bin/sh\ntouch '%s'\n" % marker)
        os.chmod(exe, 0o755)
        for how in ("reset", "eof"):
            with self.subTest(how=how):
                sock = self.path(how + ".sock")
                daemon = standin.StandinDaemon(sock, close_before_hello=how).start()
                self.addCleanup(daemon.stop)
                with self.assertRaises(core.PluginError) as cm:
                    core.connect_or_start(sock, exe, [], EDITOR, start_timeout=5.0)
                text = str(cm.exception)
                self.assertIn("Something at %s accepted the connection" % sock, text)
                self.assertIn("the daemon behind that socket is not running", text)
                self.assertIn("check the tunnel", text)
                self.assertNotIn("Errno", text)
                self.assertFalse(os.path.exists(marker), "a local daemon was started")

    def test_a_job_whose_daemon_dies_is_explained(self):
        daemon = standin.StandinDaemon(self.path("drop.sock")).start()
        self.addCleanup(daemon.stop)
        conn = core.open_connection(self.path("drop.sock"), None, [], EDITOR, start=False)
        self.addCleanup(conn.close)
        rid = conn.generate(core.build_request(proto.Mode.TXT2IMG, core.Settings(prompt="__drop__")))
        with self.assertRaises(lc.ConnectionClosed) as cm:
            conn.wait_for(rid, timeout=10.0)
        text = str(core.job_error(cm.exception, EDITOR, what="Generate"))
        self.assertTrue(text.startswith("The livefill daemon stopped while working on the Generate request"), text)

    def test_starts_the_daemon(self):
        # A "livefill" that runs the stand-in as "livefill serve --socket PATH --model M".
        exe = self.path("livefill")
        with open(exe, "w") as f:
            f.write("#!/bin/sh\nexec %s %s \"$@\" --idle-exit 20\n"
                    % (sys.executable, os.path.join(STANDIN_DIR, "standin_daemon.py")))
        os.chmod(exe, os.stat(exe).st_mode | stat.S_IEXEC)
        conn = core.connect_or_start(self.path("started.sock"), exe, ["--model", "/m"], EDITOR, 30)
        try:
            self.assertEqual(conn.hello, standin.hello())
            conn.shutdown_daemon()
        finally:
            conn.close()


if __name__ == "__main__":
    unittest.main()
