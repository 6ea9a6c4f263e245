"""The daemon connection as Krita's UI thread sees it: signals, never blocking calls.

Why this module exists: socket work (starting the daemon, connecting, sending megabytes of
pixels, reading replies) must never freeze Krita. ``livefill_client`` (shared with the GIMP
plugin) does the protocol on a reader thread; this module adds a connect thread, a send thread,
and a QTimer on the UI thread that drains their queues and turns everything into Qt signals. It
also reconnects after the daemon restarts. The reader and worker threads wake the UI thread with a
queued Qt signal the moment something arrives (a live frame must not wait for the next timer
tick); the timer is only the fallback. Which executable, socket and model to use, and what a
failure means to the artist, are the shared ``livefill_plugin_core``'s rules.
"""

import queue
import threading
from typing import Any, Callable, List, Optional

from PyQt5.QtCore import QObject, QTimer, pyqtSignal

from . import logic

try:
    from . import livefill_client as client
    from . import livefill_plugin_core as core
    from . import livefill_protocol as proto
except ImportError:  # development checkout: protocol/python on sys.path
    import livefill_client as client  # type: ignore[no-redef]
    import livefill_plugin_core as core  # type: ignore[no-redef]
    import livefill_protocol as proto  # type: ignore[no-redef]

#: How often the UI thread looks at the queues without being woken (ms): a fallback only, since
#: every message and thread event wakes it at once.
DRAIN_INTERVAL_MS = 100
#: Reconnect back-off after the connection drops (ms): first try, then growing to the maximum.
RECONNECT_FIRST_MS = 500
RECONNECT_MAX_MS = 5000

#: Connection failures that a retry may fix (a daemon restarting), and how many in a row are
#: tolerated before an attempt that should have started the daemon gives up.
TRANSIENT_ERRORS = (ConnectionResetError, BrokenPipeError, ConnectionRefusedError, FileNotFoundError,
                    client.ConnectionClosed, client.WaitTimeout)
MAX_TRANSIENT_FAILURES = 4

DISCONNECTED = "disconnected"
CONNECTING = "connecting"
CONNECTED = "connected"


