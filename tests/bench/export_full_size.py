#!/usr/bin/env python3
"""Export a full-size, random-weight Stable Diffusion 1.5-architecture model to ONNX for
benchmarks, in Hugging Face optimum's layout with the same I/O names as the parity fixtures
(tests/reference/README.md, "current" convention: input_ids int64, timestep float32 rank 0).

Random weights: the work per call (shapes, operators, FLOPs) is that of SD 1.5, so timings are
those of a real SD 1.5 + LCM-LoRA model; only the pictures are noise.

    .cache/benchvenv/bin/python tests/bench/export_full_size.py [--out .cache/sd15-random] [--fp16]

Writes OUT/ (fp32) and with --fp16 also OUT-fp16/ (every float tensor and float I/O in fp16, for
GPUs). Components: text_encoder/ (CLIP ViT-L/14 text tower: 12 layers, 768 wide), unet/
(SD 1.5 UNet: block_out_channels 320/640/1280/1280, cross_attention_dim 768, 4 input channels),
vae_encoder/ + vae_decoder/ (SD 1.5 VAE: 128/256/512/512), taesd_decoder/ + taesd_encoder/
(diffusers AutoencoderTiny: the UNet's latents ⇄ RGB in [-1, 1]), tokenizer/ and
scheduler/ (LCMScheduler) copied from tests/fixtures/tiny-sd. Tensors over 2 GB go to
model.onnx_data beside model.onnx.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import onnx  # noqa: E402
import torch  # noqa: E402
from diffusers import AutoencoderKL, AutoencoderTiny, UNet2DConditionModel  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "tests" / "fixtures" / "tiny-sd"

# Stable Diffusion 1.5's published component configurations.
TEXT_CONFIG = dict(
    vocab_size=49408,
    hidden_size=768,
    intermediate_size=3072,
    projection_dim=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    layer_norm_eps=1e-5,
    bos_token_id=49406,
    eos_token_id=49407,
    pad_token_id=1,
)
UNET_CONFIG = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    center_input_sample=False,
    flip_sin_to_cos=True,
    freq_shift=0,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    downsample_padding=1,
    mid_block_scale_factor=1,
    act_fn="silu",
    norm_num_groups=32,
    norm_eps=1e-5,
    cross_attention_dim=768,
    attention_head_dim=8,
)
VAE_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    act_fn="silu",
    latent_channels=4,
    norm_num_groups=32,
    sample_size=512,
    scaling_factor=0.18215,
)


# The graph wrappers are the production exporter's (`livefill models export`), so the benchmark
# model has exactly the I/O of a real export.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "export"))
from export_lcm import (  # noqa: E402
    EXTERNAL_DATA_THRESHOLD,
    TaesdDecoderExport,
    TaesdEncoderExport,
    TextEncoderExport,
    UNetExport,
    VaeDecoderExport,
    VaeEncoderExport,
    export_graph,
    save_model,
    taesd_encoder_axes,
    weight_bytes,
)


def export(module, args, path: Path, inputs, outputs, dynamic_axes) -> None:
    """torch → ONNX with the production exporter's `export_graph` (external data when large)."""
    start = time.perf_counter()
    export_graph(module, args, path, inputs, outputs, dynamic_axes,
                 big=weight_bytes(module) > EXTERNAL_DATA_THRESHOLD,
                 producer="livefill tests/bench/export_full_size.py (random weights)")
    print(f"  {path.relative_to(path.parents[1])}: {time.perf_counter() - start:.0f} s", flush=True)


