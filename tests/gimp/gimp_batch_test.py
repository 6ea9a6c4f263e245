# Batch script for real GIMP 3 (python-fu-eval): exercises the installed livefill plug-in's
# procedures non-interactively and writes what it saw as JSON to $LIVEFILL_TEST_OUT.
#
# Exists because gimp-console's exit code does not reflect failures inside a batch script: every
# check is recorded (name, ok, detail) and run_gimp_tests.sh asserts on the JSON.
#
# Environment: LIVEFILL_SOCKET (the daemon, as seen from inside GIMP's root), LIVEFILL_TEST_OUT
# (where to write the JSON), LIVEFILL_TEST_EXPECT ("standin" = the stand-in daemon's exact
# geometry and colours; "daemon" = the real daemon: geometry rules only). The faults run
# (LIVEFILL_TEST_ONLY=faults) kills the daemon mid-job and expects the plug-in to start it again
# from $LIVEFILL_BIN / $LIVEFILL_MODEL (paths inside GIMP's root); it watches the daemon through
# the installed plug-in's copy of the shared client (LIVEFILL_PLUGIN_DIR, default the profile's).

import hashlib
import json
import os
import signal
import socket
import struct
import sys
import threading
import time
import traceback

from gi.repository import Gegl, Gimp, GLib  # noqa: F401

OUT = os.environ.get("LIVEFILL_TEST_OUT", "/tmp/livefill-gimp-results.json")
SOCKET = os.environ.get("LIVEFILL_SOCKET", "")
EXPECT = os.environ.get("LIVEFILL_TEST_EXPECT", "daemon")
STEPS = int(os.environ.get("LIVEFILL_TEST_STEPS", "2"))
ONLY = os.environ.get("LIVEFILL_TEST_ONLY", "")  # "inpaint" = only the inpaint tests, "models" = the models'
#: The models tests: what the stand-in got (one JSON line per request) and what the plug-in showed
#: (LIVEFILL_DIALOG_DUMP: the Model list, status lines, result messages).
RECORD = os.environ.get("LIVEFILL_STANDIN_RECORD", "")
DUMP = os.environ.get("LIVEFILL_DIALOG_DUMP", "")
#: The stand-in's several models (tests/standin_daemon.py SEVERAL) as the Model list must label
#: them, written out here rather than taken from the plug-in's core.
SEVERAL_LABELS = [
    "Automatic (inpaint: sd-inpaint, live: lcm-dreamshaper, generate: sd15-plain)",
    "sd15-plain (plain, fp16, resident)",
    "sd-inpaint (inpainting, fp16, not loaded)",
    "lcm-dreamshaper (LCM, fp32, not loaded)",
    "dreamshaper-8 (plain, fp16, not loaded)",
    "broken-model (plain, fp32, not loaded)",
]
REMEMBERED_MODEL = "dreamshaper-8"
RGBA = "R'G'B'A u8"
# The stand-in daemon's colour for inpainted and img2img pixels (tests/standin_daemon.py FILL;
# this script runs inside GIMP's root, where that module is not available).
STANDIN_FILL = bytes((255, 0, 255, 255))

results = {"checks": [], "expect": EXPECT, "gimp_version": Gimp.version()}
pdb = Gimp.get_pdb()


def check(name, ok, detail=""):
    results["checks"].append({"name": name, "ok": bool(ok), "detail": str(detail)})
    return bool(ok)


def save():
    with open(OUT, "w") as f:
        json.dump(results, f, indent=1)


def read(drawable, x=0, y=0, w=None, h=None):
    w = drawable.get_width() if w is None else w
    h = drawable.get_height() if h is None else h
    buf = drawable.get_buffer()
    return bytes(buf.get(Gegl.Rectangle.new(x, y, w, h), 1.0, RGBA, Gegl.AbyssPolicy.NONE))


def composite(image):
    dup = image.duplicate()
    try:
        merged = dup.merge_visible_layers(Gimp.MergeType.CLIP_TO_IMAGE)
        _ok, ox, oy = merged.get_offsets()
        return read(merged, -ox, -oy, image.get_width(), image.get_height())
    finally:
        dup.delete()


def selection_mask(image):
    buf = image.get_selection().get_buffer()
    return bytes(buf.get(Gegl.Rectangle.new(0, 0, image.get_width(), image.get_height()), 1.0,
                         "Y u8", Gegl.AbyssPolicy.NONE))


def offsets(item):
    _ok, x, y = item.get_offsets()
    return x, y


