"""livefill client transport for Python (stdlib only, Python 3.8+).

Why this module exists: the Krita and GIMP plugins need the same things from the daemon (find its
socket, start it if needed, shake hands, send requests from the UI thread and receive replies on a
background thread); this is the one implementation both plugins share. The installers copy it
next to ``livefill_protocol.py`` (the codec), which it imports as a sibling module.

Typical use::

    conn = ensure_daemon("livefill", client_name="krita-livefill")
    rid = conn.generate(proto.GenerateRequest(mode=proto.Mode.TXT2IMG, prompt="a fox"))
    result = conn.wait_for(rid, on_progress=lambda p: print(p.step, p.total_steps),
                           on_model_loading=lambda m: print("loading", m.model, m.component))
    conn.close()

Socket address precedence (same as the Rust ``default_socket_path``): an explicit path (the
daemon's ``--socket`` flag) > ``$LIVEFILL_SOCKET`` > ``$XDG_RUNTIME_DIR/livefill.sock`` >
``<$TMPDIR or /tmp>/livefill-<uid>/livefill.sock``; empty variables count as unset. Windows
(named pipe ``\\\\.\\pipe\\livefill-<username>``) only has the path computation here: connecting
over a named pipe is a documented follow-up.
"""

import itertools
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

try:
    from . import livefill_protocol as proto
except ImportError:
    import livefill_protocol as proto  # type: ignore[no-redef]

SOCKET_ENV = "LIVEFILL_SOCKET"
SOCKET_FILE_NAME = "livefill.sock"


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class LivefillError(Exception):
    """Base class of every error raised by this module (besides ``proto.ProtocolError``)."""


class DaemonError(LivefillError):
    """The daemon answered with an ``ErrorReply``."""

    def __init__(self, code: "proto.ErrorCode", message: str, request_id: Optional[int] = None) -> None:
        self.code = code
        self.message = message
        self.request_id = request_id
        try:
            name = proto.ErrorCode(code).name.lower()
        except ValueError:
            name = str(code)
        super().__init__("%s: %s" % (name, message))


class SupersededError(LivefillError):
    """A live-preview request was replaced by a newer one before it finished."""

    def __init__(self, request_id: int, by_request_id: int) -> None:
        self.request_id = request_id
        self.by_request_id = by_request_id
        super().__init__("request %d superseded by request %d" % (request_id, by_request_id))


class ConnectionClosed(LivefillError):
    """The connection ended (daemon exited, socket closed, or an unreadable frame arrived).

    ``__cause__`` (also ``DaemonConnection.closed_reason``) holds the reason when one is known:
    the daemon's connection-level ``DaemonError``, ``DaemonShutDown`` (it said it was shutting
    down), or the ``OSError`` / ``ProtocolError``; none for a plain end of stream (a daemon that
    crashed or was killed).
    """


class ClosedBeforeHello(ConnectionClosed):
    """Something accepted the connection at ``socket_path`` but closed (or reset) it before the
    daemon's hello: what an ssh-forwarded socket does when the daemon at the other end is not
    running (ssh accepts, then finds nothing to forward to), or a daemon refusing this user.
    ``__cause__`` holds the ``OSError`` (a reset or a broken pipe) when there was one."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        super().__init__("%s accepted the connection but closed it before the daemon's hello" % socket_path)


class DaemonShutDown(LivefillError):
    """The daemon said ``ShuttingDown`` before its connection ended: it was stopped on purpose
    (``DaemonConnection.closed_reason`` then)."""


class WaitTimeout(LivefillError, TimeoutError):
    """``wait_for`` (or the handshake) ran out of time."""


class DaemonStartError(LivefillError):
    """``ensure_daemon`` could not start the daemon or reach it in time."""


# --------------------------------------------------------------------------------------------
# Socket path
# --------------------------------------------------------------------------------------------


def _env(name: str) -> Optional[str]:
    value = os.environ.get(name)
    return value if value else None


def default_socket_path() -> str:
    """The daemon's default socket path (Unix) or pipe name (Windows); see the module docs."""
    explicit = _env(SOCKET_ENV)
    if explicit:
        return explicit
    if sys.platform == "win32":
        import getpass

        return "\\\\.\\pipe\\livefill-" + getpass.getuser()
    runtime = _env("XDG_RUNTIME_DIR")
    if runtime:
        return os.path.join(runtime, SOCKET_FILE_NAME)
    tmp = _env("TMPDIR") or "/tmp"
    return os.path.join(tmp, "livefill-%d" % os.getuid(), SOCKET_FILE_NAME)


