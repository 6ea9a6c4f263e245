#!/usr/bin/env python3
"""Build livefill's reference fixtures: tiny random-weight SD-1.5-architecture
pipelines exported to ONNX in Hugging Face optimum's layout, plus diffusers'
own outputs (LCMScheduler, CPU, fp32) on those exact weights and on noise that
is read from .npy files; and the same with every other sampler livefill has
(TCD, Euler, Euler ancestral, DPM++ 2M Karras, DDIM), each made with
``<Scheduler>.from_config(<the model's scheduler config>)`` as diffusers users
switch samplers (SAMPLER_CASES).

Run from the repository root (see tests/reference/README.md):

    .cache/refvenv/bin/python tests/reference/make_fixtures.py
    # only the sampler cases, on the committed models (no export, no open-clip):
    .cache/refvenv/bin/python tests/reference/make_fixtures.py --samplers-only

Everything is deterministic: weights come from per-parameter seeded torch
generators, noise from seeded numpy generators. Running it twice rewrites
identical files.
"""

from __future__ import annotations

import gzip
import importlib
import importlib.util
import json
import math
import os
import re
import shutil
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

import diffusers  # noqa: E402
from diffusers import (  # noqa: E402
    AutoencoderKL,
    AutoencoderTiny,
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    LatentConsistencyModelPipeline,
    LCMScheduler,
    TCDScheduler,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionInpaintPipeline,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
FIX = REPO / "tests" / "fixtures"
REF = FIX / "reference"

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

# --------------------------------------------------------------------------
# Model configurations
# --------------------------------------------------------------------------

TEXT_HIDDEN = 8
TEXT_CONFIG = dict(
    vocab_size=49408,
    hidden_size=TEXT_HIDDEN,
    intermediate_size=4 * TEXT_HIDDEN,
    projection_dim=TEXT_HIDDEN,
    num_hidden_layers=2,
    num_attention_heads=2,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    layer_norm_eps=1e-5,
    bos_token_id=49406,
    eos_token_id=49407,
    pad_token_id=49407,
)

UNET_COMMON = dict(
    sample_size=8,
    out_channels=4,
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(16, 32),
    layers_per_block=1,
    attention_head_dim=2,  # diffusers' legacy name: number of heads (as in SD 1.5's config)
    norm_num_groups=8,
    cross_attention_dim=TEXT_HIDDEN,
)

VAE_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(8, 16, 16, 16),
    layers_per_block=1,
    latent_channels=4,
    norm_num_groups=8,
    sample_size=64,
    scaling_factor=0.18215,
)

SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    trained_betas=None,
    original_inference_steps=50,
    clip_sample=False,
    clip_sample_range=1.0,
    set_alpha_to_one=True,
    steps_offset=1,
    prediction_type="epsilon",
    thresholding=False,
    dynamic_thresholding_ratio=0.995,
    sample_max_value=1.0,
    timestep_spacing="leading",
    timestep_scaling=10.0,
    rescale_betas_zero_snr=False,
)

LCM_TIME_COND_DIM = 32

# Tiny TAESD (diffusers AutoencoderTiny). Only the decoder is exported, to
# <TAESD_MODEL>/taesd_decoder/. 4 stages, 2x nearest upsampling between them: 8x overall, like
# the VAE. num_decoder_blocks is (1, 1, 1, 1) instead of TAESD's (3, 3, 3, 1) to keep the file
# ~140 KB. scaling_factor 1.0: the decoder takes the UNet's latents as they are.
TAESD_MODEL = "tiny-sd"
TAESD_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    encoder_block_out_channels=(16, 16, 16, 16),
    decoder_block_out_channels=(16, 16, 16, 16),
    act_fn="relu",
    upsample_fn="nearest",
    latent_channels=4,
    upsampling_scaling_factor=2,
    num_encoder_blocks=(1, 1, 1, 1),
    num_decoder_blocks=(1, 1, 1, 1),
    latent_magnitude=3,
    latent_shift=0.5,
    force_upcast=False,
    scaling_factor=1.0,
    shift_factor=0.0,
)
# With plain random weights the decoder's output saturates (~60% of pixels outside [-1, 1]).
# Its last conv is therefore scaled by this gain and its bias shifted by +0.5 (the decoder maps
# [0, 1] to [-1, 1] after that conv), so the reference image is mostly unclipped.
TAESD_OUT_GAIN = 0.4
TAESD_REF_SEED = 2001

# The model with tokenizer.json (tiny-lcm) ships it WITHOUT vocab.json /
# merges.txt, so that the Rust tokenizer-json code path is exercised on its own
# (and the fixtures stay small). Set True to keep all four files there.
KEEP_BPE_FILES_WITH_TOKENIZER_JSON = False

# Per-model ONNX I/O conventions (both seen in the wild from optimum):
#   "current": optimum-onnx 0.1.x  -> input_ids int64, timestep float32 rank-0
#   "legacy":  optimum 1.x (1.23)  -> input_ids int32, timestep int64 [steps]
MODELS = {
    "tiny-sd": dict(
        pipeline_class="StableDiffusionPipeline",
        unet=dict(in_channels=4),
        io="current",
        tokenizer_json=False,
    ),
    "tiny-sd-inpaint": dict(
        pipeline_class="StableDiffusionInpaintPipeline",
        unet=dict(in_channels=9),
        io="legacy",
        tokenizer_json=False,
    ),
    "tiny-lcm": dict(
        pipeline_class="LatentConsistencyModelPipeline",
        unet=dict(in_channels=4, time_cond_proj_dim=LCM_TIME_COND_DIM),
        io="current",
        tokenizer_json=True,
    ),
}


# --------------------------------------------------------------------------
# Deterministic random weights
# --------------------------------------------------------------------------


@torch.no_grad()
def reinit(module: torch.nn.Module, tag: str) -> None:
    """Overwrite every parameter with values from a generator seeded by
    crc32(tag/param-name): independent of library init code and of order."""
    for name, p in module.named_parameters():
        g = torch.Generator().manual_seed(zlib.crc32(f"{tag}/{name}".encode()))
        r = torch.randn(p.shape, generator=g, dtype=torch.float32)
        if p.ndim >= 2:
            fan_in = p[0].numel()
            p.copy_(r / math.sqrt(fan_in))
        elif name.endswith("bias"):
            p.copy_(0.05 * r)
        else:  # norm scales
            p.copy_(1.0 + 0.1 * r)