def make_image(gray=False):
    base = Gimp.ImageBaseType.GRAY if gray else Gimp.ImageBaseType.RGB
    image = Gimp.Image.new(96, 80, base)
    ltype = Gimp.ImageType.GRAY_IMAGE if gray else Gimp.ImageType.RGB_IMAGE
    bg = Gimp.Layer.new(image, "Background", 96, 80, ltype, 100.0, Gimp.LayerMode.NORMAL)
    image.insert_layer(bg, None, 0)
    bg.fill(Gimp.FillType.WHITE)
    atype = Gimp.ImageType.GRAYA_IMAGE if gray else Gimp.ImageType.RGBA_IMAGE
    paint = Gimp.Layer.new(image, "paint", 64, 48, atype, 100.0, Gimp.LayerMode.NORMAL)
    image.insert_layer(paint, None, 0)
    paint.set_offsets(16, 12)
    px = bytearray()
    for y in range(48):
        for x in range(64):
            px += bytes((x * 4 % 256, y * 5 % 256, 128, 255 if x < 56 else 128))
    buf = paint.get_buffer()
    buf.set(Gegl.Rectangle.new(0, 0, 64, 48), RGBA, bytes(px))
    buf.flush()
    paint.update(0, 0, 64, 48)
    return image, bg, paint


def call(name, image, drawable, interactive=False, **args):
    proc = pdb.lookup_procedure(name)
    if proc is None:
        raise RuntimeError("procedure %s is not registered" % name)
    cfg = proc.create_config()
    cfg.set_property("run-mode", Gimp.RunMode.INTERACTIVE if interactive
                     else Gimp.RunMode.NONINTERACTIVE)
    cfg.set_property("image", image)
    cfg.set_core_object_array("drawables", [drawable] if drawable is not None else [])
    cfg.set_property("socket", args.pop("socket", SOCKET))
    cfg.set_property("steps", args.pop("steps", STEPS))
    for key, value in args.items():
        cfg.set_property(key.replace("_", "-"), value)
    values = proc.run(cfg)
    status = values.index(0)
    layer = values.index(1) if status == Gimp.PDBStatusType.SUCCESS else None
    seed = values.index(2) if status == Gimp.PDBStatusType.SUCCESS else None
    results["last model"] = values.index(3) if status == Gimp.PDBStatusType.SUCCESS else None
    error = ""
    if status != Gimp.PDBStatusType.SUCCESS:
        try:
            error = pdb.get_last_error() or ""
        except Exception as e:  # pragma: no cover
            error = "(no error text: %r)" % e
    return status, layer, seed, error


def ok_status(name, status, error):
    check(name + ": status SUCCESS", status == Gimp.PDBStatusType.SUCCESS,
          "%s %s" % (status, error))
    return status == Gimp.PDBStatusType.SUCCESS


def test_inpaint(gray=False):
    tag = "inpaint" + (" (gray)" if gray else "")
    image, bg, paint = make_image(gray)
    image.select_rectangle(Gimp.ChannelOps.REPLACE, 30, 20, 24, 16)
    before_paint = read(paint)
    before_bg = read(bg)
    before_comp = composite(image)
    sel = selection_mask(image)
    n_layers = len(image.get_layers())
    status, layer, seed, err = call("plug-in-livefill-inpaint", image, paint,
                                    prompt="a red fox", seed=42)
    if not ok_status(tag, status, err):
        return
    check(tag + ": one new layer", len(image.get_layers()) == n_layers + 1,
          [l.get_name() for l in image.get_layers()])
    check(tag + ": new layer above the active layer",
          image.get_item_position(layer) == image.get_item_position(paint) - 1,
          (image.get_item_position(layer), image.get_item_position(paint)))
    check(tag + ": layer name has prompt and seed",
          "a red fox" in layer.get_name() and "seed %d" % seed in layer.get_name(),
          layer.get_name())
    check(tag + ": seed is the requested one", seed == 42, seed)
    lx, ly = offsets(layer)
    w, h = layer.get_width(), layer.get_height()
    results[tag + " layer"] = [lx, ly, w, h]
    # The result covers the selection and stays inside the active layer's area.
    check(tag + ": result covers the selection",
          lx <= 30 and ly <= 20 and lx + w >= 54 and ly + h >= 36, (lx, ly, w, h))
    check(tag + ": result inside the active layer",
          lx >= 16 and ly >= 12 and lx + w <= 80 and ly + h <= 60, (lx, ly, w, h))
    if EXPECT == "standin":
        # auto context: selection (30,20,24,16) padded by 32 px, clipped to the layer.
        check(tag + ": stand-in geometry", (lx, ly, w, h) == (16, 12, 64, 48), (lx, ly, w, h))
    check(tag + ": result has a layer mask", layer.get_mask() is not None)
    check(tag + ": active layer untouched", read(paint) == before_paint)
    check(tag + ": background untouched", read(bg) == before_bg)
    after = composite(image)
    bad = [i for i, v in enumerate(sel) if v == 0 and after[i * 4:i * 4 + 4] != before_comp[i * 4:i * 4 + 4]]
    check(tag + ": unselected pixels of the image unchanged", not bad,
          "%d differ, first %s" % (len(bad), bad[:5]))
    changed = [i for i, v in enumerate(sel) if v == 255 and after[i * 4:i * 4 + 4] != before_comp[i * 4:i * 4 + 4]]
    check(tag + ": selected pixels changed", len(changed) > 0, "%d changed" % len(changed))
    if EXPECT == "standin" and not gray:
        px = read(layer, 30 - lx, 20 - ly, 1, 1)
        check(tag + ": stand-in fill inside the selection", px == STANDIN_FILL, list(px))
    image.delete()


