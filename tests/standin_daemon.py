#!/usr/bin/env python3
"""The one stand-in livefill daemon for every Python test: transport, plugin core, Krita, GIMP.

Why this exists: the plugins' placement logic (offsets, masks, canvas growth), their error
handling and the transport must be checked where the real daemon cannot run (no model, no ONNX
Runtime), quickly, and with answers a test can predict. This server speaks the real protocol
through the shared codec (``protocol/python/livefill_protocol.py``) and answers
deterministically, with the daemon's geometry rules:

* inpaint: the sent image with every pixel the mask selects (mask > 0) set to ``FILL`` and the
  others as sent (the real daemon never changes unmasked pixels), at offset (0, 0);
* img2img: the sent image, every pixel ``FILL``, at offset (0, 0);
* outpaint: the sent image grown by ``extend``, the new border ``BORDER``, offset (-left, -top);
* txt2img: a ``GENERATED`` image of the requested size (``NATIVE`` for 0).

One ``Progress`` per requested step (with a 1x1 ``FILL`` preview when previews are asked for)
precedes each result. Prompts that trigger behaviours for tests: ``__error__`` (INVALID_REQUEST,
``REFUSAL``), ``__no_model__`` (NO_MODEL), ``__oom__`` (OUT_OF_MEMORY), ``__slow__`` (100 steps
of 0.1 s; a Cancel ends it with CANCELLED), ``__none__`` (no answer until cancelled),
``__supersede__`` (Superseded by the next request id), ``__drop__`` (the connection closes),
``__bad_frame__`` (a connection-level BAD_FRAME error, then the connection closes).

Models, as the real daemon serves several: ``ListModels`` answers the stand-in's model list (by
default the one resident ``MODEL``, "standin", with every role; ``--models several`` or
``$LIVEFILL_STANDIN_MODELS=several`` gives ``SEVERAL``: a plain default, an inpainting model,
an LCM model for live previews, a plain one without a role and a broken one; or a JSON file / inline JSON list of
``ModelInfo`` fields, roles by name, and ``"broken": "why"``). A request naming a model runs on
it, an empty name on the model whose role fits (inpaint/outpaint: ``inpaint``, live previews:
``live``, else ``default``; a role nobody has falls to ``default``) -- the stand-in's own copy
of the daemon's rule, not the plugins' -- and ``GenerateResult.model`` says which. The first job
on a model that is not resident gets one ``ModelLoading`` per component (``LOAD_COMPONENTS``)
after ``Accepted`` and before its ``Progress``; a broken model fails its load at the UNet with
MODEL_LOAD_FAILED (and lists its ``load_error`` from then on); an unknown name is refused with
NO_MODEL. ``--record PATH`` (or ``$LIVEFILL_STANDIN_RECORD``) appends one JSON line per
generate request (request id, mode, prompt, model, live), so tests in another process can see
what was sent.

Usage (also the daemon's own command-line shape, so a wrapper script can stand in for the
``livefill`` executable): ``standin_daemon.py [serve] --socket PATH [--idle-exit SECONDS]
[--models SPEC] [--record PATH] [--fail-start] [--close-before-hello reset|eof|dying] [other
flags, ignored]`` or
``standin_daemon.py PATH``. Runs until sent Shutdown (or idle that long); ``--fail-start``
prints an error and exits with status 3 at once. ``--close-before-hello reset|eof`` stands in
for a socket whose daemon is gone (an ssh-forwarded socket whose remote daemon stopped: ssh
accepts, then drops the connection): every connection is accepted and closed before the hello,
with the client's hello left unread (the client sees a reset) or read first (an end of stream);
``dying`` stands in for a daemon being torn down after a SIGKILL: the first connection is reset
like that, then the listener is gone and its socket file left behind (connecting is refused).
``Status`` names a job whose steps are running (``running_request``), as the daemon does.
In-process: ``StandinDaemon(path).start()`` ... ``.stop()``.
"""

import json
import os
import socket
import sys
import threading
import time
from dataclasses import replace
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "protocol", "python"))

import livefill_protocol as proto  # noqa: E402

