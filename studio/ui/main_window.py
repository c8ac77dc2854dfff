"""The main window (the shell): canvas in the middle, tools on top, layers on the left,
feature panels docked on the right. It implements ``studio.ui.host.Host`` for the panels.

The shell composes its rooms, each a class with its own state, given what it talks to
explicitly (the rooms use the window only through the ``Host`` contract):

- ``documents`` (``documents.Documents``): open, save, export, autosave, recovery;
- ``menus`` (``actions.Actions``): the actions, tool bar, menus, tools and brush (not
  ``actions``: that would hide ``QWidget.actions()``);
- ``edits`` (``edits.Edits``): the selection, mask and layer edits the menus trigger;
- ``jobs`` (``jobs.Jobs``): the worker, the engine's state, job previews, cancel;
- ``docks`` (``docks.Docks``): the layers and history docks and the panels' docks.

The shell itself holds the document model, the canvas and the status bar. Undo
commands are in ``commands``. Nothing here imports torch: the engine loads in the worker
thread after the window is shown (``jobs.start_engine``).
"""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import QRectF, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QCloseEvent, QColor, QImage, QUndoCommand
from PySide6.QtWidgets import QLabel, QMainWindow, QMessageBox, QWidget

from studio.ui.actions import Actions
from studio.ui.docks import Docks
from studio.ui.documents import EXTENSION, Documents
from studio.ui.drops import DropRouter
from studio.ui.edits import Edits
from studio.ui.jobs import Jobs
from studio.ui.placement import place_window
from studio.ui.settings import Settings, export_speed
from studio.ui.theme import app_icon

__all__ = ["EXTENSION", "PANELS", "MainWindow"]

# The rest (numpy, the document model, canvas, layers panel) is imported by _import_heavy()
# so the window can be put on screen first (MainWindow(deferred=True)).
np: Any = None
CanvasView: Any = None
DocumentModel: Any = None
LayersPanel: Any = None
qimage_from_array: Any = None


def _import_heavy() -> None:
    global np, CanvasView, DocumentModel, LayersPanel, qimage_from_array
    if np is not None:
        return
    import numpy

    from studio.ui import qimage as _qimage
    from studio.ui.canvas import CanvasView as _CanvasView
    from studio.ui.document_model import DocumentModel as _DocumentModel
    from studio.ui.layers_panel import LayersPanel as _LayersPanel

    np, qimage_from_array = numpy, _qimage.qimage_from_array
    CanvasView, DocumentModel, LayersPanel = _CanvasView, _DocumentModel, _LayersPanel


log = logging.getLogger(__name__)

PANELS = [
    ("Generate", "studio.ui.panels.generate:GeneratePanel"),
    ("Inpaint", "studio.ui.panels.inpaint:InpaintPanel"),
    ("Control", "studio.ui.panels.control:ControlPanel"),
    ("Upscale", "studio.ui.panels.upscale:UpscalePanel"),
    ("Models", "studio.ui.panels.models:ModelsPanel"),
]


def _delegate(room: str, name: str) -> property:
    """``window.<name>`` reads ``window.<room>.<name>``: a short path for the window's most
    used members (tests and panels reach them through the host); the room owns them."""
    return property(lambda self: getattr(getattr(self, room), name), doc=f"{room}.{name}")