def test_inpaint_crop():
    """A small selection on a large layer: only a padded crop is sent, and the result must land
    exactly where that crop came from (pixels far from the selection come back as sent)."""
    image = Gimp.Image.new(256, 200, Gimp.ImageBaseType.RGB)
    layer_src = Gimp.Layer.new(image, "big", 240, 180, Gimp.ImageType.RGBA_IMAGE, 100.0,
                               Gimp.LayerMode.NORMAL)
    image.insert_layer(layer_src, None, 0)
    layer_src.set_offsets(8, 10)
    px = bytearray()
    for y in range(180):
        for x in range(240):
            px += bytes(((x * 7) % 256, (y * 3) % 256, (x * y) % 256, 255))
    buf = layer_src.get_buffer()
    buf.set(Gegl.Rectangle.new(0, 0, 240, 180), RGBA, bytes(px))
    buf.flush()
    image.select_rectangle(Gimp.ChannelOps.REPLACE, 100, 90, 20, 16)
    status, layer, seed, err = call("plug-in-livefill-inpaint", image, layer_src,
                                    prompt="crop", seed=3, feather=4)
    if not ok_status("inpaint crop", status, err):
        return
    lx, ly = offsets(layer)
    w, h = layer.get_width(), layer.get_height()
    results["inpaint crop layer"] = [lx, ly, w, h]
    # Sent crop: the selection padded by 32 px on every side = (68, 58, 84, 80).
    check("inpaint crop: result within the sent crop",
          lx >= 68 and ly >= 58 and lx + w <= 152 and ly + h <= 138, (lx, ly, w, h))
    check("inpaint crop: result covers the selection",
          lx <= 100 and ly <= 90 and lx + w >= 120 and ly + h >= 106, (lx, ly, w, h))
    if EXPECT == "standin":
        check("inpaint crop: stand-in geometry", (lx, ly, w, h) == (68, 58, 84, 80), (lx, ly, w, h))
    # Alignment: a pixel 16+ px away from the selection (beyond the feather) is the source pixel.
    same = 0
    total = 0
    for ix, iy in ((lx + 2, ly + 2), (lx + w - 3, ly + h - 3), (lx + 2, ly + h - 3)):
        if 84 <= ix < 136 and 74 <= iy < 122:
            continue
        total += 1
        got = read(layer, ix - lx, iy - ly, 1, 1)
        want = read(layer_src, ix - 8, iy - 10, 1, 1)
        results.setdefault("inpaint crop samples", []).append([ix, iy, list(got), list(want)])
        same += got == want
    check("inpaint crop: result aligned with the source (unmasked pixels come back as sent)",
          total > 0 and same == total, "%d/%d" % (same, total))
    image.delete()


def test_inpaint_gray():
    test_inpaint(gray=True)


def test_inpaint_sample_merged():
    """Sample merged + whole-layer context: the sent image is the visible composite."""
    image, bg, paint = make_image()
    image.select_ellipse(Gimp.ChannelOps.REPLACE, 24, 16, 40, 30)
    before_paint, before_comp = read(paint), composite(image)
    sel = selection_mask(image)
    status, layer, seed, err = call("plug-in-livefill-inpaint", image, paint, prompt="moss",
                                    sample_merged=True, context="full", seed=11,
                                    mask_result=True)
    if not ok_status("inpaint sample merged", status, err):
        return
    results["inpaint sample merged layer"] = list(offsets(layer)) + [layer.get_width(), layer.get_height()]
    check("inpaint sample merged: whole-layer context covers the layer",
          offsets(layer) == (16, 12) and (layer.get_width(), layer.get_height()) == (64, 48),
          results["inpaint sample merged layer"])
    check("inpaint sample merged: active layer untouched", read(paint) == before_paint)
    if EXPECT == "standin":
        # The stand-in returns unselected pixels as sent: at layer pixel (60, 0) the paint layer is
        # half transparent, so the composite (over white) differs from the layer itself.
        sent = read(layer, 60, 0, 1, 1)
        check("inpaint sample merged: the visible composite was sent",
              sent == before_comp[(12 * 96 + 76) * 4:(12 * 96 + 77) * 4] and sent != read(paint, 60, 0, 1, 1),
              list(sent))
    after = composite(image)
    bad = [i for i, v in enumerate(sel) if v == 0 and after[i * 4:i * 4 + 4] != before_comp[i * 4:i * 4 + 4]]
    check("inpaint sample merged: unselected pixels unchanged", not bad, "%d differ" % len(bad))
    image.delete()


