"""Tests of the client transport against a tiny fake daemon on an AF_UNIX socket.

Why this exists: ``DaemonConnection`` and ``ensure_daemon`` are what both plugins rely on; these
tests check the handshake, request routing, progress callbacks, errors, supersession, status and
model queries, connection loss, and spawning a daemon executable. The fake daemon speaks the real
protocol through ``livefill_protocol``. Run with ``protocol/python/run_tests.sh``.
"""

import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import unittest

import livefill_client as lc
import livefill_protocol as p

HERE = os.path.dirname(os.path.abspath(__file__))


class FakeDaemon:
    """Serves each connection on its own thread; behaviour is chosen by the request's prompt."""

    def __init__(self, path: str, refuse_version: bool = False, idle_exit: float = 30.0) -> None:
        self.path = path
        self.refuse_version = refuse_version
        self.idle_exit = idle_exit
        self.received = []
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(8)
        self.stopped = threading.Event()
        self.conns = []

    def start(self) -> "FakeDaemon":
        threading.Thread(target=self.serve, daemon=True).start()
        return self

    def serve(self) -> None:
        # Short accept timeouts: closing a listener does not wake a thread blocked in accept().
        self.listener.settimeout(0.1)
        idle_deadline = time.monotonic() + self.idle_exit
        while not self.stopped.is_set() and time.monotonic() < idle_deadline:
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            idle_deadline = time.monotonic() + self.idle_exit
            self.conns.append(conn)
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()
        self.stop()

    def stop(self) -> None:
        self.stopped.set()
        try:
            self.listener.close()
        except OSError:
            pass
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle(self, conn: socket.socket) -> None:
        send = lambda m: conn.sendall(p.encode_daemon_message(m))  # noqa: E731
        pending_slow = []
        try:
            while True:
                msg = p.read_client_message(conn)
                if msg is None:
                    return
                self.received.append(msg)
                if isinstance(msg, p.ClientHello):
                    if self.refuse_version:
                        send(p.ErrorReply(None, p.ErrorCode.UNSUPPORTED_VERSION, "daemon speaks 99"))
                        return
                    send(
                        p.DaemonHello(
                            "0.0-test",
                            p.PROTOCOL_VERSION,
                            "cpu",
                            "CPUExecutionProvider",
                            "fake",
                            512,
                            512,
                            p.Capabilities([p.Mode.TXT2IMG], False, False, 1024, p.DEFAULT_MAX_PAYLOAD),
                        )
                    )
                elif isinstance(msg, p.GenerateRequest):
                    rid = msg.request_id
                    send(p.Accepted(rid, 0))
                    if msg.prompt == "fail":
                        send(p.ErrorReply(rid, p.ErrorCode.INVALID_REQUEST, "bad prompt"))
                    elif msg.prompt == "supersede":
                        send(p.Superseded(rid, rid + 1))
                    elif msg.prompt == "slow":
                        pending_slow.append(rid)
                    elif msg.prompt == "drop":
                        return
                    elif msg.prompt == "badframe":
                        send(p.ErrorReply(None, p.ErrorCode.BAD_FRAME, "undecodable payload"))
                        return
                    else:
                        preview = p.RgbaImage(1, 1, b"\x01\x02\x03\x04") if msg.stream_previews else None
                        for step in (1, 2):
                            send(p.Progress(rid, step, 2, preview))
                        image = msg.image or p.RgbaImage(2, 1, bytes(8))
                        send(p.GenerateResult(rid, image, 0, 0, msg.seed or 7, [p.StageTiming("unet", 1.5)]))
                elif isinstance(msg, p.Cancel):
                    if msg.request_id in pending_slow:
                        pending_slow.remove(msg.request_id)
                        send(p.ErrorReply(msg.request_id, p.ErrorCode.CANCELLED, "cancelled"))
                elif isinstance(msg, p.Status):
                    send(p.DaemonStatus("fake", "cpu", "CPUExecutionProvider", 0, None, 1, 3, 10))
                elif isinstance(msg, p.ListModels):
                    send(p.Models([p.ModelInfo("fake", "/m/fake", 4, True, "fp32", False, True)]))
                elif isinstance(msg, p.Shutdown):
                    send(p.ShuttingDown())
                    self.stopped.set()
                    return
        except (OSError, p.ProtocolError):
            return
        finally:
            conn.close()


def fake_daemon_main(argv) -> None:
    """Entry point of the fake ``livefill`` executable used by the ensure_daemon test."""
    assert argv[1] == "serve" and argv[2] == "--socket", argv
    path = argv[3]
    if "--fail" in argv:
        print("error: model folder not found: /nowhere", flush=True)
        sys.exit(3)
    print("fake daemon listening on", path, flush=True)
    daemon = FakeDaemon(path, idle_exit=20.0)
    daemon.serve()


