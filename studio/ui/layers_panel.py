"""The layers panel: the document's layers top to bottom, with visibility (checkbox), rename
(double-click), opacity, order and delete. Selecting a layer makes it the paint target."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Slot
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QSlider,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from studio.core.document import Layer
from studio.ui.document_model import DocumentModel
from studio.ui.mask_view import mask_overlay
from studio.ui.qimage import qimage_from_array

KIND_LABEL = {"image": "Image", "control": "Control", "pose": "Pose", "mask": "Mask"}
THUMB = 40


def _thumbnail(layer: Layer) -> QIcon:
    w, h = layer.size
    if not w or not h:
        return QIcon()
    step = max(1, max(w, h) // (THUMB * 2))
    small = layer.pixels[::step, ::step]
    if layer.is_mask:
        rgba = mask_overlay(small)
        rgba[..., 3] = rgba[..., 3] // 2 + 60  # readable even when the mask is empty
        small = rgba
    image = qimage_from_array(small).scaled(
        THUMB,
        THUMB,
        Qt.AspectRatioMode.KeepAspectRatio,
        Qt.TransformationMode.SmoothTransformation,
    )
    return QIcon(QPixmap.fromImage(image))


class LayersPanel(QWidget):
    def __init__(self, model: DocumentModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self._syncing = False
        self.list = QListWidget()
        self.list.setObjectName("layersList")
        self.list.setIconSize(QSize(THUMB, THUMB))
        self.list.setEditTriggers(
            QAbstractItemView.EditTrigger.DoubleClicked
            | QAbstractItemView.EditTrigger.EditKeyPressed
        )
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.list.itemChanged.connect(self._on_item_changed)
        self.list.currentItemChanged.connect(self._on_current_changed)

        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setToolTip("Layer opacity")
        self.opacity.valueChanged.connect(self._on_opacity)
        self.opacity_label = QLabel("100%")
        self.opacity_label.setMinimumWidth(36)

        def button(text: str, tip: str, slot) -> QToolButton:
            b = QToolButton()
            b.setText(text)
            b.setToolTip(tip)
            b.clicked.connect(slot)
            return b

        self.up_button = button("▲", "Move layer up", self.move_up)
        self.down_button = button("▼", "Move layer down", self.move_down)
        self.delete_button = button("✕", "Delete layer (the mask layer is cleared)", self.delete)
        self.control_button = button("+ Control", "New empty control layer", self.new_control)

        row = QHBoxLayout()
        row.addWidget(QLabel("Opacity"))
        row.addWidget(self.opacity, 1)
        row.addWidget(self.opacity_label)
        buttons = QHBoxLayout()
        for b in (self.up_button, self.down_button, self.delete_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        buttons.addWidget(self.control_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.list, 1)
        layout.addLayout(row)
        layout.addLayout(buttons)

        model.structure_changed.connect(self.refresh)
        model.active_changed.connect(self.refresh)
        model.pixels_changed.connect(self._on_pixels)
        self.refresh()

    # -- model -> view -----------------------------------------------------------------------
    @Slot()
    def refresh(self) -> None:
        self._syncing = True
        try:
            doc = self.model.doc
            layers = list(reversed(doc.layers))
            same = self.list.count() == len(layers) and all(
                self.list.item(i).data(Qt.ItemDataRole.UserRole) == la.uid
                for i, la in enumerate(layers)
            )
            if not same:  # rebuild; otherwise update the rows in place (safe inside their
                # own itemChanged signal, e.g. a visibility click or a rename)
                self.list.clear()
                for layer in layers:
                    item = QListWidgetItem(_thumbnail(layer), layer.name)
                    item.setData(Qt.ItemDataRole.UserRole, layer.uid)
                    item.setFlags(
                        Qt.ItemFlag.ItemIsEnabled
                        | Qt.ItemFlag.ItemIsSelectable
                        | Qt.ItemFlag.ItemIsUserCheckable
                        | Qt.ItemFlag.ItemIsEditable
                    )
                    self.list.addItem(item)
            for i, layer in enumerate(layers):
                item = self.list.item(i)
                if item.text() != layer.name:
                    item.setText(layer.name)
                if same:
                    item.setIcon(_thumbnail(layer))
                item.setCheckState(
                    Qt.CheckState.Checked if layer.visible else Qt.CheckState.Unchecked
                )
                item.setToolTip(
                    f"{KIND_LABEL.get(layer.kind, layer.kind)} layer, {layer.size[0]}x"
                    f"{layer.size[1]}, opacity {round(layer.opacity * 100)}%"
                    + ("\nThe brush paints the inpainting mask here." if layer.is_mask else "")
                )
                if layer.uid == doc.active_uid and self.list.currentItem() is not item:
                    self.list.setCurrentItem(item)
            active = doc.active_layer
            self.opacity.setValue(round(active.opacity * 100))
            self.opacity_label.setText(f"{round(active.opacity * 100)}%")
            self.opacity.setEnabled(not doc.is_empty)
        finally:
            self._syncing = False

    def _item_for(self, uid: int) -> QListWidgetItem | None:
        for i in range(self.list.count()):
            item = self.list.item(i)
            if item.data(Qt.ItemDataRole.UserRole) == uid:
                return item
        return None

    @Slot(int, object)
    def _on_pixels(self, uid: int, rect: object) -> None:
        item = self._item_for(uid)
        if item is not None:
            self._syncing = True
            item.setIcon(_thumbnail(self.model.doc.layer(uid)))
            self._syncing = False

    # -- view -> model -----------------------------------------------------------------------
    def current_uid(self) -> int | None:
        item = self.list.currentItem()
        return item.data(Qt.ItemDataRole.UserRole) if item else None

    @Slot(QListWidgetItem)
    def _on_item_changed(self, item: QListWidgetItem) -> None:
        if self._syncing:
            return
        uid = item.data(Qt.ItemDataRole.UserRole)
        layer = self.model.doc.layer(uid)
        visible = item.checkState() == Qt.CheckState.Checked
        name = item.text().strip() or layer.name
        if visible != layer.visible:
            self.model.set_layer_props(
                uid, "Show layer" if visible else "Hide layer", visible=visible
            )
        elif name != layer.name:
            self.model.set_layer_props(uid, "Rename layer", name=name)

    @Slot(QListWidgetItem, QListWidgetItem)
    def _on_current_changed(self, current, previous) -> None:
        if self._syncing or current is None:
            return
        self.model.set_active(current.data(Qt.ItemDataRole.UserRole))

    @Slot(int)
    def _on_opacity(self, value: int) -> None:
        self.opacity_label.setText(f"{value}%")
        if self._syncing or self.model.doc.is_empty:
            return
        self.model.set_layer_props(self.model.doc.active_uid, "Opacity", opacity=value / 100)

    @Slot()
    def move_up(self) -> None:
        uid = self.model.doc.active_uid
        self.model.move_layer(uid, self.model.doc.index_of(uid) + 1)

    @Slot()
    def move_down(self) -> None:
        uid = self.model.doc.active_uid
        self.model.move_layer(uid, self.model.doc.index_of(uid) - 1)

    @Slot()
    def delete(self) -> None:
        if not self.model.doc.is_empty:
            self.model.remove_layer(self.model.doc.active_uid)

    @Slot()
    def new_control(self) -> None:
        doc = self.model.doc
        if doc.is_empty:
            return
        import numpy as np

        black = np.zeros((doc.height, doc.width, 4), np.uint8)
        black[..., 3] = 255
        layer = self.model.add_layer(black, "Control", kind="control")
        self.model.set_active(layer.uid)