def test_inpaint_errors():
    image, bg, paint = make_image()
    Gimp.Selection.none(image)
    n = len(image.get_layers())
    status, layer, seed, err = call("plug-in-livefill-inpaint", image, paint, prompt="x")
    check("inpaint without selection fails", status == Gimp.PDBStatusType.EXECUTION_ERROR, status)
    check("inpaint without selection: message names the selection", "selection" in err.lower(), err)
    image.select_rectangle(Gimp.ChannelOps.REPLACE, 85, 65, 8, 8)  # outside the paint layer
    status, layer, seed, err = call("plug-in-livefill-inpaint", image, paint, prompt="x")
    check("inpaint outside the layer fails", status == Gimp.PDBStatusType.EXECUTION_ERROR, err)
    image.select_rectangle(Gimp.ChannelOps.REPLACE, 30, 20, 8, 8)
    status, layer, seed, err = call("plug-in-livefill-inpaint", image, paint, prompt="x",
                                    socket="/tmp/livefill-test/nothing-here.sock",
                                    livefill_exe="/nonexistent/livefill")
    check("unreachable daemon fails", status == Gimp.PDBStatusType.EXECUTION_ERROR, status)
    check("unreachable daemon: clear message", "daemon" in err.lower(), err)
    check("failed calls add no layer", len(image.get_layers()) == n)
    image.delete()


def test_img2img():
    image, bg, paint = make_image()
    before = read(paint)
    status, layer, seed, err = call("plug-in-livefill-img2img", image, paint, prompt="oil painting",
                                    strength=0.5, seed=7)
    if not ok_status("img2img", status, err):
        return
    results["img2img layer"] = list(offsets(layer)) + [layer.get_width(), layer.get_height()]
    check("img2img: new layer over the active layer", offsets(layer) == (16, 12), offsets(layer))
    check("img2img: same size as the active layer",
          (layer.get_width(), layer.get_height()) == (64, 48), (layer.get_width(), layer.get_height()))
    check("img2img: name", "oil painting" in layer.get_name() and "seed 7" in layer.get_name(),
          layer.get_name())
    check("img2img: active layer untouched", read(paint) == before)
    check("img2img: layer count", len(image.get_layers()) == 3)
    image.delete()


def test_generate():
    image, bg, paint = make_image()
    before = read(paint)
    status, layer, seed, err = call("plug-in-livefill-generate", image, paint, prompt="a castle")
    if not ok_status("generate", status, err):
        return
    results["generate layer"] = list(offsets(layer)) + [layer.get_width(), layer.get_height()]
    check("generate: at the image origin", offsets(layer) == (0, 0), offsets(layer))
    check("generate: native size (64x64 fixtures)",
          (layer.get_width(), layer.get_height()) == (64, 64), (layer.get_width(), layer.get_height()))
    check("generate: random seed reported", seed is not None and seed >= 0, seed)
    check("generate: active layer untouched", read(paint) == before)
    # With a selection the layer goes to the selection's corner.
    image.select_rectangle(Gimp.ChannelOps.REPLACE, 20, 10, 30, 30)
    status, layer, seed, err = call("plug-in-livefill-generate", image, paint, prompt="a castle",
                                    seed=3)
    if ok_status("generate at selection", status, err):
        check("generate: placed at the selection", offsets(layer) == (20, 10), offsets(layer))
    status, layer, seed, err = call("plug-in-livefill-generate", image, paint, prompt="")
    check("generate without prompt fails", status == Gimp.PDBStatusType.EXECUTION_ERROR, err)
    image.delete()
    # Without an image: the result becomes a new image.
    status, layer, seed, err = call("plug-in-livefill-generate", None, None, prompt="a castle")
    if ok_status("generate without image", status, err):
        new = layer.get_image()
        check("generate without image: new image of the result's size",
              (new.get_width(), new.get_height(), len(new.get_layers())) == (64, 64, 1),
              (new.get_width(), new.get_height(), len(new.get_layers())))
        new.delete()


def test_extend():
    image, bg, paint = make_image()
    before_paint = read(paint)
    before_bg = read(bg)
    status, layer, seed, err = call("plug-in-livefill-extend", image, paint, prompt="more sky",
                                    left=16, top=8, right=0, bottom=24, seed=5)
    if not ok_status("extend", status, err):
        return
    size = (image.get_width(), image.get_height())
    results["extend canvas"] = list(size)
    results["extend layer"] = list(offsets(layer)) + [layer.get_width(), layer.get_height()]
    check("extend: canvas grown", size == (112, 112), size)
    check("extend: existing layers moved", offsets(paint) == (32, 20) and offsets(bg) == (16, 8),
          (offsets(paint), offsets(bg)))
    check("extend: existing layers keep their size",
          (paint.get_width(), paint.get_height(), bg.get_width(), bg.get_height()) == (64, 48, 96, 80))
    check("extend: new layer covers the new canvas",
          offsets(layer) == (0, 0) and (layer.get_width(), layer.get_height()) == (112, 112),
          results["extend layer"])
    check("extend: layers untouched", read(paint) == before_paint and read(bg) == before_bg)
    # Alignment: inside the old canvas the outpainted layer holds the sent pixels (paint-layer
    # pixel (30, 20) was at image (46, 32) and is now at (62, 40)).
    got, want = read(layer, 62, 40, 1, 1), before_paint[(20 * 64 + 30) * 4:(20 * 64 + 31) * 4]
    check("extend: old content aligned in the new layer", got == want, (list(got), list(want)))
    check("extend: name", "more sky" in layer.get_name() and "seed 5" in layer.get_name(),
          layer.get_name())
    status, layer, seed, err = call("plug-in-livefill-extend", image, paint, prompt="x",
                                    left=0, top=0, right=0, bottom=0)
    check("extend with no border fails", status == Gimp.PDBStatusType.EXECUTION_ERROR, err)
    check("extend failure leaves the canvas", (image.get_width(), image.get_height()) == size)
    image.delete()


