"""Tests of the Python codec: golden frames shared with Rust, error cases, fuzzing, pixel helpers.

Why this exists: the plugins only work if this codec and the Rust one produce and accept the very
same bytes. Run from the repository root with ``protocol/python/run_tests.sh``.
"""

import io
import os
import random
import struct
import unittest

import livefill_protocol as p
from make_golden import GOLDEN_DIR, encode_sample, golden_samples


def _read_golden(side: str, name: str) -> bytes:
    with open(os.path.join(GOLDEN_DIR, side, name + ".bin"), "rb") as f:
        return f.read()


def _decode_frame(name: str, frame: bytes):
    if name.startswith("client_"):
        return p.decode_client_frame(frame)
    return p.decode_daemon_frame(frame)


class GoldenFrames(unittest.TestCase):
    def test_rust_frames_decode_to_expected_values_and_reencode_identically(self):
        for name, expected in golden_samples():
            with self.subTest(name=name):
                frame = _read_golden("rust", name)
                decoded = _decode_frame(name, frame)
                self.assertEqual(decoded, expected)
                self.assertEqual(encode_sample(name, decoded), frame)

    def test_python_golden_files_are_current(self):
        for name, msg in golden_samples():
            with self.subTest(name=name):
                self.assertEqual(
                    _read_golden("python", name),
                    encode_sample(name, msg),
                    "run python3 protocol/python/make_golden.py",
                )

    def test_every_variant_is_covered(self):
        kinds = {type(m) for _, m in golden_samples()}
        for cls in p.CLIENT_VARIANTS + p.DAEMON_VARIANTS:
            self.assertIn(cls, kinds)

    def test_selected_field_values(self):
        frame = _read_golden("rust", "client_generate_full")
        req = p.decode_client_frame(frame)
        self.assertIsInstance(req, p.GenerateRequest)
        self.assertEqual(req.mode, p.Mode.INPAINT)
        self.assertIs(type(req.mode), p.Mode)
        self.assertEqual(req.prompt, "a red fox in snow, 雪の中の狐")
        self.assertEqual(req.seed, 1234567890123)
        self.assertEqual(req.guidance, 1.5)
        self.assertEqual(req.image.width, 3)
        self.assertEqual(len(req.image.pixels), 3 * 2 * 4)
        self.assertEqual(req.mask.pixels, bytes([0, 255, 128, 255, 0, 64]))
        self.assertEqual(req.extend, p.Extend(1, 2, 3, 4))
        self.assertEqual(req.priority, p.Priority.LIVE_PREVIEW)
        self.assertTrue(req.color_match)
        err = p.decode_daemon_frame(_read_golden("rust", "daemon_error_connection"))
        self.assertIsNone(err.request_id)
        self.assertEqual(err.code, p.ErrorCode.UNSUPPORTED_VERSION)
        res = p.decode_daemon_frame(_read_golden("rust", "daemon_result"))
        self.assertEqual(res.offset_x, -16)
        self.assertEqual([t.stage for t in res.timings], ["text_encode", "unet", "vae_decode"])

    def test_header_layout(self):
        frame = _read_golden("rust", "client_cancel")
        self.assertEqual(frame[:4], b"LVFL")
        self.assertEqual(struct.unpack_from("<HHI", frame, 4), (p.PROTOCOL_VERSION, 0, 12))
        self.assertEqual(frame[12:], struct.pack("<IQ", 2, 42))


def _frame(version=p.PROTOCOL_VERSION, flags=0, payload=b"", length=None, magic=b"LVFL"):
    n = len(payload) if length is None else length
    return struct.pack("<4sHHI", magic, version, flags, n) + payload


