"""The one job driver of the panels: a ``JobFollower`` follows the worker's jobs of one owner
(``worker.Job.owner``, the panel that places their results) and gives the panel only those,
as its own Qt signals, after it has done what every panel does with them.

- ``submit`` queues a request with the owner set; ``cancel`` cancels one of the owner's jobs
  (None: all of them); ``ids`` are the owner's jobs still queued or running.
- Given a ``JobBar`` (a progress bar and an optional status label), it shows each job's
  steps once their total is known (``step_format``) and its end: "Done", "Failed" (the status says the message),
  "Cancelled". Given ``errors`` (``Host.show_error``), it shows a failure's message there.
- ``ended`` is emitted first at each job's end (whatever the end), then bar, status and error,
  then ``finished``, ``failed`` or ``cancelled``: a panel resets its buttons on ``ended`` and
  places the result on ``finished``. A job a slot submits there is followed as any other.

Every worker signal is emitted on the GUI thread and reaches this object's slots there; the
panels connect their own ``@Slot`` methods to the follower's signals. The worker's ``Job``
stays readable (``job``) while its end is delivered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtGui import QImage

if TYPE_CHECKING:
    from PySide6.QtWidgets import QLabel, QProgressBar

    from studio.ui.worker import Job, Worker

__all__ = ["JobBar", "JobFollower"]


class JobBar:
    """A job's progress bar and status line: busy while loading, its steps, its end."""

    def __init__(
        self,
        bar: QProgressBar,
        status: QLabel | None = None,
        step_format: str = "Step %v / %m",
        done_value: int = 1,
    ) -> None:
        """``step_format``: the bar's text while steps come in (a panel may change it per
        job); ``done_value``: the bar's value (of 1) once a job is done."""
        self.bar, self.status = bar, status
        self.step_format = step_format
        self.done_value = done_value

    def busy(self, text: str) -> None:
        """An indeterminate bar saying ``text`` (a model loading, a job queued)."""
        self.bar.setRange(0, 0)
        self.bar.setFormat(text)

    def step(self, step: int, total: int) -> None:
        self.bar.setRange(0, total)
        self.bar.setValue(step)
        self.bar.setFormat(self.step_format)

    def end(self, text: str, value: int = 0) -> None:
        self.bar.setRange(0, 1)
        self.bar.setValue(value)
        self.bar.setFormat(text)

    def say(self, text: str) -> None:
        if self.status is not None:
            self.status.setText(text)


class JobFollower(QObject):
    """The jobs of ``owner`` in ``worker`` (see the module doc)."""

    started = Signal(int)
    progress = Signal(int, "qint64", "qint64")  # job_id, step, total (0: not known)
    preview = Signal(int, QImage, object)
    finished = Signal(int, object)  # job_id, studio.engine.jobs.events.Finished
    failed = Signal(int, str, str)  # job_id, message, detail
    cancelled = Signal(int)
    ended = Signal(int)  # job_id: before finished, failed or cancelled

    def __init__(
        self,
        worker: Worker,
        owner: object,
        bar: JobBar | None = None,
        errors: Callable[[str, str], None] | None = None,
    ) -> None:
        """Parented to ``owner`` when it is a QObject (it lives as long as the panel)."""
        super().__init__(owner if isinstance(owner, QObject) else None)
        self.worker, self.owner = worker, owner
        self.bar, self.errors = bar, errors
        self.ids: list[int] = []
        worker.started.connect(self._on_started)
        worker.progress.connect(self._on_progress)
        worker.preview.connect(self._on_preview)
        worker.finished.connect(self._on_finished)
        worker.failed.connect(self._on_failed)
        worker.cancelled.connect(self._on_cancelled)

    # -- the owner's jobs ----------------------------------------------------------------------
    def submit(
        self,
        request: object,
        region: tuple[int, int, int, int] | None = None,
        label: str = "",
        target: object = None,
    ) -> int:
        """Queue ``request`` for the owner (``Worker.submit``); returns its job id."""
        job_id = self.worker.submit(
            request, region=region, label=label, owner=self.owner, target=target
        )
        self.ids.append(job_id)
        return job_id

    def cancel(self, job_id: int | None = None) -> None:
        """Cancel the owner's job ``job_id`` (None: every one of them)."""
        for one in list(self.ids) if job_id is None else [job_id]:
            if one in self.ids:
                self.worker.cancel(one)

    @property
    def busy(self) -> bool:
        """Whether a job of the owner is queued or running."""
        return bool(self.ids)

    def job(self, job_id: int) -> Job | None:
        """The worker's job ``job_id`` if the owner submitted it, else None."""
        job = self.worker.job(job_id)
        if job is not None and job.owner is self.owner:
            return job
        return None

    def _mine(self, job_id: int) -> bool:
        return job_id in self.ids or self.job(job_id) is not None

    def _end(self, job_id: int) -> bool:
        """Whether ``job_id`` was the owner's: then it is forgotten and ``ended`` emitted."""
        if not self._mine(job_id):
            return False
        if job_id in self.ids:
            self.ids.remove(job_id)
        self.ended.emit(job_id)
        return True

    # -- the worker's signals (GUI thread) ------------------------------------------------------
    @Slot(int)
    def _on_started(self, job_id: int) -> None:
        if self._mine(job_id):
            self.started.emit(job_id)

    @Slot(int, "qint64", "qint64")
    def _on_progress(self, job_id: int, step: int, total: int) -> None:
        if not self._mine(job_id):
            return
        if self.bar is not None and total > 0:
            self.bar.step(step, total)
        self.progress.emit(job_id, step, total)

    @Slot(int, QImage, object)
    def _on_preview(self, job_id: int, image: QImage, region: object) -> None:
        if self._mine(job_id):
            self.preview.emit(job_id, image, region)

    @Slot(int, object)
    def _on_finished(self, job_id: int, event: object) -> None:
        if not self._end(job_id):
            return
        if self.bar is not None:
            self.bar.end("Done", self.bar.done_value)
        self.finished.emit(job_id, event)

    @Slot(int, str, str)
    def _on_failed(self, job_id: int, message: str, detail: str) -> None:
        if not self._end(job_id):
            return
        if self.bar is not None:
            self.bar.end("Failed")
            self.bar.say(message)
        if self.errors is not None:
            self.errors(message, detail)
        self.failed.emit(job_id, message, detail)

    @Slot(int)
    def _on_cancelled(self, job_id: int) -> None:
        if not self._end(job_id):
            return
        if self.bar is not None:
            self.bar.end("Cancelled")
            self.bar.say("Cancelled")
        self.cancelled.emit(job_id)
