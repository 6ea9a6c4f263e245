"""livefill wire protocol codec for Python (stdlib only, Python 3.8+).

Why this module exists: the Krita and GIMP plugins talk to the livefill daemon in the same binary
format as the Rust side (``protocol/src``); this is the one Python implementation of it, shared by
both plugins and copied next to their code by the installers. ``protocol/PROTOCOL.md`` is the
byte-level spec; the golden-frame tests keep this file and the Rust codec byte-identical.

A frame is a 12-byte header (magic ``b"LVFL"``, version u16 LE, flags u16 LE = 0, payload length
u32 LE) followed by the payload: the message in bincode's "legacy" layout (little-endian
fixed-width integers, u64 lengths, u32 enum variant indices, u8 option tags and bools, f32 LE).

Messages are dataclasses mirroring the Rust types field for field (same names, same order). A
Rust enum variant that carries a struct is represented by that struct (``ClientHello``,
``GenerateRequest``, ``DaemonHello``, ``GenerateResult``, ``ErrorReply``, ``DaemonStatus``); the
other variants have their own small dataclass (``Cancel``, ``Status``, ``Accepted``,
``Progress``, ...). Pixel buffers are ``bytes`` and are moved by slicing, never per pixel.
"""

import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Callable, Dict, List, Optional, Tuple, Type, Union

PROTOCOL_VERSION = 3
MAGIC = b"LVFL"
HEADER_LEN = 12
#: Default bound on a payload: an 8192x8192 RGBA image plus its mask, plus 1 MiB.
DEFAULT_MAX_PAYLOAD = 8192 * 8192 * 5 + (1 << 20)

_HEADER = struct.Struct("<4sHHI")
_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_I32 = struct.Struct("<i")
_F32 = struct.Struct("<f")


# --------------------------------------------------------------------------------------------
# Enums (IntEnum value = bincode variant index)
# --------------------------------------------------------------------------------------------


class Mode(IntEnum):
    TXT2IMG = 0
    IMG2IMG = 1
    INPAINT = 2
    OUTPAINT = 3


class Context(IntEnum):
    #: Crop a padded region around the mask bounds and scale it to the model's native size.
    AUTO = 0
    #: Use the whole image as is.
    FULL = 1


class Priority(IntEnum):
    FINAL = 0
    LIVE_PREVIEW = 1


class Sampler(IntEnum):
    """The sampler of a request; ``name_of`` / ``from_name`` give the command-line names."""

    LCM = 0
    TCD = 1
    EULER = 2
    EULER_A = 3
    DPMPP_2M = 4
    DDIM = 5

    @property
    def wire_name(self) -> str:
        return self.name.lower()

    @classmethod
    def from_name(cls, name: str) -> "Sampler":
        """``"dpmpp_2m"`` -> ``Sampler.DPMPP_2M`` (ValueError for an unknown name)."""
        for s in cls:
            if s.wire_name == name:
                return s
        raise ValueError("unknown sampler %r (one of %s)" % (name, ", ".join(s.wire_name for s in cls)))


class Spacing(IntEnum):
    """Timestep spacing of a request; ``KARRAS`` = Karras sigmas (sigma-based samplers)."""

    LEADING = 0
    TRAILING = 1
    LINSPACE = 2
    KARRAS = 3

    @property
    def wire_name(self) -> str:
        return self.name.lower()

    @classmethod
    def from_name(cls, name: str) -> "Spacing":
        for s in cls:
            if s.wire_name == name:
                return s
        raise ValueError("unknown spacing %r (one of %s)" % (name, ", ".join(s.wire_name for s in cls)))


class ErrorCode(IntEnum):
    BAD_FRAME = 0
    UNSUPPORTED_VERSION = 1
    FRAME_TOO_LARGE = 2
    INVALID_REQUEST = 3
    IMAGE_TOO_LARGE = 4
    MASK_SIZE_MISMATCH = 5
    NO_MODEL = 6
    OUT_OF_MEMORY = 7
    CANCELLED = 8
    SHUTTING_DOWN = 9
    INTERNAL = 10
    MODEL_LOAD_FAILED = 11
    QUEUE_FULL = 12
    TOO_MANY_CONNECTIONS = 13