def build_text_encoder() -> CLIPTextModel:
    cfg = CLIPTextConfig(**TEXT_CONFIG)
    cfg._attn_implementation = "eager"
    te = CLIPTextModel(cfg).eval()
    reinit(te, "text_encoder")
    return te


def build_vae() -> AutoencoderKL:
    vae = AutoencoderKL(**VAE_CONFIG).eval()
    reinit(vae, "vae")
    return vae


@torch.no_grad()
def build_taesd() -> AutoencoderTiny:
    taesd = AutoencoderTiny(**TAESD_CONFIG).eval()
    reinit(taesd, "taesd")
    last = taesd.decoder.layers[-1]
    assert isinstance(last, torch.nn.Conv2d) and last.out_channels == 3
    last.weight.mul_(TAESD_OUT_GAIN)
    last.bias.add_(0.5)
    return taesd


def build_unet(name: str) -> UNet2DConditionModel:
    unet = UNet2DConditionModel(**UNET_COMMON, **MODELS[name]["unet"]).eval()
    reinit(unet, f"unet-{name}")
    return unet


def build_scheduler() -> LCMScheduler:
    return LCMScheduler(**SCHEDULER_CONFIG)


# --------------------------------------------------------------------------
# Tokenizer (real CLIP vocabulary, from open-clip-torch's bundled BPE file)
# --------------------------------------------------------------------------


def byte_unicode_table() -> dict[int, str]:
    """GPT-2/CLIP reversible byte -> printable unicode character table, in
    CLIP's vocabulary order: the printable bytes first (ascending), then the
    remaining bytes (ascending) mapped to U+0100, U+0101, ..."""
    keep = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("\u00a1"), ord("\u00ac") + 1))
        + list(range(ord("\u00ae"), ord("\u00ff") + 1))
    )
    table = {b: chr(b) for b in keep}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def clip_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    spec = importlib.util.find_spec("open_clip")  # locate only; do not import it
    assert spec is not None and spec.submodule_search_locations, "open-clip-torch not installed"
    gz = Path(list(spec.submodule_search_locations)[0]) / "bpe_simple_vocab_16e6.txt.gz"
    lines = gzip.open(gz).read().decode("utf-8").split("\n")
    # CLIP uses 49152 - 256 - 2 merges, skipping the header line.
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    assert all(len(m) == 2 for m in merges)
    units = list(byte_unicode_table().values())
    tokens = units + [u + "</w>" for u in units] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(tokens)}
    assert len(vocab) == 49408 == len(tokens)
    return vocab, merges


SPECIAL = {
    "bos_token": "<|startoftext|>",
    "eos_token": "<|endoftext|>",
    "unk_token": "<|endoftext|>",
    "pad_token": "<|endoftext|>",
}


def write_tokenizer(dst: Path, vocab, merges) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    (dst / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    with open(dst / "merges.txt", "w", encoding="utf-8", newline="\n") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write(f"{a} {b}\n")
    special_map = {
        k: {"content": v, "lstrip": False, "normalized": True, "rstrip": False, "single_word": False}
        for k, v in SPECIAL.items()
    }
    (dst / "special_tokens_map.json").write_text(json.dumps(special_map, indent=2) + "\n")
    tok_cfg = {
        "add_prefix_space": False,
        "bos_token": SPECIAL["bos_token"],
        "clean_up_tokenization_spaces": True,
        "do_lower_case": True,
        "eos_token": SPECIAL["eos_token"],
        "errors": "replace",
        "model_max_length": 77,
        "pad_token": SPECIAL["pad_token"],
        "tokenizer_class": "CLIPTokenizer",
        "unk_token": SPECIAL["unk_token"],
    }
    (dst / "tokenizer_config.json").write_text(json.dumps(tok_cfg, indent=2) + "\n")


def tokenize(tok: CLIPTokenizer, text: str) -> list[int]:
    # Exactly what StableDiffusionPipeline.encode_prompt does.
    ids = tok(text, padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt")
    return ids.input_ids[0].tolist()


# --------------------------------------------------------------------------
# ONNX export (legacy TorchScript exporter), optimum I/O names
# --------------------------------------------------------------------------


# The graph wrappers are the production exporter's (`livefill models export`), so the fixtures
# have exactly the I/O of a real export.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "export"))
from export_lcm import (  # noqa: E402
    TaesdDecoderExport,
    TaesdEncoderExport,
    TextEncoderExport,
    UNetExport,
    VaeDecoderExport,
    VaeEncoderExport,
    export_graph,
    taesd_encoder_axes,
)


def _export(module, args, path: Path, input_names, output_names, dynamic_axes):
    export_graph(module, args, path, input_names, output_names, dynamic_axes, big=False,
                 producer="livefill tests/reference/make_fixtures.py (torch.onnx legacy exporter)")


def export_text_encoder(te, path: Path, ids_dtype: torch.dtype):
    ids = torch.tensor([[49406, 320, 1125, 539, 320, 2368, 49407] + [49407] * 70], dtype=ids_dtype)
    _export(
        TextEncoderExport(te),
        (ids,),
        path,
        ["input_ids"],
        ["last_hidden_state", "pooler_output"],
        {
            "input_ids": {0: "batch_size", 1: "sequence_length"},
            "last_hidden_state": {0: "batch_size", 1: "sequence_length"},
            "pooler_output": {0: "batch_size"},
        },
    )


def export_unet(unet, path: Path, io: str):
    cin = unet.config.in_channels
    with_cond = unet.config.time_cond_proj_dim is not None
    sample = torch.randn(2, cin, 8, 8, generator=torch.Generator().manual_seed(1))
    ehs = torch.randn(2, 77, TEXT_HIDDEN, generator=torch.Generator().manual_seed(2))
    dyn = {
        "sample": {0: "batch_size", 2: "height", 3: "width"},
        "encoder_hidden_states": {0: "batch_size", 1: "sequence_length"},
        "out_sample": {0: "batch_size", 2: "height", 3: "width"},
    }
    if io == "current":
        timestep = torch.tensor(500.0, dtype=torch.float32)  # rank 0, no dynamic axis
    else:
        timestep = torch.tensor([500, 500], dtype=torch.int64)
        dyn["timestep"] = {0: "steps"}
    args = [sample, timestep, ehs]
    names = ["sample", "timestep", "encoder_hidden_states"]
    if with_cond:
        args.append(torch.randn(2, unet.config.time_cond_proj_dim, generator=torch.Generator().manual_seed(3)))
        names.append("timestep_cond")
        dyn["timestep_cond"] = {0: "batch_size"}
    _export(UNetExport(unet), tuple(args), path, names, ["out_sample"], dyn)


def export_vae(vae, enc_path: Path, dec_path: Path):
    f = 2 ** (len(vae.config.block_out_channels) - 1)
    img = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(4)) * 2 - 1
    _export(
        VaeEncoderExport(vae),
        (img,),
        enc_path,
        ["sample"],
        ["latent_parameters"],
        {
            "sample": {0: "batch_size", 2: "sample_height", 3: "sample_width"},
            "latent_parameters": {0: "batch_size", 2: f"sample_height / {f}", 3: f"sample_width / {f}"},
        },
    )
    lat = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(5))
    _export(
        VaeDecoderExport(vae),
        (lat,),
        dec_path,
        ["latent_sample"],
        ["sample"],
        {
            "latent_sample": {0: "batch_size", 2: "latent_height", 3: "latent_width"},
            "sample": {0: "batch_size", 2: f"latent_height * {f}", 3: f"latent_width * {f}"},
        },
    )


