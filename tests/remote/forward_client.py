"""The plugins' Python client over an ssh-forwarded daemon socket, for test_ssh_forward.sh.

Why this exists: the editors reach a daemon on another machine only through the socket path
set in the plugin, so the test drives the very modules the installers ship
(``protocol/python/livefill_plugin_core.py`` and ``livefill_client.py``) the way a plugin does,
through the forwarded socket and straight on the daemon's own one, and compares the two.

    forward_client.py check FORWARDED DIRECT              hello, ListModels, txt2img, inpaint:
                                                          the same answers both ways
    forward_client.py latency N DIRECT NAME=SOCKET...     p50 round trip of small requests,
                                                          direct and through each tunnel
    forward_client.py gone FORWARDED MARKER               the remote daemon stopped: the plugin
                                                          says so and starts nothing locally
"""

import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "protocol", "python"))

import livefill_plugin_core as core  # noqa: E402
import livefill_protocol as proto  # noqa: E402

EDITOR = core.Editor(
    install_name="krita",
    client_name="ssh-forward-test",
    daemon_settings="the test",
    starts_on="never (the test starts it)",
)
TIMEOUT_S = 120.0


def connect(socket_setting):
    """A connection as a plugin makes it from its socket setting, with auto-start off."""
    path = core.resolve_socket(socket_setting)
    return core.open_connection(path, None, [], EDITOR, start=False)


def picture(width, height):
    """A gradient RGBA picture and a mask over its middle."""
    pixels = bytearray()
    mask = bytearray()
    for y in range(height):
        for x in range(width):
            pixels += bytes((x * 255 // width, y * 255 // height, 128, 255))
            inside = width // 4 <= x < 3 * width // 4 and height // 4 <= y < 3 * height // 4
            mask.append(255 if inside else 0)
    return proto.RgbaImage(width, height, bytes(pixels)), proto.Mask(width, height, bytes(mask))


def requests(hello):
    caps = hello.capabilities
    image, mask = picture(192, 160)
    budget = dict(steps=caps.default_steps, guidance=caps.default_guidance, seed=7)
    return [
        proto.GenerateRequest(mode=proto.Mode.TXT2IMG, prompt="a barn", width=64, height=64, **budget),
        proto.GenerateRequest(mode=proto.Mode.INPAINT, prompt="a door", image=image, mask=mask,
                              feather=8, color_match=True, **budget),
    ]


def run(conn, request):
    request.request_id = 0
    return conn.wait_for(conn.generate(request), timeout=TIMEOUT_S)


def check(forwarded, direct):
    with connect(forwarded) as far, connect(direct) as near:
        assert far.hello == near.hello, "the hellos differ:\n%s\n%s" % (far.hello, near.hello)
        print("hello through the tunnel: model %s on %s (%s)" % (far.hello.model, far.hello.device,
                                                                 far.hello.execution_provider))
        models = far.list_models()
        assert [m.name for m in models] == [m.name for m in near.list_models()]
        for request in requests(far.hello):
            a, b = run(far, request), run(near, request)
            assert a.image == b.image, "%s: the forwarded result differs from the direct one" % request.mode
            assert (a.offset_x, a.offset_y, a.seed, a.model) == (b.offset_x, b.offset_y, b.seed, b.model)
            print("%s through the tunnel: %dx%d, seed %d, model %r, same pixels as direct"
                  % (request.mode.name, a.image.width, a.image.height, a.seed, a.model))


def latency(n, direct, tunnels):
    """p50 of n round trips (request frame written → result read) straight on the daemon's
    socket and through each tunnel (``name=socket``), interleaved so drift hits all alike."""
    routes = [("direct", direct)] + [tuple(t.split("=", 1)) for t in tunnels]
    conns = [(name, connect(path)) for name, path in routes]
    txt2img, inpaint = requests(conns[0][1].hello)
    kinds = [
        ("status (no work)", lambda conn: conn.status(timeout=TIMEOUT_S)),
        ("txt2img 64x64", lambda conn: run(conn, txt2img)),
        ("inpaint 192x160", lambda conn: run(conn, inpaint)),
    ]
    try:
        for kind, ask in kinds:
            times = {name: [] for name, _ in conns}
            for i in range(n + 2):
                for name, conn in conns:
                    start = time.perf_counter()
                    ask(conn)
                    if i >= 2:  # warm-up
                        times[name].append((time.perf_counter() - start) * 1000.0)
            base = statistics.median(times["direct"])
            parts = ["direct %.2f ms" % base]
            for name, _ in conns[1:]:
                p50 = statistics.median(times[name])
                parts.append("%s %.2f ms (%+.2f)" % (name, p50, p50 - base))
            print("latency %-16s p50 of %d: %s" % (kind, n, ", ".join(parts)))
    finally:
        for _, conn in conns:
            conn.close()


def gone(forwarded, marker):
    """The tunnel is up but its daemon is not: connecting as a plugin with auto-start on fails
    (ssh accepts, then drops the connection), and the executable it would start (it writes
    ``marker``) never runs, since something answers at the socket."""
    exe = marker + ".sh"
    with open(exe, "w") as f:
        f.write("#!/bin/sh\ntouch '%s'\n" % marker)
    os.chmod(exe, 0o755)
    try:
        core.connect_or_start(core.resolve_socket(forwarded), exe, [], EDITOR, start_timeout=5.0)
    except core.PluginError as e:
        text = str(e)
    else:
        raise AssertionError("connected through a tunnel whose daemon is gone")
    # ssh closes the accepted connection (a reset or an end of stream, by timing): said in words.
    assert text.startswith("Something at %s accepted the connection but closed it before the livefill daemon "
                           "answered: the daemon behind that socket is not running." % forwarded), text
    assert "check the tunnel" in text and "Errno" not in text, text
    assert not os.path.exists(marker), "the plugin core started a local daemon"
    print("plugin error: %s" % text)


def main(argv):
    if len(argv) >= 3 and argv[0] == "check":
        check(argv[1], argv[2])
    elif len(argv) >= 4 and argv[0] == "latency":
        latency(int(argv[1]), argv[2], argv[3:])
    elif len(argv) == 3 and argv[0] == "gone":
        gone(argv[1], argv[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
