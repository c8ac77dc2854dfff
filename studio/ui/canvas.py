"""The canvas: a QGraphicsView over the document's layers, with the tools (brush, eraser,
rectangle selection, pan), zoom, drag and drop, and the live generation preview.

Scene coordinates are document pixels. Each layer is a ``LayerItem`` drawing a cached QImage
that is refreshed only where pixels changed; the mask layer is drawn as a tinted overlay.

The keyboard: the tools' single keys (B, E, M, [ ]...) are window-wide actions, which Qt
does not fire while a text field has the focus (the field takes the key). So the canvas takes
the focus when it is clicked and when the pointer is over it, unless the user is typing in a
field (``_FocusWatch``); and when the focused widget is disabled or hidden (a panel's button
while its job runs) the focus comes here rather than to the next field in the tab chain.
"""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import QEvent, QObject, QPointF, QRectF, Qt, Signal, Slot
from PySide6.QtGui import (
    QBrush,
    QColor,
    QImage,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPen,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QGraphicsEllipseItem,
    QGraphicsItem,
    QGraphicsRectItem,
    QGraphicsScene,
    QGraphicsView,
    QLineEdit,
    QPlainTextEdit,
    QStyleOptionGraphicsItem,
    QTextEdit,
    QWidget,
)
from shiboken6 import isValid

from studio.core.document import SNAP, Layer, snap_rect
from studio.ui import brush
from studio.ui.commands import PaintCommand
from studio.ui.document_model import DocumentModel
from studio.ui.mask_view import DEFAULT_COLOR, DEFAULT_OPACITY, MaskOutlineItem, mask_overlay
from studio.ui.qimage import qimage_from_array

TOOLS = ("brush", "eraser", "select", "smart", "pan")
MIN_ZOOM, MAX_ZOOM = 0.02, 64.0


_CHECKER: QImage | None = None


def _checker(cell: int = 8) -> QImage:
    """A 2x2-cell checkerboard tile for showing transparency."""
    global _CHECKER
    if _CHECKER is None:
        tile = np.full((2 * cell, 2 * cell, 3), 204, np.uint8)
        tile[:cell, cell:] = 156
        tile[cell:, :cell] = 156
        _CHECKER = qimage_from_array(tile)
    return _CHECKER


class LayerItem(QGraphicsItem):
    def __init__(self, layer: Layer, view: CanvasView | None = None) -> None:
        super().__init__()
        self.layer = layer
        self.view = view
        self.image = QImage()
        self.refresh(None)

    def _rgba(self, pixels: np.ndarray) -> np.ndarray:
        if not self.layer.is_mask:
            return pixels
        if self.view is None:
            return mask_overlay(pixels)
        return mask_overlay(pixels, self.view.mask_color, self.view.mask_opacity)

    def refresh(self, rect: tuple[int, int, int, int] | None) -> None:
        pixels = self.layer.pixels
        w, h = self.layer.size
        if rect is None or self.image.size().width() != w or self.image.size().height() != h:
            self.prepareGeometryChange()
            self.image = qimage_from_array(self._rgba(pixels)) if w and h else QImage()
            self.update()
            return
        x, y, rw, rh = rect
        patch = qimage_from_array(self._rgba(pixels[y : y + rh, x : x + rw]))
        p = QPainter(self.image)
        p.setCompositionMode(QPainter.CompositionMode.CompositionMode_Source)
        p.drawImage(x, y, patch)
        p.end()
        self.update(QRectF(x, y, rw, rh))

    def boundingRect(self) -> QRectF:  # noqa: N802 - Qt API
        w, h = self.layer.size
        return QRectF(0, 0, w, h)

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget=None) -> None:
        if not self.image.isNull():
            painter.drawImage(QPointF(0, 0), self.image)


class PreviewItem(QGraphicsItem):
    """The newest generation preview, scaled into its target rect (latest frame wins)."""

    def __init__(self) -> None:
        super().__init__()
        self.image = QImage()
        self.rect = QRectF()
        self.setZValue(1e6)

    def set(self, image: QImage, rect: QRectF) -> None:
        self.prepareGeometryChange()
        self.image, self.rect = image, QRectF(rect)
        self.setVisible(not image.isNull())
        self.update()

    def boundingRect(self) -> QRectF:  # noqa: N802
        return self.rect

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget=None) -> None:
        if not self.image.isNull():
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
            painter.drawImage(self.rect, self.image)