def export_taesd_decoder(taesd, path: Path):
    f = TAESD_CONFIG["upsampling_scaling_factor"] ** (len(TAESD_CONFIG["decoder_block_out_channels"]) - 1)
    lat = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(6))
    _export(
        TaesdDecoderExport(taesd),
        (lat,),
        path,
        ["latent_sample"],
        ["sample"],
        {
            "latent_sample": {0: "batch_size", 2: "latent_height", 3: "latent_width"},
            "sample": {0: "batch_size", 2: f"latent_height * {f}", 3: f"latent_width * {f}"},
        },
    )


def export_taesd_encoder(taesd, path: Path):
    f = TAESD_CONFIG["upsampling_scaling_factor"] ** (len(TAESD_CONFIG["encoder_block_out_channels"]) - 1)
    img = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(7)) * 2 - 1
    _export(TaesdEncoderExport(taesd), (img,), path, ["sample"], ["latent_sample"], taesd_encoder_axes(f))


# --------------------------------------------------------------------------
# ONNX vs torch sanity check
# --------------------------------------------------------------------------


def ort_session(path: Path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def io_signature(path: Path) -> dict:
    m = onnx.load(str(path), load_external_data=False)

    def desc(vi):
        t = vi.type.tensor_type
        dims = [d.dim_param if d.dim_param else d.dim_value for d in t.shape.dim]
        return {"name": vi.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name, "shape": dims}

    return {"inputs": [desc(v) for v in m.graph.input], "outputs": [desc(v) for v in m.graph.output]}


def _check(label, got, want, tol):
    err = float(np.max(np.abs(got - want)))
    scale = float(np.max(np.abs(want)))
    print(f"  onnx-vs-torch {label:<44s} max|diff|={err:.2e} (max|ref|={scale:.2f})")
    assert err <= tol * max(1.0, scale), f"{label}: ONNX/torch mismatch {err}"
    return err


@torch.no_grad()
def sanity_check(model_dir: Path, te, unet, vae, io: str):
    g = torch.Generator().manual_seed(11)
    # text encoder: two real prompts, batch 2, full 77 length; and a short length
    s = ort_session(model_dir / "text_encoder" / "model.onnx")
    ids_dtype = np.int64 if io == "current" else np.int32
    ids = np.array(
        [[49406, 320, 1125, 539, 320, 2368, 49407] + [49407] * 70, [49406, 2368, 320, 1929, 269, 49407] + [49407] * 71],
        dtype=ids_dtype,
    )
    for L in (77, 9):
        lh, po = s.run(None, {"input_ids": ids[:, :L]})
        ref = te(input_ids=torch.from_numpy(ids[:, :L].astype(np.int64)))
        _check(f"text_encoder last_hidden_state L={L}", lh, ref.last_hidden_state.numpy(), 1e-4)
        _check(f"text_encoder pooler_output L={L}", po, ref.pooler_output.numpy(), 1e-4)
    # unet: batch 1 and 2, square and non-square latents
    s = ort_session(model_dir / "unet" / "model.onnx")
    cin = unet.config.in_channels
    with_cond = unet.config.time_cond_proj_dim is not None
    for b, h, w, t in ((1, 8, 8, 999), (2, 12, 8, 259)):
        x = torch.randn(b, cin, h, w, generator=g)
        e = torch.randn(b, 77, TEXT_HIDDEN, generator=g)
        feeds = {"sample": x.numpy(), "encoder_hidden_states": e.numpy()}
        if io == "current":
            feeds["timestep"] = np.array(t, dtype=np.float32)
        else:
            feeds["timestep"] = np.array([t], dtype=np.int64)
        tc = None
        if with_cond:
            tc = torch.randn(b, unet.config.time_cond_proj_dim, generator=g)
            feeds["timestep_cond"] = tc.numpy()
        (out,) = s.run(None, feeds)
        ref = unet(x, torch.tensor(t), encoder_hidden_states=e, timestep_cond=tc).sample.numpy()
        _check(f"unet b={b} {h}x{w} t={t}", out, ref, 1e-4)
    # vae
    se = ort_session(model_dir / "vae_encoder" / "model.onnx")
    sd = ort_session(model_dir / "vae_decoder" / "model.onnx")
    for h, w in ((64, 64), (96, 64)):
        img = torch.rand(1, 3, h, w, generator=g) * 2 - 1
        (par,) = se.run(None, {"sample": img.numpy()})
        _check(f"vae_encoder {h}x{w}", par, vae.encode(img).latent_dist.parameters.numpy(), 1e-4)
        z = torch.randn(1, 4, h // 8, w // 8, generator=g) * 5
        (dec,) = sd.run(None, {"latent_sample": z.numpy()})
        _check(f"vae_decoder {h // 8}x{w // 8}", dec, vae.decode(z).sample.numpy(), 1e-4)


@torch.no_grad()
def sanity_check_taesd(path: Path, taesd):
    g = torch.Generator().manual_seed(12)
    s = ort_session(path)
    # batch 1 and 2, square and non-square, and latents large enough for the tanh clamp to matter
    for b, h, w, amp in ((1, 8, 8, 1.0), (2, 12, 8, 4.0)):
        z = torch.randn(b, 4, h, w, generator=g) * amp
        (dec,) = s.run(None, {"latent_sample": z.numpy()})
        assert dec.shape == (b, 3, 8 * h, 8 * w), dec.shape
        _check(f"taesd_decoder b={b} {h}x{w} amp={amp}", dec, taesd.decode(z).sample.numpy(), 1e-4)


@torch.no_grad()
def sanity_check_taesd_encoder(path: Path, taesd):
    g = torch.Generator().manual_seed(13)
    s = ort_session(path)
    for b, h, w in ((1, 64, 64), (2, 96, 64)):
        x = torch.rand(b, 3, h, w, generator=g) * 2 - 1
        (enc,) = s.run(None, {"sample": x.numpy()})
        assert enc.shape == (b, 4, h // 8, w // 8), enc.shape
        _check(f"taesd_encoder b={b} {h}x{w}", enc, taesd.encode(x).latents.numpy(), 1e-4)


def write_taesd_encoder(taesd) -> None:
    """<TAESD_MODEL>/taesd_encoder/: the TAESD encoder, for live frames' image latents."""
    d = FIX / TAESD_MODEL / "taesd_encoder"
    if d.exists():
        shutil.rmtree(d)
    write_json(d / "config.json", diffusers_config(taesd))
    export_taesd_encoder(taesd, d / "model.onnx")
    print(f"[{TAESD_MODEL}/taesd_encoder] exported; checking ONNX against torch")
    sanity_check_taesd_encoder(d / "model.onnx", taesd)


@torch.no_grad()
def write_taesd_encoder_reference(taesd) -> None:
    """reference/taesd_encoder/: the reference input image and diffusers' AutoencoderTiny.encode."""
    out = REF / "taesd_encoder"
    rgb = np.asarray(Image.open(REF / "inputs" / "image_64.png").convert("RGB"), dtype=np.float32)
    image = (rgb / 127.5 - 1.0).transpose(2, 0, 1)[None]  # NCHW in [-1, 1], as livefill converts
    latents = taesd.encode(torch.from_numpy(image)).latents.numpy().astype(np.float32)
    entry = {
        "model": TAESD_MODEL,
        "graph": "taesd_encoder/model.onnx",
        "image": "inputs/image_64.png",
        "expected": save_npy(out / "latents.npy", latents),
    }
    (o,) = ort_session(FIX / TAESD_MODEL / "taesd_encoder" / "model.onnx").run(None, {"sample": image})
    err = float(np.max(np.abs(o - latents)))
    assert err < 1e-4, err
    print(f"  taesd encoder reference {latents.shape} ort-vs-diffusers max|diff|={err:.2e}")
    write_json(out / "case.json", entry)


def write_taesd(taesd) -> dict:
    d = FIX / TAESD_MODEL / "taesd_decoder"
    if d.exists():
        shutil.rmtree(d)
    write_json(d / "config.json", diffusers_config(taesd))
    export_taesd_decoder(taesd, d / "model.onnx")
    print(f"[{TAESD_MODEL}/taesd_decoder] exported; checking ONNX against torch")
    sanity_check_taesd(d / "model.onnx", taesd)
    return io_signature(d / "model.onnx")


@torch.no_grad()
def write_taesd_reference(taesd, signature: dict) -> None:
    """reference/taesd/: fixed latents and diffusers' AutoencoderTiny.decode of them."""
    out = REF / "taesd"
    latents = np.random.default_rng(TAESD_REF_SEED).standard_normal((1, 4, 8, 8), dtype=np.float32)
    dec = taesd.decode(torch.from_numpy(latents)).sample  # [-1, 1]
    img = (dec / 2 + 0.5).clamp(0, 1)[0].permute(1, 2, 0).numpy().astype(np.float32)  # HWC [0, 1]
    entry = {
        "model": TAESD_MODEL,
        "graph": "taesd_decoder/model.onnx",
        "io": signature,
        "latents": save_npy(out / "latents.npy", latents),
        "expected": save_npy(out / "expected.npy", img),
        "expected_png": "taesd/expected.png",
        "width": int(img.shape[1]),
        "height": int(img.shape[0]),
    }
    png = (img * 255.0).round().clip(0, 255).astype(np.uint8)
    Image.fromarray(png, "RGB").save(out / "expected.png", optimize=False)
    # ORT on the exported graph reproduces diffusers' image
    (o,) = ort_session(FIX / TAESD_MODEL / "taesd_decoder" / "model.onnx").run(None, {"latent_sample": latents})
    err = float(np.max(np.abs(np.clip(o[0].transpose(1, 2, 0) / 2 + 0.5, 0, 1) - img)))
    assert err < 1e-5, err
    sat = float(np.mean((img <= 0.0) | (img >= 1.0)))
    print(f"  taesd reference {img.shape[1]}x{img.shape[0]} mean={img.mean():.3f} std={img.std():.3f} "
          f"clipped={sat:.1%} ort-vs-diffusers max|diff|={err:.2e}")
    write_json(out / "case.json", entry)


# --------------------------------------------------------------------------
# Model folders
# --------------------------------------------------------------------------


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def strip_config(cfg: dict) -> dict:
    # optimum keeps the diffusers/transformers config as saved; drop private
    # bookkeeping keys whose values depend on the local path.
    return {k: v for k, v in cfg.items() if k not in ("_name_or_path", "_commit_hash")}


def diffusers_config(obj) -> dict:
    # exactly what diffusers' save_config / optimum write as config.json
    return json.loads(obj.to_json_string())


def write_model(name: str, te, vae, unet, vocab, merges) -> dict:
    spec = MODELS[name]
    d = FIX / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    io = spec["io"]

    # model_index.json (what diffusers/optimum save for the pipeline)
    write_json(
        d / "model_index.json",
        {
            "_class_name": spec["pipeline_class"],
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
    sched = build_scheduler()
    write_json(d / "scheduler" / "scheduler_config.json", diffusers_config(sched))

    write_tokenizer(d / "tokenizer", vocab, merges)
    if spec["tokenizer_json"]:
        tok = CLIPTokenizer.from_pretrained(str(d / "tokenizer"))
        with tempfile.TemporaryDirectory() as tmp:
            tok.save_pretrained(tmp)
            tj = json.loads(Path(tmp, "tokenizer.json").read_text(encoding="utf-8"))
        (d / "tokenizer" / "tokenizer.json").write_text(
            json.dumps(tj, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8"
        )
        if not KEEP_BPE_FILES_WITH_TOKENIZER_JSON:
            # As transformers v5 saves a tokenizer: tokenizer.json + configs only.
            (d / "tokenizer" / "vocab.json").unlink()
            (d / "tokenizer" / "merges.txt").unlink()

    te_cfg = te.config.to_dict()
    te_cfg = strip_config(te_cfg)
    te_cfg.pop("_attn_implementation_autoset", None)
    te_cfg["architectures"] = ["CLIPTextModel"]
    te_cfg["dtype"] = "float32"
    write_json(d / "text_encoder" / "config.json", te_cfg)
    export_text_encoder(te, d / "text_encoder" / "model.onnx", torch.int64 if io == "current" else torch.int32)

    write_json(d / "unet" / "config.json", diffusers_config(unet))
    export_unet(unet, d / "unet" / "model.onnx", io)

    vae_cfg = diffusers_config(vae)
    write_json(d / "vae_encoder" / "config.json", vae_cfg)
    write_json(d / "vae_decoder" / "config.json", vae_cfg)
    export_vae(vae, d / "vae_encoder" / "model.onnx", d / "vae_decoder" / "model.onnx")

    print(f"[{name}] exported; checking ONNX against torch")
    sanity_check(d, te, unet, vae, io)
    sig = {}
    for sub in ("text_encoder", "unet", "vae_encoder", "vae_decoder"):
        sig[sub] = io_signature(d / sub / "model.onnx")
    return sig


# --------------------------------------------------------------------------
# Reference inputs
# --------------------------------------------------------------------------


def make_input_image() -> Image.Image:
    h = w = 64
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    r = x / (w - 1)
    gch = y / (h - 1)
    b = 0.5 + 0.5 * np.sin((x + y) / 9.0)
    img = np.stack([r, gch, b], axis=-1)
    img = (img * 255.0).round().astype(np.uint8)
    pil = Image.fromarray(img, "RGB")
    dr = ImageDraw.Draw(pil)
    dr.ellipse((6, 30, 30, 58), fill=(240, 220, 30))
    dr.rectangle((36, 6, 58, 22), fill=(20, 30, 120))
    dr.polygon([(10, 4), (28, 4), (19, 22)], fill=(200, 40, 40))
    dr.line((0, 63, 63, 26), fill=(255, 255, 255), width=2)
    return pil


def make_mask() -> Image.Image:
    m = Image.new("L", (64, 64), 0)
    dr = ImageDraw.Draw(m)
    dr.ellipse((28, 20, 60, 54), fill=255)  # white = regenerate
    dr.rectangle((4, 4, 20, 14), fill=255)
    return m


# --------------------------------------------------------------------------
# diffusers runs with injected noise
# --------------------------------------------------------------------------

PIPE_MODULES = [
    "diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion",
    "diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img",
    "diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_inpaint",
    "diffusers.pipelines.latent_consistency_models.pipeline_latent_consistency_text2img",
]
SCHED_MODULES = [
    "diffusers.schedulers.scheduling_lcm",
    "diffusers.schedulers.scheduling_tcd",
    "diffusers.schedulers.scheduling_euler_discrete",
    "diffusers.schedulers.scheduling_euler_ancestral_discrete",
    "diffusers.schedulers.scheduling_dpmsolver_multistep",
    "diffusers.schedulers.scheduling_ddim",
]
FORBIDDEN_RANDN = ["diffusers.models.autoencoders.vae", "diffusers.utils.torch_utils"]


class NoiseFeed:
    def __init__(self, noise: np.ndarray):
        self.noise = noise
        self.next = 0
        self.shapes = []

    def randn_tensor(self, shape, generator=None, device=None, dtype=None, layout=None, **kw):
        shape = tuple(int(s) for s in shape)
        assert self.next < len(self.noise), "diffusers asked for more noise than the case provides"
        entry = self.noise[self.next]
        assert shape == (1,) + entry.shape, f"noise entry {self.next}: diffusers wants {shape}, have {entry.shape}"
        self.next += 1
        self.shapes.append(shape)
        return torch.from_numpy(entry.copy())[None].to(dtype=dtype or torch.float32)


def _timestep_value(t):
    """A UNet timestep for cases.json: an int when integral (every scheduler but Euler with
    Karras sigmas), else the float32 value diffusers fed."""
    v = float(t)
    return int(v) if v.is_integer() else v


class Recorder:
    """Captures what the pipeline fed the UNet and what VAE latents it used."""

    def __init__(self):
        self.unet_calls = []
        self.image_latents = []

    def pre_hook(self, module, args, kwargs):
        sample = args[0] if args else kwargs["sample"]
        t = args[1] if len(args) > 1 else kwargs["timestep"]
        self.unet_calls.append(
            {
                "sample": sample.detach().clone(),
                "t": _timestep_value(t),
                "ehs": kwargs["encoder_hidden_states"].detach().clone(),
                "timestep_cond": None if kwargs.get("timestep_cond") is None else kwargs["timestep_cond"].detach().clone(),
            }
        )

    def post_hook(self, module, args, kwargs, output):
        out = output[0] if isinstance(output, tuple) else output.sample
        self.unet_calls[-1]["out"] = out.detach().clone()

    def retrieve_latents(self, encoder_output, generator=None, sample_mode="sample"):
        lat = encoder_output.latent_dist.mode()  # the distribution mean
        self.image_latents.append(lat.detach().clone())
        return lat


def install_patches(feed: NoiseFeed, rec: Recorder):
    saved = []
    for modname in PIPE_MODULES + SCHED_MODULES:
        mod = importlib.import_module(modname)
        saved.append((mod, "randn_tensor", mod.randn_tensor))
        mod.randn_tensor = feed.randn_tensor
        if hasattr(mod, "retrieve_latents"):
            saved.append((mod, "retrieve_latents", mod.retrieve_latents))
            mod.retrieve_latents = rec.retrieve_latents

    def forbidden(*a, **k):
        raise AssertionError("unexpected randn_tensor call (VAE sampling must not happen)")

    for modname in FORBIDDEN_RANDN:
        mod = importlib.import_module(modname)
        saved.append((mod, "randn_tensor", mod.randn_tensor))
        mod.randn_tensor = forbidden
    return saved


def remove_patches(saved):
    for mod, attr, val in reversed(saved):
        setattr(mod, attr, val)


def expected_run_length(steps: int, strength: float) -> int:
    init_timestep = min(int(steps * strength), steps)
    t_start = max(steps - init_timestep, 0)
    return steps - t_start


# livefill sampler name -> (diffusers class, from_config overrides). No override means the
# model's own scheduler config decides (here: the fixtures' LCM config, timestep_spacing
# "leading", steps_offset 1), exactly as `Class.from_config(pipe.scheduler.config)` does.
SAMPLERS = {
    "lcm": (LCMScheduler, {}),
    "tcd": (TCDScheduler, {}),
    "euler": (EulerDiscreteScheduler, {}),
    "euler_a": (EulerAncestralDiscreteScheduler, {}),
    "dpmpp_2m": (DPMSolverMultistepScheduler, {}),
    "ddim": (DDIMScheduler, {}),
}
# livefill spacing name -> from_config overrides.
SPACINGS = {
    None: {},
    "karras": {"use_karras_sigmas": True},
    "leading": {"timestep_spacing": "leading"},
    "trailing": {"timestep_spacing": "trailing"},
    "linspace": {"timestep_spacing": "linspace"},
}


def noise_draws(case: dict, n_run: int) -> int:
    """Fresh noise the sampler draws after the initial noise (livefill's --noise contract)."""
    sampler, eta = case.get("sampler", "lcm"), case.get("eta")
    if sampler == "lcm":
        return n_run - 1  # every step but the last
    if sampler == "tcd":
        return n_run - 1 if (0.3 if eta is None else eta) > 0 else 0
    if sampler == "euler_a":
        return n_run  # every step, the last one included
    if sampler == "ddim":
        return n_run if (eta or 0.0) > 0 else 0
    return 0


def make_scheduler(case: dict, base_config):
    cls, overrides = SAMPLERS[case.get("sampler", "lcm")]
    return cls.from_config(base_config, **overrides, **SPACINGS[case.get("spacing")])


CASES = [
    dict(name="txt2img_g1_s4", model="tiny-sd", mode="txt2img", prompt="a photo of a cat sitting on a wooden chair",
         negative_prompt=None, steps=4, guidance=1.0, strength=1.0, width=64, height=64, seed=1001),
    dict(name="txt2img_cfg2.5_s2", model="tiny-sd", mode="txt2img",
         prompt="A lighthouse on a rocky coast at sunset, oil painting",
         negative_prompt="blurry, low quality", steps=2, guidance=2.5, strength=1.0, width=64, height=64, seed=1002),
    dict(name="txt2img_g1_s3_w64h96", model="tiny-sd", mode="txt2img", prompt="portrait of an old sailor's face",
         negative_prompt=None, steps=3, guidance=1.0, strength=1.0, width=64, height=96, seed=1003),
    dict(name="lcm_txt2img_g4_s4", model="tiny-lcm", mode="txt2img", prompt="a bowl of ramen, studio lighting, 4k",
         negative_prompt=None, steps=4, guidance=4.0, strength=1.0, width=64, height=64, seed=1004),
    dict(name="img2img_s0.5_n4", model="tiny-sd", mode="img2img", prompt="a watercolor landscape with a yellow sun",
         negative_prompt=None, steps=4, guidance=1.0, strength=0.5, width=64, height=64, seed=1005),
    dict(name="img2img_s0.8_n3", model="tiny-sd", mode="img2img", prompt="cyberpunk city street, neon lights",
         negative_prompt=None, steps=3, guidance=1.0, strength=0.8, width=64, height=64, seed=1006),
    dict(name="inpaint4_s1.0_n4", model="tiny-sd", mode="inpaint", prompt="a red apple on the table",
         negative_prompt=None, steps=4, guidance=1.0, strength=1.0, width=64, height=64, seed=1007),
    dict(name="inpaint4_s0.6_n4", model="tiny-sd", mode="inpaint", prompt="a small green frog",
         negative_prompt=None, steps=4, guidance=1.0, strength=0.6, width=64, height=64, seed=1008),
    dict(name="inpaint9_s1.0_n4", model="tiny-sd-inpaint", mode="inpaint", prompt="a vase of sunflowers",
         negative_prompt=None, steps=4, guidance=1.0, strength=1.0, width=64, height=64, seed=1009),
    dict(name="inpaint9_s0.7_n4", model="tiny-sd-inpaint", mode="inpaint", prompt="snow-covered mountains, clear sky",
         negative_prompt=None, steps=4, guidance=1.0, strength=0.7, width=64, height=64, seed=1010),
]
DEBUG_CASES = {"img2img_s0.5_n4", "inpaint4_s0.6_n4", "inpaint9_s0.7_n4"}


def _sampler_case(sampler, mode, model, steps, guidance, seed, strength=1.0, spacing=None, eta=None, tag=""):
    strength_tag = f"_s{strength}" if mode != "txt2img" else ""
    name = f"{sampler}{tag}_{mode}{'9' if model == 'tiny-sd-inpaint' else ''}{strength_tag}_n{steps}"
    prompts = {
        "txt2img": "a cozy cabin in a snowy pine forest",
        "img2img": "an impressionist painting of a harbour",
        "inpaint": "a bouquet of tulips in a glass vase",
    }
    return dict(name=name, model=model, mode=mode, prompt=prompts[mode], negative_prompt=None, steps=steps,
                guidance=guidance, strength=strength, width=64, height=64, seed=seed, sampler=sampler,
                spacing=spacing, eta=eta)


def _sampler_cases() -> list:
    """Every sampler but LCM (covered by CASES) on txt2img, img2img at strength 0.6 and inpaint
    with the 4- and the 9-channel UNet; 5 steps (4 for TCD) so that DPM++ 2M runs first-,
    second- and first-order steps; guidance 1 except one CFG case. Only PNGs are kept."""
    out = []
    seed = 2100
    plans = [("tcd", 4, None, 0.3), ("euler", 5, None, None), ("euler_a", 5, None, None),
             ("dpmpp_2m", 5, "karras", None), ("ddim", 5, None, None)]
    for sampler, steps, spacing, eta in plans:
        for mode, model, strength in (("txt2img", "tiny-sd", 1.0), ("img2img", "tiny-sd", 0.6),
                                      ("inpaint", "tiny-sd", 1.0), ("inpaint", "tiny-sd-inpaint", 1.0)):
            seed += 1
            out.append(_sampler_case(sampler, mode, model, steps, 1.0, seed, strength, spacing, eta))
    # Turbo / Lightning style (Euler, trailing), Euler with Karras sigmas (fractional timesteps),
    # DPM++ 2M Karras with CFG, DDIM with eta > 0 (a draw per step), 4-channel inpaint below 1.
    out.append(_sampler_case("euler", "txt2img", "tiny-sd", 4, 1.0, 2201, spacing="trailing", tag="_trailing"))
    out.append(_sampler_case("euler", "txt2img", "tiny-sd", 5, 1.0, 2202, spacing="karras", tag="_karras"))
    cfg = _sampler_case("dpmpp_2m", "txt2img", "tiny-sd", 6, 3.0, 2203, spacing="karras", tag="_cfg3")
    cfg["negative_prompt"] = "blurry"
    out.append(cfg)
    out.append(_sampler_case("ddim", "img2img", "tiny-sd", 5, 1.0, 2204, strength=0.6, eta=0.5, tag="_eta0.5"))
    out.append(_sampler_case("euler_a", "inpaint", "tiny-sd", 5, 1.0, 2205, strength=0.6))
    return out


SAMPLER_CASES = _sampler_cases()


def save_npy(path: Path, arr) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(arr, torch.Tensor):
        arr = arr.detach().cpu().numpy()
    np.save(path, np.ascontiguousarray(arr, dtype=arr.dtype))
    return str(path.relative_to(REF)).replace(os.sep, "/")


@torch.no_grad()
def run_case(case: dict, pipes: dict, tok: CLIPTokenizer, image: Image.Image, mask: Image.Image) -> dict:
    name = case["name"]
    n_run = expected_run_length(case["steps"], case["strength"] if case["mode"] != "txt2img" else 1.0)
    k = 1 + noise_draws(case, n_run)  # prepare_latents' draw + the sampler's own draws
    compact = "sampler" in case  # sampler cases keep only the PNG (the files stay small)
    h8, w8 = case["height"] // 8, case["width"] // 8
    rng = np.random.default_rng(case["seed"])
    noise = rng.standard_normal((k, 4, h8, w8), dtype=np.float32)
    noise_rel = save_npy(REF / "noise" / f"{name}.npy", noise)

    feed, rec = NoiseFeed(noise), Recorder()
    base = pipes[case["model"]]
    unet = base.unet
    hooks = [
        unet.register_forward_pre_hook(rec.pre_hook, with_kwargs=True),
        unet.register_forward_hook(rec.post_hook, with_kwargs=True),
    ]
    saved = install_patches(feed, rec)
    try:
        common = dict(
            prompt=case["prompt"],
            negative_prompt=case["negative_prompt"],
            num_inference_steps=case["steps"],
            guidance_scale=case["guidance"],
            output_type="np",
            generator=None,
        )
        cls = {
            "txt2img": StableDiffusionPipeline,
            "img2img": StableDiffusionImg2ImgPipeline,
            "inpaint": StableDiffusionInpaintPipeline,
        }[case["mode"]]
        components = dict(base.components)
        if compact:
            components["scheduler"] = make_scheduler(case, base.scheduler.config)
            if case["sampler"] in ("tcd", "ddim"):
                common["eta"] = 0.3 if case["eta"] is None and case["sampler"] == "tcd" else (case["eta"] or 0.0)
        pipe = cls(**components)
        pipe.set_progress_bar_config(disable=True)
        if case["mode"] == "txt2img":
            out = pipe(height=case["height"], width=case["width"], **common)
        elif case["mode"] == "img2img":
            out = pipe(image=image, strength=case["strength"], **common)
        else:
            out = pipe(
                image=image, mask_image=mask, strength=case["strength"], height=case["height"], width=case["width"], **common
            )
    finally:
        remove_patches(saved)
        for hk in hooks:
            hk.remove()
    assert feed.next == k, f"{name}: used {feed.next} noise entries, expected {k}"
    img = out.images[0].astype(np.float32)
    assert img.shape == (case["height"], case["width"], 3)

    timesteps = [c["t"] for c in rec.unet_calls]
    assert len(timesteps) == n_run
    ehs = rec.unet_calls[0]["ehs"]
    for c in rec.unet_calls:
        assert torch.equal(c["ehs"], ehs)
    cfg = case["guidance"] > 1.0 and unet.config.time_cond_proj_dim is None
    assert ehs.shape[0] == (2 if cfg else 1)

    token_ids = tokenize(tok, case["prompt"])
    neg_ids = tokenize(tok, case["negative_prompt"] or "") if cfg else None

    entry = {k2: case[k2] for k2 in ("name", "model", "mode", "prompt", "negative_prompt", "steps", "guidance")}
    if compact:
        entry.update({k2: case[k2] for k2 in ("sampler", "spacing", "eta")})
    entry["strength"] = case["strength"] if case["mode"] != "txt2img" else None
    entry["width"], entry["height"] = case["width"], case["height"]
    entry["image"] = "inputs/image_64.png" if case["mode"] != "txt2img" else None
    entry["mask"] = "inputs/mask_64.png" if case["mode"] == "inpaint" else None
    entry["cfg"] = cfg
    entry["noise"] = noise_rel
    entry["noise_entries"] = k
    entry["expected"] = None if compact else save_npy(REF / "expected" / f"{name}.npy", img)
    png = (img * 255.0).round().clip(0, 255).astype(np.uint8)  # diffusers' numpy_to_pil rule
    (REF / "expected").mkdir(parents=True, exist_ok=True)
    Image.fromarray(png, "RGB").save(REF / "expected" / f"{name}.png", optimize=False)
    entry["expected_png"] = f"expected/{name}.png"
    entry["timesteps"] = timesteps
    entry["token_ids"] = token_ids
    entry["negative_token_ids"] = neg_ids
    entry["text_embeddings"] = None if compact else save_npy(REF / "text_embeddings" / f"{name}.npy", ehs)
    if rec.unet_calls[0]["timestep_cond"] is not None and not compact:
        tc = rec.unet_calls[0]["timestep_cond"]
        entry["timestep_cond"] = save_npy(REF / "debug" / f"{name}_timestep_cond.npy", tc)
    if name in DEBUG_CASES:
        dbg = {
            "unet0_sample": save_npy(REF / "debug" / f"{name}_unet0_sample.npy", rec.unet_calls[0]["sample"]),
            "unet0_out_sample": save_npy(REF / "debug" / f"{name}_unet0_out_sample.npy", rec.unet_calls[0]["out"]),
        }
        for i, lat in enumerate(rec.image_latents):
            # unscaled VAE means, in the order the pipeline encoded: image, then (9-ch / 4-ch inpaint) masked image
            dbg[f"vae_mean_{i}"] = save_npy(REF / "debug" / f"{name}_vae_mean_{i}.npy", lat)
        entry["debug"] = dbg

    sat = float(np.mean((img <= 0.0) | (img >= 1.0)))
    print(f"  {name:<22s} t={timesteps} noise={k} cfg={cfg} mean={img.mean():.3f} std={img.std():.3f} clipped={sat:.1%}")
    return entry


@torch.no_grad()
def lcm_pipeline_crosscheck(pipes, case, expected: np.ndarray):
    """The same tiny-lcm case through LatentConsistencyModelPipeline."""
    rng = np.random.default_rng(case["seed"])
    n = expected_run_length(case["steps"], 1.0)
    noise = rng.standard_normal((n, 4, case["height"] // 8, case["width"] // 8), dtype=np.float32)
    feed, rec = NoiseFeed(noise), Recorder()
    saved = install_patches(feed, rec)
    try:
        p = LatentConsistencyModelPipeline(**{k: v for k, v in pipes["tiny-lcm"].components.items() if k != "image_encoder"})
        p.set_progress_bar_config(disable=True)
        out = p(prompt=case["prompt"], num_inference_steps=case["steps"], guidance_scale=case["guidance"],
                height=case["height"], width=case["width"], output_type="np")
    finally:
        remove_patches(saved)
    assert feed.next == n
    err = float(np.max(np.abs(out.images[0] - expected)))
    print(f"  LatentConsistencyModelPipeline vs StableDiffusionPipeline on {case['name']}: max|diff|={err:.2e}")
    assert err < 1e-5


# --------------------------------------------------------------------------


def build_pipes(te, vae, unets, tok) -> dict:
    pipes = {}
    for name in MODELS:
        pipes[name] = StableDiffusionPipeline(
            vae=vae, text_encoder=te, tokenizer=tok, unet=unets[name], scheduler=build_scheduler(),
            safety_checker=None, feature_extractor=None, requires_safety_checker=False,
        )
        pipes[name].set_progress_bar_config(disable=True)
    return pipes


_NUMBER = r"-?\d+(?:\.\d+)?(?:e-?\d+)?"


def write_cases(entries: list) -> None:
    text = json.dumps(entries, indent=2)
    # keep number lists (token ids, timesteps) on one line
    text = re.sub(
        r"\[(\s*%s(?:,\s*%s)*\s*)\]" % (_NUMBER, _NUMBER),
        lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]",
        text,
    )
    assert json.loads(text) == entries
    (REF / "cases.json").write_text(text + "\n")
    print(f"wrote {len(entries)} cases to {REF / 'cases.json'}")


def samplers_only():
    """Rerun SAMPLER_CASES on the committed models and inputs, replacing their entries in
    cases.json (the models are rebuilt from their seeds and checked against the committed ONNX
    graphs first, so the references are those of the committed weights)."""
    print(f"torch {torch.__version__}, diffusers {diffusers.__version__}, onnxruntime {ort.__version__}")
    tok = CLIPTokenizer.from_pretrained(str(FIX / "tiny-sd" / "tokenizer"))
    te, vae = build_text_encoder(), build_vae()
    unets = {name: build_unet(name) for name in MODELS}
    for name in MODELS:
        sanity_check(FIX / name, te, unets[name], vae, MODELS[name]["io"])
    image = Image.open(REF / "inputs" / "image_64.png").convert("RGB")
    mask = Image.open(REF / "inputs" / "mask_64.png").convert("L")
    pipes = build_pipes(te, vae, unets, tok)
    names = {c["name"] for c in SAMPLER_CASES}
    entries = [e for e in json.loads((REF / "cases.json").read_text()) if "sampler" not in e and e["name"] not in names]
    print("running the other samplers (from_config of the model's scheduler config)")
    for c in SAMPLER_CASES:
        entries.append(run_case(c, pipes, tok, image, mask))
    write_cases(entries)


def main():
    print(f"torch {torch.__version__}, diffusers {diffusers.__version__}, onnxruntime {ort.__version__}, onnx {onnx.__version__}")
    vocab, merges = clip_vocab_and_merges()

    te = build_text_encoder()
    vae = build_vae()
    unets = {name: build_unet(name) for name in MODELS}

    signatures = {}
    for name in MODELS:
        signatures[name] = write_model(name, te, vae, unets[name], vocab, merges)
    taesd = build_taesd()
    taesd_signature = write_taesd(taesd)
    write_taesd_encoder(taesd)

    # tokenizer check against well-known CLIP ids, both code paths
    tok = CLIPTokenizer.from_pretrained(str(FIX / "tiny-sd" / "tokenizer"))
    tok_json = CLIPTokenizer.from_pretrained(str(FIX / "tiny-lcm" / "tokenizer"))
    want = [49406, 320, 1125, 539, 320, 2368, 49407]
    got = tokenize(tok, "a photo of a cat")
    assert got[:7] == want and all(x == 49407 for x in got[7:]) and len(got) == 77, got[:10]
    for c in CASES:
        assert tokenize(tok, c["prompt"]) == tokenize(tok_json, c["prompt"])

    if REF.exists():
        shutil.rmtree(REF)
    (REF / "inputs").mkdir(parents=True)
    image, mask = make_input_image(), make_mask()
    image.save(REF / "inputs" / "image_64.png", optimize=False)
    mask.save(REF / "inputs" / "mask_64.png", optimize=False)
    image = Image.open(REF / "inputs" / "image_64.png").convert("RGB")
    mask = Image.open(REF / "inputs" / "mask_64.png").convert("L")

    pipes = build_pipes(te, vae, unets, tok)

    print("running diffusers reference cases")
    entries = []
    for c in CASES:
        entries.append(run_case(c, pipes, tok, image, mask))
        if c["model"] == "tiny-lcm":
            lcm_pipeline_crosscheck(pipes, c, np.load(REF / entries[-1]["expected"]))
    print("running the other samplers (from_config of the model's scheduler config)")
    for c in SAMPLER_CASES:
        entries.append(run_case(c, pipes, tok, image, mask))

    meta = {
        "generator": "tests/reference/make_fixtures.py",
        "versions": {
            "torch": torch.__version__.split("+")[0],
            "diffusers": diffusers.__version__,
            "transformers": importlib.import_module("transformers").__version__,
            "onnx": onnx.__version__,
            "onnxruntime": ort.__version__,
            "numpy": np.__version__,
        },
        "models": {
            name: {"io_convention": MODELS[name]["io"], "tokenizer_json": MODELS[name]["tokenizer_json"],
                   "graphs": signatures[name]}
            for name in MODELS
        },
    }
    write_json(REF / "models.json", meta)
    write_cases(entries)
    write_taesd_reference(taesd, taesd_signature)
    write_taesd_encoder_reference(taesd)

    replay = Path(__file__).with_name("onnx_replay.py")
    if replay.exists():
        sys.path.insert(0, str(replay.parent))
        import onnx_replay

        onnx_replay.main()


if __name__ == "__main__":
    if sys.argv[1:] == ["--samplers-only"]:
        samplers_only()
    else:
        main()
