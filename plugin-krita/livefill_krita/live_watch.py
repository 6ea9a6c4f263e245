"""Notices that the artist may have changed the watched layer, from Krita's own events.

Why this module exists: Krita's Python API has no "stroke happened" signal, and polling a layer
for changes costs a read of all its pixels every tick while adding half a tick of latency. So
live mode listens to what the canvas receives instead: a Qt event filter on each canvas widget
sees mouse and tablet presses, moves and releases (a brush stroke) and key presses (shortcuts
such as fill or clear); the Undo and Redo actions' ``triggered`` signals cover history; after a
stroke ends, ``Document.tryBarrierLock()`` says when Krita has finished painting it, so the
stroke's last dabs are picked up as soon as they land. A slow fallback poll catches the rest
(filters, scripts, layer-docker operations).

A ``touched`` signal is all this module says: the controller then reads the layer and sends a
frame only when its pixels really differ from the last frame's. Everything here runs on the UI
thread and costs a few microseconds per event.
"""

from typing import Any, List, Optional

from krita import Krita
from PyQt5.QtCore import QEvent, QObject, QTimer, pyqtSignal
from PyQt5.QtWidgets import QWidget

#: Qt classes of Krita's canvas widgets (OpenGL and the QPainter fallback).
CANVAS_CLASSES = ("KisOpenGLCanvas2", "KisQPainterCanvas")
#: Fallback poll for changes no event announces (ms).
FALLBACK_POLL_MS = 1000
#: After a stroke ends: how often to ask whether Krita finished painting it (ms), and for how long.
SETTLE_POLL_MS = 15
SETTLE_MAX_MS = 1500

STROKE_EVENTS = {
    QEvent.MouseButtonPress, QEvent.MouseMove, QEvent.TabletPress, QEvent.TabletMove,
    QEvent.TouchBegin, QEvent.TouchUpdate,
}
END_EVENTS = {QEvent.MouseButtonRelease, QEvent.TabletRelease, QEvent.TouchEnd, QEvent.KeyRelease}


class CanvasWatcher(QObject):
    """Emits ``touched()`` when the canvas, the undo history or the fallback poll suggests that
    pixels may have changed. ``start(doc)`` / ``stop()``."""

    touched = pyqtSignal()

    def __init__(self, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self._doc: Any = None
        self._widgets: List[QWidget] = []
        self._actions: List[Any] = []
        self._poll = QTimer(self)
        self._poll.setInterval(FALLBACK_POLL_MS)
        self._poll.timeout.connect(self._on_poll)
        self._settle = QTimer(self)
        self._settle.setInterval(SETTLE_POLL_MS)
        self._settle.timeout.connect(self._on_settle)
        self._settle_left = 0
        self._pressed = False

    @property
    def canvas_count(self) -> int:
        """How many canvas widgets are watched (0 without a window, e.g. in kritarunner)."""
        return len(self._widgets)

    def start(self, doc: Any) -> None:
        self.stop()
        self._doc = doc
        self._attach()
        for name in ("edit_undo", "edit_redo"):
            action = Krita.instance().action(name)
            if action is not None:
                action.triggered.connect(self._on_history)
                self._actions.append(action)
        self._poll.start()

    def stop(self) -> None:
        self._poll.stop()
        self._settle.stop()
        for widget in self._widgets:
            try:
                widget.removeEventFilter(self)
            except RuntimeError:  # the widget is gone with its view
                pass
        self._widgets = []
        for action in self._actions:
            try:
                action.triggered.disconnect(self._on_history)
            except (TypeError, RuntimeError):
                pass
        self._actions = []
        self._doc = None

    # ---- sources --------------------------------------------------------------------------------

    def _attach(self) -> None:
        """Installs the filter on every canvas widget of every window (views come and go; the
        fallback poll re-attaches)."""
        alive = []
        for widget in self._widgets:
            try:
                widget.objectName()
                alive.append(widget)
            except RuntimeError:
                pass
        self._widgets = alive
        for window in Krita.instance().windows():
            qwin = window.qwindow()
            if qwin is None:
                continue
            for widget in qwin.findChildren(QWidget):
                if widget.metaObject().className() in CANVAS_CLASSES and widget not in self._widgets:
                    widget.installEventFilter(self)
                    self._widgets.append(widget)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
        kind = event.type()
        if kind in STROKE_EVENTS:
            if kind in (QEvent.MouseButtonPress, QEvent.TabletPress, QEvent.TouchBegin):
                self._pressed = True
            if self._pressed:
                self.touched.emit()
        elif kind in END_EVENTS:
            self._pressed = False
            self.touched.emit()
            self._settle_left = SETTLE_MAX_MS // SETTLE_POLL_MS
            self._settle.start()
        return False  # never swallow the artist's input

    def _on_history(self, *args: Any) -> None:
        self.touched.emit()
        self._settle_left = SETTLE_MAX_MS // SETTLE_POLL_MS
        self._settle.start()

    def _on_settle(self) -> None:
        """Krita paints a stroke's dabs on its own threads, after the events: once the image is
        idle (the barrier lock is free), the stroke is complete."""
        self._settle_left -= 1
        doc = self._doc
        done = self._settle_left <= 0
        if doc is not None and not done:
            try:
                if doc.tryBarrierLock():
                    doc.unlock()
                    done = True
            except Exception:
                done = True
        if done:
            self._settle.stop()
            self.touched.emit()

    def _on_poll(self) -> None:
        self._attach()
        self.touched.emit()
