#!/usr/bin/env python3
"""A stand-in livefill daemon for developing and testing the Krita plugin without a model.

Why this exists: the plugin's placement logic (offsets, masks, canvas growth) must be checked
even where the real daemon cannot run; this server speaks the real protocol through the shared
codec (``protocol/python/livefill_protocol.py``) and answers deterministically:

* inpaint / img2img: the sent image, with every pixel turned solid magenta (255, 0, 255, 255)
  inside the mask's bounds (whole image without a mask), at offset (0, 0);
* outpaint: the sent image grown by ``extend``, new border solid cyan, offset (-left, -top);
* txt2img: a solid orange image of the requested size (64x64 when 0).

Prompts starting with ``__`` trigger behaviours for error tests: ``__no_model__`` and ``__oom__``
answer with that ErrorReply, ``__slow__`` takes 10 s (in steps, so a Cancel ends it early with
ErrorReply CANCELLED).

Usage: fake_daemon.py SOCKET_PATH  (runs until killed or sent Shutdown).
"""

import os
import socket
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "protocol", "python"))

import livefill_protocol as proto  # noqa: E402

MAGENTA = bytes((255, 0, 255, 255))
CYAN = bytes((0, 255, 255, 255))
ORANGE = bytes((255, 128, 0, 255))


def mask_bounds(mask: proto.Mask):
    xs, ys = [], []
    w = mask.width
    for y in range(mask.height):
        row = mask.pixels[y * w:(y + 1) * w]
        if row.strip(b"\x00"):
            ys.append(y)
            xs.append(len(row) - len(row.lstrip(b"\x00")))
            xs.append(len(row.rstrip(b"\x00")) - 1)
    if not ys:
        return None
    return min(xs), min(ys), max(xs), max(ys)


def answer(req: proto.GenerateRequest) -> proto.GenerateResult:
    seed = req.seed if req.seed is not None else 1234
    if req.mode == proto.Mode.TXT2IMG:
        w = req.width or 64
        h = req.height or 64
        return proto.GenerateResult(req.request_id, proto.RgbaImage(w, h, ORANGE * (w * h)), 0, 0, seed, [])
    img = req.image
    assert img is not None
    if req.mode == proto.Mode.OUTPAINT:
        e = req.extend
        nw, nh = img.width + e.left + e.right, img.height + e.top + e.bottom
        out = bytearray(CYAN * (nw * nh))
        row = img.width * 4
        for y in range(img.height):
            d = ((y + e.top) * nw + e.left) * 4
            out[d:d + row] = img.pixels[y * row:(y + 1) * row]
        return proto.GenerateResult(req.request_id, proto.RgbaImage(nw, nh, bytes(out)), -e.left, -e.top, seed, [])
    out = bytearray(img.pixels)
    box = mask_bounds(req.mask) if req.mask is not None else (0, 0, img.width - 1, img.height - 1)
    if box is not None:
        x0, y0, x1, y1 = box
        for y in range(y0, y1 + 1):
            d = (y * img.width + x0) * 4
            out[d:d + (x1 - x0 + 1) * 4] = MAGENTA * (x1 - x0 + 1)
    return proto.GenerateResult(req.request_id, proto.RgbaImage(img.width, img.height, bytes(out)), 0, 0, seed,
                                [proto.StageTiming("unet", 1.0)])


def serve_client(conn: socket.socket, stop: threading.Event) -> None:
    lock = threading.Lock()
    cancelled = set()

    def slow_job(req) -> None:
        for step in range(1, 101):
            if req.request_id in cancelled:
                send(proto.ErrorReply(req.request_id, proto.ErrorCode.CANCELLED, "cancelled"))
                return
            send(proto.Progress(req.request_id, step, 100, None))
            stop.wait(0.1)
        send(answer(req))

    def send(msg) -> None:
        with lock:
            conn.sendall(proto.encode_daemon_message(msg))

    try:
        hello = proto.read_client_message(conn)
        if not isinstance(hello, proto.ClientHello):
            return
        send(proto.DaemonHello("fake-0.1", proto.PROTOCOL_VERSION, "cpu (fake)", "CPUExecutionProvider",
                               "fake-model", 64, 64,
                               proto.Capabilities(list(proto.Mode), True, False, 2048, proto.DEFAULT_MAX_PAYLOAD)))
        while True:
            msg = proto.read_client_message(conn)
            if msg is None:
                return
            if isinstance(msg, proto.GenerateRequest):
                send(proto.Accepted(msg.request_id, 0))
                if msg.prompt == "__no_model__":
                    send(proto.ErrorReply(msg.request_id, proto.ErrorCode.NO_MODEL, "no model loaded"))
                    continue
                if msg.prompt == "__oom__":
                    send(proto.ErrorReply(msg.request_id, proto.ErrorCode.OUT_OF_MEMORY, "CUDA out of memory"))
                    continue
                if msg.prompt == "__slow__":
                    threading.Thread(target=slow_job, args=(msg,), daemon=True).start()
                    continue
                for step in range(1, msg.steps + 1):
                    send(proto.Progress(msg.request_id, step, msg.steps, None))
                send(answer(msg))
            elif isinstance(msg, proto.Cancel):
                cancelled.add(msg.request_id)
            elif isinstance(msg, proto.Status):
                send(proto.DaemonStatus("fake-model", "cpu (fake)", "CPUExecutionProvider", 0, None, 1, 0, 0))
            elif isinstance(msg, proto.Shutdown):
                send(proto.ShuttingDown())
                stop.set()
                return
    except (OSError, proto.ProtocolError):
        return
    finally:
        conn.close()


def main() -> None:
    path = sys.argv[1]
    if os.path.exists(path):
        os.unlink(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(8)
    srv.settimeout(0.2)
    stop = threading.Event()
    print("fake livefill daemon listening on %s" % path, flush=True)
    while not stop.is_set():
        try:
            conn, _ = srv.accept()
        except socket.timeout:
            continue
        conn.settimeout(None)
        threading.Thread(target=serve_client, args=(conn, stop), daemon=True).start()
    srv.close()
    os.unlink(path)


if __name__ == "__main__":
    main()