class Errors(unittest.TestCase):
    def test_wrong_magic(self):
        frame = b"HTTP" + p.encode_client_message(p.Status())[4:]
        with self.assertRaises(p.BadMagic) as cm:
            p.read_client_message(io.BytesIO(frame))
        self.assertEqual(cm.exception.found, b"HTTP")
        self.assertEqual(cm.exception.code, p.ErrorCode.BAD_FRAME)

    def test_wrong_version(self):
        for v in (0, p.PROTOCOL_VERSION + 1, 0xFFFF):
            with self.assertRaises(p.UnsupportedVersion) as cm:
                p.read_client_message(io.BytesIO(_frame(version=v, payload=b"\xff\xff\xff")))
            self.assertEqual((cm.exception.got, cm.exception.supported), (v, p.PROTOCOL_VERSION))
            self.assertEqual(cm.exception.code, p.ErrorCode.UNSUPPORTED_VERSION)
            self.assertIn(str(v), str(cm.exception))

    def test_wrong_version_says_which_side_to_update(self):
        newer = p.UnsupportedVersion(p.PROTOCOL_VERSION + 1)
        self.assertIn("update the plugin: livefill install-plugin", str(newer))
        older = p.UnsupportedVersion(p.PROTOCOL_VERSION - 1)
        self.assertIn("update livefill", str(older))

    def test_sampler_and_spacing_names(self):
        self.assertEqual([s.wire_name for s in p.Sampler], ["lcm", "tcd", "euler", "euler_a", "dpmpp_2m", "ddim"])
        self.assertEqual(p.Sampler.from_name("dpmpp_2m"), p.Sampler.DPMPP_2M)
        self.assertEqual(p.Spacing.from_name("karras"), p.Spacing.KARRAS)
        with self.assertRaises(ValueError):
            p.Sampler.from_name("euler-a")
        req = p.GenerateRequest(sampler=p.Sampler.TCD, spacing=None, eta=0.5)
        back = p.decode_client_payload(p.encode_client_payload(req))
        self.assertEqual((back.sampler, back.spacing, back.eta), (p.Sampler.TCD, None, 0.5))

    def test_nonzero_flags(self):
        with self.assertRaises(p.BadFlags):
            p.read_client_message(io.BytesIO(_frame(flags=1, payload=struct.pack("<I", 3))))

    def test_oversize_length_does_not_allocate(self):
        with self.assertRaises(p.FrameTooLarge) as cm:
            p.read_client_message(io.BytesIO(_frame(length=0xFFFFFFFF)))
        self.assertEqual(cm.exception.length, 0xFFFFFFFF)
        self.assertEqual(cm.exception.code, p.ErrorCode.FRAME_TOO_LARGE)
        with self.assertRaises(p.FrameTooLarge):
            p.parse_header(_frame(length=17), max_payload=16)

    def test_truncated(self):
        frame = p.encode_client_message(p.Cancel(7))
        with self.assertRaises(p.Truncated) as cm:
            p.read_client_message(io.BytesIO(frame[:5]))
        self.assertEqual((cm.exception.expected, cm.exception.got), (12, 5))
        with self.assertRaises(p.Truncated) as cm:
            p.read_client_message(io.BytesIO(frame[:-3]))
        self.assertEqual((cm.exception.expected, cm.exception.got), (12, 9))
        with self.assertRaises(p.Truncated):
            p.decode_client_frame(frame[:-1])
        self.assertIsNone(p.read_client_message(io.BytesIO(b"")))

    def test_trailing_bytes(self):
        payload = p.encode_client_payload(p.Cancel(7)) + b"\x00"
        with self.assertRaises(p.DecodeError) as cm:
            p.decode_client_payload(payload)
        self.assertIn("trailing", str(cm.exception))
        with self.assertRaises(p.DecodeError):
            p.read_client_message(io.BytesIO(_frame(payload=payload)))

    def test_garbage_payloads(self):
        cases = [
            b"",
            b"\xff\xff\xff\xff",
            struct.pack("<I", 6),
            struct.pack("<IQ", 0, 2**63 - 1) + b"abc",  # huge string length
            struct.pack("<IQ", 0, 1) + b"\xc3" + b"\x01\x00",  # invalid UTF-8
            struct.pack("<I", 2) + b"\x01",  # short u64
        ]
        for payload in cases:
            with self.subTest(payload=payload):
                with self.assertRaises(p.DecodeError):
                    p.decode_client_payload(payload)
        bad_option = p.encode_daemon_payload(p.Progress(1, 1, 1, None))[:-1] + b"\x02"
        with self.assertRaises(p.DecodeError):
            p.decode_daemon_payload(bad_option)
        bad_enum = bytearray(p.encode_daemon_payload(p.ErrorReply(None, p.ErrorCode.INTERNAL, "")))
        bad_enum[8] = 9  # high byte of the code's variant index
        with self.assertRaises(p.DecodeError):
            p.decode_daemon_payload(bytes(bad_enum))
        unloaded = p.encode_daemon_payload(p.Models([p.ModelInfo(loaded=False)]))
        loaded = p.encode_daemon_payload(p.Models([p.ModelInfo(loaded=True)]))
        at = next(i for i, (x, y) in enumerate(zip(unloaded, loaded)) if x != y)  # the `loaded` bool
        bad_bool = unloaded[:at] + b"\x05" + unloaded[at + 1 :]
        with self.assertRaises(p.DecodeError):
            p.decode_daemon_payload(bad_bool)

    def test_encode_rejects_wrong_types(self):
        with self.assertRaises(TypeError):
            p.encode_client_message(p.Accepted(1, 2))
        with self.assertRaises(TypeError):
            p.encode_daemon_message(p.Cancel(1))
        with self.assertRaises(ValueError):
            p.encode_client_message(p.Cancel(-1))
        with self.assertRaises(TypeError):
            p.encode_client_message(p.GenerateRequest(image=p.RgbaImage(1, 1, [1, 2, 3, 4])))

    def test_random_and_mutated_frames_only_raise_protocol_errors(self):
        rng = random.Random(1234)
        corpus = [encode_sample(n, m) for n, m in golden_samples()]
        for i in range(3000):
            f = bytearray(rng.choice(corpus))
            kind = i % 5
            if kind == 0:
                for _ in range(rng.randint(1, 4)):
                    f[rng.randrange(len(f))] ^= 1 << rng.randrange(8)
            elif kind == 1:
                f[rng.randrange(12, len(f))] = rng.choice([0, 1, 2, 0x7F, 0x80, 0xFF])
            elif kind == 2:
                del f[rng.randrange(len(f)) :]
            elif kind == 3:
                at = rng.randrange(12, len(f) + 1)
                f[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 9)))
                struct.pack_into("<I", f, 8, len(f) - 12)
            else:
                n = rng.randrange(200)
                f = bytearray(p.encode_header(n) + bytes(rng.randrange(256) for _ in range(n)))
            for reader in (p.read_client_message, p.read_daemon_message):
                try:
                    reader(io.BytesIO(bytes(f)))
                except p.ProtocolError:
                    pass
            for decoder in (p.decode_client_payload, p.decode_daemon_payload):
                try:
                    decoder(bytes(f[12:]))
                except p.ProtocolError:
                    pass


