"""The one adapter between the Qt UI and the engine: a ``Worker`` (living on the GUI thread)
owns an engine ``Runner`` that runs in a QThread, keeps the job queue, and turns engine
events into Qt signals.

- The engine (torch, diffusers) is imported in the worker thread, never at UI import time:
  ``start()`` warms it up in the background while the window is already on screen
  (``engine_state`` goes "loading" -> "ready" or "error").
- Every public signal is emitted on the GUI thread (the engine-thread object only talks to
  ``Worker`` slots through queued connections), so panels may connect anything to them.
- Previews use a single-slot mailbox: the engine thread overwrites the slot and only posts a
  wake-up when it was empty, so frames never queue up; the GUI shows the latest.
- Images cross threads as QImage made with ``.copy()``, never views over numpy memory.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field

from PySide6.QtCore import QObject, QThread, Signal, Slot
from PySide6.QtGui import QImage

from studio.core.cancel import CancelToken
from studio.engine.jobs import Cancelled, Failed, Finished, Preview, Progress, Started
from studio.ui.qimage import qimage_from_array

log = logging.getLogger(__name__)

_job_ids = itertools.count(1)

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

QUEUED, RUNNING = "queued", "running"


@dataclass
class Job:
    """The one ledger entry of a job: what it computes (``request``), who asked (``owner``,
    the panel that places its results) and where its output lands (``region`` (x, y, w, h)
    on the document; ``target``: anything else the owner needs to place it, e.g. the layer
    or outpaint extension). It stays readable through ``Worker.job`` while the
    finished/failed/cancelled signals are delivered."""

    job_id: int
    request: object
    label: str
    region: tuple[int, int, int, int] | None
    owner: object = None
    target: object = None
    token: CancelToken = field(default_factory=CancelToken)
    state: str = QUEUED
    step: int = 0
    total: int = 0
    submitted: float = field(default_factory=time.monotonic)
    started: float = 0.0
    message: str = ""  # the last Progress event's status line (e.g. a download's speed)
    first_step: int = 0  # the first step reported, and when: loading is over by then
    first_step_at: float = 0.0

    def preview_rect(
        self, region: tuple[int, int, int, int] | None, doc_size: tuple[int, int]
    ) -> tuple[float, float, float, float]:
        """Where a preview of ``region`` (x, y, w, h in output pixels; None: all of it)
        lands on the document: the job's region, scaled from the output size."""
        x, y, w, h = self.region if self.region else (0, 0, *doc_size)
        out_w = getattr(self.request, "width", None) or w
        out_h = getattr(self.request, "height", None) or h
        if not w or not h:
            x, y, w, h = 0, 0, out_w, out_h
        if not region:
            return (x, y, w, h)
        rx, ry, rw, rh = region
        sx, sy = w / max(1, out_w), h / max(1, out_h)
        return (x + rx * sx, y + ry * sy, rw * sx, rh * sy)

    def eta(self) -> float | None:
        """Seconds left, from the mean time per denoising step since the first step was
        reported (model loading before it does not count). None until two steps are in."""
        if self.state != RUNNING or self.total <= 0 or not self.first_step_at:
            return None
        done = self.step - self.first_step
        if done <= 0:
            return None
        per_step = (time.monotonic() - self.first_step_at) / done
        return max(0.0, per_step * (self.total - self.step))


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
    """Lives in the worker thread: owns the Runner and runs jobs synchronously there."""

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
                import studio.engine.diffusion.generate  # noqa: F401 - loads torch + diffusers
            except ModuleNotFoundError as e:
                if e.name != "studio.engine.diffusion.generate":
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


