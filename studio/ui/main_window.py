"""The main window (the shell): canvas in the middle, tools on top, layers on the left,
feature panels docked on the right. It implements ``studio.ui.host.Host`` for the panels.

Its rooms live in their own modules: ``documents`` (open, save, export, autosave, recovery),
``actions`` (actions, tool bar, menus, tools and brush) and ``jobs`` (engine state, job
previews, cancel). Undo commands are in ``commands``.

Nothing here imports torch: the engine loads in the worker thread after the window is shown
(``start_engine``).
"""

from __future__ import annotations

import importlib
import logging
import os
from typing import Any

from PySide6.QtCore import QByteArray, QRectF, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QCloseEvent, QColor, QImage, QUndoCommand
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QLabel,
    QMainWindow,
    QMessageBox,
    QUndoView,
    QWidget,
)

from studio.ui import documents
from studio.ui.actions import SHORTCUTS, ActionsMixin
from studio.ui.documents import EXTENSION, DocumentsMixin
from studio.ui.jobs import JobsMixin
from studio.ui.panels.fit import VScrollArea
from studio.ui.settings import Settings
from studio.ui.theme import app_icon, apply_theme

__all__ = ["EXTENSION", "PANELS", "SHORTCUTS", "MainWindow"]

# The rest (numpy, the document model, canvas, worker) is imported by _import_heavy() so the
# window can be put on screen first (MainWindow(deferred=True)).
np: Any = None
CanvasView: Any = None
DocumentModel: Any = None
LayersPanel: Any = None
Worker: Any = None
qimage_from_array: Any = None


def _import_heavy() -> None:
    global np, CanvasView, DocumentModel, LayersPanel, Worker, qimage_from_array
    if np is not None:
        return
    import numpy

    from studio.ui import qimage as _qimage
    from studio.ui.canvas import CanvasView as _CanvasView
    from studio.ui.document_model import DocumentModel as _DocumentModel
    from studio.ui.layers_panel import LayersPanel as _LayersPanel
    from studio.ui.worker import Worker as _Worker

    documents.import_heavy()
    np, qimage_from_array = numpy, _qimage.qimage_from_array
    CanvasView, DocumentModel, LayersPanel, Worker = (
        _CanvasView,
        _DocumentModel,
        _LayersPanel,
        _Worker,
    )


log = logging.getLogger(__name__)

PANELS = [
    ("Generate", "studio.ui.panels.generate:GeneratePanel"),
    ("Inpaint", "studio.ui.panels.inpaint:InpaintPanel"),
    ("Control", "studio.ui.panels.control:ControlPanel"),
    ("Upscale", "studio.ui.panels.upscale:UpscalePanel"),
    ("Models", "studio.ui.panels.models:ModelsPanel"),
]


def _load_panel_class(spec: str):
    """Import ``module:Class``."""
    module_name, cls_name = spec.split(":")
    return getattr(importlib.import_module(module_name), cls_name)


