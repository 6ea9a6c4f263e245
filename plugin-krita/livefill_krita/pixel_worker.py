"""A background thread for live mode's pixel work, with results delivered on the UI thread.

Why this module exists: reading a large layer, scaling it, converting BGRA and writing a preview
take tens of milliseconds at 2048² and more at 4096²; on Krita's UI thread that freezes the brush
the artist is using. Krita's paint-device reads and writes (``Node.pixelData``,
``Node.setPixelData``, ``Node.thumbnail``) and Qt's ``QImage`` scaling release Python's GIL and
work from any thread (Krita's own strokes write paint devices from worker threads), so they run
here; everything that creates or selects nodes stays on the UI thread (``controller``).

Each worker runs one task at a time, in order. A task's result (or exception) comes back through
a queued Qt signal to the callback given with it.

``OFF_UI_THREAD`` is False for now: with Krita 5.1 paint-device writes on a worker thread, a
``Document.refreshProjection`` on the UI thread sometimes never returned (its updater thread
stuck in ``KisPaintLayer::copyOriginalToProjection``; seen in two of four fresh-clone test runs),
and a refresh on the worker deadlocked against Krita's own ``waitForDone``. Tasks then run on the
UI thread, one per event-loop turn, still in bands; the threaded path stays for when the cause
is found.
"""

import queue
import threading
import traceback
from typing import Any, Callable, Optional, Tuple

from PyQt5.QtCore import QObject, QTimer, pyqtSignal

#: Whether tasks run on the worker thread (see the module doc).
OFF_UI_THREAD = False

Task = Callable[[], Any]
Done = Callable[[Any, Optional[BaseException]], None]


class PixelWorker(QObject):
    """One thread that runs submitted tasks in order."""

    _finished = pyqtSignal(object)

    def __init__(self, name: str, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self._tasks: "queue.Queue[Optional[Tuple[Task, Done]]]" = queue.Queue()
        self._finished.connect(self._deliver)
        self._busy = 0
        self._thread = threading.Thread(target=self._run, name="livefill-" + name, daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        """Whether a task is queued or running (UI thread's view)."""
        return self._busy > 0

    def submit(self, task: Task, done: Done) -> None:
        """Runs ``task()`` on the worker; then ``done(result, error)`` on the UI thread."""
        self._busy += 1
        if not OFF_UI_THREAD:
            QTimer.singleShot(0, lambda: self._run_here(task, done))
            return
        self._tasks.put((task, done))

    def _run_here(self, task: Task, done: Done) -> None:
        try:
            result: Any = task()
            error: Optional[BaseException] = None
        except BaseException as e:  # handed to the callback, as from the thread
            traceback.print_exc()
            result, error = None, e
        self._deliver((done, result, error))

    def stop(self) -> None:
        self._tasks.put(None)

    def _run(self) -> None:
        while True:
            item = self._tasks.get()
            if item is None:
                return
            task, done = item
            try:
                result: Any = task()
                error: Optional[BaseException] = None
            except BaseException as e:  # handed to the callback on the UI thread
                traceback.print_exc()
                result, error = None, e
            self._finished.emit((done, result, error))

    def _deliver(self, item: Tuple[Done, Any, Optional[BaseException]]) -> None:
        done, result, error = item
        self._busy -= 1
        done(result, error)
