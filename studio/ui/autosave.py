"""Autosave: the recovery file of one window's document, written in the background while it
has unsaved changes and deleted once it has none (saved, discarded or replaced).

It keeps a change counter (the *revision*), not the undo index: the index stands still once
the stack is at its limit, and undo-then-edit or a new document land on an index already
seen. The file is written from a snapshot of the document in a background thread, so the
user never waits for it. Offering the file back after a crash is ``Documents.offer_recovery``.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QTimer, Slot

if TYPE_CHECKING:
    from studio.ui.document_model import DocumentModel

log = logging.getLogger(__name__)


class Autosave(QObject):
    """Every ``seconds`` (``STUDIO_AUTOSAVE_SECONDS`` overrides), write ``model``'s document
    to this session's recovery file if it changed; ``start=False``: only when asked."""

    def __init__(
        self, model: DocumentModel, seconds: int, parent: QObject | None = None, start: bool = True
    ) -> None:
        super().__init__(parent)
        from studio.core import recovery

        self._recovery = recovery
        self._model = model
        self._revision = 0  # changes made
        self._saved_revision = 0  # the revision the recovery file holds (or was cleared at)
        self._thread: threading.Thread | None = None
        model.undo.indexChanged.connect(self._bump)
        model.document_replaced.connect(self._bump)
        self.timer = QTimer(self)
        seconds = int(os.environ.get("STUDIO_AUTOSAVE_SECONDS") or seconds)
        self.timer.setInterval(max(1, seconds) * 1000)
        self.timer.timeout.connect(self.autosave)
        if start:
            self.timer.start()

    @Slot()
    def _bump(self, *_: object) -> None:
        self._revision += 1

    def stop(self) -> None:
        """No more timed autosaves."""
        self.timer.stop()

    def clear(self) -> None:
        """Delete this session's recovery file (after a save, or when the document it held is
        gone), first letting a running autosave finish so it can't put the file back."""
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._recovery.clear_recovery()
        self._saved_revision = self._revision

    @Slot()
    def autosave(self, background: bool = True) -> bool:
        """Write the recovery file if the document changed since the last autosave; drop it
        once the document has nothing unsaved (saved, or replaced by a freshly opened one).
        True when a write was started (``background``) or done."""
        if self._thread is not None and self._thread.is_alive():
            return False
        model = self._model
        if not model.dirty or model.doc.is_empty:
            if self._saved_revision != self._revision:
                self.clear()
            return False
        if self._revision == self._saved_revision:
            return False
        self._saved_revision = self._revision
        snapshot = model.doc.snapshot()
        source = model.path
        recovery = self._recovery

        def write() -> None:
            try:
                recovery.write_recovery(snapshot, source)
            except Exception:  # noqa: BLE001 - autosave must never disturb the user
                log.exception("autosave failed")

        if background:
            self._thread = threading.Thread(target=write, name="autosave", daemon=True)
            self._thread.start()
        else:
            write()
        return True
