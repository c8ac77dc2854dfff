"""The Inpaint panel in the real main window: paint a mask with the canvas brush, mask tools,
Erase object through the real worker thread (result = one undoable layer), Fill from prompt
with a tiny SD inpainting model (previews inside the crop), outpaint (document grows, one
undo step) and cancel."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt
from PySide6.QtTest import QTest

from studio.core import masks
from studio.core.document import Document
from studio.core.imageio import load_image
from studio.ui.panels.inpaint import InpaintPanel


def stroke(view, points) -> None:
    vp = view.viewport()
    pts = [view.mapFromScene(QPointF(x, y)) for x, y in points]
    QTest.mousePress(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pts[0])
    for p in pts[1:]:
        QTest.mouseMove(vp, p)
    QTest.mouseRelease(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pts[-1])


@pytest.fixture
def panel(window, photos) -> InpaintPanel:
    p = window.panels.get("Inpaint")
    assert isinstance(p, InpaintPanel), window.panel_errors.get("Inpaint")
    small = masks.resize(load_image(photos.chelsea), (150, 100))
    window.model.replace(Document.from_image(small, "Background"))
    window.model.undo.clear()
    window.canvas.actual_size()
    window.canvas.centerOn(75, 50)
    return p


def _wait(qtbot, panel, timeout=120000):
    qtbot.waitUntil(lambda: not panel.running, timeout=timeout)


def _rect_mask(window, x, y, w, h):
    m = np.zeros((window.model.doc.height, window.model.doc.width), np.uint8)
    m[y : y + h, x : x + w] = 255
    window.set_mask(m)
    return m


def test_paint_mask_erase_and_undo(qtbot, window, panel):
    before = window.model.doc.composite()
    window.canvas.set_brush(size=12, hardness=1.0)
    stroke(window.canvas, [(60, 50), (75, 50), (90, 50)])
    mask = window.mask()
    assert mask is not None and mask[50, 75] == 255
    n_layers, n_undo = len(window.model.doc.layers), window.model.undo.count()
    panel.erase_method.setCurrentIndex(panel.erase_method.findData("auto"))
    assert "Telea" in panel.erase_info.text()  # no LaMa in the test STUDIO_HOME
    panel.erase_button.click()
    assert panel.running and not panel.erase_button.isEnabled()
    _wait(qtbot, panel)
    doc = window.model.doc
    assert len(doc.layers) == n_layers and panel.staging.current is not None  # staged
    panel.staging.accept_button.click()
    assert len(doc.layers) == n_layers + 1
    assert window.model.undo.count() == n_undo + 1  # one undo step
    added = doc.layers[-2]  # below the mask layer
    assert added.name.startswith("Erase (Telea")
    after = doc.composite()
    assert (after[mask > 0] != before[mask > 0]).any(axis=1).mean() > 0.5
    assert np.array_equal(after[mask == 0], before[mask == 0])
    # the layer holds only the padded crop, placed at its offset, transparent where unchanged
    x, y = added.offset
    w, h = added.size
    assert (w, h) == (box := masks.crop_box(masks.bbox(mask), (150, 100), 32))[2:]
    assert (x, y) == box[:2]
    alpha = added.pixels[..., 3]
    assert (alpha[mask[y : y + h, x : x + w] > 0] == 255).mean() > 0.5
    assert (alpha[mask[y : y + h, x : x + w] == 0] == 0).all()
    window.act_undo.trigger()
    assert len(window.model.doc.layers) == n_layers
    assert np.array_equal(window.model.doc.composite(), before)
    window.act_redo.trigger()
    assert np.array_equal(window.model.doc.composite(), after)


def test_mask_tools_each_one_undo_step(window, panel):
    m = _rect_mask(window, 40, 30, 30, 20)
    m[38:42, 50:60] = 0  # a hole
    window.set_mask(m)
    count = window.model.undo.count()
    panel.fill_holes_button.click()
    assert window.mask()[40, 55] == 255
    panel.grow_spin.setValue(4)
    panel.grow_button.click()
    assert masks.bbox(window.mask()) == (36, 26, 38, 28)
    panel.shrink_button.click()
    assert masks.bbox(window.mask()) == (40, 30, 30, 20)
    panel.feather_spin.setValue(6)
    panel.feather_button.click()
    soft = window.mask()
    assert 0 < soft[40, 39] < 255
    panel.invert_button.click()
    assert window.mask()[0, 0] == 255
    panel.clear_button.click()
    assert window.mask() is None
    panel.fill_button.click()
    assert window.mask().min() == 255
    assert window.model.undo.count() == count + 7
    for _ in range(7):
        window.act_undo.trigger()
    assert np.array_equal(window.mask(), m)


def test_erase_without_mask_says_so(window, panel, monkeypatch):
    errors = []
    monkeypatch.setattr(window, "show_error", lambda msg, detail="": errors.append(msg))
    panel.erase_button.click()
    assert not panel.running and errors and "mask" in errors[0]


def test_fill_from_prompt_with_tiny_model(qtbot, window, panel, tiny_models):
    m = _rect_mask(window, 60, 30, 20, 20)
    before = window.model.doc.composite()
    previews = []
    window.worker.preview.connect(lambda j, img, region: previews.append(region))
    panel.model_combo.setEditText(str(tiny_models.sd_inpaint))
    panel.prompt_edit.setPlainText("a cat")
    panel.steps_spin.setValue(2)
    panel.padding_spin.setValue(8)
    panel.fill_button_run.click()
    _wait(qtbot, panel)
    assert panel.status.text().startswith("Done with SD"), panel.status.text()
    box = masks.crop_box(masks.bbox(m), (150, 100), 8)
    assert previews and all(tuple(r) == box for r in previews)
    panel.staging.accept_button.click()  # staged first, as a generated result is
    after = window.model.doc.composite()
    inside = np.zeros(m.shape, bool)
    inside[box[1] : box[1] + box[3], box[0] : box[0] + box[2]] = True
    assert np.array_equal(after[~inside], before[~inside])
    layer = window.model.doc.layers[-2]
    assert layer.offset == (box[0], box[1]) and layer.size == (box[2], box[3])
    assert layer.metadata["prompt"] == "a cat"


def test_outpaint_grows_document_in_one_undo_step(qtbot, window, panel):
    before = window.model.doc.composite()
    panel.side_spins["left"].setValue(32)
    panel.side_spins["top"].setValue(16)
    panel.overlap_spin.setValue(8)
    panel.outpaint_with.setCurrentIndex(panel.outpaint_with.findData("erase"))
    panel.erase_method.setCurrentIndex(panel.erase_method.findData("telea"))
    count = window.model.undo.count()
    panel.outpaint_button.click()
    _wait(qtbot, panel)
    doc = window.model.doc
    assert (doc.width, doc.height) == (182, 116)
    assert window.model.undo.count() == count + 1
    after = doc.composite()
    assert np.array_equal(after[16 + 8 :, 32 + 8 :], before[8:, 8:])  # old interior unchanged
    assert after[:16, :32, 3].min() == 255  # the new area is filled
    window.act_undo.trigger()
    assert (window.model.doc.width, window.model.doc.height) == (150, 100)
    assert np.array_equal(window.model.doc.composite(), before)
    window.act_redo.trigger()
    assert np.array_equal(window.model.doc.composite(), after)


def test_outpaint_to_aspect(window, panel):
    panel.aspect_combo.setCurrentIndex(panel.aspect_combo.findData("1:1"))
    ext = panel.extension()
    assert ext.new_size((150, 100)) == (150, 150)


def test_cancel_fill(qtbot, window, panel, tiny_models):
    _rect_mask(window, 60, 30, 20, 20)
    panel.model_combo.setEditText(str(tiny_models.sd))
    panel.steps_spin.setValue(150)
    panel.padding_spin.setValue(8)
    n_layers = len(window.model.doc.layers)
    started = []
    window.worker.progress.connect(lambda j, s, t: started.append(s))
    panel.fill_button_run.click()
    qtbot.waitUntil(lambda: len(started) > 0, timeout=120000)
    panel.cancel_button.click()
    _wait(qtbot, panel)
    assert panel.status.text() == "Cancelled"
    assert len(window.model.doc.layers) == n_layers
    assert panel.erase_button.isEnabled()
