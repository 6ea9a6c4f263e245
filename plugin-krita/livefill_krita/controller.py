"""What the docker's buttons do: Fill, Expand, Generate, Live, Apply, Cancel.

Why this module exists: it sequences each job (plan with ``logic``, read pixels with
``krita_document``, send with ``connection``, place the result as a new layer) and owns live
mode's watcher and preview layer. It has no widgets, so the docker, keyboard actions and the
kritarunner tests all drive the very same code paths. Everything runs on Krita's UI thread and
nothing here blocks: replies arrive as Qt signals from ``DaemonLink``.
"""

import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from PyQt5.QtCore import QObject, QTimer, pyqtSignal

from . import krita_document as kd
from . import logic
from .connection import CONNECTED, DaemonLink

try:
    from . import livefill_plugin_core as core
    from . import livefill_protocol as proto
except ImportError:  # development checkout
    import livefill_plugin_core as core  # type: ignore[no-redef]
    import livefill_protocol as proto  # type: ignore[no-redef]

#: Live mode: how often the watched layer is fingerprinted (ms), and how long it must stay
#: unchanged before a request goes out (ms).
LIVE_POLL_MS = 300
LIVE_POLL_MAX_MS = 2000
LIVE_DEBOUNCE_MS = 150


@dataclass
class Job:
    request_id: int
    plan: logic.Plan
    doc: Any
    source_uid: Any
    request: "proto.GenerateRequest" = field(repr=False)
    started: float = field(default_factory=time.monotonic)
    resent: bool = False

    @property
    def live(self) -> bool:
        return self.plan.kind == logic.KIND_LIVE


