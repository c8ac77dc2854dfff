"""Jobs as the window sees them: the engine's start and state label, where a job's
previews are painted (the job's own target, ``worker.Job.region`` and its output size), and
cancelling the running job. Panels place their own results; the ledger of what a job is for
is the worker's ``Job`` (request, region, owner), so nothing is tracked twice.

``JobsMixin`` is one room of ``MainWindow``: it uses the window's ``_worker``, ``model``,
``canvas``, ``engine_label``, ``show_error`` and ``show_status``.
"""

from __future__ import annotations

from PySide6.QtCore import QRectF, Qt, Slot
from PySide6.QtGui import QImage


class JobsMixin:
    """The engine and job signals of ``MainWindow``."""

    def _connect_jobs(self) -> None:
        w = self._worker
        w.preview.connect(self._on_job_preview)
        w.finished.connect(self._on_job_ended)
        w.failed.connect(self._on_job_failed)
        w.cancelled.connect(self._on_job_ended)
        w.engine_state.connect(self._on_engine_state)

    @Slot()
    def start_engine(self) -> None:
        """Start the worker thread and import torch/diffusers there (window already shown)."""
        if self._worker.state == "idle":
            self._on_engine_state("loading", "Loading engine…")
        self._worker.start(warm_up=True)

    @Slot(str, str)
    def _on_engine_state(self, state: str, message: str) -> None:
        self.engine_label.setText(message if len(message) < 60 else message[:57] + "…")
        self.engine_label.setProperty("state", state)
        self.engine_label.setToolTip(message)
        self.engine_label.style().unpolish(self.engine_label)
        self.engine_label.style().polish(self.engine_label)

    @Slot(int, QImage, object)
    def _on_job_preview(self, job_id: int, image: QImage, region: object) -> None:
        job = self._worker.job(job_id)
        if job is None:
            return
        rect = job.preview_rect(region, (self.model.doc.width, self.model.doc.height))
        self.canvas.show_preview(image, rect)
        if self.model.doc.is_empty:
            self.canvas.fitInView(QRectF(*rect), Qt.AspectRatioMode.KeepAspectRatio)

    @Slot(int)
    @Slot(int, object)
    def _on_job_ended(self, job_id: int, event: object = None) -> None:
        if not self._worker.busy:
            self.canvas.clear_preview()
        job = self._worker.job(job_id)
        placed = job is not None and job.owner in (
            self.panels.get("Generate"),
            self.panels.get("Inpaint"),
        )
        if placed and getattr(event, "images", None) and self.mask() is not None:
            # A new result: see it without the mask over it (Shift+M shows the mask again).
            if self.canvas.mask_shown:
                self.canvas.set_mask_shown(False)
            self.show_status("Mask hidden over the new result: Shift+M shows it")

    @Slot(int, str, str)
    def _on_job_failed(self, job_id: int, message: str, detail: str) -> None:
        self._on_job_ended(job_id)
        self.show_error(message, detail)

    @Slot()
    def cancel_job(self) -> None:
        if self._worker.running_job is not None:
            self._worker.cancel(None)
            self.show_status("Cancelling…")
