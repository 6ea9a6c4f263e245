"""A background thread for live mode's pixel work, with results delivered on the UI thread.

Why this module exists: reading a large layer, scaling it, converting BGRA and writing a preview
take tens of milliseconds at 2048² and more at 4096²; on Krita's UI thread that freezes the brush
the artist is using. Krita's paint-device reads and writes (``Node.pixelData``,
``Node.setPixelData``, ``Node.thumbnail``) and Qt's ``QImage`` scaling release Python's GIL and
work from any thread (Krita's own strokes write paint devices from worker threads), so they run
here; everything that creates or selects nodes stays on the UI thread (``controller``).

Each worker runs one task at a time, in order. A task's result (or exception) comes back through
a queued Qt signal to the callback given with it.
"""

import queue
import threading
import traceback
from typing import Any, Callable, Optional, Tuple

from PyQt5.QtCore import QObject, pyqtSignal

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
        self._tasks.put((task, done))

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