class ModelRole(IntEnum):
    """What the daemon runs a model for when a request names none."""

    DEFAULT = 0
    INPAINT = 1
    LIVE = 2

    @property
    def wire_name(self) -> str:
        return self.name.lower()


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class ProtocolError(Exception):
    """A frame could not be read or decoded. ``code`` is the matching wire ``ErrorCode``."""

    code = ErrorCode.BAD_FRAME


class BadMagic(ProtocolError):
    def __init__(self, found: bytes) -> None:
        self.found = bytes(found)
        super().__init__("not a livefill frame: bad magic %r (expected b'LVFL')" % (self.found,))


class UnsupportedVersion(ProtocolError):
    code = ErrorCode.UNSUPPORTED_VERSION

    def __init__(self, got: int, supported: int = PROTOCOL_VERSION) -> None:
        self.got = got
        self.supported = supported
        if got > supported:
            advice = "; the daemon is newer: update the plugin: livefill install-plugin krita (or gimp)"
        elif 0 < got < supported:
            advice = "; the daemon is older than this plugin: update livefill"
        else:
            advice = ""
        super().__init__(
            "unsupported protocol version %d (this side speaks version %d)%s" % (got, supported, advice)
        )


class BadFlags(ProtocolError):
    def __init__(self, flags: int) -> None:
        self.flags = flags
        super().__init__("reserved header flags must be 0, got 0x%04x" % flags)


class FrameTooLarge(ProtocolError):
    code = ErrorCode.FRAME_TOO_LARGE

    def __init__(self, length: int, max_payload: int) -> None:
        self.length = length
        self.max_payload = max_payload
        super().__init__(
            "frame payload of %d bytes exceeds the maximum of %d bytes" % (length, max_payload)
        )


class Truncated(ProtocolError):
    def __init__(self, expected: int, got: int) -> None:
        self.expected = expected
        self.got = got
        super().__init__(
            "truncated frame: expected %d bytes, got %d before end of stream" % (expected, got)
        )


class DecodeError(ProtocolError):
    def __init__(self, message: str) -> None:
        super().__init__("undecodable payload: " + message)


# --------------------------------------------------------------------------------------------
# Message types (field order = wire order; never reorder)
# --------------------------------------------------------------------------------------------


@dataclass
class RgbaImage:
    """8-bit RGBA, straight alpha, row-major, top-left origin; ``width * height * 4`` bytes."""

    width: int = 0
    height: int = 0
    pixels: bytes = b""


@dataclass
class Mask:
    """8-bit mask, ``width * height`` bytes: 255 = regenerate, 0 = keep."""

    width: int = 0
    height: int = 0
    pixels: bytes = b""


@dataclass
class Extend:
    left: int = 0
    top: int = 0
    right: int = 0
    bottom: int = 0


@dataclass
class ClientHello:
    """ClientMessage::Hello (variant 0)."""

    client_name: str = ""
    protocol_version: int = PROTOCOL_VERSION


@dataclass
class GenerateRequest:
    """ClientMessage::Generate (variant 1). Defaults are Python conveniences only."""

    request_id: int = 0
    mode: Mode = Mode.TXT2IMG
    prompt: str = ""
    negative_prompt: str = ""
    seed: Optional[int] = None
    steps: int = 4
    guidance: float = 1.0
    strength: float = 1.0
    width: int = 0
    height: int = 0
    image: Optional[RgbaImage] = None
    mask: Optional[Mask] = None
    extend: Extend = field(default_factory=Extend)
    context: Context = Context.AUTO
    feather: int = 0
    color_match: bool = False
    priority: Priority = Priority.FINAL
    stream_previews: bool = False
    #: None = the model's default sampler (``Capabilities.default_sampler``).
    sampler: Optional[Sampler] = None
    #: None = the model's scheduler config (or the model default when ``sampler`` is None).
    spacing: Optional[Spacing] = None
    #: DDIM's eta / TCD's gamma; None = their defaults (0 / 0.3).
    eta: Optional[float] = None
    #: The model by its ``ListModels`` name; "" = the daemon's choice for the request.
    model: str = ""


@dataclass
class Cancel:
    """ClientMessage::Cancel (variant 2)."""

    request_id: int = 0


@dataclass
class Status:
    """ClientMessage::Status (variant 3): ask for a DaemonStatus."""


@dataclass
class ListModels:
    """ClientMessage::ListModels (variant 4): ask for Models."""


@dataclass
class Shutdown:
    """ClientMessage::Shutdown (variant 5)."""