class MainWindow(DocumentsMixin, ActionsMixin, JobsMixin, QMainWindow):
    """The application window and the panels' Host."""

    models_updated = Signal()  # installed models changed: every model list refreshes

    def __init__(
        self,
        settings: Settings | None = None,
        start_engine: bool = False,
        deferred: bool = False,
        secondary: bool = False,
    ) -> None:
        """``deferred``: show a bare frame now and build the rest in ``finish_startup`` (the
        app does this so the window is on screen before numpy & co. load)."""
        super().__init__()
        self.settings = settings or Settings()
        # A window opened for a new document (Upscale's "New document"): no autosave of its
        # own (the recovery file is the first window's) and it leaves the saved layout alone.
        self.secondary = secondary
        self.windows: list[MainWindow] = []  # the secondary windows opened from this one
        self.built = False
        self._start_engine_when_built = start_engine
        self.setWindowIcon(app_icon())
        self.setWindowTitle("Studio")
        self.resize(1280, 800)
        geometry = self.settings.geometry
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            self.restoreGeometry(geometry)
        placeholder = QLabel("Starting Studio…")
        placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setCentralWidget(placeholder)
        if not deferred:
            self.finish_startup()

    def finish_startup(self) -> None:
        """Build the canvas, docks, panels and worker (idempotent)."""
        if self.built:
            return
        _import_heavy()
        self._build()
        self.built = True
        if self._start_engine_when_built:
            QTimer.singleShot(0, self.start_engine)

    def _build(self) -> None:
        self.model = DocumentModel(self, undo_limit=self.settings.undo_limit)
        self._worker = Worker(self, threads=self.settings.torch_threads)
        self._connect_jobs()
        self._errors: list[QMessageBox] = []
        self._last_layer_target: int | None = None
        self._init_documents()
        self.panels: dict[str, QWidget] = {}
        self.panel_errors: dict[str, str] = {}
        self.ask = self._ask  # replaceable in tests: (title, text, buttons, default) -> button

        self.canvas = CanvasView(self.model, self)
        self.canvas.setObjectName("canvas")
        self.setCentralWidget(self.canvas)
        self.canvas.set_brush(self.settings.brush_size, self.settings.brush_hardness)
        light = self.settings.theme == "light"
        self.canvas.setBackgroundBrush(QColor("#bcbcc2" if light else "#28282c"))
        self.canvas.brush_color = QColor(self.settings.brush_color)
        self.canvas.set_mask_style(self.settings.mask_color, self.settings.mask_opacity)
        self.canvas.files_dropped.connect(self.on_files_dropped)
        self.canvas.image_dropped.connect(self.on_image_dropped)
        self.canvas.status.connect(self.show_status)
        self.canvas.zoom_changed.connect(self._on_zoom)
        self.canvas.cursor_moved.connect(self._on_cursor)
        self.canvas.tool_changed.connect(self._on_tool_changed)
        self.canvas.brush_changed.connect(self._on_brush_changed)

        self._build_status_bar()
        self._build_actions()
        self._build_toolbar()
        self._build_menus()
        self._build_docks()

        self.canvas.pose_handler = self.panels.get("Control")  # keypoints dragged on the canvas
        self.model.undo.indexChanged.connect(self._bump_revision)
        self.model.document_replaced.connect(self._bump_revision)
        self.model.undo.cleanChanged.connect(self._update_title)
        self.model.document_replaced.connect(self._update_title)
        self.model.document_replaced.connect(self._update_size_label)
        self.model.active_changed.connect(self._update_target)
        self.model.structure_changed.connect(self._update_target)
        self._update_title()
        self._update_target()
        self._on_tool_changed(self.canvas.tool)

        self.autosave_timer = QTimer(self)
        seconds = int(os.environ.get("STUDIO_AUTOSAVE_SECONDS") or self.settings.autosave_seconds)
        self.autosave_timer.setInterval(max(1, seconds) * 1000)
        self.autosave_timer.timeout.connect(self.autosave)
        if not self.secondary:
            self.autosave_timer.start()

    # == Host ====================================================================================
    @property
    def worker(self) -> Worker:
        return self._worker

    def image_size(self) -> tuple[int, int]:
        return self.model.doc.width, self.model.doc.height

    def composite(self) -> np.ndarray | None:
        doc = self.model.doc
        if doc.is_empty or not any(la.kind == "image" for la in doc.layers):
            return None
        return doc.composite()

    def active_layer_image(self) -> np.ndarray | None:
        doc = self.model.doc
        if doc.is_empty:
            return None
        layer = doc.active_layer
        if layer.is_mask:
            return None
        return layer.pixels

    def mask(self) -> np.ndarray | None:
        return None if self.model.doc.is_empty else self.model.doc.mask()

    def selection_rect(self) -> tuple[int, int, int, int]:
        """The exact region results must cover: the selection, or the whole image (not
        snapped: the Generate panel generates a multiple of 8 and fits it to this)."""
        doc = self.model.doc
        if doc.is_empty:
            return (0, 0, 0, 0)
        return doc.selection or (0, 0, doc.width, doc.height)

    def add_layer(
        self,
        image: np.ndarray,
        name: str,
        kind: str = "image",
        offset: tuple[int, int] = (0, 0),
        metadata: dict | None = None,
    ) -> None:
        # The active layer (what the brush paints on) stays: usually the mask.
        self.model.add_layer(image, name, kind, offset, metadata)

    def set_mask(self, mask: np.ndarray, text: str = "Edit mask") -> None:
        self.model.set_mask(mask, text)

    def push_command(self, command: QUndoCommand) -> None:
        self.model.push(command)

    def show_error(self, message: str, detail: str = "") -> None:
        log.warning("%s\n%s", message, detail)
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Icon.Warning)
        box.setWindowTitle("Studio")
        box.setText(message)
        if detail:
            box.setDetailedText(detail)
        box.setWindowModality(Qt.WindowModality.NonModal)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.finished.connect(self._forget_error)
        self._errors.append(box)
        box.show()
        self.show_status(message)

    def show_preview(self, image: np.ndarray, region: tuple[int, int, int, int]) -> None:
        self.canvas.show_overlay(qimage_from_array(image), region)

    def clear_preview(self) -> None:
        self.canvas.clear_overlay()

    def show_staged(self, image, region: tuple[int, int, int, int]) -> None:
        self.canvas.staged_item.set(image, QRectF(*region))
        if self.model.doc.is_empty:
            self.canvas.fitInView(QRectF(*region), Qt.AspectRatioMode.KeepAspectRatio)

    def clear_staged(self) -> None:
        self.canvas.staged_item.set(QImage(), QRectF())

    def add_panel(self, title: str, widget: QWidget) -> None:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"panel-{title}")
        # In a scroll area so no panel's minimum height can push the window past the screen;
        # never narrower than the panel needs, so every control is whole.
        scroll = VScrollArea(widget)
        dock.setWidget(scroll)
        dock.setFeatures(
            QDockWidget.DockWidgetFeature.DockWidgetMovable
            | QDockWidget.DockWidgetFeature.DockWidgetFloatable
            | QDockWidget.DockWidgetFeature.DockWidgetClosable
        )
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
        set_shown = getattr(widget, "set_shown", None)  # panels with live canvas previews
        if callable(set_shown):
            set_shown(not self._panel_docks)  # a tab behind the first is not shown
            dock.visibilityChanged.connect(set_shown)
        if self._panel_docks:
            self.tabifyDockWidget(self._panel_docks[0], dock)
        self._panel_docks.append(dock)
        self.panels[title] = widget
        self.view_menu.addAction(dock.toggleViewAction())
        if len(self._panel_docks) > 1:
            self._panel_docks[0].raise_()

    def show_panel(self, title: str) -> None:
        """Bring the panel's dock to the front (its tab becomes current)."""
        dock = self.findChild(QDockWidget, f"panel-{title}")
        if dock is not None:
            dock.show()
            dock.raise_()

    def models_changed(self) -> None:
        self.models_updated.emit()

    # == UI construction =========================================================================
    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.engine_label = QLabel("Engine not started")
        self.engine_label.setObjectName("engineState")
        self.size_label = QLabel("")
        self.pos_label = QLabel("")
        self.zoom_label = QLabel("100%")
        for w in (self.pos_label, self.size_label, self.zoom_label):
            w.setMinimumWidth(70)
        bar.addPermanentWidget(self.pos_label)
        bar.addPermanentWidget(self.size_label)
        bar.addPermanentWidget(self.zoom_label)
        bar.addPermanentWidget(self.engine_label)

    def _build_docks(self) -> None:
        self.layers_panel = LayersPanel(self.model)
        self.layers_dock = QDockWidget("Layers", self)
        self.layers_dock.setObjectName("layers")
        self.layers_dock.setWidget(self.layers_panel)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.layers_dock)
        self.undo_view = QUndoView(self.model.undo)
        self.undo_view.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.undo_view.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.undo_view.setEmptyLabel("Opened")
        self.history_dock = QDockWidget("History", self)
        self.history_dock.setObjectName("undoHistory")
        self.history_dock.setWidget(self.undo_view)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.history_dock)
        self.splitDockWidget(self.layers_dock, self.history_dock, Qt.Orientation.Vertical)
        self.resizeDocks([self.layers_dock, self.history_dock], [500, 200], Qt.Orientation.Vertical)
        self.view_menu.addAction(self.layers_dock.toggleViewAction())
        self.view_menu.addAction(self.history_dock.toggleViewAction())
        self._panel_docks: list[QDockWidget] = []
        for title, spec in PANELS:
            try:
                cls = _load_panel_class(spec)
                self.add_panel(title, cls(self))
            except Exception as e:  # noqa: BLE001 - one broken panel must not stop the app
                log.exception("panel %s failed to load", title)
                self.panel_errors[title] = f"{type(e).__name__}: {e}"
        if self._panel_docks:
            self.resizeDocks(self._panel_docks[:1], [380], Qt.Orientation.Horizontal)
        self.resizeDocks([self.layers_dock], [220], Qt.Orientation.Horizontal)
        state = self.settings.window_state  # dock sizes the user chose last time
        if isinstance(state, QByteArray) and not state.isEmpty():
            self.restoreState(state)
        elif self._panel_docks:  # once the panels are polished (sizes final): the default
            QTimer.singleShot(0, self._default_dock_width)

    @Slot()
    def _default_dock_width(self) -> None:
        """380 px, or what the widest panel needs (VScrollArea keeps every control whole)."""
        self.resizeDocks(self._panel_docks[:1], [380], Qt.Orientation.Horizontal)

    # == tools ===================================================================================

    @Slot()
    def _update_target(self) -> None:
        doc = self.model.doc
        layer = doc.active_layer
        if layer.is_mask:
            text = "Mask (inpaint)"
        else:
            text = f"{layer.kind.capitalize()}: {layer.name}"
        if self.canvas.tool == "eraser":
            text = "Erasing " + text
        self.target_label.setText(text)
        self.target_label.setProperty("layerKind", layer.kind)
        self.target_label.style().unpolish(self.target_label)
        self.target_label.style().polish(self.target_label)
        self.color_button.setEnabled(not layer.is_mask)

    @Slot(float)
    def _on_zoom(self, z: float) -> None:
        self.zoom_label.setText(f"{z * 100:.0f}%")

    @Slot(int, int)
    def _on_cursor(self, x: int, y: int) -> None:
        doc = self.model.doc
        inside = 0 <= x < doc.width and 0 <= y < doc.height
        self.pos_label.setText(f"{x}, {y}" if inside else "")

    def _update_size_label(self) -> None:
        doc = self.model.doc
        self.size_label.setText("" if doc.is_empty else f"{doc.width}×{doc.height}")

    def set_theme(self, theme: str) -> None:
        self.settings.theme = theme
        app = QApplication.instance()
        if app is not None:
            apply_theme(app, theme)
        self.canvas.setBackgroundBrush(QColor("#bcbcc2" if theme == "light" else "#28282c"))
        if theme in self.theme_actions:
            self.theme_actions[theme].setChecked(True)

    def show_status(self, text: str, ms: int = 6000) -> None:
        self.statusBar().showMessage(text, ms)

    # == documents ===============================================================================

    @Slot()
    def select_all(self) -> None:
        doc = self.model.doc
        if not doc.is_empty:
            self.model.set_selection(None)

    @Slot()
    def deselect(self) -> None:
        self.model.set_selection(None)

    @Slot()
    def clear_mask(self) -> None:
        doc = self.model.doc
        if doc.is_empty or doc.mask() is None:
            return
        m = doc.mask_layer.pixels.copy()
        if doc.selection:
            x, y, w, h = doc.selection
            m[y : y + h, x : x + w] = 0
        else:
            m[:] = 0
        self.model.set_mask(m, "Clear mask")

    @Slot()
    def invert_mask(self) -> None:
        doc = self.model.doc
        if not doc.is_empty:
            self.model.set_mask(255 - doc.mask_layer.pixels, "Invert mask")

    # == layers =================================================================================
    @Slot()
    def toggle_mask_target(self) -> None:
        """Q: paint on the mask, or back on the image/control layer used before."""
        doc = self.model.doc
        if doc.is_empty:
            return
        if doc.active_layer.is_mask:
            uid = self._last_layer_target
            if uid is None or not any(la.uid == uid for la in doc.layers):
                uid = next((la.uid for la in reversed(doc.layers) if not la.is_mask), None)
            if uid is not None:
                self.model.set_active(uid)
        else:
            self._last_layer_target = doc.active_uid
            self.model.set_active(doc.mask_layer.uid)

    @Slot()
    def _new_control_layer(self) -> None:
        self.layers_panel.new_control()

    @Slot()
    def duplicate_layer(self) -> None:
        doc = self.model.doc
        layer = doc.active_layer
        if doc.is_empty or layer.is_mask:
            return
        copy = self.model.add_layer(
            layer.pixels.copy(),
            f"{layer.name} copy",
            layer.kind,
            layer.offset,
            dict(layer.metadata),
            index=doc.index_of(layer.uid) + 1,
        )
        self.model.set_active(copy.uid)

    @Slot()
    def _delete_layer(self) -> None:
        self.layers_panel.delete()

    @Slot()
    def _layer_up(self) -> None:
        self.layers_panel.move_up()

    @Slot()
    def _layer_down(self) -> None:
        self.layers_panel.move_down()

    def _forget_error(self) -> None:
        box = self.sender()
        if box in self._errors:
            self._errors.remove(box)

    # == closing =================================================================================
    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        if not self.built:
            event.accept()
            return
        if not self.maybe_save():
            event.ignore()
            return
        self.autosave_timer.stop()
        self.hide()  # gone from the screen at once, even while a job winds down
        self._worker.shutdown()
        for title, panel in self.panels.items():  # optional panel hook: stop its threads
            shutdown = getattr(panel, "shutdown", None)
            if callable(shutdown):
                try:
                    shutdown()
                except Exception:  # noqa: BLE001 - closing must go on
                    log.exception("panel %s failed to shut down", title)
        if not self.secondary:
            self._clear_recovery()
            self.settings.geometry = self.saveGeometry()
            self.settings.window_state = self.saveState()
            self.settings.sync()
        for box in list(self._errors):
            box.close()
        event.accept()