class MainWindow(QMainWindow):
    """The application window and the panels' Host."""

    models_updated = Signal()  # installed models changed: every model list refreshes

    # Read-throughs to the rooms for existing callers (see _delegate).
    open_paths = _delegate("documents", "open_paths")
    import_images = _delegate("documents", "import_images")
    export = _delegate("documents", "export")
    on_files_dropped = _delegate("documents", "on_files_dropped")
    open_project = _delegate("documents", "open_project")
    offer_recovery = _delegate("documents", "offer_recovery")
    windows = _delegate("documents", "windows")
    invert_mask = _delegate("edits", "invert_mask")
    start_engine = _delegate("jobs", "start_engine")
    set_mask_style = _delegate("menus", "set_mask_style")
    target_label = _delegate("menus", "target_label")
    act_undo = _delegate("menus", "act_undo")
    act_redo = _delegate("menus", "act_redo")
    act_copy = _delegate("menus", "act_copy")
    act_paste = _delegate("menus", "act_paste")
    act_deselect = _delegate("menus", "act_deselect")
    act_clear_mask = _delegate("menus", "act_clear_mask")
    act_invert_mask = _delegate("menus", "act_invert_mask")
    act_show_mask = _delegate("menus", "act_show_mask")

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
        self.built = False
        self._start_engine_when_built = start_engine
        self.setWindowIcon(app_icon())
        self.setWindowTitle("Studio")
        place_window(self, self.settings.geometry)  # inside the screen's available area
        placeholder = QLabel("Starting Studio…")
        placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setCentralWidget(placeholder)
        if not deferred:
            self.finish_startup()

    def finish_startup(self) -> None:
        """Build the canvas, rooms, docks and panels (idempotent)."""
        if self.built:
            return
        _import_heavy()
        self._build()
        self.built = True
        if self._start_engine_when_built:
            QTimer.singleShot(0, self.jobs.start_engine)

    def _build(self) -> None:
        s = self.settings
        self.model = DocumentModel(self, undo_limit=s.undo_limit)
        self._errors: list[QMessageBox] = []  # the open error boxes

        self.canvas = canvas = CanvasView(self.model, self)
        canvas.setObjectName("canvas")
        self.setCentralWidget(canvas)
        canvas.set_brush(s.brush_size, s.brush_hardness)
        canvas.setBackgroundBrush(QColor("#bcbcc2" if s.theme == "light" else "#28282c"))
        canvas.brush_color = QColor(s.brush_color)
        canvas.set_mask_style(s.mask_color, s.mask_opacity)

        export_speed(s)
        self.jobs = Jobs(self, self, canvas, threads=s.torch_threads)
        self.documents = Documents(
            self, self, ask=self._ask, new_window=self._new_window, autosave=not self.secondary
        )
        self.ask = self.documents.question  # replaceable in tests: (title, text, buttons, default)
        self.layers_panel = LayersPanel(self.model)
        self.edits = Edits(self.model, self.layers_panel, self)
        self._build_status_bar()
        self.menus = Actions(self, s, canvas, self.documents, self.edits, self.jobs)
        canvas.files_dropped.connect(self.documents.on_files_dropped)
        # A file dropped on any panel, dock or field does what a drop on the canvas does.
        self.drops = DropRouter(self, self.documents.on_files_dropped)
        canvas.image_dropped.connect(self.documents.on_image_dropped)
        canvas.status.connect(self.show_status)
        canvas.zoom_changed.connect(self._on_zoom)
        canvas.cursor_moved.connect(self._on_cursor)
        self.documents.title_changed.connect(self._update_size_label)
        self.docks = Docks(self, self.model.undo, self.layers_panel, self.menus.view_menu)
        self.panels, self.panel_errors = self.docks.panels, self.docks.panel_errors
        self.docks.load_panels(PANELS, host=self)
        self.docks.restore(s.window_state)  # the dock sizes the user chose last time
        canvas.pose_handler = self.panels.get("Control")  # keypoints dragged on the canvas
        from studio.ui.image_tools import add_image_tools  # numpy: after the window is up

        self.smart_select, self.face_restore = add_image_tools(self)
        self.documents.update_title()
        canvas.setFocus()  # B, E, M... work at once, not typed into the first field

    def _ask(self, title: str, text: str, buttons, default):
        return self.ask(title, text, buttons, default)  # whatever ``ask`` is now

    def _new_window(self) -> MainWindow:
        """A secondary window (``documents.open_image_document``) sharing the settings."""
        return MainWindow(self.settings, secondary=True)

    # == Host ====================================================================================
    @property
    def worker(self):  # studio.ui.worker.Worker, owned by the jobs room
        return self.jobs.worker

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
            self.canvas.fit_rect(QRectF(*region))  # the zoom label follows

    def clear_staged(self) -> None:
        self.canvas.staged_item.set(QImage(), QRectF())

    def add_panel(self, title: str, widget: QWidget) -> None:
        self.docks.add_panel(title, widget)

    def show_panel(self, title: str) -> None:
        """Bring the panel's dock to the front (its tab becomes current)."""
        self.docks.show_panel(title)

    def models_changed(self) -> None:
        self.models_updated.emit()

    def maybe_save(self) -> bool:
        return self.documents.maybe_save()

    def open_image_document(self, image, name: str, metadata: dict | None = None) -> bool:
        return self.documents.open_image_document(image, name, metadata)

    def show_status(self, text: str, ms: int = 6000) -> None:
        self.statusBar().showMessage(text, ms)

    # == UI construction =========================================================================
    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.size_label = QLabel("")
        self.pos_label = QLabel("")
        self.zoom_label = QLabel("100%")
        for w in (self.pos_label, self.size_label, self.zoom_label):
            w.setMinimumWidth(70)
        bar.addPermanentWidget(self.pos_label)
        bar.addPermanentWidget(self.size_label)
        bar.addPermanentWidget(self.zoom_label)
        bar.addPermanentWidget(self.jobs.engine_label)

    # == status bar ============================================================================
    @Slot(float)
    def _on_zoom(self, z: float) -> None:
        self.zoom_label.setText(f"{z * 100:.0f}%")

    @Slot(int, int)
    def _on_cursor(self, x: int, y: int) -> None:
        doc = self.model.doc
        inside = 0 <= x < doc.width and 0 <= y < doc.height
        self.pos_label.setText(f"{x}, {y}" if inside else "")

    @Slot()
    def _update_size_label(self) -> None:
        doc = self.model.doc
        self.size_label.setText("" if doc.is_empty else f"{doc.width}×{doc.height}")

    def _forget_error(self) -> None:
        box = self.sender()
        if box in self._errors:
            self._errors.remove(box)

    # == closing =================================================================================
    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        if not self.built:
            event.accept()
            return
        if not self.documents.maybe_save():
            event.ignore()
            return
        self.documents.autosaver.stop()
        self.hide()  # gone from the screen at once, even while a job winds down
        self.jobs.shutdown()
        for title, panel in self.panels.items():  # optional panel hook: stop its threads
            shutdown = getattr(panel, "shutdown", None)
            if callable(shutdown):
                try:
                    shutdown()
                except Exception:  # noqa: BLE001 - closing must go on
                    log.exception("panel %s failed to shut down", title)
        self.documents.close()  # the recovery file goes (the first window's)
        if not self.secondary:
            self.settings.geometry = self.saveGeometry()
            self.settings.window_state = self.saveState()
            self.settings.sync()
        for box in list(self._errors):
            box.close()
        event.accept()