def selected_names(image):
    return [l.get_name() for l in image.get_selected_layers()]


def test_preview():
    image, bg, paint = make_image()
    image.set_selected_layers([paint])
    before = read(paint)
    status, layer, seed, err = call("plug-in-livefill-live-preview", image, paint, prompt="ink",
                                    seed=9, preview_max_side=32)
    if not ok_status("live preview", status, err):
        return
    check("live preview: the artist's layer stays the active one (not the new preview)",
          selected_names(image) == [paint.get_name()], selected_names(image))
    check("live preview: unlocked once the call returns", not layer.get_lock_content())
    check("live preview: preview layer", layer.get_name() == "livefill live preview", layer.get_name())
    check("live preview: covers the active layer (upscaled)",
          offsets(layer) == (16, 12) and (layer.get_width(), layer.get_height()) == (64, 48),
          (offsets(layer), layer.get_width(), layer.get_height()))
    n = len(image.get_layers())
    status, layer2, seed, err = call("plug-in-livefill-live-preview", image, paint, prompt="ink 2",
                                     seed=9, preview_max_side=0)
    if ok_status("live preview again", status, err):
        check("live preview: reuses its layer", len(image.get_layers()) == n and
              layer2.get_id() == layer.get_id(), len(image.get_layers()))
    check("live preview: active layer untouched", read(paint) == before)
    image.delete()


def test_interactive_inpaint():
    """The procedure dialog (answered by LIVEFILL_DIALOG_AUTORESPOND=ok:MS) then the job."""
    image, bg, paint = make_image()
    image.select_rectangle(Gimp.ChannelOps.REPLACE, 30, 20, 24, 16)
    before = read(paint)
    status, layer, seed, err = call("plug-in-livefill-inpaint", image, paint, interactive=True,
                                    prompt="dialog fox", seed=4)
    if not ok_status("interactive inpaint", status, err):
        return
    check("interactive inpaint: layer", "dialog fox" in layer.get_name(), layer.get_name())
    check("interactive inpaint: active layer untouched", read(paint) == before)
    image.delete()


def test_interactive_live_preview():
    """The live preview dialog stays open for a while (its timer sends the layer and updates
    the preview layer), then OK keeps the preview as a named layer."""
    image, bg, paint = make_image()
    image.set_selected_layers([paint])
    before = read(paint)
    n = len(image.get_layers())
    status, layer, seed, err = call("plug-in-livefill-live-preview", image, paint,
                                    interactive=True, prompt="live ink", seed=8,
                                    preview_max_side=32)
    if not ok_status("interactive live preview", status, err):
        return
    check("interactive live preview: the artist's layer stays the active one",
          selected_names(image) == [paint.get_name()], selected_names(image))
    check("interactive live preview: one layer kept", len(image.get_layers()) == n + 1,
          [l.get_name() for l in image.get_layers()])
    check("interactive live preview: kept layer named with prompt and seed",
          layer is not None and "live ink" in layer.get_name() and "seed 8" in layer.get_name(),
          layer.get_name() if layer else None)
    if layer is not None:
        px = read(layer)
        opaque = sum(1 for i in range(3, len(px), 4) if px[i])
        check("interactive live preview: preview was drawn", opaque > 0, "%d opaque pixels" % opaque)
        if EXPECT == "standin":
            check("interactive live preview: stand-in pixels", read(layer, 10, 10, 1, 1) ==
                  STANDIN_FILL, list(read(layer, 10, 10, 1, 1)))
    check("interactive live preview: active layer untouched", read(paint) == before)
    image.delete()


def test_interactive_cancel():
    """Cancel in the dialogs: nothing is added (the live preview removes its layer)."""
    image, bg, paint = make_image()
    image.select_rectangle(Gimp.ChannelOps.REPLACE, 30, 20, 24, 16)
    n = len(image.get_layers())
    status, layer, seed, err = call("plug-in-livefill-inpaint", image, paint, interactive=True,
                                    prompt="never")
    check("cancelled inpaint dialog: status CANCEL", status == Gimp.PDBStatusType.CANCEL, status)
    status, layer, seed, err = call("plug-in-livefill-live-preview", image, paint,
                                    interactive=True, prompt="never", preview_max_side=32)
    check("cancelled live preview: status CANCEL", status == Gimp.PDBStatusType.CANCEL, status)
    check("cancelled dialogs add no layer", len(image.get_layers()) == n,
          [l.get_name() for l in image.get_layers()])
    image.delete()


