"""The main window: canvas in the middle, tools on top, layers on the left, feature panels
docked on the right. It implements ``studio.ui.host.Host`` for the panels.

Nothing here imports torch: the engine loads in the worker thread after the window is shown
(``start_engine``).
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QRectF, Qt, QTimer, Slot
from PySide6.QtGui import (
    QAction,
    QActionGroup,
    QCloseEvent,
    QColor,
    QGuiApplication,
    QImage,
    QKeySequence,
    QUndoCommand,
)
from PySide6.QtWidgets import (
    QApplication,
    QColorDialog,
    QDockWidget,
    QFileDialog,
    QFrame,
    QLabel,
    QMainWindow,
    QMessageBox,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QToolButton,
    QUndoView,
    QWidget,
)

from studio.ui.settings import Settings
from studio.ui.theme import app_icon, apply_theme

# The rest (numpy, Pillow, the document model, canvas, worker) is imported by
# _import_heavy() so the window can be put on screen first (MainWindow(deferred=True)).
np: Any = None
recovery: Any = None
Document: Any = None
load_project: Any = None
save_project: Any = None
to_rgba: Any = None
StudioError: Any = None
CanvasView: Any = None
DocumentModel: Any = None
LayersPanel: Any = None
Worker: Any = None
array_from_qimage: Any = None
qimage_from_array: Any = None

EXTENSION = ".studio"


def _import_heavy() -> None:
    global np, recovery, Document, load_project, save_project, to_rgba, StudioError
    global CanvasView, DocumentModel, LayersPanel, Worker, array_from_qimage, qimage_from_array
    if np is not None:
        return
    import numpy

    from studio.core import document as _document
    from studio.core import recovery as _recovery
    from studio.core.errors import StudioError as _StudioError
    from studio.ui import qimage as _qimage
    from studio.ui.canvas import CanvasView as _CanvasView
    from studio.ui.document_model import DocumentModel as _DocumentModel
    from studio.ui.layers_panel import LayersPanel as _LayersPanel
    from studio.ui.worker import Worker as _Worker

    assert _document.EXTENSION == EXTENSION
    np, recovery, StudioError = numpy, _recovery, _StudioError
    Document, load_project = _document.Document, _document.load_project
    save_project, to_rgba = _document.save_project, _document.to_rgba
    CanvasView, DocumentModel, LayersPanel, Worker = (
        _CanvasView,
        _DocumentModel,
        _LayersPanel,
        _Worker,
    )
    array_from_qimage, qimage_from_array = _qimage.array_from_qimage, _qimage.qimage_from_array


log = logging.getLogger(__name__)

PANELS = [
    ("Generate", "studio.ui.panels.generate:GeneratePanel"),
    ("Inpaint", "studio.ui.panels.inpaint:InpaintPanel"),
    ("Control", "studio.ui.panels.control:ControlPanel"),
    ("Upscale", "studio.ui.panels.upscale:UpscalePanel"),
    ("Models", "studio.ui.panels.models:ModelsPanel"),
]

IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.webp *.bmp *.tif *.tiff *.gif)"
PROJECT_FILTER = f"Studio project (*{EXTENSION})"
EXPORT_FILTER = "PNG (*.png);;JPEG (*.jpg *.jpeg);;WebP (*.webp)"

SHORTCUTS = [
    ("B", "Brush (paints the active layer; the mask layer by default)"),
    ("E", "Eraser"),
    ("M", "Rectangle selection: the generation region"),
    ("H", "Pan tool"),
    ("Space + drag, middle button", "Pan"),
    ("[ / ]", "Brush size smaller / larger"),
    ("Shift+[ / Shift+]", "Brush hardness lower / higher"),
    ("Wheel, Ctrl++ / Ctrl+-", "Zoom in / out"),
    ("Ctrl+0", "Fit to window"),
    ("Ctrl+1", "Actual size (100%)"),
    ("Ctrl+Z / Ctrl+Shift+Z", "Undo / redo"),
    ("Ctrl+O", "Open image or project"),
    ("Ctrl+Shift+O", "Import images as layers"),
    ("Ctrl+S / Ctrl+Shift+S", "Save project / save as"),
    ("Ctrl+Shift+E", "Export PNG / JPEG / WebP"),
    ("Ctrl+C / Ctrl+V", "Copy image / paste as layer"),
    ("Ctrl+A / Ctrl+D", "Select all / deselect"),
    ("Delete", "Clear the mask"),
    ("Ctrl+I", "Invert the mask"),
    ("Q", "Paint on the mask / back on the layer"),
    ("Ctrl+J", "Duplicate layer"),
    ("Ctrl+] / Ctrl+[", "Move layer up / down"),
    ("Ctrl+Enter", "Generate (queues when busy)"),
    ("Esc", "Cancel the running job"),
]


def _load_panel_class(spec: str):
    """Import ``module:Class``; None if the module itself isn't there yet."""
    module_name, cls_name = spec.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name == module_name:
            return None
        raise
    return getattr(module, cls_name)


