"""Staged results, as InvokeAI stages them: a finished job's images are shown in place on
the canvas, one at a time, with Accept / Discard / Previous / Next (buttons, and the keys
Enter, X, Left and Right while the canvas or the panel has focus); only an accepted image
becomes a layer (one undo step). Nothing staged is in the document, so discarding needs no
undo.

Several panels stage (Generate, Inpaint) on the one canvas: the panel that staged last is in
front (its result is the one shown, and the keys are its own; two sets of live keys would
fire neither), and when its results are all accepted or discarded the other's come back.
"""

from __future__ import annotations

import itertools
import weakref
from dataclasses import dataclass, field

import numpy as np
from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QToolButton, QWidget
from shiboken6 import isValid

from studio.ui.qimage import qimage_from_array


@dataclass
class Staged:
    image: np.ndarray  # at the size it will have as a layer
    name: str
    offset: tuple[int, int]
    metadata: dict = field(default_factory=dict)

    @property
    def region(self) -> tuple[int, int, int, int]:
        return (*self.offset, self.image.shape[1], self.image.shape[0])


_bars: weakref.WeakSet[StagingBar] = weakref.WeakSet()
_stamps = itertools.count(1)


class StagingBar(QWidget):
    """The staging area of one panel: ``add`` results, the user accepts or discards them.
    ``host``: the panel's Host (show_staged / clear_staged / add_layer)."""

    changed = Signal()

    def __init__(self, host, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.host = host
        self.items: list[Staged] = []
        self.index = 0
        self.doc = None  # the document the staged results belong to
        self.stamp = 0  # when this bar last staged (the latest one is in front)
        _bars.add(self)
        self.label = QLabel()
        self.label.setObjectName("hint")
        self.prev_button = QToolButton()
        self.prev_button.setText("◀")
        self.prev_button.setToolTip("Previous result (Left)")
        self.next_button = QToolButton()
        self.next_button.setText("▶")
        self.next_button.setToolTip("Next result (Right)")
        self.accept_button = QPushButton("Accept")
        self.accept_button.setObjectName("primary")
        self.accept_button.setToolTip("Keep this result as a layer (Enter)")
        self.discard_button = QPushButton("Discard")
        self.discard_button.setToolTip("Drop this result (X)")
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.label, 1)
        for w in (self.prev_button, self.next_button, self.accept_button, self.discard_button):
            row.addWidget(w)
        self.prev_button.clicked.connect(self.previous)
        self.next_button.clicked.connect(self.next)
        self.accept_button.clicked.connect(self.accept)
        self.discard_button.clicked.connect(self.discard)
        window = parent.window() if parent is not None else self
        self.shortcuts = []
        for keys, slot in (
            (("Return", "Enter"), self.accept),
            (("X",), self.discard),
            (("Left",), self.previous),
            (("Right",), self.next),
        ):
            for key in keys:
                sc = QShortcut(QKeySequence(key), window)
                sc.setContext(Qt.ShortcutContext.WindowShortcut)
                sc.setEnabled(False)
                sc.activated.connect(slot)
                self.shortcuts.append(sc)
        self._update()

    @property
    def current(self) -> Staged | None:
        return self.items[self.index] if self.items else None

    def add(self, items: list[Staged]) -> None:
        """Stage more results; the first new one is shown."""
        if not items:
            return
        first = len(self.items)
        self.doc = self.host.model.doc
        self.items += items
        self.index = first
        self.stamp = next(_stamps)
        self._update()

    @Slot()
    def accept(self) -> None:
        item = self.current
        if item is None:
            return
        self._drop()  # first: adding the layer may resize an empty document
        self.host.add_layer(item.image, item.name, "image", item.offset, item.metadata)
        self.doc = self.host.model.doc

    @Slot()
    def discard(self) -> None:
        if self.current is not None:
            self._drop()

    @Slot()
    def previous(self) -> None:
        if self.items:
            self.index = (self.index - 1) % len(self.items)
            self._update()

    @Slot()
    def next(self) -> None:
        if self.items:
            self.index = (self.index + 1) % len(self.items)
            self._update()

    @Slot()
    def on_document_replaced(self) -> None:
        """Another document was opened: its staged results go (a resize keeps them)."""
        if self.host.model.doc is not self.doc:
            self.clear()

    def clear(self) -> None:
        self.items.clear()
        self.index = 0
        self._update()

    def _drop(self) -> None:
        del self.items[self.index]
        self.index = min(self.index, max(0, len(self.items) - 1))
        self._update()

    def in_front(self) -> bool:
        """Whether this bar's results are the ones on the canvas (it staged last)."""
        return self.current is not None and self is _front(self.host)

    def _update(self) -> None:
        item = self.current
        self.setVisible(item is not None)
        if item is not None:
            self.label.setText(f"Result {self.index + 1} of {len(self.items)}")
        many = len(self.items) > 1
        self.prev_button.setEnabled(many)
        self.next_button.setEnabled(many)
        front = _front(self.host)
        for bar in _siblings(self.host):
            for sc in bar.shortcuts:
                sc.setEnabled(bar is front)
        if front is None:
            self.host.clear_staged()
        else:
            shown = front.current
            self.host.show_staged(qimage_from_array(shown.image), shown.region)
        self.changed.emit()


def _siblings(host) -> list[StagingBar]:
    """The staging bars on ``host``'s canvas."""
    return [bar for bar in list(_bars) if bar.host is host and isValid(bar)]


def _front(host) -> StagingBar | None:
    """The bar with results that staged last, or None."""
    staged = [bar for bar in _siblings(host) if bar.current is not None]
    return max(staged, key=lambda bar: bar.stamp, default=None)
