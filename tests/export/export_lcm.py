#!/usr/bin/env python3
"""Export a Stable Diffusion 1.5 checkpoint with an LCM-LoRA fused into its UNet to ONNX, in the
Hugging Face optimum layout livefill loads (the same I/O names and dtypes as the parity fixtures
built by tests/reference/make_fixtures.py).

    python export_lcm.py --base ID_OR_DIR --lora ID_OR_DIR [--inpaint] [--fp16]
                         [--taesd ID_OR_DIR] --out DIR

--base   a diffusers SD 1.5 pipeline: hub id (e.g. an SD 1.5 or SD 1.5 inpainting repo) or a local
         folder written by `save_pretrained`. A 9-channel UNet (inpainting base) is exported as is.
--lora   an LCM-LoRA for that base (hub id or folder holding pytorch_lora_weights.safetensors),
         loaded with pipe.load_lora_weights and fused with pipe.fuse_lora(); "none" skips it
         (for bases that are already LCM-distilled).
--taesd  optional TAESD (AutoencoderTiny): its decoder is added as taesd_decoder/ (previews, live
         frames), its encoder as taesd_encoder/ (live frames' image latents).
--fp16   export the UNet and VAE (and TAESD) in float16 (the text encoder stays float32);
         default float32.

The pinned toolchain is tests/export/requirements.txt; `livefill models export` creates a venv
with it. Everything runs on the CPU unless --device cuda is given.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import torch  # noqa: E402

import diffusers  # noqa: E402
from diffusers import (  # noqa: E402
    AutoencoderKL,
    AutoencoderTiny,
    LCMScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextModel, CLIPTokenizer  # noqa: E402

OPSET = 17
# Above this many bytes of weights a graph is saved as model.onnx + model.onnx_data (protobuf's
# 2 GiB limit), as optimum does.
EXTERNAL_DATA_THRESHOLD = 1 << 30


def log(msg: str) -> None:
    print(f"[export] {msg}", flush=True)


# ------------------------------------------------------------------------------------------------
# Loading
# ------------------------------------------------------------------------------------------------


def load_pipeline(base: str, dtype: torch.dtype) -> StableDiffusionPipeline:
    """The base's components in a plain StableDiffusionPipeline (works for 4- and 9-channel UNets:
    only the LoRA loader and the components are used)."""
    kw = dict(torch_dtype=dtype)
    unet = UNet2DConditionModel.from_pretrained(base, subfolder="unet", **kw)
    vae = AutoencoderKL.from_pretrained(base, subfolder="vae", **kw)
    text_encoder = CLIPTextModel.from_pretrained(base, subfolder="text_encoder", **kw)
    tokenizer = CLIPTokenizer.from_pretrained(base, subfolder="tokenizer")
    # The base's scheduler config (betas, timestep spacing) as an LCMScheduler.
    scheduler = LCMScheduler.from_pretrained(base, subfolder="scheduler")
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def fuse_lora(pipe: StableDiffusionPipeline, lora: str, scale: float) -> None:
    pipe.load_lora_weights(lora, adapter_name="lcm")
    pipe.fuse_lora(lora_scale=scale)
    # Drop the PEFT wrappers; the fused weights stay in the base layers.
    pipe.unload_lora_weights()


def build(args) -> tuple[StableDiffusionPipeline, AutoencoderTiny | None]:
    """The pipeline exactly as exported (also used by the tests as diffusers' reference)."""
    pipe = load_pipeline(args.base, torch.float32)
    if args.lora and args.lora.lower() != "none":
        log(f"fusing LoRA {args.lora} (scale {args.lora_scale})")
        fuse_lora(pipe, args.lora, args.lora_scale)
    taesd = AutoencoderTiny.from_pretrained(args.taesd, torch_dtype=torch.float32) if args.taesd else None
    for m in (pipe.unet, pipe.vae, pipe.text_encoder) + ((taesd,) if taesd is not None else ()):
        m.eval()
    return pipe, taesd


# ------------------------------------------------------------------------------------------------
# Export wrappers (optimum's I/O names)
# ------------------------------------------------------------------------------------------------


class TextEncoderExport(torch.nn.Module):
    def __init__(self, te):
        super().__init__()
        self.te = te

    def forward(self, input_ids):
        out = self.te(input_ids=input_ids)
        return out.last_hidden_state, out.pooler_output


class UNetExport(torch.nn.Module):
    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, sample, timestep, encoder_hidden_states, timestep_cond=None):
        return self.unet(
            sample, timestep, encoder_hidden_states=encoder_hidden_states, timestep_cond=timestep_cond, return_dict=False
        )[0]