class Pixels(unittest.TestCase):
    def test_bgra_rgba_swap(self):
        bgra = bytes([1, 2, 3, 4, 10, 20, 30, 40])
        rgba = p.bgra_to_rgba(bgra)
        self.assertEqual(rgba, bytes([3, 2, 1, 4, 30, 20, 10, 40]))
        self.assertEqual(p.rgba_to_bgra(rgba), bgra)
        self.assertEqual(p.bgra_to_rgba(memoryview(bytearray(bgra))), rgba)
        with self.assertRaises(ValueError):
            p.bgra_to_rgba(b"\x00\x01\x02")

    def test_large_image_round_trips(self):
        side = 2048
        pixels = bytes(range(256)) * (side * side * 4 // 256)
        req = p.GenerateRequest(
            request_id=1,
            mode=p.Mode.INPAINT,
            image=p.RgbaImage(side, side, pixels),
            mask=p.Mask(side, side, pixels[: side * side]),
        )
        frame = p.encode_client_message(req)
        back = p.decode_client_frame(frame)
        swapped = p.bgra_to_rgba(pixels)
        self.assertEqual(back, req)
        self.assertEqual(swapped[:8], bytes([2, 1, 0, 3, 6, 5, 4, 7]))
        self.assertEqual(len(swapped), len(pixels))

    def test_total_millis_leaves_out_the_onnxruntime_share(self):
        result = p.GenerateResult(timings=[
            p.StageTiming("unet", 30.0), p.StageTiming("vae_decode", 10.0),
            p.StageTiming(p.ONNXRUNTIME_STAGE, 38.0)])
        self.assertEqual(result.total_millis(), 40.0)


if __name__ == "__main__":
    unittest.main()
