#!/usr/bin/env python3
"""livefill runs the ONNX folders people download, as they are (offline, tiny random weights).

Most public ONNX Stable Diffusion repos (the `onnx` branch of SD 1.5, LCM-Dreamshaper-V7-ONNX,
the TensorStack conversions) were made by diffusers' legacy converter,
`scripts/convert_stable_diffusion_checkpoint_to_onnx.py`, and saved by diffusers'
`OnnxStableDiffusionPipeline.save_pretrained`. This test makes such folders from a tiny random
SD-1.5-architecture pipeline, with the converter's conventions (torch.onnx.export, opset 14,
its input/output names and dynamic axes, int32 token ids, float32 timesteps, UNet weights in
`weights.pb`, a VAE encoder that returns a *sample* of the latent distribution) and diffusers'
own `OnnxRuntimeModel` / `OnnxStableDiffusionPipeline` for the layout, then:

1. txt2img with classifier-free guidance (batch-2 UNet runs) must match diffusers' torch
   pipeline on the same weights and noise, PSNR >= 40 dB — on a UNet with a `[batch]` timestep
   and on one exported with its timestep fixed at `[1]` (CFG then runs as two passes);
2. inpaint with the sampling encoder runs, returns the image's size and leaves every pixel
   outside the mask byte-identical (its result cannot be compared: the graph draws noise);
3. `livefill models list` names the layout and says the encoder makes img2img/inpaint
   non-reproducible;
4. a UNet exported with a fixed latent size takes requests of other sizes: txt2img is generated
   at the graph's size and resized, an inpaint crop is resampled to it and back.

`--layouts optimum` exports the same tiny pipeline with optimum itself (`main_export`, what
`optimum-cli export onnx --task text-to-image` runs: a rank-0 float timestep, a VAE encoder that
returns `latent_parameters`, component configs); txt2img with CFG and inpaint (4-channel UNet,
the latent blend) must match diffusers' torch pipelines, PSNR >= 40 dB. optimum-onnx needs
transformers 4, so that part runs under a Python that has it (see tests/export/test_export.sh),
with the pipeline built, exported and run as the reference by the same packages.

    python tests/export/test_public_layouts.py --livefill target/debug/livefill \
        [--layouts legacy,optimum] [--keep DIR]

Needs the toolchain of tests/export/requirements.txt (see tests/export/test_export.sh).
"""

from __future__ import annotations

import argparse
import math
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests" / "reference"))

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

import make_fixtures as mf  # noqa: E402  (tiny architecture, weight init, noise injection)