class VaeEncoderExport(torch.nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, sample):
        return self.vae.encode(sample).latent_dist.parameters


class VaeDecoderExport(torch.nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, latent_sample):
        return self.vae.decode(latent_sample, return_dict=False)[0]


class TaesdDecoderExport(torch.nn.Module):
    """UNet latents in, RGB in [-1, 1] out (AutoencoderTiny.decode already maps [0,1] → [-1,1])."""

    def __init__(self, taesd):
        super().__init__()
        self.taesd = taesd

    def forward(self, latent_sample):
        return self.taesd.decode(latent_sample, return_dict=False)[0]


class TaesdEncoderExport(torch.nn.Module):
    """RGB in [-1, 1] in, UNet latents out (AutoencoderTiny.encode maps [-1,1] → [0,1] itself; its
    latents are already in the scaled space the UNet works in: no scaling factor)."""

    def __init__(self, taesd):
        super().__init__()
        self.taesd = taesd

    def forward(self, sample):
        return self.taesd.encode(sample, return_dict=False)[0]


def taesd_encoder_axes(f: int) -> dict:
    """Dynamic axes of the TAESD encoder: an image in, latents `f` times smaller out."""
    return {
        "sample": {0: "batch_size", 2: "sample_height", 3: "sample_width"},
        "latent_sample": {0: "batch_size", 2: f"sample_height / {f}", 3: f"sample_width / {f}"},
    }


