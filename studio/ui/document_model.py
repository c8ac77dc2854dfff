"""The Qt side of the Document: a QObject that owns a ``studio.core.document.Document`` and
its QUndoStack, and notifies views through signals. Every change to the document goes
through an undo command of ``studio.ui.commands`` (``push``), so everything is undoable.

Commands mutate through the model's ``apply_*`` and ``_``-prefixed primitives, which emit the
signals the canvas and the layers panel listen to.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoCommand, QUndoStack

from studio.core.document import Document, HistoryEntry, Layer, to_rgba
from studio.ui.commands import (
    AddLayerCommand,
    LayerPropsCommand,
    MoveLayerCommand,
    PaintCommand,
    RemoveLayerCommand,
    SelectionCommand,
    SetPixelsCommand,
)

__all__ = ["DocumentModel", "PaintCommand", "SetPixelsCommand", "AddLayerCommand"]

Rect = tuple[int, int, int, int]


class DocumentModel(QObject):
    structure_changed = Signal()  # layers added/removed/reordered or their properties changed
    pixels_changed = Signal(int, object)  # layer uid, rect (x, y, w, h) in layer coords | None
    selection_changed = Signal()
    active_changed = Signal()
    document_replaced = Signal()  # a new/opened document (size may differ)
    history_changed = Signal()

    def __init__(self, parent: QObject | None = None, undo_limit: int = 200) -> None:
        super().__init__(parent)
        self.doc = Document()
        self.path: str | None = None
        self.undo = QUndoStack(self)
        self.undo.setUndoLimit(max(100, undo_limit))

    # -- whole document ----------------------------------------------------------------------
    def replace(self, doc: Document, path: str | None = None) -> None:
        """Load a different document (not undoable: callers prompt for unsaved changes)."""
        self.undo.clear()
        self.doc = doc
        self.path = path
        self.undo.setClean()
        self.document_replaced.emit()
        self.structure_changed.emit()
        self.selection_changed.emit()
        self.active_changed.emit()
        self.history_changed.emit()

    @property
    def dirty(self) -> bool:
        return not self.undo.isClean()

    def push(self, command: QUndoCommand) -> None:
        self.undo.push(command)

    # -- public, undoable operations ---------------------------------------------------------
    def add_layer(
        self,
        image: np.ndarray,
        name: str,
        kind: str = "image",
        offset: tuple[int, int] = (0, 0),
        metadata: dict | None = None,
        index: int | None = None,
    ) -> Layer:
        layer = Layer(name, kind, to_rgba(image), offset=tuple(offset), metadata=metadata or {})
        self.push(AddLayerCommand(self, layer, index))
        return layer

    def remove_layer(self, uid: int) -> None:
        if self.doc.layer(uid).is_mask:
            self.set_mask(np.zeros_like(self.doc.mask_layer.pixels), "Clear mask")
            return
        self.push(RemoveLayerCommand(self, uid))

    def move_layer(self, uid: int, index: int) -> None:
        index = max(0, min(len(self.doc.layers) - 1, index))
        if index != self.doc.index_of(uid):
            self.push(MoveLayerCommand(self, uid, index))

    def set_layer_props(self, uid: int, text: str = "Layer properties", **props) -> None:
        layer = self.doc.layer(uid)
        if all(getattr(layer, k) == v for k, v in props.items()):
            return
        self.push(LayerPropsCommand(self, uid, props, text))

    def set_pixels(self, uid: int, pixels: np.ndarray, text: str = "Edit layer") -> None:
        self.push(SetPixelsCommand(self, uid, pixels, text))

    def set_mask(self, mask: np.ndarray, text: str = "Edit mask") -> None:
        mask = np.ascontiguousarray(mask, dtype=np.uint8)
        if mask.shape != self.doc.mask_layer.pixels.shape:
            raise ValueError(
                f"mask is {mask.shape[::-1]}, document is {(self.doc.width, self.doc.height)}"
            )
        self.set_pixels(self.doc.mask_layer.uid, mask, text)

    def set_selection(self, rect: Rect | None) -> None:
        if rect == self.doc.selection:
            return
        self.push(SelectionCommand(self, rect))

    def set_active(self, uid: int) -> None:
        """Choose the layer the tools paint on (not an edit: no undo step)."""
        if uid != self.doc.active_uid:
            self.doc.active_uid = uid
            self.active_changed.emit()

    def add_history(self, image: np.ndarray, parameters: dict) -> HistoryEntry:
        entry = HistoryEntry(to_rgba(image), dict(parameters))
        self.doc.history.append(entry)
        self.history_changed.emit()
        return entry

    # -- primitives used by commands ---------------------------------------------------------
    def _insert(self, layer: Layer, index: int) -> None:
        self.doc.layers.insert(index, layer)
        self.structure_changed.emit()

    def _remove(self, uid: int) -> Layer:
        layer = self.doc.layers.pop(self.doc.index_of(uid))
        if self.doc.active_uid == uid:
            self.doc.active_uid = self.doc.mask_layer.uid
            self.active_changed.emit()
        self.structure_changed.emit()
        return layer

    # apply_*: the primitives undo commands (the document's and the panels') are made of.
    # They change the document and emit the signals, but push no undo step themselves.
    def apply_resize(self, size: tuple[int, int]) -> None:
        self.doc.resize_canvas(*size)
        if self.doc.selection and (size[0] == 0 or size[1] == 0):
            self.doc.selection = None
        self.document_replaced.emit()
        self.structure_changed.emit()

    def _write(self, uid: int, x: int, y: int, patch: np.ndarray) -> None:
        pixels = self.doc.layer(uid).pixels
        h, w = patch.shape[:2]
        pixels[y : y + h, x : x + w] = patch
        self.pixels_changed.emit(uid, (x, y, w, h))

    def apply_pixels(self, uid: int, pixels: np.ndarray) -> np.ndarray:
        layer = self.doc.layer(uid)
        old, layer.pixels = layer.pixels, pixels
        self.pixels_changed.emit(uid, None)
        if old.shape != pixels.shape:
            self.structure_changed.emit()
        return old
