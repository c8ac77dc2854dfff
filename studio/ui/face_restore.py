"""Layer > Restore faces: the faces of the visible image restored (YuNet finds them, GFPGAN
restores them aligned at 512x512, a feathered paste puts them back: ``engine.restore.faces``)
and added as a new layer above the others, so the original stays and one undo removes it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QObject, Slot
from PySide6.QtGui import QAction

from studio.engine.jobs import RestoreFacesRequest
from studio.ui.job_follower import JobFollower

if TYPE_CHECKING:
    from PySide6.QtWidgets import QMenu

    from studio.ui.host import Host

LAYER_NAME = "Faces restored"


class FaceRestore(QObject):
    """The Restore faces action and its job."""

    def __init__(self, host: Host, menu: QMenu, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.host = host
        self.jobs = JobFollower(host.worker, self, errors=host.show_error)
        self.jobs.finished.connect(self._on_finished)
        self.jobs.ended.connect(self._on_ended)
        self.action = QAction("Restore &faces", self)
        self.action.setStatusTip("Restore the faces of the visible image into a new layer")
        self.action.triggered.connect(self.restore)
        menu.addSeparator()
        menu.addAction(self.action)
        self._latest: int | None = None

    @Slot()
    def restore(self) -> int | None:
        image = self.host.composite()
        if image is None:
            self.host.show_error("Open or create an image first.")
            return None
        rgb = np.ascontiguousarray(image[..., :3])
        self.action.setEnabled(False)
        self.host.show_status("Restoring faces…")
        self._latest = self.jobs.submit(RestoreFacesRequest(rgb), label="Restore faces")
        return self._latest

    @Slot(int, object)
    def _on_finished(self, job_id: int, event: object) -> None:
        if job_id != self._latest or not getattr(event, "images", None):
            return
        faces = (getattr(event, "extra", None) or {}).get("faces") or []
        if not faces:
            self.host.show_status("No face found in the visible image.")
            return
        out = np.asarray(event.images[0], np.uint8)
        rgba = np.dstack([out[..., :3], np.full(out.shape[:2], 255, np.uint8)])
        meta = dict(event.metadata[0]) if getattr(event, "metadata", None) else {}
        self.host.add_layer(rgba, LAYER_NAME, metadata=meta)
        n = len(faces)
        self.host.show_status(f"Restored {n} face{'s' if n != 1 else ''} into “{LAYER_NAME}”.")

    @Slot(int)
    def _on_ended(self, job_id: int) -> None:
        self.action.setEnabled(True)