def json_lines(path, **match):
    if not path or not os.path.exists(path):
        return []
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [r for r in rows if all(r.get(k) == v for k, v in match.items())]


def sent_models(prompt):
    return [r["model"] for r in json_lines(RECORD, prompt=prompt)]


def test_models():
    """Non-interactive, against the stand-in's several models: the model-name argument (or ""
    for Automatic) on the wire, the model that served each result returned, broken and unknown
    models explained."""
    if not check("models: the stand-in records what it got", RECORD, "LIVEFILL_STANDIN_RECORD unset"):
        return
    image, bg, paint = make_image()
    image.select_rectangle(Gimp.ChannelOps.REPLACE, 30, 20, 24, 16)
    grown, _bg, grown_paint = make_image()  # extend grows this one, not the image the others use
    for proc, prompt, extra, served in (
            ("plug-in-livefill-inpaint", "auto inpaint", {}, "sd-inpaint"),
            ("plug-in-livefill-extend", "auto extend", {"left": 0, "top": 0, "right": 0, "bottom": 8,
                                                        "target": (grown, grown_paint)}, "sd-inpaint"),
            ("plug-in-livefill-img2img", "auto img2img", {}, "sd15-plain"),
            ("plug-in-livefill-generate", "auto generate", {}, "sd15-plain"),
            ("plug-in-livefill-live-preview", "auto live", {"preview_max_side": 32}, "lcm-dreamshaper")):
        img, drawable = extra.pop("target", (image, paint))
        status, layer, seed, err = call(proc, img, drawable, prompt=prompt, **extra)
        short = proc.replace("plug-in-livefill-", "")
        if ok_status("models: %s, Automatic" % short, status, err):
            check("models: %s, Automatic sends an empty model name" % short, sent_models(prompt) == [""],
                  sent_models(prompt))
            check("models: %s returns the model that served it" % short, results["last model"] == served,
                  results["last model"])
    for proc, prompt in (("plug-in-livefill-inpaint", "chosen inpaint"), ("plug-in-livefill-generate", "chosen generate"),
                         ("plug-in-livefill-live-preview", "chosen live")):
        status, layer, seed, err = call(proc, image, paint, prompt=prompt, model_name=REMEMBERED_MODEL,
                                        preview_max_side=32)
        short = proc.replace("plug-in-livefill-", "")
        if ok_status("models: %s, chosen" % short, status, err):
            check("models: %s sends the chosen model" % short, sent_models(prompt) == [REMEMBERED_MODEL],
                  sent_models(prompt))
            check("models: %s, chosen, returns it" % short, results["last model"] == REMEMBERED_MODEL,
                  results["last model"])
    n = len(image.get_layers())
    status, layer, seed, err = call("plug-in-livefill-inpaint", image, paint, prompt="broken", model_name="broken-model")
    check("models: a broken model fails the call", status == Gimp.PDBStatusType.EXECUTION_ERROR, status)
    check("models: ... with its load error", "\u201cbroken-model\u201d could not be loaded" in err
          and "unet/model.onnx is truncated" in err, err)
    status, layer, seed, err = call("plug-in-livefill-inpaint", image, paint, prompt="gone", model_name="retired-model")
    check("models: an unknown model fails the call", status == Gimp.PDBStatusType.EXECUTION_ERROR, status)
    check("models: ... saying the daemon offers no such model", "no model named \u201cretired-model\u201d" in err, err)
    check("models: failed calls add no layer", len(image.get_layers()) == n)
    image.delete()
    grown.delete()


