"""A model picker that is a list, never a text field.

An editable combo box is a text field: when the focus lands in it (a click, or Qt moving
the focus there from a button disabled while its job runs) the tools' single keys (B, E, M)
are typed into the model's name instead of reaching the canvas. ``ModelPicker`` is a plain
(non-editable) combo box; a model set from elsewhere that is not listed (a remembered path,
one chosen with a file dialog, a test's tiny model) is added as an item, so it is shown and
kept. Models come from the catalog, the Models panel (downloads, imported files, added
folders) and the model folders, so nothing needs typing.

A row shows a label (a model's name: a folder's name, never its full path) and stands for a
reference (catalog id, repo id or path): :class:`PickerRow`. ``currentText()`` is the chosen
row's reference, ``setCurrentText(ref)`` chooses by reference (or label); ``ref_changed``
tells the reference whenever the choice changes.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QWidget

ROLE_ROW = Qt.ItemDataRole.UserRole


@dataclass(frozen=True)
class PickerRow:
    """One row: ``ref`` goes into the request; ``label`` is what the list shows ("": the
    reference itself); ``installed`` False marks a catalog model that downloads first
    (``size`` bytes)."""

    ref: str
    label: str = ""
    tip: str = ""
    installed: bool = True
    size: int = 0

    @property
    def text(self) -> str:
        return self.label or self.ref


def as_row(item: str | tuple[str, str] | PickerRow) -> PickerRow:
    """A reference, a (label, reference) pair or a row, as a row."""
    if isinstance(item, PickerRow):
        return item
    if isinstance(item, tuple):
        label, ref = item
        return PickerRow(str(ref), str(label))
    return PickerRow(str(item))


class ModelPicker(QComboBox):
    """A non-editable combo box of models (see the module doc): its ``currentText`` is the
    chosen reference; setting one that is not listed adds it."""

    ref_changed = Signal(str)  # the chosen reference ("" for none)

    def __init__(self, items: list | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setEditable(False)
        # Long names must not widen the dock: the text is elided (each item's
        # tip is its full reference).
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(12)
        self.currentIndexChanged.connect(lambda _i: self.ref_changed.emit(self.currentText()))
        if items:
            self.set_items(items)

    # -- rows ------------------------------------------------------------------------------
    def row_at(self, index: int) -> PickerRow | None:
        row = self.itemData(index, ROLE_ROW) if 0 <= index < self.count() else None
        return row if isinstance(row, PickerRow) else None

    def ref_at(self, index: int) -> str:
        row = self.row_at(index)
        return row.ref if row is not None else ""

    def current_row(self) -> PickerRow | None:
        return self.row_at(self.currentIndex())

    def rows(self) -> list[PickerRow]:
        return [r for r in (self.row_at(i) for i in range(self.count())) if r is not None]

    def find_ref(self, ref: str) -> int:
        for i in range(self.count()):
            if self.ref_at(i) == ref:
                return i
        return -1

    def _add_row(self, row: PickerRow) -> None:
        self.addItem(row.text)
        i = self.count() - 1
        self.setItemData(i, row, ROLE_ROW)
        self.setItemData(i, row.tip or row.ref, Qt.ItemDataRole.ToolTipRole)

    # -- the reference ---------------------------------------------------------------------
    def currentText(self) -> str:  # noqa: N802 - Qt API
        """The chosen row's reference ("" when none is chosen)."""
        return self.ref_at(self.currentIndex())

    def setCurrentText(self, text: str) -> None:  # noqa: N802 - Qt API
        """Choose the row of reference ``text`` (or, failing that, of that label), adding a
        row for it if none is listed yet ("": no choice)."""
        text = str(text or "").strip()
        if not text:
            self.setCurrentIndex(-1)
            return
        index = self.find_ref(text)
        if index < 0:
            index = self.findText(text, Qt.MatchFlag.MatchExactly | Qt.MatchFlag.MatchCaseSensitive)
        if index < 0:
            self._add_row(PickerRow(text))
            index = self.count() - 1
        self.setCurrentIndex(index)

    setEditText = setCurrentText  # the editable combo's name for it (older callers)

    def set_items(self, items: list) -> None:
        """List ``items`` (references, (label, reference) pairs or rows; in order, each
        reference once), keeping the current choice."""
        current = self.currentText()
        blocked = self.blockSignals(True)
        try:
            self.clear()
            seen: set[str] = set()
            for item in items:
                row = as_row(item)
                if row.ref and row.ref not in seen:
                    seen.add(row.ref)
                    self._add_row(row)
            if current:
                self.setCurrentText(current)
        finally:
            self.blockSignals(blocked)
        if self.currentText() != current:
            self.currentTextChanged.emit(self.currentText())
            self.ref_changed.emit(self.currentText())