FILL = bytes((255, 0, 255, 255))  # magenta: inpainted / img2img pixels
BORDER = bytes((0, 255, 255, 255))  # cyan: outpainted border
GENERATED = bytes((255, 128, 0, 255))  # orange: txt2img
NATIVE = 64
DEFAULT_SEED = 1234
MAX_IMAGE_SIDE = 2048
REFUSAL = "stand-in refuses this prompt"
LISTENING = "stand-in livefill daemon listening on"
START_FAILURE = "error: model folder not found: /nowhere"
SLOW_STEPS = 100
SLOW_STEP_S = 0.1
TIMINGS = [proto.StageTiming("unet", 1.0)]
_ROLES = (proto.ModelRole.DEFAULT, proto.ModelRole.INPAINT, proto.ModelRole.LIVE)
MODEL = proto.ModelInfo("standin", "/models/standin", 4, True, "fp32", False, True, list(_ROLES), 1 << 20, 0, "")
#: What the daemon lists as a non-LCM model's defaults (ModelDefaults::QUALITY: the
#: ModelInfo fields default_sampler, default_spacing, default_steps, default_guidance).
_PLAIN_DEFAULTS = (proto.Sampler.DPMPP_2M, proto.Spacing.KARRAS, 20, 7.0)
#: ``--models several``: one model per role, one with none (chosen by name only), one whose load
#: fails.
SEVERAL = [
    proto.ModelInfo("sd15-plain", "/models/sd15-plain", 4, False, "fp16", False, True,
                    [proto.ModelRole.DEFAULT], 2 << 30, 0, "", *_PLAIN_DEFAULTS),
    proto.ModelInfo("sd-inpaint", "/models/sd-inpaint", 9, False, "fp16", True, False,
                    [proto.ModelRole.INPAINT], 2 << 30, 1 << 20, "", *_PLAIN_DEFAULTS),
    proto.ModelInfo("lcm-dreamshaper", "/models/lcm-dreamshaper", 4, True, "fp32", True, False,
                    [proto.ModelRole.LIVE], 4 << 30, 1 << 20, ""),
    proto.ModelInfo("dreamshaper-8", "/models/dreamshaper-8", 4, False, "fp16", True, False, [], 2 << 30, 0, "",
                    *_PLAIN_DEFAULTS),
    proto.ModelInfo("broken-model", "/models/broken-model", 4, False, "fp32", False, False, [], 3 << 30, 0, "",
                    *_PLAIN_DEFAULTS),
]
#: Why each of ``SEVERAL``'s broken models fails to load (the daemon names the file and the fix).
SEVERAL_BROKEN = {
    "broken-model": "/models/broken-model/unet/model.onnx is truncated (12 MB of 3438 MB): fetch the model "
                    "again (livefill models fetch) or remove it from config.toml",
}
#: What a model load reports, in order (``ModelLoading.component``).
LOAD_COMPONENTS = ("tokenizer", "text_encoder", "unet", "vae_decoder", "vae_encoder")
#: Where a broken model's load stops.
BROKEN_AT = "unet"


def load_models(spec: str) -> Tuple[List[proto.ModelInfo], Dict[str, str]]:
    """The model list and broken models for ``--models SPEC``: "" (``MODEL`` alone), "several"
    (``SEVERAL``), a JSON file or an inline JSON list of objects with ``ModelInfo``'s fields
    (``roles`` by name: default, inpaint, live) and optionally ``"broken": "why it fails"``."""
    spec = (spec or "").strip()
    if not spec:
        return [MODEL], {}
    if spec == "several":
        return list(SEVERAL), dict(SEVERAL_BROKEN)
    text = spec if spec.startswith("[") else open(spec).read()
    models, broken = [], {}
    for item in json.loads(text):
        item = dict(item)
        why = item.pop("broken", "")
        item["roles"] = [proto.ModelRole[r.upper()] for r in item.get("roles", [])]
        info = proto.ModelInfo(**item)
        models.append(info)
        if why:
            broken[info.name] = why
    return models, broken


def hello(model: str = "standin") -> proto.DaemonHello:
    caps = proto.Capabilities(list(proto.Mode), True, False, MAX_IMAGE_SIDE, proto.DEFAULT_MAX_PAYLOAD)
    return proto.DaemonHello("standin-0.1", proto.PROTOCOL_VERSION, "cpu (stand-in)", "CPUExecutionProvider",
                             model, NATIVE, NATIVE, caps)


def model_role(req: proto.GenerateRequest) -> proto.ModelRole:
    """The role whose model serves a request naming none (the daemon's rule, kept here on its
    own so a plugin-side mistake shows)."""
    if req.priority == proto.Priority.LIVE_PREVIEW:
        return proto.ModelRole.LIVE
    if req.mode in (proto.Mode.INPAINT, proto.Mode.OUTPAINT):
        return proto.ModelRole.INPAINT
    return proto.ModelRole.DEFAULT


