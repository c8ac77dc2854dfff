"""The one adapter between the Qt UI and the engine: a ``Worker`` (living on the GUI thread)
keeps the job ledger and the queues, runs each job in one of two lanes (engine threads,
:mod:`studio.ui.lanes`) and turns engine events into Qt signals.

- Lanes: model-file jobs (downloads, imports, scans, removals) run in the ``"files"`` lane,
  everything else (generation, inpaint, upscale, preprocessing) in the ``"compute"`` lane;
  both run at the same time, each one job at a time from its own queue, so a multi-GB
  download never holds up Generate. Job ids are unique across lanes and every signal carries
  its job id, so consumers filter by id or owner as before.
- Which lane an API call means: ``cancel(None)`` cancels the compute lane's running job (Esc,
  Generate's Cancel: never a download); ``jobs()``, ``busy``, ``running_job`` and
  ``cancel_all()`` cover both lanes unless given a lane (``jobs(lane)``, ``busy_in(lane)``,
  ``running_in(lane)``, ``cancel_all(lane)``); the Generate panel's queue asks for
  ``"compute"`` only.
- The engine (torch, diffusers) is imported in the compute lane's thread, never at UI import
  time: ``start()`` warms it up in the background while the window is already on screen
  (``engine_state`` goes "loading" -> "ready" or "error"). The files lane never warms up.
- Every public signal is emitted on the GUI thread (the engine-thread objects only talk to
  ``Worker`` slots through queued connections), so panels may connect anything to them.
- Previews use a single-slot mailbox per lane: the engine thread overwrites the slot and only
  posts a wake-up when it was empty, so frames never queue up; the GUI shows the latest.
- Images cross threads as QImage made with ``.copy()``, never views over numpy memory.
- ``shutdown()`` cancels every job, quits both threads directly and then waits for them (a
  queued ``finished -> quit`` would never run while the GUI thread blocks in ``wait``).
  Started threads stay in ``lanes._LIVE`` until they stopped.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass, field

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtGui import QImage

from studio.core.cancel import CancelToken
from studio.engine.jobs import Cancelled, Failed, Finished, Progress, Started
from studio.ui.lanes import COMPUTE, FILES, LANES, Lane, lane_of

__all__ = ["COMPUTE", "FILES", "LANES", "Job", "Worker", "lane_of"]

log = logging.getLogger(__name__)

_job_ids = itertools.count(1)

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
    lane: str = COMPUTE  # the lane (engine thread) it runs in: studio.ui.lanes.lane_of
    # A failed job's StudioError.kind ("network", "model", ...), readable while ``failed``
    # is delivered: what a panel tests (never the message's text).
    error_kind: str = ""

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


class Worker(QObject):
    """Job ledger + two lanes (engine threads). ``submit(request) -> job_id``;
    ``cancel(job_id)``."""

    started = Signal(int)
    # job_id, step, total: 64-bit, since a download's steps are bytes (an int argument is 32-bit
    # in Qt and overflows past 2 GiB).
    progress = Signal(int, "qint64", "qint64")
    preview = Signal(int, QImage, object)  # job_id, image, region (x, y, w, h) | None
    finished = Signal(int, object)  # job_id, studio.engine.jobs.events.Finished
    failed = Signal(int, str, str)  # job_id, message, detail
    cancelled = Signal(int)
    queue_changed = Signal()
    engine_state = Signal(str, str)  # "loading" | "ready" | "error", message
    # The engine's start-up probe of the job device: {"device", "name", "free_gib",
    # "total_gib"} (memory_models.device_memory); also kept in ``device_info``.
    device_changed = Signal(object)

    def __init__(self, parent: QObject | None = None, threads: int = 0) -> None:
        super().__init__(parent)
        self._jobs: dict[int, Job] = {}
        self.state = "idle"
        self.state_message = ""
        self._lanes = {name: Lane(name, threads, self) for name in LANES}
        for lane in self._lanes.values():
            lane.engine.event.connect(self._on_event)
            lane.engine.preview_posted.connect(self._on_preview_posted)
        compute = self._lanes[COMPUTE].engine
        compute.state.connect(self._on_state)
        compute.device.connect(self._on_device)
        self.device_info: dict | None = None
        self._started = False
        self._warming = False
        self._closed = False

    def _lane(self, name: str) -> Lane:
        try:
            return self._lanes[name]
        except KeyError:
            raise ValueError(f"unknown lane {name!r}: one of {', '.join(LANES)}") from None

    def _selected(self, lane: str | None) -> list[Lane]:
        return list(self._lanes.values()) if lane is None else [self._lane(lane)]

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, warm_up: bool = True) -> None:
        """Start both lanes' threads and (by default) import the engine in the compute lane.
        Started without the warm-up (e.g. for a model scan, which needs no torch) it still
        warms up at a later ``start(warm_up=True)``."""
        if not self._started:
            self._started = True
            for lane in self._lanes.values():
                lane.start()
        if warm_up and not self._warming:
            self._warming = True
            self._lanes[COMPUTE].warm.emit()

    def shutdown(self, timeout_ms: int = 15000) -> bool:
        """Cancel every job in both lanes, stop both threads and wait for them (together at
        most ``timeout_ms``). Returns whether both stopped."""
        if self._closed:
            return True
        self._closed = True
        for job in self._jobs.values():
            job.token.cancel()
        for lane in self._lanes.values():
            lane.order.clear()
            lane.quit()  # both asked first: each stops once its running job returns
        deadline = time.monotonic() + timeout_ms / 1000
        ok = True
        for lane in self._lanes.values():
            left = int((deadline - time.monotonic()) * 1000)
            ok = lane.wait(max(left, 0)) and ok
        return ok

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
        """Queue ``request`` in its lane (:func:`lane_of`); ``region`` (x, y, w, h) is where
        its output lands on the document (previews are painted there); ``owner`` and
        ``target``: see ``Job``. Returns the job id."""
        if self._closed:
            raise RuntimeError("the worker is shut down")
        name = lane_of(request)
        if not self._started:  # a model-file job alone needs no engine warm-up
            self.start(warm_up=name == COMPUTE)
        job_id = next(_job_ids)
        self._jobs[job_id] = Job(
            job_id, request, label or type(request).__name__, region, owner, target, lane=name
        )
        self._lanes[name].order.append(job_id)
        self.queue_changed.emit()
        self._dispatch(self._lanes[name])
        return job_id

    def cancel(self, job_id: int | None = None, lane: str = COMPUTE) -> bool:
        """Cancel a queued or running job of either lane; ``None``: the running job of
        ``lane`` (by default the compute lane's: Esc never cancels a download)."""
        if job_id is None:
            job_id = self._lane(lane).running
        if job_id is None or job_id not in self._jobs:
            return False
        job = self._jobs[job_id]
        job.token.cancel()  # the Runner sees it at its next check, also before it starts
        if job.state == QUEUED:
            self._lanes[job.lane].order.remove(job_id)
            self.queue_changed.emit()
            self.cancelled.emit(job_id)
            del self._jobs[job_id]
        return True

    def cancel_all(self, lane: str | None = None) -> None:
        """Cancel every queued and running job of ``lane`` (None: of both lanes)."""
        for chosen in self._selected(lane):
            for job_id in list(chosen.order):
                self.cancel(job_id)
            if chosen.running is not None:
                self.cancel(chosen.running)

    def jobs(self, lane: str | None = None) -> list[Job]:
        """Lane by lane (compute, then files; or only ``lane``): its running job first, then
        its queued ones in order."""
        out: list[Job] = []
        for chosen in self._selected(lane):
            ids = ([chosen.running] if chosen.running in self._jobs else []) + chosen.order
            out += [self._jobs[j] for j in ids]
        return out

    def job(self, job_id: int) -> Job | None:
        return self._jobs.get(job_id)

    @property
    def running_job(self) -> int | None:
        """The compute lane's running job, else the files lane's (None: both idle); one
        lane's: ``running_in(lane)``."""
        for lane in self._lanes.values():
            if lane.running is not None:
                return lane.running
        return None

    def running_in(self, lane: str) -> int | None:
        """The job ``lane`` ("compute" or "files") runs now, if any."""
        return self._lane(lane).running

    def thread_running(self) -> bool:
        """Whether any lane's thread still runs."""
        return any(lane.thread.isRunning() for lane in self._lanes.values())

    @property
    def busy(self) -> bool:
        """Whether any job is queued or running in either lane."""
        return any(lane.busy for lane in self._lanes.values())

    def busy_in(self, lane: str) -> bool:
        """Whether ``lane`` has a job queued or running."""
        return self._lane(lane).busy

    def _dispatch(self, lane: Lane) -> None:
        if lane.running is not None or not lane.order or self._closed:
            return
        job_id = lane.order.pop(0)
        job = self._jobs[job_id]
        job.state = RUNNING
        job.started = time.monotonic()
        lane.running = job_id
        self.queue_changed.emit()
        lane.run.emit(job_id, job.request, job.token)

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
        for lane in self._lanes.values():
            item = lane.mailbox.take()
            if item is None:
                continue
            job_id, image, region, step, total = item
            if job_id == lane.running:  # else a late frame of a job that already ended
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
            lane = self._lanes[job.lane]
            lane.mailbox.take()
            if lane.running == job.job_id:
                lane.running = None
            job.state = "done"
            try:  # the job stays readable (worker.job) while its end is delivered
                if isinstance(event, Finished):
                    self.finished.emit(job.job_id, event)
                elif isinstance(event, Failed):
                    job.error_kind = event.kind
                    self.failed.emit(job.job_id, event.message, event.detail)
                else:
                    self.cancelled.emit(job.job_id)
            finally:
                self._jobs.pop(job.job_id, None)
            self.queue_changed.emit()
            self._dispatch(lane)
