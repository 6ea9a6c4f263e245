#!/usr/bin/env python3
"""The work `livefill bench` does, through Python baselines, for side-by-side numbers.

  diffusers  PyTorch pipelines (StableDiffusion / Img2Img / Inpaint) with LCMScheduler, built
             from the model folder's config.json files (random weights: timing does not depend
             on weight values); CPU fp32, or CUDA fp16 with --device cuda.
  optimum    optimum-onnx's ONNX Runtime pipelines (ORTStableDiffusion{,Img2Img,Inpaint}Pipeline)
             on the SAME ONNX folder livefill loads, same ONNX Runtime version, same thread count.

Same modes, size, steps, strength, guidance and inputs as `livefill bench` (see
daemon/src/cli/bench.rs): txt2img; img2img (strength 0.6); inpaint (strength 1, centred square
mask); live (img2img at strength 0.5, a changed input every iteration, decoded with TAESD when
the folder has taesd_decoder/, as livefill's live previews are). Prints p50/p95 per
stage and end to end, and writes JSON (--json) for tests/bench/run_bench.sh.

    .cache/benchvenv/bin/python tests/bench/bench_python.py --model tests/fixtures/tiny-sd \\
        --size 64 --threads 2 --iterations 10 --warmup 2 --json /tmp/py.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

MODES = ("txt2img", "img2img", "inpaint", "live")


def summary(samples: list[float]) -> dict:
    a = np.asarray(samples, dtype=np.float64)
    return {
        "p50": float(np.percentile(a, 50)),
        "p95": float(np.percentile(a, 95)),
        "mean": float(a.mean()),
        "min": float(a.min()),
        "max": float(a.max()),
        "n": len(samples),
        "samples": [float(x) for x in samples],
    }


def synthetic_image(w: int, h: int) -> np.ndarray:
    """Same formula as livefill's `bench::synthetic_image` (RGB, uint8)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    r = x * 255.0 / (max(w, 2) - 1)
    g = y * 255.0 / (max(h, 2) - 1)
    b = 127.5 + 127.5 * np.sin((x + y) / 9.0)
    return np.round(np.stack([r, g, b], axis=-1)).astype(np.uint8)