class MainWindow(QMainWindow):
    """The application window and the panels' Host."""

    def __init__(
        self,
        settings: Settings | None = None,
        start_engine: bool = False,
        deferred: bool = False,
    ) -> None:
        """``deferred``: show a bare frame now and build the rest in ``finish_startup`` (the
        app does this so the window is on screen before numpy & co. load)."""
        super().__init__()
        self.settings = settings or Settings()
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
        self._worker.preview.connect(self._on_job_preview)
        self._worker.finished.connect(self._on_job_ended)
        self._worker.failed.connect(self._on_job_failed)
        self._worker.cancelled.connect(self._on_job_ended)
        self._worker.engine_state.connect(self._on_engine_state)
        self._errors: list[QMessageBox] = []
        self._last_layer_target: int | None = None
        # A change counter, not the undo index: the index stands still once the stack is at
        # its limit, and undo-then-edit or a new document land on an index already seen.
        self._revision = 0
        self._autosaved_revision = 0
        self._autosave_thread: threading.Thread | None = None
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
        return self.model.doc.generation_region()

    def add_layer(
        self,
        image: np.ndarray,
        name: str,
        kind: str = "image",
        offset: tuple[int, int] = (0, 0),
        metadata: dict | None = None,
    ) -> None:
        layer = self.model.add_layer(image, name, kind, offset, metadata)
        if kind != "image":
            self.model.set_active(layer.uid)

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

    def add_panel(self, title: str, widget: QWidget) -> None:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"panel-{title}")
        # In a scroll area so no panel's minimum height can push the window past the screen.
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(widget)
        dock.setWidget(scroll)
        dock.setFeatures(
            QDockWidget.DockWidgetFeature.DockWidgetMovable
            | QDockWidget.DockWidgetFeature.DockWidgetFloatable
            | QDockWidget.DockWidgetFeature.DockWidgetClosable
        )
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
        if self._panel_docks:
            self.tabifyDockWidget(self._panel_docks[0], dock)
        self._panel_docks.append(dock)
        self.panels[title] = widget
        self.view_menu.addAction(dock.toggleViewAction())
        if len(self._panel_docks) > 1:
            self._panel_docks[0].raise_()

    # == engine ==================================================================================
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

    @Slot(str)
    def _undo_text(self, text: str) -> None:
        self.act_undo.setStatusTip(f"Undo {text}" if text else "")
        self.act_undo.setToolTip(f"Undo {text} (Ctrl+Z)" if text else "Undo (Ctrl+Z)")

    @Slot(str)
    def _redo_text(self, text: str) -> None:
        self.act_redo.setStatusTip(f"Redo {text}" if text else "")
        self.act_redo.setToolTip(f"Redo {text} (Ctrl+Shift+Z)" if text else "Redo (Ctrl+Shift+Z)")

    def _job_target(self, job_id: int) -> tuple[float, float, float, float, float, float]:
        """(x, y, w, h) on the document where job output lands, and the output size."""
        job = self._worker.job(job_id)
        doc = self.model.doc
        region = job.region if job and job.region else (0, 0, doc.width, doc.height)
        req = job.request if job else None
        out_w = getattr(req, "width", None) or region[2]
        out_h = getattr(req, "height", None) or region[3]
        if not region[2] or not region[3]:
            region = (0, 0, out_w, out_h)
        return (*region, out_w, out_h)

    @Slot(int, QImage, object)
    def _on_job_preview(self, job_id: int, image: QImage, region: object) -> None:
        x, y, w, h, ow, oh = self._job_target(job_id)
        if region:
            rx, ry, rw, rh = region  # in output pixels
            sx, sy = w / max(1, ow), h / max(1, oh)
            rect = (x + rx * sx, y + ry * sy, rw * sx, rh * sy)
        else:
            rect = (x, y, w, h)
        self.canvas.show_preview(image, rect)
        if self.model.doc.is_empty:
            self.canvas.fitInView(QRectF(*rect), Qt.AspectRatioMode.KeepAspectRatio)

    @Slot(int)
    @Slot(int, object)
    def _on_job_ended(self, job_id: int, event: object = None) -> None:
        if not self._worker.busy:
            self.canvas.clear_preview()

    @Slot(int, str, str)
    def _on_job_failed(self, job_id: int, message: str, detail: str) -> None:
        self._on_job_ended(job_id)
        self.show_error(message, detail)

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

    def _action(
        self, text: str, slot, shortcut=None, tip: str = "", checkable: bool = False
    ) -> QAction:
        a = QAction(text, self)
        if shortcut is not None:
            keys = shortcut if isinstance(shortcut, list) else [shortcut]
            a.setShortcuts([QKeySequence(k) for k in keys])
        if tip:
            a.setStatusTip(tip)
            a.setToolTip(f"{tip} ({a.shortcut().toString()})" if a.shortcut() else tip)
        a.setCheckable(checkable)
        a.triggered.connect(slot)
        self.addAction(a)  # shortcuts work even when the menu bar is hidden
        return a

    def _build_actions(self) -> None:
        S = QKeySequence.StandardKey
        self.act_open = self._action("&Open…", self.open_dialog, S.Open, "Open an image or project")
        self.act_import = self._action(
            "&Import as layers…", self.import_dialog, "Ctrl+Shift+O", "Add images as new layers"
        )
        self.act_save = self._action("&Save", self.save, S.Save, "Save the project")
        self.act_save_as = self._action("Save &as…", self.save_as, "Ctrl+Shift+S")
        self.act_export = self._action(
            "&Export image…", self.export_dialog, "Ctrl+Shift+E", "Export PNG/JPEG/WebP"
        )
        self.act_new = self._action("&New", self.new_document, S.New, "Close the document")
        self.act_quit = self._action("&Quit", self.close, S.Quit)
        undo = self.model.undo
        self.act_undo = self._action("&Undo", undo.undo, "Ctrl+Z")
        self.act_redo = self._action("&Redo", undo.redo, ["Ctrl+Shift+Z", "Ctrl+Y"])
        self.act_undo.setEnabled(False)
        self.act_redo.setEnabled(False)
        undo.canUndoChanged.connect(self.act_undo.setEnabled)
        undo.canRedoChanged.connect(self.act_redo.setEnabled)
        undo.undoTextChanged.connect(self._undo_text)
        undo.redoTextChanged.connect(self._redo_text)
        self.act_copy = self._action("&Copy image", self.copy_image, S.Copy)
        self.act_paste = self._action("&Paste as layer", self.paste, S.Paste)
        self.act_select_all = self._action("Select &all", self.select_all, "Ctrl+A")
        self.act_deselect = self._action("&Deselect", self.deselect, "Ctrl+D")
        self.act_clear_mask = self._action(
            "C&lear mask", self.clear_mask, [QKeySequence.StandardKey.Delete, "Backspace"]
        )
        self.act_invert_mask = self._action("&Invert mask", self.invert_mask, "Ctrl+I")
        self.act_zoom_in = self._action(
            "Zoom &in", self.canvas.zoom_in, ["Ctrl+=", "Ctrl++"], "Zoom in"
        )
        self.act_zoom_in.setIconText("+")
        self.act_zoom_out = self._action("Zoom &out", self.canvas.zoom_out, "Ctrl+-", "Zoom out")
        self.act_zoom_out.setIconText("−")
        self.act_fit = self._action("&Fit", self.canvas.fit, "Ctrl+0", "Fit to window")
        self.act_100 = self._action("&Actual size", self.canvas.actual_size, "Ctrl+1", "100%")
        self.act_100.setIconText("1:1")
        self.act_smaller = self._action("Smaller brush", self.brush_smaller, "[")
        self.act_larger = self._action("Larger brush", self.brush_larger, "]")
        self.act_softer = self._action("Softer brush", self.brush_softer, ["Shift+[", "{"])
        self.act_harder = self._action("Harder brush", self.brush_harder, ["Shift+]", "}"])
        self.act_cancel = self._action("Cancel job", self.cancel_job, "Esc")
        self.act_shortcuts = self._action("&Keyboard shortcuts", self.show_shortcuts, "F1")
        self.act_about = self._action("&About Studio", self.show_about)
        self.act_mask_toggle = self._action(
            "Paint on &mask / layer",
            self.toggle_mask_target,
            "Q",
            "Switch the brush between the mask and the last image/control layer",
        )
        self.act_new_control = self._action("New &control layer", self._new_control_layer)
        self.act_duplicate = self._action("&Duplicate layer", self.duplicate_layer, "Ctrl+J")
        self.act_delete_layer = self._action("De&lete layer", self._delete_layer)
        self.act_layer_up = self._action("Move layer &up", self._layer_up, "Ctrl+]")
        self.act_layer_down = self._action("Move layer do&wn", self._layer_down, "Ctrl+[")

        self.tool_group = QActionGroup(self)
        self.tool_actions: dict[str, QAction] = {}
        for tool, text, key in (
            ("brush", "Brush", "B"),
            ("eraser", "Eraser", "E"),
            ("select", "Select", "M"),
            ("pan", "Pan", "H"),
        ):
            a = self._action(text, self._tool_slot, key, f"{text} tool", checkable=True)
            a.setData(tool)
            self.tool_group.addAction(a)
            self.tool_actions[tool] = a
        self.tool_actions["brush"].setChecked(True)

        self.theme_group = QActionGroup(self)
        self.theme_actions = {}
        for theme in ("dark", "light"):
            a = self._action(theme.capitalize() + " theme", self._theme_slot, checkable=True)
            a.setData(theme)
            a.setChecked(self.settings.theme == theme)
            self.theme_group.addAction(a)
            self.theme_actions[theme] = a

    def _build_toolbar(self) -> None:
        tb = self.addToolBar("Tools")
        tb.setObjectName("tools")
        tb.setMovable(False)
        for a in self.tool_actions.values():
            tb.addAction(a)
        tb.addSeparator()
        tb.addWidget(QLabel(" Size "))
        self.size_spin = QSpinBox()
        self.size_spin.setRange(1, 1000)
        self.size_spin.setSuffix(" px")
        self.size_spin.setValue(self.canvas.brush_size)
        self.size_spin.setToolTip("Brush size ( [ and ] )")
        self.size_spin.valueChanged.connect(self._on_size_spin)
        tb.addWidget(self.size_spin)
        tb.addWidget(QLabel(" Hardness "))
        self.hardness_spin = QSpinBox()
        self.hardness_spin.setRange(0, 100)
        self.hardness_spin.setSuffix(" %")
        self.hardness_spin.setValue(round(self.canvas.brush_hardness * 100))
        self.hardness_spin.setToolTip("Brush hardness ( Shift+[ and Shift+] )")
        self.hardness_spin.valueChanged.connect(self._on_hardness_spin)
        tb.addWidget(self.hardness_spin)
        self.color_button = QToolButton()
        self.color_button.setToolTip("Brush colour for image and control layers")
        self.color_button.clicked.connect(self.pick_color)
        tb.addWidget(self.color_button)
        self._update_color_button()
        tb.addSeparator()
        tb.addWidget(QLabel(" Paints on: "))
        self.target_label = QLabel()
        self.target_label.setObjectName("target")
        self.target_label.setToolTip(
            "The brush paints on the active layer: the mask layer (for inpainting) by "
            "default; select an image or control layer in Layers to paint on it."
        )
        tb.addWidget(self.target_label)
        spacer = QWidget()
        spacer.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        tb.addWidget(spacer)
        tb.addAction(self.act_undo)
        tb.addAction(self.act_redo)
        tb.addSeparator()
        tb.addAction(self.act_zoom_out)
        tb.addAction(self.act_zoom_in)
        tb.addAction(self.act_fit)
        tb.addAction(self.act_100)

    def _build_menus(self) -> None:
        mb = self.menuBar()
        f = mb.addMenu("&File")
        for a in (self.act_new, self.act_open, self.act_import):
            f.addAction(a)
        self.recent_menu = f.addMenu("Open &recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent)
        f.addSeparator()
        for a in (self.act_save, self.act_save_as, self.act_export):
            f.addAction(a)
        f.addSeparator()
        f.addAction(self.act_quit)
        e = mb.addMenu("&Edit")
        for a in (self.act_undo, self.act_redo):
            e.addAction(a)
        e.addSeparator()
        for a in (self.act_copy, self.act_paste):
            e.addAction(a)
        e.addSeparator()
        for a in (
            self.act_select_all,
            self.act_deselect,
            self.act_clear_mask,
            self.act_invert_mask,
        ):
            e.addAction(a)
        la = mb.addMenu("&Layer")
        for a in (
            self.act_new_control,
            self.act_duplicate,
            self.act_delete_layer,
            self.act_layer_up,
            self.act_layer_down,
        ):
            la.addAction(a)
        la.addSeparator()
        la.addAction(self.act_mask_toggle)
        t = mb.addMenu("&Tools")
        for a in self.tool_actions.values():
            t.addAction(a)
        t.addSeparator()
        for a in (self.act_smaller, self.act_larger, self.act_softer, self.act_harder):
            t.addAction(a)
        t.addSeparator()
        t.addAction(self.act_cancel)
        self.view_menu = mb.addMenu("&View")
        for a in (self.act_zoom_in, self.act_zoom_out, self.act_fit, self.act_100):
            self.view_menu.addAction(a)
        self.view_menu.addSeparator()
        for a in self.theme_actions.values():
            self.view_menu.addAction(a)
        self.view_menu.addSeparator()
        h = mb.addMenu("&Help")
        h.addAction(self.act_shortcuts)
        h.addAction(self.act_about)

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
                if cls is None:
                    continue
                self.add_panel(title, cls(self))
            except Exception as e:  # noqa: BLE001 - one broken panel must not stop the app
                log.exception("panel %s failed to load", title)
                self.panel_errors[title] = f"{type(e).__name__}: {e}"
        if self._panel_docks:
            self.resizeDocks(self._panel_docks[:1], [360], Qt.Orientation.Horizontal)
        self.resizeDocks([self.layers_dock], [220], Qt.Orientation.Horizontal)

    # == tools ===================================================================================
    @Slot()
    def _tool_slot(self) -> None:
        self.canvas.set_tool(self.sender().data())

    @Slot(str)
    def _on_tool_changed(self, tool: str) -> None:
        self.tool_actions[tool].setChecked(True)
        self._update_target()

    @Slot()
    def _on_brush_changed(self) -> None:
        self.size_spin.blockSignals(True)
        self.hardness_spin.blockSignals(True)
        self.size_spin.setValue(self.canvas.brush_size)
        self.hardness_spin.setValue(round(self.canvas.brush_hardness * 100))
        self.size_spin.blockSignals(False)
        self.hardness_spin.blockSignals(False)
        self.settings.brush_size = self.canvas.brush_size
        self.settings.brush_hardness = self.canvas.brush_hardness

    @Slot(int)
    def _on_size_spin(self, v: int) -> None:
        self.canvas.set_brush(size=v)

    @Slot(int)
    def _on_hardness_spin(self, v: int) -> None:
        self.canvas.set_brush(hardness=v / 100)

    @Slot()
    def brush_smaller(self) -> None:
        s = self.canvas.brush_size
        self.canvas.set_brush(size=max(1, s - max(1, round(s * 0.15))))

    @Slot()
    def brush_larger(self) -> None:
        s = self.canvas.brush_size
        self.canvas.set_brush(size=s + max(1, round(s * 0.15)))

    @Slot()
    def brush_softer(self) -> None:
        self.canvas.set_brush(hardness=self.canvas.brush_hardness - 0.1)

    @Slot()
    def brush_harder(self) -> None:
        self.canvas.set_brush(hardness=self.canvas.brush_hardness + 0.1)

    @Slot()
    def pick_color(self) -> None:
        c = QColorDialog.getColor(self.canvas.brush_color, self, "Brush colour")
        if c.isValid():
            self.canvas.brush_color = c
            self.settings.brush_color = c.name()
            self._update_color_button()

    def _update_color_button(self) -> None:
        c = self.canvas.brush_color
        self.color_button.setStyleSheet(
            f"QToolButton {{ background: {c.name()}; min-width: 18px; min-height: 18px;"
            " border: 1px solid #888; border-radius: 3px; }"
        )

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

    @Slot()
    def _theme_slot(self) -> None:
        self.set_theme(self.sender().data())

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
    def _update_title(self) -> None:
        name = Path(self.model.path).name if self.model.path else "Untitled"
        if self.model.doc.is_empty and not self.model.path:
            name = "Studio"
            self.setWindowTitle("Studio")
        else:
            self.setWindowTitle(f"{name}[*] — Studio")
        self.setWindowModified(self.model.dirty)
        self._update_size_label()

    def _ask(self, title: str, text: str, buttons, default) -> QMessageBox.StandardButton:
        return QMessageBox.question(self, title, text, buttons, default)

    def maybe_save(self) -> bool:
        """Prompt about unsaved changes. True: go on (saved or discarded); False: stay."""
        if not self.model.dirty or self.model.doc.is_empty:
            return True
        SB = QMessageBox.StandardButton
        answer = self.ask(
            "Unsaved changes",
            "The document has unsaved changes. Save them first?",
            SB.Save | SB.Discard | SB.Cancel,
            SB.Save,
        )
        if answer == SB.Save:
            return self.save()
        return answer == SB.Discard

    def _start_dir(self) -> str:
        return self.settings.last_dir or str(Path.home())

    def _remember(self, path: str) -> None:
        self.settings.last_dir = str(Path(path).parent)
        self.settings.push_recent("recent_files", str(Path(path).resolve()))

    @Slot()
    def new_document(self) -> None:
        if self.maybe_save():
            self.model.replace(Document())
            self._clear_recovery()

    @Slot()
    def open_dialog(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(
            self,
            "Open",
            self._start_dir(),
            f"Images and projects (*{EXTENSION} *.png *.jpg *.jpeg *.webp *.bmp *.tif *.tiff "
            f"*.gif);;{PROJECT_FILTER};;{IMAGE_FILTER}",
        )
        if paths:
            self.open_paths(paths)

    @Slot()
    def import_dialog(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Import", self._start_dir(), IMAGE_FILTER)
        if paths:
            self.import_images(paths)

    def open_paths(self, paths: list[str]) -> bool:
        """Open a project, or images as a new document (the first one sets the size; the
        others become layers). Asks about unsaved changes first."""
        paths = [str(p) for p in paths]
        projects = [p for p in paths if p.lower().endswith(EXTENSION)]
        if projects:
            return self.open_project(projects[0])
        loaded, errors = self._load_images(paths)
        self._report_load_errors(errors)
        if not loaded:
            return False
        if not self.maybe_save():
            return False
        (first_path, first), *rest = loaded
        doc = Document.from_image(first, Path(first_path).stem)
        for p, image in rest:
            doc.layers.insert(len(doc.layers) - 1, _layer(image, Path(p).stem))
        self.model.replace(doc)
        for p, _ in loaded:
            self._remember(p)
        self._offer_parameters([p for p, _ in loaded])
        return True

    def open_project(self, path: str) -> bool:
        try:
            doc = load_project(path)
        except StudioError as e:
            self.show_error(e.message, e.detail)
            return False
        if not self.maybe_save():
            return False
        self.model.replace(doc, path=str(path))
        self._remember(path)
        self.show_status(f"Opened {Path(path).name}")
        return True

    def import_images(self, paths: list[str]) -> int:
        """Add images as layers (one undo step). An empty document takes the first's size."""
        loaded, errors = self._load_images([str(p) for p in paths])
        self._report_load_errors(errors)
        if not loaded:
            return 0
        self.model.undo.beginMacro(
            f"Add {len(loaded)} layers" if len(loaded) > 1 else f"Add “{Path(loaded[0][0]).stem}”"
        )
        try:
            for p, image in loaded:
                self.model.add_layer(image, Path(p).stem)
        finally:
            self.model.undo.endMacro()
        self._offer_parameters([p for p, _ in loaded])
        return len(loaded)

    def _load_images(self, paths: list[str]) -> tuple[list[tuple[str, np.ndarray]], list[str]]:
        loaded, errors = [], []
        for p in paths:
            try:
                loaded.append((p, _imageio().load_image(p, mode="RGBA")))
            except StudioError as e:
                errors.append(e.message)
            except Exception as e:  # noqa: BLE001
                errors.append(f"{Path(p).name}: {type(e).__name__}: {e}")
        return loaded, errors

    def _report_load_errors(self, errors: list[str]) -> None:
        if errors:
            head = errors[0] if len(errors) == 1 else f"{len(errors)} files could not be opened."
            self.show_error(head, "\n".join(errors))

    @Slot(list)
    def on_files_dropped(self, paths: list[str]) -> None:
        from studio.ui.panels.models import import_model_file, is_model_file

        models = [p for p in paths if is_model_file(p)]
        for p in models:  # checkpoints, LoRAs, upscalers...: identified and imported
            import_model_file(self, p)
        paths = [p for p in paths if not is_model_file(p)]
        if not paths:
            return
        if any(p.lower().endswith(EXTENSION) for p in paths) or self.model.doc.is_empty:
            self.open_paths(paths)
        else:
            self.import_images(paths)

    @Slot(QImage)
    def on_image_dropped(self, image: QImage) -> None:
        self._add_qimage(image, "Dropped image")

    def _add_qimage(self, image: QImage, name: str) -> None:
        array = array_from_qimage(image, "RGBA")
        if self.model.doc.is_empty:
            self.model.replace(Document.from_image(array, name))
        else:
            self.model.add_layer(array, name)

    def _offer_parameters(self, paths: list[str]) -> None:
        """A PNG made by Studio or AUTOMATIC1111: offer to load its generation parameters."""
        panel = self.panels.get("Generate")
        if panel is None or not hasattr(panel, "apply_parameters"):
            return
        try:
            from studio.core.metadata import read_metadata
        except ImportError:
            return
        for p in paths:
            try:
                meta = read_metadata(p)
            except StudioError:
                continue
            if not meta.get("source") or not meta.get("prompt"):
                continue
            SB = QMessageBox.StandardButton
            who = "Studio" if meta["source"] == "studio" else "AUTOMATIC1111"
            answer = self.ask(
                "Generation parameters",
                f"{Path(p).name} was made by {who}:\n\n“{str(meta.get('prompt'))[:200]}”"
                "\n\nLoad its parameters into the Generate panel?",
                SB.Yes | SB.No,
                SB.Yes,
            )
            if answer == SB.Yes:
                panel.apply_parameters(meta)
            return

    @Slot()
    def save(self) -> bool:
        if not self.model.path:
            return self.save_as()
        return self._save_to(self.model.path)

    @Slot()
    def save_as(self) -> bool:
        if self.model.doc.is_empty:
            self.show_status("Nothing to save")
            return False
        start = self.model.path or str(Path(self._start_dir()) / f"untitled{EXTENSION}")
        path, _ = QFileDialog.getSaveFileName(self, "Save project", start, PROJECT_FILTER)
        if not path:
            return False
        if not path.lower().endswith(EXTENSION):
            path += EXTENSION
        return self._save_to(path)

    def _save_to(self, path: str) -> bool:
        try:
            save_project(self.model.doc, path)
        except StudioError as e:
            self.show_error(e.message, e.detail)
            return False
        self.model.path = str(path)
        self.model.undo.setClean()
        self._clear_recovery()
        self._remember(path)
        self._update_title()
        self.show_status(f"Saved {Path(path).name}")
        return True

    @Slot()
    def export_dialog(self) -> None:
        if self.composite() is None:
            self.show_status("Nothing to export")
            return
        stem = Path(self.model.path).stem if self.model.path else "image"
        path, chosen = QFileDialog.getSaveFileName(
            self, "Export image", str(Path(self._start_dir()) / f"{stem}.png"), EXPORT_FILTER
        )
        if path:
            if Path(path).suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp"):
                path += {"JPEG": ".jpg", "WebP": ".webp"}.get(chosen.split()[0], ".png")
            self.export(path)

    def export_metadata(self) -> dict | None:
        """The generation metadata to keep on export: the topmost visible generated layer's."""
        for layer in reversed(self.model.doc.layers):
            if layer.kind == "image" and layer.visible and layer.metadata:
                return layer.metadata
        return None

    def export(self, path: str) -> bool:
        image = self.composite()
        if image is None:
            return False
        meta = self.export_metadata()
        text = None
        if meta:
            text = meta.get("parameters") if isinstance(meta.get("parameters"), str) else None
            if text is None:
                try:
                    from studio.core.metadata import format_parameters

                    text = format_parameters(meta)
                except Exception:  # noqa: BLE001 - metadata is optional on export
                    text = None
        if Path(path).suffix.lower() in (".jpg", ".jpeg") or not image[..., 3].min() < 255:
            image = np.ascontiguousarray(image[..., :3])
        try:
            _imageio().save_image(path, image, parameters=text, studio=meta)
        except StudioError as e:
            self.show_error(e.message, e.detail)
            return False
        self.settings.last_dir = str(Path(path).parent)
        self.show_status(f"Exported {Path(path).name}")
        return True

    @Slot()
    def copy_image(self) -> None:
        image = self.composite()
        if image is None:
            return
        x, y, w, h = self.model.doc.selection or (0, 0, image.shape[1], image.shape[0])
        QGuiApplication.clipboard().setImage(qimage_from_array(image[y : y + h, x : x + w]))
        self.show_status("Copied")

    @Slot()
    def paste(self) -> None:
        md = QGuiApplication.clipboard().mimeData()
        if md is not None and md.hasUrls():
            paths = [u.toLocalFile() for u in md.urls() if u.isLocalFile()]
            if paths:
                self.on_files_dropped(paths)
                return
        image = QGuiApplication.clipboard().image()
        if image.isNull():
            self.show_status("The clipboard holds no image")
            return
        self._add_qimage(image, "Pasted")

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

    @Slot()
    def cancel_job(self) -> None:
        if self._worker.running_job is not None:
            self._worker.cancel(None)
            self.show_status("Cancelling…")

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        for p in self.settings.recent_files:
            a = self.recent_menu.addAction(p)
            a.setData(p)
            a.triggered.connect(self._open_recent)
        if self.recent_menu.isEmpty():
            self.recent_menu.addAction("(none)").setEnabled(False)

    @Slot()
    def _open_recent(self) -> None:
        self.open_paths([self.sender().data()])

    @Slot()
    def show_shortcuts(self) -> None:
        rows = "".join(f"<tr><td><b>{k}</b></td><td>{v}</td></tr>" for k, v in SHORTCUTS)
        box = QMessageBox(self)
        box.setWindowTitle("Keyboard shortcuts")
        box.setText(f"<table cellspacing=4>{rows}</table>")
        box.setWindowModality(Qt.WindowModality.NonModal)
        box.show()

    @Slot()
    def show_about(self) -> None:
        from studio import __version__

        QMessageBox.about(
            self,
            "About Studio",
            f"<b>Studio {__version__}</b><br>Generative image editing on your own machine.",
        )

    def _forget_error(self) -> None:
        box = self.sender()
        if box in self._errors:
            self._errors.remove(box)

    # == autosave and recovery ===================================================================
    @Slot()
    def _bump_revision(self, *_: object) -> None:
        self._revision += 1

    def _clear_recovery(self) -> None:
        """Delete this session's recovery file (after a save, or when the document it held is
        gone), first letting a running autosave finish so it can't put the file back."""
        if self._autosave_thread is not None:
            self._autosave_thread.join(timeout=30)
        recovery.clear_recovery()
        self._autosaved_revision = self._revision

    @Slot()
    def autosave(self, background: bool = True) -> bool:
        """Write the recovery file if the document changed since the last autosave; drop it
        once the document has nothing unsaved (saved, or replaced by a freshly opened one)."""
        if self._autosave_thread is not None and self._autosave_thread.is_alive():
            return False
        if not self.model.dirty or self.model.doc.is_empty:
            if self._autosaved_revision != self._revision:
                self._clear_recovery()
            return False
        if self._revision == self._autosaved_revision:
            return False
        self._autosaved_revision = self._revision
        snapshot = self.model.doc.snapshot()
        source = self.model.path

        def write() -> None:
            try:
                recovery.write_recovery(snapshot, source)
            except Exception:  # noqa: BLE001 - autosave must never disturb the user
                log.exception("autosave failed")

        if background:
            self._autosave_thread = threading.Thread(target=write, name="autosave", daemon=True)
            self._autosave_thread.start()
        else:
            write()
        return True

    def offer_recovery(self) -> bool:
        """After a crash: offer to restore the autosave of the session that died."""
        # At start-up no autosave of this session exists yet: a file with our own PID is a
        # dead session's whose PID was reused (containers give the same PIDs every launch).
        found = recovery.orphaned_recoveries(own_pid_is_orphan=True)
        if not found:
            return False
        path, source = max(found, key=lambda item: _mtime(item[0]))  # the newest crash
        SB = QMessageBox.StandardButton
        where = f" (from {Path(source).name})" if source else ""
        answer = self.ask(
            "Recover unsaved work",
            f"Studio did not close properly last time. Restore the autosaved document{where}?",
            SB.Yes | SB.No,
            SB.Yes,
        )
        restored = False
        if answer == SB.Yes:
            try:
                doc = load_project(path)
            except StudioError as e:
                kept = recovery.set_aside(path)  # not offered again, but not deleted either
                self.show_error(
                    f"The recovery file could not be read: {e.message} (kept as {kept})",
                    e.detail,
                )
                return False
            else:
                self.model.replace(doc, path=None)
                # Unsaved by definition: mark dirty so closing prompts to save.
                self.model.undo.resetClean()
                self._update_title()
                restored = True
        # Only the file the user answered about: other crashed sessions are offered next time.
        recovery.discard(path)
        if restored:
            recovery.write_recovery(self.model.doc, source)
        return restored

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
        self._clear_recovery()
        self.settings.geometry = self.saveGeometry()
        self.settings.sync()
        for box in list(self._errors):
            box.close()
        event.accept()


def _layer(image, name: str):
    from studio.core.document import Layer

    return Layer(name, "image", to_rgba(image))


def _imageio():
    from studio.core import imageio

    return imageio


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