class Controller(QObject):
    """Signals (UI thread):
      ``connection_changed(state, text)``: daemon state and status line.
      ``progress(step, total)``: of the most recent job (0, 0 = idle).
      ``message(text)``: what just happened (result placed, errors).
      ``busy_changed(busy)``: whether final (non-live) jobs are in flight.
      ``live_changed(on)`` and ``preview_changed(has_preview)``.
      ``job_done(request_id, kind, node)``: a result became ``node`` (None when it failed).
    """

    connection_changed = pyqtSignal(str, str)
    progress = pyqtSignal(int, int)
    message = pyqtSignal(str)
    busy_changed = pyqtSignal(bool)
    live_changed = pyqtSignal(bool)
    preview_changed = pyqtSignal(bool)
    job_done = pyqtSignal(object, str, object)

    def __init__(self, link: Optional[DaemonLink] = None, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.link = link or DaemonLink(self)
        self.settings = core.Settings()
        self.sides = logic.Sides()
        #: () -> (doc, node): what the buttons act on (the active document and layer by default).
        self.target_provider: Callable[[], Tuple[Any, Any]] = kd.target
        self.jobs: Dict[int, Job] = {}
        self._pending: List[Job] = []
        self._progress_rid: Optional[int] = None
        self._busy = False
        # live mode
        self.live = False
        self._live_doc: Any = None
        self._live_uid: Any = None
        self._live_seed: Optional[int] = None
        self._live_fingerprint: Optional[Tuple[Any, ...]] = None
        self._live_latest_rid = 0
        self._live_shown_rid = 0
        self._preview_uid: Any = None
        self._preview_doc: Any = None
        self._preview_name = ""
        self._live_poll = QTimer(self)
        self._live_poll.setInterval(LIVE_POLL_MS)
        self._live_poll.timeout.connect(self._poll_live)
        self._live_debounce = QTimer(self)
        self._live_debounce.setSingleShot(True)
        self._live_debounce.timeout.connect(self._send_live)

        self.link.state_changed.connect(self._on_state)
        self.link.connected.connect(self._on_connected)
        self.link.message.connect(self._on_message)
        self.link.send_failed.connect(self._on_send_failed)
        self.link.connection_lost.connect(self._on_connection_lost)
        self.link.connect_failed.connect(self._on_connect_failed)
        self.link.keep_alive = lambda: bool(self._pending) or self.live

    # ---- configuration ---------------------------------------------------------------------

    def configure(self, livefill_exe: str = "", model_dir: str = "", socket_path: str = "") -> None:
        self.link.livefill_exe = livefill_exe
        self.link.model_dir = model_dir
        self.link.socket_path = socket_path

    # ---- buttons ---------------------------------------------------------------------------

    def fill(self) -> Optional[int]:
        """Inpaint the selection (img2img the whole layer without one) into a new layer."""
        return self._guarded(self._fill)

    def expand(self, sides: Optional[logic.Sides] = None) -> Optional[int]:
        """Outpaint ``sides`` (default: ``self.sides``); the canvas grows when the result arrives."""
        return self._guarded(lambda: self._expand(sides or self.sides))

    def generate(self) -> Optional[int]:
        """txt2img into a new layer over the selection (or the whole canvas)."""
        return self._guarded(self._generate)

    def set_live(self, on: bool) -> None:
        if on == self.live:
            return
        if on:
            try:
                doc, node = self._target()
                if node is None or core.is_livefill_layer(node.name()):
                    raise kd.DocumentError("Select the layer to watch, then turn Live on.")
                kd.read_pixels(doc, node, core.Rect(0, 0, 1, 1), core.SOURCE_LAYER)  # validates
            except kd.DocumentError as e:
                self.message.emit(str(e))
                self.live_changed.emit(False)
                return
            self.live = True
            self._live_doc = doc
            self._live_uid = node.uniqueId()
            self._live_seed = core.pick_seed(self.settings.seed)
            self._live_fingerprint = None
            self._live_poll.start()
            self.link.connect_daemon(start=True)
            self.message.emit("Live: watching layer \u201c%s\u201d." % node.name())
            self._poll_live()
        else:
            self.live = False
            self._live_poll.stop()
            self._live_debounce.stop()
            for job in [j for j in self.jobs.values() if j.live]:
                if self.link.is_connected and job not in self._pending:
                    self.link.cancel(job.request_id)
                else:
                    self._finish(job, None, None)
        self.live_changed.emit(self.live)

    def apply_preview(self) -> Optional[Any]:
        """Keeps the live preview as a normal layer (and stops live mode); returns the node."""
        node = kd.find_node(self._preview_doc, self._preview_uid)
        self.set_live(False)
        if node is None:
            self.message.emit("There is no live preview to apply.")
            return None
        kd.rename(node, self._preview_name or core.layer_name(logic.KIND_LIVE, self.settings.prompt, None))
        self._preview_uid = None
        self._preview_doc = None
        self.preview_changed.emit(False)
        self.message.emit("Applied the preview as layer \u201c%s\u201d." % node.name())
        return node

    def cancel(self) -> None:
        """Cancels every job in flight and stops live mode."""
        was_live = self.live
        self.set_live(False)
        count = len(self.jobs)
        pending, self._pending = self._pending, []
        for job in pending:
            self._finish(job, None, None)
        if self.link.is_connected:
            for rid in list(self.jobs):
                self.link.cancel(rid)
        else:  # nobody is working on them: done
            for job in list(self.jobs.values()):
                self._finish(job, None, None)
        if count or was_live:
            self.message.emit("Cancelling\u2026" if self.jobs else "Cancelled.")
        self._update_busy()

    def refresh_status(self) -> None:
        """Connects without starting the daemon, just to show its status."""
        self.link.connect_daemon(start=False)

    # ---- job set-up ------------------------------------------------------------------------

    def _target(self) -> Tuple[Any, Any]:
        doc, node = self.target_provider()
        kd.check_supported(doc)
        return doc, node

    def _guarded(self, start: Callable[[], Job]) -> Optional[int]:
        try:
            job = start()
        except (kd.DocumentError, logic.PlanError) as e:
            self.message.emit(str(e))
            return None
        self._submit(job)
        return job.request_id

    def _read_source(self, doc: Any, node: Any, rect: core.Rect, source: str) -> bytes:
        return kd.read_pixels(doc, node, rect, source)

    def _fill(self, live: bool = False, doc: Any = None, node: Any = None) -> Job:
        if doc is None:
            doc, node = self._target()
        settings = self.settings
        plan = logic.plan_fill(kd.canvas_rect(doc), kd.selection_bounds(doc), settings.prompt, live=live)
        assert plan.region is not None
        source = core.SOURCE_LAYER if live else settings.source
        image = self._read_source(doc, node, plan.region, source)
        if plan.sent is not None:  # a large layer's live preview travels scaled down
            image = kd.scale_rgba(image, plan.region.width, plan.region.height, *plan.sent)
        if plan.has_selection:
            plan.mask = kd.selection_mask(doc, plan.region)
        seed = self._live_seed if live else None
        return self._make_job(plan, doc, node, settings, image, seed)

    def _expand(self, sides: logic.Sides) -> Job:
        doc, node = self._target()
        settings = self.settings
        plan = logic.plan_expand(kd.canvas_rect(doc), sides, settings.prompt)
        assert plan.region is not None
        image = self._read_source(doc, node, plan.region, settings.source)
        return self._make_job(plan, doc, node, settings, image)

    def _generate(self) -> Job:
        doc, node = self._target()
        settings = self.settings
        hello = self.link.hello
        max_side = hello.capabilities.max_image_side if hello is not None else 0
        plan = logic.plan_generate(kd.canvas_rect(doc), kd.selection_bounds(doc), max_side, settings.prompt)
        if plan.has_selection:
            plan.mask = kd.selection_mask(doc, plan.target)
        return self._make_job(plan, doc, node, settings, None)

    def _make_job(self, plan: logic.Plan, doc: Any, node: Any, settings: core.Settings,
                  image: Optional[bytes], seed: Optional[int] = None) -> Job:
        rid = self.link.new_request_id()
        request = logic.build_request(plan, settings, rid, image, seed=seed)
        uid = node.uniqueId() if node is not None else None
        return Job(rid, plan, doc, uid, request)

    def _submit(self, job: Job) -> None:
        self.jobs[job.request_id] = job
        if not job.live:
            self._progress_rid = job.request_id
            self.progress.emit(0, max(1, job.request.steps))
            self.message.emit("%s: sent (request %d)\u2026" % (job.plan.kind.capitalize(), job.request_id))
        else:
            self._live_latest_rid = job.request_id
            if self._progress_rid is None or self._progress_rid not in self.jobs:
                self._progress_rid = job.request_id
        self._update_busy()
        if self.link.state == CONNECTED and self.link.is_connected:
            self.link.send(job.request)
        else:
            self._pending.append(job)
            self.link.connect_daemon(start=True)

    # ---- live mode -------------------------------------------------------------------------

    def _live_source(self) -> Tuple[Any, Any]:
        """The watched layer: the current one, unless it is a livefill layer (then the last one)."""
        doc = self._live_doc
        if not kd.document_is_open(doc):
            return None, None
        try:
            cur_doc, cur_node = self.target_provider()
        except Exception:
            cur_doc, cur_node = None, None
        if (cur_node is not None and kd.is_same_document(cur_doc, doc)
                and not core.is_livefill_layer(cur_node.name())):
            self._live_uid = cur_node.uniqueId()
            return doc, cur_node
        return doc, kd.find_node(doc, self._live_uid)

    def _poll_live(self) -> None:
        if not self.live:
            return
        doc, node = self._live_source()
        if doc is None or node is None:
            self.set_live(False)
            self.message.emit("Live stopped: its document or layer is gone.")
            return
        started = time.monotonic()
        try:
            plan = logic.plan_fill(kd.canvas_rect(doc), kd.selection_bounds(doc), live=True)
            assert plan.region is not None
            fingerprint = (
                str(node.uniqueId()),
                plan.region,
                kd.layer_checksum(doc, node, plan.region, plan.has_selection),
                self._settings_key(),
            )
        except (kd.DocumentError, logic.PlanError) as e:
            self.message.emit(str(e))
            return
        # Reading a large layer is not free: poll less often the longer it takes.
        cost_ms = (time.monotonic() - started) * 1000.0
        self._live_poll.setInterval(int(max(LIVE_POLL_MS, min(LIVE_POLL_MAX_MS, cost_ms * 8))))
        if fingerprint != self._live_fingerprint:
            self._live_fingerprint = fingerprint
            self._live_debounce.start(LIVE_DEBOUNCE_MS)

    def _settings_key(self) -> Tuple[Any, ...]:
        s = self.settings
        return (s.prompt, s.negative_prompt, round(s.strength, 3), s.steps, round(s.guidance, 3), s.seed,
                s.feather, s.color_match)

    def _send_live(self) -> None:
        if not self.live:
            return
        if self.settings.seed is not None:
            self._live_seed = self.settings.seed
        doc, node = self._live_source()
        if doc is None or node is None:
            return
        try:
            job = self._fill(live=True, doc=doc, node=node)
        except (kd.DocumentError, logic.PlanError) as e:
            self.message.emit(str(e))
            return
        # Only the newest live request matters; drop older ones still waiting for a connection.
        self._pending = [j for j in self._pending if not j.live]
        self._submit(job)

    # ---- replies ---------------------------------------------------------------------------

    def _on_state(self, state: str, text: str) -> None:
        self.connection_changed.emit(state, text)

    def _on_connected(self, hello: Any) -> None:
        pending, self._pending = self._pending, []
        for job in pending:
            if job.request_id in self.jobs:
                self.link.send(job.request)

    def _on_connection_lost(self, text: str) -> None:
        # The daemon forgot everything: resend each job once after reconnecting.
        for job in list(self.jobs.values()):
            if job in self._pending:
                continue
            if job.resent or job.live:
                self._finish(job, None, "%s: the daemon went away before it finished." % job.plan.kind.capitalize())
                continue
            job.resent = True
            self._pending.append(job)
        self.message.emit(text)

    def _on_connect_failed(self, text: str, final: bool) -> None:
        if not final:
            return
        # Starting the daemon failed: the waiting jobs cannot run; say why once.
        pending, self._pending = self._pending, []
        for job in pending:
            self._finish(job, None, None)
        if self.live:
            self.set_live(False)
        self.message.emit(text)

    def _on_send_failed(self, msg: Any, text: str) -> None:
        if not isinstance(msg, proto.GenerateRequest):
            return  # a Cancel for a daemon that is gone: nothing left to cancel
        job = self.jobs.get(msg.request_id)
        if job is None:
            return
        if job in self._pending:
            return  # already waiting for the next connection (the loss was seen first)
        if not job.resent:
            # Lost between queueing and sending: send it once more, now or after the reconnect.
            job.resent = True
            if self.link.is_connected:
                self.link.send(job.request)
            else:
                self._pending.append(job)
                self.link.connect_daemon(start=True)
            return
        self._finish(job, None, "Could not send the request: %s" % text)

    def _on_message(self, msg: Any) -> None:
        rid = getattr(msg, "request_id", None)
        job = self.jobs.get(rid) if rid is not None else None
        try:
            self._handle(msg, rid, job)
        except Exception as e:  # never leave a job hanging (or a modal error box) behind
            traceback.print_exc()
            if job is not None:
                self._finish(job, None, "livefill internal error: %s: %s" % (type(e).__name__, e))
            else:
                self.message.emit("livefill internal error: %s: %s" % (type(e).__name__, e))

    def _handle(self, msg: Any, rid: Optional[int], job: Optional[Job]) -> None:
        if isinstance(msg, proto.Accepted):
            if job is not None and not job.live and msg.queue_position > 0:
                self.message.emit("%s: queued (position %d)\u2026" % (job.plan.kind.capitalize(), msg.queue_position))
        elif isinstance(msg, proto.Progress):
            if job is not None and rid == self._progress_rid:
                self.progress.emit(msg.step, msg.total_steps)
        elif isinstance(msg, proto.GenerateResult):
            if job is not None:
                self._on_result(job, msg)
        elif isinstance(msg, proto.Superseded):
            if job is not None:
                self._finish(job, None, None)
        elif isinstance(msg, proto.ErrorReply):
            self._on_error(job, msg)
        elif isinstance(msg, proto.ShuttingDown):
            self.message.emit("The livefill daemon is shutting down.")

    def _on_error(self, job: Optional[Job], err: "proto.ErrorReply") -> None:
        text = core.error_text(err.code, err.message, logic.KRITA)
        if job is None:
            self.message.emit(text)
            return
        if err.code == proto.ErrorCode.CANCELLED:
            self._finish(job, None, None if job.live else "%s: cancelled." % job.plan.kind.capitalize())
            return
        if job.live and self.live:
            self.set_live(False)
            text = "Live stopped: " + text
        self._finish(job, None, text)

    def _on_result(self, job: Job, result: "proto.GenerateResult") -> None:
        if not kd.document_is_open(job.doc):
            self._finish(job, None, "The document was closed before the result arrived.")
            return
        if job.live and (not self.live or job.request_id < self._live_shown_rid):
            self._finish(job, None, None)  # a late answer for an older state: never shown
            return
        img = result.image
        try:
            placement = logic.place_result(job.plan, img.pixels, img.width, img.height,
                                           result.offset_x, result.offset_y, scale=kd.scale_rgba)
        except ValueError as e:
            self._finish(job, None, "Unusable result from the daemon: %s" % e)
            return
        doc = job.doc
        source = kd.find_node(doc, job.source_uid)
        name = core.layer_name(job.plan.kind, job.plan.prompt, result.seed)
        if job.live:
            node = self._show_preview(doc, source, placement, name)
            self._live_shown_rid = job.request_id
            self._finish(job, node, "Live preview updated (seed %d)." % result.seed)
            return
        if placement.resize is not None:
            cw, ch = doc.width(), doc.height()
            if (cw, ch) != (job.plan.canvas.width, job.plan.canvas.height):
                self._finish(job, None, "Expand: the canvas size changed meanwhile; result dropped.")
                return
            kd.resize_canvas(doc, *placement.resize)
        node = kd.add_layer(doc, name, placement.rect, placement.pixels, above=source)
        total_ms = result.total_millis()
        self._finish(job, node, "Added layer \u201c%s\u201d (%.1f s)." % (
            name, total_ms / 1000.0 if total_ms else time.monotonic() - job.started))

    def _show_preview(self, doc: Any, source: Any, placement: logic.Placement, name: str) -> Any:
        node = kd.find_node(self._preview_doc, self._preview_uid)
        if node is not None and kd.is_same_document(self._preview_doc, doc):
            kd.write_layer(doc, node, placement.rect, placement.pixels, clear=True)
        else:
            node = kd.add_layer(doc, core.PREVIEW_LAYER_NAME, placement.rect, placement.pixels, above=source)
            self._preview_doc = doc
            self._preview_uid = node.uniqueId()
            if source is not None:
                kd.set_active(doc, source)  # keep painting on the watched layer
        self._preview_name = name
        self.preview_changed.emit(True)
        return node

    def _finish(self, job: Job, node: Any, text: Optional[str]) -> None:
        self.jobs.pop(job.request_id, None)
        if job in self._pending:
            self._pending.remove(job)
        if job.request_id == self._progress_rid:
            self._progress_rid = None
            self.progress.emit(0, 0)
        if text:
            self.message.emit(text)
        self.job_done.emit(job.request_id, job.plan.kind, node)
        self._update_busy()

    def _update_busy(self) -> None:
        busy = any(not j.live for j in self.jobs.values())
        if busy != self._busy:
            self._busy = busy
            self.busy_changed.emit(busy)

    # ---- teardown --------------------------------------------------------------------------

    def shutdown(self) -> None:
        self.set_live(False)
        self.link.close()


_instance: Optional[Controller] = None


def get_controller() -> Controller:
    """The one controller shared by every window's docker."""
    global _instance
    if _instance is None:
        _instance = Controller()
    return _instance