def is_text_field(widget: QWidget | None) -> bool:
    """Whether ``widget`` takes typed text (so single-key shortcuts do not fire in it)."""
    if widget is None:
        return False
    if isinstance(widget, QComboBox):
        return widget.isEditable()
    if isinstance(widget, QLineEdit | QTextEdit | QPlainTextEdit):
        return not widget.isReadOnly()
    return isinstance(widget, QAbstractSpinBox)


class _FocusWatch(QObject):
    """Keeps the keyboard for the canvas (see the module doc): watches the application's
    focus, sends it to the canvas when the focused widget of the canvas's window is disabled
    or hidden, and tells whether the user is typing in the focused text field (clicked or
    typed in it since it got the focus)."""

    _TYPING = (
        QEvent.Type.KeyPress,
        QEvent.Type.MouseButtonPress,
        QEvent.Type.MouseButtonDblClick,
        QEvent.Type.InputMethod,
    )

    def __init__(self, canvas: CanvasView) -> None:
        super().__init__(canvas)
        self.canvas = canvas
        self._watched: list[QWidget] = []
        self._typed_in: QWidget | None = None
        app = QApplication.instance()
        if app is not None:
            app.focusChanged.connect(self._focus_changed)

    def typing(self) -> bool:
        """The focus of the canvas's window is in a text field the user clicked or typed in."""
        field = self.canvas.window().focusWidget()
        return field is not None and field is self._typed_in and is_text_field(field)

    @Slot(QWidget, QWidget)
    def _focus_changed(self, old: QWidget | None, new: QWidget | None) -> None:
        canvas = self.canvas
        if new is None or not isValid(new) or not isValid(canvas):
            return  # the window lost the keyboard: the field typed in stays so on return
        window = canvas.window()
        if new.window() is not window:
            return  # another window (a dialog, a popup): the same
        typed = self._typed_in
        self._unwatch()
        if new is canvas:
            return
        lost = old is not None and isValid(old) and old.window() is window
        if lost and not (old.isEnabled() and old.isVisible()):
            # Qt hands the focus of a disabled or hidden widget to the next one in the tab
            # chain: often a text field with its text selected, where B or E would be typed.
            if canvas.isVisible() and canvas.isEnabled():
                canvas.setFocus(Qt.FocusReason.OtherFocusReason)
                return
        if is_text_field(new):
            self._watched = [new, *new.findChildren(QWidget)]  # a spin box's line edit too
            for w in self._watched:
                w.installEventFilter(self)
            if new is typed:  # back from another window, or from a menu
                self._typed_in = typed

    def _unwatch(self) -> None:
        for w in self._watched:
            if isValid(w):
                w.removeEventFilter(self)
        self._watched = []
        self._typed_in = None

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt API
        if event.type() in self._TYPING and self._watched:
            self._typed_in = self._watched[0]
        return False


