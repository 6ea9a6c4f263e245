"""Tests of the client transport against the stand-in daemon on an AF_UNIX socket.

Why this exists: ``DaemonConnection`` and ``ensure_daemon`` are what both plugins rely on; these
tests check the handshake, request routing, progress callbacks, errors, supersession, status and
model queries, connection loss, and spawning a daemon executable. The stand-in daemon
(``tests/standin_daemon.py``, shared by every Python test) speaks the real protocol through
``livefill_protocol``. Run with ``protocol/python/run_tests.sh``.
"""

import os
import shutil
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
import unittest

import livefill_client as lc
import livefill_protocol as p

HERE = os.path.dirname(os.path.abspath(__file__))
STANDIN_DIR = os.path.join(HERE, "..", "..", "tests")
sys.path.insert(0, STANDIN_DIR)

import standin_daemon as standin  # noqa: E402


class ConnectionTests(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="lvfl-")
        self.path = os.path.join(self.dir, "d.sock")

    def tearDown(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def connect(self, **kw) -> lc.DaemonConnection:
        self.daemon = standin.StandinDaemon(self.path).start()
        self.addCleanup(self.daemon.stop)
        conn = lc.DaemonConnection.connect(self.path, "unit-test ✓", timeout=5.0, **kw)
        self.addCleanup(conn.close)
        return conn

    def test_handshake(self):
        conn = self.connect()
        self.assertEqual(conn.hello, standin.hello())
        self.assertEqual(self.daemon.received[0], p.ClientHello("unit-test ✓", p.PROTOCOL_VERSION))

    def test_generate_with_progress(self):
        seen = []
        conn = self.connect(on_message=seen.append)
        image = p.RgbaImage(2, 2, bytes(range(16)))
        request = p.GenerateRequest(mode=p.Mode.IMG2IMG, prompt="ok", image=image, steps=2, stream_previews=True)
        rid = conn.generate(request)
        self.assertNotEqual(rid, 0)
        progress = []
        result = conn.wait_for(rid, on_progress=progress.append, timeout=5.0)
        self.assertEqual(result.request_id, rid)
        self.assertEqual(result.image, standin.result_image(request))
        self.assertNotEqual(result.image, image)
        self.assertEqual([(m.step, m.total_steps) for m in progress], [(1, 2), (2, 2)])
        self.assertEqual(progress[0].preview.pixels, standin.FILL)
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
        rid = conn.generate(p.GenerateRequest(prompt="__error__"))
        with self.assertRaises(lc.DaemonError) as cm:
            conn.wait_for(rid, timeout=5.0)
        self.assertEqual(cm.exception.code, p.ErrorCode.INVALID_REQUEST)
        self.assertEqual(cm.exception.request_id, rid)
        self.assertIn(standin.REFUSAL, str(cm.exception))

    def test_superseded(self):
        conn = self.connect()
        rid = conn.generate(p.GenerateRequest(prompt="__supersede__", priority=p.Priority.LIVE_PREVIEW))
        with self.assertRaises(lc.SupersededError) as cm:
            conn.wait_for(rid, timeout=5.0)
        self.assertEqual(cm.exception.by_request_id, rid + 1)
        self.assertNotIsInstance(cm.exception, lc.DaemonError)

    def test_cancel_and_timeout(self):
        conn = self.connect()
        rid = conn.generate(p.GenerateRequest(prompt="__none__"))
        with self.assertRaises(lc.WaitTimeout):
            conn.wait_for(rid, timeout=0.2)
        conn.cancel(rid)
        with self.assertRaises(lc.DaemonError) as cm:
            conn.wait_for(rid, timeout=5.0)
        self.assertEqual(cm.exception.code, p.ErrorCode.CANCELLED)

    def test_status_and_models(self):
        conn = self.connect()
        self.assertEqual(conn.status(timeout=5.0).jobs_completed, 0)
        conn.wait_for(conn.generate(p.GenerateRequest(prompt="ok")), timeout=5.0)
        status = conn.status(timeout=5.0)
        self.assertEqual(status.jobs_completed, 1)
        self.assertIsNone(status.running_request)
        models = conn.list_models(timeout=5.0)
        self.assertEqual(models, [standin.MODEL])

    def test_model_loading_comes_before_progress_and_only_once(self):
        seen = []
        self.daemon = standin.StandinDaemon(self.path, models=standin.SEVERAL, broken=standin.SEVERAL_BROKEN).start()
        self.addCleanup(self.daemon.stop)
        conn = lc.DaemonConnection.connect(self.path, "unit-test", timeout=5.0, on_message=seen.append)
        self.addCleanup(conn.close)
        loading, progress = [], []
        rid = conn.generate(p.GenerateRequest(prompt="ok", steps=2, model="sd-inpaint"))
        result = conn.wait_for(rid, on_progress=progress.append, on_model_loading=loading.append, timeout=5.0)
        self.assertEqual(result.model, "sd-inpaint")
        self.assertEqual([(m.request_id, m.model, m.component, m.step, m.total_steps) for m in loading],
                         [(rid, "sd-inpaint", c, i, len(standin.LOAD_COMPONENTS))
                          for i, c in enumerate(standin.LOAD_COMPONENTS, 1)])
        kinds = [type(m) for m in seen]
        self.assertEqual(kinds, [p.Accepted] + [p.ModelLoading] * len(loading) + [p.Progress] * 2 + [p.GenerateResult])
        self.assertEqual(len(progress), 2)
        # Resident now: the next job on it loads nothing; nothing went to the unsolicited queue.
        loading.clear()
        conn.wait_for(conn.generate(p.GenerateRequest(prompt="ok", model="sd-inpaint")),
                      on_model_loading=loading.append, timeout=5.0)
        self.assertEqual(loading, [])
        self.assertTrue(conn.messages.empty())

    def test_model_loading_without_a_callback_is_not_unexpected(self):
        self.daemon = standin.StandinDaemon(self.path, models=standin.SEVERAL).start()
        self.addCleanup(self.daemon.stop)
        conn = lc.DaemonConnection.connect(self.path, "unit-test", timeout=5.0)
        self.addCleanup(conn.close)
        result = conn.wait_for(conn.generate(p.GenerateRequest(prompt="ok", model="lcm-dreamshaper")), timeout=5.0)
        self.assertEqual(result.model, "lcm-dreamshaper")
        self.assertTrue(conn.messages.empty())

    def test_broken_and_unknown_models(self):
        self.daemon = standin.StandinDaemon(self.path, models=standin.SEVERAL, broken=standin.SEVERAL_BROKEN).start()
        self.addCleanup(self.daemon.stop)
        conn = lc.DaemonConnection.connect(self.path, "unit-test", timeout=5.0)
        self.addCleanup(conn.close)
        loading = []
        with self.assertRaises(lc.DaemonError) as cm:
            conn.wait_for(conn.generate(p.GenerateRequest(prompt="ok", model="broken-model")),
                          on_model_loading=loading.append, timeout=5.0)
        self.assertEqual(cm.exception.code, p.ErrorCode.MODEL_LOAD_FAILED)
        self.assertIn("unet/model.onnx", cm.exception.message)
        self.assertEqual(loading[-1].component, standin.BROKEN_AT)
        listed = {m.name: m for m in conn.list_models(timeout=5.0)}
        self.assertIn("truncated", listed["broken-model"].load_error)
        self.assertFalse(listed["broken-model"].loaded)
        with self.assertRaises(lc.DaemonError) as cm:
            conn.wait_for(conn.generate(p.GenerateRequest(prompt="ok", model="gone")), timeout=5.0)
        self.assertEqual(cm.exception.code, p.ErrorCode.NO_MODEL)

    def test_connection_loss_wakes_waiters(self):
        conn = self.connect()
        rid = conn.generate(p.GenerateRequest(prompt="__drop__"))
        with self.assertRaises(lc.ConnectionClosed):
            conn.wait_for(rid, timeout=5.0)
        self.assertIsNone(conn.messages.get(timeout=5.0))
        self.assertTrue(conn.is_closed)
        with self.assertRaises(lc.ConnectionClosed):
            conn.send(p.Status())

    def test_connection_level_error_becomes_the_close_reason(self):
        conn = self.connect()
        rid = conn.generate(p.GenerateRequest(prompt="__bad_frame__"))
        with self.assertRaises(lc.ConnectionClosed) as cm:
            conn.wait_for(rid, timeout=5.0)
        self.assertIsInstance(cm.exception.__cause__, lc.DaemonError)
        self.assertEqual(cm.exception.__cause__.code, p.ErrorCode.BAD_FRAME)
        self.assertEqual(conn.messages.get(timeout=5.0).code, p.ErrorCode.BAD_FRAME)

    def test_a_shutdown_said_becomes_the_close_reason(self):
        conn = self.connect()
        rid = conn.generate(p.GenerateRequest(prompt="__none__"))
        conn.shutdown_daemon()
        with self.assertRaises(lc.ConnectionClosed) as cm:
            conn.wait_for(rid, timeout=5.0)
        self.assertIsInstance(cm.exception.__cause__, lc.DaemonShutDown)
        self.assertIsInstance(conn.closed_reason, lc.DaemonShutDown)

    def test_a_plain_end_of_stream_has_no_reason(self):
        conn = self.connect()
        rid = conn.generate(p.GenerateRequest(prompt="__drop__"))
        with self.assertRaises(lc.ConnectionClosed) as cm:
            conn.wait_for(rid, timeout=5.0)
        self.assertIsNone(cm.exception.__cause__)

    def test_closed_before_the_hello(self):
        # What an ssh-forwarded socket whose remote daemon is gone does: accept, then drop.
        for how, cause in (("reset", ConnectionResetError), ("eof", type(None))):
            with self.subTest(how=how):
                path = os.path.join(self.dir, how + ".sock")
                daemon = standin.StandinDaemon(path, close_before_hello=how).start()
                self.addCleanup(daemon.stop)
                with self.assertRaises(lc.ClosedBeforeHello) as cm:
                    lc.DaemonConnection.connect(path, "tunnel-test", timeout=5.0)
                self.assertIsInstance(cm.exception, lc.ConnectionClosed)
                self.assertEqual(cm.exception.socket_path, path)
                self.assertIsInstance(cm.exception.__cause__, cause)
                self.assertIn("closed it before the daemon's hello", str(cm.exception))

    def test_unsolicited_messages_go_to_the_queue(self):
        conn = self.connect()
        conn.send(p.GenerateRequest(request_id=77, prompt="ok"))  # not registered via generate()
        first = conn.messages.get(timeout=5.0)
        self.assertEqual(first, p.Accepted(77, 0))

    def test_close_is_idempotent_and_wakes_waiters(self):
        conn = self.connect()
        rid = conn.generate(p.GenerateRequest(prompt="__none__"))
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
        standin.StandinDaemon(self.path, refuse_version=True).start()
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
                "#!%s\nimport sys\nsys.path.insert(0, %r)\nimport standin_daemon\n"
                "sys.exit(standin_daemon.main(sys.argv + ['--idle-exit', '20']))\n" % (sys.executable, STANDIN_DIR)
            )
        os.chmod(self.exe, 0o755)

    def tearDown(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_spawns_and_connects_then_reuses(self):
        conn = lc.ensure_daemon(self.exe, socket_path=self.path, timeout=20.0, log_path=self.log)
        try:
            self.assertEqual(conn.hello, standin.hello())
            # A second call finds the running daemon instead of spawning another.
            again = lc.ensure_daemon("/nonexistent/livefill", socket_path=self.path, timeout=5.0, log_path=self.log)
            again.close()
        finally:
            conn.shutdown_daemon()
            self.assertIsInstance(conn.messages.get(timeout=5.0), p.ShuttingDown)
            conn.close()
        with open(self.log) as f:
            self.assertIn(standin.LISTENING, f.read())

    def test_reports_early_exit_with_log_tail(self):
        with self.assertRaises(lc.DaemonStartError) as cm:
            lc.ensure_daemon(self.exe, extra_args=["--fail-start"], socket_path=self.path, timeout=20.0, log_path=self.log)
        self.assertIn(standin.START_FAILURE, str(cm.exception))
        self.assertIn("status 3", str(cm.exception))

    def test_missing_executable(self):
        with self.assertRaises(lc.DaemonStartError):
            lc.ensure_daemon(os.path.join(self.dir, "nope"), socket_path=self.path, timeout=2.0, log_path=self.log)

    def test_a_daemon_killed_mid_job_is_started_again(self):
        conn = lc.ensure_daemon(self.exe, socket_path=self.path, timeout=20.0, log_path=self.log)
        self.addCleanup(conn.close)
        rid = conn.generate(p.GenerateRequest(prompt="__slow__"))
        progressed = threading.Event()
        errors = []

        def wait():
            try:
                conn.wait_for(rid, on_progress=lambda _p: progressed.set(), timeout=60.0)
            except lc.LivefillError as e:
                errors.append(e)

        waiter = threading.Thread(target=wait)
        waiter.start()
        self.assertTrue(progressed.wait(20.0), "the slow job reported no step")
        pid = peer_pid(conn)
        self.assertIn(pid, [proc.pid for proc in lc._SPAWNED])
        os.kill(pid, signal.SIGKILL)
        waiter.join(20.0)
        self.assertFalse(waiter.is_alive(), "wait_for hung after the daemon was killed")
        self.assertEqual(len(errors), 1)
        self.assertIsInstance(errors[0], lc.ConnectionClosed)
        self.assertNotIsInstance(errors[0], lc.ClosedBeforeHello)
        self.assertNotIsInstance(errors[0].__cause__, (lc.DaemonShutDown, lc.DaemonError))
        self.assertTrue(os.path.exists(self.path), "the killed daemon's socket file is left behind")
        # The stale socket refuses connections: the next call starts a new daemon.
        again = lc.ensure_daemon(self.exe, socket_path=self.path, timeout=20.0, log_path=self.log)
        try:
            self.assertNotEqual(peer_pid(again), pid)
            result = again.wait_for(again.generate(p.GenerateRequest(prompt="ok", steps=1)), timeout=10.0)
            self.assertEqual(result.image.width, standin.NATIVE)
        finally:
            again.shutdown_daemon()
            again.close()

    def test_a_daemon_still_dying_is_replaced(self):
        # Killed a moment ago: it resets one more connection, then its socket refuses.
        daemon = standin.StandinDaemon(self.path, close_before_hello="dying").start()
        self.addCleanup(daemon.stop)
        conn = lc.ensure_daemon(self.exe, socket_path=self.path, timeout=20.0, log_path=self.log)
        try:
            self.assertIn(peer_pid(conn), [proc.pid for proc in lc._SPAWNED])
        finally:
            conn.shutdown_daemon()
            conn.close()

    def test_a_socket_that_drops_the_hello_starts_no_daemon(self):
        daemon = standin.StandinDaemon(self.path, close_before_hello="reset").start()
        self.addCleanup(daemon.stop)
        with self.assertRaises(lc.ClosedBeforeHello):
            lc.ensure_daemon(self.exe, socket_path=self.path, timeout=5.0, log_path=self.log)
        self.assertFalse(os.path.exists(self.log), "a local daemon was started although the socket answers")


def peer_pid(conn: lc.DaemonConnection) -> int:
    """The pid of the process on the other end of ``conn`` (Linux SO_PEERCRED)."""
    creds = conn._sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[0]


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
