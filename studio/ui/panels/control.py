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
are bound to it and hold no state of their own. Each control layer's ControlNet settings are
its metadata, which the list edits.

Layers are found, added and followed through the host's ``model``
(``studio.ui.document_model.DocumentModel``, declared by ``studio.ui.host.Host``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSlider,
    QSpinBox,
    QTableWidget,
    QVBoxLayout,
    QWidget,
)

from studio.core.catalog import format_size
from studio.core.errors import StudioError
from studio.core.pose import Pose, render
from studio.engine.jobs import ControlInput
from studio.ui.job_follower import JobFollower
from studio.ui.panels.control_model import (
    CONTROL_KINDS,
    CONTROLNET_KIND,
    DEFAULT_CONTROLNETS,
    LAYER_RANGES,
    RANGES,
    SOURCES,
    THRESHOLD_MAX,
    ControlEntry,
    ControlModel,
    ControlNetOption,
    controlnet_options,
    default_controlnet,
    document_controls,
    entries,
    new_layer_metadata,
    place,
)
from studio.ui.panels.control_preview import (
    COMPOSITE,
    PREVIEW_DEBOUNCE_MS,
    CannyPreview,
    find_layer,
    is_canny_layer,
)
from studio.ui.panels.model_picker import ModelPicker, PickerRow
from studio.ui.pose_editor import PoseEditor, control_rgba
from studio.ui.properties import bind

log = logging.getLogger(__name__)

__all__ = [
    "CONTROL_KINDS",
    "DEFAULT_CONTROLNETS",
    "PREVIEW_DEBOUNCE_MS",
    "THRESHOLD_MAX",
    "ControlEntry",
    "ControlModel",
    "ControlPanel",
    "control_inputs",
]

# What the pose detector field's tooltip tells a GUI user.
POSE_MODEL_TIP = (
    "Empty: the installed pose detector. Download “DWPose (ONNX)” (needs onnxruntime) or "
    "“OpenPose body/hand/face detector” in the Models panel. Or press “…” and choose a "
    "folder holding yolox_l.onnx + dw-ll_ucoco_384.onnx (DWPose) or body_pose_model.pth "
    "(OpenPose)."
)

NO_POSE_DETECTOR = (
    "No pose detector is installed: download “DWPose (ONNX)” or “OpenPose body/hand/face "
    "detector” in the Models panel, or press “…” to choose a detector folder. You can place a "
    "default skeleton instead."
)


def pose_detector_installed() -> bool:
    """Whether any pose detector is installed (catalog, imported or in a model folder); True
    when that can't be told (the job then says)."""
    try:
        from studio.engine.models import list_models  # torch-free

        return bool(list_models("pose-detector"))
    except Exception:  # noqa: BLE001 - a broken models folder: let the job decide
        return True


def family_label(base: str | None) -> str:
    """ "SD 2.x", "SDXL", ... for a family name ("" for None; the name when unknown)."""
    if not base:
        return ""
    try:
        from studio.engine.diffusion.families import family  # torch-free

        return family(base).label
    except Exception:  # noqa: BLE001 - a family the registry doesn't know
        return base


def family_accepts(name: str | None):
    """Whether family ``name`` takes a ControlNet made for a base (its descriptor's
    ``accepts_controlnet``); None when the family is not known."""
    if not name:
        return None
    try:
        from studio.engine.diffusion.families import family  # torch-free

        return family(name).accepts_controlnet
    except Exception:  # noqa: BLE001
        return None