@dataclass
class Capabilities:
    modes: List[Mode] = field(default_factory=list)
    inpainting_unet: bool = False
    taesd_previews: bool = False
    max_image_side: int = 0
    max_frame_bytes: int = 0
    #: What ``sampler=None`` runs on the loaded model, with its spacing, steps and guidance.
    default_sampler: Sampler = Sampler.LCM
    default_spacing: Optional[Spacing] = None
    default_steps: int = 4
    default_guidance: float = 1.0


@dataclass
class DaemonHello:
    """DaemonMessage::Hello (variant 0)."""

    daemon_version: str = ""
    protocol_version: int = PROTOCOL_VERSION
    device: str = ""
    execution_provider: str = ""
    model: str = ""
    native_width: int = 0
    native_height: int = 0
    capabilities: Capabilities = field(default_factory=Capabilities)


@dataclass
class Accepted:
    """DaemonMessage::Accepted (variant 1)."""

    request_id: int = 0
    queue_position: int = 0


@dataclass
class Progress:
    """DaemonMessage::Progress (variant 2)."""

    request_id: int = 0
    step: int = 0
    total_steps: int = 0
    preview: Optional[RgbaImage] = None


#: Timing entry that is a part of the others (time inside ONNX Runtime's Run); see PROTOCOL.md.
ONNXRUNTIME_STAGE = "onnxruntime"


@dataclass
class StageTiming:
    stage: str = ""
    millis: float = 0.0


@dataclass
class GenerateResult:
    """DaemonMessage::Result (variant 3)."""

    request_id: int = 0
    image: RgbaImage = field(default_factory=RgbaImage)
    offset_x: int = 0
    offset_y: int = 0
    seed: int = 0
    timings: List[StageTiming] = field(default_factory=list)
    #: The model that produced the result.
    model: str = ""

    def total_millis(self) -> float:
        """The job's time: the sum of its stages (``onnxruntime`` is a part of them)."""
        return sum(t.millis for t in self.timings if t.stage != ONNXRUNTIME_STAGE)


@dataclass
class ErrorReply:
    """DaemonMessage::Error (variant 4); ``request_id`` None = connection-level problem."""

    request_id: Optional[int] = None
    code: ErrorCode = ErrorCode.INTERNAL
    message: str = ""


@dataclass
class Superseded:
    """DaemonMessage::Superseded (variant 5)."""

    request_id: int = 0
    by_request_id: int = 0


@dataclass
class DaemonStatus:
    """DaemonMessage::Status (variant 6)."""

    model: str = ""
    device: str = ""
    execution_provider: str = ""
    queued_jobs: int = 0
    running_request: Optional[int] = None
    connected_clients: int = 0
    jobs_completed: int = 0
    uptime_ms: int = 0
    #: Bytes of model weights resident now (shared files counted once).
    resident_bytes: int = 0
    #: Memory budget for resident models in bytes; 0 = the budget is a model count.
    budget_bytes: int = 0
    #: Most models resident at once; 0 = the budget is in bytes.
    max_resident_models: int = 0
    #: The model being loaded now, "" when none.
    loading_model: str = ""


@dataclass
class ModelInfo:
    name: str = ""
    path: str = ""
    unet_in_channels: int = 0
    lcm_distilled: bool = False
    dtype: str = ""
    taesd: bool = False
    loaded: bool = False
    roles: List[ModelRole] = field(default_factory=list)
    weight_bytes: int = 0
    shared_bytes: int = 0
    load_error: str = ""
    #: What a request naming this model and no sampler runs.
    default_sampler: Sampler = Sampler.LCM
    default_spacing: Optional[Spacing] = None
    default_steps: int = 4
    default_guidance: float = 1.0


@dataclass
class Models:
    """DaemonMessage::Models (variant 7)."""

    models: List[ModelInfo] = field(default_factory=list)


@dataclass
class ShuttingDown:
    """DaemonMessage::ShuttingDown (variant 8)."""


@dataclass
class ModelLoading:
    """DaemonMessage::ModelLoading (variant 9): the request's model is being loaded."""

    request_id: int = 0
    model: str = ""
    step: int = 0
    total_steps: int = 0
    component: str = ""


