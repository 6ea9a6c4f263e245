"""Live preview rules both editor plugins share: the size a layer is sent at, and the frame
timeline that says where a stroke's latency went (stdlib only).

Why this module exists: "real time" is judged by how fast a stroke shows up in the editor, so
both plugins record, for every live frame, when the change was seen, when its pixels were read
and sent, when the result came back and when it was on the canvas, plus how long each livefill
callback held the editor's UI thread. The in-editor benchmarks (``tests/krita/live_bench.py``,
``tests/gimp/gimp_live_bench.py``) read these timelines; the numbers are the plugins' own, so a
benchmark run and an artist's session measure the same thing. Recording costs two clock reads
per event and keeps a bounded ring of frames.
"""

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Deque, Dict, Iterable, List, Optional, Tuple

#: Whole-layer live previews travel with their longer side at most this many pixels: the model
#: works near 512 px anyway (the daemon resizes to the model's size), and a 4096² layer would
#: otherwise move 64 MB each way per frame.
LIVE_SEND_MAX_SIDE = 512
#: Frames and UI-thread slices kept for statistics (the newest ones).
TIMELINE_CAPACITY = 4096


def live_send_size(width: int, height: int, limit: Optional[int] = None) -> Optional[Tuple[int, int]]:
    """The size a ``width`` x ``height`` whole-layer live frame is sent at: longer side ``limit``
    (default ``LIVE_SEND_MAX_SIDE``; 0 = never scaled), aspect kept; None when it already fits."""
    limit = LIVE_SEND_MAX_SIDE if limit is None else limit
    if limit <= 0 or max(width, height) <= limit:
        return None
    f = limit / float(max(width, height))
    return max(8, int(round(width * f))), max(8, int(round(height * f)))


def now_ms() -> float:
    """The timeline's clock: monotonic milliseconds."""
    return time.monotonic() * 1000.0


@dataclass
class LiveFrame:
    """One live frame's moments (``now_ms`` clock; 0 = did not happen)."""

    request_id: int = 0
    #: When the oldest change this frame answers was first seen (event or poll).
    changed: float = 0.0
    read_started: float = 0.0
    sent: float = 0.0
    result: float = 0.0
    shown: float = 0.0
    #: When the first step preview of this frame was on the canvas (step previews are asked for
    #: when frames are slower than strokes; 0 = none).
    step_shown: float = 0.0
    bytes_sent: int = 0
    bytes_received: int = 0
    #: The daemon's stage timings for this frame: stage -> ms.
    daemon: Dict[str, float] = field(default_factory=dict)
    #: How the frame ended: "shown", "superseded", "unchanged", "error".
    outcome: str = ""


def percentile(values: Iterable[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank; 0 for no values."""
    data = sorted(values)
    if not data:
        return 0.0
    rank = min(len(data) - 1, max(0, int(round(q * (len(data) - 1)))))
    return data[rank]


def distribution(values: Iterable[float]) -> Dict[str, float]:
    """p50, p90, p99 and max (rounded to 0.1) and the count of ``values``: how every live
    figure is reported."""
    data = list(values)
    return {"p50": round(percentile(data, 0.5), 1), "p90": round(percentile(data, 0.9), 1),
            "p99": round(percentile(data, 0.99), 1), "max": round(max(data), 1) if data else 0.0, "n": len(data)}


class LiveTimeline:
    """The newest live frames and UI-thread slices of one plugin instance."""

    def __init__(self, capacity: int = TIMELINE_CAPACITY) -> None:
        self.frames: Deque[LiveFrame] = deque(maxlen=capacity)
        #: (start, duration) in ms of each livefill callback on the UI thread, by name.
        self.ui_slices: Deque[Tuple[str, float, float]] = deque(maxlen=capacity)

    def clear(self) -> None:
        self.frames.clear()
        self.ui_slices.clear()

    def add(self, frame: LiveFrame) -> LiveFrame:
        self.frames.append(frame)
        return frame

    def find(self, request_id: int) -> Optional[LiveFrame]:
        for frame in reversed(self.frames):
            if frame.request_id == request_id:
                return frame
        return None

    def ui_slice(self, name: str) -> "_Slice":
        """``with timeline.ui_slice("name"):`` around a UI-thread callback records its duration."""
        return _Slice(self, name)

    def shown(self) -> List[LiveFrame]:
        return [f for f in self.frames if f.outcome == "shown" and f.shown]

    def summary(self, since: float = 0.0) -> Dict[str, Any]:
        """p50/p90 of each stage over the frames shown after ``since`` (ms), UI-slice
        percentiles and bytes per frame."""
        frames = [f for f in self.shown() if f.changed >= since]
        slices = [d for (_, start, d) in self.ui_slices if start >= since]

        daemon_total = [sum(v for k, v in f.daemon.items() if k != "onnxruntime") for f in frames]
        return {
            "frames": len(frames),
            "change_to_sent": distribution([f.sent - f.changed for f in frames]),
            "sent_to_result": distribution([f.result - f.sent for f in frames]),
            "result_to_shown": distribution([f.shown - f.result for f in frames]),
            "change_to_shown": distribution([f.shown - f.changed for f in frames]),
            "change_to_first_step": distribution([f.step_shown - f.changed for f in frames if f.step_shown]),
            "daemon_ms": distribution(daemon_total),
            "ui_slice_ms": {"p50": round(percentile(slices, 0.5), 2), "p90": round(percentile(slices, 0.9), 2),
                            "p99": round(percentile(slices, 0.99), 2),
                            "max": round(max(slices), 2) if slices else 0.0, "n": len(slices),
                            "total": round(sum(slices), 1)},
            "bytes_sent_per_frame": int(percentile([f.bytes_sent for f in frames], 0.5)),
            "bytes_received_per_frame": int(percentile([f.bytes_received for f in frames], 0.5)),
        }


class _Slice:
    def __init__(self, timeline: LiveTimeline, name: str) -> None:
        self.timeline = timeline
        self.name = name
        self.start = 0.0

    def __enter__(self) -> "_Slice":
        self.start = now_ms()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.timeline.ui_slices.append((self.name, self.start, now_ms() - self.start))
