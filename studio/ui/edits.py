"""Edits of the selection, the mask and the layers that the Edit and Layer menus (and their
shortcuts) trigger. Each is one undo step on the ``DocumentModel``; none asks anything.

``Edits`` is used by the actions room (``actions.Actions``); it holds the one piece of state
these edits need: which layer Q goes back to after painting on the mask.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Slot

if TYPE_CHECKING:
    from studio.ui.document_model import DocumentModel
    from studio.ui.layers_panel import LayersPanel


class Edits(QObject):
    """Selection, mask and layer edits on ``model``; layer moves go through ``layers``."""

    def __init__(self, model: DocumentModel, layers: LayersPanel, parent: QObject | None = None):
        super().__init__(parent)
        self._model = model
        self._layers = layers
        self._last_layer_target: int | None = None  # the layer Q returns to from the mask

    @Slot()
    def select_all(self) -> None:
        if not self._model.doc.is_empty:
            self._model.set_selection(None)

    @Slot()
    def deselect(self) -> None:
        self._model.set_selection(None)

    @Slot()
    def clear_mask(self) -> None:
        """Clear the mask inside the selection (or all of it)."""
        doc = self._model.doc
        if doc.is_empty or doc.mask() is None:
            return
        m = doc.mask_layer.pixels.copy()
        if doc.selection:
            x, y, w, h = doc.selection
            m[y : y + h, x : x + w] = 0
        else:
            m[:] = 0
        self._model.set_mask(m, "Clear mask")

    @Slot()
    def invert_mask(self) -> None:
        doc = self._model.doc
        if not doc.is_empty:
            self._model.set_mask(255 - doc.mask_layer.pixels, "Invert mask")

    @Slot()
    def toggle_mask_target(self) -> None:
        """Q: paint on the mask, or back on the image/control layer used before."""
        model = self._model
        doc = model.doc
        if doc.is_empty:
            return
        if doc.active_layer.is_mask:
            uid = self._last_layer_target
            if uid is None or not any(la.uid == uid for la in doc.layers):
                uid = next((la.uid for la in reversed(doc.layers) if not la.is_mask), None)
            if uid is not None:
                model.set_active(uid)
        else:
            self._last_layer_target = doc.active_uid
            model.set_active(doc.mask_layer.uid)

    @Slot()
    def duplicate_layer(self) -> None:
        """A copy of the active layer just above it, which becomes the active layer."""
        model = self._model
        doc = model.doc
        layer = doc.active_layer
        if doc.is_empty or layer.is_mask:
            return
        copy = model.add_layer(
            layer.pixels.copy(),
            f"{layer.name} copy",
            layer.kind,
            layer.offset,
            dict(layer.metadata),
            index=doc.index_of(layer.uid) + 1,
        )
        model.set_active(copy.uid)

    @Slot()
    def new_control_layer(self) -> None:
        self._layers.new_control()

    @Slot()
    def delete_layer(self) -> None:
        self._layers.delete()

    @Slot()
    def layer_up(self) -> None:
        self._layers.move_up()

    @Slot()
    def layer_down(self) -> None:
        self._layers.move_down()
