"""The worker's lanes: each lane is one engine thread (a QThread with its own ``_Engine`` and
Runner) with its own queue, so jobs of different kinds run at the same time.

- ``"compute"``: generation, inpaint, upscale, preprocessing: the torch/diffusers jobs. Its
  engine is the one that warms up (imports torch) and probes the device.
- ``"files"``: the model-file jobs (``DownloadRequest``, ``ImportModelRequest``,
  ``ScanModelsRequest``, ``RemoveModelRequest``; :mod:`studio.engine.models.jobs`). I/O only:
  this lane never warms up; its Runner is made at its first job and its handlers import only
  what they need (an upscaler import's identification loads torch for spandrel's meta-tensor
  probe, nothing else), so a multi-GB download never holds up a generation.

The ``Worker`` (:mod:`studio.ui.worker`) owns one ``Lane`` per name and routes each request
with :func:`lane_of`; a lane only carries the thread, the engine, the preview mailbox and the
queue, and the Worker keeps the one job ledger.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import traceback

from PySide6.QtCore import QObject, QThread, Signal, Slot

from studio.core.cancel import CancelToken
from studio.engine.jobs import (
    DownloadRequest,
    Failed,
    ImportModelRequest,
    Preview,
    RemoveModelRequest,
    ScanModelsRequest,
)
from studio.ui.qimage import qimage_from_array

log = logging.getLogger(__name__)

COMPUTE, FILES = "compute", "files"
LANES: tuple[str, ...] = (COMPUTE, FILES)

# Requests that only move model files (downloads, imports, scans, removals): the files lane.
FILE_REQUESTS: tuple[type, ...] = (
    DownloadRequest,
    ImportModelRequest,
    ScanModelsRequest,
    RemoveModelRequest,
)


def lane_of(request: object) -> str:
    """The lane a request runs in: model-file jobs in ``"files"``, all else in ``"compute"``."""
    return FILES if isinstance(request, FILE_REQUESTS) else COMPUTE


# Started engine threads (with their engine objects) that were not shut down: kept here so a
# Worker dropped without ``shutdown()`` (a test's window, a panel's own) never destroys a
# running QThread (Qt aborts the process), and stopped at interpreter exit.
_LIVE: dict[int, tuple[QThread, QObject]] = {}


def _stop_live_threads() -> None:
    for thread, _engine in list(_LIVE.values()):
        try:
            thread.quit()
            thread.wait(5000)
        except RuntimeError:  # the C++ object is already gone
            pass
    _LIVE.clear()


atexit.register(_stop_live_threads)


class _Mailbox:
    """Holds at most one item; ``put`` reports whether the slot was empty (a wake-up is
    needed), ``take`` empties it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._item: tuple | None = None

    def put(self, item: tuple) -> bool:
        with self._lock:
            was_empty = self._item is None
            self._item = item
            return was_empty

    def take(self) -> tuple | None:
        with self._lock:
            item, self._item = self._item, None
            return item


class _Engine(QObject):
    """Lives in a lane's thread: owns the Runner and runs jobs synchronously there."""

    event = Signal(object)
    preview_posted = Signal()
    state = Signal(str, str)
    device = Signal(object)  # the start-up probe: memory_models.device_memory()'s dict

    def __init__(self, mailbox: _Mailbox, threads: int) -> None:
        super().__init__()
        self.mailbox = mailbox
        self.threads = threads
        self.runner = None
        self.torch_threads = 0  # intra-op threads torch uses in this thread (0: not loaded)

    @Slot()
    def warm_up(self) -> None:
        self.state.emit("loading", "Loading engine…")
        try:
            from studio.engine.jobs import Runner

            self.runner = Runner()
            try:
                import studio.engine.diffusion.sd.generate  # noqa: F401 - loads torch + diffusers
            except ModuleNotFoundError as e:
                if e.name != "studio.engine.diffusion.sd.generate":
                    raise
            self._set_threads()
        except Exception as e:  # noqa: BLE001 - the app stays usable without an engine
            log.exception("engine warm-up failed")
            self.state.emit("error", f"Engine unavailable: {type(e).__name__}: {e}")
            return
        self._probe_device()
        self.state.emit("ready", "Engine ready")

    def _probe_device(self) -> None:
        """The job device and its free memory, for the Generate panel's memory plan."""
        try:
            from studio.engine.diffusion import device_memory

            self.device.emit(device_memory())
        except Exception:  # noqa: BLE001 - no plan shown is better than no engine
            log.warning("device probe failed", exc_info=True)

    def _set_threads(self) -> None:
        # Leave a core to the GUI thread so the canvas stays responsive while torch computes.
        torch = sys.modules.get("torch")
        if torch is None:
            return
        n = self.threads or max(1, (os.cpu_count() or 2) - 1)
        torch.set_num_threads(n)
        self.torch_threads = torch.get_num_threads()

    @Slot(int, object, object)
    def run_job(self, job_id: int, request: object, token: CancelToken) -> None:
        if self.runner is None:
            try:
                from studio.engine.jobs import Runner

                self.runner = Runner()
            except Exception as e:  # noqa: BLE001
                self.event.emit(Failed(job_id, f"Engine unavailable: {e}", traceback.format_exc()))
                return
        self.runner.run(request, self._emit, job_id, token)

    def _emit(self, event: object) -> None:
        if isinstance(event, Preview):
            if event.image is None:
                return
            image = qimage_from_array(event.image)  # .copy(): owns its pixels
            if self.mailbox.put((event.job_id, image, event.region, event.step, event.total)):
                self.preview_posted.emit()
        else:
            self.event.emit(event)


class Lane(QObject):
    """One engine thread and its queue. Lives on the GUI thread; ``run`` and ``warm`` reach
    the engine through queued connections. ``order``: queued job ids; ``running``: the job
    the engine runs now (None: idle)."""

    run = Signal(int, object, object)
    warm = Signal()

    def __init__(self, name: str, threads: int = 0, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self.mailbox = _Mailbox()
        self.thread = QThread()
        self.thread.setObjectName(f"studio-{name}")
        self.engine = _Engine(self.mailbox, threads)
        self.engine.moveToThread(self.thread)
        self.run.connect(self.engine.run_job)
        self.warm.connect(self.engine.warm_up)
        self.order: list[int] = []
        self.running: int | None = None
        self.started = False

    @property
    def busy(self) -> bool:
        return self.running is not None or bool(self.order)

    def start(self) -> None:
        if not self.started:
            self.started = True
            _LIVE[id(self.thread)] = (self.thread, self.engine)
            self.thread.start()

    def quit(self) -> None:
        """Ask the thread to stop: direct (not via a queued finished->quit, which would never
        run while the GUI thread blocks in ``wait``); it takes effect once the job returns."""
        if self.started:
            self.thread.quit()

    def wait(self, timeout_ms: int) -> bool:
        """Wait for the thread to stop; a stopped one leaves ``_LIVE``."""
        if not self.started:
            return True
        ok = bool(self.thread.wait(max(0, timeout_ms)))
        if ok:
            _LIVE.pop(id(self.thread), None)
        else:
            log.warning("engine thread %s did not stop within %d ms", self.name, timeout_ms)
        return ok
