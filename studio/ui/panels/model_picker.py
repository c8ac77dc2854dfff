"""A model picker that is a list, never a text field.

An editable combo box is a text field: when the focus lands in it (a click, or Qt moving
the focus there from a button disabled while its job runs) the tools' single keys (B, E, M)
are typed into the model's name instead of reaching the canvas. ``ModelPicker`` is a plain
(non-editable) combo box; a model set from elsewhere that is not listed (a remembered path,
one chosen with a file dialog, a test's tiny model) is added as an item, so it is shown and
kept. Models come from the catalog, the Models panel (downloads, imported files, added
folders) and the model folders, so nothing needs typing.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QWidget


class ModelPicker(QComboBox):
    """A non-editable combo box of model references (catalog ids, repo ids, paths): its
    ``currentText`` is the reference; setting one that is not listed adds it."""

    def __init__(self, items: list[str] | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setEditable(False)
        # Long paths must not widen the dock: the text is elided (each item's
        # tip is its full reference).
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(12)
        if items:
            self.set_items(items)

    def setCurrentText(self, text: str) -> None:  # noqa: N802 - Qt API
        """Show ``text``, adding it to the list if it is not listed yet ("": no choice)."""
        text = str(text or "").strip()
        if not text:
            self.setCurrentIndex(-1)
            return
        index = self.findText(text, Qt.MatchFlag.MatchExactly | Qt.MatchFlag.MatchCaseSensitive)
        if index < 0:
            self.addItem(text)
            index = self.count() - 1
            self.setItemData(index, text, Qt.ItemDataRole.ToolTipRole)
        self.setCurrentIndex(index)

    setEditText = setCurrentText  # the editable combo's name for it (older callers)

    def set_items(self, items: list[str]) -> None:
        """List ``items`` (in order, once each), keeping the current choice."""
        current = self.currentText()
        blocked = self.blockSignals(True)
        try:
            self.clear()
            seen: set[str] = set()
            for item in items:
                if item and item not in seen:
                    seen.add(item)
                    self.addItem(item)
                    self.setItemData(self.count() - 1, item, Qt.ItemDataRole.ToolTipRole)
            if current:
                self.setCurrentText(current)
        finally:
            self.blockSignals(blocked)
        if self.currentText() != current:
            self.currentTextChanged.emit(self.currentText())
