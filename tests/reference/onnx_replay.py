#!/usr/bin/env python3
"""Independent replay of every reference case with onnxruntime + numpy only,
following the conventions written in tests/reference/README.md (the same
rules livefill's Rust engine implements). It reads nothing but the fixture
files (model folders, cases.json, inputs, noise) and compares with diffusers'
expected outputs. If this passes, the README is a sufficient spec.

    .cache/refvenv/bin/python tests/reference/onnx_replay.py
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
FIX = REPO / "tests" / "fixtures"
REF = FIX / "reference"

ONNX_TO_NP = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(int32)": np.int32}


def session(path: Path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


class Model:
    def __init__(self, name: str):
        d = FIX / name
        self.sched = json.loads((d / "scheduler" / "scheduler_config.json").read_text())
        self.unet_cfg = json.loads((d / "unet" / "config.json").read_text())
        self.vae_cfg = json.loads((d / "vae_decoder" / "config.json").read_text())
        self.te = session(d / "text_encoder" / "model.onnx")
        self.unet = session(d / "unet" / "model.onnx")
        self.enc = session(d / "vae_encoder" / "model.onnx")
        self.dec = session(d / "vae_decoder" / "model.onnx")
        self.ids_dtype = ONNX_TO_NP[self.te.get_inputs()[0].type]
        ts = next(i for i in self.unet.get_inputs() if i.name == "timestep")
        self.t_dtype, self.t_rank = ONNX_TO_NP[ts.type], len(ts.shape)
        self.unet_inputs = {i.name for i in self.unet.get_inputs()}
        self.sf = float(self.vae_cfg["scaling_factor"])
        c = self.sched
        # betas/alphas_cumprod in float32, as diffusers (scaled_linear)
        betas = np.linspace(c["beta_start"] ** 0.5, c["beta_end"] ** 0.5, c["num_train_timesteps"], dtype=np.float64) ** 2
        self.ac = np.cumprod(1.0 - betas).astype(np.float32)

    def encode_text(self, ids):
        lh, _ = self.te.run(None, {"input_ids": np.asarray([ids], dtype=self.ids_dtype)})
        return lh

    def timesteps(self, steps: int, strength: float) -> tuple[list[int], int]:
        c = self.sched
        k = c["num_train_timesteps"] // c["original_inference_steps"]
        origin = [(i + 1) * k - 1 for i in range(c["original_inference_steps"])][::-1]
        full = [origin[int(math.floor(j * len(origin) / steps))] for j in range(steps)]
        init = min(int(steps * strength), steps)
        t_start = max(steps - init, 0)
        return full, t_start

    def add_noise(self, x0, noise, t):
        a = self.ac[t]
        return (np.sqrt(a) * x0 + np.sqrt(np.float32(1) - a) * noise).astype(np.float32)

    def unet_run(self, sample, t, ehs, tcond):
        feeds = {"sample": sample, "encoder_hidden_states": ehs}
        feeds["timestep"] = np.array(t, dtype=self.t_dtype) if self.t_rank == 0 else np.full((1,), t, self.t_dtype)
        if "timestep_cond" in self.unet_inputs:
            feeds["timestep_cond"] = tcond
        return self.unet.run(None, feeds)[0]

    def vae_mean(self, img_nchw):
        (par,) = self.enc.run(None, {"sample": img_nchw})
        return par[:, :4]  # latent_parameters = mean || logvar


def guidance_embedding(g: float, dim: int) -> np.ndarray:
    w = np.float32((g - 1.0) * 1000.0)
    half = dim // 2
    freq = np.exp(np.arange(half, dtype=np.float32) * -(np.float32(math.log(10000.0)) / np.float32(half - 1)))
    e = w * freq
    emb = np.concatenate([np.sin(e), np.cos(e)]).astype(np.float32)
    if dim % 2:
        emb = np.pad(emb, (0, 1))
    return emb[None]


def load_rgb(path: Path) -> np.ndarray:  # -> [1,3,H,W] in [-1,1]
    a = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    return (a.transpose(2, 0, 1)[None] * 2.0 - 1.0).astype(np.float32)


def load_mask(path: Path) -> np.ndarray:  # -> [1,1,H,W] in {0,1}
    a = np.asarray(Image.open(path).convert("L"), dtype=np.float32) / 255.0
    return (a >= 0.5).astype(np.float32)[None, None]


def replay(case: dict, m: Model) -> dict:
    noise = np.load(REF / case["noise"])
    steps, g = case["steps"], case["guidance"]
    strength = case["strength"] if case["strength"] is not None else 1.0
    full, t_start = m.timesteps(steps, strength)
    run = full[t_start:]
    assert run == case["timesteps"], (run, case["timesteps"])
    assert len(noise) == len(run), "one initial draw + one per step but the last"

    cond = m.encode_text(case["token_ids"])
    cfg = g > 1.0 and m.unet_cfg.get("time_cond_proj_dim") is None
    ehs = np.concatenate([m.encode_text(case["negative_token_ids"]), cond]) if cfg else cond
    te_err = float(np.abs(ehs - np.load(REF / case["text_embeddings"])).max())
    tcond = None
    if m.unet_cfg.get("time_cond_proj_dim") is not None:
        tcond = guidance_embedding(g, m.unet_cfg["time_cond_proj_dim"])

    mode = case["mode"]
    image_latents = mask_lat = masked_lat = None
    if mode != "txt2img":
        img = load_rgb(REF / case["image"])
        image_latents = m.vae_mean(img) * np.float32(m.sf)
    if mode == "inpaint":
        mask = load_mask(REF / case["mask"])
        mask_lat = mask[:, :, ::8, ::8]  # torch nearest: src = floor(dst * 8)
        if m.unet_cfg["in_channels"] == 9:
            masked_lat = m.vae_mean(img * (mask < 0.5)) * np.float32(m.sf)

    if mode == "txt2img" or (mode == "inpaint" and strength == 1.0):
        x = noise[0][None].copy()
    else:
        x = m.add_noise(image_latents, noise[0][None], run[0])

    first_in = first_out = None
    for i, t in enumerate(run):
        xin = np.concatenate([x, x]) if cfg else x
        if mode == "inpaint" and m.unet_cfg["in_channels"] == 9:
            b = xin.shape[0]
            xin = np.concatenate([xin, np.repeat(mask_lat, b, 0), np.repeat(masked_lat, b, 0)], axis=1)
        eps = m.unet_run(xin.astype(np.float32), t, ehs, tcond)
        if first_in is None:
            first_in, first_out = xin, eps
        if cfg:
            eu, ec = eps[:1], eps[1:]
            eps = eu + np.float32(g) * (ec - eu)
        # LCMScheduler.step
        idx = t_start + i
        prev_t = full[idx + 1] if idx + 1 < len(full) else t
        a_t, a_p = m.ac[t], m.ac[prev_t]
        b_t, b_p = np.float32(1) - a_t, np.float32(1) - a_p
        st = np.float32(t * m.sched["timestep_scaling"])
        c_skip = np.float32(0.25) / (st * st + np.float32(0.25))
        c_out = st / np.sqrt(st * st + np.float32(0.25))
        x0 = (x - np.sqrt(b_t) * eps) / np.sqrt(a_t)
        den = c_out * x0 + c_skip * x
        x = (np.sqrt(a_p) * den + np.sqrt(b_p) * noise[i + 1][None]) if idx != steps - 1 else den
        x = x.astype(np.float32)
        if mode == "inpaint" and m.unet_cfg["in_channels"] == 4:
            proper = m.add_noise(image_latents, noise[0][None], run[i + 1]) if i < len(run) - 1 else image_latents
            x = (1 - mask_lat) * proper + mask_lat * x

    (dec,) = m.dec.run(None, {"latent_sample": (x / np.float32(m.sf)).astype(np.float32)})
    out = np.clip(dec[0] / 2 + 0.5, 0.0, 1.0).transpose(1, 2, 0)
    exp = np.load(REF / case["expected"])
    res = {"text": te_err, "image": float(np.abs(out - exp).max()), "image_mean": float(np.abs(out - exp).mean())}
    if "debug" in case:
        res["unet0_in"] = float(np.abs(first_in - np.load(REF / case["debug"]["unet0_sample"])).max())
        res["unet0_out"] = float(np.abs(first_out - np.load(REF / case["debug"]["unet0_out_sample"])).max())
    return res


def main(tol: float = 1e-4) -> None:
    cases = json.loads((REF / "cases.json").read_text())
    models: dict[str, Model] = {}
    worst = 0.0
    print("replaying cases with onnxruntime + numpy (README conventions)")
    for c in cases:
        if c.get("sampler"):
            continue  # the README's rules are LCMScheduler's; the other samplers: daemon/tests/parity.rs
        m = models.setdefault(c["model"], Model(c["model"]))
        r = replay(c, m)
        extra = "".join(f" {k}={v:.1e}" for k, v in r.items() if k.startswith("unet0"))
        print(f"  {c['name']:<22s} text max|d|={r['text']:.1e} image max|d|={r['image']:.1e} mean|d|={r['image_mean']:.1e}{extra}")
        worst = max(worst, r["image"])
        assert r["text"] < 1e-4 and r["image"] < tol, c["name"]
    print(f"onnx replay OK: worst image max|diff| = {worst:.2e} (tolerance {tol})")


if __name__ == "__main__":
    main()
