"""The Control panel: ControlNet guides made from the document.

- Edges: Canny on the active layer (or the visible image), inside the selection if there is
  one; "Add as control layer" keeps the result as a layer of kind "control" (white edges,
  transparent elsewhere, so it overlays the picture) that records its source. While such a
  layer is the active one and the panel is in front, the low/high sliders update a live
  overlay of its edges, from its own source (``control_preview``; debounced, cv2.Canny on a
  1024x1024 image takes a few ms).
- Scribble: a new empty control layer to paint on; the strokes are the guide as drawn.
- Pose: detect people (the OpenPose job in the worker) or start from a default skeleton; the
  pose is edited in the embedded :class:`PoseEditor` (drag keypoints, add/remove/mirror
  people, save/load OpenPose JSON), every edit one undo step in the document's history, and
  kept on a layer of kind "pose" whose pixels follow the edits.
- The list of control layers with weight, start/end (fractions of the steps) and the
  ControlNet model for each, kept in each layer's metadata; :func:`control_inputs` (the
  document's ``control_model.document_controls``) turns them into ``ControlInput`` objects
  for ``GenerateRequest.controls``.
- Each layer's ControlNet is picked from a list (never typed): the ControlNets of its kind
  that fit the Generate panel's model's family (catalog entries by their base; imported and
  folder ones by the family identified from their weights or config), installed first, then
  the catalog's ones to download, marked so. A new guide gets an installed one that fits
  (else the catalog's that fits: SD-Turbo's canny guide gets the SD 2.1 ControlNet, not
  ``sd15-canny``), and follows the generation model until the user picks one. Picking one
  to download offers it at once under the list ("⤓ Download …"), through the Models panel.

The panel's settings live in a ``ControlModel`` (``studio.ui.panels.control_model``:
persisted; it also builds the Canny guide, the pose job and the ControlInputs); the widgets
are built and bound to it by ``control_form`` and hold no state of their own. Each control
layer's ControlNet settings are its metadata, which the list (``control_layers``) edits; the
pose helpers (detected people, keypoints dragged on the canvas) are ``control_pose``'s.

Layers are found, added and followed through the host's ``model``
(``studio.ui.document_model.DocumentModel``, declared by ``studio.ui.host.Host``).
"""

from __future__ import annotations

import logging

import numpy as np
from PySide6.QtCore import Slot
from PySide6.QtWidgets import QFileDialog, QWidget

from studio.core.errors import StudioError
from studio.core.pose import Pose, render
from studio.engine.jobs import ControlInput
from studio.ui.job_follower import JobFollower
from studio.ui.panels.control_form import POSE_MODEL_TIP, lay_out
from studio.ui.panels.control_layers import ControlLayerList
from studio.ui.panels.control_model import (
    CONTROL_KINDS,
    DEFAULT_CONTROLNETS,
    THRESHOLD_MAX,
    ControlEntry,
    ControlModel,
    ControlNetOption,
    document_controls,
    new_layer_metadata,
)
from studio.ui.panels.control_pose import (
    NO_POSE_DETECTOR,
    KeypointDrag,
    found_text,
    in_document,
    pose_detector_installed,
)
from studio.ui.panels.control_preview import PREVIEW_DEBOUNCE_MS, CannyPreview, find_layer
from studio.ui.panels.control_source import GuideSource
from studio.ui.pose_editor import control_rgba

log = logging.getLogger(__name__)

__all__ = [
    "CONTROL_KINDS",
    "DEFAULT_CONTROLNETS",
    "POSE_MODEL_TIP",
    "PREVIEW_DEBOUNCE_MS",
    "THRESHOLD_MAX",
    "ControlEntry",
    "ControlModel",
    "ControlPanel",
    "control_inputs",
]


def control_inputs(
    host,
    region: tuple[int, int, int, int] | None = None,
    size: tuple[int, int] | None = None,
) -> tuple[ControlInput, ...]:
    """The enabled control layers of ``host``'s document as ControlInputs
    (``control_model.document_controls``; ValueError for a setting the engine refuses)."""
    return document_controls(host.model.doc, region, size)