ClientMessage = Union[ClientHello, GenerateRequest, Cancel, Status, ListModels, Shutdown]
DaemonMessage = Union[
    DaemonHello,
    Accepted,
    Progress,
    GenerateResult,
    ErrorReply,
    Superseded,
    DaemonStatus,
    Models,
    ShuttingDown,
    ModelLoading,
]

#: Variant index -> class, per direction.
CLIENT_VARIANTS: Tuple[type, ...] = (ClientHello, GenerateRequest, Cancel, Status, ListModels, Shutdown)
DAEMON_VARIANTS: Tuple[type, ...] = (
    DaemonHello,
    Accepted,
    Progress,
    GenerateResult,
    ErrorReply,
    Superseded,
    DaemonStatus,
    Models,
    ShuttingDown,
    ModelLoading,
)


# --------------------------------------------------------------------------------------------
# Field codecs. encode(value, out) appends bytes-like parts to the list `out`;
# decode(buf, pos) returns (value, new_pos). `buf` is a memoryview.
# --------------------------------------------------------------------------------------------

Encoder = Callable[[Any, List[Any]], None]
Decoder = Callable[[memoryview, int], Tuple[Any, int]]


def _take(st: struct.Struct, buf: memoryview, pos: int) -> Tuple[Any, int]:
    end = pos + st.size
    if end > len(buf):
        raise DecodeError(
            "payload of %d bytes ends early: at least %d more bytes needed" % (len(buf), end - len(buf))
        )
    return st.unpack_from(buf, pos)[0], end


def _prim(st: struct.Struct, what: str) -> Tuple[Encoder, Decoder]:
    pack = st.pack

    def enc(v: Any, out: List[Any]) -> None:
        try:
            out.append(pack(v))
        except struct.error as e:
            raise ValueError("cannot encode %r as %s: %s" % (v, what, e)) from None

    def dec(buf: memoryview, pos: int) -> Tuple[Any, int]:
        return _take(st, buf, pos)

    return enc, dec


def _enc_bool(v: Any, out: List[Any]) -> None:
    out.append(b"\x01" if v else b"\x00")


def _dec_bool(buf: memoryview, pos: int) -> Tuple[bool, int]:
    b, pos = _take(_U8, buf, pos)
    if b > 1:
        raise DecodeError("invalid bool value %d at offset %d" % (b, pos - 1))
    return b == 1, pos


def _dec_len(buf: memoryview, pos: int) -> Tuple[int, int]:
    n, pos = _take(_U64, buf, pos)
    if n > len(buf) - pos:
        raise DecodeError(
            "length %d at offset %d exceeds the %d bytes left in the payload" % (n, pos - 8, len(buf) - pos)
        )
    return n, pos


def _enc_bytes(v: Any, out: List[Any]) -> None:
    if not isinstance(v, (bytes, bytearray, memoryview)):
        raise TypeError("expected bytes for a pixel buffer, got %s" % type(v).__name__)
    out.append(_U64.pack(len(v)))
    out.append(v)


def _dec_bytes(buf: memoryview, pos: int) -> Tuple[bytes, int]:
    n, pos = _dec_len(buf, pos)
    return buf[pos : pos + n].tobytes(), pos + n


def _enc_str(v: Any, out: List[Any]) -> None:
    if not isinstance(v, str):
        raise TypeError("expected str, got %s" % type(v).__name__)
    b = v.encode("utf-8")
    out.append(_U64.pack(len(b)))
    out.append(b)


def _dec_str(buf: memoryview, pos: int) -> Tuple[str, int]:
    n, pos = _dec_len(buf, pos)
    try:
        s = str(buf[pos : pos + n], "utf-8")
    except UnicodeDecodeError as e:
        raise DecodeError("invalid UTF-8 in string at offset %d: %s" % (pos, e)) from None
    return s, pos + n


def _option(inner: Tuple[Encoder, Decoder]) -> Tuple[Encoder, Decoder]:
    ienc, idec = inner

    def enc(v: Any, out: List[Any]) -> None:
        if v is None:
            out.append(b"\x00")
        else:
            out.append(b"\x01")
            ienc(v, out)

    def dec(buf: memoryview, pos: int) -> Tuple[Any, int]:
        tag, pos = _take(_U8, buf, pos)
        if tag == 0:
            return None, pos
        if tag == 1:
            return idec(buf, pos)
        raise DecodeError("invalid option tag %d at offset %d" % (tag, pos - 1))

    return enc, dec


