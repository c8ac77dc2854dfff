"""Inpaint results are staged like Generate's: shown in place, kept only when accepted
(Enter or Accept), dropped with X or Discard; with results of both panels staged, the keys
and the canvas follow the latest, and the other's come back when it is done."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from studio.core import masks
from studio.core.document import Document
from studio.core.imageio import load_image
from studio.ui.panels.staging import Staged


@pytest.fixture
def inpaint(window, photos, qtbot):
    window.activateWindow()
    p = window.panels["Inpaint"]
    window.show_panel("Inpaint")
    small = masks.resize(load_image(photos.chelsea), (150, 100))
    window.model.replace(Document.from_image(small, "Background"))
    m = np.zeros((100, 150), np.uint8)
    m[30:50, 60:80] = 255
    window.set_mask(m)
    p.erase_method.setCurrentIndex(p.erase_method.findData("telea"))
    return p


def _erase(qtbot, window, inpaint):
    n = len(window.model.doc.layers)
    QTest.mouseClick(inpaint.erase_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not inpaint.running, timeout=120000)
    assert len(window.model.doc.layers) == n  # nothing added yet: staged
    assert inpaint.staging.isVisible() and inpaint.staging.current is not None
    assert not window.canvas.staged_item.image.isNull()  # shown in place
    return n


def test_erase_is_staged_then_accepted_with_enter(qtbot, window, inpaint):
    n = _erase(qtbot, window, inpaint)
    steps = window.model.undo.count()
    window.canvas.setFocus()
    QTest.keyClick(window.canvas, Qt.Key.Key_Return)
    assert len(window.model.doc.layers) == n + 1
    assert window.model.doc.layers[-2].name.startswith("Erase (Telea")
    assert window.model.undo.count() == steps + 1
    assert window.canvas.staged_item.image.isNull() and not inpaint.staging.isVisible()


def test_erase_discarded_with_x_leaves_the_document_as_it_was(qtbot, window, inpaint):
    before = window.model.doc.composite()
    n = _erase(qtbot, window, inpaint)
    window.canvas.setFocus()
    QTest.keyClick(window.canvas, Qt.Key.Key_X)
    assert len(window.model.doc.layers) == n
    assert np.array_equal(window.model.doc.composite(), before)
    assert window.canvas.staged_item.image.isNull()


def test_the_latest_staging_panel_has_the_keys_and_the_canvas(qtbot, window, inpaint):
    generate = window.panels["Generate"]
    generated = np.full((100, 150, 4), 200, np.uint8)
    generate.staging.add([Staged(generated, "#1 generated", (0, 0), {})])
    n = _erase(qtbot, window, inpaint)  # staged after: in front
    assert inpaint.staging.in_front() and not generate.staging.in_front()
    window.canvas.setFocus()
    QTest.keyClick(window.canvas, Qt.Key.Key_Return)  # one key, one result: the erase
    assert len(window.model.doc.layers) == n + 1
    assert window.model.doc.layers[-2].name.startswith("Erase")
    assert generate.staging.in_front()  # the generated result comes back
    shown = window.canvas.staged_item
    assert (shown.rect.width(), shown.rect.height()) == (150, 100)
    QTest.keyClick(window.canvas, Qt.Key.Key_Return)
    assert window.model.doc.layers[-2].name == "#1 generated"
    assert shown.image.isNull()