def _outpainted(img: proto.RgbaImage, e: proto.Extend) -> proto.RgbaImage:
    width, height = img.width + e.left + e.right, img.height + e.top + e.bottom
    out = bytearray(BORDER * (width * height))
    row = img.width * 4
    for y in range(img.height):
        start = ((y + e.top) * width + e.left) * 4
        out[start:start + row] = img.pixels[y * row:(y + 1) * row]
    return proto.RgbaImage(width, height, bytes(out))


def _inpainted(img: proto.RgbaImage, mask: proto.Mask) -> proto.RgbaImage:
    out = bytearray(img.pixels)
    for i, value in enumerate(mask.pixels):
        if value:
            out[i * 4:i * 4 + 4] = FILL
    return proto.RgbaImage(img.width, img.height, bytes(out))


def result_image(req: proto.GenerateRequest) -> proto.RgbaImage:
    """The image the stand-in answers ``req`` with (see the module docs)."""
    if req.mode == proto.Mode.TXT2IMG:
        width, height = req.width or NATIVE, req.height or NATIVE
        return proto.RgbaImage(width, height, GENERATED * (width * height))
    img = req.image
    if img is None:
        raise ValueError("%s request without an image" % req.mode.name)
    if req.mode == proto.Mode.OUTPAINT:
        return _outpainted(img, req.extend)
    if req.mode == proto.Mode.INPAINT and req.mask is not None:
        return _inpainted(img, req.mask)
    return proto.RgbaImage(img.width, img.height, FILL * (img.width * img.height))


def answer(req: proto.GenerateRequest, model: str = "standin") -> proto.GenerateResult:
    image = result_image(req)
    offset_x, offset_y = (-req.extend.left, -req.extend.top) if req.mode == proto.Mode.OUTPAINT else (0, 0)
    seed = req.seed if req.seed is not None else DEFAULT_SEED
    return proto.GenerateResult(req.request_id, image, offset_x, offset_y, seed, list(TIMINGS), model)


_IMMEDIATE_ERRORS = {
    "__error__": (proto.ErrorCode.INVALID_REQUEST, REFUSAL),
    "__no_model__": (proto.ErrorCode.NO_MODEL, "no model loaded"),
    "__oom__": (proto.ErrorCode.OUT_OF_MEMORY, "CUDA out of memory"),
}


