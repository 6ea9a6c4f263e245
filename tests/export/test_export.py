#!/usr/bin/env python3
"""End-to-end test of `livefill models export` (tests/export/export_lcm.py), offline.

1. Builds tiny random SD-1.5-architecture base pipelines (the parity fixtures' architecture,
   from tests/reference/make_fixtures.py) with `save_pretrained`: a 4-channel and a 9-channel
   (inpainting) one.
2. Builds a tiny random LoRA with peft (LoraConfig on the UNet attention projections
   to_q/to_k/to_v/to_out.0) and saves it in the diffusers LoRA format.
3. Exports base + LoRA with livefill's exporter (through `livefill models export --python …`
   when the binary is given, else the script directly).
4. Runs diffusers' own pipeline with the LoRA fused, on noise read from an .npy (the fixture
   script's noise injection), and `livefill generate --noise` on the export with the same noise;
   requires PSNR >= 40 dB (inpaint: inside the mask, where livefill regenerates).

    python tests/export/test_export.py --livefill target/debug/livefill [--keep DIR]

Needs the toolchain of tests/export/requirements.txt (see tests/export/test_export.sh).
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests" / "reference"))
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

import make_fixtures as mf  # noqa: E402  (tiny architecture, weight init, noise injection)
import export_lcm  # noqa: E402

from diffusers import (  # noqa: E402
    StableDiffusionInpaintPipeline,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from diffusers.utils import convert_state_dict_to_diffusers  # noqa: E402
from peft import LoraConfig  # noqa: E402
from peft.utils import get_peft_model_state_dict  # noqa: E402
from transformers import CLIPTokenizer  # noqa: E402

FIX = REPO / "tests" / "fixtures"


def log(msg):
    print(f"[test_export] {msg}", flush=True)


def build_base(dst: Path, in_channels: int) -> None:
    te = mf.build_text_encoder()
    vae = mf.build_vae()
    unet = UNet2DConditionModel(**mf.UNET_COMMON, in_channels=in_channels).eval()
    mf.reinit(unet, f"export-test-unet-{in_channels}")
    tok = CLIPTokenizer.from_pretrained(str(FIX / "tiny-sd" / "tokenizer"))
    cls = StableDiffusionInpaintPipeline if in_channels == 9 else StableDiffusionPipeline
    # The base ships a non-LCM scheduler, as real SD 1.5 checkpoints do (the exporter converts).
    from diffusers import PNDMScheduler

    sched = PNDMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
        steps_offset=1, skip_prk_steps=True, set_alpha_to_one=False,
    )
    pipe = cls(vae=vae, text_encoder=te, tokenizer=tok, unet=unet, scheduler=sched, safety_checker=None,
               feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(str(dst), safe_serialization=True)


@torch.no_grad()
def build_lora(base: Path, dst: Path, seed: int) -> None:
    unet = UNet2DConditionModel.from_pretrained(str(base), subfolder="unet")
    cfg = LoraConfig(r=4, lora_alpha=4, init_lora_weights=False,
                     target_modules=["to_q", "to_k", "to_v", "to_out.0"])
    unet.add_adapter(cfg)
    g = torch.Generator().manual_seed(seed)
    for name, p in unet.named_parameters():
        if "lora_" in name:
            p.copy_(torch.randn(p.shape, generator=g) * 0.5 / math.sqrt(p.shape[-1]))
    state = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    assert state, "no LoRA tensors"
    StableDiffusionPipeline.save_lora_weights(str(dst), unet_lora_layers=state, safe_serialization=True)


def build_taesd(dst: Path) -> None:
    from diffusers import AutoencoderTiny

    torch.manual_seed(7)
    AutoencoderTiny(
        encoder_block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8),
        num_encoder_blocks=(1, 1, 1, 1), num_decoder_blocks=(1, 1, 1, 1), latent_channels=4,
    ).save_pretrained(str(dst))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


@torch.no_grad()
def diffusers_reference(pipe, mode: str, prompt: str, noise: np.ndarray, image, mask, steps: int) -> np.ndarray:
    feed, rec = mf.NoiseFeed(noise), mf.Recorder()
    saved = mf.install_patches(feed, rec)
    try:
        common = dict(prompt=prompt, num_inference_steps=steps, guidance_scale=1.0, output_type="np", generator=None)
        if mode == "txt2img":
            out = StableDiffusionPipeline(**pipe.components)(height=64, width=64, **common)
        else:
            out = StableDiffusionInpaintPipeline(**pipe.components)(
                image=image, mask_image=mask, strength=1.0, height=64, width=64, **common
            )
    finally:
        mf.remove_patches(saved)
    assert feed.next == len(noise), f"diffusers used {feed.next} of {len(noise)} noise entries"
    img = out.images[0]
    return (img * 255.0).round().clip(0, 255).astype(np.uint8)


def run(cmd, **kw):
    log("$ " + " ".join(str(c) for c in cmd))
    subprocess.run([str(c) for c in cmd], check=True, **kw)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--livefill", required=True, help="the livefill binary")
    ap.add_argument("--keep", help="work folder to keep (default: a temp folder, removed)")
    args = ap.parse_args()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="livefill-export-test-"))
    work.mkdir(parents=True, exist_ok=True)
    livefill = Path(args.livefill).resolve()
    image = Image.open(FIX / "reference" / "inputs" / "image_64.png").convert("RGB")
    mask = Image.open(FIX / "reference" / "inputs" / "mask_64.png").convert("L")
    failures = 0
    # (mode, UNet channels, fp16 + TAESD, PSNR threshold): fp16 graphs are compared with
    # diffusers' float32 run, hence the lower bar.
    cases = (("txt2img", 4, False, 40.0), ("inpaint", 9, False, 40.0), ("txt2img", 4, True, 30.0))
    for mode, cin, half, threshold in cases:
        name = f"{mode}-{cin}ch" + ("-fp16-taesd" if half else "")
        base, lora, out = work / f"base-{name}", work / f"lora-{name}", work / f"onnx-{name}"
        for d in (base, lora, out):
            shutil.rmtree(d, ignore_errors=True)
        log(f"[{name}] tiny base + tiny LoRA")
        build_base(base, cin)
        build_lora(base, lora, seed=cin)
        export_args = ["--base", base, "--lora", lora, "--out", out] + (["--inpaint"] if cin == 9 else [])
        if half:
            taesd = work / f"taesd-{name}"
            build_taesd(taesd)
            export_args += ["--fp16", "--taesd", taesd]
        run([livefill, "models", "export", "--python", sys.executable] + export_args)

        # diffusers' reference: the same base with the same LoRA fused, as the exporter builds it.
        pipe, _ = export_lcm.build(export_lcm.parse_args([str(a) for a in export_args]))
        lora_changes_unet = not torch.equal(
            pipe.unet.state_dict()["down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight"],
            UNet2DConditionModel.from_pretrained(str(base), subfolder="unet")
            .state_dict()["down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight"],
        )
        assert lora_changes_unet, "fusing the LoRA did not change the UNet weights"
        steps = 4
        rng = np.random.default_rng(2024 + cin)
        noise = rng.standard_normal((steps, 4, 8, 8), dtype=np.float32)  # 1 initial + 3 LCM steps
        noise_path = work / f"noise-{name}.npy"
        np.save(noise_path, noise)
        prompt = "a red barn in a snowy field"
        want = diffusers_reference(pipe, mode, prompt, noise, image, mask, steps)

        got_path = work / f"livefill-{name}.png"
        cmd = [livefill, "generate", "--model", out, "--mode", mode, "--prompt", prompt, "--steps", steps,
               "--guidance", "1", "--seed", "0", "--noise", noise_path, "--device", "cpu", "--out", got_path]
        if mode == "txt2img":
            cmd += ["--width", "64", "--height", "64"]
        else:
            cmd += ["--image", FIX / "reference" / "inputs" / "image_64.png",
                    "--mask", FIX / "reference" / "inputs" / "mask_64.png",
                    "--strength", "1", "--context", "full", "--feather", "0", "--color-match", "off"]
        run(cmd)
        got = np.asarray(Image.open(got_path).convert("RGB"))
        if mode == "inpaint":
            sel = np.asarray(mask) == 255
            score = psnr(got[sel], want[sel])
        else:
            score = psnr(got, want)
        # Control: the base without the LoRA must NOT match (the LoRA really is in the export).
        plain = export_lcm.load_pipeline(str(base), torch.float32)
        control = diffusers_reference(plain, mode, prompt, noise, image, mask, steps)
        control_score = psnr(got[sel], control[sel]) if mode == "inpaint" else psnr(got, control)
        if half:
            for part in ("taesd_decoder", "taesd_encoder"):
                assert (out / part / "model.onnx").is_file(), f"no {part} in the export"
        ok = score >= threshold and control_score < score - 5
        failures += not ok
        log(f"[{name}] PSNR livefill vs diffusers(fused) = {score:.1f} dB; vs base without LoRA = "
            f"{control_score:.1f} dB -> {'ok' if ok else 'FAIL'}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    log("all passed" if failures == 0 else f"{failures} case(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