# Editors that embed Python (Krita) may leave SIGPIPE at its default action, which would kill the
# whole editor when the daemon goes away mid-send: ask the kernel for an EPIPE error instead.
# Linux (and the BSDs) take a per-send flag; macOS has no MSG_NOSIGNAL but a per-socket option,
# SO_NOSIGPIPE (0x1022 in <sys/socket.h>; Python does not name it).
_SEND_FLAGS = getattr(socket, "MSG_NOSIGNAL", 0)
_SO_NOSIGPIPE = getattr(socket, "SO_NOSIGPIPE", 0x1022)


def _no_sigpipe(sock: socket.socket) -> None:
    if _SEND_FLAGS == 0 and sys.platform == "darwin":
        sock.setsockopt(socket.SOL_SOCKET, _SO_NOSIGPIPE, 1)


def _connect_socket(path: str, timeout: Optional[float]) -> socket.socket:
    if sys.platform == "win32" or not hasattr(socket, "AF_UNIX"):
        raise NotImplementedError("livefill: named-pipe transport on Windows is not implemented yet")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        _no_sigpipe(sock)
        sock.settimeout(timeout)
        sock.connect(path)
    except BaseException:
        sock.close()
        raise
    return sock


# --------------------------------------------------------------------------------------------
# Connection
# --------------------------------------------------------------------------------------------

_CLOSED = object()  # sentinel pushed to waiters when the reader thread stops


