"""Every undo command of the app, in one place. Each is one step on the document's
``QUndoStack`` (``DocumentModel.push``); commands change the document only through the
model's ``apply_*``/``_``-prefixed primitives, which emit the signals the canvas, the layers
panel and the panels listen to.

- layers: ``AddLayerCommand``, ``RemoveLayerCommand``, ``MoveLayerCommand``,
  ``LayerPropsCommand`` (opacity drags merge), ``AddGrowingLayerCommand`` (canvas grows to fit)
- pixels: ``PaintCommand`` (only the stroke's rectangle), ``SetPixelsCommand``
- selection: ``SelectionCommand``; outpainting: ``ExtendCanvasCommand``
- pose: ``PoseEditCommand`` (before/after snapshots of a pose, shown through a callable)

The commands know the document model only as the ``EditedDocument`` protocol below (what
they call on it), and a pose edit only as the function that shows a pose, so this module
imports no other ``studio.ui`` module and ``document_model`` can build its commands here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import numpy as np
from PySide6.QtGui import QUndoCommand

from studio.core.document import Layer

if TYPE_CHECKING:
    from PySide6.QtCore import SignalInstance

    from studio.core.document import Document
    from studio.core.outpaint import Extension
    from studio.core.pose import Pose

Rect = tuple[int, int, int, int]


class EditedDocument(Protocol):
    """What the commands use of ``studio.ui.document_model.DocumentModel``: the document,
    its change signals and the primitives that change it and emit them."""

    doc: Document
    structure_changed: SignalInstance
    pixels_changed: SignalInstance
    selection_changed: SignalInstance
    document_replaced: SignalInstance

    def apply_resize(self, size: tuple[int, int]) -> None: ...

    def apply_pixels(self, uid: int, pixels: np.ndarray) -> np.ndarray: ...

    def _insert(self, layer: Layer, index: int) -> None: ...

    def _remove(self, uid: int) -> Layer: ...

    def _write(self, uid: int, x: int, y: int, patch: np.ndarray) -> None: ...


class AddLayerCommand(QUndoCommand):
    def __init__(self, model: EditedDocument, layer: Layer, index: int | None = None) -> None:
        super().__init__(f"Add layer “{layer.name}”")
        self.model, self.layer = model, layer
        doc = model.doc
        if index is None:  # below the mask layer when the mask is on top
            index = len(doc.layers)
            if doc.layers and doc.layers[-1].is_mask:
                index -= 1
        self.index = index
        # The first layer of an empty document gives it its size.
        self.resize = layer.size if doc.is_empty else None
        self.prev_active = doc.active_uid

    def redo(self) -> None:
        if self.resize:
            self.model.apply_resize(self.resize)
        self.model._insert(self.layer, self.index)

    def undo(self) -> None:
        self.model._remove(self.layer.uid)
        if self.resize:
            self.model.apply_resize((0, 0))


class RemoveLayerCommand(QUndoCommand):
    def __init__(self, model: EditedDocument, uid: int) -> None:
        layer = model.doc.layer(uid)
        super().__init__(f"Delete layer “{layer.name}”")
        self.model, self.uid, self.layer = model, uid, layer
        self.index = model.doc.index_of(uid)

    def redo(self) -> None:
        self.model._remove(self.uid)

    def undo(self) -> None:
        self.model._insert(self.layer, self.index)


class MoveLayerCommand(QUndoCommand):
    def __init__(self, model: EditedDocument, uid: int, index: int) -> None:
        super().__init__("Move layer")
        self.model, self.uid, self.new = model, uid, index
        self.old = model.doc.index_of(uid)

    def _move(self, to: int) -> None:
        layers = self.model.doc.layers
        layer = layers.pop(self.model.doc.index_of(self.uid))
        layers.insert(to, layer)
        self.model.structure_changed.emit()

    def redo(self) -> None:
        self._move(self.new)

    def undo(self) -> None:
        self._move(self.old)


class LayerPropsCommand(QUndoCommand):
    MERGE_ID = 0x5701

    def __init__(self, model: EditedDocument, uid: int, props: dict, text: str) -> None:
        super().__init__(text)
        self.model, self.uid, self.new = model, uid, dict(props)
        layer = model.doc.layer(uid)
        self.old = {k: getattr(layer, k) for k in props}

    def _apply(self, values: dict) -> None:
        layer = self.model.doc.layer(self.uid)
        for k, v in values.items():
            setattr(layer, k, v)
        self.model.structure_changed.emit()

    def redo(self) -> None:
        self._apply(self.new)

    def undo(self) -> None:
        self._apply(self.old)

    def id(self) -> int:
        # Consecutive opacity drags on one layer merge into one undo step.
        return self.MERGE_ID if set(self.new) == {"opacity"} else -1

    def mergeWith(self, other: QUndoCommand) -> bool:  # noqa: N802 - Qt API
        if not isinstance(other, LayerPropsCommand) or other.uid != self.uid:
            return False
        if set(other.new) != set(self.new):
            return False
        self.new = dict(other.new)
        return True


class PaintCommand(QUndoCommand):
    """A brush stroke already applied to the pixels: keeps only the changed rectangle's
    before/after patches."""

    def __init__(
        self,
        model: EditedDocument,
        uid: int,
        rect: Rect,
        before: np.ndarray,
        after: np.ndarray,
        text: str = "Brush stroke",
    ) -> None:
        super().__init__(text)
        self.model, self.uid, self.rect = model, uid, rect
        self.before, self.after = before, after
        self._applied = True

    def redo(self) -> None:
        if self._applied:  # the stroke is on the pixels already: just tell the views
            self._applied = False
            self.model.pixels_changed.emit(self.uid, self.rect)
            return
        self.model._write(self.uid, self.rect[0], self.rect[1], self.after)

    def undo(self) -> None:
        self.model._write(self.uid, self.rect[0], self.rect[1], self.before)


class SetPixelsCommand(QUndoCommand):
    def __init__(self, model: EditedDocument, uid: int, pixels: np.ndarray, text: str) -> None:
        super().__init__(text)
        self.model, self.uid, self.pixels = model, uid, np.ascontiguousarray(pixels)

    def redo(self) -> None:
        self.pixels = self.model.apply_pixels(self.uid, self.pixels)

    undo = redo


class SelectionCommand(QUndoCommand):
    def __init__(self, model: EditedDocument, rect: Rect | None) -> None:
        super().__init__("Select" if rect else "Deselect")
        self.model, self.new, self.old = model, rect, model.doc.selection

    def _apply(self, rect: Rect | None) -> None:
        self.model.doc.selection = rect
        self.model.selection_changed.emit()

    def redo(self) -> None:
        self._apply(self.new)

    def undo(self) -> None:
        self._apply(self.old)


class AddGrowingLayerCommand(QUndoCommand):
    """One undo step: enlarge the canvas to ``size``, then run ``add`` (an AddLayerCommand).
    Undo removes the layer, then restores the canvas size."""

    def __init__(
        self, model: EditedDocument, size: tuple[int, int], add: QUndoCommand, text: str
    ) -> None:
        super().__init__(text)
        self.model = model
        self.add = add  # kept here: a Python-side reference keeps the command alive
        self.new = size
        self.old = (model.doc.width, model.doc.height)

    def redo(self) -> None:
        self.model.apply_resize(self.new)
        self.add.redo()

    def undo(self) -> None:
        self.add.undo()
        self.model.apply_resize(self.old)


class ExtendCanvasCommand(QUndoCommand):
    """Outpaint result as one undo step: grow the document by ``ext`` (every layer and the
    mask move by (left, top)), then add the outpainted image as a new top layer."""

    def __init__(
        self, model: EditedDocument, ext: Extension, image: np.ndarray, name: str, metadata: dict
    ) -> None:
        super().__init__("Outpaint")
        from studio.core.document import Layer, to_rgba

        self.model, self.ext = model, ext
        doc = model.doc
        self.old_size = (doc.width, doc.height)
        self.old_mask = doc.mask_layer.pixels
        self.old_selection = doc.selection
        self.layer = Layer(name, "image", to_rgba(image), metadata=dict(metadata))

    def redo(self) -> None:
        doc, e = self.model.doc, self.ext
        w, h = self.old_size
        for layer in doc.layers:
            if not layer.is_mask:
                layer.offset = (layer.offset[0] + e.left, layer.offset[1] + e.top)
        W, H = e.new_size((w, h))
        mask = np.zeros((H, W), np.uint8)
        mask[e.top : e.top + h, e.left : e.left + w] = self.old_mask
        doc.mask_layer.pixels = mask
        doc.width, doc.height = W, H
        doc.selection = None
        index = len(doc.layers) - (1 if doc.layers[-1].is_mask else 0)
        doc.layers.insert(index, self.layer)
        self._changed()

    def undo(self) -> None:
        doc, e = self.model.doc, self.ext
        doc.layers.remove(self.layer)
        if doc.active_uid == self.layer.uid:
            doc.active_uid = doc.mask_layer.uid
        for layer in doc.layers:
            if not layer.is_mask:
                layer.offset = (layer.offset[0] - e.left, layer.offset[1] - e.top)
        doc.mask_layer.pixels = self.old_mask
        doc.width, doc.height = self.old_size
        doc.selection = self.old_selection
        self._changed()

    def _changed(self) -> None:
        m = self.model
        m.document_replaced.emit()
        m.structure_changed.emit()
        m.selection_changed.emit()
        m.pixels_changed.emit(m.doc.mask_layer.uid, None)


class PoseEditCommand(QUndoCommand):
    """One pose edit as before/after snapshots (poses are a few hundred numbers); ``show``
    puts a pose in the editor (``PoseEditor.set_pose``), on redo the after, on undo the
    before."""

    def __init__(self, show: Callable[[Pose], None], before: Pose, after: Pose, text: str) -> None:
        super().__init__(text)
        self.show = show
        self.before = before.copy()
        self.after = after.copy()

    def redo(self) -> None:
        self.show(self.after)

    def undo(self) -> None:
        self.show(self.before)
