"""What the docker's buttons do: Fill, Expand, Generate, Live, Apply, Cancel.

Why this module exists: it sequences each job (plan with ``logic``, read pixels with
``krita_document``, send with ``connection``, place the result as a new layer) and owns live
mode's watcher and preview layer. It has no widgets, so the docker, keyboard actions and the
kritarunner tests all drive the very same code paths. Control flow runs on Krita's UI thread and
nothing here blocks: replies arrive as Qt signals from ``DaemonLink``.

Live mode reacts instead of polling: ``live_watch`` says when the canvas may have changed, the
layer is then read (scaled, in bands) by a ``PixelWorker`` and sent at once if its pixels differ
from the last frame's. At most one live frame is in flight; changes made meanwhile are read and
sent the moment its result arrives, while that result is written into the preview by a second
worker (see ``pixel_worker.OFF_UI_THREAD`` for where workers run). Every frame's moments go to ``timeline`` (``livefill_live``), which the in-editor
benchmark reads. The preview layer is locked against painting and never becomes the current
layer.
"""

import time
import traceback
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, List, Optional, Tuple

from PyQt5.QtCore import QObject, QTimer, pyqtSignal

from . import krita_document as kd
from . import logic
from . import pixels as px
from .connection import CONNECTED, DaemonLink
from .live_watch import CanvasWatcher
from .pixel_worker import PixelWorker

try:
    from . import livefill_live as live
    from . import livefill_plugin_core as core
    from . import livefill_protocol as proto
except ImportError:  # development checkout
    import livefill_live as live  # type: ignore[no-redef]
    import livefill_plugin_core as core  # type: ignore[no-redef]
    import livefill_protocol as proto  # type: ignore[no-redef]

#: After the preview layer is created, Krita makes it the current layer on its own, a moment
#: later: at these delays (ms) the watched layer is made current again if that happened.
KEEP_CURRENT_MS = (0, 30, 120, 400)
#: When live frames take longer than this (ms, recent average from send to result), whole-layer
#: frames ask for a preview image at every step and show each, so the artist sees the first one
#: after one UNet pass instead of waiting for the whole frame (CPU, large models).
LIVE_STEP_PREVIEW_MS = 150.0