def _vec(inner: Tuple[Encoder, Decoder]) -> Tuple[Encoder, Decoder]:
    ienc, idec = inner

    def enc(v: Any, out: List[Any]) -> None:
        out.append(_U64.pack(len(v)))
        for item in v:
            ienc(item, out)

    def dec(buf: memoryview, pos: int) -> Tuple[List[Any], int]:
        n, pos = _dec_len(buf, pos)  # every element takes at least one byte
        items = []
        for _ in range(n):
            item, pos = idec(buf, pos)
            items.append(item)
        return items, pos

    return enc, dec


def _enum(cls: Type[IntEnum]) -> Tuple[Encoder, Decoder]:
    def enc(v: Any, out: List[Any]) -> None:
        out.append(_U32.pack(int(cls(v))))

    def dec(buf: memoryview, pos: int) -> Tuple[Any, int]:
        i, pos = _take(_U32, buf, pos)
        try:
            return cls(i), pos
        except ValueError:
            raise DecodeError("unknown %s variant %d at offset %d" % (cls.__name__, i, pos - 4)) from None

    return enc, dec


def _struct(cls: type, fields: List[Tuple[str, Tuple[Encoder, Decoder]]]) -> Tuple[Encoder, Decoder]:
    names = [n for n, _ in fields]
    encs = [c[0] for _, c in fields]
    decs = [c[1] for _, c in fields]
    pairs = list(zip(names, encs))

    def enc(v: Any, out: List[Any]) -> None:
        if not isinstance(v, cls):
            raise TypeError("expected %s, got %s" % (cls.__name__, type(v).__name__))
        for name, e in pairs:
            e(getattr(v, name), out)

    def dec(buf: memoryview, pos: int) -> Tuple[Any, int]:
        values = []
        for d in decs:
            value, pos = d(buf, pos)
            values.append(value)
        return cls(*values), pos

    return enc, dec


U8 = _prim(_U8, "u8")
U16 = _prim(_U16, "u16")
U32 = _prim(_U32, "u32")
U64 = _prim(_U64, "u64")
I32 = _prim(_I32, "i32")
F32 = _prim(_F32, "f32")
BOOL = (_enc_bool, _dec_bool)
STR = (_enc_str, _dec_str)
BYTES = (_enc_bytes, _dec_bytes)

def _pixels(cls: type, channels: int) -> Tuple[Encoder, Decoder]:
    """An image or mask whose buffer must hold exactly width × height × channels bytes: a reply
    that says otherwise is refused here, before a plugin hands it to the editor."""
    enc, dec = _struct(cls, [("width", U32), ("height", U32), ("pixels", BYTES)])

    def checked(buf: memoryview, pos: int) -> Tuple[Any, int]:
        start = pos
        value, pos = dec(buf, pos)
        want = value.width * value.height * channels
        if len(value.pixels) != want:
            raise DecodeError(
                "%s at offset %d is %d×%d but holds %d bytes, not %d"
                % (cls.__name__, start, value.width, value.height, len(value.pixels), want)
            )
        return value, pos

    return enc, checked


_RGBA = _pixels(RgbaImage, 4)
_MASK = _pixels(Mask, 1)
_EXTEND = _struct(Extend, [("left", U32), ("top", U32), ("right", U32), ("bottom", U32)])
_TIMING = _struct(StageTiming, [("stage", STR), ("millis", F32)])
_CAPS = _struct(
    Capabilities,
    [
        ("modes", _vec(_enum(Mode))),
        ("inpainting_unet", BOOL),
        ("taesd_previews", BOOL),
        ("max_image_side", U32),
        ("max_frame_bytes", U64),
        ("default_sampler", _enum(Sampler)),
        ("default_spacing", _option(_enum(Spacing))),
        ("default_steps", U32),
        ("default_guidance", F32),
    ],
)
_MODEL_INFO = _struct(
    ModelInfo,
    [
        ("name", STR),
        ("path", STR),
        ("unet_in_channels", U32),
        ("lcm_distilled", BOOL),
        ("dtype", STR),
        ("taesd", BOOL),
        ("loaded", BOOL),
        ("roles", _vec(_enum(ModelRole))),
        ("weight_bytes", U64),
        ("shared_bytes", U64),
        ("load_error", STR),
        ("default_sampler", _enum(Sampler)),
        ("default_spacing", _option(_enum(Spacing))),
        ("default_steps", U32),
        ("default_guidance", F32),
    ],
)

