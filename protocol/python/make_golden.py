#!/usr/bin/env python3
"""Writes the Python golden frames to ``protocol/tests/golden/python/<name>.bin``.

Why this exists: the Rust test ``protocol/tests/golden.rs`` decodes these files and compares them
with its own samples, proving that frames built by this Python codec are understood by the daemon.
``golden_samples()`` builds exactly the values of ``protocol/tests/samples/mod.rs`` (keep the two
in sync); the Python tests import it too. Run it after a deliberate protocol change:

    python3 protocol/python/make_golden.py
"""

import os
import sys
from typing import Any, List, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import livefill_protocol as p  # noqa: E402

GOLDEN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "golden")


def _image(width: int, height: int) -> p.RgbaImage:
    n = width * height * 4
    return p.RgbaImage(width, height, bytes((i * 37) % 256 for i in range(n)))


def golden_samples() -> List[Tuple[str, Any]]:
    """(name, message) pairs; names starting with ``client_`` are client messages."""
    return [
        ("client_hello", p.ClientHello("Krita 5.2 \u2014 livefill \u2713", p.PROTOCOL_VERSION)),
        (
            "client_generate_full",
            p.GenerateRequest(
                request_id=42,
                mode=p.Mode.INPAINT,
                prompt="a red fox in snow, \u96ea\u306e\u4e2d\u306e\u72d0",
                negative_prompt="blurry, \u00fcberbelichtet",
                seed=1234567890123,
                steps=4,
                guidance=1.5,
                strength=0.75,
                width=0,
                height=0,
                image=_image(3, 2),
                mask=p.Mask(3, 2, bytes([0, 255, 128, 255, 0, 64])),
                extend=p.Extend(1, 2, 3, 4),
                context=p.Context.FULL,
                feather=8,
                color_match=True,
                priority=p.Priority.LIVE_PREVIEW,
                stream_previews=True,
                sampler=p.Sampler.DPMPP_2M,
                spacing=p.Spacing.KARRAS,
                eta=0.25,
                model="mod\u00e8le-inpaint",
            ),
        ),
        (
            "client_generate_minimal",
            p.GenerateRequest(
                request_id=2**64 - 1,
                mode=p.Mode.TXT2IMG,
                prompt="",
                negative_prompt="",
                seed=None,
                steps=1,
                guidance=1.0,
                strength=1.0,
                width=512,
                height=768,
                image=None,
                mask=None,
                extend=p.Extend(),
                context=p.Context.AUTO,
                feather=0,
                color_match=False,
                priority=p.Priority.FINAL,
                stream_previews=False,
                sampler=None,
                spacing=None,
                eta=None,
                model="",
            ),
        ),
        (
            "client_generate_outpaint",
            p.GenerateRequest(
                request_id=43,
                mode=p.Mode.OUTPAINT,
                prompt="wide landscape",
                negative_prompt="",
                seed=0,
                steps=8,
                guidance=0.0,
                strength=0.5,
                width=0,
                height=0,
                image=_image(1, 1),
                mask=None,
                extend=p.Extend(64, 0, 64, 0),
                context=p.Context.AUTO,
                feather=16,
                color_match=False,
                priority=p.Priority.FINAL,
                stream_previews=False,
                sampler=p.Sampler.EULER_A,
                spacing=p.Spacing.TRAILING,
                eta=None,
                model="lcm-dreamshaper-v7",
            ),
        ),
        ("client_cancel", p.Cancel(42)),
        ("client_status", p.Status()),
        ("client_list_models", p.ListModels()),
        ("client_shutdown", p.Shutdown()),
        (
            "daemon_hello",
            p.DaemonHello(
                daemon_version="0.1.0",
                protocol_version=p.PROTOCOL_VERSION,
                device="NVIDIA H100 (cuda:0)",
                execution_provider="CUDAExecutionProvider",
                model="lcm-dreamshaper-v7",
                native_width=512,
                native_height=512,
                capabilities=p.Capabilities(
                    modes=[p.Mode.TXT2IMG, p.Mode.IMG2IMG, p.Mode.INPAINT, p.Mode.OUTPAINT],
                    inpainting_unet=False,
                    taesd_previews=True,
                    max_image_side=8192,
                    max_frame_bytes=p.DEFAULT_MAX_PAYLOAD,
                    default_sampler=p.Sampler.LCM,
                    default_spacing=None,
                    default_steps=4,
                    default_guidance=1.0,
                ),
            ),
        ),
        ("daemon_accepted", p.Accepted(request_id=42, queue_position=3)),
        ("daemon_progress_preview", p.Progress(42, 2, 4, _image(2, 1))),
        ("daemon_progress_no_preview", p.Progress(42, 3, 4, None)),
        (
            "daemon_result",
            p.GenerateResult(
                request_id=42,
                image=_image(2, 2),
                offset_x=-16,
                offset_y=32,
                seed=1234567890123,
                timings=[
                    p.StageTiming("text_encode", 3.25),
                    p.StageTiming("unet", 120.5),
                    p.StageTiming("vae_decode", 0.125),
                ],
                model="lcm-dreamshaper-v7",
            ),
        ),
        (
            "daemon_error_request",
            p.ErrorReply(42, p.ErrorCode.MASK_SIZE_MISMATCH, "mask is 3\u00d72 but the image is 4\u00d74"),
        ),
        (
            "daemon_error_connection",
            p.ErrorReply(None, p.ErrorCode.UNSUPPORTED_VERSION, "client speaks protocol 2, daemon speaks 1"),
        ),
        ("daemon_superseded", p.Superseded(42, 43)),
        (
            "daemon_status",
            p.DaemonStatus(
                "lcm-dreamshaper-v7",
                "cpu",
                "CPUExecutionProvider",
                2,
                43,
                1,
                17,
                123456789,
                resident_bytes=2132000000,
                budget_bytes=6000000000,
                max_resident_models=0,
                loading_model="mod\u00e8le-inpaint",
            ),
        ),
        ("daemon_status_idle", p.DaemonStatus("", "cpu", "CPUExecutionProvider", 0, None, 0, 0, 5, 0, 0, 2, "")),
        (
            "daemon_models",
            p.Models(
                [
                    p.ModelInfo(
                        "lcm-dreamshaper-v7",
                        "/home/ana/.cache/livefill/models/lcm-dreamshaper-v7",
                        4,
                        True,
                        "fp16",
                        True,
                        True,
                        [p.ModelRole.DEFAULT, p.ModelRole.LIVE],
                        2132000000,
                        430000000,
                        "",
                        p.Sampler.LCM,
                        None,
                        4,
                        1.0,
                    ),
                    p.ModelInfo(
                        "mod\u00e8le-inpaint",
                        "C:\\Users\\Jos\u00e9\\models\\inpaint",
                        9,
                        False,
                        "fp32",
                        False,
                        False,
                        [p.ModelRole.INPAINT],
                        4265000000,
                        0,
                        "unet/model.onnx: truncated at byte 1048576 of 3438167536",
                        p.Sampler.DPMPP_2M,
                        p.Spacing.KARRAS,
                        20,
                        7.5,
                    ),
                ]
            ),
        ),
        ("daemon_models_empty", p.Models([])),
        ("daemon_shutting_down", p.ShuttingDown()),
        ("daemon_model_loading", p.ModelLoading(42, "mod\u00e8le-inpaint", 2, 5, "unet")),
    ]


def encode_sample(name: str, msg: Any) -> bytes:
    if name.startswith("client_"):
        return p.encode_client_message(msg)
    return p.encode_daemon_message(msg)


def main() -> None:
    out_dir = os.path.join(GOLDEN_DIR, "python")
    os.makedirs(out_dir, exist_ok=True)
    for name, msg in golden_samples():
        with open(os.path.join(out_dir, name + ".bin"), "wb") as f:
            f.write(encode_sample(name, msg))
    print("wrote %d frames to %s" % (len(golden_samples()), os.path.normpath(out_dir)))


if __name__ == "__main__":
    main()
