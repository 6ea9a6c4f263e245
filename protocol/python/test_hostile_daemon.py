"""The client transport against a hostile stand-in daemon: untrusted bytes from the socket.

Why this exists: a plugin runs inside the artist's editor, so a reply that is oversize, cut short
or malformed — from a buggy daemon, another program on the socket, or a broken forwarding — must
end in a clear ``ProtocolError`` / ``ConnectionClosed``, never in a hang, a crash of the editor,
or an allocation of whatever size the header claims. Each test serves one scripted reply on an
AF_UNIX socket and checks the error and (with ``tracemalloc``) the memory the client allocated
while reading it. Run with ``protocol/python/run_tests.sh``.
"""

import os
import shutil
import socket
import struct
import tempfile
import threading
import tracemalloc
import unittest
from typing import Callable, List

import livefill_client as lc
import livefill_protocol as p

#: What a test may allocate while refusing a reply (the claimed sizes are hundreds of MB).
ALLOCATION_BOUND = 8 << 20


def header(payload_len: int, magic: bytes = p.MAGIC, version: int = p.PROTOCOL_VERSION) -> bytes:
    return struct.pack("<4sHHI", magic, version, 0, payload_len)


def hello_frame() -> bytes:
    return p.encode_daemon_message(
        p.DaemonHello(
            daemon_version="hostile",
            device="cpu",
            execution_provider="none",
            model="m",
            native_width=64,
            native_height=64,
            capabilities=p.Capabilities(
                modes=[p.Mode.TXT2IMG],
                inpainting_unet=False,
                taesd_previews=False,
                max_image_side=1024,
                max_frame_bytes=p.DEFAULT_MAX_PAYLOAD,
                default_sampler=p.Sampler.LCM,
                default_spacing=None,
                default_steps=4,
                default_guidance=1.0,
            ),
        )
    )


class HostileDaemon:
    """Accepts one connection, reads the client's hello, sends ``script``'s bytes, half-closes."""

    def __init__(self, path: str, script: List[bytes]) -> None:
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(path)
        self.server.listen(1)
        self.script = script
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.server.accept()
        with conn:
            try:
                conn.settimeout(5)
                p.read_frame(conn)
                for chunk in self.script:
                    conn.sendall(chunk)
                # Half-close, then drain what the client still sends until it hangs up: a Unix
                # socket closed with unread bytes in its queue resets the peer (ECONNRESET),
                # which would hide the reply's own fault (the race CI once lost).
                conn.shutdown(socket.SHUT_WR)
                while conn.recv(1 << 16):
                    pass
            except OSError:
                pass

    def close(self) -> None:
        self.server.close()
        self.thread.join(5)


class HostileReplies(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="lvfl-hostile-")
        self.path = os.path.join(self.dir, "d.sock")

    def tearDown(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def serve(self, *script: bytes) -> None:
        daemon = HostileDaemon(self.path, list(script))
        self.addCleanup(daemon.close)

    def peak_while(self, action: Callable[[], None]) -> int:
        tracemalloc.start()
        try:
            action()
        finally:
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        return peak

    def refused_hello(self, error: type, *script: bytes) -> BaseException:
        self.serve(*script)
        caught: List[BaseException] = []

        def connect() -> None:
            with self.assertRaises(error) as ctx:
                lc.DaemonConnection.connect(self.path, "hostile-test", timeout=5.0)
            caught.append(ctx.exception)

        peak = self.peak_while(connect)
        self.assertLess(peak, ALLOCATION_BOUND, "allocated %d bytes refusing the reply" % peak)
        return caught[0]

    def test_a_header_claiming_300_mb_then_closing_costs_little(self) -> None:
        claimed = 300 << 20
        err = self.refused_hello(p.Truncated, header(claimed), b"\x00" * 100)
        self.assertIn(str(claimed), str(err))

    def test_a_frame_larger_than_the_limit_is_refused_from_its_header(self) -> None:
        self.refused_hello(p.FrameTooLarge, header(0xFFFFFFFF))

    def test_bad_magic_and_other_versions(self) -> None:
        self.refused_hello(p.BadMagic, header(4, magic=b"HTTP"), b"\x00" * 4)

    def test_another_protocol_version(self) -> None:
        self.refused_hello(p.UnsupportedVersion, header(4, version=p.PROTOCOL_VERSION + 7), b"\x00" * 4)

    def test_an_unknown_message_variant(self) -> None:
        payload = struct.pack("<I", 250)
        self.refused_hello(p.DecodeError, header(len(payload)), payload)

    def test_a_string_longer_than_its_frame(self) -> None:
        # Hello (variant 0), then a daemon_version string claiming 2^60 bytes.
        payload = struct.pack("<IQ", 0, 1 << 60) + b"abc"
        self.refused_hello(p.DecodeError, header(len(payload)), payload)

    def connected(self, *script: bytes) -> lc.DaemonConnection:
        self.serve(hello_frame(), *script)
        conn = lc.DaemonConnection.connect(self.path, "hostile-test", timeout=5.0)
        self.addCleanup(conn.close)
        return conn

    def assert_closed_with(self, conn: lc.DaemonConnection, error: type) -> None:
        with self.assertRaises(lc.ConnectionClosed):
            conn.list_models(timeout=10.0)
        # The reader thread puts None on `messages` when it has ended (with its reason set).
        while conn.messages.get(timeout=10.0) is not None:
            pass
        self.assertIsInstance(conn.closed_reason, error, repr(conn.closed_reason))

    def test_a_model_list_claiming_2_to_the_60_entries(self) -> None:
        payload = struct.pack("<IQ", 7, 1 << 60)
        conn = self.connected(header(len(payload)), payload)
        self.assert_closed_with(conn, p.DecodeError)

    def test_an_image_whose_pixels_do_not_match_its_size(self) -> None:
        # A result claiming 65536 × 65536 pixels with 16 bytes of them.
        result = p.GenerateResult(request_id=1, image=p.RgbaImage(2, 2, b"\x00" * 16))
        payload = bytearray(p.encode_daemon_message(result)[p.HEADER_LEN :])
        # request_id (8) after the variant (4): width and height follow.
        struct.pack_into("<II", payload, 12, 65536, 65536)
        conn = self.connected(header(len(payload)), bytes(payload))
        self.assert_closed_with(conn, p.DecodeError)

    def test_a_reply_cut_mid_payload_after_the_hello(self) -> None:
        claimed = 200 << 20
        conn = self.connected(header(claimed), b"\x03\x00\x00\x00")
        # (What the reader thread allocates is bounded by the same read_frame as the hello's.)
        self.assert_closed_with(conn, p.Truncated)


if __name__ == "__main__":
    unittest.main()
