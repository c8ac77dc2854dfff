"""The Upscale panel: GAN super-resolution (any spandrel upscaler) or Lanczos, in the worker.

- Model: "Lanczos (no model)", the installed catalog upscalers, or any file picked with
  "Browse…" (.safetensors / .pth / .pt / .ckpt). Scale (any factor; the engine runs the model
  and makes up the rest with Lanczos), tile size ("Auto" = from free GPU memory, fixed on CPU),
  overlap, and Lanczos sharpening.
- Source: the visible image or the active layer.
- Progress per tile, Cancel (the job stops between tiles).
- The result goes to a new document or a new layer (the canvas grows to the upscaled size,
  one undo step), and into the before/after view: :class:`BeforeAfterView` shows the source
  (pixel-enlarged, nearest neighbour) left of a draggable divider and the upscale right of it.

No torch here: requests go through ``host.worker``; the model list comes from the catalog
and ``studio.engine.models.store`` (both torch-free).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal, Slot
from PySide6.QtGui import (
    QColor,
    QImage,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPen,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from studio.engine.jobs import UpscaleRequest
from studio.ui.job_follower import JobBar, JobFollower
from studio.ui.panels.upscale_model import LANCZOS, UpscaleModel
from studio.ui.properties import bind
from studio.ui.qimage import qimage_from_array

log = logging.getLogger(__name__)

__all__ = ["LANCZOS", "BeforeAfterView", "UpscaleModel", "UpscalePanel"]
MODEL_FILTER = "Upscaler models (*.safetensors *.pth *.pt *.ckpt);;All files (*)"


class BeforeAfterView(QWidget):
    """A before/after split view. Both images are fitted to the widget in the same rectangle
    (the *before* image enlarged with nearest neighbour so its pixels stay visible); the
    divider follows the mouse while a button is held. The wheel zooms around the cursor."""

    split_changed = Signal(float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._before: QImage | None = None
        self._after: QImage | None = None
        self.split = 0.5  # fraction of the image width shown as "before"
        self.zoom = 1.0
        self.center = QPointF(0.5, 0.5)  # image point at the widget centre (fractions)
        self.setMinimumHeight(160)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMouseTracking(False)
        self.setToolTip("Drag to move the divider; the wheel zooms")

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(320, 240)

    def set_images(self, before: np.ndarray | None, after: np.ndarray | None) -> None:
        self._before = qimage_from_array(before) if before is not None else None
        self._after = qimage_from_array(after) if after is not None else None
        self.zoom, self.center = 1.0, QPointF(0.5, 0.5)
        self.update()

    def clear(self) -> None:
        self.set_images(None, None)

    @property
    def has_images(self) -> bool:
        return self._after is not None

    def image_rect(self) -> QRectF:
        """Where the (after) image is drawn, in widget coordinates."""
        ref = self._after or self._before
        if ref is None or ref.width() == 0:
            return QRectF()
        fit = min(self.width() / ref.width(), self.height() / ref.height()) * self.zoom
        w, h = ref.width() * fit, ref.height() * fit
        x = self.width() / 2 - self.center.x() * w
        y = self.height() / 2 - self.center.y() * h
        return QRectF(x, y, w, h)

    def set_split(self, fraction: float) -> None:
        self.split = float(min(1.0, max(0.0, fraction)))
        self.split_changed.emit(self.split)
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt API
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(40, 40, 40))
        rect = self.image_rect()
        if rect.isEmpty():
            p.setPen(QColor(160, 160, 160))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "Before / after")
            return
        x_split = rect.left() + rect.width() * self.split
        if self._after is not None:
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
            p.save()
            p.setClipRect(QRectF(x_split, 0, self.width() - x_split, self.height()))
            p.drawImage(rect, self._after)
            p.restore()
        if self._before is not None:
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
            p.save()
            p.setClipRect(QRectF(0, 0, x_split, self.height()))
            p.drawImage(rect, self._before)
            p.restore()
        p.setPen(QPen(QColor(255, 255, 255), 2))
        p.drawLine(QPointF(x_split, rect.top()), QPointF(x_split, rect.bottom()))
        p.setPen(QColor(255, 255, 255))
        p.drawText(QPointF(max(4.0, x_split - 56), rect.top() + 16), "Before")
        p.drawText(QPointF(min(self.width() - 40.0, x_split + 6), rect.top() + 16), "After")

    def _split_at(self, x: float) -> None:
        rect = self.image_rect()
        if rect.width() > 0:
            self.set_split((x - rect.left()) / rect.width())

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt API
        self._split_at(event.position().x())

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt API
        if event.buttons():
            self._split_at(event.position().x())

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802 - Qt API
        rect = self.image_rect()
        if rect.isEmpty():
            return
        pos = event.position()
        # keep the image point under the cursor fixed while zooming
        fx = (pos.x() - rect.left()) / rect.width()
        fy = (pos.y() - rect.top()) / rect.height()
        factor = 1.25 if event.angleDelta().y() > 0 else 0.8
        self.zoom = float(min(64.0, max(1.0, self.zoom * factor)))
        new = self.image_rect()
        # shift the centre so (fx, fy) lands back under the cursor
        dx = (pos.x() - (new.left() + fx * new.width())) / new.width()
        dy = (pos.y() - (new.top() + fy * new.height())) / new.height()
        self.center = QPointF(self.center.x() - dx, self.center.y() - dy)
        if self.zoom == 1.0:
            self.center = QPointF(0.5, 0.5)
        self.update()


def installed_upscalers() -> list[tuple[str, str, float | None]]:
    """[(label, ref, recommended scale)] of the installed upscalers: catalog models, then
    imported files and files in the model folders (``studio.engine.models.list_models``,
    read from disk on every call)."""
    try:
        from studio.engine.models import list_models

        out = []
        for choice in list_models("upscaler"):
            scale = choice.recommended.get("scale") if choice.recommended else None
            out.append((choice.label, choice.ref, float(scale) if scale else None))
        return out
    except Exception:  # noqa: BLE001 - a broken models folder must not break the panel
        log.exception("listing installed upscalers failed")
        return []


class UpscalePanel(QWidget):
    """Upscale the document with a GAN model or Lanczos; see the module docstring."""

    def __init__(self, host, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.host = host
        self.state = UpscaleModel(host.settings, self)  # the panel's settings (no widgets)
        self.job_id: int | None = None
        self._tiled = False
        self._source: np.ndarray | None = None
        self._source_name = "Image"
        self.result: np.ndarray | None = None
        self.result_info: dict = {}

        self.model_combo = QComboBox()
        self.model_combo.setToolTip("Upscaler model (spandrel: Real-ESRGAN, SwinIR, HAT, ...)")
        self.browse_button = QPushButton("Browse…")
        self.browse_button.clicked.connect(self.browse_model)
        model_row = QHBoxLayout()
        model_row.addWidget(self.model_combo, 1)
        model_row.addWidget(self.browse_button)
        self.refresh_models()
        self.model_combo.currentIndexChanged.connect(self._model_changed)

        self.source_combo = QComboBox()
        self.source_combo.addItem("Visible image", "composite")
        self.source_combo.addItem("Active layer", "layer")

        self.scale_spin = QDoubleSpinBox()
        self.scale_spin.setRange(1.0, 16.0)
        self.scale_spin.setSingleStep(0.5)
        self.scale_spin.setDecimals(2)
        self.scale_spin.setValue(4.0)
        self.scale_spin.setSuffix("×")

        self.tile_spin = QSpinBox()
        self.tile_spin.setRange(0, 4096)
        self.tile_spin.setSingleStep(64)
        self.tile_spin.setSpecialValueText("Auto")
        self.tile_spin.setSuffix(" px")
        self.tile_spin.setToolTip("Tile size: Auto fits the free GPU memory; halves on OOM")

        self.overlap_spin = QSpinBox()
        self.overlap_spin.setRange(0, 128)
        self.overlap_spin.setValue(16)
        self.overlap_spin.setSuffix(" px")

        self.sharpen_spin = QDoubleSpinBox()
        self.sharpen_spin.setRange(0.0, 3.0)
        self.sharpen_spin.setSingleStep(0.1)
        self.sharpen_spin.setToolTip("Lanczos only: unsharp-mask amount (0 = off)")

        self.output_combo = QComboBox()
        self.output_combo.addItem("New document", "document")
        self.output_combo.addItem("New layer", "layer")

        form = QFormLayout()
        form.addRow("Model", model_row)
        form.addRow("Source", self.source_combo)
        form.addRow("Scale", self.scale_spin)
        form.addRow("Tile", self.tile_spin)
        form.addRow("Overlap", self.overlap_spin)
        form.addRow("Sharpen", self.sharpen_spin)
        form.addRow("Result", self.output_combo)

        self.run_button = QPushButton("Upscale")
        self.run_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)

        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("Ready")  # idle: no stale "0 / 1"
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.view = BeforeAfterView()

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.view, 1)

        bind(self.state, "source", self.source_combo, data=True)
        bind(self.state, "scale", self.scale_spin)
        bind(self.state, "tile", self.tile_spin)
        bind(self.state, "overlap", self.overlap_spin)
        bind(self.state, "sharpen", self.sharpen_spin)
        bind(self.state, "output", self.output_combo, data=True)
        self.state.model = self.model_choice

        bar = JobBar(self.progress, self.status)
        self.follow = JobFollower(host.worker, self, bar, errors=host.show_error)
        self.follow.ended.connect(self._done)
        self.follow.progress.connect(self._on_progress)
        self.follow.finished.connect(self._on_finished)
        host.models_updated.connect(self.models_updated)
        self._model_changed()

    # -- model list --------------------------------------------------------------------------
    def refresh_models(self) -> None:
        current = self.model_combo.currentData()
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        self.model_combo.addItem("Lanczos (no model)", LANCZOS)
        for label, model_id, scale in installed_upscalers():
            self.model_combo.addItem(label, model_id)
            self.model_combo.setItemData(
                self.model_combo.count() - 1, scale, Qt.ItemDataRole.UserRole + 1
            )
        if current is not None:
            index = self.model_combo.findData(current)
            if index < 0 and current != LANCZOS:
                self.add_model_file(current, select=False)
                index = self.model_combo.findData(current)
            self.model_combo.setCurrentIndex(max(0, index))
        elif self.model_combo.count() > 1:
            self.model_combo.setCurrentIndex(1)  # an installed model beats Lanczos
        self.model_combo.blockSignals(False)

    @Slot()
    def models_updated(self) -> None:
        """Models were downloaded, imported or found in a folder: list them at once."""
        if not self.running:
            before = self.model_choice
            self.refresh_models()
            if self.model_choice != before:
                self._model_changed()

    def showEvent(self, event) -> None:  # noqa: N802 - Qt API
        self.models_updated()
        super().showEvent(event)

    def add_model_file(self, path: str, select: bool = True) -> None:
        index = self.model_combo.findData(path)
        if index < 0:
            self.model_combo.addItem(Path(path).name, path)
            index = self.model_combo.count() - 1
            self.model_combo.setItemData(index, path, Qt.ItemDataRole.ToolTipRole)
        if select:
            self.model_combo.setCurrentIndex(index)

    @Slot()
    def browse_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Upscaler model", "", MODEL_FILTER)
        if path:
            self.add_model_file(path)

    @property
    def model_choice(self) -> str:
        return str(self.model_combo.currentData() or LANCZOS)

    @Slot()
    def _model_changed(self) -> None:
        self.state.model = self.model_choice
        lanczos = self.model_choice == LANCZOS
        self.sharpen_spin.setEnabled(lanczos)
        self.tile_spin.setEnabled(not lanczos)
        self.overlap_spin.setEnabled(not lanczos)
        scale = self.model_combo.currentData(Qt.ItemDataRole.UserRole + 1)
        if scale:
            self.scale_spin.setValue(float(scale))

    # -- running -----------------------------------------------------------------------------
    def source_image(self) -> np.ndarray | None:
        if self.state.source == "layer":
            return self.host.active_layer_image()
        return self.host.composite()

    def build_request(self, image: np.ndarray) -> UpscaleRequest:
        """The request for ``image`` from the panel's state (``UpscaleModel.request``)."""
        self.state.model = self.model_choice
        return self.state.request(image)

    @property
    def running(self) -> bool:
        return self.job_id is not None

    @Slot()
    def start(self) -> None:
        if self.running:
            return
        image = self.source_image()
        problem = self.state.check(image)
        if problem:
            self.host.show_error(problem)
            return
        request = self.build_request(image)
        self._source = request.image  # as sent (an opaque RGBA image goes as RGB)
        self._source_name = self.model_combo.currentText()
        self.result, self.result_info = None, {}
        self.job_id = self.follow.submit(request, label="Upscale")
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.follow.bar.busy("Loading…")  # until the first tile is done
        self._tiled = request.method == "model"  # Lanczos has no tiles to count
        self.follow.bar.step_format = "%v / %m tiles" if self._tiled else "Resizing… %p%"
        self.status.setText("Loading the model…" if request.method == "model" else "Upscaling…")

    @Slot()
    def cancel(self) -> None:
        if self.job_id is not None:
            self.follow.cancel(self.job_id)
            self.status.setText("Cancelling…")

    # -- the follower's signals (this panel's jobs) -----------------------------------------
    @Slot(int)
    def _done(self, job_id: int) -> None:
        self.job_id = None
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    @Slot(int, "qint64", "qint64")
    def _on_progress(self, job_id: int, step: int, total: int) -> None:
        if self._tiled and total > 0:
            self.status.setText(f"Tile {step} of {total}")

    @Slot(int, object)
    def _on_finished(self, job_id: int, event: object) -> None:
        images = getattr(event, "images", ())
        if not images:
            self.status.setText("The upscale returned no image.")
            return
        self.result = images[0]
        self.result_info = dict(getattr(event, "extra", {}).get("upscale", {}))
        self.status.setText(self.describe_result(getattr(event, "seconds", 0.0)))
        self.view.set_images(self._source, self.result)
        self.deliver(self.result)

    def describe_result(self, seconds: float) -> str:
        info = self.result_info
        h, w = self.result.shape[:2] if self.result is not None else (0, 0)
        if info.get("method") == "model":
            how = (
                f"{info.get('architecture')} x{info.get('model_scale')}, "
                f"{info.get('dtype')} on {info.get('device')}, tile {info.get('tile')} px, "
                f"{info.get('tiles')} tiles"
            )
            if info.get("oom_halvings"):
                how += f" (tile halved {info['oom_halvings']}× after out-of-memory)"
        else:
            how = "Lanczos"
        return f"{w}×{h} — {how} — {seconds:.1f} s"

    # -- the result --------------------------------------------------------------------------
    def _metadata(self) -> dict:
        return {"upscale": dict(self.result_info)}

    def _name(self) -> str:
        scale = self.result_info.get("scale", self.state.scale)
        return f"Upscaled {scale:g}x ({self.result_info.get('upscaler', self._source_name)})"

    def deliver(self, image: np.ndarray) -> None:
        """Put the result where the user asked: a new document or a new layer."""
        if self.state.output == "layer":
            self.add_as_layer(image)
        else:
            self.open_as_document(image)

    def add_as_layer(self, image: np.ndarray) -> None:
        """Add the result as a layer; the canvas grows to its size, in the same undo step."""
        model = self.host.model
        w, h = image.shape[1], image.shape[0]
        dw, dh = self.host.image_size()
        if w > dw or h > dh:
            from studio.core.document import Layer, to_rgba
            from studio.ui.commands import AddGrowingLayerCommand, AddLayerCommand

            layer = Layer(self._name(), "image", to_rgba(image), metadata=self._metadata())
            # built before the canvas grows, so it sees the document as it is now
            add = AddLayerCommand(model, layer)
            size = (max(w, dw), max(h, dh))
            self.host.push_command(
                AddGrowingLayerCommand(model, size, add, f"Upscale as layer “{self._name()}”")
            )
        else:
            self.host.add_layer(image, self._name(), metadata=self._metadata())

    def open_as_document(self, image: np.ndarray) -> None:
        """Open the result as a new document (asking about unsaved changes first)."""
        if not self.host.open_image_document(image, self._name(), self._metadata()):
            self.status.setText(self.status.text() + " — kept in the before/after view")