def controlnet_options_for(kind: str, family: str | None) -> list[ControlNetOption]:
    """The ControlNets a guide of ``kind`` ("canny", "pose", "scribble") may use with a model
    of ``family`` (None: not known), best first (``control_model.controlnet_options``): the
    catalog's of that kind (installed or to download) and the imported and folder ones whose
    name does not say another condition, each with its identified family."""
    cn_kind = CONTROLNET_KIND.get(kind)
    try:
        from studio.engine.models import list_models  # torch-free, reads the disk each call
        from studio.engine.models.scan import controlnet_fits

        choices = list_models(cn_kind or "controlnet", include_missing=True)
    except Exception:  # noqa: BLE001 - a broken models folder must not break the panel
        return []
    if cn_kind:
        choices = [
            c
            for c in choices
            if c.source == "catalog" or controlnet_fits(Path(c.ref).name, cn_kind)
        ]
    return controlnet_options(choices, family, family_accepts(family))


def controlnet_rows(
    options: list[ControlNetOption], current: str, family: str | None
) -> list[PickerRow]:
    """The picker's rows: the options that may fit (the current choice too, marked when it
    was made for another family), each named, with its family and, when it is not installed,
    what it downloads."""
    gen = family_label(family)
    rows = []
    for o in options:
        if o.fits is False and o.ref != current:
            continue
        label = o.name
        if not o.catalog and o.base:
            label += f" · {family_label(o.base)}"
        if not o.installed:
            label += f" — download {format_size(o.size)}"
        if o.fits is False:
            label += f" (for {family_label(o.base)}, not {gen})"
        if not o.installed:
            tip = f"{o.name}: not installed. Pick it and press “Download” under the list."
        elif o.fits is None and family:
            tip = f"{o.name}\n{o.ref}\nIts family is not known: it may not fit {gen} models."
        else:
            tip = o.name if o.catalog else f"{o.name}\n{o.ref}"
        rows.append(PickerRow(o.ref, label, tip, o.installed, o.size))
    return rows


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
        self._drag: tuple | None = None  # (person, keypoint, pose before) of a canvas drag
        self._source: tuple[np.ndarray, tuple[int, int, int, int]] | None = None
        self._pose_job: int | None = None
        self.pose_layer_uid: int | None = None
        self._adding_pose_layer = False

        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        outer.addWidget(scroll)
        body = QWidget()
        scroll.setWidget(body)
        layout = QVBoxLayout(body)

        # -- source ----------------------------------------------------------------------------
        src = QFormLayout()
        self.source_combo = QComboBox()
        for key, label in SOURCES:
            self.source_combo.addItem(label, key)
        src.addRow("Source", self.source_combo)
        self.region_label = QLabel("")
        src.addRow("Region", self.region_label)
        layout.addLayout(src)

        # -- canny -----------------------------------------------------------------------------
        edges = QGroupBox("Edges (Canny)")
        grid = QGridLayout(edges)
        self.low_slider, self.low_spin = self._threshold_row(grid, 0, "Low", "low")
        self.high_slider, self.high_spin = self._threshold_row(grid, 1, "High", "high")
        grid.addWidget(QLabel("Blur"), 2, 0)
        self.blur_spin = QSpinBox()
        self.blur_spin.setRange(*RANGES["blur"][1:])
        self.blur_spin.setSingleStep(2)
        self.blur_spin.setToolTip("Gaussian blur (kernel px) before edge detection: fewer, "
                                  "cleaner edges")  # fmt: skip
        bind(self.state, "blur", self.blur_spin)
        grid.addWidget(self.blur_spin, 2, 1, 1, 2)
        self.live_check = QCheckBox("Live preview on canvas")
        bind(self.state, "live", self.live_check)
        grid.addWidget(self.live_check, 3, 0, 1, 3)
        self.add_canny_button = QPushButton("Add as control layer")
        self.add_canny_button.clicked.connect(self.add_canny_layer)
        grid.addWidget(self.add_canny_button, 4, 0, 1, 3)
        layout.addWidget(edges)

        # -- scribble --------------------------------------------------------------------------
        scribble = QGroupBox("Scribble")
        sl = QVBoxLayout(scribble)
        hint = QLabel("Paint light strokes on a scribble layer: they guide as drawn.")
        hint.setWordWrap(True)
        sl.addWidget(hint)
        self.add_scribble_button = QPushButton("New scribble layer")
        self.add_scribble_button.clicked.connect(self.add_scribble_layer)
        sl.addWidget(self.add_scribble_button)
        layout.addWidget(scribble)

        # -- pose ------------------------------------------------------------------------------
        pose_box = QGroupBox("Pose (OpenPose skeleton)")
        pl = QVBoxLayout(pose_box)
        row = QHBoxLayout()
        self.pose_model = QLineEdit()
        self.pose_model.setPlaceholderText("installed detector, or a folder")
        self.pose_model.setToolTip(POSE_MODEL_TIP)
        bind(self.state, "pose_model", self.pose_model)
        row.addWidget(self.pose_model, 1)
        browse = QPushButton("…")
        browse.setToolTip("Choose a pose detector folder")
        browse.setFixedWidth(28)
        browse.clicked.connect(self._browse_pose_model)
        row.addWidget(browse)
        pl.addLayout(row)
        row = QHBoxLayout()
        self.detect_button = QPushButton("Detect pose")
        self.detect_button.clicked.connect(self.detect_pose)
        self.template_button = QPushButton("Default skeleton")
        self.template_button.clicked.connect(self.default_skeleton)
        row.addWidget(self.detect_button)
        row.addWidget(self.template_button)
        pl.addLayout(row)
        self.hands_check = QCheckBox("Hands and face (when their models are installed)")
        bind(self.state, "hands", self.hands_check)
        pl.addWidget(self.hands_check)
        self.pose_status = QLabel("")
        self.pose_status.setWordWrap(True)
        pl.addWidget(self.pose_status)
        w, h = self._doc_size()
        self.editor = PoseEditor(push=host.push_command, size=(w or 512, h or 512))
        self.editor.setMinimumHeight(240)
        self.editor.pose_changed.connect(self._on_pose_changed)
        pl.addWidget(self.editor)
        row = QHBoxLayout()
        for text, slot in (
            ("Add person", self.editor.add_person),
            ("Remove person", self._remove_person),
            ("Mirror", self._mirror),
        ):
            b = QPushButton(text)
            b.clicked.connect(slot)
            row.addWidget(b)
        pl.addLayout(row)
        row = QHBoxLayout()
        load = QPushButton("Load JSON…")
        load.clicked.connect(self._load_json_dialog)
        save = QPushButton("Save JSON…")
        save.clicked.connect(self._save_json_dialog)
        row.addWidget(load)
        row.addWidget(save)
        pl.addLayout(row)
        layout.addWidget(pose_box)

        # -- the control layers ----------------------------------------------------------------
        box = QGroupBox("Control layers (used by Generate)")
        bl = QVBoxLayout(box)
        self.table = QTableWidget(0, 6)
        self.table.setHorizontalHeaderLabels(
            ["On", "Layer", "Weight", "Start", "End", "ControlNet"]
        )
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        for col, width in enumerate((30, 110, 62, 62, 62)):
            header.resizeSection(col, width)
        header.setStretchLastSection(True)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.table.setMinimumHeight(120)
        bl.addWidget(self.table)
        # A ControlNet picked that is not installed yet: downloaded here, in one click.
        self.download_button = QPushButton()
        self.download_button.setObjectName("download-controlnet")
        self.download_button.setToolTip(
            "Download the picked ControlNets (the Models panel shows progress)"
        )
        self.download_button.clicked.connect(self.download_controlnets)
        self.download_button.setVisible(False)
        bl.addWidget(self.download_button)
        self.controlnet_note = QLabel("")
        self.controlnet_note.setWordWrap(True)
        self.controlnet_note.setVisible(False)
        bl.addWidget(self.controlnet_note)
        self._options: dict[str, list[ControlNetOption]] = {}
        layout.addWidget(box)
        layout.addStretch(1)

        bind(self.state, "source", self.source_combo, data=True)
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
    def _threshold_row(self, grid: QGridLayout, row: int, text: str, name: str):
        """A slider and a spin box, both bound to ``self.state.<name>``."""
        grid.addWidget(QLabel(text), row, 0)
        slider = QSlider(Qt.Orientation.Horizontal)
        slider.setRange(*RANGES[name][1:])
        spin = QSpinBox()
        spin.setRange(*RANGES[name][1:])
        bind(self.state, name, slider)
        bind(self.state, name, spin)
        slider.sliderPressed.connect(self.source_image)  # fetch the source before it moves
        grid.addWidget(slider, row, 1)
        grid.addWidget(spin, row, 2)
        return slider, spin

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
        try:
            return tuple(self.host.image_size())  # type: ignore[return-value]
        except Exception:  # noqa: BLE001
            return (0, 0)

    def _layer(self, uid: int | None):
        model = self._model()
        if uid is None:
            return None
        for layer in model.doc.layers:
            if layer.uid == uid:
                return layer
        return None

    def _error(self, message: str, detail: str = "") -> None:
        self.host.show_error(message, detail)

    # == source ==================================================================================
    @Slot()
    def invalidate_source(self) -> None:
        self._source = None
        self._update_region_label()
        self.preview.invalidate()

    def _update_region_label(self) -> None:
        w, h = self._doc_size()
        if not w or not h:
            self.region_label.setText("no image")
            return
        x, y, rw, rh = self.host.selection_rect()
        where = "whole image" if (rw, rh) == (w, h) else f"selection at {x},{y}"
        self.region_label.setText(f"{where}, {rw}×{rh}")

    def source_image(self) -> tuple[np.ndarray, tuple[int, int, int, int]] | None:
        """(RGBA crop of the source inside the generation region, region), cached until the
        document, selection or source choice changes."""
        if self._source is not None:
            return self._source
        w, h = self._doc_size()
        if not w or not h:
            return None
        full = self._full_source(w, h)
        if full is None:
            return None
        x, y, rw, rh = self.host.selection_rect()
        crop = np.ascontiguousarray(full[y : y + rh, x : x + rw])
        if crop.size == 0:
            return None
        self._source = (crop, (x, y, crop.shape[1], crop.shape[0]))
        return self._source

    def source_ref(self) -> int | str:
        """What new guides are made from: the uid of an image layer, or COMPOSITE (the
        visible image). With "Active layer" chosen: the active image layer; a Canny guide
        active, the source it was made from (its siblings share it); the mask or a pose or
        scribble layer active, the visible image."""
        layer = self._active_layer()
        if self.state.source != "layer" or layer is None:
            return COMPOSITE
        if is_canny_layer(layer):
            ref = layer.metadata.get("source", COMPOSITE)
            return ref if find_layer(self._model().doc, ref) is not None else COMPOSITE
        return layer.uid if layer.kind == "image" else COMPOSITE

    def _full_source(self, w: int, h: int) -> np.ndarray | None:
        ref = self.source_ref()
        layer = self._layer(ref) if ref != COMPOSITE else None
        if layer is not None:
            return place(layer.pixels, tuple(layer.offset), (w, h))
        return self.host.composite()

    def _active_layer(self):
        model = self._model()
        if model.doc.is_empty:
            return None
        return model.doc.active_layer

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
        self._add_control_layer(control_rgba(edges), name, "control", (x, y), meta)

    # == scribble ================================================================================
    @Slot()
    def add_scribble_layer(self) -> None:
        w, h = self._doc_size()
        if not w or not h:
            self._error("Open or create an image first.")
            return
        blank = np.zeros((h, w, 4), np.uint8)
        uid = self._add_control_layer(blank, "Scribble", "control", (0, 0), {"control": "scribble"})
        if uid is not None:  # asked for to paint on: say so (the badge shows it too)
            self._model().set_active(uid)
            self.host.show_status("The brush paints on “Scribble” now (Q: back to the mask)")

    def _add_control_layer(
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
        w, h = self._doc_size()
        pose = Pose(w or found.width, h or found.height)
        for person in found.people:  # crop coordinates -> document coordinates
            for name in ("body", "hand_left", "hand_right", "face"):
                pts = getattr(person, name)
                if pts is not None:
                    moved = [(px + x, py + y, c) if c > 0 else (0.0, 0.0, 0.0) for px, py, c in pts]
                    setattr(person, name, moved)
            pose.people.append(person)
        n = len(pose.people)
        self.pose_status.setText(
            f"Found {n} {'person' if n == 1 else 'people'}."
            if n
            else "Nobody found; place a default skeleton instead."
        )
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
            self.pose_layer_uid = self._add_control_layer(
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
        """Start dragging the visible body keypoint nearest (x, y) (layer pixels) of the
        editor's pose, if one is within ``radius``."""
        pose = self.editor.pose
        best = None
        for pi, person in enumerate(pose.people):
            for ki, (kx, ky, c) in enumerate(person.body):
                d = (kx - x) ** 2 + (ky - y) ** 2
                if c > 0 and d <= radius**2 and (best is None or d < best[0]):
                    best = (d, pi, ki)
        if best is None:
            return False
        self._drag = (best[1], best[2], pose.copy())
        return True

    def drag_keypoint(self, x: float, y: float) -> None:
        """Follow the mouse live (the pose layer is redrawn; no undo step yet)."""
        if self._drag is not None:
            person, index, before = self._drag
            moved = before.copy()
            moved.move_keypoint(person, index, x, y)
            self.editor.set_pose(moved)

    def end_keypoint_drag(self, x: float, y: float) -> None:
        """One undo step for the whole drag, as the side editor makes."""
        if self._drag is None:
            return
        person, index, before = self._drag
        self._drag = None
        self.editor.set_pose(before)
        self.editor.move_keypoint(person, index, x, y)

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
            self._source = None  # the next guide re-reads the (maybe edited) source
            self.preview.invalidate()

    # == the list of controls ====================================================================
    def entries(self) -> list[ControlEntry]:
        return entries(self._model().doc.layers)

    # -- which ControlNets ------------------------------------------------------------------------
    def generation_family(self) -> str | None:
        """The family of the Generate panel's model ("sd2" for SD-Turbo; None: no Generate
        panel, no model, or one whose family can't be told without loading it)."""
        generate = self.host.panels.get("Generate") if isinstance(self.host.panels, dict) else None
        state = getattr(generate, "state", None)
        if state is None or not callable(getattr(state, "family", None)):
            return None
        try:
            return state.family() or None
        except Exception:  # noqa: BLE001 - an unreadable model: the family is not known
            return None

    def default_controlnet(self, kind: str) -> str:
        """The ControlNet a new guide of ``kind`` gets (``control_model.default_controlnet``
        for the generation model's family)."""
        family = self.generation_family()
        return default_controlnet(kind, controlnet_options_for(kind, family), family)

    @Slot(str, object)
    def _on_generate_changed(self, name: str, value: object) -> None:
        if name == "model":  # another family: other ControlNets fit
            self.refresh_layers()

    def _controlnet_chosen(self, settings: dict, ref: str) -> None:
        """The user picked a layer's ControlNet: it is theirs now (no longer the default
        that follows the generation model); one to download is offered under the list."""
        settings["model"] = ref.strip()
        settings["model_auto"] = False
        self._update_download_offer()

    def _option(self, ref: str) -> ControlNetOption | None:
        for options in self._options.values():
            for o in options:
                if o.ref == ref:
                    return o
        return None

    def missing_controlnets(self) -> list[ControlNetOption]:
        """The catalog ControlNets the enabled guides use that are not installed yet."""
        out: list[ControlNetOption] = []
        for e in self.entries():
            o = self._option(e.model)
            if e.get("enabled", True) and o is not None and o.catalog and not o.installed:
                if o not in out:
                    out.append(o)
        return out

    def _update_download_offer(self) -> None:
        missing = self.missing_controlnets()
        self.download_button.setVisible(bool(missing))
        if missing:
            total = format_size(sum(o.size for o in missing))
            what = missing[0].name if len(missing) == 1 else f"{len(missing)} ControlNets"
            self.download_button.setText(f"⤓ Download {what} ({total})")

    @Slot()
    def download_controlnets(self) -> None:
        """Download the picked ControlNets that are not installed, through the Models panel
        (its queue, progress and errors)."""
        missing = self.missing_controlnets()
        models = self.host.panels.get("Models") if isinstance(self.host.panels, dict) else None
        catalog = getattr(models, "catalog", None)
        found = [catalog.get(o.ref) for o in missing] if catalog is not None else []
        entries = [e for e in found if e is not None]
        names = ", ".join(o.name for o in missing)
        if not entries or not callable(getattr(models, "download", None)):
            self.host.show_status(f"Download {names} in the Models panel")
            return
        models.download(entries)
        total = format_size(sum(e.size for e in entries))
        self.host.show_status(f"Downloading {names} ({total}): the Models panel shows progress")

    @Slot()
    def refresh_layers(self) -> None:
        rows = self.entries()
        self.table.setRowCount(len(rows))
        family = self.generation_family()
        self._options = {k: controlnet_options_for(k, family) for k in {e.kind for e in rows}}
        none_fit: list[str] = []
        for e in rows:  # the panel's default follows the generation model's family
            if e.get("model_auto", False) or "model" not in e.settings:
                options = self._options[e.kind]
                e.settings["model"] = default_controlnet(e.kind, options, family)
                e.settings["model_auto"] = True
            if not e.model and e.kind not in none_fit:
                none_fit.append(e.kind)
        for row, e in enumerate(rows):
            on = QCheckBox()
            on.setChecked(bool(e.get("enabled", True)))
            on.toggled.connect(lambda v, s=e.settings: s.__setitem__("enabled", bool(v)))
            self.table.setCellWidget(row, 0, _centered(on))
            self.table.setCellWidget(row, 1, QLabel(f"{e.name} ({e.kind})"))
            for col, key in ((2, "weight"), (3, "start"), (4, "end")):
                _label, default, lo, hi = LAYER_RANGES[key]
                spin = QDoubleSpinBox()
                spin.setRange(lo, hi)
                spin.setSingleStep(0.05)
                spin.setDecimals(2)
                spin.setValue(float(e.get(key, default)))
                spin.valueChanged.connect(lambda v, s=e.settings, k=key: s.__setitem__(k, float(v)))
                self.table.setCellWidget(row, col, spin)
            # A list, not a text field: B, E or M are never typed into a model's name.
            picker = ModelPicker(controlnet_rows(self._options[e.kind], e.model, family))
            picker.setMinimumContentsLength(8)
            picker.setToolTip("The ControlNet of this guide (add models in the Models panel)")
            picker.setPlaceholderText("no ControlNet fits")
            picker.setCurrentText(e.model)
            picker.ref_changed.connect(lambda ref, s=e.settings: self._controlnet_chosen(s, ref))
            self.table.setCellWidget(row, 5, picker)
        self._update_download_offer()
        if none_fit and family:
            kinds = ", ".join(none_fit)
            self.controlnet_note.setText(
                f"No {kinds} ControlNet fits {family_label(family)} models: import one "
                "(Models panel: Import… or Add folder…), or turn the layer off."
            )
        self.controlnet_note.setVisible(bool(none_fit and family))
        # pose_layer_uid is kept while its layer is gone: undo/redo may bring it back, and
        # the pose edits redone after it must reach it again.

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


def _centered(widget: QWidget) -> QWidget:
    holder = QWidget()
    lay = QHBoxLayout(holder)
    lay.setContentsMargins(0, 0, 0, 0)
    lay.setAlignment(Qt.AlignmentFlag.AlignCenter)
    lay.addWidget(widget)
    return holder