def test_models_dialog():
    """The dialogs (answered by LIVEFILL_DIALOG_AUTORESPOND=ok:MS): the Model list filled from the
    daemon, the chosen model on the wire and in the result message, the live preview's status."""
    image, bg, paint = make_image()
    image.select_rectangle(Gimp.ChannelOps.REPLACE, 30, 20, 24, 16)
    status, layer, seed, err = call("plug-in-livefill-inpaint", image, paint, interactive=True,
                                    prompt="dialog model", model_name=REMEMBERED_MODEL)
    pickers = json_lines(DUMP, event="picker", procedure="plug-in-livefill-inpaint")
    check("models dialog: the Model list has Automatic and the daemon's models, with kind, dtype and residency",
          pickers and pickers[-1]["labels"] == SEVERAL_LABELS, pickers[-1:])
    check("models dialog: the chosen model is selected", pickers and pickers[-1]["active"] == REMEMBERED_MODEL,
          pickers[-1:])
    if ok_status("models dialog: inpaint", status, err):
        check("models dialog: the chosen model is sent", sent_models("dialog model") == [REMEMBERED_MODEL],
              sent_models("dialog model"))
        messages = [m["text"] for m in json_lines(DUMP, event="message")]
        check("models dialog: the result message names the model",
              messages and ("model %s)" % REMEMBERED_MODEL) in messages[-1], messages[-1:])
        statuses = [m["text"] for m in json_lines(DUMP, event="status", procedure="plug-in-livefill-inpaint")]
        check("models dialog: the progress said the model was loading",
              any(t.startswith("Loading model %s: " % REMEMBERED_MODEL) for t in statuses), statuses)
    image.set_selected_layers([paint])
    status, layer, seed, err = call("plug-in-livefill-live-preview", image, paint, interactive=True,
                                    prompt="dialog live", seed=8, preview_max_side=32)
    if ok_status("models dialog: live preview", status, err):
        statuses = [m["text"] for m in json_lines(DUMP, event="status", procedure="plug-in-livefill-live-preview")]
        check("models dialog: the live status names the model (Automatic: the LCM one)",
              any(t.startswith("Live preview updated (seed 8, model lcm-dreamshaper)") for t in statuses), statuses)
        sent = sent_models("dialog live")
        check("models dialog: live frames sent Automatic, then the model picked in the open dialog",
              sent and sent[0] == "" and sent[-1] == REMEMBERED_MODEL
              and set(sent) == {"", REMEMBERED_MODEL}, sent)
        warnings = [m["text"] for m in json_lines(DUMP, event="warning", procedure="plug-in-livefill-live-preview")]
        check("models dialog: no live warning under Automatic (the LCM model)", warnings[:1] == [""], warnings)
        check("models dialog: the live warning follows the model picked in the open dialog (not LCM)",
              len(warnings) == 2 and "not an LCM model" in warnings[1] and "dpmpp_2m" in warnings[1], warnings)
        check("models dialog: the live status names the picked model",
              any(t.startswith("Live preview updated (seed 8, model %s)" % REMEMBERED_MODEL) for t in statuses),
              statuses)
    image.delete()


def test_models_restart():
    """A new GIMP on the same profile: the inpaint dialog's remembered model (GIMP's last values,
    which an interactive run loads over the caller's arguments: the prompt too) is selected and
    sent."""
    image, bg, paint = make_image()
    image.select_rectangle(Gimp.ChannelOps.REPLACE, 30, 20, 24, 16)
    before = len(json_lines(RECORD))
    status, layer, seed, err = call("plug-in-livefill-inpaint", image, paint, interactive=True,
                                    prompt="after restart")
    pickers = json_lines(DUMP, event="picker", procedure="plug-in-livefill-inpaint")
    check("models restart: the remembered model is selected in the Model list",
          pickers and pickers[-1]["active"] == REMEMBERED_MODEL, pickers[-1:])
    if ok_status("models restart: inpaint", status, err):
        sent = json_lines(RECORD)[before:]
        check("models restart: the remembered settings are sent (the last dialog's prompt and model)",
              [(r["prompt"], r["model"]) for r in sent] == [("dialog model", REMEMBERED_MODEL)], sent)
    image.delete()


def plugin_client():
    """The installed plug-in's ``livefill_client`` (the shared transport)."""
    folder = os.environ.get("LIVEFILL_PLUGIN_DIR") or os.path.join(
        os.environ.get("HOME", ""), ".config", "GIMP", "3.0", "plug-ins", "livefill")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    import livefill_client
    return livefill_client


def peer_pid(conn):
    """The pid of the process at the other end of a client connection (Linux SO_PEERCRED)."""
    creds = conn._sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[0]


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().decode("utf-8", "replace").split("\0")
    except OSError as e:
        return [repr(e)]


def image_state(image):
    """The canvas size and every layer's name, position, size and a checksum of its pixels."""
    return [image.get_width(), image.get_height(),
            [[l.get_name(), list(offsets(l)), l.get_width(), l.get_height(), hashlib.sha256(read(l)).hexdigest()]
             for l in image.get_layers()]]


class Killer(threading.Thread):
    """Watches the daemon at ``SOCKET`` through a connection of its own and kills it (SIGKILL) the
    moment its status shows a job running; ``running`` is the request it was running then."""

    def __init__(self, lc):
        super().__init__(daemon=True)
        self.conn = lc.DaemonConnection.connect(SOCKET, "gimp-tests-killer", timeout=10)
        self.pid = peer_pid(self.conn)
        self.running = None
        self.error = ""
        self.done = threading.Event()

    def run(self):
        try:
            while not self.done.is_set():
                status = self.conn.status(timeout=10)
                if status.running_request is not None:
                    self.running = status.running_request
                    os.kill(self.pid, signal.SIGKILL)
                    return
                time.sleep(0.02)
        except Exception as e:  # recorded; the checks say what it means
            self.error = repr(e)
        finally:
            self.conn.close()


