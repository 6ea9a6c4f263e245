#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target, `fuzz/corpus/<target>/`, from the repo's own files.

Exists so the seeds are reproducible and small: the golden frames as they are (and a few
streams of several frames), the fixture ONNX graphs with their weights and all but a few nodes
cut out (the header reader only looks at the graph's inputs, outputs, initializer names,
external-data entries and node operator types; a full fixture graph is 150 KB to 1.6 MB, and the
stable replay reads those directly), one graph with external data, small `.npy` files of every
header version, config files and prompts. Run it from anywhere; it needs only Python 3. Files the
fuzzers found (the findings' inputs) are added to the corpus by hand, with a `finding-` prefix, and
are left alone here.
"""

import os
import shutil
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")
GOLDEN = os.path.join(ROOT, "protocol", "tests", "golden", "rust")


def out_dir(target):
    path = os.path.join(CORPUS, target)
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):
        if not name.startswith("finding-"):
            os.remove(os.path.join(path, name))
    return path


def write(target, name, data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(os.path.join(DIRS[target], name), "wb") as f:
        f.write(data)


DIRS = {}


# --- protobuf wire format (just enough to rewrite ONNX files) -----------------------------------


def read_varint(buf, pos):
    value, shift = 0, 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


def varint(value):
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def fields(buf):
    """(field number, wire type, raw bytes of the whole field, payload) for each field."""
    pos = 0
    while pos < len(buf):
        start = pos
        tag, pos = read_varint(buf, pos)
        wire = tag & 7
        if wire == 0:
            value, pos = read_varint(buf, pos)
            payload = value
        elif wire == 1:
            payload, pos = buf[pos : pos + 8], pos + 8
        elif wire == 5:
            payload, pos = buf[pos : pos + 4], pos + 4
        elif wire == 2:
            n, pos = read_varint(buf, pos)
            payload, pos = buf[pos : pos + n], pos + n
        else:
            raise ValueError(f"wire type {wire}")
        yield tag >> 3, wire, buf[start:pos], payload


def length_field(number, payload):
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def shrink_tensor(tensor, external):
    """An initializer without its data (optionally turned into an external one)."""
    data_fields = {4, 5, 6, 7, 9, 10, 11}  # float/int32/string/int64/raw/double/uint64 data
    out = b"".join(raw for number, _, raw, _ in fields(tensor) if number not in data_fields)
    if external:
        for key, value in (("location", "weights.pb"), ("offset", "0"), ("length", "4096")):
            entry = length_field(1, key.encode()) + length_field(2, value.encode())
            out += length_field(13, entry)
        out += varint(14 << 3) + varint(1)  # data_location = EXTERNAL
    return out


def shrink_graph(graph, keep_nodes, external):
    out, kept, first_initializer = [], 0, True
    for number, _, raw, payload in fields(graph):
        if number == 1:  # node: keep a few, and every random one
            op = next((p for n, _, _, p in fields(payload) if n == 4), b"")
            if kept < keep_nodes or op.startswith(b"Random"):
                kept += 1
                out.append(raw)
        elif number == 5:  # initializer
            out.append(length_field(5, shrink_tensor(payload, external and first_initializer)))
            first_initializer = False
        else:
            out.append(raw)
    return b"".join(out)


def shrink_model(model, keep_nodes=3, external=False):
    out = []
    for number, _, raw, payload in fields(model):
        if number == 7:
            out.append(length_field(7, shrink_graph(payload, keep_nodes, external)))
        else:
            out.append(raw)
    return b"".join(out)


# --- the targets ---------------------------------------------------------------------------------


def frames():
    golden = {name: open(os.path.join(GOLDEN, name), "rb").read() for name in sorted(os.listdir(GOLDEN))}
    for target, prefix in (("client_frames", "client_"), ("daemon_frames", "daemon_")):
        mine = {n: d for n, d in golden.items() if n.startswith(prefix)}
        for name, data in mine.items():
            write(target, name, data)
        names = sorted(mine)
        # A connection's stream: several frames, and a frame followed by a broken one.
        write(target, "stream_all.bin", b"".join(mine[n] for n in names))
        write(target, "stream_then_cut.bin", mine[names[0]] + mine[names[-1]][:-3])
        write(target, "stream_bad_payload.bin", mine[names[0]] + mine[names[0]][:12] + mine[names[0]][:12])
    for name, data in golden.items():
        if name.startswith("client_generate"):
            write("request", name, data)


def onnx():
    fixtures = os.path.join(ROOT, "tests", "fixtures")
    for model in ("tiny-sd", "tiny-lcm", "tiny-sd-inpaint"):
        for part in sorted(os.listdir(os.path.join(fixtures, model))):
            path = os.path.join(fixtures, model, part, "model.onnx")
            if os.path.isfile(path) and (model == "tiny-sd" or part == "unet"):
                data = open(path, "rb").read()
                write("onnx_header", f"{model}-{part}.onnx", shrink_model(data))
    unet = open(os.path.join(fixtures, "tiny-sd", "unet", "model.onnx"), "rb").read()
    write("onnx_header", "tiny-sd-unet-external.onnx", shrink_model(unet, keep_nodes=1, external=True))


def npy_bytes(version, shape, values, descr="<f4", fortran=False):
    dims = ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "")
    header = f"{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': ({dims}), }}"
    size_len = 2 if version == 1 else 4
    header += " " * ((-(10 + size_len - 2 + len(header) + 1)) % 64) + "\n"
    size = struct.pack("<H" if version == 1 else "<I", len(header))
    return b"\x93NUMPY" + bytes([version, 0]) + size + header.encode() + struct.pack(f"<{len(values)}f", *values)


def npy():
    write("npy", "v1_2x3.npy", npy_bytes(1, (2, 3), [1, 2, 3, 4, 5, -6.5]))
    write("npy", "v1_scalar.npy", npy_bytes(1, (), [0.5]))
    write("npy", "v1_empty.npy", npy_bytes(1, (0, 4), []))
    write("npy", "v2_4.npy", npy_bytes(2, (4,), [0, 1, 2, 3]))
    write("npy", "v3_1x1x2.npy", npy_bytes(3, (1, 1, 2), [float("inf"), float("nan")]))
    write("npy", "v1_f8.npy", npy_bytes(1, (1,), [1.0, 2.0], descr="<f8"))
    write("npy", "v1_fortran.npy", npy_bytes(1, (2, 2), [1, 2, 3, 4], fortran=True))
    noise = os.path.join(ROOT, "tests", "fixtures", "reference", "noise", "lcm_txt2img_g4_s4.npy")
    shutil.copy(noise, os.path.join(DIRS["npy"], "fixture_noise.npy"))


CONFIGS = {
    "empty.toml": "",
    "model.toml": 'model = "/models/sd15-lcm"\n',
    "models_array.toml": 'model = "~/m/a" # default\nmodels = [\n  "/abs",\n  \'rel/b\', # c\n]\n',
    "models_string.toml": "models = 'one'\n",
    "other_keys.toml": 'socket = "/tmp/s"\n[table]\nmodel = "no"\n[[array]]\nx = 1\n',
    "escapes.toml": 'model = "/m/a \\"b\\" \\u00e9 \\t"\nmodels = ["""multi\nline""", \'\'\'lit\'\'\']\n',
    "bad_type.toml": "model = 5\n",
    "bad_array.toml": "\nmodels = [1, 2]\n",
    "unterminated.toml": '# ok\nmodel = "open\n',
    "inline_table.toml": 'x = { a = 1, b = [1.5, 2e3], c = 1979-05-27T07:32:00Z }\nmodel = "/m"\n',
    "unicode.toml": 'model = "/mödel/😀"\n"quoted key" = true\n',
}

PROMPTS = {
    "simple.txt": "a red door in a white wall",
    "empty.txt": "",
    "long.txt": "a photograph of an astronaut riding a horse on the moon, " * 12,
    "unicode.txt": "Ein Öl-Gemälde: 猫と犬, emoji 🐈‍⬛🎨, combining e\u0301, RTL \u202eabc",
    "whitespace.txt": "  tabs\tand\nnew\r\nlines   \u00a0nbsp\u3000ideographic  ",
    "specials.txt": "<|startoftext|>x<|endoftext|> </w> 's 't 're 've 'm 'll 'd 123 4.5e6 !!! ???",
    "bytes.txt": "".join(chr(c) for c in range(1, 256)),
    "weights.txt": "(masterpiece:1.2), [blurry], {best quality}, ((very detailed)), a|b",
}


def main():
    for target in ("client_frames", "daemon_frames", "request", "onnx_header", "npy", "config", "tokenizer"):
        DIRS[target] = out_dir(target)
    frames()
    onnx()
    npy()
    for name, text in CONFIGS.items():
        write("config", name, text)
    for name, text in PROMPTS.items():
        write("tokenizer", name, text)


if __name__ == "__main__":
    main()