_CLIENT_CODECS: List[Tuple[Encoder, Decoder]] = [
    _struct(ClientHello, [("client_name", STR), ("protocol_version", U16)]),
    _struct(
        GenerateRequest,
        [
            ("request_id", U64),
            ("mode", _enum(Mode)),
            ("prompt", STR),
            ("negative_prompt", STR),
            ("seed", _option(U64)),
            ("steps", U32),
            ("guidance", F32),
            ("strength", F32),
            ("width", U32),
            ("height", U32),
            ("image", _option(_RGBA)),
            ("mask", _option(_MASK)),
            ("extend", _EXTEND),
            ("context", _enum(Context)),
            ("feather", U32),
            ("color_match", BOOL),
            ("priority", _enum(Priority)),
            ("stream_previews", BOOL),
            ("sampler", _option(_enum(Sampler))),
            ("spacing", _option(_enum(Spacing))),
            ("eta", _option(F32)),
            ("model", STR),
        ],
    ),
    _struct(Cancel, [("request_id", U64)]),
    _struct(Status, []),
    _struct(ListModels, []),
    _struct(Shutdown, []),
]

_DAEMON_CODECS: List[Tuple[Encoder, Decoder]] = [
    _struct(
        DaemonHello,
        [
            ("daemon_version", STR),
            ("protocol_version", U16),
            ("device", STR),
            ("execution_provider", STR),
            ("model", STR),
            ("native_width", U32),
            ("native_height", U32),
            ("capabilities", _CAPS),
        ],
    ),
    _struct(Accepted, [("request_id", U64), ("queue_position", U32)]),
    _struct(
        Progress,
        [("request_id", U64), ("step", U32), ("total_steps", U32), ("preview", _option(_RGBA))],
    ),
    _struct(
        GenerateResult,
        [
            ("request_id", U64),
            ("image", _RGBA),
            ("offset_x", I32),
            ("offset_y", I32),
            ("seed", U64),
            ("timings", _vec(_TIMING)),
            ("model", STR),
        ],
    ),
    _struct(ErrorReply, [("request_id", _option(U64)), ("code", _enum(ErrorCode)), ("message", STR)]),
    _struct(Superseded, [("request_id", U64), ("by_request_id", U64)]),
    _struct(
        DaemonStatus,
        [
            ("model", STR),
            ("device", STR),
            ("execution_provider", STR),
            ("queued_jobs", U32),
            ("running_request", _option(U64)),
            ("connected_clients", U32),
            ("jobs_completed", U64),
            ("uptime_ms", U64),
            ("resident_bytes", U64),
            ("budget_bytes", U64),
            ("max_resident_models", U32),
            ("loading_model", STR),
        ],
    ),
    _struct(Models, [("models", _vec(_MODEL_INFO))]),
    _struct(ShuttingDown, []),
    _struct(
        ModelLoading,
        [("request_id", U64), ("model", STR), ("step", U32), ("total_steps", U32), ("component", STR)],
    ),
]

_CLIENT_INDEX: Dict[type, int] = {cls: i for i, cls in enumerate(CLIENT_VARIANTS)}
_DAEMON_INDEX: Dict[type, int] = {cls: i for i, cls in enumerate(DAEMON_VARIANTS)}


# --------------------------------------------------------------------------------------------
# Payloads
# --------------------------------------------------------------------------------------------


def _encode_parts(msg: Any, index: Dict[type, int], codecs: List[Tuple[Encoder, Decoder]], side: str) -> List[Any]:
    i = index.get(type(msg))
    if i is None:
        raise TypeError("%s is not a %s message" % (type(msg).__name__, side))
    out: List[Any] = [_U32.pack(i)]
    codecs[i][0](msg, out)
    return out


def _decode(payload: Any, codecs: List[Tuple[Encoder, Decoder]], side: str) -> Any:
    buf = memoryview(payload).cast("B")
    i, pos = _take(_U32, buf, 0)
    if i >= len(codecs):
        raise DecodeError("unknown %s message variant %d" % (side, i))
    msg, pos = codecs[i][1](buf, pos)
    if pos != len(buf):
        raise DecodeError(
            "%d trailing bytes after the message (%d of %d payload bytes used)" % (len(buf) - pos, pos, len(buf))
        )
    return msg


