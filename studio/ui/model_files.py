"""Model files as the window sees them: which dropped files are models (``is_model_file``),
the file dialog's filter, and importing a dropped model file (``import_model_file``).

The import goes through the docked Models panel when there is one (``host.panels["Models"]``,
its ``import_files``: its list updates); without it, the job runs with a small reporter as
its owner that says the result in the status bar. A failure is shown by the window (as for
every job). Nothing here imports a panel module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Slot

from studio.engine.jobs import ImportModelRequest
from studio.ui.job_follower import JobFollower

__all__ = ["MODEL_FILTER", "MODEL_SUFFIXES", "import_model_file", "is_model_file"]

MODEL_SUFFIXES = (".safetensors", ".ckpt", ".pth", ".pt", ".bin", ".sft", ".gguf")
MODEL_FILTER = "Model files ({});;All files (*)".format(" ".join(f"*{s}" for s in MODEL_SUFFIXES))


def is_model_file(path: str | Path) -> bool:
    """True for files the model importer handles (so a drop can be routed here)."""
    return Path(path).suffix.lower() in MODEL_SUFFIXES


def import_model_file(host: Any, path: str | Path) -> int | None:
    """Import a model file dropped on the window: identify it (nothing in it runs) and copy it
    into Studio's models folder, as an ImportModelRequest in the worker. Returns the job id
    (None once the worker is shut down)."""
    import_files = getattr(host.panels.get("Models"), "import_files", None)
    if callable(import_files):
        return import_files([str(path)])[0]
    if host.worker.closed:
        return None
    reporter = _ImportReporter(host)
    host.worker.start(warm_up=False)  # a model-file job needs no torch
    return reporter.follow.submit(ImportModelRequest(str(path)), label=f"Import {Path(path).name}")


class _ImportReporter(QObject):
    """The owner of one standalone import: says its result in the status bar. It lives,
    parented to the worker, until its job ends."""

    def __init__(self, host: Any) -> None:
        super().__init__(host.worker)
        self.host = host
        self.follow = JobFollower(host.worker, self)
        self.follow.finished.connect(self._on_finished)
        self.follow.ended.connect(self._on_ended)

    @Slot(int, object)
    def _on_finished(self, job_id: int, event: object) -> None:
        rec = event.extra["imported"]  # type: ignore[attr-defined]
        self.host.show_status(f"Imported {rec.name}: {rec.description}")

    @Slot(int)
    def _on_ended(self, job_id: int) -> None:
        self.deleteLater()