def test_faults():
    """The daemon is killed (SIGKILL) while it works on a long Generate: the procedure returns an
    error with the shared core's sentence (not an errno), the image's layers and pixels are as
    before, and the next call starts the daemon again ($LIVEFILL_BIN, inside GIMP's root) and
    succeeds."""
    lc = plugin_client()
    image, bg, paint = make_image()
    before = image_state(image)
    painted = hashlib.sha256(read(paint)).hexdigest()
    killer = Killer(lc)
    results["killed daemon"] = [killer.pid, cmdline(killer.pid)]
    if not check("killed: the watcher's peer is the daemon on the test's socket",
                 "serve" in cmdline(killer.pid) and any(a.endswith(SOCKET) for a in cmdline(killer.pid)),
                 results["killed daemon"]):
        return
    killer.start()
    # Long enough to be killed mid-way: 50 steps at 256 px on the tiny model (seconds), or the
    # stand-in's slow prompt (100 steps of 0.1 s).
    prompt = "__slow__" if EXPECT == "standin" else "a long job"
    status, layer, seed, err = call("plug-in-livefill-generate", image, paint, prompt=prompt, seed=3, steps=50,
                                    width=256, height=256)
    killer.done.set()
    killer.join(30)
    check("killed: the daemon was killed while it ran the job", killer.running is not None,
          "watcher error: %s" % killer.error)
    check("killed: the procedure fails (it returned: no hang)", status == Gimp.PDBStatusType.EXECUTION_ERROR,
          "%s %s" % (status, err))
    check("killed: the error says the daemon stopped while working on the generate",
          err.startswith("livefill: The livefill daemon stopped while working on the generate request: it crashed "
                         "or was killed") and "Nothing was added to your image." in err
          and "The next livefill procedure starts it again." in err, err)
    check("killed: ... in words, not an errno", "Errno" not in err and "reset by peer" not in err, err)
    check("killed: every layer, its pixels and the canvas are as before", image_state(image) == before,
          [before, image_state(image)])
    check("killed: the paint layer's pixels are unchanged (checksum)",
          hashlib.sha256(read(paint)).hexdigest() == painted)
    # The next call starts the daemon again and works.
    status, layer, seed, err = call("plug-in-livefill-generate", image, paint, prompt="after the crash", seed=4)
    if ok_status("killed: the next call", status, err):
        check("killed: the next call added its layer", layer.get_name() == "livefill generate: after the crash [seed 4]"
              and len(image.get_layers()) == len(before[2]) + 1, [l.get_name() for l in image.get_layers()])
        after = image_state(image)
        check("killed: ... and the layers from before are untouched",
              after[:2] == before[:2] and [e for e in after[2] if e[0] != layer.get_name()] == before[2],
              [before, after])
    try:
        conn = lc.DaemonConnection.connect(SOCKET, "gimp-tests", timeout=10)
    except Exception as e:
        check("killed: a daemon answers again", False, repr(e))
        return
    pid = peer_pid(conn)
    results["restarted daemon"] = [pid, cmdline(pid)]
    check("killed: a new daemon, started by the plug-in, answers", pid != killer.pid and "serve" in cmdline(pid),
          results["restarted daemon"])
    conn.shutdown_daemon()  # it would outlive GIMP
    check("killed: the restarted daemon shuts down when asked (and says so)",
          wait_closed(conn) and isinstance(conn.closed_reason, lc.DaemonShutDown), repr(conn.closed_reason))
    conn.close()
    image.delete()


def wait_closed(conn, timeout=30.0):
    """Whether ``conn``'s daemon ended the connection within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not conn.is_closed and time.monotonic() < deadline:
        time.sleep(0.02)
    return conn.is_closed


def main():
    for proc in ("plug-in-livefill-inpaint", "plug-in-livefill-extend", "plug-in-livefill-img2img",
                 "plug-in-livefill-generate", "plug-in-livefill-live-preview"):
        check("registered " + proc, pdb.procedure_exists(proc))
    tests = [test_inpaint, test_inpaint_crop, test_inpaint_gray, test_inpaint_sample_merged, test_inpaint_errors,
             test_img2img, test_generate, test_extend, test_preview]
    autorespond = os.environ.get("LIVEFILL_DIALOG_AUTORESPOND", "")
    if autorespond.startswith("ok"):
        tests = [test_interactive_inpaint, test_interactive_live_preview]
    elif autorespond.startswith("cancel"):
        tests = [test_interactive_cancel]
    if ONLY == "models":  # against the stand-in's several models
        tests = [test_models_dialog] if autorespond.startswith("ok") else [test_models]
    elif ONLY == "models-restart":
        tests = [test_models_restart]
    elif ONLY == "faults":
        tests = [test_faults]
    elif ONLY:
        tests = [t for t in tests if t.__name__.startswith("test_" + ONLY)]
    for test in tests:
        try:
            test()
        except Exception:
            check("exception in %s" % getattr(test, "__name__", "test"), False,
                  traceback.format_exc())
        save()
    results["done"] = True
    save()


main()