class DaemonLink(QObject):
    """One (re)connecting link to the daemon.

    Signals (all emitted on the UI thread):
      ``state_changed(state, text)``: DISCONNECTED / CONNECTING / CONNECTED and a status line.
      ``connected(hello)``: a ``proto.DaemonHello`` after each successful handshake.
      ``message(msg)``: every ``proto`` daemon message.
      ``send_failed(msg, text)``: a client message could not be sent.
      ``connection_lost(text, reason)``: an established connection ended; ``text`` says why
      (the shared ``core.connection_end_text``), ``reason`` is its ``closed_reason``.
      ``connect_failed(text, final)``: a connection attempt failed; ``final``: it was meant to
      start the daemon and will not be retried (waiting work should be given up).

    ``keep_alive`` (a callable set by the owner) says whether work is waiting for the daemon;
    while it returns true, reconnect attempts also start the daemon.
    """

    state_changed = pyqtSignal(str, str)
    connected = pyqtSignal(object)
    message = pyqtSignal(object)
    send_failed = pyqtSignal(object, str)
    connection_lost = pyqtSignal(str, object)
    connect_failed = pyqtSignal(str, bool)
    #: Emitted from other threads when a queue got something; queued onto the UI thread.
    _wake = pyqtSignal()

    def __init__(self, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.socket_path = ""
        self.livefill_exe = ""
        self.model_dir = ""
        self.auto_reconnect = True
        self.keep_alive: Callable[[], bool] = lambda: False
        #: Called on the send thread once a message is written to the socket (live timelines).
        self.on_sent: Optional[Callable[[Any], None]] = None
        self.conn: Optional["client.DaemonConnection"] = None
        self.hello: Optional["proto.DaemonHello"] = None
        self.state = DISCONNECTED
        self.last_error = ""
        self._events: "queue.Queue[Any]" = queue.Queue()
        self._outbox: "queue.Queue[Any]" = queue.Queue()
        self._connecting = False
        #: An attempt that may start the daemon was asked for while one that may not was running.
        self._start_wanted = False
        self._ever_connected = False
        self._backoff_ms = RECONNECT_FIRST_MS
        self._failures = 0
        self._next_id = 1
        self._drain = QTimer(self)
        self._drain.setInterval(DRAIN_INTERVAL_MS)
        self._drain.timeout.connect(self._pump)
        self._drain.start()
        self._wake.connect(self._pump)
        self._reconnect = QTimer(self)
        self._reconnect.setSingleShot(True)
        self._reconnect.timeout.connect(lambda: self.connect_daemon(start=self.keep_alive()))
        self._sender = threading.Thread(target=self._send_loop, name="livefill-send", daemon=True)
        self._sender.start()

    # ---- public API (UI thread) --------------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        return self.state == CONNECTED and self.conn is not None and not self.conn.is_closed

    def new_request_id(self) -> int:
        """Request ids stay unique across reconnects (the daemon scopes them per connection)."""
        rid = self._next_id
        self._next_id += 1
        return rid

    def connect_daemon(self, start: bool = True) -> None:
        """Connects in the background (starting ``livefill serve`` first when ``start`` is true and
        nothing answers). No-op while connected or already connecting."""
        if self.is_connected:
            return
        if self._connecting:
            self._start_wanted = self._start_wanted or start
            return
        self._reconnect.stop()
        self._connecting = True
        self._set_state(CONNECTING, "Starting the livefill daemon\u2026" if start else "Connecting\u2026")
        exe = core.find_livefill(self.livefill_exe)
        args = core.daemon_args(self.model_dir)
        path = core.resolve_socket(self.socket_path)
        thread = threading.Thread(
            target=self._connect_worker, args=(start, exe, args, path), name="livefill-connect", daemon=True
        )
        thread.start()

    def send(self, msg: Any) -> None:
        """Queues a client message for the send thread (never blocks)."""
        self._outbox.put((self.conn, msg))

    def cancel(self, request_id: int) -> None:
        if self.conn is not None:
            self.send(proto.Cancel(request_id))

    def close(self) -> None:
        """Drops the connection (no reconnect) and stops the threads."""
        self.auto_reconnect = False
        self._reconnect.stop()
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.close()
        self._outbox.put(None)
        self._drain.stop()
        self._set_state(DISCONNECTED, "Disconnected.")

    # ---- threads -----------------------------------------------------------------------------

    def _connect_worker(self, start: bool, exe: Optional[str], args: List[str], path: str) -> None:
        try:
            conn = core.open_connection(path, exe, args, logic.KRITA, start=start)
            conn.on_queued = self._wake.emit
            self._events.put(("connected", conn))
        except BaseException as e:  # reported on the UI thread
            self._events.put(("failed", (e, start, path)))
        self._wake.emit()

    def _send_loop(self) -> None:
        while True:
            item = self._outbox.get()
            if item is None:
                return
            conn, msg = item
            if conn is None or conn.is_closed:
                self._events.put(("send_failed", (msg, "not connected to the livefill daemon")))
                self._wake.emit()
                continue
            try:
                conn.send(msg)
            except Exception as e:
                self._events.put(("send_failed", (msg, str(e))))
                self._wake.emit()
                continue
            if self.on_sent is not None:
                self.on_sent(msg)

    # ---- UI thread ---------------------------------------------------------------------------

    def _pump(self) -> None:
        while True:
            try:
                kind, payload = self._events.get_nowait()
            except queue.Empty:
                break
            if kind == "connected":
                self._on_connected(payload)
            elif kind == "failed":
                self._on_connect_failed(*payload)
            elif kind == "send_failed":
                self.send_failed.emit(payload[0], payload[1])
        conn = self.conn
        if conn is None:
            return
        for _ in range(64):  # bounded, so a flood of messages cannot starve the UI
            try:
                msg = conn.messages.get_nowait()
            except queue.Empty:
                return
            if msg is None:
                self._on_lost(conn)
                return
            self.message.emit(msg)

    def _on_connected(self, conn: "client.DaemonConnection") -> None:
        self._connecting = False
        self._start_wanted = False
        if self.conn is not None and self.conn is not conn:
            self.conn.close()
        self.conn = conn
        self.hello = conn.hello
        self._ever_connected = True
        self._backoff_ms = RECONNECT_FIRST_MS
        self._failures = 0
        self.last_error = ""
        self._set_state(CONNECTED, logic.status_text(conn.hello.device, conn.hello.model,
                                                     conn.hello.execution_provider))
        self.connected.emit(conn.hello)

    def _on_connect_failed(self, exc: BaseException, started: bool, path: str) -> None:
        self._connecting = False
        self.last_error = core.describe_connect_error(exc, logic.KRITA, started, path)
        self._set_state(DISCONNECTED, self.last_error)
        # A daemon caught shutting down or restarting resets the handshake: worth retrying, a few
        # times, even when this attempt was meant to start it. Only such attempts count: the
        # background ones after a lost connection (which never start it) fail until it is back.
        if started:
            transient = isinstance(exc, TRANSIENT_ERRORS)
            self._failures = self._failures + 1 if transient else MAX_TRANSIENT_FAILURES
        final = started and self._failures >= MAX_TRANSIENT_FAILURES
        self.connect_failed.emit(self.last_error, final)
        start_wanted, self._start_wanted = self._start_wanted, False
        if final:
            self._failures = 0
            return
        if not started and (start_wanted or self.keep_alive()):
            self._reconnect.start(0)  # work is waiting (the next action): start the daemon now
        elif (self._ever_connected and self.auto_reconnect) or self.keep_alive():
            self._schedule_reconnect()

    def _on_lost(self, conn: "client.DaemonConnection") -> None:
        reason = conn.closed_reason
        conn.close()
        if self.conn is conn:
            self.conn = None
        text = core.connection_end_text(reason, logic.KRITA)
        self._set_state(DISCONNECTED, text)
        self.connection_lost.emit(text, reason)
        if self.auto_reconnect:
            self._backoff_ms = RECONNECT_FIRST_MS
            self._schedule_reconnect()

    def _schedule_reconnect(self) -> None:
        self._reconnect.start(self._backoff_ms)
        self._backoff_ms = min(RECONNECT_MAX_MS, self._backoff_ms * 2)

    def _set_state(self, state: str, text: str) -> None:
        self.state = state
        self.state_changed.emit(state, text)