def save(model: onnx.ModelProto, path: Path) -> None:
    """A converted model: external data only when protobuf cannot hold it in one file."""
    try:
        big = model.ByteSize() > 1_900_000_000
    except Exception:  # protobuf refuses to size messages over 2 GB
        big = True
    save_model(model, path, big)


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def export_fp32(out: Path) -> None:
    torch.manual_seed(0)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    shutil.copytree(TINY / "tokenizer", out / "tokenizer")
    shutil.copytree(TINY / "scheduler", out / "scheduler")
    index = json.loads((TINY / "model_index.json").read_text())
    write_json(out / "model_index.json", index)

    print("text encoder (CLIP ViT-L/14 text tower)", flush=True)
    cfg = CLIPTextConfig(**TEXT_CONFIG)
    cfg._attn_implementation = "eager"
    te = CLIPTextModel(cfg).eval()
    te_cfg = {k: v for k, v in te.config.to_dict().items() if k not in ("_name_or_path", "_commit_hash")}
    te_cfg.update(architectures=["CLIPTextModel"], dtype="float32")
    write_json(out / "text_encoder" / "config.json", te_cfg)
    ids = torch.tensor([[49406, 320, 1125, 539, 320, 2368, 49407] + [49407] * 70], dtype=torch.int64)
    export(TextEncoderExport(te), (ids,), out / "text_encoder" / "model.onnx", ["input_ids"],
           ["last_hidden_state", "pooler_output"],
           {"input_ids": {0: "batch_size", 1: "sequence_length"},
            "last_hidden_state": {0: "batch_size", 1: "sequence_length"},
            "pooler_output": {0: "batch_size"}})
    del te

    print("VAE (SD 1.5 AutoencoderKL)", flush=True)
    vae = AutoencoderKL(**VAE_CONFIG).eval()
    vae_cfg = json.loads(vae.to_json_string())
    write_json(out / "vae_encoder" / "config.json", vae_cfg)
    write_json(out / "vae_decoder" / "config.json", vae_cfg)
    img = torch.rand(1, 3, 64, 64) * 2 - 1
    export(VaeEncoderExport(vae), (img,), out / "vae_encoder" / "model.onnx", ["sample"], ["latent_parameters"],
           {"sample": {0: "batch_size", 2: "sample_height", 3: "sample_width"},
            "latent_parameters": {0: "batch_size", 2: "sample_height / 8", 3: "sample_width / 8"}})
    lat = torch.randn(1, 4, 8, 8)
    export(VaeDecoderExport(vae), (lat,), out / "vae_decoder" / "model.onnx", ["latent_sample"], ["sample"],
           {"latent_sample": {0: "batch_size", 2: "latent_height", 3: "latent_width"},
            "sample": {0: "batch_size", 2: "latent_height * 8", 3: "latent_width * 8"}})
    del vae

    print("TAESD decoder + encoder (AutoencoderTiny)", flush=True)
    taesd = AutoencoderTiny().eval()
    write_json(out / "taesd_decoder" / "config.json", json.loads(taesd.to_json_string()))
    export(TaesdDecoderExport(taesd), (lat,), out / "taesd_decoder" / "model.onnx", ["latent_sample"], ["sample"],
           {"latent_sample": {0: "batch_size", 2: "latent_height", 3: "latent_width"},
            "sample": {0: "batch_size", 2: "latent_height * 8", 3: "latent_width * 8"}})
    write_json(out / "taesd_encoder" / "config.json", json.loads(taesd.to_json_string()))
    export(TaesdEncoderExport(taesd), (img,), out / "taesd_encoder" / "model.onnx", ["sample"], ["latent_sample"],
           taesd_encoder_axes(8))
    del taesd

    print("UNet (SD 1.5 UNet2DConditionModel, ~860 M parameters; the slow one)", flush=True)
    unet = UNet2DConditionModel(**UNET_CONFIG).eval()
    write_json(out / "unet" / "config.json", json.loads(unet.to_json_string()))
    sample = torch.randn(1, 4, 32, 32)
    timestep = torch.tensor(500.0, dtype=torch.float32)  # rank 0, as optimum-onnx exports
    ehs = torch.randn(1, 77, 768)
    export(UNetExport(unet), (sample, timestep, ehs), out / "unet" / "model.onnx",
           ["sample", "timestep", "encoder_hidden_states"], ["out_sample"],
           {"sample": {0: "batch_size", 2: "height", 3: "width"},
            "encoder_hidden_states": {0: "batch_size", 1: "sequence_length"},
            "out_sample": {0: "batch_size", 2: "height", 3: "width"}})
    del unet


def convert_fp16(src: Path, dst: Path) -> None:
    """Every float tensor and float graph input/output to fp16 (as optimum's fp16 exports)."""
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("model.onnx", "model.onnx_data"))
    for sub in ("text_encoder", "unet", "vae_encoder", "vae_decoder", "taesd_decoder", "taesd_encoder"):
        start = time.perf_counter()
        model = onnx.load(str(src / sub / "model.onnx"))
        # Resize stays float32 (with casts around it), and so do the Constants feeding its `roi`
        # / `scales` inputs: those must be float32, which the converter does not know.
        producers = {o: n for n in model.graph.node for o in n.output}
        resize_constants = [producers[i].name for n in model.graph.node if n.op_type == "Resize"
                            for i in n.input[1:3] if i in producers and producers[i].op_type == "Constant"]
        model = convert_float_to_float16(model, keep_io_types=False, disable_shape_infer=True,
                                         op_block_list=DEFAULT_OP_BLOCK_LIST + ["Resize"],
                                         node_block_list=resize_constants)
        save(model, dst / sub / "model.onnx")
        print(f"  fp16 {sub}: {time.perf_counter() - start:.0f} s", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / ".cache" / "sd15-random")
    ap.add_argument("--fp16", action="store_true", help="also write OUT-fp16/ (for GPUs)")
    ap.add_argument("--fp16-only", action="store_true", help="only convert an existing OUT/ to OUT-fp16/")
    args = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    out = args.out.resolve()
    if not args.fp16_only:
        export_fp32(out)
    if args.fp16 or args.fp16_only:
        convert_fp16(out, out.with_name(out.name + "-fp16"))
    for sub in ("text_encoder", "unet", "vae_encoder", "vae_decoder", "taesd_decoder", "taesd_encoder"):
        m = onnx.load(str(out / sub / "model.onnx"), load_external_data=False)
        print(f"  {sub}: inputs {[i.name for i in m.graph.input]} outputs {[o.name for o in m.graph.output]}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
