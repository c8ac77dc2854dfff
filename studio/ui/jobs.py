"""Jobs as the window sees them: the background worker (its engine threads), the engine's
start and its state label in the status bar, where a job's previews are painted (the job's own
target, ``worker.Job.region`` and its output size), and cancelling the running job. Panels
place their own results; the ledger of what a job is for is the worker's ``Job`` (request,
region, owner), so nothing is tracked twice.

``Jobs`` is one room of the window shell (``main_window.MainWindow``). It owns the worker and
the engine label; it talks to the rest through the ``Host`` contract (``model``, ``panels``,
``mask``, ``show_error``, ``show_status``) and paints previews on the ``canvas`` it is given.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QRectF, Qt, Slot
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QLabel, QWidget

if TYPE_CHECKING:
    from studio.ui.canvas import CanvasView
    from studio.ui.host import Host


class Jobs(QObject):
    """The engine worker and what the window shows of its jobs."""

    def __init__(self, window: QWidget, host: Host, canvas: CanvasView, threads: int = 0) -> None:
        """``window`` parents the worker (it lives as long as the window); ``threads`` is the
        engine's CPU thread count (0: its default)."""
        super().__init__(window)
        from studio.ui.worker import Worker

        self._host = host
        self._canvas = canvas
        self.worker = Worker(window, threads=threads)
        #: The engine's state ("idle", "loading", "ready", ...) for the status bar.
        self.engine_label = QLabel("Engine not started")
        self.engine_label.setObjectName("engineState")
        w = self.worker
        w.preview.connect(self._on_job_preview)
        w.finished.connect(self._on_job_ended)
        w.failed.connect(self._on_job_failed)
        w.cancelled.connect(self._on_job_ended)
        w.engine_state.connect(self._on_engine_state)

    @Slot()
    def start_engine(self) -> None:
        """Start the worker thread and import torch/diffusers there (window already shown)."""
        if self.worker.state == "idle":
            self._on_engine_state("loading", "Loading engine…")
        self.worker.start(warm_up=True)

    @Slot()
    def cancel_job(self) -> None:
        if self.worker.running_in("compute") is not None:  # never a download (files lane)
            self.worker.cancel(None)
            self._host.show_status("Cancelling…")

    def shutdown(self) -> None:
        """Stop the worker (the running job is cancelled; waits for it to wind down)."""
        self.worker.shutdown()

    @Slot(str, str)
    def _on_engine_state(self, state: str, message: str) -> None:
        label = self.engine_label
        label.setText(message if len(message) < 60 else message[:57] + "…")
        label.setProperty("state", state)
        label.setToolTip(message)
        label.style().unpolish(label)
        label.style().polish(label)

    @Slot(int, QImage, object)
    def _on_job_preview(self, job_id: int, image: QImage, region: object) -> None:
        job = self.worker.job(job_id)
        if job is None:
            return
        doc = self._host.model.doc
        rect = job.preview_rect(region, (doc.width, doc.height))
        self._canvas.show_preview(image, rect)
        if doc.is_empty:
            self._canvas.fitInView(QRectF(*rect), Qt.AspectRatioMode.KeepAspectRatio)

    @Slot(int)
    @Slot(int, object)
    def _on_job_ended(self, job_id: int, event: object = None) -> None:
        canvas = self._canvas
        if not self.worker.busy_in("compute"):  # previews only come from compute jobs
            canvas.clear_preview()
        job = self.worker.job(job_id)
        panels = self._host.panels
        placed = job is not None and job.owner in (panels.get("Generate"), panels.get("Inpaint"))
        if placed and getattr(event, "images", None) and self._host.mask() is not None:
            # A new result: see it without the mask over it (Shift+M shows the mask again).
            if canvas.mask_shown:
                canvas.set_mask_shown(False)
            self._host.show_status("Mask hidden over the new result: Shift+M shows it")

    @Slot(int, str, str)
    def _on_job_failed(self, job_id: int, message: str, detail: str) -> None:
        self._on_job_ended(job_id)
        job = self.worker.job(job_id)
        if job is not None and getattr(job.owner, "REPORTS_FAILURES", False):
            return  # its panel says it in its own words (e.g. "no network" once, not per job)
        self._host.show_error(message, detail)