class DaemonConnection:
    """One handshaken connection to the daemon.

    A background thread reads every ``DaemonMessage``. Messages about a request started with
    :meth:`generate` (``Accepted``, ``ModelLoading``, ``Progress``, then its outcome) go to that
    request's waiter (:meth:`wait_for`); replies to :meth:`status` and
    :meth:`list_models` go to their callers; everything else (and, with ``route_all``, everything)
    goes to :attr:`messages`, a ``queue.Queue``. The optional ``on_message`` callback sees every
    message first, on the reader thread (keep it short; GUI code should hop to its own thread).
    After the connection ends, ``None`` is put on :attr:`messages`. ``on_queued``, when set, is
    called on the reader thread right after anything was put on :attr:`messages`, so an event
    loop can be woken instead of polling the queue.
    """

    def __init__(
        self,
        sock: socket.socket,
        hello: "proto.DaemonHello",
        on_message: Optional[Callable[[Any], None]] = None,
        max_payload: int = proto.DEFAULT_MAX_PAYLOAD,
    ) -> None:
        self.hello = hello
        self.messages: "queue.Queue[Any]" = queue.Queue()
        self.on_message = on_message
        self.on_queued: Optional[Callable[[], None]] = None
        self.closed_reason: Optional[BaseException] = None
        self._sock = sock
        self._max_payload = max_payload
        self._send_lock = threading.Lock()
        self._lock = threading.Lock()
        self._waiters: Dict[int, "queue.Queue[Any]"] = {}
        self._status_waiters: List["queue.Queue[Any]"] = []
        self._models_waiters: List["queue.Queue[Any]"] = []
        self._ids = itertools.count(1)
        self._closed = False
        self._connection_error: Optional[proto.ErrorReply] = None
        self._shutting_down = False
        self._reader = threading.Thread(target=self._read_loop, name="livefill-reader", daemon=True)
        self._reader.start()

    # ---- setup -------------------------------------------------------------------------------

    @classmethod
    def connect(
        cls,
        path: Optional[str] = None,
        client_name: str = "livefill-python",
        timeout: Optional[float] = 10.0,
        on_message: Optional[Callable[[Any], None]] = None,
    ) -> "DaemonConnection":
        """Connects and performs the Hello handshake; ``conn.hello`` holds the ``DaemonHello``.

        Raises ``OSError`` if nothing listens at ``path``, ``ClosedBeforeHello`` if something
        accepts the connection but closes or resets it before answering, ``DaemonError`` if the
        daemon refuses the handshake (e.g. ``UNSUPPORTED_VERSION``), ``WaitTimeout`` if it does not
        answer within ``timeout`` seconds, ``proto.ProtocolError`` for a malformed answer.
        """
        path = path or default_socket_path()
        sock = _connect_socket(path, timeout)
        try:
            try:
                sock.sendall(proto.encode_client_message(proto.ClientHello(client_name, proto.PROTOCOL_VERSION)),
                             _SEND_FLAGS)
                reply = proto.read_daemon_message(sock)
            except socket.timeout:
                raise WaitTimeout("daemon at %s did not answer the hello within %ss" % (path, timeout)) from None
            except (ConnectionResetError, BrokenPipeError) as e:
                raise ClosedBeforeHello(path) from e
            if reply is None:
                raise ClosedBeforeHello(path)
            if isinstance(reply, proto.ErrorReply):
                raise DaemonError(reply.code, reply.message, reply.request_id)
            if not isinstance(reply, proto.DaemonHello):
                raise ConnectionClosed("expected the daemon's Hello, got %s" % type(reply).__name__)
            if reply.protocol_version != proto.PROTOCOL_VERSION:
                raise proto.UnsupportedVersion(reply.protocol_version, proto.PROTOCOL_VERSION)
            sock.settimeout(None)
        except BaseException:
            sock.close()
            raise
        return cls(sock, reply, on_message=on_message)

    # ---- sending -----------------------------------------------------------------------------

    def send(self, msg: Any) -> None:
        """Sends one client message (thread-safe)."""
        frame = proto.encode_client_message(msg)
        with self._send_lock:
            if self._closed:
                raise ConnectionClosed("connection is closed") from self.closed_reason
            try:
                self._sock.sendall(frame, _SEND_FLAGS)
            except OSError as e:
                raise ConnectionClosed("sending to the daemon failed: %s" % e) from e

    def new_request_id(self) -> int:
        """A fresh request id, unique on this connection."""
        return next(self._ids)

    def generate(self, request: "proto.GenerateRequest") -> int:
        """Sends a generate request and returns its id (a fresh one is assigned when it is 0).

        Replies about it are collected for :meth:`wait_for` from this moment on.
        """
        if request.request_id == 0:
            request.request_id = self.new_request_id()
        rid = request.request_id
        with self._lock:
            self._waiters[rid] = queue.Queue()
        try:
            self.send(request)
        except BaseException:
            with self._lock:
                self._waiters.pop(rid, None)
            raise
        return rid

    def cancel(self, request_id: int) -> None:
        """Asks the daemon to cancel a request (its waiter then gets an Error(CANCELLED))."""
        self.send(proto.Cancel(request_id))

    def shutdown_daemon(self) -> None:
        """Asks the daemon to exit."""
        self.send(proto.Shutdown())

    # ---- waiting -----------------------------------------------------------------------------

    def wait_for(
        self,
        request_id: int,
        on_progress: Optional[Callable[["proto.Progress"], None]] = None,
        timeout: Optional[float] = None,
        on_accepted: Optional[Callable[["proto.Accepted"], None]] = None,
        on_model_loading: Optional[Callable[["proto.ModelLoading"], None]] = None,
    ) -> "proto.GenerateResult":
        """Blocks until the request finishes and returns its ``GenerateResult``.

        Calls ``on_progress`` (on the calling thread) for each ``Progress``, and
        ``on_model_loading`` for each ``ModelLoading`` (the request's model is being loaded,
        before its first ``Progress``). Raises
        ``DaemonError`` for an ``ErrorReply`` about the request, ``SupersededError`` when a newer
        live request replaced it, ``ConnectionClosed`` if the connection ends, ``WaitTimeout``
        when ``timeout`` seconds pass in total (the request is not cancelled then).
        """
        with self._lock:
            q = self._waiters.get(request_id)
            if q is None:
                q = self._waiters[request_id] = queue.Queue()
        deadline = None if timeout is None else time.monotonic() + timeout
        finished = False
        try:
            while True:
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    msg = q.get(timeout=remaining)
                except queue.Empty:
                    raise WaitTimeout("request %d did not finish within %ss" % (request_id, timeout)) from None
                if msg is _CLOSED:
                    finished = True
                    raise ConnectionClosed("connection closed while waiting for request %d" % request_id) from (
                        self.closed_reason
                    )
                if isinstance(msg, proto.Progress):
                    if on_progress is not None:
                        on_progress(msg)
                elif isinstance(msg, proto.ModelLoading):
                    if on_model_loading is not None:
                        on_model_loading(msg)
                elif isinstance(msg, proto.Accepted):
                    if on_accepted is not None:
                        on_accepted(msg)
                elif isinstance(msg, proto.GenerateResult):
                    finished = True
                    return msg
                elif isinstance(msg, proto.ErrorReply):
                    finished = True
                    raise DaemonError(msg.code, msg.message, msg.request_id)
                elif isinstance(msg, proto.Superseded):
                    finished = True
                    raise SupersededError(msg.request_id, msg.by_request_id)
        finally:
            if finished:
                with self._lock:
                    self._waiters.pop(request_id, None)

    def forget(self, request_id: int) -> None:
        """Stops collecting replies for a request nobody will wait for (they go to ``messages``)."""
        with self._lock:
            self._waiters.pop(request_id, None)

    def _request_reply(self, msg: Any, waiters: List["queue.Queue[Any]"], what: str, timeout: Optional[float]) -> Any:
        q: "queue.Queue[Any]" = queue.Queue()
        with self._lock:
            waiters.append(q)
        try:
            self.send(msg)
        except BaseException:
            with self._lock:
                if q in waiters:
                    waiters.remove(q)
            raise
        try:
            reply = q.get(timeout=timeout)
        except queue.Empty:
            with self._lock:
                if q in waiters:
                    waiters.remove(q)
            raise WaitTimeout("no %s reply within %ss" % (what, timeout)) from None
        if reply is _CLOSED:
            raise ConnectionClosed("connection closed while waiting for %s" % what) from self.closed_reason
        if isinstance(reply, proto.ErrorReply):
            raise DaemonError(reply.code, reply.message, reply.request_id)
        return reply

    def status(self, timeout: Optional[float] = 10.0) -> "proto.DaemonStatus":
        """Asks for and returns the daemon's ``DaemonStatus``."""
        return self._request_reply(proto.Status(), self._status_waiters, "status", timeout)

    def list_models(self, timeout: Optional[float] = 10.0) -> List["proto.ModelInfo"]:
        """Asks for and returns the models the daemon can find."""
        return self._request_reply(proto.ListModels(), self._models_waiters, "models", timeout).models

    # ---- reader thread -----------------------------------------------------------------------

    def _route(self, msg: Any) -> None:
        if self.on_message is not None:
            try:
                self.on_message(msg)
            except Exception:  # a faulty callback must not kill the reader
                import traceback

                traceback.print_exc()
        if isinstance(msg, proto.ErrorReply) and msg.request_id is None:
            self._connection_error = msg
        elif isinstance(msg, proto.ShuttingDown):
            self._shutting_down = True
        target: "Optional[queue.Queue[Any]]" = None
        with self._lock:
            if isinstance(msg, proto.DaemonStatus) and self._status_waiters:
                target = self._status_waiters.pop(0)
            elif isinstance(msg, proto.Models) and self._models_waiters:
                target = self._models_waiters.pop(0)
            else:
                rid = getattr(msg, "request_id", None)
                if rid is not None:
                    target = self._waiters.get(rid)
        (target or self.messages).put(msg)
        if target is None:
            self._notify_queued()

    def _notify_queued(self) -> None:
        callback = self.on_queued
        if callback is not None:
            try:
                callback()
            except Exception:  # a faulty callback must not kill the reader
                import traceback

                traceback.print_exc()

    def _read_loop(self) -> None:
        reason: Optional[BaseException] = None
        try:
            while True:
                msg = proto.read_daemon_message(self._sock, self._max_payload)
                if msg is None:
                    break
                self._route(msg)
        except (OSError, proto.ProtocolError) as e:
            reason = e
        except Exception as e:  # anything else a hostile reply provokes ends the connection too
            reason = proto.DecodeError("undecodable reply from the daemon: %r" % e)
        finally:
            err = self._connection_error
            with self._send_lock:
                was_closed = self._closed
                # The reason is in place before anyone can see the connection closed.
                if err is not None:
                    # The daemon said why before closing (e.g. BAD_FRAME): that is the real reason.
                    self.closed_reason = DaemonError(err.code, err.message, None)
                elif self._shutting_down and not was_closed:
                    self.closed_reason = DaemonShutDown("the daemon shut down")
                elif reason is not None and not was_closed:
                    self.closed_reason = reason
                self._closed = True
            with self._lock:
                waiters = list(self._waiters.values()) + self._status_waiters + self._models_waiters
                self._status_waiters.clear()
                self._models_waiters.clear()
            for q in waiters:
                q.put(_CLOSED)
            self.messages.put(None)
            self._notify_queued()

    # ---- teardown ----------------------------------------------------------------------------

    @property
    def is_closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Closes the connection and waits for the reader thread to stop. Idempotent."""
        with self._send_lock:
            self._closed = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        if self._reader is not threading.current_thread():
            self._reader.join(timeout=5.0)
        self._sock.close()

    def __enter__(self) -> "DaemonConnection":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# --------------------------------------------------------------------------------------------
# Starting the daemon
# --------------------------------------------------------------------------------------------


#: Daemons started by this process. Kept referenced so they can be reaped when they exit and so
#: Python does not warn about a still-running child when the Popen object is collected.
_SPAWNED: List[subprocess.Popen] = []


def _reap() -> None:
    _SPAWNED[:] = [proc for proc in _SPAWNED if proc.poll() is None]


def daemon_log_path() -> str:
    """Where a daemon started by ``ensure_daemon`` writes its output by default:
    ``<temp dir>/livefill-serve-<uid>.log``."""
    import tempfile

    uid = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    return os.path.join(tempfile.gettempdir(), "livefill-serve-%s.log" % uid)


def _tail(path: str, max_bytes: int = 4000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return "(no log)"


#: How often a socket that closes before the hello is tried before that is believed.
CLOSED_BEFORE_HELLO_TRIES = 3
CLOSED_BEFORE_HELLO_RETRY_S = 0.1


def connect_settled(
    path: Optional[str] = None,
    client_name: str = "livefill-python",
    timeout: Optional[float] = 10.0,
    on_message: Optional[Callable[[Any], None]] = None,
) -> DaemonConnection:
    """``DaemonConnection.connect``, except that ``ClosedBeforeHello`` is raised only when it
    repeats. A daemon killed a moment ago can still accept a connection and then reset it while
    its process is torn down (its connections go before its listener); after that reset its
    socket refuses connections (``ConnectionRefusedError``, raised as ever). Something that
    keeps accepting and closing is really no daemon: a tunnel whose daemon is gone."""
    for attempt in range(CLOSED_BEFORE_HELLO_TRIES):
        try:
            return DaemonConnection.connect(path, client_name, timeout=timeout, on_message=on_message)
        except ClosedBeforeHello:
            if attempt + 1 == CLOSED_BEFORE_HELLO_TRIES:
                raise
            time.sleep(CLOSED_BEFORE_HELLO_RETRY_S)
    raise AssertionError("unreachable")


def ensure_daemon(
    livefill_exe: str = "livefill",
    extra_args: Sequence[str] = (),
    socket_path: Optional[str] = None,
    timeout: float = 120.0,
    client_name: str = "livefill-python",
    on_message: Optional[Callable[[Any], None]] = None,
    log_path: Optional[str] = None,
) -> DaemonConnection:
    """Returns a connection to the daemon, starting it first if nothing answers.

    Spawns ``livefill_exe serve [--socket socket_path] [extra_args...]`` detached (new session,
    output appended to ``log_path``, by default ``<temp dir>/livefill-serve-<uid>.log``) and
    polls until it accepts a connection, the process exits (``DaemonStartError`` with the log
    tail) or ``timeout`` seconds pass (``DaemonStartError``; the process is left running, e.g.
    still loading a model).
    A daemon that answers but refuses the handshake raises ``DaemonError`` immediately; a socket
    that accepts but closes before the hello (``ClosedBeforeHello``: an ssh-forwarded socket whose
    remote daemon is gone) raises that, and nothing is started, unless it stops doing so at once
    (``connect_settled``).
    """
    path = socket_path or default_socket_path()
    try:
        return connect_settled(path, client_name, timeout=10.0, on_message=on_message)
    except (FileNotFoundError, ConnectionRefusedError):
        pass

    args = [livefill_exe, "serve"]
    if socket_path:
        args += ["--socket", socket_path]
    args += list(extra_args)
    log_path = log_path or daemon_log_path()
    log = open(log_path, "ab")
    try:
        log.write(("\n--- %s: %s\n" % (time.strftime("%Y-%m-%d %H:%M:%S"), " ".join(args))).encode())
        log.flush()
        try:
            proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                close_fds=True,
                start_new_session=True,
            )
        except OSError as e:
            raise DaemonStartError("cannot start %r: %s" % (livefill_exe, e)) from e
    finally:
        log.close()
    _reap()
    _SPAWNED.append(proc)

    deadline = time.monotonic() + timeout
    while True:
        code = proc.poll()
        if code is not None:
            raise DaemonStartError(
                "livefill daemon exited with status %s before accepting connections; log %s:\n%s"
                % (code, log_path, _tail(log_path))
            )
        try:
            return DaemonConnection.connect(path, client_name, timeout=10.0, on_message=on_message)
        except (FileNotFoundError, ConnectionRefusedError):
            pass
        if time.monotonic() >= deadline:
            raise DaemonStartError(
                "livefill daemon (pid %d) did not accept connections at %s within %ss; log %s:\n%s"
                % (proc.pid, path, timeout, log_path, _tail(log_path))
            )
        time.sleep(0.1)


__all__ = [
    "SOCKET_ENV",
    "LivefillError",
    "DaemonError",
    "SupersededError",
    "ConnectionClosed",
    "ClosedBeforeHello",
    "DaemonShutDown",
    "WaitTimeout",
    "DaemonStartError",
    "default_socket_path",
    "daemon_log_path",
    "DaemonConnection",
    "connect_settled",
    "ensure_daemon",
]