class _Client:
    """One connection: requests are answered on worker threads so a Cancel can arrive meanwhile."""

    def __init__(self, daemon: "StandinDaemon", conn: socket.socket) -> None:
        self.daemon = daemon
        self.conn = conn
        self.send_lock = threading.Lock()
        self.cancelled: Set[int] = set()
        self.waiting: Set[int] = set()  # "__none__" jobs: answered only by a Cancel

    def send(self, msg: Any) -> None:
        with self.send_lock:
            self.conn.sendall(proto.encode_daemon_message(msg))

    def serve(self) -> None:
        try:
            self._serve()
        except (OSError, proto.ProtocolError):
            pass
        finally:
            self.conn.close()

    def _serve(self) -> None:
        gone = self.daemon.close_before_hello
        if gone:
            # Wait for the hello's bytes; leaving them unread makes closing reset the connection.
            self.conn.recv(1, socket.MSG_PEEK)
            if gone == "eof":
                proto.read_client_message(self.conn)
            elif gone == "dying":
                self.daemon.stop(keep_file=True)
            return
        first = proto.read_client_message(self.conn)
        if not isinstance(first, proto.ClientHello):
            return
        self.daemon.received.append(first)
        if self.daemon.refuse_version:
            self.send(proto.ErrorReply(None, proto.ErrorCode.UNSUPPORTED_VERSION, "stand-in speaks 99"))
            return
        self.send(hello(self.daemon.default_model()))
        while True:
            msg = proto.read_client_message(self.conn)
            if msg is None:
                return
            self.daemon.received.append(msg)
            if not self._handle(msg):
                return

    def _handle(self, msg: Any) -> bool:
        """Answers one client message; False = close the connection."""
        if isinstance(msg, proto.GenerateRequest):
            return self._generate(msg)
        if isinstance(msg, proto.Cancel):
            self.cancelled.add(msg.request_id)
            if msg.request_id in self.waiting:
                self.waiting.discard(msg.request_id)
                self.send(proto.ErrorReply(msg.request_id, proto.ErrorCode.CANCELLED, "cancelled"))
        elif isinstance(msg, proto.Status):
            d = self.daemon
            uptime_ms = int((time.monotonic() - d.started) * 1000)
            models = d.list_models()
            running = min(d.running) if d.running else None
            self.send(proto.DaemonStatus(d.default_model(), "cpu (stand-in)", "CPUExecutionProvider", 0, running,
                                         d.connected, d.jobs_completed, uptime_ms,
                                         sum(m.weight_bytes for m in models if m.loaded), 0, len(models), ""))
        elif isinstance(msg, proto.ListModels):
            self.send(proto.Models(self.daemon.list_models()))
        elif isinstance(msg, proto.Shutdown):
            try:
                self.send(proto.ShuttingDown())
            finally:  # a client that closed right after asking must not keep the stand-in running
                self.daemon.stop()
            return False
        return True

    def _generate(self, req: proto.GenerateRequest) -> bool:
        rid = req.request_id
        self.daemon.record(req)
        model = self.daemon.model_for(req)
        if model is None:  # refused before queueing, as the daemon's request check does
            names = ", ".join(m.name for m in self.daemon.models)
            self.send(proto.ErrorReply(rid, proto.ErrorCode.NO_MODEL,
                                       "no model named %r (the daemon offers: %s)" % (req.model, names)))
            return True
        self.send(proto.Accepted(rid, 0))
        if req.prompt in _IMMEDIATE_ERRORS:
            code, text = _IMMEDIATE_ERRORS[req.prompt]
            self.send(proto.ErrorReply(rid, code, text))
        elif req.prompt == "__none__":
            self.waiting.add(rid)
        elif req.prompt == "__supersede__":
            self.send(proto.Superseded(rid, rid + 1))
        elif req.prompt == "__drop__":
            return False
        elif req.prompt == "__bad_frame__":
            self.send(proto.ErrorReply(None, proto.ErrorCode.BAD_FRAME, "undecodable payload"))
            return False
        else:
            threading.Thread(target=self._run, args=(req, model.name), daemon=True).start()
        return True

    def _run(self, req: proto.GenerateRequest, model: str) -> None:
        slow = req.prompt == "__slow__"
        total = SLOW_STEPS if slow else max(1, req.steps)
        preview = proto.RgbaImage(1, 1, FILL) if req.stream_previews else None
        try:
            failure = self.daemon.ensure_loaded(model, lambda msg: self.send(replace(msg, request_id=req.request_id)))
            if failure:
                self.send(proto.ErrorReply(req.request_id, proto.ErrorCode.MODEL_LOAD_FAILED, failure))
                return
            self.daemon.running.add(req.request_id)
            for step in range(1, total + 1):
                if slow:
                    time.sleep(SLOW_STEP_S)
                if req.request_id in self.cancelled:
                    self.send(proto.ErrorReply(req.request_id, proto.ErrorCode.CANCELLED, "cancelled"))
                    return
                self.send(proto.Progress(req.request_id, step, total, preview))
            self.send(answer(req, model))
            self.daemon.jobs_completed += 1
        except OSError:
            pass
        finally:
            self.daemon.running.discard(req.request_id)