class ControlPanel(QWidget):
    """Canny, scribble and pose guides and the list of control layers (see the module doc).
    The settings live in ``self.state`` (a ``ControlModel``); the widgets are bound to it."""

    def __init__(self, host, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.host = host
        self.state = ControlModel(host.settings, self)  # the panel's settings (no widgets)
        self.preview = CannyPreview(host, self.state, self)  # the live overlay on the canvas
        self.guide_source = GuideSource(host, self.state)  # cached until something changes
        self._pose_job: int | None = None
        self.pose_layer_uid: int | None = None
        self._adding_pose_layer = False
        lay_out(self)  # every widget, bound to self.state
        self.keypoint_drag = KeypointDrag(self.editor)  # a keypoint dragged on the canvas
        self.layers = ControlLayerList(
            host, self.table, self.download_button, self.controlnet_note, self
        )

        self.state.changed.connect(self._on_state_changed)
        self.follow = JobFollower(host.worker, self)  # the pose detection jobs
        self.follow.ended.connect(self._on_job_ended)
        self.follow.finished.connect(self._on_job_finished)
        self.follow.failed.connect(self._on_job_failed)
        self.follow.cancelled.connect(self._on_job_cancelled)
        model = self._model()
        model.structure_changed.connect(self.refresh_layers)
        model.structure_changed.connect(self.preview.invalidate)
        model.document_replaced.connect(self._on_document_replaced)
        model.pixels_changed.connect(self._on_pixels_changed)
        model.selection_changed.connect(self.invalidate_source)
        model.active_changed.connect(self._on_active_changed)
        model.active_changed.connect(self.preview.schedule)  # a Canny layer picked, or left
        if hasattr(host, "models_updated"):  # downloaded or imported: in the pickers at once
            host.models_updated.connect(self.refresh_layers)
        generate = host.panels.get("Generate") if isinstance(host.panels, dict) else None
        gen_state = getattr(generate, "state", None)
        if gen_state is not None and hasattr(gen_state, "changed"):  # the model's family
            gen_state.changed.connect(self._on_generate_changed)
        self.refresh_layers()
        self._update_region_label()

    # == helpers =================================================================================
    @Slot(str, object)
    def _on_state_changed(self, name: str, value: object) -> None:
        if name == "source":
            self.invalidate_source()
        elif name in ("low", "high", "blur"):
            self.schedule_preview()
        elif name == "live":
            self._live_toggled(bool(value))

    def _model(self):
        """The host's DocumentModel."""
        return self.host.model

    def _doc_size(self) -> tuple[int, int]:
        return self.guide_source.doc_size()

    def _layer(self, uid: int | None):
        return None if uid is None else find_layer(self._model().doc, uid)

    def _error(self, message: str, detail: str = "") -> None:
        self.host.show_error(message, detail)

    # == source (control_source.GuideSource) ===================================================
    @Slot()
    def invalidate_source(self) -> None:
        self.guide_source.cached = None
        self._update_region_label()
        self.preview.invalidate()

    def _update_region_label(self) -> None:
        self.region_label.setText(self.guide_source.region_text())

    def source_image(self) -> tuple[np.ndarray, tuple[int, int, int, int]] | None:
        """(RGBA crop of the source inside the generation region, region), cached until the
        document, selection or source choice changes."""
        return self.guide_source.image()

    def source_ref(self) -> int | str:
        """What new guides are made from: the uid of an image layer, or COMPOSITE (the
        visible image); see ``GuideSource.ref``."""
        return self.guide_source.ref()

    def _active_layer(self):
        return self.guide_source.active_layer()

    # == canny ===================================================================================
    def thresholds(self) -> tuple[int, int]:
        return self.state.thresholds()

    @property
    def shown(self) -> bool:
        """The panel's dock is the one in front (``set_shown``)."""
        return self.preview.shown

    @property
    def last_preview_ms(self) -> float:
        return self.preview.last_ms

    @Slot()
    def schedule_preview(self) -> None:
        self.preview.schedule()

    @Slot(bool)
    def _live_toggled(self, on: bool) -> None:
        self.preview.schedule()

    def canny_result(self) -> tuple[np.ndarray, tuple[int, int, int, int]] | None:
        """(edges RGB of the source crop, region) for the current thresholds."""
        src = self.source_image()
        if src is None:
            return None
        crop, region = src
        return self.state.edges(crop), region

    @Slot()
    def update_preview(self) -> None:
        """Redraw the live overlay now (it shows only while a Canny layer is edited)."""
        self.preview.update()

    @Slot()
    def add_canny_layer(self) -> None:
        try:
            result = self.canny_result()
            if result is None:
                self.state.edges(None)  # raises the message
        except ValueError as e:
            self._error(str(e))
            return
        edges, (x, y, _, _) = result
        name, meta = self.state.canny_name(), self.state.canny_metadata()
        meta["source"] = self.source_ref()  # its overlay's edges come from there only
        self.add_control_layer(control_rgba(edges), name, "control", (x, y), meta)

    # == scribble ================================================================================
    @Slot()
    def add_scribble_layer(self) -> None:
        w, h = self._doc_size()
        if not w or not h:
            self._error("Open or create an image first.")
            return
        blank = np.zeros((h, w, 4), np.uint8)
        uid = self.add_control_layer(blank, "Scribble", "control", (0, 0), {"control": "scribble"})
        if uid is not None:  # asked for to paint on: say so (the badge shows it too)
            self._model().set_active(uid)
            self.host.show_status("The brush paints on “Scribble” now (Q: back to the mask)")

    def add_control_layer(
        self, rgba: np.ndarray, name: str, kind: str, offset: tuple[int, int], meta: dict
    ) -> int | None:
        meta = new_layer_metadata(meta, self.default_controlnet(meta["control"]))
        self.host.add_layer(rgba, name, kind=kind, offset=offset, metadata=meta)
        uid = self._find_added(kind, name)
        self.refresh_layers()
        return uid

    def _find_added(self, kind: str, name: str) -> int | None:
        for layer in reversed(self._model().doc.layers):
            if layer.kind == kind and layer.name == name:
                return layer.uid
        return None

    # == pose ====================================================================================
    def _browse_pose_model(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Pose detector folder (DWPose or OpenPose)")
        if path:
            self.state.pose_model = path

    @Slot()
    def detect_pose(self) -> int | None:
        src = self.source_image()
        crop, region = src if src is not None else (None, None)
        try:
            request = self.state.pose_request(crop)
        except ValueError as e:
            self._error(str(e))
            return None
        if not self.state.pose_model.strip() and not pose_detector_installed():
            self.pose_status.setText(NO_POSE_DETECTOR)  # in GUI words, before any job
            self._error(NO_POSE_DETECTOR)
            return None
        self._pose_region = region
        self._pose_job = self.follow.submit(request, region=None, label="Detect pose")
        self.detect_button.setEnabled(False)
        self.pose_status.setText("Detecting…")
        return self._pose_job

    @Slot(int)
    def _on_job_ended(self, job_id: int) -> None:
        if job_id == self._pose_job:
            self._pose_job = None
            self.detect_button.setEnabled(True)

    @Slot(int, object)
    def _on_job_finished(self, job_id: int, event: object) -> None:
        try:
            found = Pose.from_dict(event.extra["pose"])  # type: ignore[attr-defined]
        except (KeyError, AttributeError, StudioError) as e:
            self._error("The pose detector returned no keypoints.", repr(e))
            return
        x, y, _, _ = self._pose_region
        pose = in_document(found, (x, y), self._doc_size())
        n = len(pose.people)
        self.pose_status.setText(found_text(n))
        if n:
            self.set_pose(pose, "Detect pose")

    @Slot(int, str, str)
    def _on_job_failed(self, job_id: int, message: str, detail: str) -> None:
        self.pose_status.setText(message + "\nYou can place a default skeleton instead.")
        self._error(message, detail)

    @Slot(int)
    def _on_job_cancelled(self, job_id: int) -> None:
        self.pose_status.setText("Cancelled.")

    @Slot()
    def default_skeleton(self) -> None:
        w, h = self._doc_size()
        if not w or not h:
            w, h = self.editor.pose.width, self.editor.pose.height
        from studio.core.pose import default_pose

        self.set_pose(default_pose(w, h), "Default skeleton")

    def set_pose(self, pose: Pose, text: str) -> None:
        """Put ``pose`` in the editor (one undo step) on the bound pose layer, making the
        layer first if there is none. The pose layer becomes the active one: a skeleton is
        placed to be posed, so the next drag on the canvas moves its keypoints rather than
        painting on the layer that was active."""
        self._ensure_pose_layer(pose)
        self.update_reference()
        self.editor.load_pose(pose, text)
        layer = self._layer(self.pose_layer_uid)
        if layer is not None and self._active_layer() is not layer:
            self._model().set_active(layer.uid)
            self.host.show_status("Drag the skeleton's keypoints on the canvas (Q: the mask)")

    def update_reference(self) -> None:
        """Show the visible image dimmed under the skeleton, to pose against."""
        comp = self.host.composite()
        self.editor.set_reference(None if comp is None else np.ascontiguousarray(comp[..., :3]))

    def _ensure_pose_layer(self, pose: Pose) -> None:
        layer = self._layer(self.pose_layer_uid)
        if layer is not None and layer.size == (pose.width, pose.height):
            return
        meta = {"control": "pose", "pose": pose.to_dict()}
        self._adding_pose_layer = True  # don't load the new layer back into the editor
        try:
            self.pose_layer_uid = self.add_control_layer(
                control_rgba(render(pose)), "Pose", "pose", (0, 0), meta
            )
        finally:
            self._adding_pose_layer = False

    @Slot(object)
    def _on_pose_changed(self, pose: Pose) -> None:
        """Keep the pose layer's pixels and keypoints in step with the editor (undo/redo of
        pose edits run through here too, so the layer follows them)."""
        rgba = control_rgba(render(pose))
        layer = self._layer(self.pose_layer_uid)
        model = self._model()
        if layer is not None:
            layer.metadata["pose"] = pose.to_dict()
            if layer.pixels.shape == rgba.shape:
                model.apply_pixels(layer.uid, rgba)

    # -- keypoints dragged on the main canvas (CanvasView.pose_handler) -------------------------
    def begin_keypoint_drag(self, x: float, y: float, radius: float) -> bool:
        """Start dragging the body keypoint within ``radius`` of (x, y) (layer pixels)."""
        return self.keypoint_drag.begin(x, y, radius)

    def drag_keypoint(self, x: float, y: float) -> None:
        """Follow the mouse live (the pose layer is redrawn; no undo step yet)."""
        self.keypoint_drag.move(x, y)

    def end_keypoint_drag(self, x: float, y: float) -> None:
        """One undo step for the whole drag, as the side editor makes."""
        self.keypoint_drag.end(x, y)

    def _remove_person(self) -> None:
        self.editor.remove_person()

    def _mirror(self) -> None:
        self.editor.mirror()

    def _load_json_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load pose", "", "OpenPose JSON (*.json)")
        if path:
            self.load_json(path)

    def load_json(self, path: str) -> None:
        w, h = self._doc_size()
        try:
            pose = Pose.load(path, w or None, h or None)
        except StudioError as e:
            self._error(e.message, e.detail)
            return
        self.set_pose(pose, "Load pose")

    def _save_json_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Save pose", "pose.json", "OpenPose JSON (*.json)"
        )
        if path:
            try:
                self.editor.save_json(path)
            except StudioError as e:
                self._error(e.message, e.detail)

    @Slot()
    def _on_active_changed(self) -> None:
        """Selecting a pose layer loads its keypoints into the editor."""
        layer = self._active_layer()
        if self._adding_pose_layer or layer is None or layer.kind != "pose":
            return
        if layer.uid == self.pose_layer_uid:
            return
        data = layer.metadata.get("pose")
        if not isinstance(data, dict):
            return
        try:
            pose = Pose.from_dict(data)
        except StudioError:
            return
        self.pose_layer_uid = layer.uid
        self.editor.set_pose(pose)
        self.update_reference()

    @Slot()
    def _on_document_replaced(self) -> None:
        self.pose_layer_uid = None
        self.invalidate_source()
        self._on_active_changed()

    @Slot(int, object)
    def _on_pixels_changed(self, uid: int, rect: object) -> None:
        if uid != self.pose_layer_uid:
            self.guide_source.cached = None  # the next guide re-reads the (maybe edited) source
            self.preview.invalidate()

    # == the list of controls (control_layers.ControlLayerList) ================================
    def entries(self) -> list[ControlEntry]:
        return self.layers.entries()

    def default_controlnet(self, kind: str) -> str:
        """The ControlNet a new guide of ``kind`` gets, for the generation model's family."""
        return self.layers.default_controlnet(kind)

    def missing_controlnets(self) -> list[ControlNetOption]:
        """The catalog ControlNets the enabled guides use that are not installed yet."""
        return self.layers.missing()

    @Slot()
    def download_controlnets(self) -> None:
        """Download the picked ControlNets that are not installed, through the Models panel."""
        self.layers.download()

    @Slot()
    def refresh_layers(self) -> None:
        self.layers.refresh()
        # pose_layer_uid is kept while its layer is gone: undo/redo may bring it back, and
        # the pose edits redone after it must reach it again.

    @Slot(str, object)
    def _on_generate_changed(self, name: str, value: object) -> None:
        if name == "model":  # another family: other ControlNets fit
            self.refresh_layers()

    def control_inputs(
        self,
        region: tuple[int, int, int, int] | None = None,
        size: tuple[int, int] | None = None,
    ) -> tuple[ControlInput, ...]:
        """The enabled guides as ControlInputs (``control_model.document_controls``)."""
        return document_controls(self._model().doc, region, size)

    # == Qt ======================================================================================
    @Slot(bool)
    def set_shown(self, shown: bool) -> None:
        """The panel's dock became the one shown (or stopped being it): the live preview
        runs only while it is. Tabbed docks that are not current still report isVisible()
        true and get no hideEvent, so the host calls this from the dock's
        visibilityChanged."""
        if shown == self.shown:
            return
        if shown:
            self._update_region_label()
        self.preview.set_shown(shown)

    def showEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().showEvent(event)
        self._update_region_label()

    def hideEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().hideEvent(event)
        self.set_shown(False)