def encode_client_payload(msg: ClientMessage) -> bytes:
    """The payload (no header) of a client message."""
    return b"".join(_encode_parts(msg, _CLIENT_INDEX, _CLIENT_CODECS, "client"))


def encode_daemon_payload(msg: DaemonMessage) -> bytes:
    """The payload (no header) of a daemon message."""
    return b"".join(_encode_parts(msg, _DAEMON_INDEX, _DAEMON_CODECS, "daemon"))


def decode_client_payload(payload: Any) -> ClientMessage:
    """Decodes a whole client payload (bytes-like, no header); trailing bytes are an error."""
    return _decode(payload, _CLIENT_CODECS, "client")


def decode_daemon_payload(payload: Any) -> DaemonMessage:
    """Decodes a whole daemon payload (bytes-like, no header); trailing bytes are an error."""
    return _decode(payload, _DAEMON_CODECS, "daemon")


# --------------------------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------------------------


@dataclass
class FrameHeader:
    version: int
    flags: int
    payload_len: int


def encode_header(payload_len: int) -> bytes:
    """The 12 header bytes for a payload of ``payload_len`` bytes."""
    if not 0 <= payload_len <= 0xFFFFFFFF:
        raise FrameTooLarge(payload_len, 0xFFFFFFFF)
    return _HEADER.pack(MAGIC, PROTOCOL_VERSION, 0, payload_len)


def parse_header(data: Any, max_payload: int = DEFAULT_MAX_PAYLOAD) -> FrameHeader:
    """Parses and validates 12 header bytes: magic, version, flags, then length (in that order)."""
    if len(data) < HEADER_LEN:
        raise Truncated(HEADER_LEN, len(data))
    magic, version, flags, length = _HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise BadMagic(magic)
    if version != PROTOCOL_VERSION:
        raise UnsupportedVersion(version, PROTOCOL_VERSION)
    if flags != 0:
        raise BadFlags(flags)
    if length > max_payload:
        raise FrameTooLarge(length, max_payload)
    return FrameHeader(version, flags, length)


def _frame(parts: List[Any]) -> bytes:
    size = sum(len(p) for p in parts)
    parts.insert(0, encode_header(size))
    return b"".join(parts)


def encode_client_message(msg: ClientMessage) -> bytes:
    """A whole frame (header + payload) for a client message."""
    return _frame(_encode_parts(msg, _CLIENT_INDEX, _CLIENT_CODECS, "client"))


def encode_daemon_message(msg: DaemonMessage) -> bytes:
    """A whole frame (header + payload) for a daemon message (used by tests and fake daemons)."""
    return _frame(_encode_parts(msg, _DAEMON_INDEX, _DAEMON_CODECS, "daemon"))


def _split_frame(frame: Any, max_payload: int) -> memoryview:
    view = memoryview(frame).cast("B")
    header = parse_header(view[:HEADER_LEN], max_payload)
    body = view[HEADER_LEN:]
    if len(body) < header.payload_len:
        raise Truncated(header.payload_len, len(body))
    if len(body) > header.payload_len:
        raise DecodeError("%d bytes after the end of the frame" % (len(body) - header.payload_len))
    return body


def decode_client_frame(frame: Any, max_payload: int = DEFAULT_MAX_PAYLOAD) -> ClientMessage:
    """Decodes exactly one whole frame held in memory."""
    return decode_client_payload(_split_frame(frame, max_payload))


def decode_daemon_frame(frame: Any, max_payload: int = DEFAULT_MAX_PAYLOAD) -> DaemonMessage:
    """Decodes exactly one whole frame held in memory."""
    return decode_daemon_payload(_split_frame(frame, max_payload))


def _read_into(src: Any, view: memoryview) -> int:
    """Fills ``view`` from a socket or binary file; returns the byte count (short only at EOF)."""
    got = 0
    total = len(view)
    recv_into = getattr(src, "recv_into", None)
    readinto = getattr(src, "readinto", None)
    while got < total:
        if recv_into is not None:
            n = recv_into(view[got:], total - got)
        elif readinto is not None:
            n = readinto(view[got:])
            if n is None:  # non-blocking file with nothing available
                continue
        else:
            chunk = src.read(total - got)
            n = len(chunk)
            view[got : got + n] = chunk
        if not n:
            break
        got += n
    return got