def centre_mask(w: int, h: int) -> Image.Image:
    m = np.zeros((h, w), dtype=np.uint8)
    m[h // 4 : h * 3 // 4, w // 4 : w * 3 // 4] = 255
    return Image.fromarray(m, mode="L")


def live_image(base: np.ndarray, iteration: int) -> Image.Image:
    img = base.copy().reshape(-1, 3)
    n = img.shape[0]
    for k in range(16):
        p = (iteration * 7919 + k * 104729) % n
        img[p, 0] = (int(img[p, 0]) + 97) % 256
    return Image.fromarray(img.reshape(base.shape))


class StageClock:
    """Wall time of each model call, by stage, for the current pipeline call."""

    def __init__(self, sync):
        self.sync = sync
        self.current: dict[str, float] = {}
        self.unet_calls = 0

    def reset(self):
        self.current = {}
        self.unet_calls = 0

    def wrap(self, obj, attr: str, stage: str):
        setattr(obj, attr, self.timed(getattr(obj, attr), stage))

    def timed(self, inner, stage: str):
        def timed(*a, **k):
            self.sync()
            t = time.perf_counter()
            out = inner(*a, **k)
            self.sync()
            self.current[stage] = self.current.get(stage, 0.0) + (time.perf_counter() - t) * 1000.0
            if stage == "unet":
                self.unet_calls += 1
            return out

        return timed


# --------------------------------------------------------------------------- diffusers (torch)


def load_diffusers(model: Path, device: str, dtype: torch.dtype):
    from diffusers import (
        AutoencoderKL,
        LCMScheduler,
        StableDiffusionImg2ImgPipeline,
        StableDiffusionInpaintPipeline,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(model / "unet"))
    if unet.config.time_cond_proj_dim is not None:
        raise SystemExit("bench_python.py: LCM-distilled UNets (time_cond_proj_dim) are not supported here")
    vae = AutoencoderKL.from_config(AutoencoderKL.load_config(model / "vae_decoder"))
    te_cfg = CLIPTextConfig.from_json_file(str(model / "text_encoder" / "config.json"))
    te = CLIPTextModel(te_cfg)
    tok = CLIPTokenizer.from_pretrained(str(model / "tokenizer"))
    sched = LCMScheduler.from_pretrained(str(model / "scheduler"))
    for m in (unet, vae, te):
        m.to(device=device, dtype=dtype).eval()
    common = dict(
        vae=vae, text_encoder=te, tokenizer=tok, unet=unet, scheduler=sched,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipes = {
        "txt2img": StableDiffusionPipeline(**common),
        "img2img": StableDiffusionImg2ImgPipeline(**common),
        "inpaint": StableDiffusionInpaintPipeline(**common),
    }
    if (model / "taesd_decoder" / "config.json").exists():
        from diffusers import AutoencoderTiny

        taesd = AutoencoderTiny.from_config(AutoencoderTiny.load_config(model / "taesd_decoder"))
        taesd.to(device=device, dtype=dtype).eval()
        # Live previews decode with TAESD, as livefill's do (AutoencoderTiny's scaling factor is 1:
        # it takes the UNet's latents as they are).
        pipes["taesd_decode"] = lambda latents: taesd.decode(latents.to(dtype)).sample
    return pipes, (unet, vae, te)


def instrument_diffusers(clock: StageClock, parts) -> None:
    unet, vae, te = parts
    clock.wrap(unet, "forward", "unet")
    clock.wrap(te, "forward", "text_encode")
    clock.wrap(vae, "encode", "vae_encode")
    clock.wrap(vae, "decode", "vae_decode")


# --------------------------------------------------------------------------- optimum (ORT)


def load_optimum(model: Path, device: str, threads: int | None):
    import onnxruntime as ort
    from optimum.onnxruntime import (
        ORTStableDiffusionImg2ImgPipeline,
        ORTStableDiffusionInpaintPipeline,
        ORTStableDiffusionPipeline,
    )

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL  # = livefill's Level3
    if threads:
        so.intra_op_num_threads = threads
    provider = "CUDAExecutionProvider" if device.startswith("cuda") else "CPUExecutionProvider"
    base = ORTStableDiffusionPipeline.from_pretrained(str(model), provider=provider, session_options=so)
    # Every session, not only the UNet's: ONNX Runtime falls back to CPU without a word.
    got = {name: getattr(base, name).session.get_providers()[0]
           for name in ("text_encoder", "unet", "vae_encoder", "vae_decoder")}
    wrong = {name: p for name, p in got.items() if p != provider}
    if wrong:
        raise SystemExit(f"optimum: asked for {provider}, sessions got {wrong}")
    sessions = dict(
        unet_session=base.unet.session,
        vae_decoder_session=base.vae_decoder.session,
        vae_encoder_session=base.vae_encoder.session,
        text_encoder_session=base.text_encoder.session,
        scheduler=base.scheduler,
        tokenizer=base.tokenizer,
        use_io_binding=base.unet.use_io_binding,
    )
    pipes = {
        "txt2img": base,
        "img2img": ORTStableDiffusionImg2ImgPipeline(**sessions),
        "inpaint": ORTStableDiffusionInpaintPipeline(**sessions),
    }
    taesd_path = model / "taesd_decoder" / "model.onnx"
    if taesd_path.exists():
        taesd = ort.InferenceSession(str(taesd_path), sess_options=so, providers=[provider])
        if taesd.get_providers()[0] != provider:
            raise SystemExit(f"optimum: asked for {provider}, the TAESD session got {taesd.get_providers()[0]}")
        name = taesd.get_inputs()[0].name
        dtype = np.float16 if "float16" in taesd.get_inputs()[0].type else np.float32

        def taesd_decode(latents):
            array = latents.cpu().numpy() if hasattr(latents, "cpu") else np.asarray(latents)
            return torch.from_numpy(taesd.run(None, {name: array.astype(dtype)})[0].astype(np.float32))

        pipes["taesd_decode"] = taesd_decode
    return pipes


def instrument_optimum(clock: StageClock, pipes) -> None:
    # Each pipeline object wraps the shared sessions in its own ORT* model objects.
    for p in (pipes["txt2img"], pipes["img2img"], pipes["inpaint"]):
        clock.wrap(p.unet, "forward", "unet")
        clock.wrap(p.text_encoder, "forward", "text_encode")
        clock.wrap(p.vae_encoder, "forward", "vae_encode")
        clock.wrap(p.vae_decoder, "forward", "vae_decode")


# --------------------------------------------------------------------------- the runs


def call(pipes, mode: str, args, base: np.ndarray, i: int, device: str):
    size = args.size
    gen = torch.Generator(device="cpu").manual_seed(i)
    common = dict(
        prompt=args.prompt, num_inference_steps=args.steps, guidance_scale=args.guidance,
        generator=gen, output_type="pil",
    )
    if mode == "txt2img":
        return pipes["txt2img"](height=size, width=size, **common)
    if mode == "img2img":
        return pipes["img2img"](image=Image.fromarray(base), strength=args.strength, **common)
    if mode == "live":
        decode = pipes.get("taesd_decode")
        if decode is None:  # no TAESD in the model folder: the full VAE, as livefill does then
            return pipes["img2img"](image=live_image(base, i), strength=args.live_strength, **common)
        common["output_type"] = "latent"
        latents = pipes["img2img"](image=live_image(base, i), strength=args.live_strength, **common).images
        image = pipes["taesd_decode"](latents)
        return pipes["img2img"].image_processor.postprocess(image, output_type="pil")
    if mode == "inpaint":
        return pipes["inpaint"](
            image=Image.fromarray(base), mask_image=centre_mask(size, size), strength=1.0,
            height=size, width=size, **common,
        )
    raise ValueError(mode)


def bench(impl: str, args) -> dict:
    device = args.device
    sync = (lambda: torch.cuda.synchronize()) if device.startswith("cuda") else (lambda: None)
    clock = StageClock(sync)
    t0 = time.perf_counter()
    if impl == "diffusers":
        dtype = torch.float16 if (device.startswith("cuda") and args.dtype == "fp16") else torch.float32
        pipes, parts = load_diffusers(args.model, device, dtype)
        instrument_diffusers(clock, parts)
        detail = {"dtype": str(dtype).replace("torch.", ""), "torch_threads": torch.get_num_threads(),
                  "weights_on": str(next(parts[0].parameters()).device)}
    else:
        pipes = load_optimum(args.model, device, args.threads)
        instrument_optimum(clock, pipes)
        txt = pipes["txt2img"]
        detail = {"provider": txt.unet.session.get_providers()[0],
                  "session_providers": {name: getattr(txt, name).session.get_providers()
                                        for name in ("text_encoder", "unet", "vae_encoder", "vae_decoder")},
                  "io_binding": bool(txt.unet.use_io_binding)}
    load_ms = (time.perf_counter() - t0) * 1000.0
    if "taesd_decode" in pipes:
        pipes["taesd_decode"] = clock.timed(pipes["taesd_decode"], "taesd_decode")
    for name in ("txt2img", "img2img", "inpaint"):
        pipes[name].set_progress_bar_config(disable=True)
    print(f"{impl}: loaded in {load_ms / 1000:.1f} s ({detail})", flush=True)
    base = synthetic_image(args.size, args.size)
    modes = {}
    for mode in args.modes:
        e2e, stages, passes = [], {}, 0
        for i in range(args.warmup + args.iterations):
            clock.reset()
            sync()
            t = time.perf_counter()
            with torch.inference_mode():
                call(pipes, mode, args, base, i, device)
            sync()
            ms = (time.perf_counter() - t) * 1000.0
            if i < args.warmup:
                continue
            e2e.append(ms)
            passes = clock.unet_calls
            for k, v in clock.current.items():
                stages.setdefault(k, []).append(v)
        model_stages = ("text_encode", "vae_encode", "unet", "vae_decode", "taesd_decode")
        ort = [sum(stages.get(s, [0.0] * len(e2e))[j] for s in model_stages) for j in range(len(e2e))]
        modes[mode] = {
            "unet_steps": passes,
            "e2e_ms": summary(e2e),
            "model_calls_ms": summary(ort),
            "overhead_ms": summary([a - b for a, b in zip(e2e, ort)]),
            "stages_ms": {k: summary(v) for k, v in stages.items()},
        }
        print(f"  {mode} ({passes} UNet passes)")
        for k in ("text_encode", "vae_encode", "unet", "vae_decode"):
            if k in stages:
                s = summary(stages[k])
                print(f"    {k:<26} p50 {s['p50']:>10.2f} ms   p95 {s['p95']:>10.2f} ms")
        for label, v in (("model calls (sum)", ort), ("pipeline overhead", modes[mode]["overhead_ms"]["samples"]),
                         ("end to end", e2e)):
            s = summary(v)
            print(f"    {label:<26} p50 {s['p50']:>10.2f} ms   p95 {s['p95']:>10.2f} ms")
        sys.stdout.flush()
    del pipes
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return {"implementation": impl, "load_ms": load_ms, **detail, "modes": modes}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, required=True, help="optimum-layout ONNX folder (as livefill's --model)")
    ap.add_argument("--impls", default="diffusers,optimum")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--size", type=int, default=None, help="square side (default: the UNet's native size)")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--strength", type=float, default=0.6)
    ap.add_argument("--live-strength", type=float, default=0.5)
    ap.add_argument("--guidance", type=float, default=1.0)
    ap.add_argument("--prompt", default="a photograph of a red door in a stone wall")
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None, help="torch threads and ORT intra-op threads")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (diffusers fp16, optimum CUDAExecutionProvider)")
    ap.add_argument("--dtype", default="fp16", choices=("fp16", "fp32"), help="diffusers dtype on CUDA")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    args.modes = [m for m in args.modes.split(",") if m]
    for m in args.modes:
        if m not in MODES:
            ap.error(f"unknown mode {m}")
    if args.size is None:
        cfg = json.loads((args.model / "unet" / "config.json").read_text())
        args.size = cfg["sample_size"] * 8
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)

    import diffusers
    import onnxruntime
    import transformers

    versions = {"python": sys.version.split()[0], "torch": torch.__version__, "diffusers": diffusers.__version__,
                "transformers": transformers.__version__, "onnxruntime": onnxruntime.__version__}
    try:
        from importlib.metadata import version

        versions["optimum"] = version("optimum")
        versions["optimum-onnx"] = version("optimum-onnx")
    except Exception:  # noqa: BLE001
        pass
    print(f"bench_python: {args.model} {args.size}x{args.size}, {args.steps} steps, guidance {args.guidance}, "
          f"{args.warmup} warm-up + {args.iterations} timed runs, threads {args.threads}, device {args.device}; "
          f"{versions}", flush=True)
    report = {"model": str(args.model), "size": args.size, "steps": args.steps, "guidance": args.guidance,
              "strength": args.strength, "live_strength": args.live_strength, "iterations": args.iterations,
              "warmup": args.warmup, "threads": args.threads, "device": args.device, "versions": versions,
              "runs": {}}
    for impl in [s for s in args.impls.split(",") if s]:
        report["runs"][impl] = bench(impl, args)
        if args.json:  # write as we go: a long run still leaves what it measured
            args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