class CanvasView(QGraphicsView):
    zoom_changed = Signal(float)
    cursor_moved = Signal(int, int)  # document pixel under the mouse
    tool_changed = Signal(str)
    mask_shown_changed = Signal(bool)
    brush_changed = Signal()
    files_dropped = Signal(list)  # local paths
    image_dropped = Signal(QImage)  # image data without a file (e.g. from a browser)
    status = Signal(str)

    def __init__(self, model: DocumentModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self.scene_ = QGraphicsScene(self)
        self.setScene(self.scene_)
        self.items_: dict[int, LayerItem] = {}
        self.tool = "brush"
        self.brush_size = 40
        self.brush_hardness = 0.7
        self.brush_color = QColor(0, 0, 0)
        self._stroke: dict | None = None
        self._select_from: QPointF | None = None
        self._pan_from: QPointF | None = None
        self._space = False
        self._fit_on_resize = True
        self.mask_color = QColor(DEFAULT_COLOR)  # tint and opacity: set_mask_style
        self.mask_opacity = DEFAULT_OPACITY
        self.mask_shown = True  # view only: hidden over a new result (set_mask_shown)
        self.pose_handler = None  # begin/drag/end_keypoint_drag (the Control panel)
        self.click_handler = None  # press/move/release of the Smart select tool
        self._pose_dragging = False
        self._pose_offset = (0, 0)
        self._zoom_shown = 1.0  # the zoom zoom_changed last announced
        self._focus = _FocusWatch(self)

        self.setAcceptDrops(True)
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.NoAnchor)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.SmartViewportUpdate)
        self.setDragMode(QGraphicsView.DragMode.NoDrag)
        # Panning is space/middle-drag (scroll bars would only waste room next to the docks).
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setBackgroundBrush(QColor(40, 40, 44))

        self.job_preview_item = PreviewItem()  # job previews (latest frame wins)
        self.job_preview_item.setVisible(False)
        self.scene_.addItem(self.job_preview_item)
        self.staged_item = PreviewItem()  # a finished result waiting for Accept/Discard
        self.staged_item.setZValue(1e6 - 3)
        self.staged_item.setVisible(False)
        self.scene_.addItem(self.staged_item)
        self.preview_item = PreviewItem()  # panels' live overlays (Host.show_preview)
        self.preview_item.setZValue(1e6 - 1)
        self.preview_item.setVisible(False)
        self.scene_.addItem(self.preview_item)
        pen = QPen(QColor(255, 255, 255), 0, Qt.PenStyle.DashLine)
        pen.setCosmetic(True)
        self.selection_item = QGraphicsRectItem()
        self.selection_item.setPen(pen)
        self.selection_item.setZValue(1e6 + 1)
        self.selection_item.setVisible(False)
        self.scene_.addItem(self.selection_item)
        self.rubber_item = QGraphicsRectItem()
        rpen = QPen(QColor(120, 190, 255), 0, Qt.PenStyle.DashLine)
        rpen.setCosmetic(True)
        self.rubber_item.setPen(rpen)
        self.rubber_item.setBrush(QBrush(QColor(120, 190, 255, 40)))
        self.rubber_item.setZValue(1e6 + 2)
        self.rubber_item.setVisible(False)
        self.scene_.addItem(self.rubber_item)
        cpen = QPen(QColor(255, 255, 255, 200), 0)
        cpen.setCosmetic(True)
        self.cursor_item = QGraphicsEllipseItem()
        self.cursor_item.setPen(cpen)
        self.cursor_item.setZValue(1e6 + 3)
        self.cursor_item.setVisible(False)
        self.scene_.addItem(self.cursor_item)
        self.mask_outline = MaskOutlineItem()  # marching ants around the mask
        self.mask_outline.setZValue(1e6 - 2)
        self.scene_.addItem(self.mask_outline)

        model.structure_changed.connect(self.sync_layers)
        model.pixels_changed.connect(self.on_pixels_changed)
        model.selection_changed.connect(self.sync_selection)
        model.document_replaced.connect(self.on_document_replaced)
        self.on_document_replaced()

    # -- document sync -----------------------------------------------------------------------
    def on_document_replaced(self) -> None:
        for item in self.items_.values():
            self.scene_.removeItem(item)
        self.items_.clear()
        self.clear_preview()
        self.clear_overlay()
        doc = self.model.doc
        w, h = doc.width, doc.height
        margin = max(w, h, 256)
        self.scene_.setSceneRect(QRectF(-margin, -margin, w + 2 * margin, h + 2 * margin))
        self.mask_shown = True
        self.mask_outline.set_mask(doc.mask_layer.pixels if doc.layers else None, now=True)
        self.sync_layers()
        self.sync_selection()
        self._fit_on_resize = True
        if w and h:
            self.fit()

    def sync_layers(self) -> None:
        doc = self.model.doc
        live = {layer.uid for layer in doc.layers}
        for uid in list(self.items_):
            if uid not in live:
                self.scene_.removeItem(self.items_.pop(uid))
        for z, layer in enumerate(doc.layers):
            item = self.items_.get(layer.uid)
            if item is None or item.layer is not layer:
                if item is not None:
                    self.scene_.removeItem(item)
                item = LayerItem(layer, self)
                self.items_[layer.uid] = item
                self.scene_.addItem(item)
            elif item.image.width() != layer.size[0] or item.image.height() != layer.size[1]:
                item.refresh(None)
            item.setZValue(z)
            item.setVisible(layer.visible and (self.mask_shown or not layer.is_mask))
            item.setOpacity(layer.opacity)
            item.setPos(*layer.offset)
        mask = doc.mask_layer if doc.layers else None
        if mask is not None:  # a staged result is under the mask (Shift+M shows it over it)
            self.staged_item.setZValue(doc.index_of(mask.uid) - 0.5)
        self.mask_outline.setVisible(bool(mask and mask.visible and self.mask_shown))
        self.viewport().update()

    def on_pixels_changed(self, uid: int, rect: object) -> None:
        item = self.items_.get(uid)
        if item is not None:
            item.refresh(rect)  # type: ignore[arg-type]
            if item.layer.is_mask:
                self.mask_outline.set_mask(item.layer.pixels)

    # -- the mask's look ---------------------------------------------------------------------
    def set_mask_style(self, color: QColor | str, opacity: float) -> None:
        """Tint colour and opacity (0..1) of the mask, like a quick mask's."""
        self.mask_color = QColor(color)
        self.mask_opacity = max(0.0, min(1.0, float(opacity)))
        for item in self.items_.values():
            if item.layer.is_mask:
                item.refresh(None)

    def set_mask_shown(self, shown: bool) -> None:
        """Show or hide the mask's tint and outline (the view only: the mask is kept)."""
        if shown != self.mask_shown:
            self.mask_shown = shown
            self.sync_layers()
            self.mask_shown_changed.emit(shown)

    def sync_selection(self) -> None:
        sel = self.model.doc.selection
        self.selection_item.setVisible(sel is not None)
        if sel:
            self.selection_item.setRect(QRectF(*sel))

    # -- preview -----------------------------------------------------------------------------
    def show_preview(self, image: QImage, rect: tuple[float, float, float, float]) -> None:
        self.job_preview_item.set(image, QRectF(*rect))

    def clear_preview(self) -> None:
        self.job_preview_item.set(QImage(), QRectF())

    def show_overlay(self, image: QImage, rect: tuple[float, float, float, float]) -> None:
        self.preview_item.set(image, QRectF(*rect))

    def clear_overlay(self) -> None:
        self.preview_item.set(QImage(), QRectF())

    # -- zoom --------------------------------------------------------------------------------
    @property
    def zoom(self) -> float:
        return self.transform().m11()

    def set_zoom(self, z: float) -> None:
        z = min(MAX_ZOOM, max(MIN_ZOOM, z))
        self._fit_on_resize = False
        center = self.mapToScene(self.viewport().rect().center())
        self.setTransform(self.transform().fromScale(z, z))
        self.centerOn(center)
        self.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, z < 1.0)
        self._announce_zoom()
        self._update_cursor_item()

    def zoom_by(self, factor: float, anchor: QPointF | None = None) -> None:
        """Zoom keeping the document point under ``anchor`` (viewport coordinates; default
        the centre) where it is."""
        vp = self.viewport().rect()
        anchor = anchor if anchor is not None else QPointF(vp.center())
        before = self.mapToScene(anchor.toPoint())
        center = self.mapToScene(vp.center())
        self.set_zoom(self.zoom * factor)
        after = self.mapToScene(anchor.toPoint())
        self.centerOn(center + (before - after))
        self._update_cursor_item()

    def zoom_in(self) -> None:
        self.zoom_by(1.25)

    def zoom_out(self) -> None:
        self.zoom_by(0.8)

    def actual_size(self) -> None:
        self.set_zoom(1.0)

    def fit(self) -> None:
        doc = self.model.doc
        if doc.is_empty:
            return
        self.fitInView(QRectF(0, 0, doc.width, doc.height), Qt.AspectRatioMode.KeepAspectRatio)
        z = self.transform().m11() * 0.97
        self.setTransform(self.transform().fromScale(z, z))
        self.centerOn(doc.width / 2, doc.height / 2)
        self.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, z < 1.0)
        self._fit_on_resize = True
        self._announce_zoom()

    def fit_rect(self, rect: tuple[float, float, float, float] | QRectF) -> None:
        """Fit ``rect`` (document pixels) to the view, e.g. a first result on an empty
        canvas."""
        self.fitInView(QRectF(rect), Qt.AspectRatioMode.KeepAspectRatio)
        self.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, self.zoom < 1.0)
        self._announce_zoom()

    def _announce_zoom(self) -> None:
        """``zoom_changed`` if the zoom is not the one announced last. Also called on each
        paint, so a transform set by other code (``fitInView`` from outside) is reported."""
        z = self.zoom
        if not math.isclose(z, self._zoom_shown, rel_tol=1e-6):
            self._zoom_shown = z
            self.zoom_changed.emit(z)

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        if self._fit_on_resize:
            self.fit()

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802
        dy = event.angleDelta().y()
        if event.modifiers() & Qt.KeyboardModifier.ShiftModifier or dy == 0:
            super().wheelEvent(event)  # Shift+wheel scrolls
            return
        self.zoom_by(math.pow(1.0015, dy), event.position())

    # -- tools -------------------------------------------------------------------------------
    def set_tool(self, tool: str) -> None:
        if tool not in TOOLS:
            raise ValueError(tool)
        self.tool = tool
        self._update_cursor_item()
        self.tool_changed.emit(tool)

    def set_brush(self, size: int | None = None, hardness: float | None = None) -> None:
        if size is not None:
            self.brush_size = int(min(1000, max(1, size)))
        if hardness is not None:
            self.brush_hardness = float(min(1.0, max(0.0, hardness)))
        self._update_cursor_item()
        self.brush_changed.emit()

    def _painting_tool(self) -> bool:
        return self.tool in ("brush", "eraser") and not self._space

    def _update_cursor_item(self, scene_pos: QPointF | None = None) -> None:
        show = self._painting_tool() and self.underMouse()
        if scene_pos is None:
            scene_pos = self.mapToScene(self.mapFromGlobal(self.cursor().pos()))
        r = self.brush_size / 2
        self.cursor_item.setRect(QRectF(scene_pos.x() - r, scene_pos.y() - r, 2 * r, 2 * r))
        self.cursor_item.setVisible(show)
        if self._space or self.tool == "pan":
            self.viewport().setCursor(
                Qt.CursorShape.ClosedHandCursor if self._pan_from else Qt.CursorShape.OpenHandCursor
            )
        elif self.tool == "select":
            self.viewport().setCursor(Qt.CursorShape.CrossCursor)
        else:
            self.viewport().setCursor(Qt.CursorShape.CrossCursor)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space = True
            self._update_cursor_item()
            event.accept()
            return
        super().keyPressEvent(event)

    def keyReleaseEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space = False
            self._pan_from = None
            self._update_cursor_item()
            event.accept()
            return
        super().keyReleaseEvent(event)

    def take_keys(self) -> None:
        """The pointer is over the canvas: the keyboard comes here (B, E, M, Space...) unless
        the user is typing in a text field or another window has the keys."""
        if self.hasFocus() or not self.isEnabled() or not self.window().isActiveWindow():
            return
        if not self._focus.typing():
            self.setFocus(Qt.FocusReason.MouseFocusReason)

    def enterEvent(self, event) -> None:  # noqa: N802
        super().enterEvent(event)
        self.take_keys()
        self._update_cursor_item()

    def leaveEvent(self, event) -> None:  # noqa: N802
        super().leaveEvent(event)
        self.cursor_item.setVisible(False)

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        self.setFocus(Qt.FocusReason.MouseFocusReason)
        pos = self.mapToScene(event.position().toPoint())
        button = event.button()
        if button == Qt.MouseButton.MiddleButton or (
            button == Qt.MouseButton.LeftButton and (self._space or self.tool == "pan")
        ):
            self._pan_from = event.position()
            self._update_cursor_item()
            event.accept()
            return
        if button != Qt.MouseButton.LeftButton or self.model.doc.is_empty:
            super().mousePressEvent(event)
            return
        if self._pose_press(pos):
            pass  # a keypoint of the active pose layer, whichever tool but pan picked it
        elif self.tool == "select":
            self._select_from = pos
            self.show_rubber(pos, pos)
        elif self.tool == "smart" and self.click_handler is not None:
            self.click_handler.press(pos, event.position(), event.modifiers())
        elif self.tool in ("brush", "eraser"):
            self._begin_stroke(pos)
        event.accept()

    def show_rubber(self, start: QPointF, end: QPointF) -> None:
        """The rubber band from ``start`` to ``end`` (scene coordinates)."""
        self.rubber_item.setRect(QRectF(start, end).normalized())
        self.rubber_item.setVisible(True)

    def hide_rubber(self) -> None:
        self.rubber_item.setVisible(False)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        pos = self.mapToScene(event.position().toPoint())
        if not self.hasFocus():
            self.take_keys()
        self.cursor_moved.emit(int(math.floor(pos.x())), int(math.floor(pos.y())))
        self._update_cursor_item(pos)
        if self._pan_from is not None:
            delta = event.position() - self._pan_from
            self._pan_from = event.position()
            hs, vs = self.horizontalScrollBar(), self.verticalScrollBar()
            hs.setValue(hs.value() - int(round(delta.x())))
            vs.setValue(vs.value() - int(round(delta.y())))
            self._fit_on_resize = False
            event.accept()
            return
        if self._select_from is not None:
            self.show_rubber(self._select_from, pos)
        elif self.tool == "smart" and self.click_handler is not None:
            self.click_handler.move(pos)
        elif self._pose_dragging:
            ox, oy = self._pose_offset
            self.pose_handler.drag_keypoint(pos.x() - ox, pos.y() - oy)
        elif self._stroke is not None:
            self._continue_stroke(pos)
        event.accept()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        pos = self.mapToScene(event.position().toPoint())
        if self._pan_from is not None and event.button() in (
            Qt.MouseButton.MiddleButton,
            Qt.MouseButton.LeftButton,
        ):
            self._pan_from = None
            self._update_cursor_item(pos)
            event.accept()
            return
        if event.button() != Qt.MouseButton.LeftButton:
            super().mouseReleaseEvent(event)
            return
        if self._select_from is not None:
            self._finish_selection(pos)
        elif self.tool == "smart" and self.click_handler is not None:
            self.click_handler.release(pos, event.position())
        elif self._pose_dragging:
            self._pose_dragging = False
            ox, oy = self._pose_offset
            self.pose_handler.end_keypoint_drag(pos.x() - ox, pos.y() - oy)
        elif self._stroke is not None:
            self._continue_stroke(pos)
            self._end_stroke()
        event.accept()

    # -- pose keypoints on the canvas --------------------------------------------------------
    def _pose_press(self, pos: QPointF) -> bool:
        """On the active pose layer, a press near a keypoint starts dragging it (the
        ``pose_handler``, the Control panel, pushes one undo step on release)."""
        layer = self.model.doc.active_layer
        if layer.kind != "pose" or self.pose_handler is None or self.tool == "pan":
            return False
        ox, oy = self._pose_offset = layer.offset
        radius = 12 / max(self.zoom, 1e-6)  # 12 screen pixels
        self._pose_dragging = self.pose_handler.begin_keypoint_drag(
            pos.x() - ox, pos.y() - oy, radius
        )
        return self._pose_dragging

    # -- selection ---------------------------------------------------------------------------
    def _finish_selection(self, pos: QPointF) -> None:
        start, self._select_from = self._select_from, None
        self.rubber_item.setVisible(False)
        doc = self.model.doc
        r = QRectF(start, pos).normalized()
        if r.width() < 4 and r.height() < 4:
            self.model.set_selection(None)  # a click deselects
            return
        x, y, w, h = snap_rect((r.x(), r.y(), r.width(), r.height()), doc.width, doc.height)
        # An edge snapped to within a multiple of the image's edge goes to the edge, so no
        # strip of the image is left out of the region (the result is fitted to it).
        if doc.width - (x + w) < SNAP:
            w = doc.width - x
        if doc.height - (y + h) < SNAP:
            h = doc.height - y
        rect = (x, y, w, h)
        self.model.set_selection(None if rect == (0, 0, doc.width, doc.height) else rect)

    # -- painting ----------------------------------------------------------------------------
    def paint_target(self) -> Layer:
        return self.model.doc.active_layer

    def _begin_stroke(self, pos: QPointF) -> None:
        layer = self.paint_target()
        if layer.is_mask and not self.mask_shown:
            self.set_mask_shown(True)  # painting the mask: see it
        if layer.kind == "pose":  # drawn from its keypoints: pixels painted in would lie
            self.status.emit(
                "A pose layer is drawn from its skeleton: drag its keypoints (the dots) "
                "here on the canvas; Q paints on the mask."
            )
            return
        if not layer.visible:
            self.status.emit(f"“{layer.name}” is hidden: show it to paint on it.")
            return
        ox, oy = layer.offset
        p = (pos.x() - ox, pos.y() - oy)
        self._stroke = {
            "layer": layer,
            "before": layer.pixels.copy(),
            "last": p,
            "rect": None,
        }
        self._dab_to(p, first=True)

    def _continue_stroke(self, pos: QPointF) -> None:
        s = self._stroke
        if s is None:
            return
        ox, oy = s["layer"].offset
        self._dab_to((pos.x() - ox, pos.y() - oy))

    def _dab_to(self, p: tuple[float, float], first: bool = False) -> None:
        s = self._stroke
        layer: Layer = s["layer"]
        erase = self.tool == "eraser"
        color = self.brush_color.getRgb()[:3]
        r = self.brush_size / 2
        if first:
            changed = brush.stamp(layer.pixels, p[0], p[1], r, self.brush_hardness, erase, color)
        else:
            if p == s["last"]:
                return
            changed = brush.line(layer.pixels, s["last"], p, r, self.brush_hardness, erase, color)
        s["last"] = p
        if changed:
            s["rect"] = brush.union(s["rect"], changed)
            self.items_[layer.uid].refresh(changed)

    def _end_stroke(self) -> None:
        s, self._stroke = self._stroke, None
        if s is None or s["rect"] is None:
            return
        layer: Layer = s["layer"]
        x, y, w, h = s["rect"]
        before = s["before"][y : y + h, x : x + w].copy()
        after = layer.pixels[y : y + h, x : x + w].copy()
        what = "Eraser" if self.tool == "eraser" else "Brush"
        text = f"{what} on mask" if layer.is_mask else f"{what} on “{layer.name}”"
        self.model.push(PaintCommand(self.model, layer.uid, (x, y, w, h), before, after, text))

    # -- drag and drop -----------------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:  # noqa: N802
        md = event.mimeData()
        if md.hasUrls() or md.hasImage():
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:  # noqa: N802
        md = event.mimeData()
        if md.hasUrls() or md.hasImage():
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event) -> None:  # noqa: N802
        md = event.mimeData()
        paths = [u.toLocalFile() for u in md.urls() if u.isLocalFile()] if md.hasUrls() else []
        if paths:
            event.acceptProposedAction()
            self.files_dropped.emit(paths)
        elif md.hasImage():
            image = md.imageData()
            if isinstance(image, QImage) and not image.isNull():
                event.acceptProposedAction()
                self.image_dropped.emit(image)
        else:
            event.ignore()

    # -- empty-state hint ---------------------------------------------------------------------
    def hint_shown(self) -> bool:
        """The empty-canvas hint: an empty document with nothing on it (no preview, no
        staged result, no panel overlay)."""
        if not self.model.doc.is_empty:
            return False
        items = (self.job_preview_item, self.staged_item, self.preview_item)
        return all(item.image.isNull() for item in items)

    def drawForeground(self, painter: QPainter, rect: QRectF) -> None:  # noqa: N802
        super().drawForeground(painter, rect)
        self._announce_zoom()
        if not self.hint_shown():
            return
        painter.save()
        painter.setWorldMatrixEnabled(False)
        painter.setPen(QColor(170, 170, 180))
        font = painter.font()
        font.setPointSizeF(font.pointSizeF() * 1.25)
        painter.setFont(font)
        painter.drawText(
            self.viewport().rect(),
            Qt.AlignmentFlag.AlignCenter,
            "Drop images here, paste (Ctrl+V) or open one (Ctrl+O)\n"
            "— or write a prompt and press Generate.",
        )
        painter.restore()

    # -- background --------------------------------------------------------------------------
    def drawBackground(self, painter: QPainter, rect: QRectF) -> None:  # noqa: N802
        super().drawBackground(painter, rect)
        doc = self.model.doc
        if doc.is_empty:
            return
        area = QRectF(0, 0, doc.width, doc.height).intersected(rect)
        if area.isEmpty():
            return
        painter.save()
        painter.setWorldMatrixEnabled(False)
        dev = self.mapFromScene(area).boundingRect().intersected(self.viewport().rect())
        painter.setClipRect(dev)
        painter.setBrushOrigin(self.mapFromScene(QPointF(0, 0)))
        painter.fillRect(dev, QBrush(_checker()))
        painter.restore()