#: The first read of a payload; later reads double it (see ``read_frame``).
READ_CHUNK = 1 << 20


def read_frame(src: Any, max_payload: int = DEFAULT_MAX_PAYLOAD) -> Optional[bytearray]:
    """Reads one frame from a socket (``recv_into``) or binary file and returns its payload.

    Returns None when the stream ends cleanly before a new frame. Raises a ``ProtocolError``
    subclass for a bad header or a stream ending mid-frame; the length is checked before the
    payload buffer is allocated. Socket timeouts propagate as ``socket.timeout``.
    """
    header = bytearray(HEADER_LEN)
    got = _read_into(src, memoryview(header))
    if got == 0:
        return None
    if got < HEADER_LEN:
        raise Truncated(HEADER_LEN, got)
    length = parse_header(header, max_payload).payload_len
    # Grown as bytes arrive (doubling from 1 MiB), never allocated at the size the header
    # claims: a peer that announces hundreds of megabytes and sends a few costs a few.
    payload = bytearray()
    while len(payload) < length:
        start = len(payload)
        want = min(length - start, max(READ_CHUNK, start))
        payload.extend(bytes(want))
        with memoryview(payload) as view:
            got = _read_into(src, view[start:])
        if got < want:
            raise Truncated(length, start + got)
    return payload


def read_daemon_message(src: Any, max_payload: int = DEFAULT_MAX_PAYLOAD) -> Optional[DaemonMessage]:
    """Reads and decodes one daemon message; None on a clean end of stream."""
    payload = read_frame(src, max_payload)
    return None if payload is None else decode_daemon_payload(payload)


def read_client_message(src: Any, max_payload: int = DEFAULT_MAX_PAYLOAD) -> Optional[ClientMessage]:
    """Reads and decodes one client message; None on a clean end of stream."""
    payload = read_frame(src, max_payload)
    return None if payload is None else decode_client_payload(payload)


# --------------------------------------------------------------------------------------------
# Pixel helpers
# --------------------------------------------------------------------------------------------


def _swap_red_blue(data: Any) -> bytes:
    if isinstance(data, memoryview):
        data = data.tobytes()
    if len(data) % 4:
        raise ValueError("pixel buffer length %d is not a multiple of 4" % len(data))
    out = bytearray(data)
    out[0::4] = data[2::4]
    out[2::4] = data[0::4]
    return bytes(out)


def bgra_to_rgba(data: Any) -> bytes:
    """Swaps B and R in 8-bit BGRA pixels (Krita's layout) to get RGBA. Alpha is untouched."""
    return _swap_red_blue(data)


def rgba_to_bgra(data: Any) -> bytes:
    """Swaps R and B in 8-bit RGBA pixels to get BGRA (Krita's layout). Alpha is untouched."""
    return _swap_red_blue(data)


__all__ = [
    "PROTOCOL_VERSION",
    "MAGIC",
    "HEADER_LEN",
    "DEFAULT_MAX_PAYLOAD",
    "Mode",
    "Context",
    "Priority",
    "Sampler",
    "Spacing",
    "ErrorCode",
    "ModelRole",
    "ProtocolError",
    "BadMagic",
    "UnsupportedVersion",
    "BadFlags",
    "FrameTooLarge",
    "Truncated",
    "DecodeError",
    "RgbaImage",
    "Mask",
    "Extend",
    "ClientHello",
    "GenerateRequest",
    "Cancel",
    "Status",
    "ListModels",
    "Shutdown",
    "Capabilities",
    "DaemonHello",
    "Accepted",
    "Progress",
    "StageTiming",
    "GenerateResult",
    "ErrorReply",
    "Superseded",
    "DaemonStatus",
    "ModelInfo",
    "Models",
    "ShuttingDown",
    "ModelLoading",
    "ClientMessage",
    "DaemonMessage",
    "CLIENT_VARIANTS",
    "DAEMON_VARIANTS",
    "FrameHeader",
    "encode_header",
    "parse_header",
    "encode_client_payload",
    "encode_daemon_payload",
    "decode_client_payload",
    "decode_daemon_payload",
    "encode_client_message",
    "encode_daemon_message",
    "decode_client_frame",
    "decode_daemon_frame",
    "read_frame",
    "read_daemon_message",
    "read_client_message",
    "bgra_to_rgba",
    "rgba_to_bgra",
]
