"""Issue 14, the first minute as a user: each test drives the real main window's widgets and
checks what the user would see (pixels of the canvas) or the state that decides it."""

from __future__ import annotations

import numpy as np
from PySide6.QtWidgets import QApplication

from studio.ui.panels.control import PREVIEW_DEBOUNCE_MS
from studio.ui.qimage import array_from_qimage


def _canvas_pixels(window) -> np.ndarray:
    QApplication.processEvents()
    return array_from_qimage(window.canvas.viewport().grab().toImage(), "RGB")


# -- 1. no stray overlay ------------------------------------------------------------------------
def test_no_canny_overlay_while_the_control_tab_is_not_shown(qtbot, window, photos):
    window.open_paths([str(photos.astronaut)])
    window.show_panel("Generate")
    control = window.panels["Control"]
    assert control.live_check.isChecked()
    assert control.isVisible()  # Qt's parked tab claims to be visible: not to be trusted
    qtbot.wait(PREVIEW_DEBOUNCE_MS + 300)
    preview = window.canvas.preview_item
    assert preview.image.isNull() and not preview.isVisible()
    plain = _canvas_pixels(window)

    window.show_panel("Control")  # the user looks at the Control panel: edges appear
    qtbot.waitUntil(lambda: not preview.image.isNull() and preview.isVisible(), timeout=5000)
    with_edges = _canvas_pixels(window)
    assert np.abs(with_edges.astype(int) - plain.astype(int)).max() > 100

    window.show_panel("Generate")  # ...and go when they switch away
    qtbot.waitUntil(lambda: preview.image.isNull(), timeout=5000)
    assert np.array_equal(_canvas_pixels(window), plain)
    control.low_slider.setValue(20)  # a slider moved while hidden draws nothing
    qtbot.wait(PREVIEW_DEBOUNCE_MS + 300)
    assert preview.image.isNull()


# -- 7. the active layer does not jump ----------------------------------------------------------
def test_adding_control_and_pose_layers_keeps_painting_on_the_mask(qtbot, window, photos):
    from test_ui_canvas import stroke

    window.open_paths([str(photos.astronaut)])
    window.show_panel("Control")
    control = window.panels["Control"]
    control.add_canny_layer()
    control.default_skeleton()
    kinds = [la.kind for la in window.model.doc.layers]
    assert "control" in kinds and "pose" in kinds
    assert window.model.doc.active_layer.is_mask
    assert window.target_label.text() == "Mask (inpaint)"  # the badge says so
    guides = {la.uid: la.pixels.copy() for la in window.model.doc.layers if not la.is_mask}
    window.canvas.actual_size()
    window.canvas.centerOn(256, 256)
    window.canvas.set_tool("brush")
    stroke(window.canvas, [(200, 256), (260, 256), (300, 256)])
    assert window.mask()[256, 250] == 255  # the stroke went on the mask...
    for la in window.model.doc.layers:  # ...and into no guide or image layer
        if not la.is_mask:
            assert np.array_equal(la.pixels, guides[la.uid]), la.name
    control.add_scribble_layer()  # asked for to paint on: the brush moves, and says so
    assert window.model.doc.active_layer.name == "Scribble"
    assert "Scribble" in window.target_label.text()
