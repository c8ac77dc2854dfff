"""The Control panel's depth guide: a depth map (Depth Anything V2, Yang et al. 2024; near =
white, as depth ControlNets are trained) of the panel's source (the active layer or the
visible image, inside the selection) made by the engine's ``PreprocessRequest("depth")`` job
and added as a control layer over the region it covers."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QObject, Slot
from PySide6.QtWidgets import QGroupBox, QLabel, QPushButton, QVBoxLayout, QWidget

from studio.engine.jobs import PreprocessRequest
from studio.ui.job_follower import JobFollower
from studio.ui.pose_editor import control_rgba

NAME = "Depth"
TIP = (
    "A depth map of the source (near = white) for depth ControlNets, made with Depth Anything "
    "V2 Small: download “Depth Anything V2 Small” in the Models panel first."
)


class DepthGuide(QObject):
    """The "Depth" group of the Control panel and its jobs. ``panel`` is the Control panel:
    its ``host``, ``source_image()`` and ``add_control_layer()``."""

    def __init__(self, panel: QWidget) -> None:
        super().__init__(panel)
        self.panel = panel
        self.box = QGroupBox("Depth (Depth Anything V2)")
        layout = QVBoxLayout(self.box)
        self.button = QPushButton("Add depth as control layer")
        self.button.setObjectName("addDepthButton")
        self.button.setToolTip(TIP)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setVisible(False)  # shown while there is something to say
        layout.addWidget(self.button)
        layout.addWidget(self.status)
        self.follow = JobFollower(panel.host.worker, self, errors=panel.host.show_error)
        self.follow.finished.connect(self._on_finished)
        self.follow.failed.connect(self._on_failed)
        self.follow.ended.connect(self._on_ended)
        self.button.clicked.connect(self.add_depth_layer)
        self._region: tuple[int, int, int, int] | None = None
        self._job: int | None = None  # the job running now
        self._latest: int | None = None  # the newest job asked for (``ended`` comes first)

    @Slot()
    def add_depth_layer(self) -> int | None:
        """Ask the engine for the depth of the source; the layer is added when it comes."""
        src = self.panel.source_image()
        if src is None:
            self.panel.host.show_error("Open or create an image first.")
            return None
        crop, self._region = src
        rgb = np.ascontiguousarray(crop[..., :3]) if crop.ndim == 3 else crop
        self._job = self._latest = self.follow.submit(
            PreprocessRequest("depth", rgb), label="Depth map"
        )
        self.button.setEnabled(False)
        self._say("Estimating depth…")
        return self._job

    @Slot(int, object)
    def _on_finished(self, job_id: int, event: object) -> None:
        if job_id != self._latest or not getattr(event, "images", None):
            return
        depth = np.asarray(event.images[0], np.uint8)
        rgb = np.repeat(depth[..., None], 3, axis=2) if depth.ndim == 2 else depth[..., :3]
        x, y, _, _ = self._region
        meta = dict(event.metadata[0]) if getattr(event, "metadata", None) else {}
        meta["control"] = "depth"
        self.panel.add_control_layer(control_rgba(rgb), NAME, "control", (x, y), meta)
        self._say("")

    @Slot(int, str, str)
    def _on_failed(self, job_id: int, message: str, detail: str) -> None:
        self._say(message)

    def _say(self, text: str) -> None:
        self.status.setText(text)
        self.status.setVisible(bool(text))

    @Slot(int)
    def _on_ended(self, job_id: int) -> None:
        if job_id == self._job:
            self._job = None
            self.button.setEnabled(True)