from diffusers import (  # noqa: E402
    LCMScheduler,
    OnnxRuntimeModel,
    OnnxStableDiffusionPipeline,
    StableDiffusionInpaintPipeline,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTokenizer  # noqa: E402

FIX = REPO / "tests" / "fixtures"
OPSET = 14  # the legacy converter's default


def log(msg):
    print(f"[test_public_layouts] {msg}", flush=True)


def build_torch_pipeline() -> StableDiffusionPipeline:
    unet = UNet2DConditionModel(**mf.UNET_COMMON, in_channels=4).eval()
    mf.reinit(unet, "public-layouts-unet")
    tok = CLIPTokenizer.from_pretrained(str(FIX / "tiny-sd" / "tokenizer"))
    return StableDiffusionPipeline(
        vae=mf.build_vae(), text_encoder=mf.build_text_encoder(), tokenizer=tok, unet=unet,
        scheduler=LCMScheduler(**mf.SCHEDULER_CONFIG), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )


def legacy_export(module, args, path: Path, input_names, output_names, dynamic_axes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(module, args, str(path), input_names=input_names, output_names=output_names,
                      dynamic_axes=dynamic_axes, do_constant_folding=True, opset_version=OPSET,
                      dynamo=False)


class VaeEncoderSample(torch.nn.Module):
    """The converter's VAE encoder: `vae.encode(sample).latent_dist.sample()`."""

    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, sample, return_dict=False):
        return self.vae.encode(sample, return_dict=return_dict)[0].sample()


class VaeDecoder(torch.nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, latent_sample, return_dict=False):
        return self.vae.decode(latent_sample, return_dict=return_dict)


@torch.no_grad()
def convert_legacy(pipe: StableDiffusionPipeline, raw: Path, fixed_timestep: bool,
                   fixed_size: bool = False) -> None:
    """The converter's graphs, into `raw/<component>/model.onnx`."""
    ids = pipe.tokenizer("a sample prompt", padding="max_length", max_length=77, truncation=True,
                         return_tensors="pt").input_ids.to(torch.int32)
    legacy_export(pipe.text_encoder, (ids,), raw / "text_encoder" / "model.onnx", ["input_ids"],
                  ["last_hidden_state", "pooler_output"], {"input_ids": {0: "batch", 1: "sequence"}})
    side = mf.UNET_COMMON["sample_size"]
    hidden = pipe.text_encoder.config.hidden_size
    timestep = torch.randn(1 if fixed_timestep else 2)
    sample_axes = {0: "batch"} if fixed_size else {0: "batch", 1: "channels", 2: "height", 3: "width"}
    axes = {"sample": sample_axes, "encoder_hidden_states": {0: "batch", 1: "sequence"}}
    if not fixed_timestep:
        axes["timestep"] = {0: "batch"}
    unet_path = raw / "unet" / "model.onnx"
    legacy_export(pipe.unet, (torch.randn(2, 4, side, side), timestep, torch.randn(2, 77, hidden), False),
                  unet_path, ["sample", "timestep", "encoder_hidden_states", "return_dict"], ["out_sample"],
                  axes)
    # The converter collates the UNet's weights into one external file named weights.pb.
    unet = onnx.load(str(unet_path))
    shutil.rmtree(unet_path.parent)
    unet_path.parent.mkdir(parents=True)
    onnx.save_model(unet, str(unet_path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.pb", size_threshold=0, convert_attribute=False)
    pixels = side * 8
    legacy_export(VaeEncoderSample(pipe.vae).eval(), (torch.randn(1, 3, pixels, pixels), False),
                  raw / "vae_encoder" / "model.onnx", ["sample", "return_dict"], ["latent_sample"],
                  {"sample": {0: "batch", 1: "channels", 2: "height", 3: "width"}})
    legacy_export(VaeDecoder(pipe.vae).eval(), (torch.randn(1, 4, side, side), False),
                  raw / "vae_decoder" / "model.onnx", ["latent_sample", "return_dict"], ["sample"],
                  {"latent_sample": {0: "batch", 1: "channels", 2: "height", 3: "width"}})


def save_legacy_layout(pipe: StableDiffusionPipeline, raw: Path, out: Path) -> None:
    """diffusers' own ONNX pipeline writes the folder (model_index.json, tokenizer, scheduler)."""
    # (diffusers 0.42 reads `provider_options` unconditionally when loading from a folder)
    model = lambda part: OnnxRuntimeModel.from_pretrained(  # noqa: E731
        str(raw / part), provider="CPUExecutionProvider", provider_options={})
    onnx_pipe = OnnxStableDiffusionPipeline(
        vae_encoder=model("vae_encoder"), vae_decoder=model("vae_decoder"),
        text_encoder=model("text_encoder"), tokenizer=pipe.tokenizer, unet=model("unet"),
        scheduler=pipe.scheduler, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )
    onnx_pipe.save_pretrained(str(out))
    for part in ("unet", "vae_decoder", "text_encoder"):
        assert not (out / part / "config.json").exists(), f"{part}/config.json: the legacy layout has none"
    assert (out / "unet" / "weights.pb").is_file(), "the UNet's external weights.pb was not saved"


@torch.no_grad()
def diffusers_txt2img(pipe, prompt: str, noise: np.ndarray, steps: int, guidance: float) -> np.ndarray:
    feed, rec = mf.NoiseFeed(noise), mf.Recorder()
    saved = mf.install_patches(feed, rec)
    try:
        out = pipe(prompt=prompt, num_inference_steps=steps, guidance_scale=guidance, height=64,
                   width=64, output_type="np", generator=None)
    finally:
        mf.remove_patches(saved)
    assert feed.next == len(noise), f"diffusers used {feed.next} of {len(noise)} noise entries"
    return (out.images[0] * 255.0).round().clip(0, 255).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


def run(cmd, **kw) -> subprocess.CompletedProcess:
    log("$ " + " ".join(str(c) for c in cmd))
    return subprocess.run([str(c) for c in cmd], check=True, **kw)


def check_txt2img(livefill: Path, pipe, model: Path, work: Path, name: str) -> bool:
    steps, guidance, prompt = 4, 2.0, "a red barn in a snowy field"
    noise = np.random.default_rng(77).standard_normal((steps, 4, 8, 8), dtype=np.float32)
    noise_path = work / f"noise-{name}.npy"
    np.save(noise_path, noise)
    want = diffusers_txt2img(pipe, prompt, noise, steps, guidance)
    got_path = work / f"livefill-{name}.png"
    run([livefill, "generate", "--model", model, "--mode", "txt2img", "--prompt", prompt, "--steps", steps,
         "--guidance", guidance, "--seed", "0", "--noise", noise_path, "--device", "cpu",
         "--width", "64", "--height", "64", "--out", got_path])
    score = psnr(np.asarray(Image.open(got_path).convert("RGB")), want)
    ok = score >= 40.0
    log(f"[{name}] txt2img, guidance {guidance}: PSNR livefill vs diffusers = {score:.1f} dB -> "
        f"{'ok' if ok else 'FAIL'}")
    return ok


@torch.no_grad()
def diffusers_inpaint(pipe, prompt: str, noise: np.ndarray, steps: int, image, mask) -> np.ndarray:
    feed, rec = mf.NoiseFeed(noise), mf.Recorder()
    saved = mf.install_patches(feed, rec)
    try:
        out = StableDiffusionInpaintPipeline(**pipe.components)(
            prompt=prompt, image=image, mask_image=mask, strength=1.0, num_inference_steps=steps,
            guidance_scale=1.0, height=64, width=64, output_type="np", generator=None)
    finally:
        mf.remove_patches(saved)
    assert feed.next == len(noise), f"diffusers used {feed.next} of {len(noise)} noise entries"
    return (out.images[0] * 255.0).round().clip(0, 255).astype(np.uint8)


def check_inpaint_parity(livefill: Path, pipe, model: Path, work: Path, name: str) -> bool:
    steps, prompt = 4, "a window"
    image_path = FIX / "reference" / "inputs" / "image_64.png"
    mask_path = FIX / "reference" / "inputs" / "mask_64.png"
    image, mask = Image.open(image_path).convert("RGB"), Image.open(mask_path).convert("L")
    noise = np.random.default_rng(78).standard_normal((steps, 4, 8, 8), dtype=np.float32)
    noise_path = work / f"noise-inpaint-{name}.npy"
    np.save(noise_path, noise)
    want = diffusers_inpaint(pipe, prompt, noise, steps, image, mask)
    got_path = work / f"livefill-inpaint-{name}.png"
    run([livefill, "generate", "--model", model, "--mode", "inpaint", "--prompt", prompt, "--steps", steps,
         "--guidance", "1", "--seed", "0", "--noise", noise_path, "--device", "cpu", "--image", image_path,
         "--mask", mask_path, "--strength", "1", "--context", "full", "--feather", "0",
         "--color-match", "off", "--out", got_path])
    got = np.asarray(Image.open(got_path).convert("RGB"))
    inside = np.asarray(mask) == 255
    score = psnr(got[inside], want[inside])
    ok = score >= 40.0
    log(f"[{name}] inpaint (4-channel UNet, latent blend): PSNR inside the mask = {score:.1f} dB -> "
        f"{'ok' if ok else 'FAIL'}")
    return ok


def export_with_optimum(pipe, work: Path) -> Path:
    """optimum's own exporter on the tiny pipeline saved in diffusers format."""
    from optimum.exporters.onnx import main_export

    base, out = work / "diffusers-base", work / "onnx-optimum"
    for d in (base, out):
        shutil.rmtree(d, ignore_errors=True)
    pipe.save_pretrained(str(base))
    log(f"$ optimum-cli export onnx --model {base} --task text-to-image {out}")
    main_export(model_name_or_path=str(base), output=str(out), task="text-to-image", device="cpu")
    assert (out / "unet" / "config.json").is_file(), "optimum wrote no unet/config.json"
    return out


def check_inpaint_with_sampling_encoder(livefill: Path, model: Path, work: Path) -> bool:
    image_path = FIX / "reference" / "inputs" / "image_64.png"
    mask_path = FIX / "reference" / "inputs" / "mask_64.png"
    got_path = work / "livefill-inpaint.png"
    run([livefill, "generate", "--model", model, "--mode", "inpaint", "--prompt", "a window",
         "--steps", "2", "--strength", "0.8", "--seed", "1", "--device", "cpu", "--image", image_path,
         "--mask", mask_path, "--feather", "0", "--out", got_path])
    original = np.asarray(Image.open(image_path).convert("RGBA"))
    got = np.asarray(Image.open(got_path).convert("RGBA"))
    keep = np.asarray(Image.open(mask_path).convert("L")) == 0
    same_size = got.shape == original.shape
    untouched = same_size and np.array_equal(got[keep], original[keep])
    changed = same_size and not np.array_equal(got[~keep], original[~keep])
    ok = same_size and untouched and changed
    log(f"[legacy] inpaint with a sampling VAE encoder: size {got.shape[1]}x{got.shape[0]}, unmasked "
        f"pixels identical: {untouched}, masked pixels regenerated: {changed} -> {'ok' if ok else 'FAIL'}")
    return ok


def check_fixed_size(livefill: Path, model: Path, work: Path) -> bool:
    """Requests whose size differs from the one the graph fixes (64 px) still run."""
    txt = work / "fixed-txt2img.png"
    run([livefill, "generate", "--model", model, "--mode", "txt2img", "--prompt", "a barn", "--steps", "2",
         "--seed", "3", "--device", "cpu", "--width", "96", "--height", "64", "--out", txt])
    txt_ok = Image.open(txt).size == (96, 64)
    image = Image.open(FIX / "reference" / "inputs" / "image_64.png").convert("RGBA").resize((96, 80))
    mask = Image.new("L", (96, 80), 0)
    mask.paste(255, (30, 20, 70, 60))
    image_path, mask_path, out = work / "fixed-in.png", work / "fixed-mask.png", work / "fixed-inpaint.png"
    image.save(image_path)
    mask.save(mask_path)
    run([livefill, "generate", "--model", model, "--mode", "inpaint", "--prompt", "a window", "--steps", "2",
         "--strength", "1", "--seed", "3", "--device", "cpu", "--image", image_path, "--mask", mask_path,
         "--feather", "0", "--out", out])
    got, original = np.asarray(Image.open(out).convert("RGBA")), np.asarray(image)
    keep = np.asarray(mask) == 0
    inpaint_ok = got.shape == original.shape and np.array_equal(got[keep], original[keep])
    ok = txt_ok and inpaint_ok
    log(f"[legacy-fixed-size] UNet fixed at 64x64: txt2img 96x64 -> {Image.open(txt).size}, inpaint of a "
        f"96x80 image keeps its unmasked pixels: {inpaint_ok} -> {'ok' if ok else 'FAIL'}")
    return ok


def check_models_list(livefill: Path, model: Path) -> bool:
    out = run([livefill, "models", "list", "--model", model], capture_output=True, text=True).stdout
    ok = "diffusers legacy ONNX layout" in out and "not reproducible" in out
    kind = next((line.strip() for line in out.splitlines() if line.strip().startswith("kind:")), "(no kind)")
    log(f"[legacy] models list says: {kind} -> {'ok' if ok else 'FAIL'}")
    if not ok:
        log(out)
    return ok


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--livefill", required=True, help="the livefill binary")
    ap.add_argument("--keep", help="work folder to keep (default: a temp folder, removed)")
    ap.add_argument("--layouts", default="legacy", help="comma-separated: legacy, optimum")
    args = ap.parse_args()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="livefill-layouts-test-"))
    work.mkdir(parents=True, exist_ok=True)
    livefill = Path(args.livefill).resolve()
    layouts = set(args.layouts.split(","))
    pipe = build_torch_pipeline()
    results = []
    variants = (("legacy", False, False), ("legacy-timestep-1", True, False), ("legacy-fixed-size", False, True))
    for name, fixed, fixed_size in variants if "legacy" in layouts else ():
        raw, out = work / f"raw-{name}", work / f"onnx-{name}"
        for d in (raw, out):
            shutil.rmtree(d, ignore_errors=True)
        log(f"[{name}] legacy converter conventions, timestep {'[1]' if fixed else '[batch]'}")
        convert_legacy(pipe, raw, fixed, fixed_size)
        save_legacy_layout(pipe, raw, out)
        if fixed_size:
            results.append(check_fixed_size(livefill, out, work))
            continue
        results.append(check_txt2img(livefill, pipe, out, work, name))
        if not fixed:
            results.append(check_inpaint_with_sampling_encoder(livefill, out, work))
            results.append(check_models_list(livefill, out))
    if "optimum" in layouts:
        log("[optimum] optimum's ONNX export, task text-to-image")
        out = export_with_optimum(pipe, work)
        results.append(check_txt2img(livefill, pipe, out, work, "optimum"))
        results.append(check_inpaint_parity(livefill, pipe, out, work, "optimum"))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    failures = results.count(False)
    log("all passed" if failures == 0 else f"{failures} check(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