def weight_bytes(module: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def save_model(m: onnx.ModelProto, path: Path, big: bool) -> None:
    """One model.onnx; with `big`, its weights in model.onnx_data (protobuf stops at 2 GB)."""
    for stale in (path, path.with_name("model.onnx_data")):
        if stale.exists():
            stale.unlink()
    if big:
        onnx.save(
            m,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location="model.onnx_data",
            size_threshold=1024,
        )
    else:
        onnx.save(m, str(path))


def export_graph(module, args, path: Path, input_names, output_names, dynamic_axes, big: bool,
                 producer: str = "livefill tests/export/export_lcm.py (torch.onnx legacy exporter)"):
    """torch → ONNX (legacy exporter) → `path`, checked. Shared with the fixture and bench scripts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        tmp_path = Path(tmp) / "model.onnx"
        with torch.no_grad():
            torch.onnx.export(
                module,
                args,
                str(tmp_path),
                input_names=input_names,
                output_names=output_names,
                dynamic_axes=dynamic_axes,
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
        m = onnx.load(str(tmp_path))  # pulls in any external data the exporter wrote
        m.doc_string = ""
        m.producer_name = producer
        save_model(m, path, big)
    onnx.checker.check_model(str(path))


def export_all(pipe: StableDiffusionPipeline, taesd, out: Path, dtype: torch.dtype, device: str) -> None:
    te, unet, vae = pipe.text_encoder, pipe.unet, pipe.vae
    # The text encoder stays float32 (small, runs once per prompt; transformers' CLIP does not
    # trace to a consistent float16 graph). livefill reads each graph's own element types.
    te.to(device=device, dtype=torch.float32)
    for m in (unet, vae) + ((taesd,) if taesd is not None else ()):
        m.to(device=device, dtype=dtype)
    fdt = dict(device=device, dtype=dtype)
    g = torch.Generator().manual_seed(0)
    hidden = te.config.hidden_size
    cin = unet.config.in_channels
    side = unet.config.sample_size
    f = 2 ** (len(vae.config.block_out_channels) - 1)

    log("text_encoder")
    ids = torch.tensor([[49406, 320, 1125, 539, 320, 2368, 49407] + [49407] * 70], dtype=torch.int64, device=device)
    export_graph(
        TextEncoderExport(te),
        (ids,),
        out / "text_encoder" / "model.onnx",
        ["input_ids"],
        ["last_hidden_state", "pooler_output"],
        {
            "input_ids": {0: "batch_size", 1: "sequence_length"},
            "last_hidden_state": {0: "batch_size", 1: "sequence_length"},
            "pooler_output": {0: "batch_size"},
        },
        weight_bytes(te) > EXTERNAL_DATA_THRESHOLD,
    )

    log(f"unet ({cin} input channels)")
    sample = torch.randn(2, cin, side, side, generator=g).to(**fdt)
    timestep = torch.tensor(500.0, dtype=torch.float32, device=device)  # rank 0, as optimum-onnx
    ehs = torch.randn(2, 77, hidden, generator=g).to(**fdt)
    unet_args = [sample, timestep, ehs]
    names = ["sample", "timestep", "encoder_hidden_states"]
    dyn = {
        "sample": {0: "batch_size", 2: "height", 3: "width"},
        "encoder_hidden_states": {0: "batch_size", 1: "sequence_length"},
        "out_sample": {0: "batch_size", 2: "height", 3: "width"},
    }
    if unet.config.time_cond_proj_dim is not None:
        unet_args.append(torch.randn(2, unet.config.time_cond_proj_dim, generator=g).to(**fdt))
        names.append("timestep_cond")
        dyn["timestep_cond"] = {0: "batch_size"}
    export_graph(
        UNetExport(unet),
        tuple(unet_args),
        out / "unet" / "model.onnx",
        names,
        ["out_sample"],
        dyn,
        weight_bytes(unet) > EXTERNAL_DATA_THRESHOLD,
    )

    log("vae_encoder / vae_decoder")
    img = (torch.rand(1, 3, side * f, side * f, generator=g) * 2 - 1).to(**fdt)
    export_graph(
        VaeEncoderExport(vae),
        (img,),
        out / "vae_encoder" / "model.onnx",
        ["sample"],
        ["latent_parameters"],
        {
            "sample": {0: "batch_size", 2: "sample_height", 3: "sample_width"},
            "latent_parameters": {0: "batch_size", 2: f"sample_height / {f}", 3: f"sample_width / {f}"},
        },
        False,
    )
    lat = torch.randn(1, vae.config.latent_channels, side, side, generator=g).to(**fdt)
    latent_axes = {
        "latent_sample": {0: "batch_size", 2: "latent_height", 3: "latent_width"},
        "sample": {0: "batch_size", 2: f"latent_height * {f}", 3: f"latent_width * {f}"},
    }
    export_graph(
        VaeDecoderExport(vae),
        (lat,),
        out / "vae_decoder" / "model.onnx",
        ["latent_sample"],
        ["sample"],
        latent_axes,
        False,
    )
    if taesd is not None:
        log("taesd_decoder / taesd_encoder")
        export_graph(
            TaesdDecoderExport(taesd), (lat,), out / "taesd_decoder" / "model.onnx", ["latent_sample"], ["sample"],
            latent_axes, False,
        )
        export_graph(
            TaesdEncoderExport(taesd), (img,), out / "taesd_encoder" / "model.onnx", ["sample"], ["latent_sample"],
            taesd_encoder_axes(f), False,
        )
    for m in (te, unet, vae) + ((taesd,) if taesd is not None else ()):
        m.to(device="cpu", dtype=torch.float32)


# ------------------------------------------------------------------------------------------------
# Configs
# ------------------------------------------------------------------------------------------------


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def diffusers_config(obj) -> dict:
    return json.loads(obj.to_json_string())


def write_configs(pipe: StableDiffusionPipeline, taesd, out: Path, inpaint: bool) -> None:
    write_json(
        out / "model_index.json",
        {
            "_class_name": "StableDiffusionInpaintPipeline" if inpaint else "StableDiffusionPipeline",
            "_diffusers_version": diffusers.__version__,
            "feature_extractor": [None, None],
            "image_encoder": [None, None],
            "requires_safety_checker": False,
            "safety_checker": [None, None],
            "scheduler": ["diffusers", "LCMScheduler"],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"],
        },
    )
    write_json(out / "scheduler" / "scheduler_config.json", diffusers_config(pipe.scheduler))
    te_cfg = {k: v for k, v in pipe.text_encoder.config.to_dict().items() if k not in ("_name_or_path", "_commit_hash")}
    te_cfg.pop("_attn_implementation_autoset", None)
    te_cfg["architectures"] = ["CLIPTextModel"]
    write_json(out / "text_encoder" / "config.json", te_cfg)
    write_json(out / "unet" / "config.json", diffusers_config(pipe.unet))
    vae_cfg = diffusers_config(pipe.vae)
    write_json(out / "vae_encoder" / "config.json", vae_cfg)
    write_json(out / "vae_decoder" / "config.json", vae_cfg)
    if taesd is not None:
        write_json(out / "taesd_decoder" / "config.json", diffusers_config(taesd))
        write_json(out / "taesd_encoder" / "config.json", diffusers_config(taesd))
    tok_dir = out / "tokenizer"
    if tok_dir.exists():
        shutil.rmtree(tok_dir)
    pipe.tokenizer.save_pretrained(str(tok_dir))


# ------------------------------------------------------------------------------------------------
# Check: ONNX Runtime against torch on random inputs
# ------------------------------------------------------------------------------------------------


@torch.no_grad()
def check(pipe: StableDiffusionPipeline, taesd, out: Path, fp16: bool) -> None:
    import onnxruntime as ort

    tol = 2e-2 if fp16 else 1e-3
    ftype = np.float16 if fp16 else np.float32
    so = ort.SessionOptions()
    so.log_severity_level = 3

    def session(sub):
        return ort.InferenceSession(str(out / sub / "model.onnx"), so, providers=["CPUExecutionProvider"])

    def compare(label, got, want):
        got, want = np.asarray(got, dtype=np.float32), np.asarray(want, dtype=np.float32)
        err = float(np.max(np.abs(got - want)))
        scale = max(1.0, float(np.max(np.abs(want))))
        log(f"check {label}: max|onnx - torch| = {err:.2e}")
        if not err <= tol * scale:
            raise SystemExit(f"export check failed: {label} differs from torch by {err}")

    g = torch.Generator().manual_seed(1)
    unet = pipe.unet
    side = unet.config.sample_size
    x = torch.randn(1, unet.config.in_channels, side, side, generator=g)
    e = torch.randn(1, 77, pipe.text_encoder.config.hidden_size, generator=g)
    feeds = {"sample": x.numpy().astype(ftype), "timestep": np.array(499.0, dtype=np.float32),
             "encoder_hidden_states": e.numpy().astype(ftype)}
    tc = None
    if unet.config.time_cond_proj_dim is not None:
        tc = torch.randn(1, unet.config.time_cond_proj_dim, generator=g)
        feeds["timestep_cond"] = tc.numpy().astype(ftype)
    (got,) = session("unet").run(None, feeds)
    compare("unet", got, unet(x, torch.tensor(499), encoder_hidden_states=e, timestep_cond=tc).sample.numpy())
    ids = np.array([[49406, 320, 1125, 539, 320, 2368, 49407] + [49407] * 70], dtype=np.int64)
    lh, _ = session("text_encoder").run(None, {"input_ids": ids})
    compare("text_encoder", lh, pipe.text_encoder(input_ids=torch.from_numpy(ids)).last_hidden_state.numpy())
    z = torch.randn(1, pipe.vae.config.latent_channels, side, side, generator=g)
    (dec,) = session("vae_decoder").run(None, {"latent_sample": z.numpy().astype(ftype)})
    compare("vae_decoder", dec, pipe.vae.decode(z).sample.numpy())
    if taesd is not None:
        (dec,) = session("taesd_decoder").run(None, {"latent_sample": z.numpy().astype(ftype)})
        compare("taesd_decoder", dec, taesd.decode(z).sample.numpy())
        img = torch.rand(1, 3, side * 8, side * 8, generator=g) * 2 - 1
        (enc,) = session("taesd_encoder").run(None, {"sample": img.numpy().astype(ftype)})
        compare("taesd_encoder", enc, taesd.encode(img).latents.numpy())


# ------------------------------------------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", required=True, help="SD 1.5 diffusers pipeline: hub id or local folder")
    p.add_argument("--lora", required=True, help="LCM-LoRA: hub id or local folder, or 'none'")
    p.add_argument("--lora-scale", type=float, default=1.0)
    p.add_argument("--taesd", help="TAESD (AutoencoderTiny): hub id or local folder")
    p.add_argument("--inpaint", action="store_true", help="require a 9-channel inpainting UNet")
    p.add_argument("--fp16", action="store_true", help="export float16 graphs")
    p.add_argument("--device", default="cpu", help="torch device for the export (cpu, cuda)")
    p.add_argument("--no-check", action="store_true", help="skip the ONNX Runtime vs torch check")
    p.add_argument("--out", required=True, help="output folder (optimum ONNX layout)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    log(f"torch {torch.__version__}, diffusers {diffusers.__version__}, onnx {onnx.__version__}")
    torch.manual_seed(0)
    pipe, taesd = build(args)
    cin = pipe.unet.config.in_channels
    if args.inpaint and cin != 9:
        raise SystemExit(f"--inpaint: the base's UNet takes {cin} channels, not 9 (not an inpainting model)")
    if cin not in (4, 9):
        raise SystemExit(f"the base's UNet takes {cin} channels; livefill supports 4 or 9")
    dtype = torch.float16 if args.fp16 else torch.float32
    out.mkdir(parents=True, exist_ok=True)
    export_all(pipe, taesd, out, dtype, args.device)
    write_configs(pipe, taesd, out, inpaint=cin == 9)
    if not args.no_check:
        check(pipe, taesd, out, args.fp16)
    log(f"done: {out} ({'fp16' if args.fp16 else 'fp32'}, {cin}-channel UNet{', TAESD' if taesd is not None else ''})")
    log(f"use it with: livefill serve --model {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
