#!/usr/bin/env python3
"""Stand-in livefill daemon for developing and testing the GIMP plug-in without the real one.

Exists so the plug-in's GIMP side can be exercised before (or without) ``livefill serve``: it
speaks the real wire protocol through the shared codec (``protocol/python/livefill_protocol.py``)
and answers every Generate with a deterministic image whose geometry follows the daemon's rules
(img2img / inpaint: same size at offset 0,0, unselected pixels copied from the input; outpaint:
grown by the borders with a negative offset; txt2img: width x height, 0 = 64).

Usage: standin_server.py SOCKET_PATH   (runs until killed or sent Shutdown)
"""

import os
import socket
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "protocol", "python"))
import livefill_protocol as lp  # noqa: E402

NATIVE = 64
FILL = (40, 200, 90, 255)


def hello():
    caps = lp.Capabilities(modes=[lp.Mode.TXT2IMG, lp.Mode.IMG2IMG, lp.Mode.INPAINT, lp.Mode.OUTPAINT],
                           inpainting_unet=False, taesd_previews=False, max_image_side=4096,
                           max_frame_bytes=lp.DEFAULT_MAX_PAYLOAD)
    return lp.DaemonHello(daemon_version="standin", protocol_version=lp.PROTOCOL_VERSION,
                          device="cpu", execution_provider="none", model="standin",
                          native_width=NATIVE, native_height=NATIVE, capabilities=caps)


def generate(req):
    seed = req.seed if req.seed is not None else 1234
    fill = bytes(FILL)
    if req.mode == lp.Mode.TXT2IMG:
        w, h = req.width or NATIVE, req.height or NATIVE
        return lp.RgbaImage(w, h, fill * (w * h)), 0, 0, seed
    img = req.image
    if req.mode == lp.Mode.OUTPAINT:
        e = req.extend
        w, h = img.width + e.left + e.right, img.height + e.top + e.bottom
        out = bytearray(fill * (w * h))
        for y in range(img.height):
            row = img.pixels[y * img.width * 4:(y + 1) * img.width * 4]
            start = ((y + e.top) * w + e.left) * 4
            out[start:start + len(row)] = row
        return lp.RgbaImage(w, h, bytes(out)), -e.left, -e.top, seed
    out = bytearray(img.pixels)
    if req.mode == lp.Mode.IMG2IMG or req.mask is None:
        for i in range(0, len(out), 4):
            out[i:i + 4] = fill
    else:
        m = req.mask.pixels
        for i, v in enumerate(m):
            if v >= 128:
                out[i * 4:i * 4 + 4] = fill
    return lp.RgbaImage(img.width, img.height, bytes(out)), 0, 0, seed


def serve_client(conn):
    """Serves one connection. Jobs run on a worker thread so Cancel can arrive meanwhile.
    Test hooks by prompt: ``__error__`` answers ErrorReply(INVALID_REQUEST); ``__slow__`` takes
    0.3 s per step (and honours Cancel); ``__none__`` never answers."""
    f = conn.makefile("rb")
    send_lock = threading.Lock()
    cancelled = set()

    def send(msg):
        with send_lock:
            conn.sendall(lp.encode_daemon_message(msg))

    def job(msg):
        rid = msg.request_id
        try:
            send(lp.Accepted(rid, 0))
            if msg.prompt == "__none__":
                return
            if msg.prompt == "__error__":
                send(lp.ErrorReply(rid, lp.ErrorCode.INVALID_REQUEST, "stand-in refuses this prompt"))
                return
            for step in range(1, msg.steps + 1):
                if msg.prompt == "__slow__":
                    time.sleep(0.3)
                if rid in cancelled:
                    send(lp.ErrorReply(rid, lp.ErrorCode.CANCELLED, "cancelled"))
                    return
                send(lp.Progress(rid, step, msg.steps, None))
            image, ox, oy, seed = generate(msg)
            send(lp.GenerateResult(rid, image, ox, oy, seed, []))
        except OSError:
            pass

    try:
        first = lp.read_client_message(f)
        if not isinstance(first, lp.ClientHello):
            return
        send(hello())
        while True:
            msg = lp.read_client_message(f)
            if msg is None:
                return
            if isinstance(msg, lp.GenerateRequest):
                threading.Thread(target=job, args=(msg,), daemon=True).start()
            elif isinstance(msg, lp.Cancel):
                cancelled.add(msg.request_id)
            elif isinstance(msg, lp.Shutdown):
                try:
                    send(lp.ShuttingDown())
                finally:
                    os._exit(0)
    except (OSError, lp.ProtocolError):
        pass
    finally:
        conn.close()


def listen(path):
    """Binds the listening socket (replacing a stale one) and returns it."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.exists(path):
        os.unlink(path)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(8)
    return srv


def accept_loop(srv):
    while True:
        try:
            c, _ = srv.accept()
        except OSError:
            return
        threading.Thread(target=serve_client, args=(c,), daemon=True).start()


def main():
    # Accepts "SOCKET" or the daemon's CLI shape "serve --socket SOCKET [...]" (so tests can pass
    # a wrapper around this script as the livefill executable).
    args = sys.argv[1:]
    path = args[args.index("--socket") + 1] if "--socket" in args else args[0]
    srv = listen(path)
    print("standin listening on", path, flush=True)
    accept_loop(srv)


if __name__ == "__main__":
    main()