@dataclass
class Job:
    request_id: int
    plan: logic.Plan
    doc: Any
    source_uid: Any
    request: "proto.GenerateRequest" = field(repr=False)
    started: float = field(default_factory=time.monotonic)
    resent: bool = False
    #: The daemon answered ``Accepted`` (or reported on it): it has the job.
    accepted: bool = False
    #: Live jobs: this frame's moments (``livefill_live``).
    frame: Optional["live.LiveFrame"] = field(default=None, repr=False)
    #: The daemon loaded the job's model for it (``ModelLoading``): residency changed.
    loaded_model: bool = False

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
      ``models_changed(models)``: the daemon's ``ListModels`` answer (a list of
      ``proto.ModelInfo``), asked for after each connection and whenever residency or a load
      error may have changed; ``models`` holds the latest (None before the first).
      ``model_fallback(text)``: the daemon does not offer the chosen model (any more): the
      settings' model is back to Automatic, ``text`` says so.
    """

    connection_changed = pyqtSignal(str, str)
    progress = pyqtSignal(int, int)
    message = pyqtSignal(str)
    busy_changed = pyqtSignal(bool)
    live_changed = pyqtSignal(bool)
    preview_changed = pyqtSignal(bool)
    job_done = pyqtSignal(object, str, object)
    models_changed = pyqtSignal(object)
    model_fallback = pyqtSignal(str)

    def __init__(self, link: Optional[DaemonLink] = None, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.link = link or DaemonLink(self)
        self.settings = core.Settings()
        self.sides = logic.Sides()
        #: () -> (doc, node): what the buttons act on (the active document and layer by default).
        self.target_provider: Callable[[], Tuple[Any, Any]] = kd.target
        self.jobs: Dict[int, Job] = {}
        #: The daemon's models (``ListModels``); None until it answered.
        self.models: Optional[List["proto.ModelInfo"]] = None
        self._pending: List[Job] = []
        self._progress_rid: Optional[int] = None
        self._busy = False
        # live mode
        self.live = False
        self._live_doc: Any = None
        self._live_uid: Any = None
        self._live_seed: Optional[int] = None
        self._live_fingerprint: Optional[Tuple[Any, ...]] = None
        self._live_shown_rid = 0
        #: When the oldest change not yet read was seen (``live.now_ms``); None = nothing new.
        self._live_dirty_since: Optional[float] = None
        self._live_reading = False
        self._live_inflight: Optional[int] = None
        self._live_kick_queued = False
        self._live_frames: Dict[int, "live.LiveFrame"] = {}
        self._live_warned_preview = False
        #: The last line said through ``message`` (live frames repeat theirs only when it changed).
        self._last_message = ""
        self.message.connect(self._remember_message)
        #: Recent live frame time, send to result (ms, running average); None before the first.
        self._live_frame_ms: Optional[float] = None
        self._preview_uid: Any = None
        self._preview_doc: Any = None
        self._preview_name = ""
        self._preview_bounds = core.Rect(0, 0, 0, 0)
        #: The newest live result waiting for the writer: (job, doc, node, rect, write, seed, model).
        self._write_waiting: Optional[Tuple[Any, ...]] = None
        self.timeline = live.LiveTimeline()
        self.watcher = CanvasWatcher(self)
        self.watcher.touched.connect(self.live_touched)
        self.reader = PixelWorker("read", self)
        self.writer = PixelWorker("write", self)

        self.link.state_changed.connect(self._on_state)
        self.link.connected.connect(self._on_connected)
        self.link.message.connect(self._on_message)
        self.link.send_failed.connect(self._on_send_failed)
        self.link.connection_lost.connect(self._on_connection_lost)
        self.link.connect_failed.connect(self._on_connect_failed)
        self.link.keep_alive = lambda: bool(self._pending) or self.live
        self.link.on_sent = self._on_sent

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
            self._live_warned_preview = False
            self.watcher.start(doc)
            self.link.connect_daemon(start=True)
            self.message.emit("Live: watching layer \u201c%s\u201d." % node.name())
            self.live_touched()
        else:
            self.live = False
            self.watcher.stop()
            self._live_dirty_since = None
            preview = kd.find_node(self._preview_doc, self._preview_uid)
            if preview is not None:
                kd.set_locked(preview, False)  # the artist may edit or delete it now
            waiting, self._write_waiting = self._write_waiting, None
            if waiting is not None:
                self._finish(waiting[0], None, None)
            # Answered frames being written finish on their own; the rest are cancelled.
            for job in [j for j in self.jobs.values() if j.live and not (j.frame is not None and j.frame.result)]:
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
        kd.set_locked(node, False)
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

    def refresh_models(self) -> None:
        """Asks the daemon for its models (answered through ``models_changed``); nothing while
        not connected (every connection asks by itself)."""
        if self.link.is_connected:
            self.link.send(proto.ListModels())

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
                  image: Optional[bytes], seed: Optional[int] = None, stream_previews: bool = False) -> Job:
        rid = self.link.new_request_id()
        request = logic.build_request(plan, settings, rid, image, seed=seed, stream_previews=stream_previews)
        uid = node.uniqueId() if node is not None else None
        return Job(rid, plan, doc, uid, request)

    def _submit(self, job: Job) -> None:
        self.jobs[job.request_id] = job
        # Live frames show no progress bar: one per frame would repaint the docker constantly.
        if not job.live:
            self._progress_rid = job.request_id
            self.progress.emit(0, max(1, job.request.steps))
            self.message.emit("%s: sent (request %d)\u2026" % (job.plan.kind.capitalize(), job.request_id))
        self._update_busy()
        if self.link.state == CONNECTED and self.link.is_connected:
            self.link.send(job.request)
        else:
            self._pending.append(job)
            self.link.connect_daemon(start=True)

    # ---- live mode -------------------------------------------------------------------------

    def live_touched(self) -> None:
        """Something may have changed the watched layer or the settings (canvas events, undo,
        the fallback poll, the docker): read it and send a frame as soon as none is in flight."""
        if not self.live:
            return
        if self._live_dirty_since is None:
            self._live_dirty_since = live.now_ms()
        self._schedule_live_kick()

    def _remember_message(self, text: str) -> None:
        self._last_message = text

    def _schedule_live_kick(self) -> None:
        if not self._live_kick_queued:
            self._live_kick_queued = True
            QTimer.singleShot(0, self._live_kick)

    def _live_source(self) -> Tuple[Any, Any]:
        """The watched layer: the current one, unless it is a livefill layer (then the last one)."""
        doc = self._live_doc
        if not kd.document_is_open(doc):
            return None, None
        try:
            cur_doc, cur_node = self.target_provider()
        except Exception:
            cur_doc, cur_node = None, None
        if cur_node is not None and kd.is_same_document(cur_doc, doc):
            if not core.is_livefill_layer(cur_node.name()):
                self._live_uid = cur_node.uniqueId()
                self._live_warned_preview = False
                return doc, cur_node
            if cur_node.uniqueId() == self._preview_uid and not self._live_warned_preview:
                self._live_warned_preview = True
                self.message.emit(self._preview_selected_text())
        return doc, kd.find_node(doc, self._live_uid)

    def _preview_selected_text(self) -> str:
        watched = kd.find_node(self._live_doc, self._live_uid)
        return "Live: the preview layer is locked; select \u201c%s\u201d to paint." % (
            watched.name() if watched is not None else "your layer")

    def _live_kick(self) -> None:
        """Starts reading the next frame when something changed and no frame is in flight (a
        frame sent meanwhile would make the daemon supersede the running one). Reading ahead
        while a frame is in flight was tried: on 2 cores it competes with the daemon and made
        stroke latency worse (BENCHMARKS.md)."""
        self._live_kick_queued = False
        if not self.live or self._live_dirty_since is None or self._live_reading:
            return
        if self._live_inflight is not None:
            return  # picked up when the frame in flight is answered
        with self.timeline.ui_slice("live: plan"):
            self._start_live_read()

    def _start_live_read(self) -> None:
        doc, node = self._live_source()
        if doc is None or node is None:
            self.set_live(False)
            self.message.emit("Live stopped: its document or layer is gone.")
            return
        try:
            kd.check_supported(doc)
            kd.check_readable(node)
            plan = logic.plan_fill(kd.canvas_rect(doc), kd.selection_bounds(doc), self.settings.prompt, live=True)
        except (kd.DocumentError, logic.PlanError) as e:
            self._live_dirty_since = None
            self.message.emit(str(e))
            return
        assert plan.region is not None
        frame = live.LiveFrame(changed=self._live_dirty_since or live.now_ms(), read_started=live.now_ms())
        self._live_dirty_since = None
        self._live_reading = True
        key = (str(node.uniqueId()), plan.region, self._settings_key())
        region, sent, with_selection = plan.region, plan.sent, plan.has_selection

        def read() -> Tuple[bytes, Optional[bytes], Tuple[Any, ...]]:
            pixels = kd.read_live_frame(doc, node, region, sent)
            mask = kd.selection_mask(doc, region) if with_selection else None
            return pixels, mask, key + (px.checksum(pixels, mask or b""),)

        self.reader.submit(read, lambda res, err: self._on_live_read(doc, node, plan, frame, res, err))

    def _settings_key(self) -> Tuple[Any, ...]:
        s = self.settings
        return (s.prompt, s.negative_prompt, round(s.strength, 3), s.steps, round(s.guidance, 3), s.seed,
                s.feather, s.color_match, s.model)

    def _on_live_read(self, doc: Any, node: Any, plan: logic.Plan, frame: "live.LiveFrame",
                      res: Any, err: Optional[BaseException]) -> None:
        with self.timeline.ui_slice("live: send"):
            self._live_reading = False
            if not self.live:
                return
            if err is not None:
                self.message.emit(str(err) if isinstance(err, kd.DocumentError)
                                  else "Live: could not read the layer: %s" % err)
            else:
                pixels, mask, fingerprint = res
                if fingerprint != self._live_fingerprint:  # else: nothing the model sees changed
                    self._live_fingerprint = fingerprint
                    self._send_live_frame(doc, node, plan, frame, pixels, mask)
                    return
            if self._live_dirty_since is not None:
                self._schedule_live_kick()

    def _on_live_answered(self, request_id: int) -> None:
        """The frame in flight ended (result, superseded, error): read again at once if anything
        changed meanwhile."""
        if self._live_inflight != request_id:
            return
        self._live_inflight = None
        if self._live_dirty_since is not None:
            self._schedule_live_kick()

    def _send_live_frame(self, doc: Any, node: Any, plan: logic.Plan, frame: "live.LiveFrame",
                         pixels: bytes, mask: Optional[bytes]) -> None:
        if self.settings.seed is not None:
            self._live_seed = self.settings.seed
        plan.mask = mask
        # Step previews map onto the layer only when the whole layer is sent (the daemon's crop
        # is then the whole image); for a selection the final frame is what shows.
        steps = (not plan.has_selection and self.settings.steps > 1 and self._live_frame_ms is not None
                 and self._live_frame_ms > LIVE_STEP_PREVIEW_MS)
        try:
            job = self._make_job(plan, doc, node, self.settings, pixels, self._live_seed, stream_previews=steps)
        except (ValueError, core.PluginError) as e:
            self.message.emit(str(e))
            return
        frame.request_id = job.request_id
        frame.bytes_sent = len(pixels) + len(mask or b"")
        job.frame = frame
        self.timeline.add(frame)
        self._live_frames[job.request_id] = frame
        self._live_inflight = job.request_id
        # Only the newest live request matters; drop older ones still waiting for a connection.
        self._pending = [j for j in self._pending if not j.live]
        self._submit(job)

    def _on_sent(self, msg: Any) -> None:
        """Send thread: a request reached the socket (dict lookups only: thread-safe)."""
        frame = self._live_frames.get(getattr(msg, "request_id", -1))
        if frame is not None and not frame.sent:
            frame.sent = live.now_ms()

    # ---- replies ---------------------------------------------------------------------------

    def _on_state(self, state: str, text: str) -> None:
        self.connection_changed.emit(state, text)

    def _on_connected(self, hello: Any) -> None:
        self.link.send(proto.ListModels())  # the picker follows the daemon of this connection
        pending, self._pending = self._pending, []
        for job in pending:
            if job.request_id in self.jobs:
                self.link.send(job.request)

    def _on_connection_lost(self, text: str, reason: Any) -> None:
        """The daemon went away (``text`` says why, ``reason`` is the connection's
        ``closed_reason``). A job it had accepted is lost with it -- it crashed, was killed or shut
        down while working on it -- and ends here, nothing placed (a result only ever becomes a
        layer when it arrives), with the shared sentence saying so; it is not sent again (a job
        that made the daemon crash would crash the next one too): the next action starts the
        daemon again. A job sent but not accepted yet (a daemon restarting meanwhile) is sent once
        more after reconnecting. Live mode stops: turning it on again starts the daemon."""
        said = False
        if self.live:
            frame_lost = any(j.live and j.accepted for j in self.jobs.values())
            self.set_live(False)  # ends the frames not answered yet
            self.message.emit("Live stopped: " + (core.connection_end_text(reason, logic.KRITA, "Live")
                                                  if frame_lost else text))
            said = True
        for job in list(self.jobs.values()):
            if job.request_id not in self.jobs or job in self._pending:
                continue
            if job.live and job.frame is not None and job.frame.result:
                continue  # answered: its preview is being written, it needs no daemon
            if job.accepted or job.resent or job.live:
                self._finish(job, None, None if job.live else core.connection_end_text(
                    reason, logic.KRITA, job.plan.kind.capitalize()))
                said = said or not job.live
                continue
            job.resent = True
            self._pending.append(job)
        if not said:
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
        if job is not None and isinstance(msg, (proto.Accepted, proto.ModelLoading, proto.Progress)):
            job.accepted = True
        if isinstance(msg, proto.Accepted):
            if job is not None and not job.live and msg.queue_position > 0:
                self.message.emit("%s: queued (position %d)\u2026" % (job.plan.kind.capitalize(), msg.queue_position))
        elif isinstance(msg, proto.ModelLoading):
            if job is not None:
                job.loaded_model = True
                text = core.loading_text(msg)
                if text != self._last_message:
                    self.message.emit(text)
        elif isinstance(msg, proto.Models):
            self.models = list(msg.models)
            self.models_changed.emit(self.models)
        elif isinstance(msg, proto.Progress):
            if job is not None and rid == self._progress_rid:
                self.progress.emit(msg.step, msg.total_steps)
            if job is not None and job.live and msg.preview is not None:
                self._on_live_step(job, msg.preview)
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
        model = job.request.model if job is not None else ""
        text = core.error_text(err.code, err.message, logic.KRITA, model)
        if job is None:
            self.message.emit(text)
            return
        if err.code == proto.ErrorCode.CANCELLED:
            self._finish(job, None, None if job.live else "%s: cancelled." % job.plan.kind.capitalize())
            return
        if core.falls_back_to_automatic(err.code, model):
            text = "%s %s" % (text, core.BACK_TO_AUTOMATIC)
            if self.settings.model == model:
                self.settings = replace(self.settings, model=core.AUTOMATIC)
            self.model_fallback.emit(text)
        if err.code in (proto.ErrorCode.MODEL_LOAD_FAILED, proto.ErrorCode.NO_MODEL):
            self.refresh_models()  # the picker shows the load error / the models offered now
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
        if job.live:
            self._on_live_result(job, result)
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
        if placement.resize is not None:
            cw, ch = doc.width(), doc.height()
            if (cw, ch) != (job.plan.canvas.width, job.plan.canvas.height):
                self._finish(job, None, "Expand: the canvas size changed meanwhile; result dropped.")
                return
            kd.resize_canvas(doc, *placement.resize)
        node = kd.add_layer(doc, name, placement.rect, placement.pixels, above=source)
        total_ms = result.total_millis()
        if job.loaded_model:
            self.refresh_models()  # its model is resident now
        self._finish(job, node, core.result_status(
            name, total_ms / 1000.0 if total_ms else time.monotonic() - job.started, result.model))

    def _on_live_result(self, job: Job, result: "proto.GenerateResult") -> None:
        """A live frame came back: the next frame is read at once (if anything changed), while
        this one is scaled and written into the preview on the writer thread."""
        with self.timeline.ui_slice("live: result"):
            frame = job.frame
            img = result.image
            if frame is not None:
                frame.result = live.now_ms()
                frame.bytes_received = len(img.pixels)
                frame.daemon = {t.stage: t.millis for t in result.timings}
                if frame.sent:
                    ms = frame.result - frame.sent
                    self._live_frame_ms = ms if self._live_frame_ms is None else 0.5 * (self._live_frame_ms + ms)
            self._on_live_answered(job.request_id)
            doc = job.doc
            source = kd.find_node(doc, job.source_uid)
            plan = job.plan
            assert plan.region is not None
            try:
                node = self._preview_node(doc, source)
            except kd.DocumentError as e:
                self._finish(job, None, str(e))
                return
            whole = (plan.sent is not None and plan.mask is None and (result.offset_x, result.offset_y) == (0, 0)
                     and (img.width, img.height) == plan.sent)
            if whole:
                rect = plan.region
            else:
                try:
                    placement = logic.place_result(plan, img.pixels, img.width, img.height,
                                                   result.offset_x, result.offset_y, scale=kd.scale_rgba)
                except ValueError as e:
                    self._finish(job, None, "Unusable result from the daemon: %s" % e)
                    return
                rect = placement.rect
            self._preview_name = core.layer_name(job.plan.kind, job.plan.prompt, result.seed)
            if whole:
                def write(clear: Tuple[core.Rect, ...]) -> None:
                    kd.write_scaled(node, rect, img.pixels, img.width, img.height, clear)
            else:
                def write(clear: Tuple[core.Rect, ...]) -> None:
                    kd.write_bgra(node, rect, proto.rgba_to_bgra(placement.pixels), clear)
            if job.loaded_model:
                self.refresh_models()
            self._queue_preview_write(job, doc, node, rect, write, result.seed, result.model)

    def _queue_preview_write(self, job: Job, doc: Any, node: Any, rect: core.Rect,
                             write: Callable[[Tuple[core.Rect, ...]], None], seed: int, model: str) -> None:
        """Writes happen one at a time, newest first: a frame whose write has not started when
        a newer one arrives is dropped (its pixels would be overwritten anyway)."""
        waiting = self._write_waiting
        self._write_waiting = (job, doc, node, rect, write, seed, model)
        if waiting is not None:
            self._finish(waiting[0], None, None)
        if not self.writer.busy:
            self._start_preview_write()

    def _start_preview_write(self) -> None:
        item, self._write_waiting = self._write_waiting, None
        if item is None:
            return
        job, doc, node, rect, write, seed, model = item
        clear = logic.uncovered_bands(self._preview_bounds, rect)
        self._preview_bounds = rect

        # Only the pixel writes run on the worker: Document.refreshProjection (a whole-image
        # refresh that waits for Krita) on a worker thread deadlocked against Krita's own
        # waitForDone on the UI thread (its busy-wait dialog), so it runs on the UI thread.
        self.writer.submit(lambda: write(clear), lambda _res, err: self._on_live_written(job, node, seed, model, err))

    def _on_live_step(self, job: Job, image: "proto.RgbaImage") -> None:
        """A step preview of the live frame in flight: shown when the writer is free (a final
        frame always wins), scaled over the whole layer like the final frame."""
        with self.timeline.ui_slice("live: step"):
            plan = job.plan
            if (self.writer.busy or self._write_waiting is not None or plan.has_selection or plan.region is None
                    or not self.live or job.request_id != self._live_inflight):
                return
            doc = job.doc
            try:
                node = self._preview_node(doc, kd.find_node(doc, job.source_uid))
            except kd.DocumentError:
                return
            rect = plan.region
            clear = logic.uncovered_bands(self._preview_bounds, rect)
            self._preview_bounds = rect
            frame = job.frame

            def write() -> None:
                kd.write_scaled(node, rect, image.pixels, image.width, image.height, clear)

            def done(_res: Any, err: Optional[BaseException]) -> None:
                with self.timeline.ui_slice("live: step shown"):
                    self._start_preview_write()
                    if err is None and kd.document_is_open(doc):
                        kd.refresh(doc)  # on the UI thread: see _start_preview_write
                        if frame is not None and not frame.step_shown:
                            frame.step_shown = live.now_ms()

            self.writer.submit(write, done)

    def _on_live_written(self, job: Job, node: Any, seed: int, model: str, err: Optional[BaseException]) -> None:
        with self.timeline.ui_slice("live: shown"):
            self._start_preview_write()
            if err is not None:
                self._finish(job, None, "Live: could not write the preview: %s" % err)
                return
            if kd.document_is_open(job.doc):
                kd.refresh(job.doc)
            frame = job.frame
            if frame is not None:
                frame.shown = live.now_ms()
                frame.outcome = "shown"
            self._live_shown_rid = max(self._live_shown_rid, job.request_id)
            self.preview_changed.emit(True)
            # While the artist has the preview selected, keep saying why their brush does nothing.
            text = (self._preview_selected_text() if kd.is_active(job.doc, node)
                    else core.live_status(seed, model))
            # The same line every frame would only cost UI time: say it when it changes.
            self._finish(job, node, text if text != self._last_message else None)

    def _preview_node(self, doc: Any, source: Any) -> Any:
        """The preview layer, created (empty, locked, right above ``source``) on first use
        without taking the current-layer role from ``source``."""
        node = kd.find_node(self._preview_doc, self._preview_uid)
        if node is not None and kd.is_same_document(self._preview_doc, doc):
            return node
        node = kd.add_empty_layer(doc, core.PREVIEW_LAYER_NAME, above=source)
        kd.set_locked(node, True)  # strokes can never land in it (livefill's writes still do)
        self._preview_doc = doc
        self._preview_uid = node.uniqueId()
        self._preview_bounds = core.Rect(0, 0, 0, 0)
        if source is not None:
            self._keep_current(doc, source)
        return node

    def _keep_current(self, doc: Any, source: Any) -> None:
        """Makes ``source`` current again now and each time Krita activates the new preview on
        its own in the next moments (it does so asynchronously after a node is added), but
        never when the artist has picked some other layer meanwhile."""
        source_uid = source.uniqueId()

        def restore() -> None:
            preview = kd.find_node(doc, self._preview_uid)
            watched = kd.find_node(doc, source_uid)
            if preview is not None and watched is not None and kd.is_active(doc, preview):
                kd.set_active(doc, watched)

        kd.set_active(doc, source)
        for delay in KEEP_CURRENT_MS:
            QTimer.singleShot(delay, restore)

    def _finish(self, job: Job, node: Any, text: Optional[str]) -> None:
        self.jobs.pop(job.request_id, None)
        if job.live:
            self._live_frames.pop(job.request_id, None)
            if job.frame is not None and not job.frame.outcome:
                job.frame.outcome = "dropped"
            self._on_live_answered(job.request_id)
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
        self.reader.stop()
        self.writer.stop()
        self.link.close()


_instance: Optional[Controller] = None


def get_controller() -> Controller:
    """The one controller shared by every window's docker."""
    global _instance
    if _instance is None:
        _instance = Controller()
    return _instance