class ConnectionTests(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="lvfl-")
        self.path = os.path.join(self.dir, "d.sock")

    def tearDown(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def connect(self, **kw) -> lc.DaemonConnection:
        self.daemon = FakeDaemon(self.path).start()
        self.addCleanup(self.daemon.stop)
        conn = lc.DaemonConnection.connect(self.path, "unit-test ✓", timeout=5.0, **kw)
        self.addCleanup(conn.close)
        return conn

    def test_handshake(self):
        conn = self.connect()
        self.assertEqual(conn.hello.model, "fake")
        self.assertEqual(conn.hello.capabilities.modes, [p.Mode.TXT2IMG])
        self.assertEqual(self.daemon.received[0], p.ClientHello("unit-test ✓", p.PROTOCOL_VERSION))

    def test_generate_with_progress(self):
        seen = []
        conn = self.connect(on_message=seen.append)
        image = p.RgbaImage(2, 2, bytes(range(16)))
        rid = conn.generate(p.GenerateRequest(mode=p.Mode.IMG2IMG, prompt="ok", image=image, stream_previews=True))
        self.assertNotEqual(rid, 0)
        progress = []
        result = conn.wait_for(rid, on_progress=progress.append, timeout=5.0)
        self.assertEqual(result.request_id, rid)
        self.assertEqual(result.image, image)
        self.assertEqual([(m.step, m.total_steps) for m in progress], [(1, 2), (2, 2)])
        self.assertEqual(progress[0].preview.pixels, b"\x01\x02\x03\x04")
        self.assertEqual(
            [type(m) for m in seen],
            [p.Accepted, p.Progress, p.Progress, p.GenerateResult],
        )

    def test_concurrent_requests_are_routed(self):
        conn = self.connect()
        ids = [conn.generate(p.GenerateRequest(prompt="ok", seed=i + 100)) for i in range(5)]
        results = {}

        def wait(rid):
            results[rid] = conn.wait_for(rid, timeout=5.0)

        threads = [threading.Thread(target=wait, args=(rid,)) for rid in reversed(ids)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual({rid: r.seed for rid, r in results.items()}, {rid: i + 100 for i, rid in enumerate(ids)})

    def test_daemon_error(self):
        conn = self.connect()
        rid = conn.generate(p.GenerateRequest(prompt="fail"))
        with self.assertRaises(lc.DaemonError) as cm:
            conn.wait_for(rid, timeout=5.0)
        self.assertEqual(cm.exception.code, p.ErrorCode.INVALID_REQUEST)
        self.assertEqual(cm.exception.request_id, rid)
        self.assertIn("bad prompt", str(cm.exception))

    def test_superseded(self):
        conn = self.connect()
        rid = conn.generate(p.GenerateRequest(prompt="supersede", priority=p.Priority.LIVE_PREVIEW))
        with self.assertRaises(lc.SupersededError) as cm:
            conn.wait_for(rid, timeout=5.0)
        self.assertEqual(cm.exception.by_request_id, rid + 1)
        self.assertNotIsInstance(cm.exception, lc.DaemonError)

    def test_cancel_and_timeout(self):
        conn = self.connect()
        rid = conn.generate(p.GenerateRequest(prompt="slow"))
        with self.assertRaises(lc.WaitTimeout):
            conn.wait_for(rid, timeout=0.2)
        conn.cancel(rid)
        with self.assertRaises(lc.DaemonError) as cm:
            conn.wait_for(rid, timeout=5.0)
        self.assertEqual(cm.exception.code, p.ErrorCode.CANCELLED)

    def test_status_and_models(self):
        conn = self.connect()
        status = conn.status(timeout=5.0)
        self.assertEqual(status.jobs_completed, 3)
        self.assertIsNone(status.running_request)
        models = conn.list_models(timeout=5.0)
        self.assertEqual([m.name for m in models], ["fake"])

    def test_connection_loss_wakes_waiters(self):
        conn = self.connect()
        rid = conn.generate(p.GenerateRequest(prompt="drop"))
        with self.assertRaises(lc.ConnectionClosed):
            conn.wait_for(rid, timeout=5.0)
        self.assertIsNone(conn.messages.get(timeout=5.0))
        self.assertTrue(conn.is_closed)
        with self.assertRaises(lc.ConnectionClosed):
            conn.send(p.Status())

    def test_connection_level_error_becomes_the_close_reason(self):
        conn = self.connect()
        rid = conn.generate(p.GenerateRequest(prompt="badframe"))
        with self.assertRaises(lc.ConnectionClosed) as cm:
            conn.wait_for(rid, timeout=5.0)
        self.assertIsInstance(cm.exception.__cause__, lc.DaemonError)
        self.assertEqual(cm.exception.__cause__.code, p.ErrorCode.BAD_FRAME)
        self.assertEqual(conn.messages.get(timeout=5.0).code, p.ErrorCode.BAD_FRAME)

    def test_unsolicited_messages_go_to_the_queue(self):
        conn = self.connect()
        conn.send(p.GenerateRequest(request_id=77, prompt="ok"))  # not registered via generate()
        first = conn.messages.get(timeout=5.0)
        self.assertEqual(first, p.Accepted(77, 0))

    def test_close_is_idempotent_and_wakes_waiters(self):
        conn = self.connect()
        rid = conn.generate(p.GenerateRequest(prompt="slow"))
        errors = []

        def wait():
            try:
                conn.wait_for(rid, timeout=5.0)
            except lc.LivefillError as e:
                errors.append(e)

        t = threading.Thread(target=wait)
        t.start()
        time.sleep(0.1)
        conn.close()
        conn.close()
        t.join(5.0)
        self.assertEqual(len(errors), 1)
        self.assertIsInstance(errors[0], lc.ConnectionClosed)

    def test_version_refused(self):
        FakeDaemon(self.path, refuse_version=True).start()
        with self.assertRaises(lc.DaemonError) as cm:
            lc.DaemonConnection.connect(self.path, "old-client", timeout=5.0)
        self.assertEqual(cm.exception.code, p.ErrorCode.UNSUPPORTED_VERSION)

    def test_nothing_listening(self):
        with self.assertRaises(FileNotFoundError):
            lc.DaemonConnection.connect(self.path, timeout=1.0)


class SocketPathTests(unittest.TestCase):
    def setUp(self) -> None:
        self.saved = {k: os.environ.get(k) for k in ("LIVEFILL_SOCKET", "XDG_RUNTIME_DIR", "TMPDIR")}

    def tearDown(self) -> None:
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    @unittest.skipIf(sys.platform == "win32", "Unix rules")
    def test_precedence(self):
        os.environ["LIVEFILL_SOCKET"] = "/x/y.sock"
        os.environ["XDG_RUNTIME_DIR"] = "/run/user/7"
        self.assertEqual(lc.default_socket_path(), "/x/y.sock")
        os.environ["LIVEFILL_SOCKET"] = ""
        self.assertEqual(lc.default_socket_path(), "/run/user/7/livefill.sock")
        del os.environ["XDG_RUNTIME_DIR"]
        os.environ["TMPDIR"] = "/var/tmp"
        self.assertEqual(lc.default_socket_path(), "/var/tmp/livefill-%d/livefill.sock" % os.getuid())
        del os.environ["TMPDIR"]
        self.assertEqual(lc.default_socket_path(), "/tmp/livefill-%d/livefill.sock" % os.getuid())


class EnsureDaemonTests(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="lvfl-")
        self.path = os.path.join(self.dir, "d.sock")
        self.log = os.path.join(self.dir, "serve.log")
        self.exe = os.path.join(self.dir, "fake-livefill")
        with open(self.exe, "w") as f:
            f.write(
                "#!%s\nimport sys\nsys.path.insert(0, %r)\nimport test_livefill_client as t\n"
                "t.fake_daemon_main(sys.argv)\n" % (sys.executable, HERE)
            )
        os.chmod(self.exe, 0o755)

    def tearDown(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_spawns_and_connects_then_reuses(self):
        conn = lc.ensure_daemon(self.exe, socket_path=self.path, timeout=20.0, log_path=self.log)
        try:
            self.assertEqual(conn.hello.model, "fake")
            # A second call finds the running daemon instead of spawning another.
            again = lc.ensure_daemon("/nonexistent/livefill", socket_path=self.path, timeout=5.0, log_path=self.log)
            again.close()
        finally:
            conn.shutdown_daemon()
            self.assertIsInstance(conn.messages.get(timeout=5.0), p.ShuttingDown)
            conn.close()
        with open(self.log) as f:
            self.assertIn("fake daemon listening", f.read())

    def test_reports_early_exit_with_log_tail(self):
        with self.assertRaises(lc.DaemonStartError) as cm:
            lc.ensure_daemon(self.exe, extra_args=["--fail"], socket_path=self.path, timeout=20.0, log_path=self.log)
        self.assertIn("model folder not found", str(cm.exception))
        self.assertIn("status 3", str(cm.exception))

    def test_missing_executable(self):
        with self.assertRaises(lc.DaemonStartError):
            lc.ensure_daemon(os.path.join(self.dir, "nope"), socket_path=self.path, timeout=2.0, log_path=self.log)


if __name__ == "__main__":
    unittest.main()


class BrokenPipeTests(unittest.TestCase):
    """Krita's embedded Python keeps SIGPIPE at its default action (terminate): a send to a daemon
    that went away must raise, never kill the host process."""

    @unittest.skipUnless(hasattr(socket, "MSG_NOSIGNAL"), "Linux-only flag")
    def test_send_after_the_daemon_closed_raises_instead_of_sigpipe(self) -> None:
        import subprocess

        here = os.path.dirname(os.path.abspath(__file__))
        child = r'''
import signal, socket, sys, threading, time, os
signal.signal(signal.SIGPIPE, signal.SIG_DFL)   # as in an embedding host
sys.path.insert(0, sys.argv[1])
import livefill_client as lc, livefill_protocol as p
a, b = socket.socketpair()
conn = lc.DaemonConnection(a, p.DaemonHello())
b.shutdown(socket.SHUT_RD)   # the peer stops reading but keeps its end open: no EOF for us
time.sleep(0.1)
try:
    for _ in range(50):
        conn.send(p.Status())
except lc.ConnectionClosed:
    print("raised")
'''
        out = subprocess.run([sys.executable, "-c", child, here], capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("raised", out.stdout)