class Worker(QObject):
    """Job queue + engine thread. ``submit(request) -> job_id``; ``cancel(job_id)``."""

    started = Signal(int)
    progress = Signal(int, int, int)  # job_id, step, total
    preview = Signal(int, QImage, object)  # job_id, image, region (x, y, w, h) | None
    finished = Signal(int, object)  # job_id, studio.engine.jobs.events.Finished
    failed = Signal(int, str, str)  # job_id, message, detail
    cancelled = Signal(int)
    queue_changed = Signal()
    engine_state = Signal(str, str)  # "loading" | "ready" | "error", message
    # The engine's start-up probe of the job device: {"device", "name", "free_gib",
    # "total_gib"} (memory_models.device_memory); also kept in ``device_info``.
    device_changed = Signal(object)

    _warm = Signal()
    _run = Signal(int, object, object)

    def __init__(self, parent: QObject | None = None, threads: int = 0) -> None:
        super().__init__(parent)
        self._jobs: dict[int, Job] = {}
        self._order: list[int] = []
        self._running: int | None = None
        self.state = "idle"
        self.state_message = ""
        self._mailbox = _Mailbox()
        self._thread = QThread()
        self._thread.setObjectName("studio-engine")
        self._engine = _Engine(self._mailbox, threads)
        self._engine.moveToThread(self._thread)
        self._warm.connect(self._engine.warm_up)
        self._run.connect(self._engine.run_job)
        self._engine.event.connect(self._on_event)
        self._engine.preview_posted.connect(self._on_preview_posted)
        self._engine.state.connect(self._on_state)
        self._engine.device.connect(self._on_device)
        self.device_info: dict | None = None
        self._started = False
        self._warming = False
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, warm_up: bool = True) -> None:
        """Start the engine thread and (by default) import the engine in it. A thread started
        without the warm-up (e.g. for a model scan, which needs no torch) still warms up at
        a later ``start(warm_up=True)``."""
        if not self._started:
            self._started = True
            _LIVE[id(self._thread)] = (self._thread, self._engine)
            self._thread.start()
        if warm_up and not self._warming:
            self._warming = True
            self._warm.emit()

    def shutdown(self, timeout_ms: int = 15000) -> bool:
        """Cancel every job, stop the thread and wait for it. Returns whether it stopped."""
        if self._closed:
            return True
        self._closed = True
        for job in self._jobs.values():
            job.token.cancel()
        self._order.clear()
        if not self._started:
            return True
        # Quit the thread directly (not via a queued finished->quit, which would never run
        # while we block in wait()); quit takes effect once the running job returns.
        self._thread.quit()
        ok = self._thread.wait(timeout_ms)
        if not ok:
            log.warning("engine thread did not stop within %d ms", timeout_ms)
        else:
            _LIVE.pop(id(self._thread), None)
        return bool(ok)

    @property
    def closed(self) -> bool:
        """True once ``shutdown()`` ran: ``submit`` refuses new jobs."""
        return self._closed

    # -- jobs --------------------------------------------------------------------------------
    def submit(
        self,
        request: object,
        region: tuple[int, int, int, int] | None = None,
        label: str = "",
        owner: object = None,
        target: object = None,
    ) -> int:
        """Queue ``request``; ``region`` (x, y, w, h) is where its output lands on the document
        (previews are painted there); ``owner`` and ``target``: see ``Job``. Returns the job
        id."""
        if self._closed:
            raise RuntimeError("the worker is shut down")
        if not self._started:
            self.start()
        job_id = next(_job_ids)
        self._jobs[job_id] = Job(
            job_id, request, label or type(request).__name__, region, owner, target
        )
        self._order.append(job_id)
        self.queue_changed.emit()
        self._dispatch()
        return job_id

    def cancel(self, job_id: int | None = None) -> bool:
        """Cancel a queued or running job (``None``: the running one)."""
        if job_id is None:
            job_id = self._running
        if job_id is None or job_id not in self._jobs:
            return False
        job = self._jobs[job_id]
        job.token.cancel()  # the Runner sees it at its next check, also before it starts
        if job.state == QUEUED:
            self._order.remove(job_id)
            self.queue_changed.emit()
            self.cancelled.emit(job_id)
            del self._jobs[job_id]
        return True

    def cancel_all(self) -> None:
        for job_id in list(self._order):
            self.cancel(job_id)
        self.cancel(None)

    def jobs(self) -> list[Job]:
        """The running job (first) and the queued ones, in order."""
        out = [self._jobs[self._running]] if self._running in self._jobs else []
        return out + [self._jobs[j] for j in self._order]

    def job(self, job_id: int) -> Job | None:
        return self._jobs.get(job_id)

    @property
    def running_job(self) -> int | None:
        return self._running

    def thread_running(self) -> bool:
        return self._thread.isRunning()

    @property
    def busy(self) -> bool:
        return self._running is not None or bool(self._order)

    def _dispatch(self) -> None:
        if self._running is not None or not self._order or self._closed:
            return
        job_id = self._order.pop(0)
        job = self._jobs[job_id]
        job.state = RUNNING
        job.started = time.monotonic()
        self._running = job_id
        self.queue_changed.emit()
        self._run.emit(job_id, job.request, job.token)

    # -- engine -> GUI (these slots run on the GUI thread) -------------------------------------
    @Slot(str, str)
    def _on_state(self, state: str, message: str) -> None:
        self.state, self.state_message = state, message
        self.engine_state.emit(state, message)

    @Slot(object)
    def _on_device(self, info: object) -> None:
        self.device_info = dict(info) if isinstance(info, dict) else None
        self.device_changed.emit(self.device_info)

    @Slot()
    def _on_preview_posted(self) -> None:
        item = self._mailbox.take()
        if item is None:
            return
        job_id, image, region, step, total = item
        if job_id != self._running:
            return  # a late frame of a job that already ended
        self.preview.emit(job_id, image, region)

    @Slot(object)
    def _on_event(self, event: object) -> None:
        job = self._jobs.get(event.job_id)
        if job is None:
            return
        if isinstance(event, Started):
            job.started = time.monotonic()
            self.started.emit(job.job_id)
        elif isinstance(event, Progress):
            if not job.first_step_at or event.total != job.total:  # a new phase restarts
                job.first_step, job.first_step_at = event.step, time.monotonic()
            job.step, job.total = event.step, event.total
            job.message = event.message or job.message
            self.progress.emit(job.job_id, event.step, event.total)
        elif isinstance(event, (Finished, Failed, Cancelled)):
            self._mailbox.take()
            if self._running == job.job_id:
                self._running = None
            job.state = "done"
            try:  # the job stays readable (worker.job) while its end is delivered
                if isinstance(event, Finished):
                    self.finished.emit(job.job_id, event)
                elif isinstance(event, Failed):
                    self.failed.emit(job.job_id, event.message, event.detail)
                else:
                    self.cancelled.emit(job.job_id)
            finally:
                self._jobs.pop(job.job_id, None)
            self.queue_changed.emit()
            self._dispatch()