class StandinDaemon:
    """Listens on ``path`` (a Unix socket) and serves every connection on its own thread.

    ``refuse_version``: every handshake is refused with UNSUPPORTED_VERSION. ``idle_exit``: stop
    after that many seconds without a new connection (None = never). ``models`` / ``broken``:
    what ``ListModels`` offers and the models whose load fails, with why (``load_models``; default
    ``MODEL`` alone). ``record``: a file that gets one JSON line per generate request.
    ``close_before_hello``: "reset" or "eof" = every connection is closed before the hello,
    "dying" = the first one, then the listener is gone (see the module docs); "" = served.
    ``received`` lists every client message in arrival order; ``running`` the ids of the jobs
    whose steps run now."""

    def __init__(self, path: str, refuse_version: bool = False, idle_exit: Optional[float] = None,
                 models: Optional[Sequence[proto.ModelInfo]] = None, broken: Optional[Dict[str, str]] = None,
                 record: str = "", close_before_hello: str = "") -> None:
        if close_before_hello not in ("", "reset", "eof", "dying"):
            raise ValueError("close_before_hello must be '', 'reset', 'eof' or 'dying', not %r" % close_before_hello)
        self.path = path
        self.refuse_version = refuse_version
        self.close_before_hello = close_before_hello
        self.running: Set[int] = set()
        self.idle_exit = idle_exit
        self.models: List[proto.ModelInfo] = list(models) if models is not None else [MODEL]
        self.broken: Dict[str, str] = dict(broken or {})
        self.resident: Set[str] = {m.name for m in self.models if m.loaded}
        self.load_errors: Dict[str, str] = {m.name: m.load_error for m in self.models if m.load_error}
        self.record_path = record
        self._models_lock = threading.Lock()
        self.received: List[Any] = []
        self.jobs_completed = 0
        self.connected = 0
        self.started = time.monotonic()
        self.stopped = threading.Event()
        self._conns: List[socket.socket] = []
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        if os.path.exists(path):
            os.unlink(path)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(8)
        self._inode = os.stat(path).st_ino
        self._keep_file = False

    # ---- models ----------------------------------------------------------------------------

    def default_model(self) -> str:
        for m in self.models:
            if proto.ModelRole.DEFAULT in m.roles:
                return m.name
        return self.models[0].name if self.models else ""

    def list_models(self) -> List[proto.ModelInfo]:
        """The ``Models`` answer: residency and load errors as they are now."""
        with self._models_lock:
            return [replace(m, loaded=m.name in self.resident, load_error=self.load_errors.get(m.name, ""))
                    for m in self.models]

    def model_for(self, req: proto.GenerateRequest) -> Optional[proto.ModelInfo]:
        """The model ``req`` runs on (None: it names one the stand-in does not offer)."""
        if req.model:
            return next((m for m in self.models if m.name == req.model), None)
        for role in (model_role(req), proto.ModelRole.DEFAULT):
            for m in self.models:
                if role in m.roles:
                    return m
        return self.models[0] if self.models else None

    def ensure_loaded(self, name: str, send: Any) -> str:
        """Loads ``name`` unless resident, reporting each component through ``send`` (a
        ``ModelLoading``); returns why the load failed ("" = resident now)."""
        with self._models_lock:
            if name in self.resident:
                return ""
            for i, component in enumerate(LOAD_COMPONENTS, 1):
                send(proto.ModelLoading(0, name, i, len(LOAD_COMPONENTS), component))
                if name in self.broken and component == BROKEN_AT:
                    self.load_errors[name] = self.broken[name]
                    return "cannot load model %s: %s" % (name, self.broken[name])
            self.resident.add(name)
            self.load_errors.pop(name, None)
            return ""

    def record(self, req: proto.GenerateRequest) -> None:
        if not self.record_path:
            return
        line = json.dumps({"request_id": req.request_id, "mode": req.mode.name.lower(), "prompt": req.prompt,
                           "model": req.model, "live": req.priority == proto.Priority.LIVE_PREVIEW})
        with self._models_lock, open(self.record_path, "a") as f:
            f.write(line + "\n")

    # ---- serving ---------------------------------------------------------------------------

    def start(self) -> "StandinDaemon":
        threading.Thread(target=self.serve, daemon=True).start()
        return self

    def serve(self) -> None:
        """Accepts connections until stopped (or idle for ``idle_exit`` seconds)."""
        # Short accept timeouts: closing a listener does not wake a thread blocked in accept().
        self.listener.settimeout(0.1)
        idle_since = time.monotonic()
        while not self.stopped.is_set():
            if self.idle_exit is not None and time.monotonic() - idle_since > self.idle_exit:
                break
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            idle_since = time.monotonic()
            conn.settimeout(None)
            self._conns.append(conn)
            self.connected += 1
            threading.Thread(target=_Client(self, conn).serve, daemon=True).start()
        self.stop()

    def stop(self, keep_file: bool = False) -> None:
        """Stops listening, ends every connection and removes the socket (unless another
        daemon has bound the path since, or ``keep_file``: left behind as by a killed daemon)."""
        if keep_file:
            self._keep_file = True
        self.stopped.set()
        try:
            self.listener.close()
        except OSError:
            pass
        for conn in self._conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        try:
            if not self._keep_file and os.stat(self.path).st_ino == self._inode:
                os.unlink(self.path)
        except OSError:
            pass


def main(argv: List[str]) -> int:
    args = argv[1:]
    if args and args[0] == "serve":
        args = args[1:]
    if "--fail-start" in args:
        print(START_FAILURE, flush=True)
        return 3
    path = args[args.index("--socket") + 1] if "--socket" in args else args[0]
    idle = float(args[args.index("--idle-exit") + 1]) if "--idle-exit" in args else None
    spec = args[args.index("--models") + 1] if "--models" in args else os.environ.get("LIVEFILL_STANDIN_MODELS", "")
    record = args[args.index("--record") + 1] if "--record" in args else os.environ.get("LIVEFILL_STANDIN_RECORD", "")
    gone = args[args.index("--close-before-hello") + 1] if "--close-before-hello" in args else ""
    models, broken = load_models(spec)
    daemon = StandinDaemon(path, idle_exit=idle, models=models, broken=broken, record=record,
                           close_before_hello=gone)
    print(LISTENING, path, flush=True)
    daemon.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
